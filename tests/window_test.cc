// Tests of rollout/window.h: parsing and canonical text, time zone checks, and
// openings in real zones of the system tz database, DST changes included.
// Expected instants were computed apart, with GNU date, e.g.
//   TZ=America/New_York date -d '2026-11-01 01:30 EST' +%s
#include <catch2/catch.hpp>

#include <ostream>
#include <string>

#include <fmt/format.h>

#include "rollout/window.h"

namespace meridian {
// For Catch's messages when a comparison fails.
std::ostream& operator<<(std::ostream& os, const WindowStatus& s) {
  return os << (s.open ? "open" : "closed") << " [" << s.opens_ms << ", " << s.closes_ms << ")";
}
}  // namespace meridian

using namespace meridian;

namespace {

constexpr int64_t kSecondMs = 1000;

RolloutWindow ParseOrDie(std::string_view text) {
  Result<RolloutWindow> w = ParseRolloutWindow(text);
  INFO(text << ": " << w.status().ToString());
  REQUIRE(w.ok());
  return *w;
}

WindowStatus Eval(std::string_view text, std::string_view zone, int64_t now_ms) {
  Result<WindowStatus> s = EvaluateWindow(ParseOrDie(text), zone, now_ms);
  INFO(text << " in " << zone << " at " << now_ms << ": " << s.status().ToString());
  REQUIRE(s.ok());
  return *s;
}

// An open window, or a closed one, with its opening in Unix seconds.
WindowStatus Open(int64_t opens_s, int64_t closes_s) { return {true, opens_s * kSecondMs, closes_s * kSecondMs}; }
WindowStatus Closed(int64_t opens_s, int64_t closes_s) { return {false, opens_s * kSecondMs, closes_s * kSecondMs}; }

}  // namespace

TEST_CASE("windows parse and print canonically") {
  struct Case {
    const char* text;
    uint8_t days;
    int start_minute;
    int end_minute;
    const char* canonical;
  };
  const Case cases[] = {
      {"Mon-Sat 02:00-05:00", 0x3f, 120, 300, "Mon-Sat 02:00-05:00"},
      {"Sat,Sun 22:00-04:00", 0x60, 1320, 240, "Sat,Sun 22:00-04:00"},
      {"daily 01:00-03:00", 0x7f, 60, 180, "daily 01:00-03:00"},
      {"Mon-Sun 01:00-03:00", 0x7f, 60, 180, "daily 01:00-03:00"},
      {"Fri-Mon 23:59-00:00", 0x71, 1439, 0, "Mon,Fri-Sun 23:59-00:00"},
      {"Sun-Mon 00:00-23:59", 0x41, 0, 1439, "Mon,Sun 00:00-23:59"},
      {"Wed,Mon 12:30-13:45", 0x05, 750, 825, "Mon,Wed 12:30-13:45"},
      {"Tue-Thu,Sat 02:00-05:00", 0x2e, 120, 300, "Tue-Thu,Sat 02:00-05:00"},
      {"Thu 09:05-09:06", 0x08, 545, 546, "Thu 09:05-09:06"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    RolloutWindow w = ParseOrDie(c.text);
    CHECK(w == RolloutWindow{c.days, c.start_minute, c.end_minute});
    CHECK(RolloutWindowText(w) == c.canonical);
    CHECK(ParseOrDie(c.canonical) == w);
  }
}

TEST_CASE("every set of days round-trips through the canonical text") {
  for (unsigned days = 1; days <= 0x7f; ++days) {
    RolloutWindow w{static_cast<uint8_t>(days), 61, 1439};
    std::string text = RolloutWindowText(w);
    INFO(days << " -> " << text);
    CHECK(ParseOrDie(text) == w);
    CHECK(RolloutWindowText(ParseOrDie(text)) == text);
  }
}

TEST_CASE("malformed windows are InvalidArgument saying what is wrong") {
  struct Case {
    std::string text;
    const char* says;
  };
  const Case cases[] = {
      {"", "0 bytes, 1 to 64 allowed"},
      {"Mon-Sat 02:00-05:00" + std::string(46, ' '), "65 bytes, 1 to 64 allowed"},
      {"Mon-Sat 25:00-05:00", "'25:00': hours run 00 to 23"},
      {"Mon-Sat 24:00-05:00", "(midnight is 00:00)"},
      {"Mon-Sat 02:60-05:00", "'02:60': minutes run 00 to 59"},
      {"Mon-Sat 02:00", "no end time"},
      {"Mon-Sat", "no times after the days"},
      {"Funday 01:00-02:00", "'Funday' is not a day"},
      {"mon-sat 02:00-05:00", "'mon' is not a day"},
      {"Mon-Funday 02:00-05:00", "'Funday' is not a day"},
      {"Mon-Tue-Wed 02:00-05:00", "'Tue-Wed' is not a day"},
      {"daily,Mon 02:00-05:00", "'daily' is not a day"},
      {"Mon-Mon 02:00-05:00", "range 'Mon-Mon' is a single day; write 'Mon'"},
      {"Mon,Mon 02:00-05:00", "'Mon' lists a day already listed"},
      {"Mon-Wed,Tue 02:00-05:00", "'Tue' lists a day already listed"},
      {"Mon,,Tue 02:00-05:00", "empty day in the list"},
      {"Mon, 02:00-05:00", "empty day in the list"},
      {" Mon 02:00-05:00", "exactly one space"},
      {"Mon  02:00-05:00", "exactly one space"},
      {"Mon 02:00-05:00 ", "exactly one space"},
      {"Mon 2:00-05:00", "'2:00' is not a time HH:MM"},
      {"Mon 02:00-05:00-06:00", "'05:00-06:00' is not a time HH:MM"},
      {"Mon 02:00-", "'' is not a time HH:MM"},
      {"Mon 02h00-05h00", "'02h00' is not a time HH:MM"},
      {"Mon-Sat 02:00-02:00", "empty window"},
      {"Mon-Sat\t02:00-05:00", "only printable ASCII"},
      {"Mon-Sat 02:00\xe2\x80\x93" "05:00", "only printable ASCII"},  // an en dash
      {std::string("Mon\0 02:00-05:00", 16), "only printable ASCII"},
  };
  for (const Case& c : cases) {
    INFO("'" << c.text << "'");
    Result<RolloutWindow> w = ParseRolloutWindow(c.text);
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == Status::Code::kInvalidArgument);
    CHECK_THAT(w.status().message(), Catch::Contains(c.says));
    CHECK_THAT(w.status().message(), Catch::Contains("expected '<days> <HH:MM>-<HH:MM>' such as 'Mon-Sat 02:00-05:00'"));
  }
}

