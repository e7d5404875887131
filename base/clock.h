// Time, injected: code that expires, waits or soaks asks a Clock, so tests can
// drive time by hand with FakeClock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace meridian {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall clock: used for expiries and audit times).
  virtual int64_t NowUnixMillis() const = 0;
};

// The real wall clock.
class SystemClock final : public Clock {
 public:
  int64_t NowUnixMillis() const override;
  // A process-wide instance.
  static const SystemClock& Get();
};

// A clock that moves only when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_unix_millis = 1'700'000'000'000) : now_(start_unix_millis) {}
  int64_t NowUnixMillis() const override { return now_.load(); }
  void Advance(std::chrono::milliseconds d) { now_ += d.count(); }
  void Set(int64_t unix_millis) { now_ = unix_millis; }

 private:
  std::atomic<int64_t> now_;
};

// RFC 3339 UTC with milliseconds, "2026-11-24T00:32:55.123Z".
std::string FormatRfc3339(int64_t unix_millis);
// The inverse for UTC times: "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (fraction of
// 1 to 9 digits, cut to milliseconds; "z" and "t" too, as RFC 3339 allows).
// InvalidArgument for anything else, offsets other than Z included.
Result<int64_t> ParseRfc3339(std::string_view text);

}  // namespace meridian
