// Terminal reports on the wire between daemons: a region forwards what its
// terminals reported to its upstream in batches (POST /v1/reports), each
// under an id the upstream remembers so a batch sent again counts once
// (daemon/outbox.h). The upstream reads these bodies from the network, so
// the parser is fuzzed (fuzz/agent_state_fuzzer.cc).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace meridian {

// The largest report one may carry, as JSON: a terminal's report body is at
// most 8 KiB (ApiLimits::report_body_bytes_max), and its region adds a few
// fields. Each is held in memory while it waits to go upstream.
inline constexpr size_t kForwardedReportBytesMax = 16u << 10;

struct ForwardedReport {
  std::string id;         // 1-256 characters of [A-Za-z0-9._-]
  std::string terminal;
  nlohmann::json report;  // the agent's report body, an object
  bool operator==(const ForwardedReport&) const = default;
};

// One report as it travels: {"id","terminal","report":{…}}.
std::string ForwardedReportToJson(const ForwardedReport& r);

// Parses a POST /v1/reports body: {"reports":[{"id","terminal","report":{…}}…]}.
// InvalidArgument naming the problem; at most `max` reports, each at most
// kForwardedReportBytesMax. Fields a newer
// region adds are ignored.
Result<std::vector<ForwardedReport>> ParseForwardedReports(std::string_view json, size_t max);

}  // namespace meridian
