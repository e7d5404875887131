// libFuzzer target for what a region reads from its upstream and keeps of it
// (daemon/sync_document.h), over the same bytes: the sync document of GET
// /v1/sync (then, as the follower does, the signed channel states it
// carries: envelope, then channel state), and the record of adopted
// revocations a region reads back from its store at start. Each must answer
// a value or an error, never crash; a value must survive its own round trip.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/bytes.h"
#include "daemon/sync_document.h"
#include "signing/signing.h"
#include "target/target.h"

using namespace meridian;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (Result<SyncDocument> doc = ParseSyncDocument(text); doc.ok()) {
    Result<SyncDocument> again = ParseSyncDocument(SyncDocumentToJson(*doc));
    if (!again.ok() || !(*again == *doc)) std::abort();
    for (const SyncChannel& c : doc->channels) {
      Result<Envelope> env = ParseEnvelope(c.envelope);
      if (env.ok()) (void)ChannelStateFromJson(AsString(env->payload));
    }
  }
  if (Result<RegionRevocations> record = ParseRegionRevocations(text); record.ok()) {
    Result<RegionRevocations> again = ParseRegionRevocations(RegionRevocationsToJson(*record));
    if (!again.ok() || !(*again == *record)) std::abort();
  }
  return 0;
}
