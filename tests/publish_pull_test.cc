// Integration: publish a 200 MB model and a 1 %-changed second version with
// the real CLI into a real meridiand, pull both back, verify.
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <tuple>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "client/api.h"
#include "client/http_client.h"
#include "delta/chunker.h"
#include "manifest/chunk_pages.h"
#include "signing/signing.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

TEST_CASE("publish, deduplicated second version, pull byte-identical") {
  DaemonFixture d;
  d.Start();
  constexpr size_t kSize = 200u << 20;
  Bytes v1 = RandomBytes(kSize, 42);
  Bytes v2 = v1;
  // 1 % of the bytes: 32 scattered 64 KiB regions rewritten.
  Bytes noise = RandomBytes(32 * 65536, 7);
  for (size_t i = 0; i < 32; ++i) {
    size_t at = (i * 2 + 1) * (kSize / 64);
    std::copy_n(noise.begin() + static_cast<ptrdiff_t>(i * 65536), 65536, v2.begin() + static_cast<ptrdiff_t>(at));
  }
  WriteFile(d.dir() / "v1.bin", v1);
  WriteFile(d.dir() / "v2.bin", v2);

  CommandResult p1 = d.Publish("fraud-detector", "1.0.0", d.dir() / "v1.bin");
  REQUIRE(p1.exit_code == 0);
  auto j1 = nlohmann::json::parse(p1.out);
  CHECK(j1["uploaded_bytes"].get<uint64_t>() == kSize);

  CommandResult p2 = d.Publish("fraud-detector", "1.1.0", d.dir() / "v2.bin");
  REQUIRE(p2.exit_code == 0);
  auto j2 = nlohmann::json::parse(p2.out);
  uint64_t uploaded = j2["uploaded_bytes"].get<uint64_t>();
  std::printf("second version: uploaded %llu of %zu bytes (%.2f%%)\n", static_cast<unsigned long long>(uploaded), kSize,
              100.0 * static_cast<double>(uploaded) / static_cast<double>(kSize));
  CHECK(uploaded < kSize / 10);
  CHECK(uploaded >= 32u * 65536);

  for (auto [version, data, published] : {std::tuple{"1.0.0", &v1, &j1}, std::tuple{"1.1.0", &v2, &j2}}) {
    std::string out = d.dir() / (std::string("pulled-") + version);
    CommandResult pull = d.Cli({"--token", d.terminal_token(), "--output", "json", "pull", "--root", d.root_json(), "fraud-detector", version, "-o", out});
    REQUIRE(pull.exit_code == 0);
    Bytes got = ReadFile(out);
    CHECK(got == *data);
    CHECK(Digest::Of(got).ToString() == (*published)["digest"].get<std::string>());
    CHECK(nlohmann::json::parse(pull.out)["digest"] == (*published)["digest"]);
  }

  // A retried publish job (same bytes, same metadata, a new signing time) succeeds and says so;
  // other bytes under an existing version are refused, naming what to do.
  CommandResult retried = d.Publish("fraud-detector", "1.1.0", d.dir() / "v2.bin");
  REQUIRE(retried.exit_code == 0);
  auto jr = nlohmann::json::parse(retried.out);
  CHECK(jr["already_published"] == true);
  CHECK(jr["uploaded_bytes"] == 0);
  CHECK(jr["digest"] == j2["digest"]);
  CHECK(j2["already_published"] == false);
  CommandResult clash = d.Publish("fraud-detector", "1.1.0", d.dir() / "v1.bin");
  CHECK(clash.exit_code != 0);
  CHECK_THAT(clash.err, Catch::Contains("already published with other bytes or metadata"));

  CommandResult versions = d.Cli({"--token", d.terminal_token(), "--output", "json", "versions", "fraud-detector"});
  REQUIRE(versions.exit_code == 0);
  CHECK(nlohmann::json::parse(versions.out)["versions"] == nlohmann::json::array({"1.0.0", "1.1.0"}));
  CommandResult models = d.Cli({"--token", d.terminal_token(), "models"});
  CHECK(models.out == "fraud-detector\n");

  CHECK(d.Terminate() == 0);
  CommandResult fsck = d.Fsck();
  INFO(fsck.out << fsck.err);
  CHECK(fsck.exit_code == 0);
}

