// Integration: a daemon whose data directory is a small tmpfs (mounted by the
// test, which needs root) fills it up: uploads are refused with 507
// insufficient_storage, what is stored goes on being served, writes come back
// without a restart once space is freed, and a stopped store on a nearly full
// disk passes fsck and opens again.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "base/digest.h"
#include "client/api.h"
#include "client/http_client.h"
#include "tests/harness.h"
#include "tests/tmpfs.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

constexpr uint64_t kTmpfsBytes = 64ull << 20;
constexpr uint64_t kFillerBytes = 8ull << 20;  // at least this is freed to bring writes back
constexpr size_t kFillChunkBytes = 1u << 20;   // kChunkBytesMax: the disk fills an upload at a time
constexpr int kFillUploadsMax = 200;           // 200 MiB: far more than the tmpfs holds
constexpr int kRefusalAttemptsMax = 20;        // see RefusedWhileFull

// PUT /v1/chunks/{digest} of `data`.
Result<HttpReply> PutChunk(HttpClient& c, const Bytes& data) { return c.Put(ChunkPath(Digest::Of(data)), data); }

}  // namespace

TEST_CASE("a full disk: 507 insufficient_storage, reads go on, writes resume once space is freed; fsck and a "
          "restart on a nearly full disk") {
  DaemonFixture d;
  Tmpfs tmpfs(d.data(), kTmpfsBytes);
  if (!tmpfs.ok()) {
    WARN("SKIP: a tmpfs could not be mounted as the data directory (root is needed): " << tmpfs.error());
    return;
  }
  const std::string filler = d.data() + "/filler";  // deleted to free space
  WriteFile(filler, RandomBytes(kFillerBytes, 7));
  d.Start();
  const pid_t daemon = d.pid();

  // A version stored before the disk fills.
  const Bytes v1 = RandomBytes(2u << 20, 1);
  WriteFile(d.dir() / "v1.bin", v1);
  CommandResult p1 = d.Publish("fraud-detector", "1.0.0", d.dir() / "v1.bin");
  REQUIRE(p1.exit_code == 0);

  // Uploads until the disk is full: the first refusal is 507 with its JSON code.
  HttpClient publisher(d.url(), d.ClientOptions(d.publisher_token()));
  Result<HttpReply> refused = Status::Unavailable("no upload refused");
  int stored = 0;
  for (int i = 0; i < kFillUploadsMax; ++i) {
    Result<HttpReply> r = PutChunk(publisher, RandomBytes(kFillChunkBytes, 1000 + static_cast<uint64_t>(i)));
    REQUIRE(r.ok());
    if (r->status != 201) {
      refused = std::move(r);
      break;
    }
    ++stored;
  }
  REQUIRE(refused.ok());
  INFO(refused->status << " " << refused->body);
  CHECK(refused->status == 507);
  CHECK(ErrorCodeOf(*refused) == "insufficient_storage");
  std::printf("disk full after %d uploads of 1 MiB; %llu bytes free\n", stored,
              static_cast<unsigned long long>(AvailBytes(d.data())));

  // Refused again while the disk stays full, and the CLI says why and fails.
  int refills = 0;
  CHECK(RefusedWhileFull(filler, kRefusalAttemptsMax, [&](int attempt) {
    refills = attempt + 1;
    Result<HttpReply> again = PutChunk(publisher, RandomBytes(kFillChunkBytes, 5000 + static_cast<uint64_t>(attempt)));
    REQUIRE(again.ok());
    return again->status == 507;
  }));
  std::printf("refused again after filling the disk %d time(s)\n", refills);
  const Bytes v2 = RandomBytes(1u << 20, 2);
  WriteFile(d.dir() / "v2.bin", v2);
  REQUIRE(FillUp(filler, 0));
  CommandResult full = d.Publish("fraud-detector", "1.1.0", d.dir() / "v2.bin");
  CHECK(full.exit_code != 0);
  CHECK_THAT(full.err, Catch::Contains("disk is full") && Catch::Contains("insufficient_storage"));
  CHECK(Metric(d.url(), "meridian_store_errors_total{code=\"insufficient_storage\"}") > 0);

  // What is stored is still served, intact.
  auto pull = [&](const std::string& version, const Bytes& want) {
    const std::string out = d.dir() / ("pulled-" + version);
    CommandResult r = d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "fraud-detector",
                             version, "-o", out});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(ReadFile(out) == want);
  };
  pull("1.0.0", v1);

  // Space freed: a publish goes through again, from the same daemon.
  REQUIRE(std::filesystem::remove(filler));
  const auto freed = std::chrono::steady_clock::now();
  CommandResult published;
  CHECK(WaitFor([&] {
    published = d.Publish("fraud-detector", "1.1.0", d.dir() / "v2.bin");
    return published.exit_code == 0;
  }, std::chrono::seconds(30)));
  INFO(published.err);
  REQUIRE(published.exit_code == 0);
  std::printf("a publish went through %lld ms after the filler was deleted\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - freed)
                                         .count()));
  CHECK(d.pid() == daemon);
  pull("1.1.0", v2);
  HttpClient anon(d.url(), d.ClientOptions());
  CHECK(WaitFor([&] {
    Result<HttpReply> r = anon.Get("/readyz");
    return r.ok() && r->status == 200;
  }, std::chrono::seconds(10)));

  // Stopped, the disk filled up again but for a little: fsck reads the store
  // as it is, and the daemon opens it and serves.
  REQUIRE(d.Terminate() == 0);
  REQUIRE(FillUp(filler, 512u << 10));
  std::printf("stopped; %llu bytes free for fsck and the restart\n",
              static_cast<unsigned long long>(AvailBytes(d.data())));
  CommandResult fsck = d.Fsck();
  INFO(fsck.out << fsck.err);
  CHECK(fsck.exit_code == 0);
  CHECK_THAT(fsck.out, Catch::Contains("clean"));
  d.Restart();
  pull("1.0.0", v1);
  pull("1.1.0", v2);
  CHECK(d.Terminate() == 0);
}
