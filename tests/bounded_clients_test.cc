// Clients against a hostile reply of 1 GiB: meridian (versions, models, show,
// pull, a control command) and meridian-agent (credential, roots, target,
// manifest, a download's error body) stop reading at the limit of what they
// asked for, say which limit, and their peak memory stays within 64 MiB of
// the same command's against an ordinary reply. The hostile server makes its
// body as it sends it and is willing to send all of it: a client that
// buffered the reply would take the whole GiB.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>

#include <catch2/catch.hpp>

#include "client/api.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

constexpr uint64_t kHostileBytes = 1ull << 30;
constexpr uint64_t kMemoryAboveBaselineMax = 64ull << 20;
constexpr uint64_t kMiB = 1u << 20;

const FakeReply kNotFound{404, R"({"error":{"code":"not_found","message":"nothing here"}})", {}};

// A 200 whose body is 1 GiB of filler: with a Content-Length saying so, or
// chunked (its length unknown until the end).
FakeReply Hostile(bool chunked) { return FakeReply{.filler_bytes = kHostileBytes, .chunked = chunked}; }

// What a client says when it stopped at `limit`.
std::string Stopped(uint64_t limit) { return "more than the " + std::to_string(limit) + " bytes this request accepts"; }

}  // namespace

TEST_CASE("HttpClient reads a reply up to the call's limit") {
  std::mutex mu;
  FakeReply next;
  FakeHttpServer server([&](const FakeRequest&) {
    std::lock_guard lock(mu);
    return next;
  });
  auto answer = [&](FakeReply reply) {
    std::lock_guard lock(mu);
    next = std::move(reply);
  };
  HttpClient client(server.url());
  const uint64_t limit = 1 * kMiB;
  for (bool chunked : {false, true}) {
    INFO((chunked ? "chunked" : "Content-Length"));
    answer(FakeReply{.body = "{}", .filler_bytes = limit - 2, .chunked = chunked});
    Result<HttpReply> fits = client.Get("/", limit);
    REQUIRE(fits.ok());
    CHECK(fits->body.size() == limit);

    answer(Hostile(chunked));
    uint64_t sent_before = server.filler_bytes_sent();
    Result<HttpReply> hostile = client.Get("/", limit);
    REQUIRE(hostile.status().code() == Status::Code::kResourceExhausted);
    CHECK_THAT(hostile.status().message(), Catch::Contains(server.url() + "/") && Catch::Contains(Stopped(limit)));
    if (!chunked) CHECK_THAT(hostile.status().message(), Catch::Contains("says it is 1073741824 bytes long"));
    CHECK(server.filler_bytes_sent() - sent_before < kHostileBytes / 2);

    answer(Hostile(chunked));
    Result<HttpReply> streamed = client.GetStreaming("/", [](ByteSpan) { return Status::Ok(); }, limit);
    CHECK(streamed.status().code() == Status::Code::kResourceExhausted);

    // An error reply: its status and the start of its body, whatever the limit.
    for (uint64_t call_limit : {limit, kHostileBytes * 2}) {
      answer(FakeReply{.status = 503, .body = "busy", .filler_bytes = kHostileBytes, .chunked = chunked});
      Result<HttpReply> error = client.Get("/", call_limit);
      REQUIRE(error.ok());
      CHECK(error->status == 503);
      CHECK(error->body.size() == kErrorBodyBytesMax);
      CHECK(error->body.starts_with("busyxxx"));
    }
    answer(FakeReply{.status = 503, .body = "busy", .filler_bytes = kHostileBytes, .chunked = chunked});
    Result<HttpReply> error = client.GetStreaming("/", [](ByteSpan) { return Status::Ok(); }, kHostileBytes * 2);
    REQUIRE(error.ok());
    CHECK(error->status == 503);
    CHECK(error->body.size() == kErrorBodyBytesMax);

    // libcurl keeps nothing of a body it hands to a sink: memory stays flat
    // through 256 MiB.
    answer(FakeReply{.filler_bytes = 256 * kMiB, .chunked = chunked});
    const uint64_t rss_before = ResidentBytes(::getpid());
    uint64_t rss_max = rss_before, got = 0;
    Result<HttpReply> all = client.GetStreaming("/", [&](ByteSpan piece) {
      got += piece.size();
      if (got % (16 * kMiB) < piece.size()) rss_max = std::max(rss_max, ResidentBytes(::getpid()));
      return Status::Ok();
    }, kHostileBytes);
    REQUIRE(all.ok());
    CHECK(got == 256 * kMiB);
    CHECK(rss_max < rss_before + 16 * kMiB);

    // The connection is still good for the next request.
    answer(FakeReply{.body = "ok"});
    Result<HttpReply> after = client.Get("/", limit);
    REQUIRE(after.ok());
    CHECK(after->body == "ok");
  }
}

