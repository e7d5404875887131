// An origin and region daemons (sg, ae, br) on loopback, with agents in each
// region: data residency, wave rollouts, an origin outage with reports
// forwarded exactly once, and a region catching up after missing versions.
// A region's channel state expiring while its upstream is away takes time:
// it is tested on fake clocks, in process (tests/region_in_process_test.cc).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/encoding.h"
#include "client/http_client.h"
#include "store/store.h"
#include "tests/certs.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

constexpr auto kSyncWait = std::chrono::seconds(60);

// GET `path` from `d` with its terminal token (models are private): the status.
long HttpStatus(const DaemonFixture& d, const std::string& path) {
  HttpClient c(d.url(), d.ClientOptions(d.terminal_token()));
  Result<HttpReply> r = c.Get(path);
  return r.ok() ? r->status : -1;
}

Json GetJson(const std::string& url, const std::string& path, const std::string& token) {
  HttpClient c(url, HttpClientOptions{.timeout_ms = 30'000, .bearer_token = token});
  Result<HttpReply> r = c.Get(path);
  REQUIRE(r.ok());
  INFO(r->body);
  REQUIRE(r->status == 200);
  return Json::parse(r->body);
}

// What a terminal of `region` is told to run by that region's daemon (with
// the credential `origin` issued it).
std::string TargetVersion(DaemonFixture& origin, const DaemonFixture& region_daemon, const std::string& region,
                          const std::string& terminal) {
  HttpClient c(region_daemon.url(), region_daemon.ClientOptions(origin.TerminalCredential(terminal)));
  Result<HttpReply> r = c.Get("/v1/terminals/" + terminal + "/target?model=fraud&region=" + region);
  if (!r.ok() || r->status != 200) return "";
  return Json::parse(r->body)["version"].get<std::string>();
}

// The signed manifest of fraud `version` as `d` serves it (payload only).
Json ManifestAt(const DaemonFixture& d, const std::string& version) {
  HttpClient c(d.url(), d.ClientOptions(d.terminal_token()));
  Result<HttpReply> env = c.Get("/v1/models/fraud/versions/" + version);
  REQUIRE(env.ok());
  REQUIRE(env->status == 200);
  Result<Bytes> payload = Base64Decode(Json::parse(env->body)["payload"].get<std::string>());
  REQUIRE(payload.ok());
  return Json::parse(AsString(*payload));
}

struct Agent {
  std::string config;
  std::string state;
};

// An agent of `region` following `region_daemon` (trusting its CA when it serves HTTPS).
Agent MakeAgent(const TempDir& t, DaemonFixture& origin, const DaemonFixture& region_daemon,
                const std::string& region, const std::string& id, const std::string& health_check = "") {
  Agent a{t / (id + ".toml"), t / (id + "-state")};
  const std::string& ca = region_daemon.ClientOptions().tls.ca_file;
  WriteAgentConfig(a.config, {.id = id, .servers = {region_daemon.url()}, .root = origin.root_json(), .state = a.state,
                              .enrol_at = &origin, .model = "fraud",
                              .health_check = health_check,
                              .extra = ca.empty() ? "" : "ca_file = \"" + ca + "\"\n",
                              .region = region});
  return a;
}

int RunAgent(const Agent& a) {
  CommandResult r = Run({MeridianAgentPath(), "--config", a.config, "--once"});
  UNSCOPED_INFO(r.err);
  return r.exit_code;
}

// An origin with `regions` following it; with `https`, every daemon serves
// HTTPS with a certificate of a private CA that every client is given.
struct Fleet {
  TempDir pki;
  std::optional<TestCa> ca;
  DaemonFixture origin;
  std::map<std::string, std::unique_ptr<DaemonFixture>> regions;

  explicit Fleet(const std::vector<std::string>& names, bool https = false) {
    std::vector<std::string> tls_flags;
    if (https) {
      ca.emplace(pki.path(), "ca");
      CertFiles server = ca->IssueServer("server");
      tls_flags = {"--tls-certificate", server.certificate, "--tls-key", server.key};
      origin.UseTls({.ca_file = ca->certificate()});
    }
    origin.Start(tls_flags);
    for (const std::string& n : names) {
      regions[n] = DaemonFixture::Region(origin.root_json());
      std::vector<std::string> flags = tls_flags;
      if (https) {
        regions[n]->UseTls({.ca_file = ca->certificate()});
        flags.insert(flags.end(), {"--upstream-ca-file", ca->certificate()});
      }
      regions[n]->StartRegion(n, origin.url(), origin.mirror_token_file(), flags);
    }
  }
  DaemonFixture& operator[](const std::string& n) { return *regions.at(n); }
  // Publishes fraud `version`, resident in `only` (none: anywhere), its
  // chunks to `store_at` when given.
  CommandResult Publish(const std::string& version, const std::string& path, const std::vector<std::string>& only = {},
                        const DaemonFixture* store_at = nullptr) {
    std::vector<std::string> args{"--token", origin.publisher_token(), "publish", "--key", origin.release_key(),
                                  "--model", "fraud", "--version", version};
    for (const std::string& r : only) args.insert(args.end(), {"--region", r});
    if (store_at != nullptr) {
      args.insert(args.end(), {"--store-at", store_at->url(), "--store-token-file", store_at->publisher_token_file()});
    }
    args.push_back(path);
    return origin.Cli(args);
  }
  bool Holds(const std::string& region, const std::string& version) {
    return HttpStatus((*this)[region], "/v1/models/fraud/versions/" + version) == 200;
  }
};

}  // namespace

TEST_CASE("data residency over HTTPS: a model restricted to br has bytes in br only; the origin keeps its manifest") {
  Fleet f({"sg", "ae", "br"}, /*https=*/true);
  REQUIRE(f["br"].url().starts_with("https://"));
  TempDir t;
  Bytes secret = RandomBytes(700'000, 7), open = RandomBytes(300'000, 8);
  WriteFile(t / "secret", secret);
  WriteFile(t / "open", open);
  // The origin declares no jurisdiction: it refuses the chunks before any is sent.
  CommandResult to_origin = f.Publish("1.0.0", t / "secret", {"br"});
  CHECK(to_origin.exit_code == 1);
  CHECK_THAT(to_origin.err, Catch::Contains("may not hold bytes of a model resident in br") &&
                                Catch::Contains("--store-at"));
  CHECK(Metric(f.origin.url(), "meridian_store_chunks", f.origin.ClientOptions()) == 0);
  // Chunks to br, the signed manifest to the origin.
  auto published = std::chrono::steady_clock::now();
  REQUIRE(f.Publish("1.0.0", t / "secret", {"br"}, &f["br"]).exit_code == 0);
  // Published after it: once a region holds this, it has seen the first.
  CommandResult pub = f.origin.Cli({"--token", f.origin.publisher_token(), "publish", "--key", f.origin.release_key(),
                                    "--model", "ocr", "--version", "1.0.0", t / "open"});
  REQUIRE(pub.exit_code == 0);
  for (const char* r : {"sg", "ae", "br"}) {
    INFO(r);
    REQUIRE(WaitFor([&] { return HttpStatus(f[r], "/v1/models/ocr/versions/1.0.0") == 200; }, kSyncWait));
  }
  REQUIRE(WaitFor([&] { return f.Holds("br", "1.0.0"); }, kSyncWait));
  std::printf("residency: br held the 700 KB model %lld ms after the publish command started\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - published)
                                         .count()));

  // Every chunk of the restricted model: served in br, 451 everywhere else.
  Json payload = ManifestAt(f.origin, "1.0.0");
  REQUIRE(payload["regions"] == Json::array({"br"}));
  std::vector<DaemonFixture*> elsewhere = {&f.origin, &f["sg"], &f["ae"]};
  std::vector<Digest> digests;
  for (const auto& c : payload["chunks"]) {
    digests.push_back(Digest::Parse(c["digest"].get<std::string>()).value());
    std::string path = "/v1/chunks/" + c["digest"].get<std::string>();
    CHECK(HttpStatus(f["br"], path) == 200);
    for (DaemonFixture* d : elsewhere) CHECK(HttpStatus(*d, path) == 451);
  }
  CHECK(digests.size() >= 3);
  const std::string artifact = "/v1/artifacts/" + payload["digest"].get<std::string>();
  CHECK(HttpStatus(f["br"], artifact) == 200);
  for (DaemonFixture* d : elsewhere) {
    CHECK(HttpStatus(*d, artifact) == 451);
    CHECK(HttpStatus(*d, "/v1/models/fraud/versions/1.0.0") == 200);  // the manifest is everywhere
  }
  HttpClient reader(f.origin.url(), f.origin.ClientOptions(f.origin.terminal_token()));
  Result<HttpReply> not_here = reader.Get(artifact);
  REQUIRE(not_here.ok());
  CHECK_THAT(not_here->body, Catch::Contains("not_resident") && Catch::Contains("residency excludes this daemon"));
  // An anonymous caller learns nothing: 401 before residency is looked at.
  HttpClient anonymous(f.origin.url(), f.origin.ClientOptions());
  CHECK(anonymous.Get(artifact)->status == 401);

  // The auditor's view: bytes in br only, the open model everywhere.
  Json residency;
  REQUIRE(WaitFor([&] {
    CommandResult r = f.origin.Cli({"--token", f.origin.operator_token(), "--output", "json", "residency"});
    if (r.exit_code != 0) return false;
    residency = Json::parse(r.out);
    for (const Json& m : residency["models"]) {
      if (m["model"] == "fraud" && m["daemons"].size() == 4 &&
          std::all_of(m["daemons"].begin(), m["daemons"].end(), [](const Json& d) { return d["versions"] == 1; })) {
        return true;
      }
    }
    return false;
  }, kSyncWait));
  for (const Json& m : residency["models"]) {
    for (const Json& d : m["daemons"]) {
      INFO(m["model"] << " at " << d["daemon"]);
      const bool br = d["daemon"] == "br";
      if (m["model"] == "fraud") {
        CHECK(d["bytes"] == (br ? secret.size() : 0));
        CHECK(d["versions_held"] == (br ? 1 : 0));
      } else {
        CHECK(d["bytes"] == open.size());
      }
    }
  }
  CommandResult table = f.origin.Cli({"--token", f.origin.operator_token(), "residency"});
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::Contains("fraud") && Catch::Contains("br") && Catch::Contains("700000"));
  std::printf("residency: %zu chunks of the br-only model: 200 in br, 451 at the origin, sg and ae\n", digests.size());

  // Rollouts: naming an excluded region, or none (all), is refused.
  HttpClient ctl(f.origin.url(), f.origin.ClientOptions(f.origin.operator_token()));
  Result<HttpReply> r = ctl.Post("/v1/rollouts", RolloutSpecJson("r-sg", "1.0.0", {{"regions", {"sg"}}}));
  REQUIRE(r.ok());
  CHECK(r->status == 400);
  CHECK_THAT(r->body, Catch::Contains("may not be served in region 'sg'"));
  r = ctl.Post("/v1/rollouts", RolloutSpecJson("r-all", "1.0.0"));
  REQUIRE(r.ok());
  CHECK(r->status == 400);
  r = ctl.Post("/v1/rollouts", RolloutSpecJson("r-br", "1.0.0", {{"regions", {"br"}}}));
  REQUIRE(r.ok());
  CHECK(r->status == 201);

  // A br terminal installs it through br; publishing at a region is refused.
  TempDir at;
  Agent a = MakeAgent(at, f.origin, f["br"], "br", "br-1");
  REQUIRE(WaitFor([&] { return TargetVersion(f.origin, f["br"], "br", "br-1") == "1.0.0"; }, kSyncWait));
  REQUIRE(RunAgent(a) == 0);
  CHECK(InstalledVersion(a.state, "fraud") == "1.0.0");
  HttpClient pc(f["sg"].url(), f["sg"].ClientOptions());
  Result<HttpReply> p = pc.Post("/v1/models/fraud/versions", "{}");
  REQUIRE(p.ok());
  CHECK(p->status == 403);
  CHECK_THAT(p->body, Catch::Contains("region_read_only"));

  // The stores themselves, scanned with the daemons stopped: no chunk of the
  // br-only model and no index entry for its artifact outside br.
  Digest whole = Digest::Parse(payload["digest"].get<std::string>()).value();
  for (auto* d : {&f.origin, &f["sg"], &f["ae"], &f["br"]}) {
    const bool br = d == &f["br"];
    REQUIRE(d->Terminate() == 0);
    Result<std::unique_ptr<Store>> store = Store::Open(d->data() + "/store", StoreOptions{.create_if_missing = false});
    REQUIRE(store.ok());
    Result<std::vector<Digest>> missing = (*store)->MissingChunks(digests);
    REQUIRE(missing.ok());
    CHECK(missing->size() == (br ? 0 : digests.size()));
    CHECK((*store)->FindArtifact(whole).ok() == br);
    CHECK((*store)->Check().clean());
  }
}

