// One thread and connection per long poll; the first answer wakes the waiter.
#include "agent/long_poll.h"

#include <algorithm>
#include <chrono>

namespace meridian {

LongPolls::LongPolls(const std::string& base_url, const std::vector<std::string>& paths, HttpClientOptions options,
                     uint64_t reply_bytes_max)
    : reply_bytes_max_(reply_bytes_max), outcomes_(paths.size()) {
  options.cancel = &cancel_;
  options.stall_timeout_ms = 0;  // silent until it answers, by design
  for (size_t i = 0; i < paths.size(); ++i) clients_.push_back(std::make_unique<HttpClient>(base_url, options));
  for (size_t i = 0; i < paths.size(); ++i) threads_.emplace_back([this, i, path = paths[i]] { Poll(i, path); });
}

LongPolls::~LongPolls() {
  cancel_ = true;
  for (std::thread& t : threads_) t.join();
}

void LongPolls::Poll(size_t i, const std::string& path) {
  Result<HttpReply> r = clients_[i]->Get(path, reply_bytes_max_);
  std::lock_guard lock(mu_);
  if (cancel_) return;  // the wait is over: what came back now is seen at the next one
  bool act = !r.ok() || r->status != 404;
  outcomes_[i] = std::move(r);
  if (act) {
    woken_ = true;
    woken_cv_.notify_all();
  }
}

bool LongPolls::Wait(int64_t timeout_ms, const std::atomic<bool>* stop) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock lock(mu_);
  while (!woken_ && (stop == nullptr || !stop->load())) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    woken_cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(kLongPollStopCheckMs)));
  }
  // Under the lock: no outcome changes once Wait returned.
  cancel_ = true;
  return woken_;
}

std::optional<Result<HttpReply>> LongPolls::Outcome(size_t i) const {
  std::lock_guard lock(mu_);
  return outcomes_[i];
}

}  // namespace meridian
