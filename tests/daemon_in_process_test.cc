// The daemon in process (tests/in_process_daemon.h): what takes time — soak
// times, channel states that expire and are re-signed, credentials that run
// out — on a FakeClock, through the same Api the HTTP server calls.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "client/api.h"
#include "tests/in_process_daemon.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string InstalledReport(const std::string& rollout, const std::string& version) {
  return Json{{"model", "fraud"}, {"version", version}, {"rollout", rollout}, {"event", "installed"}, {"reason", ""},
              {"health", {{"pass", true}, {"latency_ms", 12.5}}}, {"profile", "pos"}, {"region", "sg"}}
      .dump();
}

std::string TargetPath(const std::string& terminal) {
  return "/v1/terminals/" + terminal + "/target?model=fraud&channel=stable&profile=pos&region=sg";
}

Json Parsed(const HttpResponse& r) { return Json::parse(r.body); }

}  // namespace

TEST_CASE("in process: an auto-promote waits for its soak time, then the tick promotes") {
  InProcessDaemon d;
  d.Publish("fraud", "1.0.0", "version one");
  d.Operator("POST", RolloutsPath(),
             Json::parse(RolloutSpecJson("soaky", "1.0.0", {{"soak_ms", 3000}, {"auto_promote", true}})));
  const std::string t1 = d.TerminalAuthorization("t1");
  HttpResponse r = d.Call("POST", "/v1/terminals/t1/reports", InstalledReport("soaky", "1.0.0"), t1);
  REQUIRE(r.status / 100 == 2);
  CHECK(Parsed(r)["counted"] == true);
  // A report over 8 KiB (a newer agent's fields are kept and forwarded) is refused before it is read.
  Json padded = Json::parse(InstalledReport("soaky", "1.0.0"));
  padded["note"] = std::string(8 << 10, 'x');
  CHECK(d.Call("POST", "/v1/terminals/t1/reports", padded.dump(), t1).status == 413);
  // Enough reports, but the soak time has not passed: neither the report nor a tick promotes.
  d.Tick();
  Json status = d.Operator("GET", RolloutPath("soaky"));
  CHECK(status["state"]["phase"] == "running");
  CHECK(status["stages"][0]["gate"].get<std::string>().find("soaking") != std::string::npos);
  d.clock.Advance(2999ms);
  d.Tick();
  CHECK(d.Operator("GET", RolloutPath("soaky"))["state"]["phase"] == "running");
  d.clock.Advance(1ms);
  d.Tick();  // no report comes: only the tick can promote it
  CHECK(d.Operator("GET", RolloutPath("soaky"))["state"]["phase"] == "completed");
  Json events = d.Operator("GET", RolloutEventsPath("soaky"));
  REQUIRE(events["events"].size() == 2);
  CHECK(events["events"][1]["actor"] == "gate");
  CHECK(events["events"][1]["action"] == "promote");
}

TEST_CASE("in process: a channel state is re-signed by the tick before it expires; an expired one is 503") {
  InProcessDaemon d({.state_expiry_ms = 4000, .state_refresh_ms = 2000});
  d.Publish("fraud", "1.0.0", "version one");
  d.Operator("POST", RolloutsPath(), Json::parse(RolloutSpecJson("r1", "1.0.0")));
  const std::string t1 = d.TerminalAuthorization("t1");
  HttpResponse first = d.Call("GET", TargetPath("t1"), "", t1);
  REQUIRE(first.status == 200);
  const uint64_t state_version = Parsed(first)["state_version"].get<uint64_t>();

  // Past half its life, the tick signs a new state; the terminal sees a newer one.
  d.clock.Advance(2001ms);
  d.Tick();
  HttpResponse refreshed = d.Call("GET", TargetPath("t1"), "", t1);
  REQUIRE(refreshed.status == 200);
  CHECK(Parsed(refreshed)["state_version"].get<uint64_t>() > state_version);

  // No tick for a whole lifetime (a stalled daemon): the state expired and is not served.
  d.clock.Advance(4001ms);
  HttpResponse expired = d.Call("GET", TargetPath("t1"), "", t1);
  CHECK(expired.status == 503);
  CHECK(expired.body.find("expired") != std::string::npos);
  d.Tick();
  CHECK(d.Call("GET", TargetPath("t1"), "", t1).status == 200);
}

TEST_CASE("in process: a terminal credential past its lifetime is refused; a new one is issued") {
  InProcessDaemon d;
  d.Publish("fraud", "1.0.0", "version one");
  d.Operator("POST", RolloutsPath(), Json::parse(RolloutSpecJson("r1", "1.0.0")));
  const std::string t1 = d.TerminalAuthorization("t1");
  REQUIRE(d.Call("GET", TargetPath("t1"), "", t1).status == 200);
  d.clock.Advance(std::chrono::milliseconds(EnrolmentOptions{}.credential_lifetime_ms) + 1ms);
  d.Tick();  // keeps the channel state fresh: only the credential is out of date
  HttpResponse refused = d.Call("GET", TargetPath("t1"), "", t1);
  CHECK(refused.status == 401);
}

