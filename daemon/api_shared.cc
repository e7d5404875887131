#include "daemon/api_shared.h"

#include <charconv>

#include <fmt/format.h>

#include "base/json.h"
#include "manifest/manifest.h"

namespace meridian {

HttpResponse JsonOk(int status, const nlohmann::json& body) {
  HttpResponse r;
  r.status = status;
  r.body = DumpJson(body);
  r.Set("Content-Type", "application/json");
  return r;
}

namespace {

int HttpStatusFor(const Status& st) {
  switch (st.code()) {
    case Status::Code::kOk: return 200;
    case Status::Code::kNotFound: return 404;
    case Status::Code::kInvalidArgument: return 400;
    case Status::Code::kPermissionDenied: return 403;
    case Status::Code::kAlreadyExists:
    case Status::Code::kFailedPrecondition: return 409;
    case Status::Code::kResourceExhausted: return 413;
    case Status::Code::kDeadlineExceeded: return 408;
    case Status::Code::kUnavailable: return 503;
    case Status::Code::kInsufficientStorage: return 507;
    case Status::Code::kCorruption:
    case Status::Code::kIOError: return 500;
  }
  return 500;
}

}  // namespace

HttpResponse ErrorFor(const Status& st) {
  return JsonError(HttpStatusFor(st), Status::CodeName(st.code()), st.message());
}

HttpResponse OutboxError(const Status& st) {
  if (st.code() != Status::Code::kResourceExhausted) return ErrorFor(st);
  HttpResponse r = JsonError(503, "outbox_full", st.message());
  r.Set("Retry-After", "30");
  return r;
}

Result<AgentReport> ParseAgentReport(const std::string& terminal_id, const nlohmann::json& j) {
  auto bad = [](std::string message) { return Status::InvalidArgument(std::move(message)); };
  if (!IsValidTerminalId(terminal_id)) return bad("invalid terminal id");
  if (!j.is_object()) return bad("body must be a JSON object");
  // An agent wrote it, maybe one newer than this daemon: what it adds is ignored.
  JsonFields f(j, "report", UnknownFields::kIgnore);
  AgentReport a;
  meridian::TerminalReport& r = a.report;
  std::string event;
  f.String("model", &a.model);
  f.String("version", &r.version);
  f.String("channel", &a.channel);
  f.String("rollout", &a.rollout);
  f.String("event", &event);
  f.String("reason", &r.reason);
  f.String("profile", &r.profile);
  f.String("region", &r.region);
  f.Bool("periodic", &a.periodic);
  const nlohmann::json* health = f.Object("health");
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  if (!IsValidModelName(a.model)) return bad("model is required");
  if (!a.rollout.empty() && !IsValidRolloutId(a.rollout)) return bad("invalid rollout id");
  if (!a.channel.empty() && !IsValidRegionOrProfile(a.channel)) return bad("invalid channel");
  if (a.channel.empty()) a.channel = "stable";
  r.terminal_id = terminal_id;
  bool pass = true;
  if (health != nullptr) {
    for (const auto& item : health->items()) {
      if (item.key() == "pass") {
        if (!item.value().is_boolean()) return bad("health.pass must be true or false");
        pass = item.value().get<bool>();
      } else if (item.value().is_number() && r.health.size() < kReportHealthEntriesMax) {
        r.health[item.key()] = item.value().get<double>();
      } else {
        return bad(fmt::format("health.{} must be a number (at most {})", item.key(), kReportHealthEntriesMax));
      }
    }
  }
  // Only an install result judges a version; download and verify steps are progress.
  a.verdict = event == "installed" || event == "failed";
  if (!a.verdict && event != "downloaded" && event != "verified") {
    return bad("event must be downloaded, verified, installed or failed");
  }
  r.outcome = event == "failed" || !pass ? ReportOutcome::kFailure : ReportOutcome::kSuccess;
  MERIDIAN_RETURN_IF_ERROR(ValidateReport(r));
  return a;
}

bool ParseQueryNumber(std::string_view text, uint64_t* out) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && p == text.data() + text.size() && !text.empty();
}

}  // namespace meridian
