// Unit tests of the known-terminal registry (daemon/terminal_registry.h)
// over a real store in a temporary directory and a fake clock: what a poll
// and a report record, the bound, the batched flush and loading it back.
#include "daemon/terminal_registry.h"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

struct Fixture {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store;

  Fixture() {
    Result<std::unique_ptr<Store>> s = Store::Open(dir / "store");
    REQUIRE(s.ok());
    store = std::move(*s);
  }

  std::unique_ptr<TerminalRegistry> Open(TerminalRegistryOptions options = {}) {
    Result<std::unique_ptr<TerminalRegistry>> r = TerminalRegistry::Open(*store, clock, options);
    REQUIRE(r.ok());
    return std::move(*r);
  }

  // The stored record of a terminal, parsed; null when there is none.
  nlohmann::json Stored(const std::string& key) {
    Result<std::string> v = store->GetState(key);
    return v.ok() ? nlohmann::json::parse(*v) : nlohmann::json();
  }
};

std::vector<KnownTerminal> Known(const TerminalRegistry& r, const std::string& model, const std::string& channel) {
  FleetQuery q;
  q.model = model;
  q.channel = channel;
  q.limit = 1000;
  return r.Terminals(q).terminals;
}

TerminalReport Report(const std::string& id, const std::string& version, ReportOutcome outcome) {
  TerminalReport r;
  r.terminal_id = id;
  r.profile = "jetson";
  r.region = "sg";
  r.version = version;
  r.outcome = outcome;
  return r;
}

}  // namespace

TEST_CASE("terminal registry: a poll records what the terminal declared, per channel") {
  Fixture f;
  auto reg = f.Open();
  reg->RecordPoll("resnet", "stable", {"t2", "jetson", "sg", "1.0.0"});
  reg->RecordPoll("resnet", "stable", {"t1", "pi", "br", ""});
  reg->RecordPoll("resnet", "beta", {"t1", "pi", "br", "2.0.0"});
  CHECK(reg->size() == 3);  // records, not distinct terminals

  std::vector<KnownTerminal> stable = Known(*reg, "resnet", "stable");
  REQUIRE(stable.size() == 2);
  CHECK(stable[0].info.id == "t1");  // id order
  CHECK(stable[1].info.current_version == "1.0.0");
  CHECK(stable[1].last_seen_ms == f.clock.NowUnixMillis());
  CHECK(Known(*reg, "resnet", "nightly").empty());

  SECTION("Latest: the most recently seen record of each id, over every channel") {
    f.clock.Advance(std::chrono::seconds(1));
    reg->RecordPoll("resnet", "stable", {"t1", "pi", "de", ""});
    std::vector<TerminalInfo> latest = reg->Latest({"t1", "nobody", "t2"});
    REQUIRE(latest.size() == 2);
    CHECK(latest[0].id == "t1");
    CHECK(latest[0].region == "de");
    CHECK(latest[1].id == "t2");
  }
}

TEST_CASE("terminal registry: a report makes a terminal known and keeps its failed version") {
  Fixture f;
  auto reg = f.Open();
  reg->RecordReport("resnet", "stable", Report("t1", "1.1.0", ReportOutcome::kFailure));
  std::vector<KnownTerminal> k = Known(*reg, "resnet", "stable");
  REQUIRE(k.size() == 1);
  CHECK(k[0].info.current_version.empty());  // a failed install runs nothing new
  CHECK(k[0].failed_version == "1.1.0");

  reg->RecordReport("resnet", "stable", Report("t1", "1.0.0", ReportOutcome::kSuccess));
  k = Known(*reg, "resnet", "stable");
  CHECK(k[0].info.current_version == "1.0.0");
  CHECK(k[0].failed_version.empty());  // cleared by a success

  reg->RecordReport("resnet", "stable", Report("t1", "1.1.0", ReportOutcome::kFailure));
  k = Known(*reg, "resnet", "stable");
  CHECK(k[0].info.current_version == "1.0.0");  // still runs what it ran
  CHECK(k[0].failed_version == "1.1.0");
  CHECK(reg->size() == 1);
}

TEST_CASE("terminal registry: bounded by terminals_max; a full registry still updates whom it knows") {
  Fixture f;
  auto reg = f.Open({.terminals_max = 2});
  reg->RecordPoll("resnet", "stable", {"t1", "pi", "sg", ""});
  reg->RecordPoll("resnet", "beta", {"t1", "pi", "sg", ""});
  reg->RecordPoll("resnet", "stable", {"t2", "pi", "sg", ""});
  CHECK(reg->size() == 2);
  CHECK(Known(*reg, "resnet", "stable").size() == 1);
  reg->RecordPoll("resnet", "stable", {"t1", "pi", "sg", "1.0.0"});
  CHECK(Known(*reg, "resnet", "stable")[0].info.current_version == "1.0.0");

  SECTION("a report of a terminal new to a full registry is not kept either") {
    reg->RecordReport("resnet", "stable", Report("t2", "1.1.0", ReportOutcome::kFailure));
    reg->RecordPoll("resnet", "stable", {"t2", "pi", "sg", ""});
    std::vector<KnownTerminal> k = Known(*reg, "resnet", "stable");
    REQUIRE(k.size() == 1);
    CHECK(k[0].info.id == "t1");
    CHECK(reg->size() == 2);
    CHECK(reg->Latest({"t2"}).empty());
  }
}

