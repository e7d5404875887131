#include "base/periodic.h"

#include <errno.h>

#include <cstdio>
#include <utility>

#include "base/status.h"

namespace meridian {

void PeriodicThread::Start(std::string what, std::chrono::milliseconds interval, std::function<void()> task) {
  thread_ = std::thread([this, what = std::move(what), interval, task = std::move(task)] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, interval, [&] { return stopping_; })) {
      lock.unlock();
      Status st = CatchExceptions(what, [&] {
        task();
        return Status::Ok();
      });
      if (!st.ok()) std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, st.ToString().c_str());
      lock.lock();
    }
  });
}

void PeriodicThread::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace meridian
