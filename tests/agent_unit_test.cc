// Unit tests of the agent's local parts: configuration errors, slot switching
// and rollback on a temp dir, the report outbox, backoff bounds, health checks,
// and the periodic health report of an agent whose servers do not answer.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/backoff.h"
#include "agent/config.h"
#include "agent/health.h"
#include "agent/outbox.h"
#include "agent/slots.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/env.h"
#include "base/file.h"
#include "signing/signing.h"

using namespace meridian;

namespace {

struct Tmp {
  std::string path;
  Tmp() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "agent-unit-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~Tmp() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

const char* kGood = R"(
id = "pos-0001"
profile = "pos-arm64"
region = "sg"
servers = ["http://127.0.0.1:7400", "http://127.0.0.1:7401"]
root = "/etc/meridian/root.json"
state = "/var/lib/meridian-agent"
key_file = "/var/lib/meridian-agent/terminal.key"
credential_servers = ["https://origin.example"]
bandwidth_limit_bytes_per_s = 1000000
[[model]]
name = "fraud-detector"
channel = "stable"
health_check = "/usr/local/bin/check-model {path}"
)";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::string Staged(const std::string& dir, const std::string& content) {
  std::string p = dir + "/staging/file";
  REQUIRE(WriteFileAtomic(p, content).ok());
  return p;
}

// A self-signed root envelope (one deterministic key in every role) at `path`:
// enough for Agent::Open, which loads the trusted root before anything else.
void WriteRoot(const std::string& path) {
  Result<SecretKey> key = SecretKey::FromSeed(Bytes(kSeedBytes, 7));
  REQUIRE(key.ok());
  Root root;
  root.expires = "2030-01-01T00:00:00.000Z";
  root.keys[key->KeyId()] = key->public_key();
  for (const char* role : {"root", "release", "online"}) root.roles[role] = Role{{key->KeyId()}, 1};
  Envelope env{std::string(kRootPayloadType), ToBytes(RootToJson(root)), {}};
  SignEnvelope(env, *key);
  REQUIRE(WriteFileAtomic(path, EnvelopeToJson(env)).ok());
}

std::vector<nlohmann::json> OutboxReports(const std::string& state) {
  Result<std::vector<PendingReport>> pending = Outbox(state + "/outbox").Oldest(100);
  REQUIRE(pending.ok());
  std::vector<nlohmann::json> out;
  for (const PendingReport& r : *pending) out.push_back(nlohmann::json::parse(r.body));
  return out;
}

}  // namespace

TEST_CASE("config: the issue's keys parse") {
  Result<AgentConfig> c = ParseAgentConfig(kGood);
  REQUIRE(c.ok());
  CHECK(c->id == "pos-0001");
  CHECK(c->profile == "pos-arm64");
  CHECK(c->region == "sg");
  CHECK(c->servers.size() == 2);
  CHECK(c->key_file == "/var/lib/meridian-agent/terminal.key");
  CHECK(c->credential_servers == std::vector<std::string>{"https://origin.example"});
  CHECK(c->bandwidth_limit_bytes_per_s == 1000000);
  REQUIRE(c->models.size() == 1);
  CHECK(c->models[0].name == "fraud-detector");
  CHECK(c->models[0].health_check == "/usr/local/bin/check-model {path}");
}

