// Rollout windows: parsing, canonical text and evaluation in a region's time
// zone, over Howard Hinnant's date library reading the system tz database.
#include "rollout/window.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <exception>
#include <vector>

#include <date/tz.h>
#include <fmt/format.h>

// The build must take the zones from /usr/share/zoneinfo and never fetch
// anything: Debian's libdate-tz is built so, and its CMake package (how meson
// finds it) passes these defines to match.
static_assert(USE_OS_TZDB == 1 && HAS_REMOTE_API == 0 && AUTO_DOWNLOAD == 0,
              "date must use the OS tz database and no remote API");

namespace meridian {

namespace {

constexpr int kMinutesPerDay = 24 * 60;
constexpr uint8_t kAllDays = 0x7f;
constexpr std::array<std::string_view, 7> kDayNames = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::string_view kExpectedForm =
    "expected '<days> <HH:MM>-<HH:MM>' such as 'Mon-Sat 02:00-05:00' or 'Sat,Sun 22:00-04:00' "
    "(days: Mon Tue Wed Thu Fri Sat Sun, ranges like Fri-Mon, comma lists, or daily)";

int DayIndex(std::string_view name) {
  for (size_t d = 0; d < kDayNames.size(); ++d) {
    if (kDayNames[d] == name) return static_cast<int>(d);
  }
  return -1;
}

// One item of the day list: "Tue" or a range "Fri-Mon" (wrapping past Sunday).
Result<uint8_t> ParseDayItem(std::string_view item) {
  size_t dash = item.find('-');
  std::string_view first = item.substr(0, dash);
  int from = DayIndex(first);
  if (from < 0) return Status::InvalidArgument(fmt::format("'{}' is not a day", first));
  if (dash == std::string_view::npos) return static_cast<uint8_t>(1u << from);
  std::string_view last = item.substr(dash + 1);
  int to = DayIndex(last);
  if (to < 0) return Status::InvalidArgument(fmt::format("'{}' is not a day", last));
  if (from == to) return Status::InvalidArgument(fmt::format("range '{}' is a single day; write '{}'", item, first));
  uint8_t days = 0;
  for (int d = from;; d = (d + 1) % 7) {
    days = static_cast<uint8_t>(days | (1u << d));
    if (d == to) break;
  }
  return days;
}

Result<uint8_t> ParseDays(std::string_view text) {
  if (text == "daily") return kAllDays;
  uint8_t days = 0;
  while (true) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    if (item.empty()) return Status::InvalidArgument("empty day in the list");
    Result<uint8_t> parsed = ParseDayItem(item);
    if (!parsed.ok()) return parsed.status();
    if ((days & *parsed) != 0) {
      return Status::InvalidArgument(fmt::format("'{}' lists a day already listed", item));
    }
    days = static_cast<uint8_t>(days | *parsed);
    if (comma == std::string_view::npos) return days;
    text.remove_prefix(comma + 1);
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// "HH:MM", 00:00 to 23:59, as minutes after midnight.
Result<int> ParseTime(std::string_view text) {
  if (text.size() != 5 || !IsDigit(text[0]) || !IsDigit(text[1]) || text[2] != ':' || !IsDigit(text[3]) ||
      !IsDigit(text[4])) {
    return Status::InvalidArgument(fmt::format("'{}' is not a time HH:MM", text));
  }
  int hours = (text[0] - '0') * 10 + (text[1] - '0');
  int minutes = (text[3] - '0') * 10 + (text[4] - '0');
  if (hours > 23) {
    return Status::InvalidArgument(fmt::format("'{}': hours run 00 to 23 (midnight is 00:00)", text));
  }
  if (minutes > 59) return Status::InvalidArgument(fmt::format("'{}': minutes run 00 to 59", text));
  return hours * 60 + minutes;
}

Result<RolloutWindow> ParseWindowParts(std::string_view text) {
  size_t space = text.find(' ');
  if (space == std::string_view::npos) return Status::InvalidArgument("no times after the days");
  std::string_view times = text.substr(space + 1);
  if (times.find(' ') != std::string_view::npos) {
    return Status::InvalidArgument("exactly one space goes between the days and the times");
  }
  size_t dash = times.find('-');
  if (dash == std::string_view::npos) return Status::InvalidArgument("no end time");
  RolloutWindow window;
  Result<uint8_t> days = ParseDays(text.substr(0, space));
  if (!days.ok()) return days.status();
  window.days = *days;
  Result<int> start = ParseTime(times.substr(0, dash));
  if (!start.ok()) return start.status();
  Result<int> end = ParseTime(times.substr(dash + 1));
  if (!end.ok()) return end.status();
  if (*start == *end) return Status::InvalidArgument("empty window: the start equals the end");
  window.start_minute = *start;
  window.end_minute = *end;
  return window;
}

std::string TimeText(int minute) { return fmt::format("{:02}:{:02}", minute / 60, minute % 60); }

Status ValidateWindow(const RolloutWindow& w) {
  if (w.days == 0 || (w.days & ~kAllDays) != 0 || w.start_minute < 0 || w.start_minute >= kMinutesPerDay ||
      w.end_minute < 0 || w.end_minute >= kMinutesPerDay || w.start_minute == w.end_minute) {
    return Status::InvalidArgument("not a rollout window: needs days, and distinct start and end in [0, 1440)");
  }
  return Status::Ok();
}

bool IsZoneNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '/' || c == '_' || c == '+' ||
         c == '-';
}

// The zone, loaded: date reads a zone's file on first use, so a file that
// cannot be read shows up here and not halfway through an evaluation.
Result<const date::time_zone*> FindZone(std::string_view name) {
  if (name.empty() || name.size() > kTimeZoneBytesMax || !std::all_of(name.begin(), name.end(), IsZoneNameChar)) {
    return Status::InvalidArgument(fmt::format(
        "a time zone is 1 to {} bytes of A-Z a-z 0-9 / _ + -, such as Asia/Singapore", kTimeZoneBytesMax));
  }
  // Debian links zoneinfo/localtime to /etc/localtime: whatever the host is set to.
  if (name == "localtime") {
    return Status::InvalidArgument("'localtime' is the host's time zone, not a region's; name one such as Asia/Singapore");
  }
  try {
    date::get_tzdb();
  } catch (const std::exception& e) {
    return Status::IOError(fmt::format("cannot read the system tz database: {}", e.what()));
  }
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(name);
  } catch (const std::exception&) {
    return Status::InvalidArgument(fmt::format("unknown time zone '{}' (not in the system tz database)", name));
  }
  try {
    zone->get_info(date::sys_seconds{});
  } catch (const std::exception& e) {
    return Status::IOError(fmt::format("time zone '{}': {}", name, e.what()));
  }
  return zone;
}

template <typename Duration>
int64_t UnixMs(date::sys_time<Duration> t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

struct Opening {
  int64_t opens_ms;
  int64_t closes_ms;
};

// The opening of `window` on local date `day`, by the rules in window.h.
Opening OpeningOn(const RolloutWindow& window, const date::time_zone& zone, date::local_days day) {
  int nominal_minutes = window.end_minute - window.start_minute;
  if (nominal_minutes < 0) nominal_minutes += kMinutesPerDay;
  date::local_seconds start = day + std::chrono::minutes(window.start_minute);
  date::local_seconds end = start + std::chrono::minutes(nominal_minutes);
  Opening o{UnixMs(zone.to_sys(start, date::choose::earliest)), UnixMs(zone.to_sys(end, date::choose::latest))};
  if (o.closes_ms <= o.opens_ms) o.closes_ms = o.opens_ms + int64_t{nominal_minutes} * 60'000;
  return o;
}

}  // namespace

Result<RolloutWindow> ParseRolloutWindow(std::string_view text) {
  if (text.empty() || text.size() > kRolloutWindowTextBytesMax) {
    return Status::InvalidArgument(
        fmt::format("rollout window: {} bytes, 1 to {} allowed; {}", text.size(), kRolloutWindowTextBytesMax, kExpectedForm));
  }
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= ' ' && c <= '~'; })) {
    return Status::InvalidArgument(fmt::format("rollout window: only printable ASCII; {}", kExpectedForm));
  }
  Result<RolloutWindow> window = ParseWindowParts(text);
  if (!window.ok()) {
    return Status::InvalidArgument(
        fmt::format("rollout window '{}': {}; {}", text, window.status().message(), kExpectedForm));
  }
  return window;
}

