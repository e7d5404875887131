// libFuzzer target for every parser of JSON from outside the process: the
// strict reader itself, then manifests, DSSE envelopes, channel states and
// the rollout specs in them (with their window and health-rule texts, also
// parsed on their own), root documents and their expiry times, delta descriptors, the holdings
// a region reports, audit log events (and heads), terminal credentials and credential
// requests over the same bytes. Each must answer a
// value or an error, never crash; a value must survive its own round trip;
// the strict reader must agree with nlohmann's parser but for what it adds,
// and IsUtf8 with nlohmann's writer.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "audit/audit.h"
#include "base/clock.h"
#include "base/encoding.h"
#include "base/json.h"
#include "daemon/catalog.h"
#include "delta/delta_info.h"
#include "manifest/manifest.h"
#include "rollout/rollout.h"
#include "signing/signing.h"
#include "target/target.h"
#include "trust/terminal_credential.h"

using namespace meridian;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The strict reader against nlohmann's own parser: it takes exactly the
  // JSON that one takes, to the same value, and refuses of it only a repeated
  // key or too deep a nesting.
  const Result<nlohmann::json> strict = ParseJson(text, 1u << 20);
  const nlohmann::json plain = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (strict.ok() && (plain.is_discarded() || *strict != plain)) std::abort();
  if (!strict.ok() && !plain.is_discarded() && text.size() <= (1u << 20) &&
      strict.status().message().find("repeats a key") == std::string::npos &&
      strict.status().message().find("nests deeper") == std::string::npos) {
    std::abort();
  }
  // The UTF-8 check against nlohmann's writer, which throws on exactly what
  // is not UTF-8; and a cut at any length leaves UTF-8 of UTF-8.
  bool writes = true;
  try {
    (void)nlohmann::json(text).dump();
  } catch (const nlohmann::json::exception&) {
    writes = false;
  }
  if (IsUtf8(text) != writes) std::abort();
  if (writes && !IsUtf8(Utf8Prefix(text, size / 2))) std::abort();
  if (Result<Manifest> m = ParseManifest(text); m.ok()) {
    Result<Manifest> again = ParseManifest(ManifestToJson(*m));
    if (!again.ok() || !(*again == *m)) std::abort();
  }
  if (Result<Envelope> e = ParseEnvelope(text); e.ok()) {
    Result<Envelope> again = ParseEnvelope(EnvelopeToJson(*e));
    if (!again.ok() || !(*again == *e)) std::abort();
  }
  (void)ChannelStateFromJson(text);
  if (Result<RolloutSpec> spec = RolloutSpecFromJson(text); spec.ok()) {
    Result<RolloutSpec> again = RolloutSpecFromJson(RolloutSpecToJson(*spec));
    if (!again.ok() || !(*again == *spec)) std::abort();
  }
  if (Result<RolloutWindow> w = ParseRolloutWindow(text); w.ok()) {
    Result<RolloutWindow> again = ParseRolloutWindow(RolloutWindowText(*w));
    if (!again.ok() || !(*again == *w)) std::abort();
  }
  if (Result<HealthRule> rule = ParseHealthRule(text); rule.ok()) {
    Result<HealthRule> again = ParseHealthRule(HealthRuleText(*rule));
    if (!again.ok() || HealthRuleText(*again) != HealthRuleText(*rule)) std::abort();
  }
  if (Result<Root> root = ParseRoot(text); root.ok()) (void)CheckRootFresh(*root, 0);
  // Root expiries: a time that parses formats back to itself.
  if (Result<int64_t> t = ParseRfc3339(text); t.ok()) {
    Result<int64_t> again = ParseRfc3339(FormatRfc3339(*t));
    if (!again.ok() || *again != *t) std::abort();
  }
  (void)ParseDeltaInfo(text);
  std::string region, region_again;
  if (Result<std::map<std::string, ModelHolding>> h = ParseHoldings(text, &region); h.ok()) {
    Result<std::map<std::string, ModelHolding>> again = ParseHoldings(HoldingsToJson(region, *h), &region_again);
    if (!again.ok() || *again != *h || region_again != region) std::abort();
  }
  // Audit events come back from the store, where anyone with the disk may have edited them.
  if (Result<AuditEvent> e = ParseAuditEvent(text); e.ok()) {
    Result<std::string> encoded = EncodeAuditEvent(*e);
    if (!encoded.ok()) std::abort();
    Result<AuditEvent> again = ParseAuditEvent(*encoded);
    if (!again.ok() || !(*again == *e)) std::abort();
  }
  // A terminal's credential request (a request head) and its credential (a
  // bearer token): parsed before any signature is checked, so parsed here.
  (void)VerifyCredentialRequest(text, "pos-1");
  static const Root kRoot = [] {
    Root root;
    SecretKey online = SecretKey::FromSeed(AsBytes(std::string(32, 'o'))).value();
    root.keys[online.KeyId()] = online.public_key();
    root.roles["online"] = Role{{online.KeyId()}, 1};
    return root;
  }();
  (void)VerifyCredential(kRoot, text, 1'700'000'000'000);
  if (Result<AuditHead> h = AuditHead::Parse(text); h.ok()) {
    Result<AuditHead> again = AuditHead::Parse(h->ToString());
    if (!again.ok() || *again != *h) std::abort();
  }
  return 0;
}
