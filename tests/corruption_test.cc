// Integration: bytes flipped in a stopped daemon's blob files, the way a
// failing disk damages them. fsck names the damaged chunks and the versions
// they break; the daemon serves no bad byte, logs and counts each damaged
// chunk and drops it; publishing the file again restores it; fsck --repair
// drops damaged chunks offline; a region fetches them again from upstream.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "base/digest.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

constexpr size_t kFileBytes = 6u << 20;  // random: a few chunks of up to 1 MiB
constexpr size_t kFlipBytes = 16;

// Flips kFlipBytes in place at a fifth, two fifths, … of each blob file of
// `data`'s store (the daemon stopped).
void DamageBlobFiles(const std::string& data) {
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(data + "/store")) {
    if (e.path().extension() != ".blob") continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    for (uint64_t fifth = 1; fifth <= 4; ++fifth) {
      const auto at = static_cast<std::streamoff>(e.file_size() * fifth / 5);
      std::string bytes(kFlipBytes, '\0');
      f.seekg(at);
      f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      for (char& c : bytes) c = static_cast<char>(c ^ 0x5a);
      f.seekp(at);
      f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    REQUIRE(f.good());
    ++files;
  }
  REQUIRE(files > 0);
}

// The digests fsck names in "fault: chunk sha256:…: …" lines.
std::set<std::string> DamagedChunks(const std::string& fsck_out) {
  std::set<std::string> out;
  std::regex line("fault: chunk (sha256:[0-9a-f]{64}):");
  for (auto it = std::sregex_iterator(fsck_out.begin(), fsck_out.end(), line); it != std::sregex_iterator(); ++it) {
    out.insert((*it)[1].str());
  }
  return out;
}

// GET /v1/artifacts/{digest} from `d` as a terminal.
int PullStatus(const DaemonFixture& d, const std::string& digest) {
  HttpClient c(d.url(), d.ClientOptions(d.terminal_token()));
  Result<HttpReply> r = c.Get("/v1/artifacts/" + digest);
  return r.ok() ? r->status : -1;
}

}  // namespace

TEST_CASE("a damaged blob: fsck names chunks and versions, reads drop it with a log line and a metric, a "
          "re-publish restores it; fsck --repair") {
  DaemonFixture d;
  d.Start();
  const Bytes v1 = RandomBytes(kFileBytes, 1);
  WriteFile(d.dir() / "v1.bin", v1);
  REQUIRE(d.Publish("fraud-detector", "1.0.0", d.dir() / "v1.bin").exit_code == 0);
  const std::string digest = Digest::Of(v1).ToString();
  REQUIRE(d.Terminate() == 0);  // closing flushes: the chunks are in blob files
  DamageBlobFiles(d.data());

  CommandResult fsck = d.Fsck();
  INFO(fsck.out << fsck.err);
  CHECK(fsck.exit_code == 1);
  const std::set<std::string> damaged = DamagedChunks(fsck.out);
  REQUIRE(!damaged.empty());
  CHECK_THAT(fsck.out, Catch::Contains("fault: fraud-detector@1.0.0: " + std::to_string(damaged.size()) + " of "));
  CHECK_THAT(fsck.out, Catch::Contains("chunks damaged: " + *damaged.begin()));

  // Served: never a bad byte. The damaged chunks are logged, counted and dropped.
  d.Restart();
  const std::string out = d.dir() / "pulled";
  CommandResult pull = d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "fraud-detector", "1.0.0",
                              "-o", out});
  CHECK(pull.exit_code != 0);
  CHECK(!std::filesystem::exists(out));
  CHECK(Metric(d.url(), "meridian_store_errors_total{code=\"corruption\"}") >= 1);
  const std::string log(AsString(ReadFile(d.dir() / "meridiand.log")));
  CHECK_THAT(log, Catch::Contains("was stored damaged and has been dropped"));
  bool named = false;
  for (const std::string& c : damaged) named = named || log.find("chunk " + c + " was stored damaged") != std::string::npos;
  CHECK(named);

  // Publishing the same file again uploads what was dropped, and what its
  // commit finds damaged (dropped then, and sent again).
  CommandResult again = d.Publish("fraud-detector", "1.0.0", d.dir() / "v1.bin");
  INFO(again.out << again.err);
  REQUIRE(again.exit_code == 0);
  CHECK(nlohmann::json::parse(again.out)["uploaded_chunks"].get<size_t>() == damaged.size());
  pull = d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "fraud-detector", "1.0.0", "-o", out});
  REQUIRE(pull.exit_code == 0);
  CHECK(ReadFile(out) == v1);
  REQUIRE(d.Terminate() == 0);
  CHECK(d.Fsck().exit_code == 0);

  // Offline: fsck --repair drops what is damaged; the next publish restores it.
  DamageBlobFiles(d.data());
  CommandResult repair = Run({MeridiandPath(), "fsck", "--repair", "--data", d.data()});
  INFO(repair.out << repair.err);
  const std::set<std::string> dropped = DamagedChunks(repair.out);
  REQUIRE(!dropped.empty());
  CHECK_THAT(repair.out, Catch::Contains("repaired: " + std::to_string(dropped.size()) + " damaged chunks dropped"));
  CommandResult after = d.Fsck();
  CHECK(DamagedChunks(after.out).empty());
  CHECK_THAT(after.out, Catch::Contains("fault: fraud-detector@1.0.0: " + std::to_string(dropped.size()) + " of "));
  CHECK_THAT(after.out, Catch::Contains("chunks missing"));
  d.Restart();
  REQUIRE(d.Publish("fraud-detector", "1.0.0", d.dir() / "v1.bin").exit_code == 0);
  CHECK(PullStatus(d, digest) == 200);
  REQUIRE(d.Terminate() == 0);
  CHECK(d.Fsck().exit_code == 0);
}

