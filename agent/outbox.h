// Reports waiting to be sent: one fsynced file per report in STATE/outbox, so
// a report survives a crash or a long outage and is deleted only once a
// server accepted it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/status.h"

namespace meridian {

inline constexpr size_t kOutboxReportsMax = 10'000;
inline constexpr uint64_t kOutboxReportBytesMax = 64u << 10;

struct PendingReport {
  std::string path;  // the file; pass to Remove once sent
  std::string body;  // the JSON report
};

class Outbox {
 public:
  // `dir` is STATE/outbox, reached through `env`.
  explicit Outbox(std::string dir, Env& env = Env::Default()) : dir_(std::move(dir)), env_(&env) {}
  Status Init() const;
  // Durably stores a report (written, fsynced, renamed, directory fsynced).
  // ResourceExhausted when kOutboxReportsMax are waiting (the oldest are kept:
  // they explain what happened first) or the body is above kOutboxReportBytesMax.
  Status Add(const std::string& body, int64_t now_ms);
  // The oldest `max` reports, oldest first.
  Result<std::vector<PendingReport>> Oldest(size_t max) const;
  size_t Count() const;
  // Deletes a sent report durably.
  Status Remove(const PendingReport& report) const;

 private:
  std::vector<std::string> Names() const;
  std::string dir_;
  Env* env_;
};

}  // namespace meridian
