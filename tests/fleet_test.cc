// The acceptance on loopback: one meridiand, 100 meridian-agent
// processes. v1 to everyone; v2 staged 10 → 50 → 100 with gates and
// auto-rollback, failing its health check in the first stage, so the rollout
// rolls back on its own and every agent ends on v1 with no partial file; v3
// to everyone, printing the bytes downloaded against 100 × the full size.
#include <signal.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "client/api.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

constexpr int kAgents = 100;
constexpr size_t kModelBytes = 1u << 20;
constexpr auto kSettleMax = std::chrono::seconds(180);

// The rollout overrides for `stages`: each stage waits for 3 reports, promotes
// on its own, and rolls back when more than 20% of them failed.
Json Gated(const Json& stages) {
  return {{"stages_percent", stages}, {"min_reports", 3}, {"max_failure_rate", 0.2}, {"auto_promote", true},
          {"on_breach", "rollback"}};
}

// A fine-tune-like change: a small fraction of the weights nudged.
Bytes FineTune(const Bytes& base, uint64_t seed) {
  Bytes out = base;
  Bytes noise = RandomBytes(out.size() / 64, seed);
  for (size_t i = 0; i < noise.size(); ++i) out[i * 64 + (noise[i] & 63)] ^= static_cast<uint8_t>(noise[i] | 1);
  return out;
}

struct Fleet {
  std::vector<std::string> states;
  std::vector<std::unique_ptr<Child>> agents;

  // The version each agent's current pointer names ("" for none).
  static std::string Version(const std::string& state) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(state + "/models/fraud/current", ec).string();
    if (ec) return "";
    return target.substr(std::string("blobs/").size(), target.rfind('_') - std::string("blobs/").size());
  }
  size_t CountOn(const std::string& version) const {
    size_t n = 0;
    for (const std::string& s : states) n += Version(s) == version;
    return n;
  }
  bool AllSettledOn(const std::string& version) const {
    for (const std::string& s : states) {
      if (Version(s) != version || !std::filesystem::is_empty(s + "/models/fraud/staging")) return false;
      if (!std::filesystem::is_empty(s + "/outbox")) return false;
    }
    return true;
  }
  uint64_t DownloadedBytes() const {
    uint64_t total = 0;
    for (const std::string& s : states) {
      Bytes text = ReadFile(s + "/agent.json");
      if (text.empty()) continue;
      total += Json::parse(AsString(text))["downloaded_bytes"].get<uint64_t>();
    }
    return total;
  }
};

}  // namespace

TEST_CASE("fleet: 100 agents follow staged rollouts, an auto-rollback and a delta update") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  Bytes v1 = RandomBytes(kModelBytes, 7);
  Bytes v2 = FineTune(v1, 8), v3 = FineTune(v1, 9);
  WriteFile(t / "v1", v1);
  WriteFile(t / "v2", v2);
  WriteFile(t / "v3", v3);
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("fleet-v1", "1.0.0", Gated({100})));

  // v2 fails its health check on every terminal that installs it.
  std::string check = "cmp -s {path} " + (t / "v2") + " && { echo error_rate=1; exit 1; }; echo latency_ms=4";
  Fleet fleet;
  std::vector<std::string> ids;
  for (int i = 0; i < kAgents; ++i) ids.push_back(fmt::format("pos-{:04d}", i));
  d.EnrolKeys(ids);
  for (int i = 0; i < kAgents; ++i) {
    std::string dir = t / fmt::format("agent-{:03d}", i);
    std::filesystem::create_directories(dir);
    fleet.states.push_back(dir + "/state");
    std::string config = WriteAgentConfig(
        dir + "/agent.toml", {.id = ids[i], .servers = {d.url()}, .root = d.root_json(),
                              .state = dir + "/state", .enrol_at = &d, .model = "fraud",
                              .health_check = check, .extra = "poll_wait_s = 30\nbackoff_initial_ms = 200\nbackoff_max_ms = 2000"});
    fleet.agents.push_back(std::make_unique<Child>(std::vector<std::string>{MeridianAgentPath(), "--config", config},
                                                   dir + "/agent.log"));
  }

  REQUIRE(WaitFor([&] { return fleet.AllSettledOn("1.0.0"); }, kSettleMax));
  uint64_t after_v1 = fleet.DownloadedBytes();
  CHECK(after_v1 == kAgents * kModelBytes);
  // Auto-promote completes the single stage once reports came in: the next rollout may start.
  REQUIRE(WaitFor([&] { return Json::parse(d.GetRollout("fleet-v1"))["state"]["phase"] == "completed"; }, kSettleMax));

  // v2: the first stage's terminals fail their health check, switch back and
  // report; the gate breaches and the rollout rolls itself back.
  REQUIRE(d.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
  d.StartRollout(RolloutSpecJson("fleet-v2", "2.0.0", Gated({10, 50, 100})));
  REQUIRE(WaitFor([&] { return Json::parse(d.GetRollout("fleet-v2"))["state"]["phase"] == "rolled_back"; },
                  kSettleMax));
  REQUIRE(WaitFor([&] { return fleet.AllSettledOn("1.0.0"); }, kSettleMax));
  Json events = Json::parse(d.GetRollout("fleet-v2", true))["events"];
  bool explained = false;
  for (const Json& e : events) {
    if (e["action"] == "rollback" && e["reason"].get<std::string>().find("failure rate") != std::string::npos) {
      explained = true;
      std::printf("fleet: v2 rolled back: %s\n", e["reason"].get<std::string>().c_str());
    }
  }
  CHECK(explained);
  uint64_t v2_bytes = fleet.DownloadedBytes() - after_v1;
  // Only the first stage (about 10 %) ever fetched v2.
  CHECK(v2_bytes <= kAgents * kModelBytes / 4);

  // v3, healthy: everyone moves, by delta when the daemon serves them.
  REQUIRE(d.Publish("fraud", "3.0.0", t / "v3").exit_code == 0);
  HttpClient probe(d.url());
  std::string info = DeltaInfoPath(Digest::Of(v1), Digest::Of(v3));
  bool deltas_served = false;
  WaitFor([&] {
    Result<HttpReply> r = probe.Get(info);
    if (!r.ok()) return false;
    deltas_served = r->status == 200;
    return r->status != 409;  // 409: still being computed; 404 "no such route": no delta service
  }, std::chrono::seconds(60));
  uint64_t before_v3 = fleet.DownloadedBytes();
  d.StartRollout(RolloutSpecJson("fleet-v3", "3.0.0", Gated({100})));
  REQUIRE(WaitFor([&] { return fleet.AllSettledOn("3.0.0"); }, kSettleMax));
  uint64_t v3_bytes = fleet.DownloadedBytes() - before_v3;
  uint64_t full = uint64_t{kAgents} * v3.size();
  std::printf("fleet: v3 downloaded %llu bytes in total; 100 x full size = %llu bytes (%.1f %%); deltas %s\n",
              static_cast<unsigned long long>(v3_bytes), static_cast<unsigned long long>(full),
              100.0 * static_cast<double>(v3_bytes) / static_cast<double>(full),
              deltas_served ? "served" : "NOT served by this daemon (full artifacts)");
  if (deltas_served) CHECK(v3_bytes < full / 4);

  // Every current slot holds exactly the signed bytes.
  for (const std::string& s : fleet.states) REQUIRE(Digest::Of(ReadFile(s + "/models/fraud/current")) == Digest::Of(v3));
  for (auto& a : fleet.agents) a->Signal(SIGTERM);
  for (auto& a : fleet.agents) CHECK(a->Wait(std::chrono::seconds(60)) == 0);
}
