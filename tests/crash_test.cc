// Integration: kill -9 of meridiand at random moments during 20 publishes,
// each followed by fsck and a restart. fsck is clean every time; every
// version is wholly present (and pulls byte-identical) or absent; a publish
// the CLI reported as done is always present.
#include <signal.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <random>
#include <thread>

#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

TEST_CASE("kill -9 during publishes never leaves a partial version") {
  DaemonFixture d;
  d.Start();
  std::mt19937 rng(20261124);
  std::vector<Bytes> files;
  int present = 0, absent = 0;
  for (int i = 0; i < 20; ++i) {
    // Versions share a base so that some chunks dedupe and some are new.
    Bytes data = RandomBytes(6u << 20, 1);
    Bytes fresh = RandomBytes(3u << 20, 100 + static_cast<uint64_t>(i));
    std::copy(fresh.begin(), fresh.end(), data.begin() + static_cast<ptrdiff_t>((i % 3) << 20));
    std::string path = d.dir() / ("v" + std::to_string(i));
    WriteFile(path, data);
    files.push_back(data);
    std::string version = "1.0." + std::to_string(i);

    Child publish({MeridianPath(), "--server", d.url(), "--token", d.publisher_token(), "publish", "--key",
                   d.release_key(), "--model", "crashy", "--version", version, path},
                  d.dir() / ("publish-" + std::to_string(i) + ".log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 400)(rng)));
    d.Kill9();
    int publish_exit = publish.Wait(std::chrono::seconds(60));

    CommandResult fsck = d.Fsck();
    INFO("round " << i << ": " << fsck.out << fsck.err);
    REQUIRE(fsck.exit_code == 0);

    d.Start();
    HttpClient c(d.url(), HttpClientOptions{.bearer_token = d.terminal_token()});
    Result<HttpReply> v = c.Get("/v1/models/crashy/versions/" + version);
    REQUIRE(v.ok());
    if (publish_exit == 0) CHECK(v->status == 200);  // acknowledged means durable
    if (v->status == 200) {
      ++present;
      std::string out = d.dir() / "pulled";
      CommandResult pull = d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "crashy", version, "-o", out});
      REQUIRE(pull.exit_code == 0);
      CHECK(ReadFile(out) == data);
    } else {
      CHECK(v->status == 404);
      ++absent;
    }
  }
  std::printf("after 20 kill -9 during publishes: %d versions wholly present, %d absent, fsck clean each time\n",
              present, absent);
  CHECK(present + absent == 20);
  // Everything can still be published after the crashes.
  CHECK(d.Publish("crashy", "2.0.0", d.dir() / "v0").exit_code == 0);
}
