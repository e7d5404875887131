// libFuzzer target for what meridian-agent reads back from its state
// directory at start, after a crash, a power loss or a full disk as after a
// clean stop (docs/agent.md, "State directory"), over the same bytes:
// agent.json, credential.json, a model's staging/job.json, the target of its
// current and previous links, root.json (the trusted root, self-signed) and
// terminal.key; and a report waiting in outbox/ as the server reads it when
// the agent sends it (ParseAgentReport, then the stored form of the report),
// and a batch of reports a region forwards to its upstream as the upstream
// reads it (ParseForwardedReports, then each report as above).
// Each must answer a value or an error, never crash; a value must survive
// its own round trip, and a key that loads must sign what its public key
// verifies.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agent/slots.h"
#include "agent/state_files.h"
#include "base/json.h"
#include "daemon/api_shared.h"
#include "daemon/forwarded_reports.h"
#include "rollout/rollout.h"
#include "signing/signing.h"

using namespace meridian;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (Result<AgentState> s = ParseAgentState(text); s.ok()) {
    Result<AgentState> again = ParseAgentState(AgentStateToJson(*s));
    if (!again.ok() || !(*again == *s)) std::abort();
  }
  if (Result<StoredCredential> c = ParseStoredCredential(text); c.ok()) {
    Result<StoredCredential> again = ParseStoredCredential(StoredCredentialToJson(*c));
    if (!again.ok() || !(*again == *c)) std::abort();
  }
  if (Result<DownloadJob> job = ParseDownloadJob(text); job.ok()) {
    Result<DownloadJob> again = ParseDownloadJob(DownloadJobToJson(*job));
    if (!again.ok() || !(*again == *job)) std::abort();
  }
  // A link's target is at most 512 bytes (readlink into the agent's buffer).
  if (Result<SlotLink> link = ParseSlotLink(text.substr(0, 512)); link.ok()) {
    Result<SlotLink> again = ParseSlotLink(SlotLinkTarget(link->version, link->digest));
    if (!again.ok() || !(*again == *link)) std::abort();
  }
  if (Result<Root> root = LoadTrustedRoot(text); root.ok()) (void)CheckRootFresh(*root, 1'700'000'000'000);
  if (Result<SecretKey> key = ParseSecretKeyFile(text, "terminal.key"); key.ok()) {
    const auto signature = key->Sign(AsBytes(std::string_view("meridian")));
    if (!VerifySignature(key->public_key(), AsBytes(std::string_view("meridian")), signature)) std::abort();
  }
  (void)ParsePublicKeyFile(text, "terminal.pub");
  // An outbox report, as POST /v1/terminals/{id}/reports reads it; what
  // counts is stored as ReportToJson and read back by ReportFromJson.
  auto report_round_trips = [](const std::string& terminal, const nlohmann::json& j) {
    if (Result<AgentReport> a = ParseAgentReport(terminal, j); a.ok()) {
      Result<TerminalReport> again = ReportFromJson(ReportToJson(a->report));
      if (!again.ok() || !(*again == a->report)) std::abort();
    }
  };
  if (Result<nlohmann::json> j = ParseJson(text, 1u << 20); j.ok()) report_round_trips("pos-0001", *j);
  // A forwarded batch: what the region writes for each report reads back the same.
  if (Result<std::vector<ForwardedReport>> batch = ParseForwardedReports(text, 500); batch.ok()) {
    for (const ForwardedReport& f : *batch) {
      Result<std::vector<ForwardedReport>> again =
          ParseForwardedReports("{\"reports\":[" + ForwardedReportToJson(f) + "]}", 1);
      if (!again.ok() || again->size() != 1 || !(again->front() == f)) std::abort();
      report_round_trips(f.terminal, f.report);
    }
  }
  return 0;
}
