// Attacks on meridian-agent, each rejected with nothing installed: a replayed
// older signed state (rollback), an expired state (freeze), wrong artifact or
// delta bytes, an artifact longer than signed (endless data), a manifest
// signed by a non-release key; a first server answering garbage, or going
// silent in the middle of a download, makes the agent fail over to the
// second; root rotation only through VerifyRootUpdate.
// The attacker is a small HTTP server on 127.0.0.1 that proxies the real
// daemon and tampers with what it forwards.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/config.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/encoding.h"
#include "base/file.h"
#include "client/http_client.h"
#include "manifest/manifest.h"
#include "signing/signing.h"
#include "target/target.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

// max_failure_rate 1 never breaches: the "failed" reports the attacks cause
// must not pause the rollout the last step completes through the real server.
const Json kPromoteDespiteFailures = {{"max_failure_rate", 1.0}, {"auto_promote", true}};

// Re-signs a channel state taken from a target reply after `edit`, with the daemon's online key.
std::string ForgeTargetReply(const std::string& reply_body, const SecretKey& online,
                             const std::function<void(ChannelState&)>& edit) {
  Json j = Json::parse(reply_body);
  Result<Envelope> env = ParseEnvelope(j["state"].dump());
  REQUIRE(env.ok());
  Result<ChannelState> state = ChannelStateFromJson(AsString(env->payload));
  REQUIRE(state.ok());
  edit(*state);
  j["state"] = Json::parse(SignChannelState(*state, online));
  return j.dump();
}