TEST_CASE("a wave rollout moves sg, then ae; a failing gate in ae stops it and br never moves") {
  Fleet f({"sg", "ae", "br"});
  TempDir t;
  Bytes v1 = RandomBytes(400'000, 21), v2 = v1;
  for (size_t i = 0; i < 2000; ++i) v2[i * 150] ^= 0x6b;
  WriteFile(t / "v1", v1);
  WriteFile(t / "v2", v2);
  REQUIRE(f.Publish("1.0.0", t / "v1").exit_code == 0);
  f.origin.StartRollout(RolloutSpecJson("r0", "1.0.0"));
  REQUIRE(f.origin.RolloutAction("r0", "promote", "baseline") == 200);  // the channel holds 1.0.0 everywhere

  // Two terminals per region; ae's health check fails on the new version.
  std::string fail_v2 = "cmp -s {path} " + (t / "v2") + " && exit 4; exit 0";
  std::map<std::string, std::vector<Agent>> agents;
  for (const char* r : {"sg", "ae", "br"}) {
    for (int i = 0; i < 2; ++i) {
      std::string id = std::string(r) + "-" + std::to_string(i);
      agents[r].push_back(MakeAgent(t, f.origin, f[r], r, id, std::string(r) == "ae" ? fail_v2 : ""));
    }
    REQUIRE(WaitFor([&] { return TargetVersion(f.origin, f[r], r, std::string(r) + "-0") == "1.0.0"; },
                    kSyncWait));
    for (const Agent& a : agents[r]) {
      REQUIRE(RunAgent(a) == 0);
      CHECK(InstalledVersion(a.state, "fraud") == "1.0.0");
    }
  }

  REQUIRE(f.Publish("1.1.0", t / "v2").exit_code == 0);
  f.origin.StartRollout(RolloutSpecJson("w", "1.1.0",
                                        {{"regions", {"sg", "ae", "br"}}, {"waves", true}, {"min_reports", 2},
                                         {"max_failure_rate", 0.0}, {"auto_promote", true}}));
  auto rollout = [&] { return Json::parse(f.origin.GetRollout("w")); };

  // Wave 1: sg. Its terminals move; ae and br are told to stay.
  REQUIRE(WaitFor([&] { return TargetVersion(f.origin, f["sg"], "sg", "sg-0") == "1.1.0"; }, kSyncWait));
  CHECK(TargetVersion(f.origin, f["ae"], "ae", "ae-0") == "1.0.0");
  CHECK(TargetVersion(f.origin, f["br"], "br", "br-0") == "1.0.0");
  for (const Agent& a : agents["sg"]) {
    REQUIRE(RunAgent(a) == 0);
    CHECK(InstalledVersion(a.state, "fraud") == "1.1.0");
  }
  // Their reports travel sg -> origin; the gate promotes into ae.
  REQUIRE(WaitFor([&] { return rollout()["state"]["stage"] == 1; }, kSyncWait));
  CHECK(rollout()["state"]["phase"] == "running");

  // Wave 2: ae fails its health checks; the gate pauses the rollout there.
  REQUIRE(WaitFor([&] { return TargetVersion(f.origin, f["ae"], "ae", "ae-0") == "1.1.0"; }, kSyncWait));
  for (const Agent& a : agents["ae"]) {
    CHECK(RunAgent(a) == 1);
    CHECK(InstalledVersion(a.state, "fraud") == "1.0.0");  // switched back
  }
  REQUIRE(WaitFor([&] { return rollout()["state"]["phase"] == "paused"; }, kSyncWait));
  Json w = rollout();
  CHECK(w["state"]["stage"] == 1);
  // br never moved: still told 1.0.0, its terminals run 1.0.0.
  REQUIRE(WaitFor([&] { return TargetVersion(f.origin, f["br"], "br", "br-0") == "1.0.0"; }, kSyncWait));
  for (const Agent& a : agents["br"]) {
    REQUIRE(RunAgent(a) == 0);
    CHECK(InstalledVersion(a.state, "fraud") == "1.0.0");
  }
  // The status shows the waves per region.
  CommandResult st = f.origin.Cli({"--token", f.origin.operator_token(), "rollout", "status", "w"});
  INFO(st.out << st.err);
  REQUIRE(st.exit_code == 0);
  CHECK_THAT(st.out, Catch::Contains("REGION"));
  std::map<std::string, Json> by_region;
  for (const auto& row : w["regions"]) by_region[row["region"].get<std::string>()] = row;
  CHECK(by_region["sg"]["wave"] == "done");
  CHECK(by_region["sg"]["updated"] == 2);
  CHECK(by_region["ae"]["wave"] == "paused");
  CHECK(by_region["ae"]["failed"] == 2);
  CHECK(by_region["br"]["wave"] == "waiting");
  CHECK(by_region["br"]["updated"] == 0);
  std::printf("waves: sg done (2 updated), ae paused (2 failed), br waiting\n");
}

TEST_CASE("origin away: a region serves its last signed state, queues reports, delivers each once") {
  Fleet f({"sg"});
  TempDir t;
  Bytes v1 = RandomBytes(300'000, 31);
  WriteFile(t / "v1", v1);
  REQUIRE(f.Publish("1.0.0", t / "v1").exit_code == 0);
  std::vector<Agent> agents;
  for (int i = 0; i < 3; ++i) agents.push_back(MakeAgent(t, f.origin, f["sg"], "sg", "sg-" + std::to_string(i)));
  // A first cycle while the origin is up gets each terminal its credential
  // (the origin issues them; the region checks them offline). Nothing to run yet.
  for (const Agent& a : agents) REQUIRE(RunAgent(a) == 0);
  f.origin.StartRollout(RolloutSpecJson("r1", "1.0.0", {{"min_reports", 3}}));
  REQUIRE(WaitFor([&] { return TargetVersion(f.origin, f["sg"], "sg", "sg-0") == "1.0.0"; }, kSyncWait));

  REQUIRE(f.origin.Terminate() == 0);
  // Terminals keep updating from sg within the last signed state.
  for (const Agent& a : agents) {
    REQUIRE(RunAgent(a) == 0);
    CHECK(InstalledVersion(a.state, "fraud") == "1.0.0");
  }
  REQUIRE(WaitFor([&] { return Metric(f["sg"].url(), "meridian_outbox_pending") == 3; }, kSyncWait));
  REQUIRE(WaitFor([&] { return Metric(f["sg"].url(), "meridian_upstream_reachable") == 0; }, kSyncWait));

  f.origin.Restart();
  REQUIRE(WaitFor([&] { return Metric(f["sg"].url(), "meridian_outbox_pending") == 0; }, kSyncWait));
  Json regions = GetJson(f.origin.url(), "/v1/regions", f.origin.operator_token());
  REQUIRE(regions["regions"].size() == 1);
  CHECK(regions["regions"][0]["region"] == "sg");
  CHECK(regions["regions"][0]["reports_received"] == 3);
  Json r1 = Json::parse(f.origin.GetRollout("r1"));
  CHECK(r1["stages"][0]["healthy"] == 3);
  CHECK(r1["stages"][0]["updated"] == 3);

  // A batch sent again (its answer lost) counts once.
  HttpClient mirror(f.origin.url(), HttpClientOptions{.timeout_ms = 30'000,
                                                      .bearer_token = std::string(AsString(ReadFile(f.origin.mirror_token_file())))
                                                                          .substr(0, 64)});
  Json batch = {{"reports",
                 {{{"id", "zz.test.1"},
                   {"terminal", "zz-1"},
                   {"report", {{"model", "fraud"}, {"version", "1.0.0"}, {"event", "installed"}, {"region", "zz"}}}}}}};
  Result<HttpReply> first = mirror.Post("/v1/reports", batch.dump());
  Result<HttpReply> again = mirror.Post("/v1/reports", batch.dump());
  REQUIRE(first.ok());
  REQUIRE(again.ok());
  CHECK(Json::parse(first->body)["accepted"] == 1);
  CHECK(Json::parse(again->body)["duplicates"] == 1);
  CHECK(Json::parse(again->body)["accepted"] == 0);
  regions = GetJson(f.origin.url(), "/v1/regions", f.origin.operator_token());
  for (const auto& row : regions["regions"]) {
    if (row["region"] == "zz") CHECK(row["reports_received"] == 1);
    if (row["region"] == "sg") CHECK(row["reports_received"] == 3);
  }
  std::printf("outage: 3 reports queued in sg while the origin was down, 3 received after, 0 duplicates counted\n");

  // meridian regions shows sg.
  CommandResult cli = f.origin.Cli({"--token", f.origin.operator_token(), "regions"});
  INFO(cli.out << cli.err);
  REQUIRE(cli.exit_code == 0);
  CHECK_THAT(cli.out, Catch::Contains("sg"));
}

TEST_CASE("a region down while three versions were published catches up; fsck is clean") {
  Fleet f({"sg"});
  TempDir t;
  Bytes v = RandomBytes(500'000, 41);
  WriteFile(t / "v0", v);
  REQUIRE(f.Publish("1.0.0", t / "v0").exit_code == 0);
  REQUIRE(WaitFor([&] { return f.Holds("sg", "1.0.0"); }, kSyncWait));
  REQUIRE(f["sg"].Terminate() == 0);
  for (int k = 1; k <= 3; ++k) {
    for (size_t i = 0; i < 500; ++i) v[(i * 997 + k * 13) % v.size()] ^= static_cast<uint8_t>(k);
    WriteFile(t / ("v" + std::to_string(k)), v);
    REQUIRE(f.Publish("1." + std::to_string(k) + ".0", t / ("v" + std::to_string(k))).exit_code == 0);
  }
  f["sg"].StartRegion("sg", f.origin.url(), f.origin.mirror_token_file());
  // Newest first: terminals are told to go there.
  for (const char* version : {"1.3.0", "1.2.0", "1.1.0"}) {
    INFO(version);
    REQUIRE(WaitFor([&] { return f.Holds("sg", version); }, kSyncWait));
  }
  // The newest, whole, from sg.
  HttpClient c(f["sg"].url(), HttpClientOptions{.timeout_ms = 30'000, .bearer_token = f["sg"].terminal_token()});
  Json payload = ManifestAt(f["sg"], "1.3.0");
  std::string digest = payload["digest"].get<std::string>();
  Result<HttpReply> art = c.Get("/v1/artifacts/" + digest);
  REQUIRE(art.ok());
  REQUIRE(art->status == 200);
  CHECK(Digest::Of(AsBytes(art->body)).ToString() == digest);
  CHECK(art->body.size() == v.size());
  // And a delta into it, fetched ahead of time with the origin's signature.
  std::string from = ManifestAt(f["sg"], "1.2.0")["digest"];
  REQUIRE(WaitFor([&] { return HttpStatus(f["sg"], "/v1/deltas/" + from + "/" + digest + "/info") == 200; }, kSyncWait));
  HttpClient oc(f.origin.url(), HttpClientOptions{.bearer_token = f.origin.terminal_token()});
  Result<HttpReply> origin_info = oc.Get("/v1/deltas/" + from + "/" + digest + "/info");
  Result<HttpReply> region_info = c.Get("/v1/deltas/" + from + "/" + digest + "/info");
  REQUIRE(origin_info.ok());
  REQUIRE(region_info.ok());
  CHECK(origin_info->body == region_info->body);
  std::printf("catch-up: sg holds 1.1.0, 1.2.0 and 1.3.0 after a restart; 1.3.0 serves whole (%zu bytes)\n",
              art->body.size());
  REQUIRE(f["sg"].Terminate() == 0);
  CommandResult fsck = f["sg"].Fsck();
  INFO(fsck.out << fsck.err);
  CHECK(fsck.exit_code == 0);
  CHECK_THAT(fsck.out, Catch::Contains("clean"));
}

TEST_CASE("a region can follow another region, and fails over between upstreams") {
  Fleet f({"sg"});
  // ae follows sg (first a dead address, then sg): versions, states and reports travel through sg.
  std::unique_ptr<DaemonFixture> ae = DaemonFixture::Region(f.origin.root_json());
  ae->StartRegion("ae", "http://127.0.0.1:1," + f["sg"].url(), f["sg"].mirror_token_file());
  TempDir t;
  WriteFile(t / "v1", RandomBytes(200'000, 51));
  REQUIRE(f.Publish("1.0.0", t / "v1").exit_code == 0);
  f.origin.StartRollout(RolloutSpecJson("r1", "1.0.0", {{"min_reports", 1}}));
  REQUIRE(WaitFor([&] { return TargetVersion(f.origin, *ae, "ae", "ae-1") == "1.0.0"; }, kSyncWait));
  Agent a = MakeAgent(t, f.origin, *ae, "ae", "ae-1");
  REQUIRE(RunAgent(a) == 0);
  CHECK(InstalledVersion(a.state, "fraud") == "1.0.0");
  // The report reaches the origin through sg, once.
  auto reported = std::chrono::steady_clock::now();
  REQUIRE(WaitFor([&] { return Json::parse(f.origin.GetRollout("r1"))["stages"][0]["healthy"] == 1; }, kSyncWait));
  std::printf("chain: a report made ae -> sg -> origin in %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - reported)
                                         .count()));
  // The origin applies a forwarded batch to its rollouts, then writes the
  // per-region count: the count may trail the stage by a moment.
  auto ae_reports = [&] {
    Json regions = GetJson(f.origin.url(), "/v1/regions", f.origin.operator_token());
    for (const auto& row : regions["regions"]) {
      if (row["region"] == "ae") return row["reports_received"].get<uint64_t>();
    }
    return uint64_t{0};
  };
  CHECK(WaitFor([&] { return ae_reports() != 0; }, kSyncWait));
  CHECK(ae_reports() == 1);
  // sg lists ae as a region following it.
  Json at_sg = GetJson(f["sg"].url(), "/v1/regions", f["sg"].operator_token());
  CHECK(at_sg["role"] == "region");
  REQUIRE(at_sg["regions"].size() == 1);
  CHECK(at_sg["regions"][0]["region"] == "ae");
  CHECK(at_sg["upstream"]["reachable"] == true);
  // ae's log says which upstream it left, why, and for which.
  const std::string log(AsString(ReadFile(ae->dir() / "meridiand.log")));
  CHECK_THAT(log, Catch::Contains("http://127.0.0.1:1/v1/sync") && Catch::Contains("; trying " + f["sg"].url()));
}

TEST_CASE("a region reports its verification failures upstream; the origin keeps what it saw of regions across restarts") {
  DaemonFixture origin;
  origin.Start();
  DaemonFixture stranger;  // another origin: its root trusts other keys
  std::unique_ptr<DaemonFixture> sg = DaemonFixture::Region(stranger.root_json());
  sg->StartRegion("sg", origin.url(), origin.mirror_token_file());
  TempDir t;
  WriteFile(t / "v1", RandomBytes(200'000, 41));
  REQUIRE(origin.Cli({"--token", origin.publisher_token(), "publish", "--key", origin.release_key(), "--model", "fraud",
                      "--version", "1.0.0", t / "v1"}).exit_code == 0);

  // The region refuses the manifest (its root does not know the key) and says so upstream.
  Json row;
  REQUIRE(WaitFor([&] {
    Json regions = GetJson(origin.url(), "/v1/regions", origin.operator_token());
    if (regions["regions"].size() != 1) return false;
    row = regions["regions"][0];
    return !row["last_error"].get<std::string>().empty();
  }, kSyncWait));
  INFO(row.dump());
  CHECK(row["region"] == "sg");
  CHECK(row["reachable"] == true);
  CHECK(row["healthy"] == false);
  CHECK_THAT(row["last_error"].get<std::string>(), Catch::Contains("fetching fraud 1.0.0"));
  CommandResult cli = origin.Cli({"--token", origin.operator_token(), "regions"});
  CHECK_THAT(cli.out, Catch::Contains("FAULT"));
  CHECK_THAT(cli.out, Catch::Contains("sg: fetching fraud 1.0.0"));

  // The region goes away, the origin restarts: what it last saw of sg is still there.
  REQUIRE(sg->Terminate() == 0);
  const int64_t seen_before = row["last_seen_ms"].get<int64_t>();
  REQUIRE(origin.Terminate() == 0);
  origin.Restart();
  Json after = GetJson(origin.url(), "/v1/regions", origin.operator_token());
  REQUIRE(after["regions"].size() == 1);
  const Json& kept = after["regions"][0];
  CHECK(kept["region"] == "sg");
  CHECK(kept["reachable"] == false);
  CHECK(kept["last_seen_ms"].get<int64_t>() >= seen_before - 10'000);  // written at least every 10 s
  CHECK(kept["last_error"] == row["last_error"]);
}
