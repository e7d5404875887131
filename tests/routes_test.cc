// The route table against its two readers. docs/api.md carries the route
// tables of an origin and of a region exactly as the daemon builds them
// (RoutesMarkdown); a test fails when they differ and prints the block to
// paste between the markers. And every path client/api.h builds must match
// the route it is meant for.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "base/clock.h"
#include "client/api.h"
#include "daemon/api.h"
#include "tests/harness.h"
#include "tests/in_process_daemon.h"

using namespace meridian;
using namespace meridian::testing;

TEST_CASE("docs/api.md lists the routes origin and region daemons serve") {
  InProcessDaemon o;
  Api& origin = *o.api;

  UpstreamOptions upstream{.urls = {"http://127.0.0.1:9"}, .mirror_token = "unused"};
  Catalog region_catalog{"sg"};
  std::unique_ptr<Enrolment> region_enrolment = Enrolment::OpenRegion(*o.store, SystemClock::Get()).value();
  Follower follower(*o.store, region_catalog, *region_enrolment, *o.roots, *o.rollouts, *o.deltas, SystemClock::Get(), upstream,
                    FollowerOptions{.region = "sg"});
  Result<std::unique_ptr<ReportOutbox>> outbox = ReportOutbox::Open(*o.store, "sg", upstream);
  REQUIRE(outbox.ok());
  Retention region_retention(*o.store, region_catalog, *o.rollouts, *o.deltas, *o.audit, SystemClock::Get(), {});
  Api region(*o.store, region_catalog, *o.roots, *o.pending, {}, *o.credentials, *o.audit, *region_enrolment, o.metrics,
             *o.rollouts, *o.deltas, region_retention, SystemClock::Get());
  region.ServeAsRegion("sg", **outbox, follower);

  const std::string want = RoutesMarkdown(origin.routes(), region.routes());
  const char* source_root = std::getenv("MERIDIAN_SOURCE_ROOT");
  REQUIRE(source_root != nullptr);
  std::ifstream in(std::string(source_root) + "/docs/api.md");
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string text = doc.str();
  const std::string begin = "<!-- routes:begin (generated: tests/routes_test.cc) -->\n", end = "<!-- routes:end -->";
  size_t from = text.find(begin), to = text.find(end);
  REQUIRE(from != std::string::npos);
  REQUIRE(to != std::string::npos);
  const bool same = text.substr(from + begin.size(), to - from - begin.size()) == want;
  if (!same) {
    std::printf("docs/api.md's route block should read:\n%s", want.c_str());
  }
  CHECK(same);
}

namespace {

// A path as the daemon reads it: the route it matches (origin table) and the
// placeholders' decoded values.
struct Matched {
  std::string pattern;
  std::vector<std::string> params;
  std::string query;
};

Matched MatchOrigin(const RouteTable& routes, std::string_view method, const std::string& path) {
  Result<ParsedTarget> target = ParseTarget(path);
  REQUIRE(target.ok());
  std::vector<std::string> params;
  Result<const Route*> route = routes.Find(method, target->segments, &params);
  INFO(path);
  REQUIRE(route.ok());
  return {(*route)->pattern, params, target->query};
}

}  // namespace

