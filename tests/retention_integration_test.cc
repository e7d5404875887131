// Integration: deleting versions and collecting their bytes on a real
// meridiand through the CLI and HTTP: refused while a channel names the
// version, 404 and audited after, stale deltas dropped, the disk bytes in
// /metrics go down, and the name never takes other bytes.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

#include "base/digest.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

constexpr size_t kFileBytes = 8u << 20;  // random: incompressible

int GetStatus(const DaemonFixture& d, const std::string& path, const std::string& token) {
  HttpClient c(d.url(), d.ClientOptions(token));
  Result<HttpReply> r = c.Get(path);
  return r.ok() ? r->status : -1;
}

}  // namespace

TEST_CASE("versions delete and collect: refused in use, 404 and audited after, stale deltas and bytes go, the disk "
          "shrinks") {
  DaemonFixture d;
  const std::string config = d.dir() / "meridiand.toml";
  WriteFile(config, AsBytes(std::string_view("unreferenced_grace_ms = 1000\ncollect_interval_ms = 0\n")));
  const std::vector<std::string> args = {"--config", config};
  d.Start(args);
  std::vector<Digest> digests;
  for (const char* v : {"1.0.0", "1.1.0", "1.2.0"}) {
    const Bytes bytes = RandomBytes(kFileBytes, digests.size() + 1);
    digests.push_back(Digest::Of(bytes));
    WriteFile(d.dir() / "model.bin", bytes);
    CommandResult p = d.Publish("fraud", v, d.dir() / "model.bin");
    INFO(p.err);
    REQUIRE(p.exit_code == 0);
  }
  d.StartRollout(RolloutSpecJson("r1", "1.2.0"));
  const std::string delta_info = "/v1/deltas/" + digests[0].ToString() + "/" + digests[1].ToString() + "/info";
  REQUIRE(WaitFor([&] { return GetStatus(d, delta_info, d.terminal_token()) == 200; }, std::chrono::seconds(60)));
  REQUIRE(d.Terminate() == 0);  // closing flushes: the chunks are in blob files, as on a store in use
  d.Restart(args);

  CommandResult in_use = d.Cli({"--token", d.publisher_token(), "versions", "delete", "fraud", "1.2.0"});
  CHECK(in_use.exit_code != 0);
  CHECK(in_use.err.find("in use by channel stable") != std::string::npos);
  CommandResult deleted =
      d.Cli({"--token", d.publisher_token(), "versions", "delete", "fraud", "1.0.0", "--reason", "superseded"});
  INFO(deleted.err);
  REQUIRE(deleted.exit_code == 0);
  CHECK(GetStatus(d, "/v1/models/fraud/versions/1.0.0", d.terminal_token()) == 404);
  CHECK(GetStatus(d, "/v1/artifacts/" + digests[0].ToString(), d.terminal_token()) == 404);
  CHECK(d.Cli({"--token", d.operator_token(), "versions", "delete", "fraud", "1.1.0"}).exit_code != 0);  // not a publisher
  CommandResult audit = d.Cli({"--token", d.operator_token(), "audit", "list"});
  CHECK(audit.out.find("version.delete") != std::string::npos);
  CHECK(audit.out.find("superseded") != std::string::npos);

  const int64_t disk_before = Metric(d.url(), "meridian_store_disk_bytes");
  uint64_t bytes_deleted = 0, deltas_dropped = 0;
  // The deleted version's chunks are collected once a second (the grace
  // period) has passed since they were last written.
  REQUIRE(WaitFor(
      [&] {
        CommandResult c = d.Cli({"--token", d.operator_token(), "--output", "json", "collect"});
        REQUIRE(c.exit_code == 0);
        nlohmann::json j = nlohmann::json::parse(c.out);
        bytes_deleted += j.at("bytes_deleted").get<uint64_t>();
        deltas_dropped += j.at("deltas_dropped").get<uint64_t>();
        return bytes_deleted >= kFileBytes;
      },
      std::chrono::seconds(30)));
  CHECK(bytes_deleted == kFileBytes);
  CHECK(deltas_dropped >= 1);
  CHECK(GetStatus(d, delta_info, d.terminal_token()) == 404);
  const int64_t disk_after = Metric(d.url(), "meridian_store_disk_bytes");
  INFO("disk bytes " << disk_before << " -> " << disk_after);
  CHECK(disk_after < disk_before - static_cast<int64_t>(kFileBytes) / 2);

  // What is still named is served whole; the deleted name refuses other bytes.
  HttpClient c(d.url(), d.ClientOptions(d.terminal_token()));
  Result<HttpReply> kept = c.Get("/v1/artifacts/" + digests[1].ToString(), 16u << 20);
  REQUIRE(kept.ok());
  CHECK(kept->status == 200);
  CHECK(Digest::Of(AsBytes(kept->body)) == digests[1]);
  WriteFile(d.dir() / "other.bin", RandomBytes(1 << 20, 99));
  CommandResult reuse = d.Publish("fraud", "1.0.0", d.dir() / "other.bin");
  CHECK(reuse.exit_code != 0);
  CHECK(reuse.err.find("was deleted") != std::string::npos);
  REQUIRE(d.Terminate() == 0);
  CommandResult fsck = d.Fsck();
  INFO(fsck.out << fsck.err);
  CHECK(fsck.exit_code == 0);
}
