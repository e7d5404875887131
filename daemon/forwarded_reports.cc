// Terminal reports on the wire between daemons: see daemon/forwarded_reports.h.
#include "daemon/forwarded_reports.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "base/json.h"

namespace meridian {

namespace {

constexpr size_t kReportIdBytesMax = 256;

bool IsReportId(const std::string& id) {
  return !id.empty() && id.size() <= kReportIdBytesMax && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

}  // namespace

std::string ForwardedReportToJson(const ForwardedReport& r) {
  return nlohmann::json{{"id", r.id}, {"terminal", r.terminal}, {"report", r.report}}.dump();
}

Result<std::vector<ForwardedReport>> ParseForwardedReports(std::string_view json, size_t max) {
  Result<nlohmann::json> parsed = ParseJsonObject(json, json.size(), "reports");  // the request's body limit bounds it
  if (!parsed.ok()) return parsed.status();
  JsonFields f(*parsed, "reports", UnknownFields::kIgnore);
  const nlohmann::json* reports = f.Objects("reports", max, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  std::vector<ForwardedReport> out;
  for (const nlohmann::json& e : *reports) {
    ForwardedReport r;
    JsonFields ef(e, "forwarded report", UnknownFields::kIgnore);
    ef.String("id", &r.id, true);
    ef.String("terminal", &r.terminal, true);
    const nlohmann::json* report = ef.Object("report", true);
    MERIDIAN_RETURN_IF_ERROR(ef.Finish());
    if (!IsReportId(r.id)) return Status::InvalidArgument("report ids are 1-256 characters of [A-Za-z0-9._-]");
    if (DumpJson(*report).size() > kForwardedReportBytesMax) {
      return Status::InvalidArgument(fmt::format("report {} is over {} bytes", r.id, kForwardedReportBytesMax));
    }
    r.report = *report;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace meridian