TEST_CASE("config: errors name the problem") {
  auto error_of = [](const std::string& text) {
    Result<AgentConfig> c = ParseAgentConfig(text);
    REQUIRE(!c.ok());
    CHECK(c.status().code() == Status::Code::kInvalidArgument);
    return c.status().message();
  };
  CHECK_THAT(error_of(std::string(kGood) + "\nrgion = \"x\"\n"), Catch::Contains("unknown key 'rgion'"));
  CHECK_THAT(error_of(Replace(kGood, "channel = \"stable\"", "chanel = \"stable\"")),
             Catch::Contains("[[model]]: unknown key 'chanel'"));
  CHECK_THAT(error_of(Replace(kGood, "id = \"pos-0001\"", "")), Catch::Contains("'id' is required"));
  CHECK_THAT(error_of(Replace(kGood, "state = \"/var/lib/meridian-agent\"", "")), Catch::Contains("'state'"));
  CHECK_THAT(error_of(Replace(kGood, "servers = [\"http://127.0.0.1:7400\", \"http://127.0.0.1:7401\"]",
                              "servers = [\"ftp://x\"]")),
             Catch::Contains("http://"));
  CHECK_THAT(error_of(Replace(kGood, "bandwidth_limit_bytes_per_s = 1000000", "bandwidth_limit_bytes_per_s = \"fast\"")),
             Catch::Contains("'bandwidth_limit_bytes_per_s' must be an integer"));
  CHECK_THAT(error_of(Replace(kGood, "name = \"fraud-detector\"", "name = \"Bad Name\"")), Catch::Contains("'name'"));
  CHECK_THAT(error_of("id = "), Catch::Contains("config line"));
  // The fleet-wide token of old: refused with what replaced it.
  CHECK_THAT(error_of("token = \"shared\"\n" + std::string(kGood)), Catch::Contains("each agent has its own key"));
  // Top-level keys go before the first [[model]] table (after it they are the model's, and unknown).
  CHECK_THAT(error_of("poll_wait_s = -1\n" + std::string(kGood)), Catch::Contains("'poll_wait_s' must be in [0, 3600]"));
  CHECK_THAT(error_of("health_interval_ms = 999\n" + std::string(kGood)),
             Catch::Contains("'health_interval_ms' must be 0 (off) or at least 1000"));
  CHECK_THAT(error_of("health_interval_ms = -1\n" + std::string(kGood)),
             Catch::Contains("'health_interval_ms' must be in [0, 604800000]"));
  CHECK_THAT(error_of("health_interval_ms = 604800001\n" + std::string(kGood)),
             Catch::Contains("'health_interval_ms' must be in [0, 604800000]"));
  CHECK_THAT(error_of("stall_timeout_ms = 999\n" + std::string(kGood)),
             Catch::Contains("'stall_timeout_ms' must be in [1000, 3600000]"));
  CHECK(ParseAgentConfig(kGood)->stall_timeout_ms == 60'000);
  CHECK(ParseAgentConfig("stall_timeout_ms = 5000\n" + std::string(kGood))->stall_timeout_ms == 5'000);
}

TEST_CASE("config: health_interval_ms defaults to 15 minutes; 0 turns it off") {
  CHECK(ParseAgentConfig(kGood)->health_interval_ms == 900'000);
  auto with = [](const std::string& line) { return ParseAgentConfig(line + "\n" + kGood); };
  CHECK(with("health_interval_ms = 0")->health_interval_ms == 0);
  CHECK(with("health_interval_ms = 60000")->health_interval_ms == 60'000);
}

TEST_CASE("slots: install, previous kept, switch back after a failure and for a rollback") {
  Tmp t;
  ModelSlots s(t.path + "/m");
  REQUIRE(s.Init().ok());
  REQUIRE(s.Current().ok());
  CHECK(!s.Current()->has_value());

  Digest d1 = Digest::Of("one"), d2 = Digest::Of("two"), d3 = Digest::Of("three");
  REQUIRE(s.Install(Staged(s.dir(), "one"), "1.0.0", d1).ok());
  REQUIRE(s.Current()->has_value());
  CHECK((*s.Current())->version == "1.0.0");
  CHECK(!s.Previous()->has_value());
  // The pointer the inference app reads is a symlink to the complete file.
  CHECK(std::string(AsString(AsBytes(*ReadFileToString(s.current_link(), 100)))) == "one");

  REQUIRE(s.Install(Staged(s.dir(), "two"), "2.0.0", d2).ok());
  CHECK((*s.Current())->digest == d2);
  CHECK((*s.Previous())->digest == d1);

  // Rollback target: back to 1.0.0, keeping 2.0.0 as the previous slot.
  REQUIRE(s.SwitchBack().ok());
  CHECK((*s.Current())->digest == d1);
  CHECK((*s.Previous())->digest == d2);
  REQUIRE(s.Activate("2.0.0", d2).ok());
  CHECK((*s.Current())->digest == d2);

  // A failed health check: back to the previous, the failed file dropped,
  // and what was previous before the switch is the fallback again.
  std::optional<Slot> before = *s.Previous();
  REQUIRE(before.has_value());
  CHECK(before->digest == d1);
  REQUIRE(s.Install(Staged(s.dir(), "three"), "3.0.0", d3).ok());
  std::optional<Slot> failed = *s.Current();
  REQUIRE(s.FallBack(before).ok());
  CHECK((*s.Current())->digest == d2);
  REQUIRE(s.Previous()->has_value());
  CHECK((*s.Previous())->digest == d1);
  // The version that failed is never the fallback; without one, no slot is previous.
  REQUIRE(s.Activate("3.0.0", d3).ok());
  REQUIRE(s.FallBack(failed).ok());
  CHECK((*s.Current())->digest == d2);
  CHECK(!s.Previous()->has_value());
  CHECK(s.FallBack(std::nullopt).code() == Status::Code::kFailedPrecondition);

  REQUIRE(WriteFileAtomic(s.staging_dir() + "/download.part", "partial").ok());
  REQUIRE(s.CollectGarbage(true).ok());
  size_t blobs = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(s.dir() + "/blobs")) ++blobs;
  CHECK(blobs == 1);  // only current's file: 1.0.0 and 3.0.0 are gone
  CHECK(std::filesystem::is_empty(s.staging_dir()));
  CHECK(std::string(*ReadFileToString(s.current_link(), 100)) == "two");
}

TEST_CASE("slots: a malformed or dangling current link is corruption, not a version") {
  Tmp t;
  ModelSlots s(t.path + "/m");
  REQUIRE(s.Init().ok());
  REQUIRE(::symlink("blobs/1.0.0_abc", s.current_link().c_str()) == 0);
  CHECK(s.Current().status().code() == Status::Code::kCorruption);
  ::unlink(s.current_link().c_str());
  std::string missing = "blobs/1.0.0_" + Digest::Of("x").Hex();
  REQUIRE(::symlink(missing.c_str(), s.current_link().c_str()) == 0);
  CHECK(s.Current().status().code() == Status::Code::kCorruption);
}

TEST_CASE("outbox: reports persist across instances, oldest first, until removed") {
  Tmp t;
  {
    Outbox o(t.path + "/outbox");
    REQUIRE(o.Init().ok());
    REQUIRE(o.Add("{\"n\":1}", 1000).ok());
    REQUIRE(o.Add("{\"n\":2}", 2000).ok());
    REQUIRE(o.Add("{\"n\":3}", 3000).ok());
  }
  Outbox again(t.path + "/outbox");  // a restarted agent
  CHECK(again.Count() == 3);
  Result<std::vector<PendingReport>> two = again.Oldest(2);
  REQUIRE(two.ok());
  REQUIRE(two->size() == 2);
  CHECK((*two)[0].body == "{\"n\":1}");
  CHECK((*two)[1].body == "{\"n\":2}");
  REQUIRE(again.Remove((*two)[0]).ok());
  CHECK(again.Count() == 2);
  CHECK((*again.Oldest(10))[0].body == "{\"n\":2}");
  CHECK(again.Add(std::string(kOutboxReportBytesMax + 1, 'x'), 4000).code() == Status::Code::kResourceExhausted);
}

TEST_CASE("backoff: grows exponentially, stays within [ceiling/2, ceiling], capped") {
  std::mt19937_64 rng(42);
  for (int attempt = 0; attempt < 40; ++attempt) {
    int64_t ceiling = std::min<int64_t>(1000ll << std::min(attempt, 20), 60'000);
    for (int i = 0; i < 200; ++i) {
      int64_t d = BackoffDelayMs(attempt, 1000, 60'000, rng());
      CHECK(d >= ceiling / 2);
      CHECK(d <= ceiling);
    }
  }
  CHECK(BackoffDelayMs(0, 1000, 60'000, 0) == 500);
  CHECK(BackoffDelayMs(3, 1000, 60'000, 0) == 4000);
  CHECK(BackoffDelayMs(100, 1000, 60'000, UINT64_MAX) <= 60'000);
}

TEST_CASE("health: metrics lines parsed, junk ignored") {
  auto m = ParseHealthMetrics("latency_ms=12.5\nerror_rate=0.01\nnoise\nBad=1\nx=abc\ny=\nz=inf\nw=-inf\nv=nan\nu=1e999\n");
  CHECK(m.size() == 2);
  CHECK(m["latency_ms"] == Approx(12.5));
  CHECK(m["error_rate"] == Approx(0.01));
}

TEST_CASE("health: exit status, {path} substitution, timeout") {
  Tmp t;
  std::string path = t.path + "/it's a model";
  REQUIRE(WriteFileAtomic(path, "weights").ok());
  HealthResult ok = RunHealthCheck("test -f {path} && echo latency_ms=3", path, 10'000);
  CHECK(ok.pass);
  CHECK(ok.metrics["latency_ms"] == Approx(3));
  HealthResult bad = RunHealthCheck("echo error_rate=0.5; exit 3", path, 10'000);
  CHECK(!bad.pass);
  CHECK_THAT(bad.reason, Catch::Contains("status 3"));
  CHECK(bad.metrics["error_rate"] == Approx(0.5));
  HealthResult slow = RunHealthCheck("sleep 30", path, 200);
  CHECK(!slow.pass);
  CHECK_THAT(slow.reason, Catch::Contains("timed out"));
}

TEST_CASE("agent: the version that runs is health-checked and reported every health_interval_ms") {
  using namespace std::chrono_literals;
  Tmp t;
  AgentConfig config;
  config.id = "pos-1";
  config.profile = "pos-arm64";
  config.region = "sg";
  config.servers = {"http://127.0.0.1:1"};  // nothing listens: reports wait in the outbox
  config.root = t.path + "/root.json";
  config.state = t.path + "/state";
  config.connect_timeout_ms = 2'000;
  config.health_interval_ms = 60'000;
  std::string unhealthy = t.path + "/unhealthy";
  config.models = {{"fraud", "stable", "test -f {path} && echo latency_ms=7.5 && ! test -e " + unhealthy}};
  WriteRoot(config.root);
  // What an earlier run installed: 2.0.0 runs, 1.0.0 is the fallback.
  ModelSlots slots(config.state + "/models/fraud");
  REQUIRE(slots.Init().ok());
  REQUIRE(slots.Install(Staged(slots.dir(), "one"), "1.0.0", Digest::Of("one")).ok());
  REQUIRE(slots.Install(Staged(slots.dir(), "two"), "2.0.0", Digest::Of("two")).ok());

  FakeClock clock;
  auto open = [&] {
    Result<std::unique_ptr<Agent>> agent = Agent::Open(config, clock);
    INFO(agent.status().ToString());
    REQUIRE(agent.ok());
    return std::move(agent).value();
  };
  std::unique_ptr<Agent> agent = open();
  CHECK(agent->RunOnce(0).code() == Status::Code::kUnavailable);
  CHECK(OutboxReports(config.state).empty());  // the interval starts with the first cycle
  clock.Advance(59'999ms);
  CHECK(!agent->RunOnce(0).ok());
  CHECK(OutboxReports(config.state).empty());
  clock.Advance(1ms);
  CHECK(!agent->RunOnce(0).ok());
  std::vector<nlohmann::json> reports = OutboxReports(config.state);
  REQUIRE(reports.size() == 1);
  const nlohmann::json& healthy = reports[0];
  CHECK(healthy["model"] == "fraud");
  CHECK(healthy["version"] == "2.0.0");
  CHECK(healthy["channel"] == "stable");
  CHECK(healthy["rollout"] == "");
  CHECK(healthy["event"] == "installed");
  CHECK(healthy["periodic"] == true);
  CHECK(healthy["reason"] == "");
  CHECK(healthy["profile"] == "pos-arm64");
  CHECK(healthy["region"] == "sg");
  CHECK(healthy["health"] == nlohmann::json{{"pass", true}, {"latency_ms", 7.5}});

  // A failing periodic check is reported, and nothing switches back.
  REQUIRE(WriteFileAtomic(unhealthy, "").ok());
  clock.Advance(60'000ms);
  CHECK(!agent->RunOnce(0).ok());
  reports = OutboxReports(config.state);
  REQUIRE(reports.size() == 2);
  CHECK(reports[1]["event"] == "installed");
  CHECK(reports[1]["health"]["pass"] == false);
  CHECK(reports[1]["health"]["latency_ms"] == 7.5);
  CHECK_THAT(reports[1]["reason"].get<std::string>(), Catch::Contains("status 1"));
  CHECK((*slots.Current())->version == "2.0.0");
  CHECK((*slots.Previous())->version == "1.0.0");

  // A restart keeps the schedule (agent.json): not due again before the interval.
  agent.reset();
  agent = open();
  clock.Advance(30'000ms);
  CHECK(!agent->RunOnce(0).ok());
  CHECK(OutboxReports(config.state).size() == 2);
  clock.Advance(30'000ms);
  CHECK(!agent->RunOnce(0).ok());
  CHECK(OutboxReports(config.state).size() == 3);

  // 0: only the check after a switch.
  agent.reset();
  config.health_interval_ms = 0;
  agent = open();
  clock.Advance(3'600'000ms);
  CHECK(!agent->RunOnce(0).ok());
  CHECK(OutboxReports(config.state).size() == 3);
}

TEST_CASE("agent: nothing is installed on an expired root; the periodic health check still runs") {
  using namespace std::chrono_literals;
  Tmp t;
  AgentConfig config;
  config.id = "pos-1";
  config.servers = {"http://127.0.0.1:1"};  // nothing listens: no newer root can be found
  config.root = t.path + "/root.json";
  config.state = t.path + "/state";
  config.connect_timeout_ms = 2'000;
  config.health_interval_ms = 60'000;
  config.models = {{"fraud", "stable", "test -f {path}"}};
  WriteRoot(config.root);  // expires 2030-01-01
  ModelSlots slots(config.state + "/models/fraud");
  REQUIRE(slots.Init().ok());
  REQUIRE(slots.Install(Staged(slots.dir(), "one"), "1.0.0", Digest::Of("one")).ok());

  FakeClock clock(ParseRfc3339("2030-01-01T00:00:00.000Z").value() - 1);
  std::unique_ptr<Agent> agent = Agent::Open(config, clock).value();
  CHECK(agent->RunOnce(0).code() == Status::Code::kUnavailable);  // fresh: it asks for its target
  clock.Advance(60'000ms);
  Status expired = agent->RunOnce(0);
  CHECK(expired.code() == Status::Code::kFailedPrecondition);
  CHECK(expired.message() == "root version 1 expired at 2030-01-01T00:00:00.000Z");
  CHECK(OutboxReports(config.state).size() == 1);  // the periodic check of what runs
  CHECK((*slots.Current())->version == "1.0.0");
}

TEST_CASE("agent: one agent per state directory, its lock and terminal key through the Env") {
  Tmp t;
  AgentConfig config;
  config.id = "pos-1";
  config.servers = {"http://127.0.0.1:1"};
  config.root = t.path + "/root.json";
  config.state = t.path + "/state";
  config.models = {{"fraud", "stable", ""}};
  WriteRoot(config.root);
  FakeClock clock;
  auto check = [&](Env& env) {
    Result<std::unique_ptr<Agent>> first = Agent::Open(config, clock, env);
    INFO(first.status().ToString());
    REQUIRE(first.ok());
    Result<std::unique_ptr<Agent>> second = Agent::Open(config, clock, env);
    CHECK(second.status().code() == Status::Code::kFailedPrecondition);
    CHECK_THAT(second.status().message(), Catch::Contains("another meridian-agent uses"));
    // The key made at the first start, kept secret, and used again.
    const std::string key_file = config.state + "/terminal.key";
    CHECK(env.GetPermissions(key_file).value() == 0600);
    const std::string key = env.ReadFile(key_file, 1 << 10).value();
    first->reset();  // the lock goes with the agent
    Result<std::unique_ptr<Agent>> third = Agent::Open(config, clock, env);
    CHECK(third.ok());
    CHECK(env.ReadFile(key_file, 1 << 10).value() == key);
  };
  SECTION("posix") { check(Env::Default()); }
  SECTION("memory") {
    MemEnv mem;
    REQUIRE(mem.CreateDirectories(t.path).ok());
    REQUIRE(mem.WriteFileAtomic(config.root, ReadFileToString(config.root, 1 << 20).value()).ok());
    check(mem);
    CHECK(!std::filesystem::exists(config.state));  // nothing reached the disk
  }
}