// Starts `d` with fraud 1.0.0 (100 kB of random bytes from `seed`, written
// in `t`) published and rolling out to every terminal (rollout r1).
void StartRollingOut(DaemonFixture& d, const TempDir& t, uint64_t seed) {
  d.Start();
  WriteFile(t / "v1", RandomBytes(100'000, seed));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0", kPromoteDespiteFailures));
}

bool IsPayload(const std::string& path) {
  return path.starts_with("/v1/artifacts/") || (path.starts_with("/v1/deltas/") && !path.ends_with("/info"));
}

}  // namespace

TEST_CASE("attacks are rejected with nothing installed; garbage fails over; roots rotate only when signed") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  Result<SecretKey> online = ReadSecretKeyFile(d.data() + "/keys/online.key");
  REQUIRE(online.ok());
  Bytes v1 = RandomBytes(300'000, 21), v2 = v1, v3 = v1;
  for (size_t i = 0; i < 3000; ++i) v2[i * 90] ^= 0x11;
  for (size_t i = 0; i < 3000; ++i) v3[i * 95] ^= 0x22;
  WriteFile(t / "v1", v1);
  WriteFile(t / "v2", v2);
  WriteFile(t / "v3", v3);

  // Forwards as terminal pos-a, the agent behind it.
  HttpClient daemon(d.url(), HttpClientOptions{.bearer_token = d.TerminalCredential("pos-a")});
  const std::string target_path = "/v1/terminals/pos-a/target?model=fraud&channel=stable";
  std::mutex mu;
  std::string mode = "pass";
  std::string forged_target, forged_manifest;
  FakeHttpServer proxy([&](const FakeRequest& req) {
    const std::string& path = req.path;
    std::lock_guard<std::mutex> lock(mu);
    if (mode == "garbage") return FakeReply{200, "\x01\x02 this is not JSON or a model", {}};
    if (path.starts_with("/v1/terminals/") && path.find("/target") != std::string::npos && !forged_target.empty()) {
      return FakeReply{200, forged_target, {"Content-Type: application/json"}};
    }
    if (path.starts_with("/v1/models/") && !forged_manifest.empty()) return FakeReply{200, forged_manifest, {}};
    FakeReply out = Forward(daemon, req);
    bool payload = IsPayload(path);
    if (payload && mode == "flip" && !out.body.empty()) out.body[out.body.size() / 2] ^= 0x01;
    if (payload && mode == "longer") out.body += std::string(4096, 'x');
    return out;
  });
  auto set_mode = [&](const std::string& m) {
    std::lock_guard<std::mutex> lock(mu);
    mode = m;
  };

  std::string state = t / "state";
  auto configure = [&](std::vector<std::string> servers) {
    return WriteAgentConfig(t / "agent.toml", {.id = "pos-a", .servers = std::move(servers), .root = d.root_json(),
                                               .state = state, .enrol_at = &d, .model = "fraud"});
  };
  auto once = [&]() { return Run({MeridianAgentPath(), "--config", t / "agent.toml", "--once"}); };
  auto current = [&]() {
    std::string link = state + "/models/fraud/current";
    std::string name = std::filesystem::read_symlink(link).string();
    REQUIRE(Digest::Of(ReadFile(link)).Hex() == name.substr(name.rfind('_') + 1));
    return name.substr(6, name.rfind('_') - 6);
  };
  auto nothing_staged = [&]() { return std::filesystem::is_empty(state + "/models/fraud/staging"); };
  auto complete = [&](const std::string& id) {
    REQUIRE(WaitFor([&] { return Json::parse(d.GetRollout(id))["state"]["phase"] == "completed"; },
                    std::chrono::seconds(30)));
  };

  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0", kPromoteDespiteFailures));
  configure({d.url()});
  REQUIRE(once().exit_code == 0);
  complete("r1");
  Result<HttpReply> old_target = daemon.Get(target_path);  // signed state pointing at 1.0.0
  REQUIRE(old_target.ok());
  REQUIRE(d.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r2", "2.0.0", kPromoteDespiteFailures));
  REQUIRE(once().exit_code == 0);
  REQUIRE(current() == "2.0.0");
  complete("r2");

  configure({proxy.url()});
  {
    INFO("replayed older signed state (rollback attack)");
    forged_target = old_target->body;
    CommandResult r = once();
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("state version"));
    CHECK(current() == "2.0.0");
    forged_target.clear();
  }
  {
    INFO("expired state (freeze attack)");
    Result<HttpReply> now_target = daemon.Get(target_path);
    REQUIRE(now_target.ok());
    forged_target = ForgeTargetReply(now_target->body, *online, [](ChannelState& s) {
      s.version = "1.0.0";
      s.rollouts.clear();
      s.expires_ms = s.issued_ms - 1;
    });
    CommandResult r = once();
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("expired"));
    CHECK(current() == "2.0.0");
    forged_target.clear();
  }
  {
    INFO("manifest signed by a key that is not a release key");
    Bytes evil = RandomBytes(1000, 99);
    Manifest m;
    m.name = "fraud";
    m.version = "9.0.0";
    m.size = evil.size();
    m.digest = Digest::Of(evil);
    m.chunks = {ChunkRef{m.digest, evil.size()}};
    m.created = "2026-11-24T00:00:00Z";
    Envelope env{std::string(kManifestPayloadType), ToBytes(ManifestToJson(m)), {}};
    SecretKey rogue = SecretKey::Generate();
    SignEnvelope(env, rogue);
    forged_manifest = EnvelopeToJson(env);
    Result<HttpReply> now_target = daemon.Get(target_path);
    REQUIRE(now_target.ok());
    // Even a state the online key signed (a compromised daemon) cannot make it install.
    forged_target = ForgeTargetReply(now_target->body, *online, [&](ChannelState& s) {
      s.version = "9.0.0";
      s.rollouts.clear();
      s.versions = {{"9.0.0", VersionRef{Digest::Of(forged_manifest), m.digest, m.size}}};
    });
    CommandResult r = once();
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("release role"));
    CHECK(current() == "2.0.0");
    CHECK(nothing_staged());
    forged_target.clear();
    forged_manifest.clear();
  }

  {
    INFO("a target reply of a million tiny values: refused as it is parsed, before it takes memory");
    std::string flood = R"({"state":{"signatures":[)";
    while (flood.size() < (3u << 20)) flood += "{},";
    forged_target = flood + "{}]}}";
    CommandResult r = once();
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("more than 8192 values"));
    CHECK(current() == "2.0.0");
    forged_target.clear();
  }

  REQUIRE(d.Publish("fraud", "3.0.0", t / "v3").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r3", "3.0.0", kPromoteDespiteFailures));
  for (const char* m : {"flip", "longer"}) {
    INFO(std::string("tampered payload bytes: ") + m);
    set_mode(m);
    CommandResult r = once();
    CHECK(r.exit_code == 1);
    CHECK(current() == "2.0.0");
    CHECK(nothing_staged());
  }
  {
    INFO("a first server answering garbage: fail over to the second");
    set_mode("garbage");
    configure({proxy.url(), d.url()});
    CommandResult r = once();
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(current() == "3.0.0");
  }
  {
    INFO("root rotation");
    Result<std::string> root_text = ReadFileToString(d.root_json(), 1 << 20);
    REQUIRE(root_text.ok());
    Result<Envelope> root_env = ParseEnvelope(*root_text);
    REQUIRE(root_env.ok());
    Result<Root> root = ParseRoot(AsString(root_env->payload));
    REQUIRE(root.ok());
    Root next = *root;
    next.version += 1;
    Envelope rogue_env{std::string(kRootPayloadType), ToBytes(RootToJson(next)), {}};
    SignEnvelope(rogue_env, SecretKey::Generate());
    WriteFile(t / "rogue-root.json", AsBytes(EnvelopeToJson(rogue_env)));
    CHECK(Run({MeridianAgentPath(), "trust", "--config", t / "agent.toml", t / "rogue-root.json"}).exit_code == 1);
    Result<SecretKey> root_key = ReadSecretKeyFile(d.data() + "/keys/root.key");
    REQUIRE(root_key.ok());
    Envelope good{std::string(kRootPayloadType), ToBytes(RootToJson(next)), {}};
    SignEnvelope(good, *root_key);
    WriteFile(t / "next-root.json", AsBytes(EnvelopeToJson(good)));
    CommandResult r = Run({MeridianAgentPath(), "trust", "--config", t / "agent.toml", t / "next-root.json"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(AsString(ReadFile(state + "/root.json")) == EnvelopeToJson(good));
    // The same root again is a replay.
    CHECK(Run({MeridianAgentPath(), "trust", "--config", t / "agent.toml", t / "next-root.json"}).exit_code == 1);
  }
}

TEST_CASE("a proxy's error page, in bytes that are not UTF-8 or cut inside a character, is the agent's last error, not its end") {
  DaemonFixture d;  // for its root only: nothing answers the agent but the proxy
  TempDir t;
  std::mutex mu;
  std::string page;
  FakeHttpServer proxy([&](const FakeRequest&) {
    std::lock_guard lock(mu);
    return FakeReply{502, page, {}};
  });
  WriteAgentConfig(t / "agent.toml",
                   {.id = "pos-a", .servers = {proxy.url()}, .root = d.root_json(), .state = t / "state", .model = "fraud"});
  auto last_error_after = [&](const std::string& answer) {
    {
      std::lock_guard lock(mu);
      page = answer;
    }
    CommandResult r = Run({MeridianAgentPath(), "--config", t / "agent.toml", "--once"});
    INFO(r.err);
    CHECK(r.exit_code == 1);  // a failed cycle; it was SIGABRT (an uncaught exception writing agent.json)
    Json state = Json::parse(AsString(ReadFile(t / "state/agent.json")));
    return state["last_error"].get<std::string>();
  };
  // Latin-1, as a gateway may answer.
  std::string shown = last_error_after("<html>Passerelle indisponible: r\xE9" "essayez plus tard.</html>");
  CHECK_THAT(shown, Catch::Contains("Passerelle indisponible: r\xEF\xBF\xBD" "essayez"));
  // UTF-8, with a character across the 200 bytes an error keeps of a page.
  shown = last_error_after(std::string(199, '.') + "\xC3\xA9" + std::string(100, '.'));
  CHECK_THAT(shown, Catch::Contains(std::string(199, '.')));
  CHECK_THAT(shown, !Catch::Contains("\xEF\xBF\xBD") && !Catch::Contains(std::string(200, '.')));
}

TEST_CASE("a server that stops sending in the middle of a download is left after stall_timeout_ms for the next one") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  WriteFile(t / "v1", RandomBytes(2'000'000, 31));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0"));
  HttpClient daemon(d.url(), HttpClientOptions{.bearer_token = d.TerminalCredential("pos-a")});
  std::atomic<int> stalled{0};
  // Half of each payload, then silence on an open connection: 30 s, or
  // until the agent hangs up.
  FakeHttpServer proxy([&](const FakeRequest& req) {
    FakeReply out = Forward(daemon, req);
    if (IsPayload(req.path) && out.status / 100 == 2) {
      out.body_bytes_sent_max = out.body.size() / 2;
      out.silent_ms = 30'000;
      ++stalled;
    }
    return out;
  });
  WriteAgentConfig(t / "agent.toml", {.id = "pos-a", .servers = {proxy.url(), d.url()}, .root = d.root_json(),
                                      .state = t / "state", .enrol_at = &d, .model = "fraud",
                                      .extra = "stall_timeout_ms = 1000\n"});
  const auto start = std::chrono::steady_clock::now();
  CommandResult r = Run({MeridianAgentPath(), "--config", t / "agent.toml", "--once"});
  const auto took = std::chrono::steady_clock::now() - start;
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(stalled >= 1);
  CHECK_THAT(r.err, Catch::Contains("Operation too slow"));
  // The second server is asked for the rest only: the first half was kept.
  CHECK_THAT(r.err, Catch::Contains("from byte 1000000 of 2000000"));
  CHECK(InstalledVersion(t / "state", "fraud") == "1.0.0");
  // Without the stall limit the agent waits out the silence (request_timeout_ms is an hour).
  CHECK(took < std::chrono::seconds(15));
}

TEST_CASE("a server in the way loses no report and gives no credential: the agent goes on to the next server") {
  DaemonFixture d;
  TempDir t;
  StartRollingOut(d, t, 31);
  // First in the list: a mirror that forwards what the agents read (as
  // them), but asks every terminal to wait for an operator (202) or hands out
  // a credential that would smuggle a header, and answers reports 404 or with
  // a redirect.
  HttpClient reader(d.url(), HttpClientOptions{.bearer_token = d.terminal_token()});
  HttpClient as_b(d.url(), HttpClientOptions{.bearer_token = d.TerminalCredential("pos-b")});
  HttpClient as_c(d.url(), HttpClientOptions{.bearer_token = d.TerminalCredential("pos-c")});
  std::atomic<int> credentials_asked{0}, reports_refused{0};
  FakeHttpServer mirror([&](const FakeRequest& req) {
    if (req.path.ends_with("/credential")) {
      if (++credentials_asked % 2 == 1) return FakeReply{202, R"({"state":"pending"})", {}};
      return FakeReply{200, R"({"credential":"mtc1.x\r\nX-Smuggled: 1","expires_ms":9999999999999})", {}};
    }
    if (req.path.find("/reports") != std::string::npos) {
      if (++reports_refused % 2 == 1) return FakeReply{404, "<html>not here</html>", {}};
      return FakeReply{302, "", {"Location: http://127.0.0.1:1/"}};
    }
    if (req.path.starts_with("/v1/terminals/pos-b/")) return Forward(as_b, req);
    if (req.path.starts_with("/v1/terminals/pos-c/")) return Forward(as_c, req);
    return Forward(reader, req);
  });
  const std::string route = "meridian_http_requests_total{route=\"POST /v1/terminals/{id}/reports\",status=\"202\"}";
  const int64_t reports_before = std::max<int64_t>(Metric(d.url(), route), 0);
  for (const std::string id : {"pos-b", "pos-c"}) {  // the first meets the 202, the second the bad credential
    INFO(id);
    const std::string state = t / id;
    // Enrolled as a factory would (WriteAgentConfig's enrol_at), asking the mirror first.
    std::filesystem::create_directories(state);
    REQUIRE(WriteSecretKeyFile(state + "/terminal.key", d.TerminalKey(id)).ok());
    std::string config = WriteAgentConfig(
        t / (id + ".toml"), {.id = id, .servers = {mirror.url(), d.url()}, .root = d.root_json(), .state = state,
                             .model = "fraud",
                             .extra = fmt::format("credential_servers = [\"{}\", \"{}\"]", mirror.url(), d.url())});
    CommandResult r = Run({MeridianAgentPath(), "--config", config, "--once"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(InstalledVersion(state, "fraud") == "1.0.0");
    CHECK(AsString(ReadFile(state + "/credential.json")).find("Smuggled") == std::string::npos);
    CommandResult status = Run({MeridianAgentPath(), "status", "--config", config, "--output", "json"});
    REQUIRE(status.exit_code == 0);
    CHECK(Json::parse(status.out)["reports_waiting"] == 0);
  }
  CHECK(credentials_asked >= 2);
  CHECK(reports_refused >= 2);
  // Every report the mirror refused reached the daemon: each agent's
  // downloaded, verified and installed ones.
  CHECK(Metric(d.url(), route) - reports_before >= 2 * 3);
}

TEST_CASE("a long poll that fails at once fails the cycle, so the agent backs off, though the model was asked again") {
  DaemonFixture d;
  TempDir t;
  StartRollingOut(d, t, 41);
  // A server that refuses every long poll at once (as meridiand refuses a
  // wait over its limit) and serves all else, as terminal pos-p.
  HttpClient reader(d.url(), HttpClientOptions{.bearer_token = d.terminal_token()});
  HttpClient as_p(d.url(), HttpClientOptions{.bearer_token = d.TerminalCredential("pos-p")});
  std::atomic<int> polls_refused{0};
  FakeHttpServer server([&](const FakeRequest& req) {
    if (req.path.find("/target?") != std::string::npos && req.path.find("wait=0") == std::string::npos) {
      ++polls_refused;
      return FakeReply{400, R"({"error":{"code":"invalid_argument","message":"wait is over the limit"}})", {}};
    }
    return Forward(req.path.starts_with("/v1/terminals/pos-p/") ? as_p : reader, req);
  });
  const std::string state = t / "state";
  Result<AgentConfig> config = LoadAgentConfig(WriteAgentConfig(
      t / "agent.toml",
      {.id = "pos-p", .servers = {server.url()}, .root = d.root_json(), .state = state, .enrol_at = &d, .model = "fraud"}));
  REQUIRE(config.ok());
  SystemClock clock;
  Result<std::unique_ptr<Agent>> agent = Agent::Open(*config, clock);
  REQUIRE(agent.ok());
  REQUIRE((*agent)->RunOnce(5).ok());  // nothing settled yet: no long poll, 1.0.0 installed
  CHECK(InstalledVersion(state, "fraud") == "1.0.0");
  CHECK(polls_refused == 0);
  Status polled = (*agent)->RunOnce(5);
  CHECK(polls_refused == 1);
  CHECK_FALSE(polled.ok());
  CHECK_THAT(polled.message(), Catch::Contains("long poll") && Catch::Contains("wait is over the limit"));
  CHECK(InstalledVersion(state, "fraud") == "1.0.0");
}
