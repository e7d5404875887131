// meridian-agent's delta path against a server that serves deltas (the route
// of docs/formats/delta.md, played by a proxy in front of a real meridiand):
// a good delta is applied and downloads only its bytes; wrong delta bytes, or
// a descriptor not signed by the online key, are refused and the agent fetches
// the artifact instead; an interrupted delta download resumes with Range.
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "client/api.h"
#include "client/http_client.h"
#include "delta/delta.h"
#include "delta/delta_info.h"
#include "signing/signing.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

std::string SignedInfo(const Bytes& from, const Bytes& to, const Bytes& delta, const SecretKey& key) {
  DeltaInfo info{Digest::Of(from), Digest::Of(to), true, "", Digest::Of(delta), delta.size(), to.size(), to.size()};
  Envelope env{std::string(kDeltaInfoPayloadType), ToBytes(DeltaInfoToJson(info)), {}};
  SignEnvelope(env, key);
  return EnvelopeToJson(env);
}

}  // namespace

TEST_CASE("agent applies a signed delta, refuses bad ones in favour of the artifact") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  Bytes v1 = RandomBytes(2'000'000, 31), v2 = v1;
  for (size_t i = 0; i < 2000; ++i) v2[i * 1000] ^= 0x44;
  WriteFile(t / "v1", v1);
  WriteFile(t / "v2", v2);
  Result<Bytes> delta = EncodeDelta(v1, v2);
  REQUIRE(delta.ok());
  REQUIRE(delta->size() < v2.size() / 10);
  Result<SecretKey> online = ReadSecretKeyFile(d.data() + "/keys/online.key");
  REQUIRE(online.ok());
  const std::string delta_path = DeltaPath(Digest::Of(v1), Digest::Of(v2));

  // Forwards as terminal pos-d, the agent behind it.
  HttpClient daemon(d.url(), HttpClientOptions{.bearer_token = d.TerminalCredential("pos-d")});
  std::mutex mu;
  std::string info;        // the descriptor served
  Bytes served_delta;      // the delta bytes served
  size_t delta_bytes_sent_max = SIZE_MAX;  // cut the next delta transfer after this many bytes
  bool honour_range = true;
  std::vector<std::string> delta_ranges;    // Range headers of delta requests
  FakeHttpServer proxy([&](const FakeRequest& req) {
    const std::string& path = req.path;
    const std::string& range = req.range;
    std::lock_guard<std::mutex> lock(mu);
    if (path == delta_path + "/info") return FakeReply{200, info, {}};
    if (path == delta_path) {
      delta_ranges.push_back(range);
      size_t from = 0;
      if (honour_range && range.starts_with("bytes=")) from = std::stoul(range.substr(6));
      std::string body(AsString(served_delta).substr(from));
      FakeReply r{from > 0 ? 206 : 200, body, {}, delta_bytes_sent_max};
      delta_bytes_sent_max = SIZE_MAX;
      if (from > 0) {
        r.headers.push_back("Content-Range: bytes " + std::to_string(from) + "-" +
                            std::to_string(served_delta.size() - 1) + "/" + std::to_string(served_delta.size()));
      }
      return r;
    }
    Result<HttpReply> r = path.find("/reports") != std::string::npos ? daemon.Post(path, req.body) : daemon.Get(path);
    if (!r.ok()) return FakeReply{502, "", {}};
    return FakeReply{static_cast<int>(r->status), r->body, {}};
  });

  std::string state = t / "state";
  std::string config = WriteAgentConfig(t / "agent.toml", {.id = "pos-d", .servers = {proxy.url()},
                                                           .root = d.root_json(), .state = state,
                                                           .enrol_at = &d, .model = "fraud"});
  auto once = [&]() { return Run({MeridianAgentPath(), "--config", config, "--once"}); };
  auto downloaded = [&]() {
    return Json::parse(AsString(ReadFile(state + "/agent.json")))["downloaded_bytes"].get<uint64_t>();
  };
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0", {{"auto_promote", true}}));
  REQUIRE(once().exit_code == 0);
  REQUIRE(downloaded() == v1.size());
  REQUIRE(WaitFor([&] { return Json::parse(d.GetRollout("r1"))["state"]["phase"] == "completed"; },
                  std::chrono::seconds(30)));
  REQUIRE(d.Publish("fraud", "2.0.0", t / "v2").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r2", "2.0.0", {{"auto_promote", true}}));
  std::string current = state + "/models/fraud/current";

  SECTION("a good delta: only its bytes are downloaded") {
    {
      std::lock_guard<std::mutex> lock(mu);
      info = SignedInfo(v1, v2, *delta, *online);
      served_delta = *delta;
    }
    CommandResult r = once();
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(ReadFile(current) == v2);
    CHECK(downloaded() - v1.size() == delta->size());
  }
  SECTION("a cut delta download resumes with Range; a server ignoring Range starts it over") {
    bool ignore = GENERATE(false, true);
    size_t half = delta->size() / 2;
    {
      std::lock_guard<std::mutex> lock(mu);
      info = SignedInfo(v1, v2, *delta, *online);
      served_delta = *delta;
      delta_bytes_sent_max = half;
      honour_range = !ignore;
    }
    CommandResult cut = once();
    CHECK(cut.exit_code == 1);  // the transfer ended early: retried, not reported as a failure
    CHECK(ReadFile(current) == v1);
    CommandResult r = once();
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(ReadFile(current) == v2);
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(delta_ranges.size() == 2);
    CHECK(delta_ranges[0].empty());
    CHECK(delta_ranges[1] == "bytes=" + std::to_string(half) + "-");
    CHECK(downloaded() - v1.size() == (ignore ? half + delta->size() : delta->size()));
  }
  SECTION("wrong delta bytes are refused; the artifact is fetched instead") {
    Bytes bad = *delta;
    bad[bad.size() / 2] ^= 0x01;
    {
      std::lock_guard<std::mutex> lock(mu);
      info = SignedInfo(v1, v2, *delta, *online);
      served_delta = bad;
    }
    CommandResult r = once();
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.err, Catch::Contains("delta refused"));
    CHECK(ReadFile(current) == v2);
    CHECK(downloaded() - v1.size() == bad.size() + v2.size());
  }
  SECTION("a delta whose descriptor matches its bytes but that does not make the signed target is refused") {
    Result<Bytes> other = EncodeDelta(v1, v1);  // a valid delta to the wrong target
    REQUIRE(other.ok());
    {
      std::lock_guard<std::mutex> lock(mu);
      info = SignedInfo(v1, v2, *other, *online);
      served_delta = *other;
    }
    CommandResult r = once();
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.err, Catch::Contains("delta refused"));
    CHECK(ReadFile(current) == v2);
  }
  SECTION("a descriptor not signed by the online key is ignored") {
    {
      std::lock_guard<std::mutex> lock(mu);
      info = SignedInfo(v1, v2, *delta, SecretKey::Generate());
      served_delta = *delta;
    }
    CommandResult r = once();
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.err, Catch::Contains("delta descriptor refused"));
    CHECK(ReadFile(current) == v2);
    CHECK(downloaded() - v1.size() == v2.size());
  }
  CHECK(std::filesystem::is_empty(state + "/models/fraud/staging"));
}
