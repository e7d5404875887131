// docs/api.md carries the route tables of an origin and of a region exactly
// as the daemon builds them (RoutesMarkdown); this test fails when they differ
// and prints the block to paste between the markers.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "base/clock.h"
#include "daemon/api.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

TEST_CASE("docs/api.md lists the routes origin and region daemons serve") {
  TempDir dir;
  Result<std::unique_ptr<Store>> store = Store::Open(dir / "store");
  REQUIRE(store.ok());
  Root root;
  Metrics metrics;
  Result<std::unique_ptr<Rollouts>> rollouts = Rollouts::Open(**store, std::nullopt, SystemClock::Get());
  REQUIRE(rollouts.ok());
  DeltaService deltas(**store, std::nullopt);
  Api origin(**store, root, {}, metrics, **rollouts, deltas);

  UpstreamOptions upstream{.urls = {"http://127.0.0.1:9"}, .mirror_token = "unused"};
  Follower follower(**store, root, **rollouts, deltas, SystemClock::Get(), upstream, FollowerOptions{.region = "sg"});
  Result<std::unique_ptr<ReportOutbox>> outbox = ReportOutbox::Open(**store, "sg", upstream);
  REQUIRE(outbox.ok());
  Api region(**store, root, {}, metrics, **rollouts, deltas);
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