TEST_CASE("terminal registry: flushed in batches, a quiet terminal at most every touch_ms, loaded back") {
  Fixture f;
  const std::string key = "terminal/resnet/stable/t1";
  {
    auto reg = f.Open({.touch_ms = 60'000, .flush_ops_max = 2});
    reg->RecordPoll("resnet", "stable", {"t1", "pi", "sg", "1.0.0"});
    CHECK(f.Stored(key).is_null());  // a poll costs no store write
    reg->Flush();
    nlohmann::json j = f.Stored(key);
    CHECK(j == nlohmann::json{{"profile", "pi"}, {"region", "sg"}, {"current_version", "1.0.0"},
                              {"last_seen_ms", f.clock.NowUnixMillis()}});
    int64_t first_seen = f.clock.NowUnixMillis();

    f.clock.Advance(std::chrono::seconds(10));
    reg->RecordPoll("resnet", "stable", {"t1", "pi", "sg", "1.0.0"});
    reg->Flush();
    CHECK(f.Stored(key)["last_seen_ms"] == first_seen);  // unchanged and within touch_ms
    f.clock.Advance(std::chrono::seconds(60));
    reg->RecordPoll("resnet", "stable", {"t1", "pi", "sg", "1.0.0"});
    reg->Flush();
    CHECK(f.Stored(key)["last_seen_ms"] == f.clock.NowUnixMillis());

    for (const char* id : {"t2", "t3", "t4"}) reg->RecordPoll("resnet", "stable", {id, "pi", "sg", ""});
    reg->Flush();
    Result<StateRecords> stored = f.store->ScanState("terminal/");
    REQUIRE(stored.ok());
    CHECK(stored->size() == 3);  // t1 and the first batch of two
    reg->Flush();
    stored = f.store->ScanState("terminal/");
    REQUIRE(stored.ok());
    CHECK(stored->size() == 4);
  }
  auto again = f.Open({.terminals_max = 3});
  CHECK(again->size() == 3);  // the first terminals_max in key order
  std::vector<KnownTerminal> k = Known(*again, "resnet", "stable");
  REQUIRE(k.size() == 3);
  CHECK(k[0].info.id == "t1");
  CHECK(k[0].info.current_version == "1.0.0");
  CHECK(k[0].last_seen_ms == f.clock.NowUnixMillis());
}

TEST_CASE("terminal registry: a report's failed version is written at the next flush, not the next touch") {
  Fixture f;
  const std::string key = "terminal/resnet/stable/t1";
  auto reg = f.Open();
  reg->RecordPoll("resnet", "stable", {"t1", "jetson", "sg", "1.0.0"});
  reg->Flush();
  f.clock.Advance(std::chrono::seconds(1));
  reg->RecordReport("resnet", "stable", Report("t1", "1.1.0", ReportOutcome::kFailure));
  reg->Flush();
  CHECK(f.Stored(key)["failed_version"] == "1.1.0");
  f.clock.Advance(std::chrono::seconds(1));
  reg->RecordReport("resnet", "stable", Report("t1", "1.0.0", ReportOutcome::kSuccess));
  reg->Flush();
  CHECK_FALSE(f.Stored(key).contains("failed_version"));  // empty fields are left out
}

TEST_CASE("terminal registry: terminals counted by the version they run, per channel, bounded") {
  Fixture f;
  using Counts = std::map<std::string, uint64_t>;
  {
    auto reg = f.Open();
    reg->RecordPoll("resnet", "stable", {"t1", "pi", "sg", "1.0.0"});
    reg->RecordPoll("resnet", "stable", {"t2", "pi", "sg", "1.0.0"});
    reg->RecordPoll("resnet", "stable", {"t3", "pi", "sg", ""});
    reg->RecordPoll("bert", "beta", {"t1", "pi", "sg", "2.0.0"});
    reg->RecordReport("resnet", "stable", Report("t2", "1.1.0", ReportOutcome::kSuccess));  // moved on
    reg->RecordReport("resnet", "stable", Report("t1", "1.1.0", ReportOutcome::kFailure));  // still on 1.0.0

    FleetVersions all = reg->Versions(100);
    CHECK_FALSE(all.truncated);
    REQUIRE(all.channels.size() == 2);
    CHECK(all.channels[0].model == "bert");  // (model, channel) order
    CHECK(all.channels[0].terminals_by_version == Counts{{"2.0.0", 1}});
    CHECK(all.channels[1].channel == "stable");
    CHECK(all.channels[1].terminals_by_version == Counts{{"", 1}, {"1.0.0", 1}, {"1.1.0", 1}});

    FleetVersions two = reg->Versions(2);
    CHECK(two.truncated);
    REQUIRE(two.channels.size() == 2);
    CHECK(two.channels[1].terminals_by_version == Counts{{"", 1}});
    CHECK(reg->Versions(1).channels.size() == 1);  // no channel listed without a version
    reg->Flush();
  }
  // Counted again from the stored records.
  FleetVersions loaded = f.Open()->Versions(100);
  REQUIRE(loaded.channels.size() == 2);
  CHECK(loaded.channels[1].terminals_by_version == Counts{{"", 1}, {"1.0.0", 1}, {"1.1.0", 1}});
}

TEST_CASE("terminal registry: a damaged record is Corruption at open") {
  Fixture f;
  SECTION("not JSON") { REQUIRE(f.store->WriteState({{"terminal/resnet/stable/t1", "{"}}).ok()); }
  SECTION("not an object") { REQUIRE(f.store->WriteState({{"terminal/resnet/stable/t1", "[]"}}).ok()); }
  SECTION("a key of three parts") { REQUIRE(f.store->WriteState({{"terminal/resnet/t1", "{}"}}).ok()); }
  Result<std::unique_ptr<TerminalRegistry>> r = TerminalRegistry::Open(*f.store, f.clock);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kCorruption);
}