TEST_CASE("meridian stops reading a hostile reply at the limit of each request") {
  TempDir t;
  DaemonFixture d;  // not started: its root, for pull
  std::mutex mu;
  bool hostile = false, chunked = false;
  FakeHttpServer server([&](const FakeRequest&) {
    std::lock_guard lock(mu);
    return hostile ? Hostile(chunked) : kNotFound;
  });
  auto run = [&](const std::vector<std::string>& args, bool hostile_reply, bool chunked_reply) {
    {
      std::lock_guard lock(mu);
      hostile = hostile_reply;
      chunked = chunked_reply;
    }
    std::vector<std::string> argv = {MeridianPath(), "--server", server.url()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunMeasuringMemory(argv, std::chrono::seconds(60));
  };
  struct Case {
    std::vector<std::string> args;
    uint64_t limit;
  };
  const Case cases[] = {
      {{"versions", "fraud"}, kJsonReplyBytesMax},
      {{"models"}, kJsonReplyBytesMax},
      {{"--token", "any", "rollout", "list"}, kJsonReplyBytesMax},
      {{"show", "fraud", "1.0.0"}, kManifestReplyBytesMax},
      {{"pull", "--root", d.root_json(), "fraud", "1.0.0", "--out", t / "out"}, kManifestReplyBytesMax},
  };
  for (const Case& c : cases) {
    CommandResult baseline = run(c.args, false, false);
    INFO(c.args.at(0) << ": baseline " << baseline.peak_resident_bytes / kMiB << " MiB, " << baseline.err);
    REQUIRE(baseline.peak_resident_bytes > 0);
    for (bool chunked_reply : {false, true}) {
      uint64_t sent_before = server.filler_bytes_sent();
      CommandResult r = run(c.args, true, chunked_reply);
      uint64_t sent = server.filler_bytes_sent() - sent_before;
      INFO((chunked_reply ? "chunked: " : "Content-Length: ") << r.peak_resident_bytes / kMiB << " MiB, "
                                                              << sent / kMiB << " MiB sent, " << r.err);
      CHECK(r.exit_code == 1);
      CHECK_THAT(r.err, Catch::Contains(Stopped(c.limit)));
      CHECK(sent < kHostileBytes / 2);
      if (!chunked_reply) {
        CHECK_THAT(r.err, Catch::Contains("says it is " + std::to_string(kHostileBytes) + " bytes long"));
      }
      // A manifest, up to the largest the daemon accepts (about 86 MiB), is
      // spooled to disk as it arrives and read into memory only once whole:
      // a hostile reply never is.
      CHECK(r.peak_resident_bytes < baseline.peak_resident_bytes + kMemoryAboveBaselineMax);
    }
  }
}

TEST_CASE("meridian-agent stops reading a hostile reply at the limit of each request") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  WriteFile(t / "v1", RandomBytes(300'000, 7));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0"));

  // Passes everything on to the daemon as terminal pos-a, but for the
  // requests of one kind: those get 1 GiB (a failed download, a 500).
  HttpClient daemon(d.url(), HttpClientOptions{.bearer_token = d.TerminalCredential("pos-a")});
  std::mutex mu;
  std::string hostile;  // the kind of request answered with 1 GiB; "" for none
  bool chunked = false;
  auto kind_of = [](const std::string& path) -> std::string {
    if (path.find("/credential") != std::string::npos) return "credential";
    if (path.find("/target") != std::string::npos) return "target";
    if (path == "/v1/roots") return "roots";
    if (path.starts_with("/v1/models/")) return "manifest";
    if (path.starts_with("/v1/artifacts/")) return "download";
    return "other";
  };
  FakeHttpServer proxy([&](const FakeRequest& req) {
    {
      std::lock_guard lock(mu);
      std::string kind = kind_of(req.path);
      if (kind == hostile && kind == "download") {
        return FakeReply{.status = 500, .filler_bytes = kHostileBytes, .chunked = chunked};
      }
      if (kind == hostile) return Hostile(chunked);
    }
    Result<HttpReply> r = req.method == "POST" ? daemon.Post(req.path, req.body) : daemon.Get(req.path);
    if (!r.ok()) return FakeReply{502, r.status().ToString(), {}};
    return FakeReply{static_cast<int>(r->status), r->body, {}};
  });

  // One cycle of a terminal with nothing installed yet (a state directory of
  // its own), its credential from the daemon (enrolled as pos-a) or, with
  // `join`, asked of the proxy.
  int runs = 0;
  auto cycle = [&](const std::string& hostile_kind, bool chunked_reply, bool join = false) {
    {
      std::lock_guard lock(mu);
      hostile = hostile_kind;
      chunked = chunked_reply;
    }
    std::string state = t / ("state-" + std::to_string(++runs));
    WriteAgentConfig(t / "agent.toml", {.id = join ? "pos-new" : "pos-a", .servers = {proxy.url()},
                                        .root = d.root_json(), .state = state, .enrol_at = join ? nullptr : &d,
                                        .model = "fraud"});
    return RunMeasuringMemory({MeridianAgentPath(), "--config", t / "agent.toml", "--once"}, std::chrono::seconds(60));
  };

  CommandResult baseline = cycle("", false);  // installs 1.0.0 through the proxy
  INFO("baseline " << baseline.peak_resident_bytes / kMiB << " MiB: " << baseline.err);
  REQUIRE(baseline.exit_code == 0);
  REQUIRE(baseline.peak_resident_bytes > 0);
  CHECK(InstalledVersion(t / "state-1", "fraud") == "1.0.0");

  struct Case {
    std::string kind;
    std::string says;  // in the agent's log
    bool join = false;
  };
  const Case cases[] = {
      {"credential", Stopped(kShortReplyBytesMax), true},
      {"target", Stopped(kTargetReplyBytesMax)},
      // Read to disk while it is hashed; into memory only when it matches the signed state.
      {"manifest", Stopped(kManifestReplyBytesMax)},
      {"download", "HTTP 500: xxxx"},  // the start of the error body, the rest unread
  };
  for (const Case& c : cases) {
    for (bool chunked_reply : {false, true}) {
      uint64_t sent_before = proxy.filler_bytes_sent();
      CommandResult r = cycle(c.kind, chunked_reply, c.join);
      uint64_t sent = proxy.filler_bytes_sent() - sent_before;
      INFO(c.kind << (chunked_reply ? " chunked: " : " Content-Length: ") << r.peak_resident_bytes / kMiB
                  << " MiB, " << sent / kMiB << " MiB sent: " << r.err);
      CHECK(r.exit_code == 1);
      CHECK_THAT(r.err, Catch::Contains(c.says));
      CHECK(sent < kHostileBytes / 2);
      CHECK(r.peak_resident_bytes < baseline.peak_resident_bytes + kMemoryAboveBaselineMax);
      CHECK(InstalledVersion(t / ("state-" + std::to_string(runs)), "fraud").empty());
    }
  }
  {
    INFO("the chain of roots: logged, the cycle goes on");
    uint64_t sent_before = proxy.filler_bytes_sent();
    CommandResult r = cycle("roots", true);
    INFO(r.peak_resident_bytes / kMiB << " MiB: " << r.err);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.err, Catch::Contains(Stopped(kShortReplyBytesMax)));
    CHECK(proxy.filler_bytes_sent() - sent_before < kHostileBytes / 2);
    CHECK(r.peak_resident_bytes < baseline.peak_resident_bytes + kMemoryAboveBaselineMax);
  }
}
