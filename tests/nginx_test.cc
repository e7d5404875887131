// nginx (Debian's package, scripts/setup.sh) as the caching reverse proxy of
// deploy/nginx/meridian-cache.conf in front of one meridiand, on loopback:
// chunk, artifact and delta URLs are served from the cache on the second
// request (X-Cache-Status, and meridiand's own request counters), Range works,
// errors are not stored, the target long-poll and reports pass through, and
// agents configured with the proxy as their server verify and install.
//
// The daemon nginx fronts is `upstream` in each test case: the origin in the
// first (publishing goes through the proxy too), a region in the second.
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/file.h"
#include "client/api.h"
#include "client/http_client.h"
#include "delta/delta_info.h"
#include "manifest/manifest.h"
#include "signing/signing.h"
#include "tests/harness.h"
#include "tests/loopback.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kSliceBytes = 8u << 20;  // `slice` in deploy/nginx/meridian-cache.conf

// nginx with the template's placeholders filled in, in front of `upstream_url`.
class Nginx {
 public:
  explicit Nginx(const std::string& upstream_url) : front_end_(Spec(upstream_url)) {}

  std::string url() const { return front_end_.url(); }
  std::string ErrorLog() const { return std::string(AsString(ReadFile(prefix() + "/error.log"))); }
  // error.log lines at level error or worse (a cache nginx cannot write, an
  // upstream cut short, ...).
  std::string Problems() const {
    std::string log = ErrorLog(), out;
    for (size_t start = 0; start < log.size();) {
      size_t end = std::min(log.find('\n', start), log.size());
      std::string line = log.substr(start, end - start);
      for (const char* level : {"[error]", "[crit]", "[alert]", "[emerg]"}) {
        if (line.find(level) != std::string::npos) {
          out += line + "\n";
          break;
        }
      }
      start = end + 1;
    }
    return out;
  }
  // Graceful shutdown (SIGQUIT); the exit code.
  int Stop() { return front_end_.Stop(SIGQUIT); }

 private:
  std::string prefix() const { return dir_ / "prefix"; }
  FrontEndSpec Spec(const std::string& upstream_url) {
    REQUIRE(upstream_url.starts_with("http://"));
    std::filesystem::create_directory(prefix());
    // Started as root, workers switch to `user`: the test's directories are
    // private to root, so root it is. Otherwise nginx ignores the directive.
    std::string user = "root";
    if (::geteuid() != 0) {
      const passwd* pw = ::getpwuid(::geteuid());
      user = pw != nullptr ? pw->pw_name : "nobody";
    }
    return FrontEndSpec{
        .program = "nginx",
        .template_variable = "MERIDIAN_NGINX_CONF",
        .placeholders = {{"@UPSTREAM@", upstream_url.substr(7)}, {"@CACHE_DIR@", dir_ / "cache"},
                         {"@PREFIX@", prefix()}, {"@USER@", user}},
        .config_path = prefix() + "/nginx.conf",
        .arguments = {"-p", prefix(), "-c", prefix() + "/nginx.conf", "-e", prefix() + "/error.log", "-g",
                      "daemon off;"},
        .output_path = dir_ / "nginx.out",
        .probe_path = "/healthz",  // through nginx to meridiand
        .log = [this] { return ErrorLog(); },
    };
  }
  TempDir dir_;  // declared first: removed after nginx has stopped
  FrontEnd front_end_;
};

// GETs `path` twice through the proxy: a MISS, then a HIT with the same
// 200 body. Returns the second reply.
HttpReply MissThenHit(HttpClient& proxy, const std::string& path) {
  Result<HttpReply> first = proxy.Get(path);
  Result<HttpReply> second = proxy.Get(path);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(first->status == 200);
  CHECK(second->status == 200);
  CHECK(first->Header("x-cache-status") == "MISS");
  CHECK(second->Header("x-cache-status") == "HIT");
  CHECK(second->body == first->body);
  return *second;
}

