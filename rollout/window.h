// Rollout windows: "stages advance only between 02:00 and 05:00 local time,
// Monday to Saturday", in each region's IANA time zone. Pure apart from reading
// the system tz database (/usr/share/zoneinfo); no clock reads — now is passed
// in as Unix milliseconds, like the rest of rollout/. Nothing here throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace meridian {

inline constexpr size_t kRolloutWindowTextBytesMax = 64;
inline constexpr size_t kTimeZoneBytesMax = 64;
// EvaluateWindow refuses later instants: the system's TZif files list DST
// transitions only up to 2037, and the date library does not read their
// footer rule, so past that it would silently use the last offset forever.
inline constexpr int64_t kWindowNowMsMax = 2'143'238'400'000;  // 2037-12-01T00:00:00Z

// A weekly window: days of the week and a local start and end time of day.
// An end before the start crosses midnight: the window opens on the listed
// day and closes on the next, which need not be listed itself.
struct RolloutWindow {
  uint8_t days = 0;      // bit d = weekday d, Monday = 0 .. Sunday = 6
  int start_minute = 0;  // minutes after local midnight, in [0, 1440)
  int end_minute = 0;    // in [0, 1440), never equal to start_minute

  bool operator==(const RolloutWindow&) const = default;
};

// Parses "<days> <HH:MM>-<HH:MM>", for example "Mon-Sat 02:00-05:00",
// "Sat,Sun 22:00-04:00" (crosses midnight) or "daily 01:00-03:00".
// Days: Mon Tue Wed Thu Fri Sat Sun, ranges (which may wrap: Fri-Mon), comma
// lists of both, or "daily"; each day at most once. Times are 00:00 to 23:59
// (midnight as an end is 00:00). A window whose start equals its end is
// refused ("empty window"): 24 hours is "no window", not a window.
// InvalidArgument says what is wrong and shows the expected form; the text
// is at most kRolloutWindowTextBytesMax bytes of printable ASCII.
Result<RolloutWindow> ParseRolloutWindow(std::string_view text);

// The canonical text of a window ParseRolloutWindow accepted: days Monday
// first, runs of three or more days as ranges ("Mon,Fri-Sun"), "daily" for
// all seven. It parses back to the same window.
std::string RolloutWindowText(const RolloutWindow& window);

// OK when `zone` names a zone of the system tz database ("Asia/Singapore");
// otherwise InvalidArgument "unknown time zone 'X' (not in the system tz
// database)". "localtime" is refused: it is the host's zone, not a region's.
// IOError when the database itself cannot be read.
Status CheckTimeZone(std::string_view zone);

// Where `now` stands with respect to a window: [opens_ms, closes_ms) is the
// opening that contains now (open) or the next one, strictly after now
// (closed). Openings that touch or overlap (a DST change can make a window
// crossing midnight run into the next day's) count as one.
struct WindowStatus {
  bool open = false;
  int64_t opens_ms = 0;
  int64_t closes_ms = 0;

  bool operator==(const WindowStatus&) const = default;
};

// Each opening belongs to the local date (in `zone`) it opens on; local times
// become instants by the zone's rules for that date:
//   - a time skipped by a spring-forward gap means the first instant after the
//     gap (the transition), for the start and the end alike;
//   - a time that occurs twice at fall-back means its first occurrence for the
//     start and its last for the end, so every instant whose wall clock reads
//     inside the window is inside the one opening;
//   - a window lying wholly inside a gap would last no time: it opens at the
//     transition for its nominal length instead.
// So an opening is never skipped and a listed day never opens twice.
// InvalidArgument for a window ParseRolloutWindow would not produce, an
// unknown zone (see CheckTimeZone), or now_ms outside [0, kWindowNowMsMax);
// IOError when the zone's data cannot be read.
Result<WindowStatus> EvaluateWindow(const RolloutWindow& window, std::string_view zone, int64_t now_ms);

}  // namespace meridian
