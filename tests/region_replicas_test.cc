// A region larger than one machine: three region daemons for "sg", each
// following the origin by itself, behind HAProxy (Debian's package, the
// configuration of deploy/haproxy/meridian-region.cfg, health-checked on
// /readyz), and 200 meridian-agent processes that know only HAProxy's URL.
// A staged rollout runs; right after a promote one replica is killed
// (kill -9) while terminals wait on it and download from it, and is
// restarted later. No install may fail, no report a replica acknowledged may
// be lost, and the origin's counts must be exact.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr int kAgents = 200;
constexpr int kReplicas = 3;
constexpr size_t kModelBytes = 1u << 20;
constexpr auto kSettleMax = seconds(60);

// HAProxy in front of the replicas at `replica_urls`, in the foreground
// (-db), master and worker (-W: a SIGTERM stops both).
class HaProxy {
 public:
  explicit HaProxy(const std::vector<std::string>& replica_urls) : front_end_(Spec(replica_urls)) {}

  std::string url() const { return front_end_.url(); }
  std::string Log() const { return front_end_.Log(); }

 private:
  FrontEndSpec Spec(const std::vector<std::string>& replica_urls) {
    FrontEndSpec spec{.program = "haproxy",
                      .template_variable = "MERIDIAN_HAPROXY_CONF",
                      .config_path = dir_ / "haproxy.cfg",
                      .arguments = {"-W", "-db", "-f", dir_ / "haproxy.cfg"},
                      .output_path = dir_ / "haproxy.log",
                      .probe_path = "/readyz"};  // through HAProxy to a replica
    for (size_t i = 0; i < replica_urls.size(); ++i) {
      REQUIRE(replica_urls[i].starts_with("http://"));
      spec.placeholders.emplace_back(fmt::format("@REPLICA_{}@", i + 1), replica_urls[i].substr(7));
    }
    return spec;
  }
  TempDir dir_;  // declared first: removed after HAProxy has stopped
  FrontEnd front_end_;
};

// Requests a daemon answered on `route` (its /metrics), any status.
uint64_t Served(const std::string& url, const std::string& route) {
  HttpClient c(url);
  Result<HttpReply> r = c.Get("/metrics");
  if (!r.ok() || r->status != 200) return 0;
  uint64_t total = 0;
  const std::string key = "meridian_http_requests_total{route=\"" + route + "\",status=\"";
  for (size_t at = r->body.find(key); at != std::string::npos; at = r->body.find(key, at + 1)) {
    size_t value = r->body.find("} ", at);
    total += std::stoull(r->body.substr(value + 2));
  }
  return total;
}

}  // namespace

