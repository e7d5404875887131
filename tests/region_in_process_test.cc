// A region in process (tests/in_process_region.h) following an in-process
// origin over HTTP on loopback: what depends on time — channel states that
// expire while the origin is away — on fake clocks, so it takes milliseconds
// of them rather than seconds of real time; how often the follower asks; and
// how soon it leaves an upstream that stopped sending.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "client/api.h"
#include "client/http_client.h"
#include "daemon/upstream.h"
#include "manifest/chunk_pages.h"
#include "tests/harness.h"
#include "tests/in_process_region.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Bounds the wait for the follower (real time, real HTTP): it is in step in
// milliseconds; this is only how long a broken one is given.
constexpr auto kSyncWait = std::chrono::seconds(20);

// Requests to `route` ("GET /v1/sync") that `daemon` answered, from its /metrics.
uint64_t RequestsAnswered(InProcessDaemon& daemon, const std::string& route) {
  HttpResponse m = daemon.Call("GET", "/metrics", "", "Bearer " + daemon.tokens.operator_token);
  REQUIRE(m.status == 200);
  uint64_t n = 0;
  const std::string label = "{route=\"" + route + "\"";
  for (size_t at = m.body.find(label); at != std::string::npos; at = m.body.find(label, at + 1)) {
    n += std::stoull(m.body.substr(m.body.find(' ', m.body.find('}', at)) + 1));
  }
  return n;
}

// The artifact `model`@`version` as `region` serves it to a terminal.
std::string ServedArtifact(InProcessRegion& region, const std::string& model, const std::string& version) {
  std::shared_ptr<const Manifest> held = region.store->GetManifest(model, version).value();
  HttpResponse r = region.Call("GET", ArtifactPath(held->digest), "", "Bearer " + region.tokens.terminal);
  REQUIRE(r.status == 200);
  std::string bytes;
  for (Result<BodyPiece> piece = r.stream(); piece.ok(); piece = r.stream()) bytes += AsString(piece->bytes);
  return bytes;
}

}  // namespace

