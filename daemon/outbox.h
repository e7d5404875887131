// The reports a region accepted from its terminals, kept durably until its
// upstream has them, and the thread that forwards them there in batches.
//
// Every report gets an id when first accepted, "<region>.<nonce>.<seq>" (the
// nonce is drawn once per data directory, so a rebuilt region never reuses an
// id); upstream keeps the ids it has seen and drops a report it already has,
// so a batch sent again after a lost answer counts once: exactly-once from
// at-least-once delivery. Stored keys (Store::WriteState, synced):
//   outbox/<seq, 20 digits>   {"id","terminal","report":{…as the agent sent it}}
//   outbox-meta               {"nonce":"<hex>","next":N}
//   reportid/<id>             "" — ids of reports received from downstream
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "daemon/forwarded_reports.h"
#include "daemon/upstream.h"
#include "store/group_commit.h"
#include "store/store.h"

namespace meridian {

struct OutboxOptions {
  size_t batch_max = 500;          // reports per POST upstream
  int64_t linger_ms = 200;         // wait this long for more reports before sending a batch
  int64_t retry_ms_max = 10'000;   // backoff cap while the upstream is away
  size_t pending_max = 100'000;    // more are refused (the terminal's agent keeps them and retries)
  uint64_t pending_bytes_max = 64u << 20;  // nor more than these bytes of them (all are held in memory)
};

class ReportOutbox {
 public:
  // Loads the reports still pending and starts forwarding them.
  static Result<std::unique_ptr<ReportOutbox>> Open(Store& store, std::string region, UpstreamOptions upstream,
                                                    OutboxOptions options = {});
  ~ReportOutbox();  // stops forwarding; what is pending stays stored
  ReportOutbox(const ReportOutbox&) = delete;
  ReportOutbox& operator=(const ReportOutbox&) = delete;

  // Durable when it returns OK. `r.id` empty: a new report, given an id;
  // otherwise one relayed from downstream, dropped (false) when its id was
  // seen before. ResourceExhausted when pending_max reports, or
  // pending_bytes_max bytes of them, wait already.
  Result<bool> Enqueue(ForwardedReport r);
  // Reports relayed from a region downstream (POST /v1/reports), under their
  // ids: those not seen before (nor earlier in the batch) are stored in one
  // synced write, all or none. How many were new; errors as Enqueue's.
  Result<size_t> EnqueueRelayed(std::vector<ForwardedReport> batch);

  struct Stats {
    size_t pending = 0;
    uint64_t forwarded = 0;   // since start
    bool upstream_ok = true;  // the last attempt to send succeeded (or none was needed)
  };
  Stats stats() const;

 private:
  ReportOutbox(Store& store, std::string region, UpstreamOptions upstream, OutboxOptions options);
  Status Load();
  void Run();
  bool IsFull() const;  // mu_ held
  Status Full() const;  // mu_ held
  // pending_ and pending_bytes_ together (mu_ held).
  void AddPending(std::pair<std::string, std::string> entry);
  void DropPending(size_t n);
  // The write of next_ (mu_ held), with every entry written before it.
  std::pair<std::string, std::optional<std::string>> MetaOp() const;

  Store& store_;
  const std::string region_;
  UpstreamOptions upstream_;
  const OutboxOptions options_;
  std::string nonce_;
  GroupCommit writes_;  // accepted reports, several to one synced write
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ = 1;                                        // guarded by mu_
  std::deque<std::pair<std::string, std::string>> pending_;  // guarded by mu_: (key, entry JSON), oldest first
  uint64_t pending_bytes_ = 0;                               // guarded by mu_: of the entries in pending_
  uint64_t forwarded_ = 0;                                   // guarded by mu_
  bool upstream_ok_ = true;                                  // guarded by mu_
  bool stopping_ = false;                                    // guarded by mu_
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

}  // namespace meridian
