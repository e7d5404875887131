// kill -9 of meridian-agent at 50 random (seeded) moments during download and
// install, each followed by a restart: the current slot always holds a
// complete, verified version, and the agent finishes the update.
#include <signal.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

constexpr int kKills = 50;
constexpr size_t kModelBytes = 4u << 20;
constexpr int kVersions = 20; // published one after the other as the agent catches up

}  // namespace

TEST_CASE("kill -9 at random moments never leaves an incomplete current slot, and the update finishes") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  std::map<std::string, Digest> published;  // version -> digest
  Bytes base = RandomBytes(kModelBytes, 11);
  auto publish = [&](int n) {
    Bytes v = base;
    Bytes noise = RandomBytes(v.size() / 128, 100 + static_cast<uint64_t>(n));
    for (size_t i = 0; i < noise.size(); ++i) v[i * 128] ^= noise[i];
    std::string version = fmt::format("{}.0.0", n);
    WriteFile(t / version, v);
    REQUIRE(d.Publish("fraud", version, t / version).exit_code == 0);
    published[version] = Digest::Of(v);
    d.StartRollout(RolloutSpecJson(fmt::format("r{}", n), version, {{"auto_promote", true}}));
    return version;
  };
  std::string state = t / "state";
  std::string config = WriteAgentConfig(
      t / "agent.toml", {.id = "pos-crash", .servers = {d.url()}, .root = d.root_json(), .state = state,
                         .enrol_at = &d, .model = "fraud", .health_check = "test -s {path}",
                         .extra = "bandwidth_limit_bytes_per_s = 4000000\npoll_wait_s = 5\nbackoff_initial_ms = 50\n"
                                  "backoff_max_ms = 200"});
  std::string target = publish(1);
  REQUIRE(Run({MeridianAgentPath(), "--config", config, "--once"}).exit_code == 0);
  auto current = [&]() -> std::string {
    std::string link = state + "/models/fraud/current";
    std::error_code ec;
    std::string name = std::filesystem::read_symlink(link, ec).string();
    REQUIRE(!ec);
    std::string version = name.substr(6, name.rfind('_') - 6);
    REQUIRE(published.count(version));
    // Complete and verified: the file hashes to the signed digest of its version.
    REQUIRE(Digest::Of(ReadFile(link)) == published[version]);
    return version;
  };
  REQUIRE(current() == target);

  std::mt19937_64 rng(2026);
  int next = 2;
  int kills_while_behind = 0;
  for (int k = 0; k < kKills; ++k) {
    if (current() == target && next <= kVersions) {
      std::string prev_rollout = fmt::format("r{}", next - 1);
      // Killed before its report went out, the agent has not completed the
      // rollout yet (the report waits in its outbox): end it by hand.
      if (Json::parse(d.GetRollout(prev_rollout))["state"]["phase"] == "running") {
        REQUIRE(d.RolloutAction(prev_rollout, "abort", "next version") == 200);
      }
      target = publish(next++);
    }
    kills_while_behind += current() != target;
    Child agent({MeridianAgentPath(), "--config", config}, t / "agent.log");
    // The random moment is the point of the test, not a synchronisation.
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    agent.Signal(SIGKILL);
    agent.Wait(std::chrono::seconds(10));
    if (getenv("CRASH_DEBUG")) std::printf("%s\n", std::string(AsString(ReadFile(t / "agent.log"))).c_str());
    current();
  }
  std::printf("agent_crash: %d kills, %d of them while an update was pending, %d versions published\n", kKills,
              kills_while_behind, next - 1);
  CHECK(kills_while_behind >= kKills / 2);
  CommandResult last = Run({MeridianAgentPath(), "--config", config, "--once"}, std::chrono::seconds(120));
  INFO(last.err);
  REQUIRE(last.exit_code == 0);
  CHECK(current() == target);
  CHECK(std::filesystem::is_empty(state + "/models/fraud/staging"));
}
