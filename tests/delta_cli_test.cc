// Integration: `meridian diff` / `patch` offline, and `meridian pull --from`
// fetching a signed delta from a real meridiand (falling back to chunks when
// no delta is worth it).
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "delta/delta.h"
#include "delta/delta_info.h"
#include "signing/signing.h"
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
  CHECK(patch.err.empty());  // no progress bar into a pipe

  // Within the smallest memory budget: in windows, as compact.
  CommandResult windowed =
      Run({MeridianPath(), "--output", "json", "diff", "--memory", "16", dir / "v1", dir / "v2", "-o", dir / "w.mdelta"});
  REQUIRE(windowed.exit_code == 0);
  CHECK(nlohmann::json::parse(windowed.out)["delta_bytes"] < v2.size() / 20);
  REQUIRE(Run({MeridianPath(), "patch", dir / "v1", dir / "w.mdelta", "-o", dir / "w-out"}).exit_code == 0);
  CHECK(ReadFile(dir / "w-out") == v2);
  CommandResult too_small = Run({MeridianPath(), "diff", "--memory", "15", dir / "v1", dir / "v2", "-o", dir / "x"});
  CHECK(too_small.exit_code != 0);
  CHECK_FALSE(std::filesystem::exists(dir / "x"));

  // On a terminal, both draw a progress bar to 100 %.
  CommandResult shown_diff = RunOnTerminal({MeridianPath(), "diff", dir / "v1", dir / "v2", "-o", dir / "d2.mdelta"});
  CHECK(shown_diff.exit_code == 0);
  CHECK_THAT(shown_diff.out, Catch::Contains("encoding [") && Catch::Contains("100.0%"));
  CommandResult shown_patch = RunOnTerminal({MeridianPath(), "patch", dir / "v1", dir / "d2.mdelta", "-o", dir / "out"});
  CHECK(shown_patch.exit_code == 0);
  CHECK_THAT(shown_patch.out, Catch::Contains("applying [") && Catch::Contains("100.0%"));
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
  HttpClient c(d.url(), HttpClientOptions{.bearer_token = d.terminal_token()});
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
  CHECK(ParseDeltaHeader(AsBytes(whole->body))->format_version == 2);  // LZMA literals by default
  CHECK(whole->Header("cache-control") == "private, max-age=31536000, immutable");  // as private as its model
  Result<HttpReply> part = c.Get("/v1/deltas/" + d1 + "/" + d2, {"Range: bytes=0-9"});
  CHECK(part->status == 206);
  CHECK(part->body == whole->body.substr(0, 10));
  CHECK(c.Get("/v1/deltas/" + d1 + "/" + d2, {"If-None-Match: " + whole->Header("etag")})->status == 304);

  CommandResult pull = d.Cli({"--token", d.terminal_token(), "--output", "json", "pull", "--root", d.root_json(), "m", "1.1.0", "-o",
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
  CommandResult full = d.Cli({"--token", d.terminal_token(), "--output", "json", "pull", "--root", d.root_json(), "m", "1.2.0", "-o",
                              d.dir() / "got3", "--from", d.dir() / "v2"});
  REQUIRE(full.exit_code == 0);
  CHECK(nlohmann::json::parse(full.out)["method"] == "chunks");
  CHECK(ReadFile(d.dir() / "got3") == unrelated);

  // Bad names and unknown artifacts.
  CHECK(c.Get("/v1/deltas/sha256:xyz/" + d2)->status == 400);
  CHECK(c.Get("/v1/deltas/" + Digest::Of("nothing").ToString() + "/" + d2 + "/info")->status == 404);

  // Pairs the daemon would not choose (another model's artifact, an artifact
  // with itself) are 404 at once for anyone, and nothing is queued for them.
  REQUIRE(ready(d1, d3));  // the last delta queued at publish: the queue is empty from here on
  Bytes foreign = RandomBytes(1'000'000, 98);
  WriteFile(d.dir() / "foreign", foreign);
  REQUIRE(d.Publish("other", "1.0.0", d.dir() / "foreign").exit_code == 0);
  const std::string df = Digest::Of(foreign).ToString();
  for (const auto& [from, to] : {std::pair{d1, df}, {df, d2}, {d1, d1}, {df, df}}) {
    for (const char* suffix : {"/info", ""}) {
      Result<HttpReply> r = c.Get("/v1/deltas/" + from + "/" + to + suffix);
      CHECK(r->status == 404);
    }
  }
  CHECK(c.Get("/metrics")->body.find("\nmeridian_delta_jobs 0\n") != std::string::npos);
}

TEST_CASE("delta settings: older versions diffed at publish, zstd literals, windows, bad values refused") {
  DaemonFixture d;
  const std::string config = d.dir() / "meridiand.toml";
  // The smallest memory budget: 2 MB versions are diffed in windows of about 1 MiB.
  WriteFile(config, AsBytes(std::string("delta_previous_versions = 1\ndelta_literal_level = 3\ndelta_threads = 1\n"
                                        "delta_artifact_bytes_max = 3000000\ndelta_memory_bytes_max = 16777216\n")));
  d.Start({"--config", config});
  auto [v1, v2] = Versions(2'000'000);
  Bytes v3 = v2;
  std::fill(v3.begin() + 100'000, v3.begin() + 120'000, uint8_t{7});
  WriteFile(d.dir() / "v1", v1);
  WriteFile(d.dir() / "v2", v2);
  WriteFile(d.dir() / "v3", v3);
  for (const auto& [version, file] : {std::pair{"1.0.0", "v1"}, {"1.1.0", "v2"}, {"1.2.0", "v3"}}) {
    REQUIRE(d.Publish("m", version, d.dir() / file).exit_code == 0);
  }
  const std::string d1 = Digest::Of(v1).ToString(), d2 = Digest::Of(v2).ToString(), d3 = Digest::Of(v3).ToString();
  HttpClient c(d.url(), HttpClientOptions{.bearer_token = d.terminal_token()});
  auto status = [&](const std::string& from, const std::string& to) {
    Result<HttpReply> r = c.Get("/v1/deltas/" + from + "/" + to + "/info");
    return r.ok() ? r->status : 0;
  };
  // One older version at publish: 1.1.0 -> 1.2.0 is made, 1.0.0 -> 1.2.0 only when asked for.
  REQUIRE(WaitFor([&] { return status(d2, d3) == 200; }, std::chrono::seconds(60)));
  CHECK(status(d1, d3) == 409);  // delta_pending: queued by this request
  CHECK(WaitFor([&] { return status(d1, d3) == 200; }, std::chrono::seconds(60)));
  // zstd literals: a format 1 delta, which decoders predating LZMA read.
  Result<HttpReply> delta = c.Get("/v1/deltas/" + d2 + "/" + d3);
  REQUIRE(delta->status == 200);
  CHECK(ParseDeltaHeader(AsBytes(delta->body))->format_version == 1);
  CHECK(ApplyDelta(v2, AsBytes(delta->body)).value() == v3);
  CHECK(delta->body.size() < 100'000);  // the windows found the 2 MB they share

  // Above delta_artifact_bytes_max: a signed "not worthwhile", no delta made.
  Bytes v4 = v3;
  v4.resize(3'500'000, 1);
  WriteFile(d.dir() / "v4", v4);
  REQUIRE(d.Publish("m", "1.3.0", d.dir() / "v4").exit_code == 0);
  const std::string d4 = Digest::Of(v4).ToString();
  REQUIRE(WaitFor([&] { return status(d3, d4) == 200; }, std::chrono::seconds(60)));
  Result<Envelope> env = ParseEnvelope(c.Get("/v1/deltas/" + d3 + "/" + d4 + "/info")->body);
  REQUIRE(env.ok());
  Result<DeltaInfo> info = ParseDeltaInfo(AsString(env->payload));
  REQUIRE(info.ok());
  CHECK_FALSE(info->worthwhile);
  CHECK_THAT(info->reason, Catch::Contains("larger than 3000000 bytes is not diffed"));
  CHECK(c.Get("/v1/deltas/" + d3 + "/" + d4)->status == 404);

  for (const char* bad : {"delta_previous_versions = -1", "delta_threads = 0", "delta_artifact_bytes_max = -5",
                          "delta_memory_bytes_max = 1000000", "delta_literal_level = 23",
                          "delta_literal_level = \"fast\""}) {
    WriteFile(config, AsBytes(std::string(bad) + "\n"));
    CommandResult r = Run({MeridiandPath(), "--data", d.data(), "--config", config, "--listen", "127.0.0.1:0"},
                          std::chrono::seconds(30));
    CHECK(r.exit_code != 0);
    CHECK(r.err.find(std::string(bad).substr(0, std::string(bad).find(' '))) != std::string::npos);
  }
}
