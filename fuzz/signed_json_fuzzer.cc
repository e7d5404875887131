// libFuzzer target for every parser of JSON from outside the process: the
// strict reader itself, then manifests, DSSE envelopes, channel states, root
// documents and delta descriptors over the same bytes. Each must answer a
// value or an error, never crash; a value must survive its own round trip.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/json.h"
#include "delta/delta_info.h"
#include "manifest/manifest.h"
#include "signing/signing.h"
#include "target/target.h"

using namespace meridian;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)ParseJson(text, 1u << 20);
  if (Result<Manifest> m = ParseManifest(text); m.ok()) {
    Result<Manifest> again = ParseManifest(ManifestToJson(*m));
    if (!again.ok() || !(*again == *m)) std::abort();
  }
  if (Result<Envelope> e = ParseEnvelope(text); e.ok()) {
    Result<Envelope> again = ParseEnvelope(EnvelopeToJson(*e));
    if (!again.ok() || !(*again == *e)) std::abort();
  }
  (void)ChannelStateFromJson(text);
  (void)ParseRoot(text);
  (void)ParseDeltaInfo(text);
  return 0;
}