TEST_CASE("time zones come from the system tz database") {
  for (const char* zone : {"Asia/Singapore", "Asia/Dubai", "America/Sao_Paulo", "America/New_York", "Europe/London",
                           "UTC", "Etc/GMT+5"}) {
    INFO(zone);
    CHECK(CheckTimeZone(zone).ok());
  }
  Status unknown = CheckTimeZone("Mars/Olympus_Mons");
  CHECK(unknown.code() == Status::Code::kInvalidArgument);
  CHECK(unknown.message() == "unknown time zone 'Mars/Olympus_Mons' (not in the system tz database)");
  // Files of /usr/share/zoneinfo that are not zones, or zones by another path.
  for (const char* zone : {"posix/Asia/Singapore", "right/Asia/Singapore", "asia/singapore"}) {
    INFO(zone);
    CHECK(CheckTimeZone(zone).message() == fmt::format("unknown time zone '{}' (not in the system tz database)", zone));
  }
  for (const char* zone : {"", "../../etc/passwd", "zone.tab", "Asia/Singapore ", "Asia\\Singapore"}) {
    INFO(zone);
    CHECK(CheckTimeZone(zone).code() == Status::Code::kInvalidArgument);
    CHECK_THAT(CheckTimeZone(zone).message(), Catch::Contains("a time zone is 1 to 64 bytes of"));
  }
  CHECK(CheckTimeZone(std::string(65, 'A')).code() == Status::Code::kInvalidArgument);
  CHECK_THAT(CheckTimeZone("localtime").message(), Catch::Contains("'localtime' is the host's time zone"));
}

TEST_CASE("Asia/Singapore: exact boundaries of Mon-Sat 02:00-05:00, and the weekend gap") {
  const char* w = "Mon-Sat 02:00-05:00";
  const char* sg = "Asia/Singapore";
  // Mon 2026-03-02 02:00 +08 = 1772388000, 05:00 = 1772398800.
  CHECK(Eval(w, sg, 1772388000 * kSecondMs - 1) == Closed(1772388000, 1772398800));
  CHECK(Eval(w, sg, 1772388000 * kSecondMs) == Open(1772388000, 1772398800));
  CHECK(Eval(w, sg, 1772398800 * kSecondMs - 1) == Open(1772388000, 1772398800));
  // The end is exclusive; the next opening is Tuesday's.
  CHECK(Eval(w, sg, 1772398800 * kSecondMs) == Closed(1772388000 + 86400, 1772398800 + 86400));
  // Sat 2026-03-07 05:00 (1772830800): Sunday is not listed, next is Mon 2026-03-09 02:00.
  CHECK(Eval(w, sg, 1772830800 * kSecondMs) == Closed(1772992800, 1773003600));
  CHECK(Eval(w, sg, (1772830800 + 86400) * kSecondMs) == Closed(1772992800, 1773003600));  // Sunday 05:00
  // Mon 2026-03-09 03:00, an hour into the window.
  CHECK(Eval(w, sg, (1772992800 + 3600) * kSecondMs) == Open(1772992800, 1773003600));
}