TEST_CASE("a region on three replicas behind HAProxy: one killed mid-rollout and restarted; nothing fails or is lost") {
  DaemonFixture origin;
  origin.Start();
  std::vector<std::unique_ptr<DaemonFixture>> replicas;
  std::vector<std::string> urls;
  const std::vector<std::string> region_args = {"--role", "region", "--region", "sg", "--upstream", origin.url(),
                                                "--upstream-token-file", origin.mirror_token_file()};
  for (int i = 0; i < kReplicas; ++i) {
    replicas.push_back(DaemonFixture::Region(origin.root_json()));
    replicas.back()->Start(region_args);
    urls.push_back(replicas.back()->url());
  }
  HaProxy lb(urls);

  TempDir t;
  const Bytes v1 = RandomBytes(kModelBytes, 41), v2 = RandomBytes(kModelBytes, 42);
  WriteFile(t / "v1", v1);
  WriteFile(t / "v2", v2);
  REQUIRE(origin.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);

  std::vector<std::string> states;
  std::vector<std::unique_ptr<Child>> agents;
  std::vector<std::string> ids;
  for (int i = 0; i < kAgents; ++i) ids.push_back(fmt::format("sg-{:04d}", i));
  origin.EnrolKeys(ids);
  for (int i = 0; i < kAgents; ++i) {
    const std::string dir = t / fmt::format("agent-{:03d}", i);
    std::filesystem::create_directories(dir);
    states.push_back(dir + "/state");
    const std::string config = WriteAgentConfig(
        dir + "/agent.toml", {.id = ids[i], .servers = {lb.url()}, .root = origin.root_json(),
                              .state = dir + "/state", .enrol_at = &origin, .model = "fraud",
                              .extra = "poll_wait_s = 30\nbackoff_initial_ms = 200\nbackoff_max_ms = 2000", .region = "sg"});
    agents.push_back(std::make_unique<Child>(std::vector<std::string>{MeridianAgentPath(), "--config", config},
                                             dir + "/agent.log"));
  }
  auto installed = [&](const std::string& version) {
    int n = 0;
    for (const std::string& s : states) n += InstalledVersion(s, "fraud") == version;
    return n;
  };
  auto rollout = [&](const std::string& id) { return Json::parse(origin.GetRollout(id)); };
  // Every known terminal of stage `k`'s cohort (cumulative: it holds the
  // earlier stages') reported a healthy install, in that stage or before.
  Json last;  // the last rollout status read, for the report of a failure
  auto healthy_through = [&](const std::string& id, size_t k) {
    last = rollout(id);
    int healthy = 0;
    for (size_t i = 0; i <= k; ++i) healthy += last["stages"][i]["healthy"].get<int>();
    return last["stages"][k]["eligible"].get<int>() > 0 && healthy == last["stages"][k]["eligible"].get<int>();
  };
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };

  // 1.0.0 everywhere: every terminal is known to the origin by its report.
  origin.StartRollout(RolloutSpecJson("base", "1.0.0"));
  REQUIRE(WaitFor([&] { return rollout("base")["stages"][0]["healthy"] == kAgents; }, kSettleMax));
  REQUIRE(origin.RolloutAction("base", "promote", "everyone on 1.0.0") == 200);
  std::printf("region replicas: %d agents on 1.0.0 after %.1f s\n", kAgents, elapsed());

  // 2.0.0 in 10 %, 50 %, 100 %, promoted by hand so the kill lands mid-rollout.
  REQUIRE(origin.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
  origin.StartRollout(RolloutSpecJson("r1", "2.0.0", {{"stages_percent", {10, 50, 100}}}));
  if (!WaitFor([&] { return healthy_through("r1", 0); }, kSettleMax)) FAIL(last.dump());
  REQUIRE(origin.RolloutAction("r1", "promote", "first stage healthy") == 200);

  // Replica 1 dies at once: terminals were parked on its long polls, and the
  // promote sends the second stage's terminals to download.
  CHECK(Served(urls[0], "GET /v1/terminals/{id}/target") > 0);  // it was serving
  replicas[0]->Kill9();
  REQUIRE(WaitFor([&] { return lb.Log().find("replica-1 is DOWN") != std::string::npos; }, kSettleMax));
  const int first_two = rollout("r1")["stages"][1]["eligible"].get<int>();
  REQUIRE(WaitFor([&] { return installed("2.0.0") >= first_two; }, kSettleMax));
  std::printf("region replicas: second stage installed %.1f s in, one replica down\n", elapsed());
  CHECK(installed("2.0.0") == first_two);  // those two stages, no more

  // Back, on the same port: HAProxy's health check brings it into rotation,
  // and it forwards the reports it had acknowledged before it died.
  replicas[0]->Restart(region_args);
  REQUIRE(WaitFor([&] { return lb.Log().find("replica-1 is UP") != std::string::npos; }, kSettleMax));
  if (!WaitFor([&] { return healthy_through("r1", 1); }, kSettleMax)) FAIL(last.dump());
  REQUIRE(origin.RolloutAction("r1", "promote", "second stage healthy") == 200);
  if (!WaitFor([&] { return healthy_through("r1", 2); }, kSettleMax)) FAIL(last.dump());
  REQUIRE(origin.RolloutAction("r1", "promote", "every stage healthy") == 200);
  CHECK(rollout("r1")["state"]["phase"] == "completed");
  std::printf("region replicas: %d agents on 2.0.0 after %.1f s\n", installed("2.0.0"), elapsed());
  // Every report the terminals sent was acknowledged: their outboxes are empty.
  REQUIRE(WaitFor([&] {
    for (const std::string& s : states) {
      if (!std::filesystem::is_empty(s + "/outbox")) return false;
    }
    return true;
  }, kSettleMax));
  // The restarted replica takes terminals again.
  CHECK(WaitFor([&] { return Served(urls[0], "GET /v1/terminals/{id}/target") > 0; }, kSettleMax));

  // The origin's counts are exact: each terminal once, in the stage that told it.
  const Json stages = rollout("r1")["stages"];
  INFO(stages.dump());
  int healthy = 0;
  for (size_t k = 0; k < stages.size(); ++k) {
    CHECK(stages[k]["updated"] == stages[k]["eligible"]);
    CHECK(stages[k]["failed"] == 0);
    healthy += stages[k]["healthy"].get<int>();
    if (k > 0) CHECK(stages[k]["healthy"] == stages[k]["eligible"].get<int>() - stages[k - 1]["eligible"].get<int>());
  }
  CHECK(stages[0]["healthy"] == stages[0]["eligible"]);
  CHECK(stages[2]["eligible"] == kAgents);
  CHECK(healthy == kAgents);
  // Each terminal holds exactly the signed bytes, nothing half-downloaded.
  for (const std::string& s : states) {
    REQUIRE(Digest::Of(ReadFile(s + "/models/fraud/current")) == Digest::Of(v2));
    CHECK(std::filesystem::is_empty(s + "/models/fraud/staging"));
  }
  for (auto& a : agents) a->Signal(SIGTERM);
  for (auto& a : agents) CHECK(a->Wait(seconds(60)) == 0);
}