// How many requests meridiand at `upstream` answered on `route` with `status`
// (its /metrics): what reached the daemon, as opposed to what nginx served.
uint64_t Served(const std::string& upstream, const std::string& route, int status) {
  HttpClient c(upstream);
  Result<HttpReply> r = c.Get("/metrics");
  REQUIRE(r.ok());
  std::string key = "meridian_http_requests_total{route=\"" + route + "\",status=\"" + std::to_string(status) + "\"} ";
  size_t at = r->body.find(key);
  return at == std::string::npos ? 0 : std::stoull(r->body.substr(at + key.size()));
}

// The manifest of a published version, read through `c` (the payload; the
// agents are what check signatures).
Manifest ManifestOf(HttpClient& c, const std::string& version) {
  Result<HttpReply> r = c.Get("/v1/models/fraud/versions/" + version);
  REQUIRE(r.ok());
  REQUIRE(r->status == 200);
  CHECK(r->Header("x-cache-status").empty());  // manifests pass through
  Result<Envelope> env = ParseEnvelope(r->body);
  REQUIRE(env.ok());
  Result<Manifest> m = ParseManifest(AsString(env->payload));
  REQUIRE(m.ok());
  return *m;
}

// Two versions of a model: 10 MB (two slices), then a few bytes changed.
struct Versions {
  Bytes v1 = RandomBytes(10'000'000, 7);
  Bytes v2 = [this] {
    Bytes b = v1;
    for (size_t i = 0; i < b.size(); i += 100'000) b[i] ^= 0x5a;
    return b;
  }();
};

bool Completed(DaemonFixture& d, const std::string& rollout) {
  return Json::parse(d.GetRollout(rollout))["state"]["phase"] == "completed";
}

}  // namespace