TEST_CASE("pull leaves chunks of zeros as holes, at the end too, and the file reads back whole") {
  DaemonFixture d;
  d.Start();
  // 8 MiB of zeros, 1 MiB of data, 8 MiB of zeros: a sparse tensor file.
  Bytes file(17u << 20, 0);
  const Bytes data = RandomBytes(1u << 20, 5);
  std::copy(data.begin(), data.end(), file.begin() + (8 << 20));
  WriteFile(d.dir() / "sparse.bin", file);
  REQUIRE(d.Publish("sparse", "1.0.0", d.dir() / "sparse.bin").exit_code == 0);

  const std::string out = d.dir() / "pulled.bin";
  CommandResult pull = d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "sparse", "1.0.0", "-o", out});
  REQUIRE(pull.exit_code == 0);
  CHECK(ReadFile(out) == file);
  struct stat st{};
  REQUIRE(::stat(out.c_str(), &st) == 0);
  // The data and the two chunks (at most 256 KiB each) that hold data and zeros.
  INFO("allocated " << st.st_blocks * 512 << " bytes");
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 <= (1u << 20) + 2 * ChunkerParams{}.max_bytes + (64u << 10));
  CHECK(d.Terminate() == 0);
}

TEST_CASE("pull fetches each distinct chunk once, a range of the artifact at a time, and copies the repeats") {
  DaemonFixture d;
  d.Start();
  // A 2 MiB block four times: the chunker cuts each copy the same way.
  const Bytes block = RandomBytes(2u << 20, 9);
  Bytes file;
  for (int i = 0; i < 4; ++i) file.insert(file.end(), block.begin(), block.end());
  WriteFile(d.dir() / "repeats.bin", file);
  REQUIRE(d.Publish("repeats", "1.0.0", d.dir() / "repeats.bin").exit_code == 0);
  // Requests to `route` ("GET /v1/chunks/{digest}") the daemon answered, from its /metrics.
  HttpClient op(d.url(), HttpClientOptions{.bearer_token = d.operator_token()});
  auto requests = [&](const std::string& route) {
    Result<HttpReply> m = op.Get("/metrics");
    REQUIRE(m.ok());
    uint64_t n = 0;
    const std::string label = "{route=\"" + route + "\"";
    for (size_t at = m->body.find(label); at != std::string::npos; at = m->body.find(label, at + 1)) {
      n += std::stoull(m->body.substr(m->body.find(' ', m->body.find('}', at)) + 1));
    }
    return n;
  };

  const std::string out = d.dir() / "pulled.bin";
  CommandResult pull = d.Cli({"--token", d.terminal_token(), "--output", "json", "pull", "--root", d.root_json(),
                              "repeats", "1.0.0", "-o", out});
  INFO(pull.err);
  REQUIRE(pull.exit_code == 0);
  CHECK(ReadFile(out) == file);
  // One copy of the block and the chunks across a seam, then the file's last
  // chunk (cut at its end): two ranges. The repeats were copied, not downloaded.
  const auto downloaded = nlohmann::json::parse(pull.out)["downloaded_bytes"].get<uint64_t>();
  CHECK(downloaded >= block.size());
  CHECK(downloaded < 2 * block.size());
  CHECK(requests("GET /v1/artifacts/{digest}") == 2);
  CHECK(requests("GET /v1/chunks/{digest}") == 0);
  // The publish sent its distinct chunks (about 2 MiB, 30-odd chunks) in
  // batches, not a request each: 1 MiB first, then what the rate allows.
  CHECK(requests("POST /v1/chunks") >= 1);
  CHECK(requests("POST /v1/chunks") <= 3);
  CHECK(requests("PUT /v1/chunks/{digest}") == 0);
  CHECK(d.Terminate() == 0);
}

TEST_CASE("publish falls back to a chunk a request against a daemon from before batches or a front end that refuses them") {
  DaemonFixture d;
  d.Start();
  HttpClient to_daemon(d.url(), HttpClientOptions{.bearer_token = d.publisher_token()});
  // 404: a daemon from before chunk batches; 413: a front end with a smaller body limit.
  for (const int refusal : {404, 413}) {
    INFO("POST /v1/chunks answered " << refusal);
    std::atomic<int> batches{0}, puts{0};
    FakeHttpServer front([&](const FakeRequest& req) {
      if (req.method == "POST" && req.path == "/v1/chunks") {
        ++batches;
        return FakeReply{refusal, R"({"error":{"code":"refused","message":"not here"}})"};
      }
      if (req.method == "PUT") ++puts;
      return Forward(to_daemon, req);
    });
    const std::string version = refusal == 404 ? "1.0.0" : "1.1.0";
    const Bytes model = RandomBytes(600'000, static_cast<uint64_t>(refusal));
    WriteFile(d.dir() / "model.bin", model);
    CommandResult p = Run({MeridianPath(), "--server", front.url(), "--token", d.publisher_token(), "publish", "--key",
                           d.release_key(), "--model", "m", "--version", version, d.dir() / "model.bin"});
    INFO(p.err);
    REQUIRE(p.exit_code == 0);
    CHECK(batches == 1);  // refused once: the rest went a chunk a request at once
    CHECK(puts >= 2);     // 600 kB: several chunks
    const std::string out = d.dir() / "pulled.bin";
    REQUIRE(d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "m", version, "-o", out}).exit_code == 0);
    CHECK(ReadFile(out) == model);
  }
}

