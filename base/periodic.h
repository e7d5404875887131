// A thread that runs a task at a fixed interval until it is stopped: the
// daemon's tick, its collections and its scrubs. The first run comes one
// interval after Start; Stop waits for a run in progress to finish.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace meridian {

class PeriodicThread {
 public:
  PeriodicThread() = default;
  ~PeriodicThread() { Stop(); }
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

  // Runs `task` every `interval` (measured from the end of one run to the
  // start of the next) on a thread of its own. Once only. An exception out
  // of a run (memory running out) is logged as `what` failing, and the next
  // run comes as usual: it never ends the process.
  void Start(std::string what, std::chrono::milliseconds interval, std::function<void()> task);
  // Stops the thread; idempotent, and a no-op when it never started.
  void Stop();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace meridian
