// Integration: root rotation through the chain. An origin rotates its root
// twice (1 -> 2 -> 3, the second rotation also replacing the release key);
// a region follows the chain from its upstream; an agent that polls in
// between follows each step, one that was offline during both catches up
// through the chain, and then both install a version signed by the new
// release key. A root 2 signed by the new keys alone is refused by the
// origin and, served by a lying mirror, by an agent that keeps working on
// the root it has.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/file.h"
#include "signing/signing.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

constexpr auto kSyncWait = std::chrono::seconds(60);

int64_t LatestRoot(const DaemonFixture& d) {
  HttpClient c(d.url());
  Result<HttpReply> r = c.Get("/v1/roots");
  if (!r.ok() || r->status != 200) return -1;
  return Json::parse(r->body)["latest"].get<int64_t>();
}

// The version of the root an agent's state directory trusts.
int64_t TrustedRootVersion(const std::string& state) {
  Result<std::string> text = ReadFileToString(state + "/root.json", kRootEnvelopeBytesMax);
  REQUIRE(text.ok());
  Result<Root> root = LoadTrustedRoot(*text);
  REQUIRE(root.ok());
  return root->version;
}

// A root `version` after `current` with root keys `root_keys`, signed by `signers` only.
std::string Forged(const Root& current, const std::vector<const SecretKey*>& root_keys,
                   const std::vector<const SecretKey*>& signers) {
  Root next = current;
  next.version = current.version + 1;
  next.roles["root"] = Role{{}, 1};
  for (const SecretKey* k : root_keys) {
    next.keys[k->KeyId()] = k->public_key();
    next.roles["root"].keyids.push_back(k->KeyId());
  }
  Envelope env{std::string(kRootPayloadType), ToBytes(RootToJson(next)), {}};
  for (const SecretKey* k : signers) SignEnvelope(env, *k);
  return EnvelopeToJson(env);
}

}  // namespace