TEST_CASE("Asia/Dubai: a window crossing midnight belongs to the day it opens on") {
  const char* w = "Sat,Sun 22:00-04:00";
  const char* dubai = "Asia/Dubai";
  // Fri 2026-03-06 22:00 +04 (1772820000): Friday is not listed; Sat 22:00 to Sun 04:00 is next.
  CHECK(Eval(w, dubai, 1772820000 * kSecondMs) == Closed(1772906400, 1772928000));
  CHECK(Eval(w, dubai, 1772906400 * kSecondMs) == Open(1772906400, 1772928000));
  CHECK(Eval(w, dubai, (1772928000 - 3600) * kSecondMs) == Open(1772906400, 1772928000));  // Sun 03:00
  // Sun 04:00: closed until Sunday's own opening at 22:00.
  CHECK(Eval(w, dubai, 1772928000 * kSecondMs) == Closed(1772992800, 1773014400));
  // Mon 2026-03-09 03:00: Monday is not listed, but Sunday's opening runs to 04:00.
  CHECK(Eval(w, dubai, (1773014400 - 3600) * kSecondMs) == Open(1772992800, 1773014400));
  // Mon 04:00: nothing until Sat 2026-03-14 22:00.
  CHECK(Eval(w, dubai, 1773014400 * kSecondMs) == Closed(1772906400 + 7 * 86400, 1772928000 + 7 * 86400));
}

TEST_CASE("America/Sao_Paulo: -03 all year (no DST since 2019)") {
  const char* w = "Mon-Sat 02:00-05:00";
  const char* sp = "America/Sao_Paulo";
  // Sat 2026-01-10 02:00 -03 = 05:00Z (it would be 04:00Z under the old summer time).
  CHECK(Eval(w, sp, 1768021200 * kSecondMs - 1) == Closed(1768021200, 1768032000));
  CHECK(Eval(w, sp, 1768021200 * kSecondMs) == Open(1768021200, 1768032000));
  // Sat 2026-10-17 05:00 to Mon 2026-10-19 02:00, across the Sunday summer time used to start on.
  CHECK(Eval(w, sp, (1792213200 + 3 * 3600) * kSecondMs) == Closed(1792386000, 1792386000 + 3 * 3600));
}

TEST_CASE("America/New_York spring forward, 2026-03-08 02:00 EST -> 03:00 EDT") {
  const char* ny = "America/New_York";
  // 02:00 does not exist that day: the window opens at the transition, 07:00Z, and closes at 05:00 EDT.
  CHECK(Eval("Sun 02:00-05:00", ny, 1772953200 * kSecondMs - 1) == Closed(1772953200, 1772960400));
  CHECK(Eval("Sun 02:00-05:00", ny, 1772953200 * kSecondMs) == Open(1772953200, 1772960400));
  // The day before, 02:00 EST is 07:00Z too, the day after 02:00 EDT is 06:00Z.
  CHECK(Eval("daily 02:00-05:00", ny, 1772866800 * kSecondMs) == Open(1772866800, 1772866800 + 3 * 3600));
  CHECK(Eval("daily 02:00-05:00", ny, 1772960400 * kSecondMs) == Closed(1773036000, 1773036000 + 3 * 3600));
  // An end inside the gap closes at the transition: Sat 23:00 EST to 03:00 EDT.
  CHECK(Eval("Sat 23:00-02:30", ny, 1772942400 * kSecondMs) == Open(1772942400, 1772953200));
  // A window wholly inside the gap is not skipped: it opens at the transition for its 30 minutes.
  CHECK(Eval("Sun 02:10-02:40", ny, 1772953200 * kSecondMs - 1) == Closed(1772953200, 1772955000));
  CHECK(Eval("Sun 02:10-02:40", ny, 1772953200 * kSecondMs) == Open(1772953200, 1772955000));
}

