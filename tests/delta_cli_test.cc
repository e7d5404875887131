// Integration: `meridian diff` / `patch` offline, and `meridian pull --from`
// fetching a signed delta from a real meridiand (falling back to chunks when
// no delta is worth it).
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

// A model-like pair: the new version keeps most bytes, changes a few regions
// and inserts some bytes in the middle.
std::pair<Bytes, Bytes> Versions(size_t size) {
  Bytes v1 = RandomBytes(size, 11);
  Bytes v2 = v1;
  Bytes noise = RandomBytes(40'000, 12);
  std::copy(noise.begin(), noise.begin() + 20'000, v2.begin() + static_cast<ptrdiff_t>(size / 3));
  v2.insert(v2.begin() + static_cast<ptrdiff_t>(size / 2), noise.begin() + 20'000, noise.end());
  return {v1, v2};
}

}  // namespace

TEST_CASE("diff and patch files offline") {
  TempDir dir;
  auto [v1, v2] = Versions(3'000'000);
  WriteFile(dir / "v1", v1);
  WriteFile(dir / "v2", v2);
  CommandResult diff = Run({MeridianPath(), "--output", "json", "diff", dir / "v1", dir / "v2", "-o", dir / "d.mdelta"});
  REQUIRE(diff.exit_code == 0);
  uint64_t delta_bytes = nlohmann::json::parse(diff.out)["delta_bytes"];
  CHECK(delta_bytes < v2.size() / 20);
  CHECK(std::filesystem::file_size(dir / "d.mdelta") == delta_bytes);

  CommandResult patch = Run({MeridianPath(), "patch", dir / "v1", dir / "d.mdelta", "-o", dir / "out"});
  REQUIRE(patch.exit_code == 0);
  CHECK(ReadFile(dir / "out") == v2);

  // The wrong source is refused before anything is written.
  CommandResult wrong = Run({MeridianPath(), "patch", dir / "v2", dir / "d.mdelta", "-o", dir / "out2"});
  CHECK(wrong.exit_code != 0);
  CHECK_FALSE(wrong.err.empty());
  CHECK_FALSE(std::filesystem::exists(dir / "out2"));

  // A damaged delta fails and leaves no output.
  Bytes damaged = ReadFile(dir / "d.mdelta");
  damaged[damaged.size() / 2] ^= 0x5a;
  WriteFile(dir / "bad.mdelta", damaged);
  CommandResult bad = Run({MeridianPath(), "patch", dir / "v1", dir / "bad.mdelta", "-o", dir / "out3"});
  CHECK(bad.exit_code != 0);
  CHECK_FALSE(std::filesystem::exists(dir / "out3"));
}

TEST_CASE("pull --from downloads a signed delta, and falls back to chunks when none is worth it") {
  DaemonFixture d;
  d.Start();
  auto [v1, v2] = Versions(4'000'000);
  Bytes unrelated = RandomBytes(4'000'000, 99);
  WriteFile(d.dir() / "v1", v1);
  WriteFile(d.dir() / "v2", v2);
  WriteFile(d.dir() / "v3", unrelated);
  REQUIRE(d.Publish("m", "1.0.0", d.dir() / "v1").exit_code == 0);
  CommandResult p2 = d.Publish("m", "1.1.0", d.dir() / "v2");
  REQUIRE(p2.exit_code == 0);
  CommandResult p3 = d.Publish("m", "1.2.0", d.dir() / "v3");
  REQUIRE(p3.exit_code == 0);
  std::string d1 = Digest::Of(v1).ToString(), d2 = Digest::Of(v2).ToString(), d3 = Digest::Of(unrelated).ToString();

  // Deltas from older versions are made at publish time, in the background.
  HttpClient c(d.url());
  auto ready = [&](const std::string& from, const std::string& to) {
    return WaitFor([&] {
      auto r = c.Get("/v1/deltas/" + from + "/" + to + "/info");
      return r.ok() && r->status == 200;
    }, std::chrono::seconds(60));
  };
  REQUIRE(ready(d1, d2));
  REQUIRE(ready(d2, d3));

  // The delta is served like an artifact: immutable, with an ETag and Range.
  Result<HttpReply> whole = c.Get("/v1/deltas/" + d1 + "/" + d2);
  REQUIRE(whole->status == 200);
  CHECK(whole->Header("cache-control") == "public, max-age=31536000, immutable");
  Result<HttpReply> part = c.Get("/v1/deltas/" + d1 + "/" + d2, {"Range: bytes=0-9"});
  CHECK(part->status == 206);
  CHECK(part->body == whole->body.substr(0, 10));
  CHECK(c.Get("/v1/deltas/" + d1 + "/" + d2, {"If-None-Match: " + whole->Header("etag")})->status == 304);

  CommandResult pull = d.Cli({"--output", "json", "pull", "--root", d.root_json(), "m", "1.1.0", "-o",
                              d.dir() / "got2", "--from", d.dir() / "v1"});
  REQUIRE(pull.exit_code == 0);
  auto j = nlohmann::json::parse(pull.out);
  CHECK(j["method"] == "delta");
  CHECK(j["downloaded_bytes"].get<uint64_t>() < v2.size() / 20);
  CHECK(ReadFile(d.dir() / "got2") == v2);

  // Unrelated bytes: the daemon says the delta is not worth it; pull takes the chunks.
  Result<HttpReply> info = c.Get("/v1/deltas/" + d2 + "/" + d3 + "/info");
  CHECK(info->body.find("payload") != std::string::npos);
  CHECK(c.Get("/v1/deltas/" + d2 + "/" + d3)->status == 404);
  CommandResult full = d.Cli({"--output", "json", "pull", "--root", d.root_json(), "m", "1.2.0", "-o",
                              d.dir() / "got3", "--from", d.dir() / "v2"});
  REQUIRE(full.exit_code == 0);
  CHECK(nlohmann::json::parse(full.out)["method"] == "chunks");
  CHECK(ReadFile(d.dir() / "got3") == unrelated);

  // Bad names and unknown artifacts.
  CHECK(c.Get("/v1/deltas/sha256:xyz/" + d2)->status == 400);
  CHECK(c.Get("/v1/deltas/" + Digest::Of("nothing").ToString() + "/" + d2 + "/info")->status == 404);
}
