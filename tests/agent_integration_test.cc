// meridian-agent against a real meridiand: install, verification, a failing
// health check with switch back and auto-rollback, a rollback target served
// from the kept slot, the fallback kept after a local rollback, server
// failover and reports buffered across an outage, long polls of several
// models at once, a rollout refusing a canary its filters exclude, and the
// periodic health report of what runs.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/file.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

// More than half the reports failed: the rollout pauses, or rolls back.
const Json kPauseOnBreach = {{"max_failure_rate", 0.5}, {"on_breach", "pause"}};
const Json kRollbackOnBreach = {{"max_failure_rate", 0.5}, {"on_breach", "rollback"}};

Json AgentStatus(const std::string& config) {
  CommandResult r = Run({MeridianAgentPath(), "status", "--config", config, "--output", "json"});
  REQUIRE(r.exit_code == 0);
  return Json::parse(r.out);
}


}  // namespace

TEST_CASE("agent installs, refuses a failing version, switches back on rollback, fails over") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  // 600 kB of data, then 512 KiB of zeros (a preallocated region): left a hole.
  Bytes v1 = RandomBytes(600'000, 1);
  v1.resize(v1.size() + (512 << 10));
  Bytes v2 = v1, v3 = v1;
  for (size_t i = 0; i < 4000; ++i) v2[i * 100] ^= 0x5a;
  for (size_t i = 0; i < 4000; ++i) v3[i * 97] ^= 0x33;
  WriteFile(t / "v1", v1);
  WriteFile(t / "v2", v2);
  WriteFile(t / "v3", v3);
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0", kPauseOnBreach));

  std::string state = t / "state";
  // The health check fails on v2's bytes and prints metrics.
  std::string check = "cmp -s {path} " + (t / "v2") + " && { echo error_rate=0.9; exit 4; }; echo latency_ms=7.5";
  std::string config = WriteAgentConfig(t / "agent.toml", {.id = "pos-1", .servers = {d.url()}, .root = d.root_json(),
                                                           .state = state, .enrol_at = &d,
                                                           .model = "fraud", .health_check = check});
  CommandResult once = Run({MeridianAgentPath(), "--config", config, "--once"});
  INFO(once.err);
  REQUIRE(once.exit_code == 0);
  CHECK(InstalledVersion(state, "fraud") == "1.0.0");
  struct stat installed {};
  REQUIRE(::stat((state + "/models/fraud/current").c_str(), &installed) == 0);
  CHECK(static_cast<uint64_t>(installed.st_size) == v1.size());
  CHECK(static_cast<uint64_t>(installed.st_blocks) * 512 < 600'000 + (256 << 10));  // the zeros take (almost) no disk
  Json st = AgentStatus(config);
  CHECK(st["reports_waiting"] == 0);
  CHECK(st["downloaded_bytes"] == v1.size());
  CHECK(st["models"][0]["staging"].is_null());
  // The daemon parsed the manifest once, when the publish was verified: the
  // store keeps what it committed, so the rollout, the target and the
  // artifact download parsed nothing again.
  CHECK(Metric(d.url(), "meridian_store_manifest_parses_total") == 0);

  REQUIRE(d.RolloutAction("r1", "promote", "all on 1.0.0") == 200);  // completes it: the next may start

  // Up to date: a second cycle downloads nothing.
  REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
  CHECK(AgentStatus(config)["downloaded_bytes"] == v1.size());

  SECTION("a failing health check switches back at once, reports, and the rollout rolls back on its own") {
    REQUIRE(d.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
    d.StartRollout(RolloutSpecJson("r2", "2.0.0", kRollbackOnBreach));
    once = Run({MeridianAgentPath(), "--config", config, "--once"});
    CHECK(once.exit_code == 1);
    CHECK_THAT(once.err, Catch::Contains("exited with status 4"));
    CHECK(InstalledVersion(state, "fraud") == "1.0.0");
    st = AgentStatus(config);
    CHECK(st["models"][0]["previous"].is_null());
    CHECK(st["models"][0]["staging"].is_null());
    CHECK(st["reports_waiting"] == 0);
    CHECK_THAT(st["last_error"].get<std::string>(), Catch::Contains("switched back"));
    Json r2 = Json::parse(d.GetRollout("r2"));
    CHECK(r2["state"]["phase"] == "rolled_back");
    CHECK_THAT(d.GetRollout("r2", true), Catch::Contains("rollback"));
    // Back on 1.0.0 by the channel too: the next cycle is quiet.
    REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
    CHECK(InstalledVersion(state, "fraud") == "1.0.0");
  }

  SECTION("a rollback target switches back from the kept slot without downloading") {
    REQUIRE(d.Publish("fraud", "3.0.0", t / "v3").exit_code == 0);
    d.StartRollout(RolloutSpecJson("r3", "3.0.0", kPauseOnBreach));
    REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
    CHECK(InstalledVersion(state, "fraud") == "3.0.0");
    uint64_t bytes = AgentStatus(config)["downloaded_bytes"].get<uint64_t>();
    CHECK(AgentStatus(config)["models"][0]["previous"]["version"] == "1.0.0");
    REQUIRE(d.RolloutAction("r3", "rollback", "test") == 200);
    REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
    CHECK(InstalledVersion(state, "fraud") == "1.0.0");
    CHECK(AgentStatus(config)["downloaded_bytes"] == bytes);
    CHECK(AgentStatus(config)["models"][0]["previous"]["version"] == "3.0.0");
  }

  SECTION("an unreachable first server fails over; reports wait on disk while no server answers") {
    REQUIRE(d.Publish("fraud", "3.0.0", t / "v3").exit_code == 0);
    d.StartRollout(RolloutSpecJson("r3", "3.0.0", kPauseOnBreach));
    std::string dead = "http://127.0.0.1:1";  // nothing listens on port 1
    WriteAgentConfig(config, {.id = "pos-1", .servers = {dead, d.url()}, .root = d.root_json(), .state = state,
                              .enrol_at = &d, .model = "fraud", .extra = "connect_timeout_ms = 2000"});
    once = Run({MeridianAgentPath(), "--config", config, "--once"});
    INFO(once.err);
    REQUIRE(once.exit_code == 0);
    CHECK(InstalledVersion(state, "fraud") == "3.0.0");

    // No server at all: the cycle fails, a report made meanwhile stays queued.
    d.RolloutAction("r3", "rollback", "test");
    WriteAgentConfig(config, {.id = "pos-1", .servers = {dead}, .root = d.root_json(), .state = state,
                              .enrol_at = &d, .model = "fraud", .extra = "connect_timeout_ms = 2000"});
    REQUIRE(WriteFileAtomic(state + "/outbox/000000000000001-0000000000000001.json",
                            Json{{"model", "fraud"}, {"version", "3.0.0"}, {"channel", "stable"}, {"rollout", "r3"},
                                 {"event", "installed"}, {"reason", ""}, {"profile", "pos-arm64"}, {"region", "sg"}}
                                .dump())
                .ok());
    CHECK(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 1);
    CHECK(AgentStatus(config)["reports_waiting"] == 1);
    CHECK(InstalledVersion(state, "fraud") == "3.0.0");
    WriteAgentConfig(config, {.id = "pos-1", .servers = {d.url()}, .root = d.root_json(), .state = state,
                              .enrol_at = &d, .model = "fraud"});
    REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
    CHECK(AgentStatus(config)["reports_waiting"] == 0);
    CHECK(InstalledVersion(state, "fraud") == "1.0.0");
  }
}

TEST_CASE("agent refuses a bad configuration with exit code 2") {
  TempDir t;
  WriteFile(t / "bad.toml", AsBytes(std::string("id = \"x\"\nservres = []\n")));
  CommandResult r = Run({MeridianAgentPath(), "--config", t / "bad.toml", "--once"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("unknown key 'servres'"));
  std::string good = WriteAgentConfig(t / "good.toml", {.id = "pos-1", .servers = {"http://127.0.0.1:1"},
                                                        .root = t / "root.json", .state = t / "state",
                                                        .model = "fraud"});
  // Flags override the file and are checked like it.
  r = Run({MeridianAgentPath(), "--config", good, "--server", "ftp://127.0.0.1", "--once"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("must start with http://"));
  r = Run({MeridianAgentPath(), "--config", good, "--id", "bad id!", "--once"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("'id'"));
}

TEST_CASE("a rollout refuses a canary its own filters exclude: 400 canary_excluded") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  WriteFile(t / "v1", RandomBytes(50'000, 1));
  WriteFile(t / "v2", RandomBytes(50'000, 2));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  REQUIRE(d.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0"));
  // A kiosk in sg becomes a known terminal by asking for its target.
  std::string config = WriteAgentConfig(t / "agent.toml", {.id = "kiosk-7", .servers = {d.url()},
                                                           .root = d.root_json(), .state = t / "state",
                                                           .enrol_at = &d, .model = "fraud",
                                                           .profile = "kiosk-x86"});
  REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
  REQUIRE(d.RolloutAction("r1", "promote", "everyone on 1.0.0") == 200);

  HttpClient op(d.url(), HttpClientOptions{.bearer_token = d.operator_token()});
  auto refused = [&](const std::string& route, const Json& filters, const std::string& filter_text) {
    Json overrides = filters;
    overrides["canaries"] = {"pos-1", "kiosk-7"};
    Result<HttpReply> r = op.Post(route, RolloutSpecJson("r2", "2.0.0", overrides));
    REQUIRE(r.ok());
    CHECK(r->status == 400);
    Json body = Json::parse(r->body, nullptr, false);
    CHECK(body["error"]["code"] == "canary_excluded");
    std::string message = body["error"]["message"].is_string() ? body["error"]["message"].get<std::string>() : "";
    CHECK_THAT(message, Catch::Contains("canary 'kiosk-7'") && Catch::Contains(filter_text));
  };
  refused("/v1/rollouts", {{"profiles", {"pos-arm64"}}}, "profiles [pos-arm64] (it declares profile 'kiosk-x86')");
  refused("/v1/rollouts", {{"regions", {"ae"}}}, "regions [ae] (it is in region 'sg')");
  refused("/v1/rollout-plans", {{"profiles", {"pos-arm64"}}}, "profiles [pos-arm64]");
  // Nothing was started.
  CHECK(Json::parse(op.Get("/v1/rollouts")->body)["rollouts"].size() == 1);
  // The CLI says why.
  CommandResult cli = d.Cli({"--token", d.operator_token(), "rollout", "start", "fraud", "2.0.0", "--profile",
                             "pos-arm64", "--canary", "kiosk-7"});
  CHECK(cli.exit_code != 0);
  CHECK_THAT(cli.err, Catch::Contains("canary_excluded: canary 'kiosk-7'"));

  // With filters that admit it, the canary is in the first stage (1 %) and moves.
  d.StartRollout(RolloutSpecJson("r2", "2.0.0", {{"profiles", {"kiosk-x86"}}, {"canaries", {"kiosk-7"}},
                                                 {"stages_percent", {1, 100}}}));
  REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
  CHECK(InstalledVersion(t / "state", "fraud") == "2.0.0");
}

TEST_CASE("after a failed install and local rollback the agent keeps a fallback and says which") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  for (int v = 1; v <= 3; ++v) WriteFile(t / ("v" + std::to_string(v)), RandomBytes(200'000, v));
  std::string state = t / "state";
  std::string check = "cmp -s {path} " + (t / "v3") + " && exit 4; exit 0";  // 3.0.0 fails here
  std::string config = WriteAgentConfig(t / "agent.toml", {.id = "pos-1", .servers = {d.url()}, .root = d.root_json(),
                                                           .state = state, .enrol_at = &d,
                                                           .model = "fraud", .health_check = check});
  auto once = [&] { return Run({MeridianAgentPath(), "--config", config, "--once"}); };
  for (const std::string version : {"1.0.0", "2.0.0"}) {
    REQUIRE(d.Publish("fraud", version, t / ("v" + version.substr(0, 1))).exit_code == 0);
    d.StartRollout(RolloutSpecJson("r" + version, version));
    REQUIRE(once().exit_code == 0);
    REQUIRE(d.RolloutAction("r" + version, "promote", "done") == 200);
  }
  REQUIRE(InstalledVersion(state, "fraud") == "2.0.0");
  REQUIRE(AgentStatus(config)["models"][0]["previous"]["version"] == "1.0.0");

  REQUIRE(d.Publish("fraud", "3.0.0", t / "v3").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r3.0.0", "3.0.0", kPauseOnBreach));
  CommandResult failed = once();
  CHECK(failed.exit_code == 1);
  CHECK_THAT(failed.err, Catch::Contains("exited with status 4, switched back"));
  CHECK(InstalledVersion(state, "fraud") == "2.0.0");
  // The fallback survives the local rollback, and the status names it.
  Json st = AgentStatus(config);
  CHECK(st["models"][0]["previous"]["version"] == "1.0.0");
  CommandResult text = Run({MeridianAgentPath(), "status", "--config", config});
  CHECK_THAT(text.out, Catch::Contains("current 2.0.0, previous 1.0.0"));

  // It is a real fallback: moving the channel to it switches at once from
  // the kept file, without a download.
  uint64_t bytes = st["downloaded_bytes"].get<uint64_t>();
  REQUIRE(d.RolloutAction("r3.0.0", "rollback", "3.0.0 fails its health check") == 200);
  d.StartRollout(RolloutSpecJson("r-back", "1.0.0"));
  REQUIRE(once().exit_code == 0);
  CHECK(InstalledVersion(state, "fraud") == "1.0.0");
  st = AgentStatus(config);
  CHECK(st["downloaded_bytes"] == bytes);
  CHECK(st["models"][0]["previous"]["version"] == "2.0.0");
}

TEST_CASE("an agent following two models long-polls both: a change to either installs within seconds") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  for (int v = 1; v <= 2; ++v) WriteFile(t / ("v" + std::to_string(v)), RandomBytes(100'000, v));
  for (const std::string model : {"fraud", "vision"}) {
    REQUIRE(d.Publish(model, "1.0.0", t / "v1").exit_code == 0);
    REQUIRE(d.Publish(model, "2.0.0", t / "v2").exit_code == 0);
    d.StartRollout(RolloutSpecJson(model + "-1", "1.0.0", {{"model", model}}));
    REQUIRE(d.RolloutAction(model + "-1", "promote", "the channel's version") == 200);
  }

  // Polls are held 60 s (the daemon's longest): a change seen only when a
  // poll ends, or between polls, would take up to that long.
  constexpr int64_t kPollWaitS = 60;
  constexpr auto kWakeMax = std::chrono::seconds(3);
  std::string state = t / "state";
  std::string config = WriteAgentConfig(
      t / "agent.toml", {.id = "pos-1", .servers = {d.url()}, .root = d.root_json(), .state = state,
                         .enrol_at = &d, .model = "fraud",
                         .extra = fmt::format("poll_wait_s = {}\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000", kPollWaitS),
                         .more_models = {"vision"}});
  Child agent({MeridianAgentPath(), "--config", config}, t / "agent.log");
  REQUIRE(WaitFor([&] { return InstalledVersion(state, "fraud") == "1.0.0" && InstalledVersion(state, "vision") == "1.0.0"; },
                  std::chrono::seconds(60)));
  // Both models long-poll: two requests held by the daemon.
  REQUIRE(WaitFor([&] { return Metric(d.url(), "meridian_long_polls_held") == 2; }, std::chrono::seconds(30)));

  // The second model first, then the first one.
  for (const std::string model : {"vision", "fraud"}) {
    auto start = std::chrono::steady_clock::now();
    d.StartRollout(RolloutSpecJson(model + "-2", "2.0.0", {{"model", model}}));
    REQUIRE(WaitFor([&] { return InstalledVersion(state, model) == "2.0.0"; }, std::chrono::seconds(kPollWaitS / 2)));
    auto latency = std::chrono::steady_clock::now() - start;
    std::printf("agent following two models: %s 2.0.0 installed %.0f ms after its rollout started (polls held %lld s)\n",
                model.c_str(), std::chrono::duration<double, std::milli>(latency).count(),
                static_cast<long long>(kPollWaitS));
    CHECK(latency < kWakeMax);
  }
  CHECK(InstalledVersion(state, "fraud") == "2.0.0");
  agent.Signal(SIGTERM);
  CHECK(agent.Wait(std::chrono::seconds(10)) == 0);
}

TEST_CASE("an agent in its loop reports the health of what runs every health_interval_ms, switching nothing") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  WriteFile(t / "v1", RandomBytes(100'000, 1));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0", kPauseOnBreach));

  // Polls are held 60 s; checks are due every 2 s: the poll must give way.
  std::string state = t / "state";
  std::string unhealthy = t / "unhealthy";
  std::string config = WriteAgentConfig(
      t / "agent.toml", {.id = "pos-1", .servers = {d.url()}, .root = d.root_json(), .state = state,
                         .enrol_at = &d, .model = "fraud",
                         .health_check = "echo latency_ms=5; ! test -e " + unhealthy,
                         .extra = "poll_wait_s = 60\nhealth_interval_ms = 2000"});
  Child agent({MeridianAgentPath(), "--config", config}, t / "agent.log");
  auto checked_ms = [&]() -> int64_t {
    Result<std::string> text = ReadFileToString(state + "/agent.json", 1 << 20);
    if (!text.ok()) return 0;
    return Json::parse(*text).value("health_checked_ms", Json::object()).value("fraud", int64_t{0});
  };
  REQUIRE(WaitFor([&] { return InstalledVersion(state, "fraud") == "1.0.0" && checked_ms() > 0; },
                  std::chrono::seconds(60)));
  int64_t after_install = checked_ms();
  CHECK(WaitFor([&] { return checked_ms() >= after_install + 4000; }, std::chrono::seconds(12)));
  CHECK(Json::parse(d.GetRollout("r1"))["state"]["phase"] == "running");

  // The daemon takes a failing periodic report as a verdict on the version it
  // is about (the one gate counts it: the rollout pauses); the agent keeps
  // running that version and its outbox empties.
  WriteFile(unhealthy, {});
  CHECK(WaitFor([&] { return Json::parse(d.GetRollout("r1"))["state"]["phase"] == "paused"; },
                std::chrono::seconds(12)));
  CHECK(InstalledVersion(state, "fraud") == "1.0.0");
  CHECK(WaitFor([&] { return AgentStatus(config)["reports_waiting"] == 0; }, std::chrono::seconds(10)));
  agent.Signal(SIGTERM);
  CHECK(agent.Wait(std::chrono::seconds(10)) == 0);
  std::string log = std::string(*ReadFileToString(t / "agent.log", 1 << 20));
  CHECK_THAT(log, Catch::Contains("fraud 1.0.0: periodic health check failed"));
  CHECK_THAT(log, !Catch::Contains("report refused"));
}