TEST_CASE("pull asks again for a range cut short, from the chunk it had reached, and for one a front end failed") {
  DaemonFixture d;
  d.Start();
  const Bytes model = RandomBytes(3u << 20, 31);  // some 50 chunks: one range
  WriteFile(d.dir() / "model.bin", model);
  REQUIRE(d.Publish("m", "1.0.0", d.dir() / "model.bin").exit_code == 0);
  // In front of the daemon: the first GET of the artifact is cut off halfway,
  // the second answered 503, the third passed on.
  HttpClient to_daemon(d.url(), HttpClientOptions{.bearer_token = d.terminal_token()});
  std::vector<std::string> ranges;  // of the artifact's GETs, in order
  FakeHttpServer front([&](const FakeRequest& req) {
    if (!req.path.starts_with("/v1/artifacts/")) return Forward(to_daemon, req);
    ranges.push_back(req.range);
    if (ranges.size() == 2) return FakeReply{503, R"({"error":{"code":"busy","message":"try again"}})"};
    FakeReply out = Forward(to_daemon, req);
    if (ranges.size() == 1) out.body_bytes_sent_max = out.body.size() / 2;
    return out;
  });
  const std::string out = d.dir() / "pulled.bin";
  CommandResult pull = Run({MeridianPath(), "--server", front.url(), "--token", d.terminal_token(), "--parallel", "1",
                            "pull", "--root", d.root_json(), "m", "1.0.0", "-o", out});
  INFO(pull.err);
  REQUIRE(pull.exit_code == 0);
  CHECK(ReadFile(out) == model);
  REQUIRE(ranges.size() == 3);
  CHECK(ranges[0] == fmt::format("bytes=0-{}", model.size() - 1));
  // Asked again from the first chunk not received whole: past a third of the
  // file, short of its half.
  const uint64_t resumed = std::stoull(ranges[1].substr(std::string("bytes=").size()));
  CHECK(resumed > model.size() / 3);
  CHECK(resumed <= model.size() / 2);
  CHECK(ranges[2] == ranges[1]);
  CHECK(pull.err.find("asking again") != std::string::npos);
}