TEST_CASE("a region serves the last signed state until it expires, then 503; the upstream's return heals it") {
  // States that live 4 s, re-signed when under 2 s are left. The two clocks
  // move together while the origin is there.
  InProcessDaemon origin({.state_expiry_ms = 4000, .state_refresh_ms = 2000});
  ServedOrigin served(origin);
  InProcessRegion sg(origin, {served.url()});
  auto advance = [&](std::chrono::milliseconds d) {
    origin.clock.Advance(d);
    sg.clock.Advance(d);
  };
  const std::string terminal = origin.TerminalAuthorization("sg-1");
  auto target = [&] { return sg.Call("GET", "/v1/terminals/sg-1/target?model=fraud&region=sg", "", terminal); };
  auto target_version = [&] {
    HttpResponse r = target();
    return r.status == 200 ? Json::parse(r.body).at("version").get<std::string>() : "";
  };

  origin.Publish("fraud", "1.0.0", std::string(AsString(RandomBytes(100'000, 61))));
  origin.Operator("POST", RolloutsPath(), Json::parse(RolloutSpecJson("r1", "1.0.0")));
  REQUIRE(WaitFor([&] { return target_version() == "1.0.0"; }, kSyncWait));

  // Live: each tick that re-signs the state reaches the region, which keeps
  // answering past one lifetime (6 s of states that live 4 s).
  uint64_t resigned = 0;
  for (int step = 0; step < 4; ++step) {
    advance(1500ms);
    const uint64_t before = HeldStateVersion(*origin.rollouts);
    origin.Tick();
    const uint64_t now = HeldStateVersion(*origin.rollouts);
    if (now > before) ++resigned;
    INFO("step " << step << ": origin state " << now);
    REQUIRE(WaitFor([&] { return HeldStateVersion(*sg.rollouts) == now; }, kSyncWait));
    CHECK(target_version() == "1.0.0");
  }
  CHECK(resigned == 2);  // at 3 s and 6 s, each time with 1 s left

  // The origin goes away: the region keeps the last verified state while it is valid.
  served.Stop();
  REQUIRE(WaitFor([&] { return !sg.follower_status().upstream_ok; }, kSyncWait));
  CHECK(target_version() == "1.0.0");
  sg.clock.Advance(3999ms);  // the last state was signed at the region's now: 1 ms left
  CHECK(target_version() == "1.0.0");
  sg.clock.Advance(2ms);
  HttpResponse expired = target();
  CHECK(expired.status == 503);
  CHECK_THAT(expired.body, Catch::Contains("expired"));

  // The origin comes back (its clock caught up): its tick signs afresh and the region heals.
  origin.clock.Set(sg.clock.NowUnixMillis());
  served.Start();
  origin.Tick();
  REQUIRE(WaitFor([&] { return target_version() == "1.0.0"; }, kSyncWait));
  CHECK(HeldStateVersion(*sg.rollouts) == HeldStateVersion(*origin.rollouts));
  CHECK(WaitFor([&] { return sg.follower_status().upstream_ok; }, kSyncWait));  // set at the round's end
}

TEST_CASE("a region paces its rounds while a delta is still pending upstream, instead of asking as fast as it is answered") {
  InProcessDaemon origin;  // without a delta key: the delta 1.0.0 -> 1.1.0 stays pending
  origin.Publish("fraud", "1.0.0", std::string(AsString(RandomBytes(10'000, 71))));
  origin.Publish("fraud", "1.1.0", std::string(AsString(RandomBytes(10'000, 72))));
  ServedOrigin served(origin);
  InProcessRegion sg(origin, {served.url()});
  auto sync_requests = [&] { return RequestsAnswered(origin, "GET /v1/sync"); };
  REQUIRE(WaitFor([&] { return sg.store->GetManifest("fraud", "1.1.0").ok(); }, kSyncWait));
  const uint64_t rounds = sync_requests();
  // A round a second (FollowerOptions::retry_pause_ms) while the delta is
  // pending; at once, the 60 attempts it is given would be spent in a moment.
  CHECK_FALSE(WaitFor([&] { return sync_requests() > rounds + 3; }, 1500ms));
  CHECK(sg.follower_status().upstream_ok);
}

TEST_CASE("a region is ready once it has synced with its upstream, and stays ready across a restart while the upstream is away") {
  InProcessDaemon origin;
  ServedOrigin served(origin);
  origin.Publish("fraud", "1.0.0", std::string(AsString(RandomBytes(10'000, 62))));
  served.Stop();  // away before the region's first round
  InProcessRegion sg(origin, {served.url()});
  auto ready = [&] { return sg.Call("GET", "/readyz"); };

  // A new region holds nothing its terminals will ask for: a load balancer
  // must not send it any yet.
  REQUIRE(WaitFor([&] { return !sg.follower_status().upstream_ok && !sg.follower_status().last_error.empty(); },
                  kSyncWait));
  HttpResponse fresh = ready();
  CHECK(fresh.status == 503);
  CHECK_THAT(fresh.body, Catch::Contains("not_synced"));
  CHECK_FALSE(sg.follower_status().synced_once);

  served.Start();
  REQUIRE(WaitFor([&] { return ready().status == 200; }, kSyncWait));
  CHECK(sg.follower_status().synced_once);
  CHECK(sg.store->GetManifest("fraud", "1.0.0").ok());  // what made it ready is there

  // A restart while the upstream is away: it serves what it holds, ready at once.
  served.Stop();
  sg.Close();
  sg.Open();
  CHECK(ready().status == 200);
}

TEST_CASE("a paged manifest replicates with its index pages: the region reads its chunk list from them and serves the artifact") {
  InProcessDaemon origin;
  ServedOrigin served(origin);
  std::vector<std::string> chunks;
  std::string whole;
  for (uint32_t i = 0; i < 7; ++i) {
    chunks.emplace_back(AsString(RandomBytes(5'000 + i, 70 + i)));
    whole += chunks.back();
  }
  origin.Publish("ocr", "2.0.0", chunks, 2);  // four index pages
  std::shared_ptr<const Manifest> published = origin.store->GetManifest("ocr", "2.0.0").value();
  REQUIRE(published->chunk_pages.size() == 4);
  REQUIRE(published->chunks.size() == 7);

  InProcessRegion sg(origin, {served.url()});
  REQUIRE(WaitFor([&] { return sg.store->GetManifest("ocr", "2.0.0").ok(); }, kSyncWait));
  // After a restart with the origin away: read from the region's own pages.
  served.Stop();
  sg.Close();
  sg.Open();
  std::shared_ptr<const Manifest> held = sg.store->GetManifest("ocr", "2.0.0").value();
  CHECK(held->chunk_pages == published->chunk_pages);
  CHECK(held->chunks == published->chunks);
  CHECK(ServedArtifact(sg, "ocr", "2.0.0") == whole);
  CheckReport check = sg.store->Check();
  INFO((check.faults.empty() ? "" : check.faults[0]));
  CHECK(check.clean());
}

TEST_CASE("an upstream that stops sending in the middle of a transfer is left after the stall limit for the next one") {
  InProcessDaemon origin;
  ServedOrigin served(origin);
  std::vector<std::string> chunks;
  std::string whole;
  for (uint32_t i = 0; i < 3; ++i) {
    chunks.emplace_back(AsString(RandomBytes(600'000, 90 + i)));
    whole += chunks.back();
  }
  origin.Publish("fraud", "1.0.0", chunks);
  // The first upstream answers everything, but sends half of the artifact's
  // bytes and then nothing on the open connection: 30 s, or until the region
  // hangs up.
  HttpClient to_origin(served.url(), HttpClientOptions{.bearer_token = origin.tokens.mirror});
  std::atomic<int> stalled{0};
  FakeHttpServer proxy([&](const FakeRequest& req) {
    FakeReply out = Forward(to_origin, req);
    if (req.path.starts_with("/v1/artifacts/") && out.status / 100 == 2) {
      out.body_bytes_sent_max = out.body.size() / 2;
      out.silent_ms = 30'000;
      ++stalled;
    }
    return out;
  });

  InProcessRegion sg(origin, {proxy.url(), served.url()}, {.stall_timeout_ms = 2000});
  // Without the stall limit the region would wait out its whole-request
  // timeout (60 s here, an hour in meridiand), past this wait.
  REQUIRE(WaitFor([&] { return sg.store->GetManifest("fraud", "1.0.0").ok(); }, kSyncWait));
  CHECK(stalled == 1);  // then the region stays with the upstream that answered
  CHECK(WaitFor([&] { return sg.follower_status().upstream == served.url(); }, kSyncWait));  // at the round's end
  CHECK(ServedArtifact(sg, "fraud", "1.0.0") == whole);
  // The second upstream was asked for what the first had not finished: the
  // chunk the first sent whole stayed.
  CHECK(RequestsAnswered(origin, "GET /v1/artifacts/{digest}") == 2);  // through the proxy, then directly
}

TEST_CASE("a region fetches the chunks it lacks as ranges of the artifact: a request per run of adjacent chunks") {
  InProcessDaemon origin;
  ServedOrigin served(origin);
  std::vector<std::string> v1;
  for (uint32_t i = 0; i < 40; ++i) v1.emplace_back(AsString(RandomBytes(3'000 + i, 200 + i)));
  origin.Publish("fraud", "1.0.0", v1);
  InProcessRegion sg(origin, {served.url()});
  REQUIRE(WaitFor([&] { return sg.store->GetManifest("fraud", "1.0.0").ok(); }, kSyncWait));
  std::string whole;
  for (const std::string& c : v1) whole += c;
  CHECK(ServedArtifact(sg, "fraud", "1.0.0") == whole);
  CHECK(RequestsAnswered(origin, "GET /v1/artifacts/{digest}") == 1);  // 40 chunks, one request
  CHECK(RequestsAnswered(origin, "GET /v1/chunks/{digest}") == 0);

  // 1.1.0: two chunks changed in the middle, one added at the end, the
  // first chunk's bytes again at the start: two runs to fetch.
  std::vector<std::string> v2 = v1;
  v2[10] = AsString(RandomBytes(3'000, 300));
  v2[11] = AsString(RandomBytes(3'000, 301));
  v2.emplace_back(AsString(RandomBytes(5'000, 302)));
  v2.insert(v2.begin(), v1[0]);
  origin.Publish("fraud", "1.1.0", v2);
  REQUIRE(WaitFor([&] { return sg.store->GetManifest("fraud", "1.1.0").ok(); }, kSyncWait));
  whole.clear();
  for (const std::string& c : v2) whole += c;
  CHECK(ServedArtifact(sg, "fraud", "1.1.0") == whole);
  CHECK(RequestsAnswered(origin, "GET /v1/artifacts/{digest}") == 3);
  CHECK(RequestsAnswered(origin, "GET /v1/chunks/{digest}") == 0);
}

TEST_CASE("residency is decided by the signed manifest: an upstream whose listing says otherwise gets no bytes stored") {
  // The origin stands in "us" and holds a model resident in us and br; sg
  // follows it through a proxy that lists every version as resident anywhere
  // (the listing's `regions` is unsigned: a compromised relay could).
  InProcessDaemon origin({}, false, "us");
  ServedOrigin served(origin);
  const std::vector<std::string> chunks = {std::string(AsString(RandomBytes(5'000, 400))),
                                           std::string(AsString(RandomBytes(6'000, 401)))};
  origin.Publish("ocr", "1.0.0", chunks, 0, {"us", "br"});
  HttpClient to_origin(served.url(), HttpClientOptions{.bearer_token = origin.tokens.mirror});
  std::atomic<int> listings_altered{0};
  FakeHttpServer liar([&](const FakeRequest& req) {
    FakeReply r = Forward(to_origin, req);
    if (req.path.starts_with("/v1/sync") && r.status == 200) {
      Json doc = Json::parse(r.body);
      for (Json& v : doc["versions"]) v["regions"] = Json::array();
      r.body = doc.dump();
      ++listings_altered;
    }
    return r;
  });
  InProcessRegionOptions options;
  options.follower.poll_wait_s = 1;  // the fake proxy serves one request at a time
  InProcessRegion sg(origin, {liar.url()}, options);
  REQUIRE(WaitFor([&] { return sg.follower_status().last_sync_ms != 0; }, kSyncWait));
  REQUIRE(sg.store->GetManifest("ocr", "1.0.0").ok());  // its manifest, kept
  // A restart: the held versions' chunks are checked once, as after a repair.
  sg.Close();
  sg.Open();
  const int before = listings_altered;
  REQUIRE(WaitFor([&] { return sg.follower_status().last_sync_ms != 0 && listings_altered > before; }, kSyncWait));
  std::vector<Digest> digests;
  for (const std::string& c : chunks) digests.push_back(Digest::Of(c));
  Result<std::vector<Digest>> missing = sg.store->MissingChunks(digests);
  REQUIRE(missing.ok());
  CHECK(missing->size() == digests.size());  // not one of its bytes is here
  CHECK(RequestsAnswered(origin, "GET /v1/artifacts/{digest}") == 0);
  CHECK(RequestsAnswered(origin, "GET /v1/chunks/{digest}") == 0);
}

TEST_CASE("a region refuses (413) a report its upstream would refuse, rather than queue it") {
  InProcessDaemon origin;
  ServedOrigin served(origin);
  InProcessRegion sg(origin, {served.url()});
  const std::string terminal = origin.TerminalAuthorization("pos-1");
  // Under the 8 KiB body limit, but each 1e9 is written again as 1000000000.0.
  std::string body = R"({"model":"fraud","version":"1.0.0","event":"installed","x":[)";
  while (body.size() < 8'000) body += "1e9,";
  body += "1]}";
  HttpResponse refused = sg.Call("POST", TerminalReportsPath("pos-1"), body, terminal);
  CHECK(refused.status == 413);
  CHECK_THAT(refused.body, Catch::Contains("report_too_large"));
  CHECK(sg.outbox->stats().pending == 0);
  HttpResponse taken =
      sg.Call("POST", TerminalReportsPath("pos-1"), R"({"model":"fraud","version":"1.0.0","event":"installed"})", terminal);
  CHECK(taken.status == 202);
  CHECK_THAT(taken.body, Catch::Contains("\"forwarded\":true"));
}

TEST_CASE("a failure of the region's own (its disk) ends a call to its upstreams; the upstream's moves on to the next") {
  std::atomic<int> asked_first{0}, asked_second{0};
  FakeHttpServer first([&](const FakeRequest&) { return ++asked_first, FakeReply{200, "first"}; });
  FakeHttpServer second([&](const FakeRequest&) { return ++asked_second, FakeReply{200, "second"}; });
  UpstreamOptions options;
  options.urls = {first.url(), second.url()};
  UpstreamClient up(options);
  for (const Status& local : {Status::IOError("write: input/output error"), Status::InsufficientStorage("disk full")}) {
    Result<HttpReply> r = up.Call([&](HttpClient& c) -> Result<HttpReply> {
      Result<HttpReply> got = c.Get("/x", 1024);
      if (!got.ok()) return got;
      return local;  // as a sink storing what came would fail
    });
    CHECK(r.status().code() == local.code());
  }
  CHECK(asked_first == 2);
  CHECK(asked_second == 0);
  // A reply the region finds false (Corruption) is the upstream's: the next one is asked.
  int calls = 0;
  Result<HttpReply> r = up.Call([&](HttpClient& c) -> Result<HttpReply> {
    Result<HttpReply> got = c.Get("/x", 1024);
    if (++calls == 1) return Status::Corruption("does not match its digest");
    return got;
  });
  REQUIRE(r.ok());
  CHECK(r->body == "second");
  CHECK(asked_second == 1);
}