std::string RolloutWindowText(const RolloutWindow& window) {
  std::string days;
  if ((window.days & kAllDays) == kAllDays) {
    days = "daily";
  } else {
    for (int d = 0; d < 7;) {
      if ((window.days & (1u << d)) == 0) {
        ++d;
        continue;
      }
      int last = d;
      while (last + 1 < 7 && (window.days & (1u << (last + 1))) != 0) ++last;
      if (!days.empty()) days += ',';
      if (last - d >= 2) {
        days += fmt::format("{}-{}", kDayNames[d], kDayNames[last]);
      } else {
        days += kDayNames[d];
        if (last > d) days += fmt::format(",{}", kDayNames[last]);
      }
      d = last + 1;
    }
  }
  return fmt::format("{} {}-{}", days, TimeText(window.start_minute), TimeText(window.end_minute));
}

Status CheckTimeZone(std::string_view zone) {
  Result<const date::time_zone*> found = FindZone(zone);
  return found.ok() ? Status::Ok() : found.status();
}

Result<WindowStatus> EvaluateWindow(const RolloutWindow& window, std::string_view zone_name, int64_t now_ms) {
  MERIDIAN_RETURN_IF_ERROR(ValidateWindow(window));
  if (now_ms < 0 || now_ms >= kWindowNowMsMax) {
    return Status::InvalidArgument(fmt::format("now {} ms is outside [0, {}) (1970 to 2037-12-01)", now_ms, kWindowNowMsMax));
  }
  Result<const date::time_zone*> zone = FindZone(zone_name);
  if (!zone.ok()) return zone.status();
  try {
    date::sys_time<std::chrono::milliseconds> now{std::chrono::milliseconds(now_ms)};
    date::local_days today = date::floor<date::days>((*zone)->to_local(now));
    // One day back reaches an opening that crossed midnight and still runs,
    // two the start of one merged with it; eight ahead reach the next opening
    // of every listed weekday.
    std::vector<Opening> openings;
    for (int offset = -2; offset <= 8; ++offset) {
      date::local_days day = today + date::days(offset);
      unsigned weekday = date::weekday(day).iso_encoding() - 1;  // Monday = 0
      if ((window.days & (1u << weekday)) != 0) openings.push_back(OpeningOn(window, **zone, day));
    }
    // Openings come in date order, so their starts do not decrease; merge the
    // ones that touch or overlap, then find the first that ends after now.
    for (size_t i = 0; i < openings.size(); ++i) {
      Opening merged = openings[i];
      while (i + 1 < openings.size() && openings[i + 1].opens_ms <= merged.closes_ms) {
        merged.closes_ms = std::max(merged.closes_ms, openings[++i].closes_ms);
      }
      if (now_ms < merged.closes_ms) {
        return WindowStatus{now_ms >= merged.opens_ms, merged.opens_ms, merged.closes_ms};
      }
    }
  } catch (const std::exception& e) {
    return Status::IOError(fmt::format("time zone '{}': {}", zone_name, e.what()));
  }
  // A valid window lists a weekday, which recurs within the eight days searched.
  return Status::FailedPrecondition("no opening within eight days");
}

}  // namespace meridian