TEST_CASE("America/New_York fall back, 2026-11-01 02:00 EDT -> 01:00 EST") {
  const char* ny = "America/New_York";
  // 02:00 and 05:00 occur once (EST): three hours.
  CHECK(Eval("Sun 02:00-05:00", ny, 1793516400 * kSecondMs) == Open(1793516400, 1793527200));
  // A start that occurs twice opens at its first occurrence, 01:30 EDT (05:30Z) ...
  CHECK(Eval("Sun 01:30-03:00", ny, 1793511000 * kSecondMs - 1) == Closed(1793511000, 1793520000));
  CHECK(Eval("Sun 01:30-03:00", ny, 1793511000 * kSecondMs) == Open(1793511000, 1793520000));
  // ... and an end that occurs twice closes at its last, 01:30 EST (06:30Z): at 01:00 EST the
  // clock reads inside 00:00-01:30, and the window is open. 00:00 EDT is 04:00Z.
  CHECK(Eval("Sun 00:00-01:30", ny, 1793512800 * kSecondMs) == Open(1793505600, 1793514600));
  CHECK(Eval("Sun 00:00-01:30", ny, 1793514600 * kSecondMs) == Closed(1793505600 + 7 * 86400 + 3600, 1793514600 + 7 * 86400));
  // Saturday's 01:45-01:30 opening runs to 01:30 EST, past Sunday's start at 01:45 EDT: one
  // opening from Sat 01:45 EDT to Mon 01:30 EST, not two, and Sunday does not open twice.
  CHECK(Eval("daily 01:45-01:30", ny, 1793512200 * kSecondMs) == Open(1793425500, 1793601000));
  CHECK(Eval("daily 01:45-01:30", ny, 1793601000 * kSecondMs) == Closed(1793601000 + 900, 1793601000 + 86400));
}

TEST_CASE("Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST, 2026-10-25 02:00 BST -> 01:00 GMT") {
  const char* london = "Europe/London";
  // Spring: 01:00 does not exist, the window opens at the transition (01:00Z) and closes at 03:00 BST.
  CHECK(Eval("Sun 01:00-03:00", london, 1774746000 * kSecondMs - 1) == Closed(1774746000, 1774749600));
  CHECK(Eval("Sun 01:00-03:00", london, 1774746000 * kSecondMs) == Open(1774746000, 1774749600));
  CHECK(Eval("Sun 01:00-01:30", london, 1774746000 * kSecondMs) == Open(1774746000, 1774746000 + 1800));
  // Autumn: from the first 01:00 (BST, 00:00Z) to 03:00 GMT, three hours by the clock, four by UTC;
  // open at 01:30 GMT, the second pass of the clock through 01:30.
  CHECK(Eval("Sun 01:00-03:00", london, 1792886400 * kSecondMs - 1) == Closed(1792886400, 1792897200));
  CHECK(Eval("Sun 01:00-03:00", london, 1792891800 * kSecondMs) == Open(1792886400, 1792897200));
}

TEST_CASE("EvaluateWindow refuses what it cannot judge") {
  const int64_t now_ms = 1772388000 * kSecondMs;
  RolloutWindow good = ParseOrDie("Mon-Sat 02:00-05:00");
  for (RolloutWindow bad : {RolloutWindow{0, 120, 300}, RolloutWindow{0x80, 120, 300}, RolloutWindow{0x01, 120, 120},
                            RolloutWindow{0x01, -1, 300}, RolloutWindow{0x01, 120, 1440}}) {
    INFO(int{bad.days} << " " << bad.start_minute << "-" << bad.end_minute);
    CHECK(EvaluateWindow(bad, "Asia/Singapore", now_ms).status().code() == Status::Code::kInvalidArgument);
  }
  Result<WindowStatus> unknown = EvaluateWindow(good, "Asia/Atlantis", now_ms);
  CHECK(unknown.status().message() == "unknown time zone 'Asia/Atlantis' (not in the system tz database)");
  CHECK(EvaluateWindow(good, "Asia/Singapore", -1).status().code() == Status::Code::kInvalidArgument);
  CHECK(EvaluateWindow(good, "Asia/Singapore", kWindowNowMsMax).status().code() == Status::Code::kInvalidArgument);
  CHECK(EvaluateWindow(good, "Asia/Singapore", 0).ok());
  // The last accepted instant, Mon 2037-11-30 23:59:59.999Z, is Tue 07:59 +08: Wednesday's opening is next.
  CHECK(*EvaluateWindow(good, "Asia/Singapore", kWindowNowMsMax - 1) ==
        Closed(2143238400 + 18 * 3600, 2143238400 + 21 * 3600));
}
