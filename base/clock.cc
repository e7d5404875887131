// The system clock and RFC 3339 formatting.
#include "base/clock.h"

#include <ctime>

#include <fmt/format.h>

namespace meridian {

int64_t SystemClock::NowUnixMillis() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const SystemClock& SystemClock::Get() {
  static const SystemClock clock;
  return clock;
}

std::string FormatRfc3339(int64_t unix_millis) {
  std::time_t secs = static_cast<std::time_t>(unix_millis / 1000);
  int millis = static_cast<int>(unix_millis % 1000);
  if (millis < 0) {
    millis += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

namespace {

// `n` ASCII digits at text[*pos], advancing past them.
bool Digits(std::string_view text, size_t* pos, size_t n, int* out) {
  if (*pos + n > text.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view text, size_t* pos, std::string_view chars) {
  if (*pos >= text.size() || chars.find(text[*pos]) == std::string_view::npos) return false;
  ++*pos;
  return true;
}

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

Result<int64_t> ParseRfc3339(std::string_view text) {
  static constexpr int kDaysIn[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0;
  bool ok = Digits(text, &pos, 4, &year) && Expect(text, &pos, "-") && Digits(text, &pos, 2, &month) &&
            Expect(text, &pos, "-") && Digits(text, &pos, 2, &day) && Expect(text, &pos, "Tt") &&
            Digits(text, &pos, 2, &hour) && Expect(text, &pos, ":") && Digits(text, &pos, 2, &minute) &&
            Expect(text, &pos, ":") && Digits(text, &pos, 2, &second);
  if (ok && pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && digits < 9; ++pos, ++digits) {
      if (digits < 3) millis = millis * 10 + (text[pos] - '0');
    }
    for (size_t i = digits; i < 3; ++i) millis *= 10;
    ok = digits > 0;
  }
  ok = ok && Expect(text, &pos, "Zz") && pos == text.size();
  const bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
  ok = ok && month >= 1 && month <= 12 && day >= 1 && day <= kDaysIn[month - 1] && (month != 2 || day <= 28 || leap) &&
       hour <= 23 && minute <= 59 && second <= 60;  // 60: a leap second, read as the next second
  if (!ok) return Status::InvalidArgument("not an RFC 3339 UTC time: \"" + std::string(text.substr(0, 64)) + "\"");
  int64_t seconds = DaysFromCivil(year, month, day) * 86'400 + hour * 3600 + minute * 60 + second;
  return seconds * 1000 + millis;
}

}  // namespace meridian
