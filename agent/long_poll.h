// Long polls for several models at once: one GET per model, each on its own
// connection and thread, so that the first answer — a change to any model —
// ends the agent's wait at once instead of after the other models' holds
// (docs/agent.md, "What a cycle does").
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "client/http_client.h"

namespace meridian {

// Checked this often for a stop request while waiting.
inline constexpr int64_t kLongPollStopCheckMs = 100;

class LongPolls {
 public:
  // Starts one thread per path, each GETting `base_url` + path, reading at
  // most `reply_bytes_max` of the reply, with an HttpClient of its own made
  // from `options` (its `cancel` is replaced by this object's). Threads =
  // paths.size(), which the agent's configuration bounds (kAgentModelsMax).
  LongPolls(const std::string& base_url, const std::vector<std::string>& paths, HttpClientOptions options,
            uint64_t reply_bytes_max);
  // Cancels the requests still running and joins every thread: within about a
  // second (HttpClient's cancel cadence).
  ~LongPolls();
  LongPolls(const LongPolls&) = delete;
  LongPolls& operator=(const LongPolls&) = delete;

  // Blocks until a request ended with something to act on — any reply but 404
  // (a 404 means the channel has no state yet: nothing the server can wake),
  // or no reply at all — or `timeout_ms` passed, or *stop (may be null)
  // became true. Then cancels the requests still running without waiting for
  // them. Returns whether a request ended with something to act on.
  bool Wait(int64_t timeout_ms, const std::atomic<bool>* stop);
  // What request `i` ended with; nullopt while it runs, or when Wait
  // cancelled it (nothing changed for it).
  std::optional<Result<HttpReply>> Outcome(size_t i) const;

 private:
  void Poll(size_t i, const std::string& path);

  const uint64_t reply_bytes_max_;
  std::atomic<bool> cancel_{false};
  mutable std::mutex mu_;
  std::condition_variable woken_cv_;
  bool woken_ = false;                                     // guarded by mu_
  std::vector<std::optional<Result<HttpReply>>> outcomes_; // guarded by mu_
  std::vector<std::unique_ptr<HttpClient>> clients_;       // clients_[i] is used by threads_[i] only
  std::vector<std::thread> threads_;
};

}  // namespace meridian