TEST_CASE("pull through a front end that ignores Range gets the chunks of a partial range one request each") {
  DaemonFixture d;
  d.Start();
  // A 1 MiB block twice, then other bytes: the repeat leaves two ranges that
  // are not the whole artifact.
  const Bytes block = RandomBytes(1u << 20, 41);
  const Bytes tail = RandomBytes(300'000, 42);
  Bytes model = block;
  model.insert(model.end(), block.begin(), block.end());
  model.insert(model.end(), tail.begin(), tail.end());
  WriteFile(d.dir() / "model.bin", model);
  REQUIRE(d.Publish("m", "1.0.0", d.dir() / "model.bin").exit_code == 0);
  HttpClient to_daemon(d.url(), HttpClientOptions{.bearer_token = d.terminal_token()});
  std::atomic<int> ranged{0}, chunk_gets{0};
  FakeHttpServer front([&](const FakeRequest& req) {
    if (req.path.starts_with("/v1/chunks/")) ++chunk_gets;
    if (!req.path.starts_with("/v1/artifacts/") || req.range.empty()) return Forward(to_daemon, req);
    ++ranged;
    FakeRequest whole = req;
    whole.range.clear();
    return Forward(to_daemon, whole);  // 200 with all of it
  });
  const std::string out = d.dir() / "pulled.bin";
  CommandResult pull = Run({MeridianPath(), "--server", front.url(), "--token", d.terminal_token(), "pull", "--root",
                            d.root_json(), "m", "1.0.0", "-o", out});
  INFO(pull.err);
  REQUIRE(pull.exit_code == 0);
  CHECK(ReadFile(out) == model);
  CHECK(ranged >= 2);
  CHECK(chunk_gets >= 4);  // 1.3 MiB of distinct chunks, some 64 KiB each

  // One that answers the range with more bytes than asked for is refused,
  // and nothing is left behind.
  FakeHttpServer liar([&](const FakeRequest& req) {
    FakeReply r = Forward(to_daemon, req);
    if (req.path.starts_with("/v1/artifacts/") && r.status == 206) r.body += "extra";
    return r;
  });
  const std::string refused = d.dir() / "refused.bin";
  pull = Run({MeridianPath(), "--server", liar.url(), "--token", d.terminal_token(), "pull", "--root", d.root_json(),
              "m", "1.0.0", "-o", refused});
  CHECK(pull.exit_code != 0);
  CHECK(pull.err.find("more bytes than asked for") != std::string::npos);
  CHECK(!std::filesystem::exists(refused));
}

TEST_CASE("a paged manifest: publish writes index pages, pull reads them; a retry and fsck agree") {
  DaemonFixture d;
  d.Start();
  const Bytes model = RandomBytes(3u << 20, 77);  // about 48 chunks: 16 pages of 3
  WriteFile(d.dir() / "model.bin", model);
  auto publish = [&](std::string per_page = "3") {
    return d.Cli({"--token", d.publisher_token(), "--output", "json", "publish", "--key", d.release_key(), "--model",
                  "ocr", "--version", "3.0.0", "--chunks-per-page", per_page, d.dir() / "model.bin"});
  };
  // A page holds 1 to kChunkPageEntriesMax chunks: outside that, the command
  // line is refused before anything is read or sent.
  for (const std::string& bad : {std::string("0"), std::to_string(kChunkPageEntriesMax + 1)}) {
    CommandResult refused = publish(bad);
    CHECK(refused.exit_code != 0);
    CHECK_THAT(refused.err, Catch::Contains("--chunks-per-page") && Catch::Contains("not in range"));
  }
  CHECK(d.Cli({"--token", d.terminal_token(), "models"}).out.empty());
  CommandResult pub = publish();
  INFO(pub.err);
  REQUIRE(pub.exit_code == 0);
  const nlohmann::json published = nlohmann::json::parse(pub.out);
  const uint64_t chunks = published["chunks"].get<uint64_t>();
  CHECK(chunks > 12);
  // Every chunk and every page went up once.
  CHECK(published["uploaded_chunks"].get<uint64_t>() == chunks + (chunks + 2) / 3);

  // What the daemon serves is the signed v2 manifest: pages, no chunk list.
  CommandResult shown = d.Cli({"--token", d.terminal_token(), "--output", "json", "pull", "--root", d.root_json(), "ocr",
                               "3.0.0", "-o", d.dir() / "pulled.bin"});
  INFO(shown.err);
  REQUIRE(shown.exit_code == 0);
  CHECK(ReadFile(d.dir() / "pulled.bin") == model);
  CHECK(nlohmann::json::parse(shown.out)["digest"] == published["digest"]);
  HttpClient c(d.url(), d.ClientOptions(d.terminal_token()));
  Result<HttpReply> envelope = c.Get(VersionPath("ocr", "3.0.0"), 1 << 20);
  REQUIRE(envelope.ok());
  REQUIRE(envelope->status == 200);
  const std::string payload(AsString(ParseEnvelope(envelope->body).value().payload));
  CHECK_THAT(payload, Catch::Contains("meridian.manifest/v2"));
  CHECK_THAT(payload, !Catch::Contains("\"chunks\":["));

  // The artifact is served from its pages, a page at a time: whole, and in
  // ranges that start at a page's first byte, inside a page, and span pages.
  const std::string artifact = "/v1/artifacts/" + published["digest"].get<std::string>();
  Result<HttpReply> whole = c.Get(artifact, 8 << 20);
  REQUIRE(whole.ok());
  CHECK(whole->status == 200);
  CHECK(whole->body == AsString(model));
  const nlohmann::json pages = nlohmann::json::parse(payload)["chunk_pages"];
  REQUIRE(pages.size() > 4);
  const uint64_t page0 = pages[0]["size"].get<uint64_t>();
  const uint64_t page1 = pages[1]["size"].get<uint64_t>();
  const std::vector<std::pair<uint64_t, uint64_t>> ranges = {  // first byte, last byte
      {page0, page0},                             // a page's first byte alone
      {page0 - 1, page0 + page1 + 17},            // across two page boundaries
      {page0 + 5, model.size() - 1},              // inside a page to the end
      {model.size() - 3, model.size() - 1}};      // the last page's tail
  for (auto [from, to] : ranges) {
    INFO("bytes " << from << "-" << to);
    Result<HttpReply> part =
        c.Get(artifact, 8 << 20, {"Range: bytes=" + std::to_string(from) + "-" + std::to_string(to)});
    REQUIRE(part.ok());
    CHECK(part->status == 206);
    CHECK(part->body == AsString(ByteSpan(model).subspan(from, to - from + 1)));
  }

  CommandResult again = publish();
  REQUIRE(again.exit_code == 0);
  CHECK(nlohmann::json::parse(again.out)["already_published"] == true);
  CHECK(nlohmann::json::parse(again.out)["uploaded_chunks"] == 0);
  CHECK(d.Terminate() == 0);
  CommandResult fsck = d.Fsck();
  INFO(fsck.out << fsck.err);
  CHECK(fsck.exit_code == 0);
}

TEST_CASE("pull refuses a root that does not trust the signer, and leaves nothing behind") {
  DaemonFixture d;
  d.Start();
  WriteFile(d.dir() / "m.bin", RandomBytes(300'000, 1));
  REQUIRE(d.Publish("m", "1.0.0", d.dir() / "m.bin").exit_code == 0);
  DaemonFixture other;  // a different root of trust
  std::string out = d.dir() / "out.bin";
  CommandResult pull = d.Cli({"--token", d.terminal_token(), "pull", "--root", other.root_json(), "m", "1.0.0", "-o", out});
  CHECK(pull.exit_code != 0);
  CHECK(pull.err.find("manifest rejected") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
  CommandResult missing = d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "m", "9.9.9", "-o", out});
  CHECK(missing.exit_code != 0);
  CHECK(missing.err.find("404") != std::string::npos);
}

TEST_CASE("the CLI answers a daemon whose answers have another shape with an error, never a crash") {
  // What each listing gets back: JSON, but not what a daemon of this version sends.
  FakeHttpServer server([](const FakeRequest& req) -> FakeReply {
    if (req.path == "/v1/models") return {200, R"({"models":[1,2]})"};
    if (req.path == "/v1/models/fraud/versions") return {200, R"({"versions":"1.0.0"})"};
    if (req.path == "/v1/rollouts") return {200, R"({"rollouts":[{"id":7}]})"};
    if (req.path == "/v1/rollouts/r1") return {200, R"({"id":"r1","spec":[],"state":{"phase":3}})"};
    if (req.path == "/v1/regions") return {200, R"({"role":"region","regions":[],"upstream":{}})"};
    if (req.path == "/v1/fleet") return {200, R"({"channels":[{"model":"m","versions":[{"version":1}]}]})"};
    if (req.path == "/v1/residency") return {200, R"({"models":[{"model":"m","residency":"br","daemons":[]}]})"};
    return {404, R"({"error":{"code":"not_found","message":"no"}})"};
  });
  const std::vector<std::vector<std::string>> commands = {
      {"models"}, {"versions", "fraud"}, {"rollout", "list"}, {"rollout", "status", "r1"}, {"regions"},
      {"fleet"}, {"residency"}};
  for (const std::vector<std::string>& command : commands) {
    std::vector<std::string> argv = {MeridianPath(), "--server", server.url(), "--token", "t"};
    argv.insert(argv.end(), command.begin(), command.end());
    CommandResult r = Run(argv);
    INFO(command[0] << " " << (command.size() > 1 ? command[1] : "") << ": " << r.err);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::StartsWith("meridian: "));
  }
}

TEST_CASE("text that is not UTF-8 (Latin-1 \"café\") is refused naming its option or line, never a crash") {
  // Nothing may reach the server: every command stops before it sends.
  std::atomic<int> requests{0};
  FakeHttpServer server([&](const FakeRequest&) -> FakeReply {
    ++requests;
    return {500, R"({"error":{"code":"internal","message":"should not be asked"}})"};
  });
  TempDir dir;
  WriteFile(dir / "m.bin", AsBytes("weights"));
  WriteFile(dir / "fleet.csv", AsBytes("pos-1,AAAA\ncaf\xE9,AAAA\n"));
  const std::string latin1 = "caf\xE9";
  const std::vector<std::pair<std::vector<std::string>, std::string>> commands = {
      {{"versions", "delete", "m", "1.0.0", "--reason", latin1}, "--reason"},
      {{"rollout", "pause", "r1", "--reason", latin1}, "--reason"},
      {{"rollout", "start", "m", "1.0.0", "--health-rule", latin1}, "--health-rule"},
      {{"tokens", "create", "--role", "operator", "--name", latin1}, "--name"},
      {{"terminals", "add", latin1, "--public-key", "AAAA"}, "ID"},
      {{"terminals", "import", dir / "fleet.csv"}, "fleet.csv:2: not UTF-8 text"},
      {{"publish", "--key", dir / "k", "--model", "m", "--version", "1.0.0", "--annotation", "note=" + latin1,
        dir / "m.bin"},
       "--annotation"}};
  for (const auto& [command, named] : commands) {
    std::vector<std::string> argv = {MeridianPath(), "--server", server.url(), "--token", "t"};
    argv.insert(argv.end(), command.begin(), command.end());
    CommandResult r = Run(argv);
    INFO(command[0] << " " << command[1] << ": " << r.err);
    CHECK(r.exit_code > 0);  // an exit, not a signal
    CHECK_THAT(r.err, Catch::Contains(named) && Catch::Contains("not UTF-8"));
  }
  CHECK(requests == 0);
  // A path is bytes, whatever they are: taken, and shown in JSON with U+FFFD.
  CommandResult keygen = Run({MeridianPath(), "--output", "json", "keygen", dir / (latin1 + ".key")});
  INFO(keygen.err);
  CHECK(keygen.exit_code == 0);
  CHECK(std::filesystem::exists(dir / (latin1 + ".key")));
  CHECK(nlohmann::json::parse(keygen.out)["secret"] == dir / "caf\xEF\xBF\xBD.key");
}

TEST_CASE("publish and pull show progress on a terminal; keygen names a missing directory") {
  DaemonFixture d;
  d.Start();
  WriteFile(d.dir() / "m.bin", RandomBytes(3'000'000, 5));
  CommandResult publish = RunOnTerminal({MeridianPath(), "--server", d.url(), "--token", d.publisher_token(), "publish",
                                         "--key", d.release_key(), "--model", "m", "--version", "1.0.0",
                                         d.dir() / "m.bin"});
  CHECK(publish.exit_code == 0);
  CHECK_THAT(publish.out, Catch::Contains("publishing [") && Catch::Contains("100.0%"));
  CommandResult pull = RunOnTerminal({MeridianPath(), "--server", d.url(), "--token", d.terminal_token(), "pull", "--root", d.root_json(), "m", "1.0.0",
                                      "-o", d.dir() / "out.bin"});
  CHECK(pull.exit_code == 0);
  CHECK_THAT(pull.out, Catch::Contains("downloading [") && Catch::Contains("100.0%"));
  CHECK(ReadFile(d.dir() / "out.bin") == ReadFile(d.dir() / "m.bin"));

  CommandResult keygen = Run({MeridianPath(), "keygen", (d.dir() / "no-such-dir") + "/k.key"});
  CHECK(keygen.exit_code == 1);
  CHECK_THAT(keygen.err, Catch::Contains("no-such-dir does not exist") && !Catch::Contains(".tmp."));
}

TEST_CASE("a path that cannot be looked at (a loop of links, a name too long) is an error naming it, not an abort") {
  TempDir dir;
  std::filesystem::create_symlink("loop", dir / "loop");
  const std::string in_loop = dir / "loop/k.key", too_long = dir / (std::string(300, 'a') + "/k.key");
  CommandResult loop = Run({MeridianPath(), "keygen", in_loop});
  CHECK(loop.exit_code == 1);
  CHECK_THAT(loop.err, Catch::Contains("Too many levels of symbolic links"));
  CommandResult long_name = Run({MeridianPath(), "keygen", too_long});
  CHECK(long_name.exit_code == 1);
  CHECK_THAT(long_name.err, Catch::Contains("File name too long"));
  REQUIRE(Run({MeridianPath(), "keygen", dir / "release.key"}).exit_code == 0);
  CommandResult init = Run({MeridiandPath(), "init", "--data", dir / "loop/data", "--release-key", dir / "release.key.pub"});
  CHECK(init.exit_code == 1);
  CHECK_THAT(init.err, Catch::Contains("Too many levels of symbolic links"));
}