TEST_CASE("the scrub finds and drops a damaged chunk that nobody reads") {
  DaemonFixture d;
  d.Start();
  const Bytes v1 = RandomBytes(kFileBytes, 3);
  WriteFile(d.dir() / "v1.bin", v1);
  REQUIRE(d.Publish("fraud-detector", "1.0.0", d.dir() / "v1.bin").exit_code == 0);
  REQUIRE(d.Terminate() == 0);
  DamageBlobFiles(d.data());
  const std::set<std::string> damaged = DamagedChunks(d.Fsck().out);
  REQUIRE(!damaged.empty());

  WriteFile(d.dir() / "scrub.toml", ToBytes("scrub_interval_ms = 1000\n"));
  d.Restart({"--config", d.dir() / "scrub.toml"});
  const std::string log_path = d.dir() / "meridiand.log";
  auto log = [&] { return std::string(AsString(ReadFile(log_path))); };
  REQUIRE(WaitFor([&] { return log().find("scrub: ") != std::string::npos; }, std::chrono::seconds(30)));
  CHECK_THAT(log(), Catch::Contains(std::to_string(damaged.size()) + " damaged chunks dropped"));
  for (const std::string& c : damaged) CHECK_THAT(log(), Catch::Contains("chunk " + c + " was stored damaged"));
  REQUIRE(d.Terminate() == 0);
  CommandResult after = d.Fsck();
  CHECK(DamagedChunks(after.out).empty());  // dropped: missing now, so the next publish sends them
  CHECK_THAT(after.out, Catch::Contains("chunks missing"));
}

TEST_CASE("a region heals itself: a damaged chunk read is fetched again from upstream; after fsck --repair too") {
  DaemonFixture origin;
  origin.Start();
  std::unique_ptr<DaemonFixture> sg = DaemonFixture::Region(origin.root_json());
  sg->StartRegion("sg", origin.url(), origin.mirror_token_file());
  const Bytes v1 = RandomBytes(kFileBytes, 2);
  WriteFile(origin.dir() / "v1.bin", v1);
  REQUIRE(origin.Publish("fraud-detector", "1.0.0", origin.dir() / "v1.bin").exit_code == 0);
  const std::string digest = Digest::Of(v1).ToString();
  const auto sync_wait = std::chrono::seconds(60);
  REQUIRE(WaitFor([&] { return PullStatus(*sg, digest) == 200; }, sync_wait));

  // Damaged while stopped; the first read finds it, the follower fetches it again.
  REQUIRE(sg->Terminate() == 0);
  DamageBlobFiles(sg->data());
  REQUIRE(!DamagedChunks(sg->Fsck().out).empty());
  sg->StartRegion("sg", origin.url(), origin.mirror_token_file());
  CHECK(PullStatus(*sg, digest) != 200);  // cut short or refused: no bad byte either way
  CHECK(WaitFor([&] { return PullStatus(*sg, digest) == 200; }, sync_wait));
  const std::string log(AsString(ReadFile(sg->dir() / "meridiand.log")));
  CHECK_THAT(log, Catch::Contains("fetching it again from upstream"));
  REQUIRE(sg->Terminate() == 0);
  CHECK(sg->Fsck().exit_code == 0);

  // Repaired offline: the follower's first round after the start restores it.
  DamageBlobFiles(sg->data());
  CommandResult repair = Run({MeridiandPath(), "fsck", "--repair", "--data", sg->data()});
  REQUIRE(!DamagedChunks(repair.out).empty());
  sg->StartRegion("sg", origin.url(), origin.mirror_token_file());
  CHECK(WaitFor([&] { return PullStatus(*sg, digest) == 200; }, sync_wait));
  REQUIRE(sg->Terminate() == 0);
  CommandResult fsck = sg->Fsck();
  INFO(fsck.out);
  CHECK(fsck.exit_code == 0);
}
