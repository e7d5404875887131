// What the files of the daemon's API (api.cc, api_rollouts.cc,
// api_regions.cc) share: JSON replies, and the reader of agents' reports,
// which arrive from terminals and forwarded by regions. Private to the daemon.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "daemon/http.h"
#include "rollout/rollout.h"

namespace meridian {

HttpResponse JsonOk(int status, const nlohmann::json& body);
// 404 NotFound, 400 InvalidArgument, 403 PermissionDenied, 409 AlreadyExists
// and FailedPrecondition, 413 ResourceExhausted, 408 DeadlineExceeded, 503
// Unavailable, 507 InsufficientStorage (the disk is full: nothing was
// written), 500 otherwise; the code's name and the message in the body.
HttpResponse ErrorFor(const Status& st);
// ErrorFor, but a full outbox (ResourceExhausted) is 503 outbox_full with
// Retry-After: the sender keeps its reports and tries again later. (A 413
// would tell a region below that they are too large ever to send.)
HttpResponse OutboxError(const Status& st);

// An agent's report (POST /v1/terminals/{id}/reports), checked: the same
// rules whether it arrives from the terminal or forwarded by a region.
struct AgentReport {
  std::string model;
  std::string channel;  // "stable" when the agent sent none
  std::string rollout;
  bool verdict = false;  // an install result (installed/failed), not progress (downloaded/verified)
  bool periodic = false; // the health check of what runs, repeated (agent.md), not an install
  meridian::TerminalReport report;
};
// A whole decimal number in a query parameter: "12", not "12x", "-1" or "".
bool ParseQueryNumber(std::string_view text, uint64_t* out);

Result<AgentReport> ParseAgentReport(const std::string& terminal_id, const nlohmann::json& j);

}  // namespace meridian