TEST_CASE("every path the client builds is a route the daemon serves, with the values it was given") {
  InProcessDaemon o;
  const RouteTable& routes = o.api->routes();

  const Digest a = Digest::Of(std::string_view("a")), b = Digest::Of(std::string_view("b"));
  const std::string version = "1.0.0-rc.1+build.5";  // '+' must survive the trip
  const std::string terminal = "pos 7/ä&x=1";        // nothing a terminal id holds may leak into the path or query
  TargetQuery model_only;
  model_only.model = "fraud";
  SyncQuery region_only;
  region_only.region = "sg";
  struct Case {
    const char* method;
    std::string path;
    const char* pattern;
    std::vector<std::string> params;
  };
  const std::vector<Case> cases = {
      {"GET", ModelsPath(), "/v1/models", {}},
      {"GET", VersionsPath("fraud"), "/v1/models/{model}/versions", {"fraud"}},
      {"POST", VersionsPath("fraud"), "/v1/models/{model}/versions", {"fraud"}},
      {"GET", VersionPath("fraud", version), "/v1/models/{model}/versions/{version}", {"fraud", version}},
      {"POST", MissingChunksPath(), "/v1/chunks/missing", {}},
      {"GET", ChunkPath(a), "/v1/chunks/{digest}", {a.ToString()}},
      {"PUT", ChunkPath(a), "/v1/chunks/{digest}", {a.ToString()}},
      {"GET", ArtifactPath(a), "/v1/artifacts/{digest}", {a.ToString()}},
      {"GET", DeltaPath(a, b), "/v1/deltas/{from}/{to}", {a.ToString(), b.ToString()}},
      {"GET", DeltaInfoPath(a, b), "/v1/deltas/{from}/{to}/info", {a.ToString(), b.ToString()}},
      {"GET", TargetPath(terminal, model_only), "/v1/terminals/{id}/target", {terminal}},
      {"POST", TerminalReportsPath(terminal), "/v1/terminals/{id}/reports", {terminal}},
      {"POST", ReportsPath(), "/v1/reports", {}},
      {"GET", SyncPath(region_only), "/v1/sync", {}},
      {"GET", RegionsPath(), "/v1/regions", {}},
      {"GET", FleetPath(), "/v1/fleet", {}},
      {"GET", RolloutsPath(), "/v1/rollouts", {}},
      {"POST", RolloutsPath(), "/v1/rollouts", {}},
      {"POST", RolloutPlansPath(), "/v1/rollout-plans", {}},
      {"GET", RolloutPath("r 1"), "/v1/rollouts/{id}", {"r 1"}},
      {"GET", RolloutEventsPath("r 1"), "/v1/rollouts/{id}/events", {"r 1"}},
      {"POST", RolloutActionPath("r 1", "promote"), "/v1/rollouts/{id}/{action}", {"r 1", "promote"}},
      {"GET", TokensPath(), "/v1/tokens", {}},
      {"POST", TokensPath(), "/v1/tokens", {}},
      {"POST", TokenRevokePath("alice@example.com"), "/v1/tokens/{name}/revoke", {"alice@example.com"}},
      {"GET", AuditPath(7, 100), "/v1/audit", {}},
      {"GET", PendingPath(), "/v1/pending", {}},
      {"GET", PendingVersionPath("fraud", version), "/v1/models/{model}/pending/{version}", {"fraud", version}},
      {"GET", RootsPath(), "/v1/roots", {}},
      {"POST", RootsPath(), "/v1/roots", {}},
      {"GET", RootPath(12), "/v1/roots/{version}", {"12"}},
  };
  for (const Case& c : cases) {
    INFO(c.method << " " << c.path);
    Matched m = MatchOrigin(routes, c.method, c.path);
    CHECK(m.pattern == c.pattern);
    CHECK(m.params == c.params);
  }

  // Query values come back as they went in.
  TargetQuery q{.model = "fraud", .channel = "beta&x", .current = version, .profile = "pos", .region = "sg",
                .wait_s = 30, .known_state_version = 7};
  Matched target = MatchOrigin(routes, "GET", TargetPath(terminal, q));
  CHECK(QueryParam(target.query, "channel") == "beta&x");
  CHECK(QueryParam(target.query, "current") == version);
  CHECK(QueryParam(target.query, "wait") == "30");
  CHECK(QueryParam(target.query, "known") == "7");
  SyncQuery sq = region_only;
  sq.known = 3;
  sq.last_error = "a b&c=d";
  Matched sync = MatchOrigin(routes, "GET", SyncPath(sq));
  CHECK(QueryParam(sync.query, "region") == "sg");
  CHECK(QueryParam(sync.query, "known") == "3");
  CHECK(QueryParam(sync.query, "last_error") == "a b&c=d");
}

TEST_CASE("writes are admitted as requests that may block, to run off their connection's thread; reads, chunk uploads and credentials are not") {
  InProcessDaemon o;
  auto admit = [&](const std::string& method, const std::string& target, const std::string& authorization) {
    HttpRequest head;
    head.method = method;
    head.target = target;
    head.headers["authorization"] = authorization;
    HttpAdmission a = o.api->Admit(head);
    INFO(method << " " << target);
    REQUIRE_FALSE(a.refusal);
    return a.may_block;
  };
  const std::string publisher = "Bearer " + o.tokens.publisher, op = "Bearer " + o.tokens.operator_token;
  const std::string digest = Digest::Of(AsBytes("x")).ToString();
  CHECK(admit("POST", "/v1/models/m/versions", publisher));  // reads the whole artifact
  CHECK(admit("POST", "/v1/collect", op));                   // walks every version and chunk
  CHECK(admit("POST", "/v1/terminals", op));                 // enrols up to 16 MiB of keys, synced
  CHECK(admit("POST", "/v1/terminals/t1/reports", o.TerminalAuthorization("t1")));  // a synced write
  CHECK(admit("DELETE", "/v1/models/m/versions/1.0.0", publisher));
  CHECK_FALSE(admit("GET", "/v1/chunks/" + digest, publisher));
  CHECK_FALSE(admit("PUT", "/v1/chunks/" + digest, publisher));
  CHECK_FALSE(admit("POST", "/v1/terminals/t1/credential", ""));
  CHECK_FALSE(admit("HEAD", "/v1/chunks/" + digest, publisher));
  CHECK_FALSE(admit("GET", "/v1/terminals/t1/target?model=m&channel=stable", o.TerminalAuthorization("t1")));
  CHECK_FALSE(admit("GET", "/healthz", ""));
}