TEST_CASE("in process: deleting a version over HTTP — roles, bad bodies, in use, gone; collect is the operator's") {
  InProcessDaemon d;
  d.Publish("fraud", "1.0.0", "version one");
  d.Publish("fraud", "1.1.0", "version two");
  d.Operator("POST", RolloutsPath(), Json::parse(RolloutSpecJson("r1", "1.1.0")));
  const std::string publisher = "Bearer " + d.tokens.publisher, op = "Bearer " + d.tokens.operator_token;
  const std::string path = VersionPath("fraud", "1.0.0");

  CHECK(d.Call("DELETE", path, "", "").status == 401);
  CHECK(d.Call("DELETE", path, "", op).status == 403);  // a publisher's act
  HttpResponse typo = d.Call("DELETE", path, R"({"reasn":"x"})", publisher);
  CHECK(typo.status == 400);
  CHECK(typo.body.find("reasn") != std::string::npos);
  CHECK(d.Call("DELETE", path, "[1]", publisher).status == 400);
  HttpResponse in_use = d.Call("DELETE", VersionPath("fraud", "1.1.0"), "", publisher);
  CHECK(in_use.status == 409);
  CHECK(Parsed(in_use)["error"]["code"] == "version_in_use");
  CHECK(d.Call("DELETE", VersionPath("fraud", "9.9.9"), "", publisher).status == 404);
  CHECK(d.Call("GET", path, "", publisher).status == 200);  // nothing refused above deleted anything

  HttpResponse deleted = d.Call("DELETE", path, R"({"reason":"superseded"})", publisher);
  REQUIRE(deleted.status == 200);
  CHECK(Parsed(deleted)["deleted"] == true);
  CHECK(d.Call("GET", path, "", publisher).status == 404);

  CHECK(d.Call("POST", CollectPath(), "", publisher).status == 403);
  d.clock.Advance(std::chrono::hours(25));  // past the grace period
  Json collected = d.Operator("POST", CollectPath());
  CHECK(collected["chunks_deleted"] == 1);
  CHECK(collected["bytes_deleted"] == std::string("version one").size());
}

TEST_CASE("in process: an artifact streamed again is served from the cache of verified chunks") {
  InProcessDaemon d;
  d.Publish("fraud", "1.0.0", std::vector<std::string>{"first chunk ", "second chunk"});
  const std::string path = "/v1/artifacts/" + Digest::Of(ToBytes("first chunk second chunk")).ToString();
  for (uint64_t hits : {0, 2}) {
    HttpResponse r = d.Call("GET", path, "", "Bearer " + d.tokens.publisher);
    REQUIRE(r.status == 200);
    REQUIRE(r.stream);
    std::string body;
    while (body.size() < r.stream_bytes) {
      Result<BodyPiece> piece = r.stream();
      REQUIRE(piece.ok());
      body += AsString(piece->bytes);
    }
    CHECK(body == "first chunk second chunk");
    CHECK(d.store->Stats().chunk_cache_hits == hits);
  }
}

TEST_CASE("in process: a region's last_error is kept as text: cut at a character, bytes not UTF-8 shown as U+FFFD") {
  InProcessDaemon d;
  const std::string mirror = "Bearer mirror-token";
  auto sync = [&](const std::string& last_error) {
    return d.Call("GET", SyncPath({.region = "sg", .last_error = last_error}), "", mirror);
  };
  auto shown = [&] {
    Json regions = d.Operator("GET", RegionsPath());
    REQUIRE(regions["regions"].size() == 1);
    return regions["regions"][0]["last_error"].get<std::string>();
  };
  // 300 two-byte characters, cut at kRegionErrorBytesMax (256): 128 of them,
  // where a cut at a byte split none here but would split one at an odd limit.
  std::string e_acutes;
  for (int i = 0; i < 300; ++i) e_acutes += "\xC3\xA9";
  REQUIRE(sync("x" + e_acutes).status == 200);
  CHECK(shown() == "x" + e_acutes.substr(0, 254));  // 255 bytes: the 256th would split a character
  // A region's bytes that are not UTF-8: answered and kept all the same.
  REQUIRE(sync("caf\xE9").status == 200);
  CHECK(shown() == "caf\xEF\xBF\xBD");
  REQUIRE(sync("").status == 200);
  CHECK(shown().empty());
}