TEST_CASE("a root rotated twice reaches agents through a region; an offline agent catches up; new keys alone are refused") {
  TempDir t;
  DaemonFixture origin;
  origin.Start();
  std::unique_ptr<DaemonFixture> region = DaemonFixture::Region(origin.root_json());
  region->StartRegion("sg", origin.url(), origin.mirror_token_file());
  auto cli = [&](std::vector<std::string> args) {
    CommandResult r = origin.Cli(std::move(args));
    INFO(r.err);
    return r;
  };
  Root root1 = LoadTrustedRootFile(origin.root_json()).value();

  WriteFile(t / "v1", RandomBytes(400'000, 1));
  REQUIRE(origin.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  origin.StartRollout(RolloutSpecJson("r1", "1.0.0"));
  REQUIRE(origin.RolloutAction("r1", "promote", "baseline") == 200);  // the channel holds 1.0.0
  auto agent = [&](const std::string& id, const std::string& server) {
    std::string config = t / (id + ".toml");
    WriteAgentConfig(config, {.id = id, .servers = {server}, .root = origin.root_json(), .state = t / (id + "-state"),
                              .enrol_at = &origin, .model = "fraud"});
    return config;
  };
  auto run = [&](const std::string& config) { return Run({MeridianAgentPath(), "--config", config, "--once"}); };
  const std::string online = agent("pos-online", region->url()), offline = agent("pos-offline", region->url());
  REQUIRE(WaitFor([&] { return run(online).exit_code == 0 && InstalledVersion(t / "pos-online-state", "fraud") == "1.0.0"; },
                  kSyncWait));
  REQUIRE(run(offline).exit_code == 0);
  CHECK(InstalledVersion(t / "pos-offline-state", "fraud") == "1.0.0");
  CHECK(TrustedRootVersion(t / "pos-online-state") == 1);

  // A root 2 signed by the new keys alone: the origin refuses it, and so
  // does the CLI that would write it.
  SecretKey thief = SecretKey::Generate();
  WriteFile(t / "forged-2.json", AsBytes(Forged(root1, {&thief}, {&thief})));
  CommandResult forged_push = cli({"--token", origin.operator_token(), "root", "push", t / "forged-2.json"});
  CHECK(forged_push.exit_code != 0);
  CHECK_THAT(forged_push.err, Catch::Contains("trusted root: root role: 0 of 1"));
  REQUIRE(Run({MeridianPath(), "keygen", t / "root2.key"}).exit_code == 0);
  CHECK(cli({"root", "rotate", "--root", origin.root_json(), "--old-key", t / "root2.key", "--new-key",
             t / "root2.key", "--out", t / "bad-2.json"})
            .exit_code != 0);
  CHECK_FALSE(std::filesystem::exists(t / "bad-2.json"));
  CHECK(LatestRoot(origin) == 1);
  // A lying mirror offers a root 2 signed by new keys alone to an agent on
  // root 1: refused and logged; the agent keeps root 1 and goes on working.
  const std::string forged(AsString(ReadFile(t / "forged-2.json")));
  // Forwards as terminal pos-misled, the agent behind it.
  HttpClient upstream(region->url(), HttpClientOptions{.bearer_token = origin.TerminalCredential("pos-misled")});
  FakeHttpServer mirror([&](const FakeRequest& req) {
    if (req.path == "/v1/roots") return FakeReply{200, R"({"latest":2})"};
    if (req.path == "/v1/roots/2") return FakeReply{200, forged};
    Result<HttpReply> r = req.path.find("/reports") != std::string::npos ? upstream.Post(req.path, req.body)
                                                                         : upstream.Get(req.path);
    return r.ok() ? FakeReply{static_cast<int>(r->status), r->body} : FakeReply{502};
  });
  const std::string misled = agent("pos-misled", mirror.url());
  CommandResult refused = run(misled);
  CHECK_THAT(refused.err, Catch::Contains("root version 2 refused, keeping version 1"));
  CHECK(refused.exit_code == 0);
  CHECK(InstalledVersion(t / "pos-misled-state", "fraud") == "1.0.0");
  CHECK(TrustedRootVersion(t / "pos-misled-state") == 1);

  // 1 -> 2: new root keys.
  CommandResult rotated = cli({"root", "rotate", "--root", origin.root_json(), "--old-key", origin.root_key(),
                               "--new-key", t / "root2.key", "--out", t / "root-2.json"});
  REQUIRE(rotated.exit_code == 0);
  auto pushed = std::chrono::steady_clock::now();
  REQUIRE(cli({"--token", origin.operator_token(), "root", "push", t / "root-2.json"}).exit_code == 0);
  CHECK(LatestRoot(origin) == 2);
  CHECK(cli({"--token", origin.operator_token(), "root", "push", t / "root-2.json"}).exit_code != 0);  // replayed
  REQUIRE(WaitFor([&] { return LatestRoot(*region) == 2; }, kSyncWait));
  std::printf("root rotation: the region served root 2 %lld ms after meridian root push started\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - pushed)
                                         .count()));
  REQUIRE(run(online).exit_code == 0);
  CHECK(TrustedRootVersion(t / "pos-online-state") == 2);

  // 2 -> 3: new root keys, and a new release key in place of the old one.
  REQUIRE(Run({MeridianPath(), "keygen", t / "root3.key"}).exit_code == 0);
  REQUIRE(Run({MeridianPath(), "keygen", t / "release3.key"}).exit_code == 0);
  REQUIRE(cli({"root", "rotate", "--root", t / "root-2.json", "--old-key", t / "root2.key", "--new-key",
               t / "root3.key", "--release-key", t / "release3.key.pub", "--out", t / "root-3.json"})
              .exit_code == 0);
  REQUIRE(cli({"--token", origin.operator_token(), "root", "push", t / "root-3.json"}).exit_code == 0);
  REQUIRE(WaitFor([&] { return LatestRoot(*region) == 3; }, kSyncWait));
  HttpClient region_client(region->url());
  CHECK(region_client.Get("/v1/roots/3").value().body == AsString(ReadFile(t / "root-3.json")));
  CHECK(region_client.Get("/v1/roots/2").value().body == AsString(ReadFile(t / "root-2.json")));

  // The old release key no longer publishes; the new one does, and its
  // version reaches the region and both agents.
  WriteFile(t / "v2", RandomBytes(400'000, 2));
  CHECK(origin.Publish("fraud", "2.0.0", t / "v2").exit_code != 0);
  REQUIRE(cli({"--token", origin.publisher_token(), "publish", "--key", t / "release3.key", "--model", "fraud",
               "--version", "2.0.0", t / "v2"})
              .exit_code == 0);
  origin.StartRollout(RolloutSpecJson("r2", "2.0.0"));
  REQUIRE(WaitFor([&] { return run(online).exit_code == 0 && InstalledVersion(t / "pos-online-state", "fraud") == "2.0.0"; },
                  kSyncWait));
  CHECK(TrustedRootVersion(t / "pos-online-state") == 3);
  auto offline_started = std::chrono::steady_clock::now();
  CommandResult caught_up = run(offline);
  std::printf("root rotation: the offline agent followed roots 2 and 3 and installed 2.0.0 in one cycle of %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - offline_started)
                                         .count()));
  INFO(caught_up.err);
  CHECK(caught_up.exit_code == 0);
  CHECK(TrustedRootVersion(t / "pos-offline-state") == 3);
  CHECK(InstalledVersion(t / "pos-offline-state", "fraud") == "2.0.0");
  CHECK_THAT(caught_up.err, Catch::Contains("now trusting root version 2") &&
                                Catch::Contains("now trusting root version 3"));

}