TEST_CASE("nginx caches chunks, artifacts and deltas; errors, targets and reports pass through") {
  DaemonFixture origin;
  origin.Start();
  const std::string upstream = origin.url();  // the daemon nginx fronts
  Nginx nginx(upstream);
  TempDir t;
  Versions data;
  WriteFile(t / "v1", data.v1);
  WriteFile(t / "v2", data.v2);
  REQUIRE(origin.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);

  // Models are private unless published --public: a terminal reads them.
  HttpClient proxy(nginx.url(), HttpClientOptions{.bearer_token = origin.terminal_token()});
  HttpClient no_credential(nginx.url());
  Manifest m1 = ManifestOf(proxy, "1.0.0");
  REQUIRE(m1.chunks.size() >= 2);

  SECTION("a chunk: MISS, then HIT with the same bytes; meridiand sees one request") {
    const ChunkRef& c = m1.chunks[0];
    const std::string path = ChunkPath(c.digest);
    const std::string want(AsString(data.v1).substr(0, c.size));
    uint64_t before = Served(upstream, "GET /v1/chunks/{digest}", 206);
    HttpReply second = MissThenHit(proxy, path);
    CHECK(second.body == want);
    CHECK(Digest::Of(second.body) == c.digest);
    CHECK(second.Header("etag") == "\"" + c.digest.ToString() + "\"");
    CHECK(second.Header("cache-control") == "private, max-age=31536000, immutable");
    CHECK(Served(upstream, "GET /v1/chunks/{digest}", 206) == before + 1);  // one slice

    // Stored, and still refused without a credential or with a wrong one:
    // nginx asks meridiand (auth_request) before it serves a hit.
    Result<HttpReply> refused = no_credential.Get(path);
    REQUIRE(refused.ok());
    CHECK(refused->status == 401);
    CHECK(refused->body.find(c.digest.Hex()) == std::string::npos);
    HttpClient wrong(nginx.url(), HttpClientOptions{.bearer_token = "not-a-token"});
    Result<HttpReply> forbidden = wrong.Get(path);
    REQUIRE(forbidden.ok());
    CHECK(forbidden->status == 403);
    // Nor is it served for a path nginx normalises to it (merged slashes, dot
    // segments; sent raw, as libcurl would tidy them up): meridiand checks the
    // path as sent, which names no route, and refuses it.
    const uint16_t port = static_cast<uint16_t>(std::stoi(nginx.url().substr(nginx.url().rfind(':') + 1)));
    for (const std::string& odd : {"/" + path, "/v1/chunks/x/.." + path.substr(10), "/v1/./chunks/" + path.substr(11)}) {
      INFO(odd);
      // (Not half-closed after it: nginx takes that for a client gone.)
      std::string raw =
          meridian::testing::ExchangeLoopback(port, "GET " + odd + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
      CHECK(raw.starts_with("HTTP/1.1 403 "));
      CHECK(raw.find(want) == std::string::npos);
    }
    Result<HttpReply> third = proxy.Get(path);
    REQUIRE(third.ok());
    CHECK(third->Header("x-cache-status") == "HIT");
    CHECK(Served(upstream, "GET /v1/chunks/{digest}", 206) == before + 1);

    // Conditional requests are answered from the cache too.
    Result<HttpReply> cond = proxy.Get(path, {"If-None-Match: \"" + c.digest.ToString() + "\""});
    REQUIRE(cond.ok());
    CHECK(cond->status == 304);
    CHECK(cond->Header("x-cache-status") == "HIT");
  }

  SECTION("an artifact: MISS, then HIT; Range is served from the slices") {
    const std::string path = ArtifactPath(m1.digest);
    uint64_t before = Served(upstream, "GET /v1/artifacts/{digest}", 206);
    CHECK(MissThenHit(proxy, path).body == AsString(data.v1));
    uint64_t slices = (data.v1.size() + kSliceBytes - 1) / kSliceBytes;
    CHECK(Served(upstream, "GET /v1/artifacts/{digest}", 206) == before + slices);

    Result<HttpReply> range = proxy.Get(path, {"Range: bytes=9000000-9000099"});
    REQUIRE(range.ok());
    CHECK(range->status == 206);
    CHECK(range->Header("content-range") == "bytes 9000000-9000099/10000000");
    CHECK(range->body == AsString(data.v1).substr(9'000'000, 100));
    CHECK(range->Header("x-cache-status") == "HIT");
    // An open-ended range across the slice boundary (an agent resuming).
    Result<HttpReply> tail = proxy.Get(path, {"Range: bytes=8000000-"});
    REQUIRE(tail.ok());
    CHECK(tail->status == 206);
    CHECK(tail->body == AsString(data.v1).substr(8'000'000));
    CHECK(Served(upstream, "GET /v1/artifacts/{digest}", 206) == before + slices);  // all from the cache

    // A Range request on a cold object fetches its slice and fills the cache.
    const ChunkRef& c = m1.chunks[1];
    const std::string chunk = ChunkPath(c.digest);
    Result<HttpReply> part = proxy.Get(chunk, {"Range: bytes=10-19"});
    REQUIRE(part.ok());
    CHECK(part->status == 206);
    CHECK(part->Header("x-cache-status") == "MISS");
    CHECK(part->body == AsString(data.v1).substr(m1.chunks[0].size + 10, 10));
    Result<HttpReply> whole = proxy.Get(chunk);
    REQUIRE(whole.ok());
    CHECK(whole->status == 200);
    CHECK(whole->Header("x-cache-status") == "HIT");
    CHECK(Digest::Of(whole->body) == c.digest);
  }

  SECTION("a public model: read without a credential, cached, marked public") {
    CommandResult pub = origin.Cli({"--token", origin.publisher_token(), "publish", "--key", origin.release_key(),
                                    "--model", "open", "--version", "1.0.0", "--public", t / "v2"});
    REQUIRE(pub.exit_code == 0);
    const std::string path = ArtifactPath(Digest::Of(data.v2));
    HttpReply second = MissThenHit(no_credential, path);
    CHECK(second.body == AsString(data.v2));
    CHECK(second.Header("cache-control") == "public, max-age=31536000, immutable");
    // The private model stays private next to it.
    Result<HttpReply> refused = no_credential.Get(ArtifactPath(m1.digest));
    REQUIRE(refused.ok());
    CHECK(refused->status == 401);
  }

  SECTION("errors are not stored: an unknown chunk, a pending delta") {
    const std::string unknown = ChunkPath(Digest::Of(std::string_view("not published")));
    for (int i = 0; i < 2; ++i) {
      Result<HttpReply> r = proxy.Get(unknown);
      REQUIRE(r.ok());
      CHECK(r->status == 404);
      CHECK(r->Header("x-cache-status") == "MISS");
      CHECK_THAT(r->body, Catch::Contains("\"error\""));
    }
    // v1 -> v2 is computed when v2 is published; the reverse only on request:
    // 409 delta_pending first, and that answer must not stick in the cache.
    REQUIRE(origin.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
    Manifest m2 = ManifestOf(proxy, "2.0.0");
    const std::string reverse = DeltaPath(m2.digest, m1.digest);
    Result<HttpReply> pending = proxy.Get(reverse);
    REQUIRE(pending.ok());
    CHECK(pending->status == 409);
    CHECK_THAT(pending->body, Catch::Contains("delta_pending"));
    CHECK(pending->Header("x-cache-status") == "MISS");
    Result<HttpReply> ready = Status::Unavailable("");
    REQUIRE(WaitFor([&] {
      ready = proxy.Get(reverse);
      return ready.ok() && ready->status != 409;
    }, seconds(60)));
    CHECK(ready->status == 200);
    CHECK(ready->Header("x-cache-status") == "MISS");
    Result<HttpReply> again = proxy.Get(reverse);
    REQUIRE(again.ok());
    CHECK(again->Header("x-cache-status") == "HIT");
    CHECK(again->body == ready->body);
    // The signed descriptor passes through.
    Result<HttpReply> info = proxy.Get(reverse + "/info");
    REQUIRE(info.ok());
    CHECK(info->status == 200);
    CHECK(info->Header("x-cache-status").empty());
  }

  SECTION("the target long-poll and reports pass through") {
    origin.StartRollout(RolloutSpecJson("r1", "1.0.0", {{"auto_promote", true}}));
    TerminalsClient term(origin, nginx.url());
    const std::string target = "/v1/terminals/pos-1/target?model=fraud&profile=pos-arm64&region=sg";
    Result<HttpReply> now = term.Get(target);
    REQUIRE(now.ok());
    REQUIRE(now->status == 200);
    CHECK(now->Header("x-cache-status").empty());
    CHECK(Json::parse(now->body)["version"] == "1.0.0");

    // A report (POST with the terminal's credential) reaches meridiand: the rollout completes.
    Json report = {{"model", "fraud"}, {"version", "1.0.0"}, {"channel", "stable"}, {"rollout", "r1"},
                   {"event", "installed"}, {"reason", ""}, {"profile", "pos-arm64"}, {"region", "sg"}};
    Result<HttpReply> posted = term.Post("/v1/terminals/pos-1/reports", report.dump());
    REQUIRE(posted.ok());
    CHECK(posted->status == 202);
    CHECK(posted->Header("x-cache-status").empty());
    REQUIRE(WaitFor([&] { return Completed(origin, "r1"); }, seconds(30)));
    // Without the token, meridiand (not nginx) says no.
    Result<HttpReply> anonymous = no_credential.Get(target);
    REQUIRE(anonymous.ok());
    CHECK(anonymous->status == 401);

    now = term.Get(target);
    REQUIRE(now.ok());
    uint64_t known = Json::parse(now->body)["state_version"].get<uint64_t>();
    const std::string poll = target + "&known=" + std::to_string(known);

    // Nothing changes: held for the whole wait, then the same state.
    auto start = Clock::now();
    Result<HttpReply> held = term.Get(poll + "&wait=1");
    REQUIRE(held.ok());
    CHECK(held->status == 200);
    CHECK(Clock::now() - start >= milliseconds(900));
    CHECK(Json::parse(held->body)["state_version"] == known);

    // A change wakes a waiting poll at once, through nginx.
    Result<HttpReply> woken = Status::Unavailable("");
    Clock::duration took{};
    std::thread waiter([&] {
      HttpClient own(nginx.url(), HttpClientOptions{.bearer_token = origin.TerminalCredential("pos-1")});
      auto t0 = Clock::now();
      woken = own.Get(poll + "&wait=60");
      took = Clock::now() - t0;
    });
    bool waiting = WaitFor([&] { return Metric(upstream, "meridian_long_polls_held") >= 1; }, seconds(30));
    // Publishing passes through nginx too (PUT chunks, POST the manifest).
    CommandResult pub = Run({MeridianPath(), "--server", nginx.url(), "--token", origin.publisher_token(), "--output",
                             "json", "publish", "--key", origin.release_key(), "--model", "fraud", "--version",
                             "2.0.0", t / "v2"});
    origin.StartRollout(RolloutSpecJson("r2", "2.0.0", {{"auto_promote", true}}));
    waiter.join();
    CHECK(waiting);
    INFO(pub.err);
    CHECK(pub.exit_code == 0);
    REQUIRE(woken.ok());
    CHECK(woken->status == 200);
    CHECK(woken->Header("x-cache-status").empty());
    CHECK(Json::parse(woken->body)["version"] == "2.0.0");
    CHECK(Json::parse(woken->body)["state_version"].get<uint64_t>() > known);
    INFO("woken after " << std::chrono::duration_cast<milliseconds>(took).count() << " ms");
    CHECK(took < seconds(30));
  }

  CHECK(nginx.Stop() == 0);
  std::string problems = nginx.Problems();
  INFO("nginx error.log:\n" << problems);
  CHECK(problems.empty());
}

TEST_CASE("nginx in front of a region: chunks from the cache, agents behind it verify and install") {
  DaemonFixture origin;
  origin.Start();
  std::unique_ptr<DaemonFixture> region = DaemonFixture::Region(origin.root_json());
  region->StartRegion("sg", origin.url(), origin.mirror_token_file());
  const std::string upstream = region->url();  // the daemon nginx fronts
  Nginx nginx(upstream);
  // What terminals of sg are told, through nginx (passed through, never cached).
  auto target_at_region = [&](const std::string& terminal) {
    TerminalsClient c(origin, nginx.url());  // credentials the origin issued, checked by the region
    Result<HttpReply> r = c.Get("/v1/terminals/" + terminal + "/target?model=fraud&region=sg");
    return r.ok() && r->status == 200 ? Json::parse(r->body)["version"].get<std::string>() : std::string();
  };
  TempDir t;
  Versions data;
  WriteFile(t / "v1", data.v1);
  WriteFile(t / "v2", data.v2);
  REQUIRE(origin.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  origin.StartRollout(RolloutSpecJson("r1", "1.0.0", {{"auto_promote", true}}));

  struct Agent {
    std::string config, state;
  };
  std::vector<Agent> agents;
  for (const std::string id : {"pos-a", "pos-b"}) {
    std::string state = t / (id + "-state");
    agents.push_back({WriteAgentConfig(t / (id + ".toml"), {.id = id, .servers = {nginx.url()},
                                                             .root = origin.root_json(), .state = state,
                                                             .enrol_at = &origin, .model = "fraud"}),
                      state});
  }
  auto once = [](const Agent& a) {
    CommandResult r = Run({MeridianAgentPath(), "--config", a.config, "--once"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  };
  auto downloaded = [](const Agent& a) {
    CommandResult r = Run({MeridianAgentPath(), "status", "--config", a.config, "--output", "json"});
    REQUIRE(r.exit_code == 0);
    return Json::parse(r.out)["downloaded_bytes"].get<uint64_t>();
  };
  // The installed file, after checking it hashes to the digest its slot was verified with.
  auto installed = [](const Agent& a) {
    std::string link = a.state + "/models/fraud/current";
    REQUIRE(std::filesystem::is_symlink(link));
    std::string name = std::filesystem::read_symlink(link).string();
    Bytes file = ReadFile(link);
    CHECK(Digest::Of(file).Hex() == name.substr(name.rfind('_') + 1));
    return file;
  };

  // The region replicated 1.0.0 and the rollout's state ahead of the terminals.
  REQUIRE(WaitFor([&] { return target_at_region("pos-a") == "1.0.0"; }, seconds(60)));
  // A chunk through nginx: fetched from the region once, then a cache hit.
  HttpClient via(nginx.url(), HttpClientOptions{.bearer_token = region->terminal_token()});
  Result<HttpReply> manifest = via.Get("/v1/models/fraud/versions/1.0.0");
  REQUIRE(manifest.ok());
  REQUIRE(manifest->status == 200);
  Result<Envelope> menv = ParseEnvelope(manifest->body);
  REQUIRE(menv.ok());
  std::string chunk = "/v1/chunks/" + Json::parse(AsString(menv->payload))["chunks"][0]["digest"].get<std::string>();
  MissThenHit(via, chunk);

  const std::string artifacts = "GET /v1/artifacts/{digest}";
  uint64_t slices = (data.v1.size() + kSliceBytes - 1) / kSliceBytes;
  uint64_t before = Served(upstream, artifacts, 206);
  once(agents[0]);
  CHECK(installed(agents[0]) == data.v1);
  CHECK(downloaded(agents[0]) == data.v1.size());
  CHECK(Served(upstream, artifacts, 206) == before + slices);
  once(agents[1]);  // the same artifact: from the cache
  CHECK(installed(agents[1]) == data.v1);
  CHECK(Served(upstream, artifacts, 206) == before + slices);
  // Their reports went through nginx: the rollout completed on them.
  REQUIRE(WaitFor([&] { return Completed(origin, "r1"); }, seconds(30)));

  // v2 by delta, through nginx: the delta is computed on publish; wait for its descriptor.
  REQUIRE(origin.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
  const std::string delta = DeltaPath(Digest::Of(data.v1), Digest::Of(data.v2));
  HttpClient proxy(nginx.url(), HttpClientOptions{.bearer_token = region->terminal_token()});
  Result<HttpReply> info = Status::Unavailable("");
  REQUIRE(WaitFor([&] {
    info = proxy.Get(delta + "/info");
    return info.ok() && info->status == 200;
  }, seconds(60)));
  Result<Envelope> env = ParseEnvelope(info->body);
  REQUIRE(env.ok());
  Result<DeltaInfo> di = ParseDeltaInfo(AsString(env->payload));
  REQUIRE(di.ok());
  REQUIRE(di->worthwhile);
  REQUIRE(di->size < kSliceBytes);
  origin.StartRollout(RolloutSpecJson("r2", "2.0.0", {{"auto_promote", true}}));
  REQUIRE(WaitFor([&] { return target_at_region("pos-a") == "2.0.0"; }, seconds(60)));

  const std::string deltas = "GET /v1/deltas/{from}/{to}";
  uint64_t delta_before = Served(upstream, deltas, 206);
  uint64_t artifacts_before = Served(upstream, artifacts, 206);
  for (const Agent& a : agents) {
    uint64_t had = downloaded(a);
    once(a);
    CHECK(installed(a) == data.v2);
    CHECK(downloaded(a) - had == di->size);  // the delta, not the artifact
  }
  CHECK(Served(upstream, deltas, 206) == delta_before + 1);  // the second agent's came from the cache
  CHECK(Served(upstream, artifacts, 206) == artifacts_before);
  REQUIRE(WaitFor([&] { return Completed(origin, "r2"); }, seconds(30)));

  CHECK(nginx.Stop() == 0);
  std::string problems = nginx.Problems();
  INFO("nginx error.log:\n" << problems);
  CHECK(problems.empty());
}
