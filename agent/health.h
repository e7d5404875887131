// The health-check contract (docs/agent.md): a shell command run after a
// switch, with "{path}" replaced by the installed file's path. Exit status 0
// is a pass; lines "name=number" on its stdout are metrics sent with the report.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace meridian {

inline constexpr size_t kHealthOutputBytesMax = 64u << 10;
inline constexpr size_t kHealthMetricsMax = 15;  // the daemon keeps 16 health entries, one is "pass"

struct HealthResult {
  bool pass = false;
  std::string reason;                      // why it failed ("exit status 3", "timed out after 5000 ms")
  std::map<std::string, double> metrics;   // from "name=number" lines
};

// Metrics from a health check's stdout: lines "name=number" (a finite number) with name
// [a-z0-9_]{1,64}; other lines are ignored, at most kHealthMetricsMax kept.
std::map<std::string, double> ParseHealthMetrics(std::string_view output);

// Runs `command` (after substituting "{path}" with the shell-quoted `path`)
// with /bin/sh in its own process group; past `timeout_ms` the whole group is
// killed and the check fails.
HealthResult RunHealthCheck(const std::string& command, const std::string& path, int64_t timeout_ms);

// Kills the process group of a health check running now, if any.
// Async-signal-safe: for a SIGTERM handler that exits at once.
void KillRunningHealthCheck();

}  // namespace meridian
