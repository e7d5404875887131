// The pieces regions are made of, each on its own: the sync document, the
// forwarded-report batch, residency, the report outbox against a scripted
// upstream that fails, lies about nothing, and sees every report once, and the
// chunk writer a fetched delta streams into.
#include <catch2/catch.hpp>

#include <mutex>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "daemon/deltas.h"
#include "daemon/follower.h"
#include "daemon/outbox.h"
#include "store/store.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

TEST_CASE("sync document: round trip, and malformed input is refused") {
  SyncDocument doc;
  doc.sync_version = 42;
  doc.versions = {{"fraud", "1.2.0", {}}, {"ocr", "2.0.0-rc.1", {"br", "sg"}}};
  doc.channels = {{"fraud", "stable", 17, R"({"payloadType":"x","payload":"e30=","signatures":[]})"}};
  Result<SyncDocument> back = ParseSyncDocument(SyncDocumentToJson(doc));
  REQUIRE(back.ok());
  CHECK(*back == doc);

  for (const char* bad : {"", "[]", "{}", R"({"sync_version":-1,"versions":[],"channels":[]})",
                          R"({"sync_version":1,"versions":[{"model":"../x","version":"1.0.0","regions":[]}],"channels":[]})",
                          R"({"sync_version":1,"versions":[{"model":"a","version":"one","regions":[]}],"channels":[]})",
                          R"({"sync_version":1,"versions":[{"model":"a","version":"1.0.0","regions":[7]}],"channels":[]})",
                          R"({"sync_version":1,"versions":[],"channels":[{"model":"a","channel":"s","state_version":1}]})"}) {
    INFO(bad);
    CHECK_FALSE(ParseSyncDocument(bad).ok());
  }
}

TEST_CASE("residency: an empty list admits every region") {
  CHECK(ResidencyAllows({}, "sg"));
  CHECK(ResidencyAllows({"br", "sg"}, "sg"));
  CHECK_FALSE(ResidencyAllows({"br"}, "sg"));
  CHECK_FALSE(ResidencyAllows({"br"}, ""));
}

TEST_CASE("forwarded reports: ids, shape and batch size are checked") {
  Result<std::vector<ForwardedReport>> ok =
      ParseForwardedReports(R"({"reports":[{"id":"sg.ab.1","terminal":"t1","report":{"model":"m"}}]})", 10);
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 1);
  CHECK((*ok)[0].id == "sg.ab.1");
  CHECK((*ok)[0].report["model"] == "m");
  for (const char* bad : {R"({"reports":{}})", R"({"reports":[1]})",
                          R"({"reports":[{"id":"","terminal":"t","report":{}}]})",
                          R"({"reports":[{"id":"a/b","terminal":"t","report":{}}]})",
                          R"({"reports":[{"id":"a","terminal":"t","report":[]}]})",
                          R"({"reports":[{"id":"a","terminal":7,"report":{}}]})"}) {
    INFO(bad);
    CHECK_FALSE(ParseForwardedReports(bad, 10).ok());
  }
  // A newer region's additions are read past, at both levels.
  Result<std::vector<ForwardedReport>> newer =
      ParseForwardedReports(R"({"reports":[{"id":"a","terminal":"t","report":{},"x":1}],"more":1})", 10);
  REQUIRE(newer.ok());
  CHECK(newer->size() == 1);
  Json many = {{"reports", Json::array()}};
  for (int i = 0; i < 11; ++i) many["reports"].push_back({{"id", std::to_string(i)}, {"terminal", "t"}, {"report", Json::object()}});
  CHECK_FALSE(ParseForwardedReports(many.dump(), 10).ok());
  // Each report is bounded: the batch's limit alone would let one take it all.
  Json big = {{"reports", {{{"id", "a"}, {"terminal", "t"}, {"report", {{"reason", std::string(kForwardedReportBytesMax, 'r')}}}}}}};
  Result<std::vector<ForwardedReport>> refused = ParseForwardedReports(big.dump(), 10);
  CHECK(refused.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::Contains("report a is over"));
}

TEST_CASE("report outbox: durable across a restart, retried while upstream fails, each id delivered") {
  TempDir dir;
  std::mutex mu;
  std::vector<std::string> delivered;  // ids, in the order the upstream accepted them
  int failures_left = 3;
  FakeHttpServer upstream([&](const FakeRequest& req) -> FakeReply {
    std::lock_guard lock(mu);
    if (req.path != "/v1/reports" || req.method != "POST") return {404, "{}"};
    if (failures_left > 0) {
      --failures_left;
      return {503, R"({"error":{"code":"unavailable","message":"not now"}})"};
    }
    Json batch = Json::parse(req.body);
    for (const auto& r : batch["reports"]) delivered.push_back(r["id"].get<std::string>());
    return {200, R"({"accepted":1,"duplicates":0,"rejected":0})"};
  });
  UpstreamOptions up{.urls = {upstream.url()}, .mirror_token = "m"};
  std::string first_id;
  {
    Result<std::unique_ptr<Store>> store = Store::Open(dir / "store");
    REQUIRE(store.ok());
    {
      std::lock_guard lock(mu);
      failures_left = 1'000'000;  // upstream away while the first reports arrive
    }
    Result<std::unique_ptr<ReportOutbox>> box = ReportOutbox::Open(**store, "sg", up, {.linger_ms = 10, .retry_ms_max = 50});
    REQUIRE(box.ok());
    for (int i = 0; i < 5; ++i) REQUIRE((*box)->Enqueue({"", "t" + std::to_string(i), {{"model", "m"}}}).ok());
    CHECK((*box)->stats().pending == 5);
    REQUIRE(WaitFor([&] { return !(*box)->stats().upstream_ok; }, std::chrono::seconds(10)));
    // A relayed report keeps its id and is taken once.
    Result<bool> relayed = (*box)->Enqueue({"ae.x.1", "t9", {{"model", "m"}}});
    REQUIRE(relayed.ok());
    CHECK(*relayed);
    relayed = (*box)->Enqueue({"ae.x.1", "t9", {{"model", "m"}}});
    REQUIRE(relayed.ok());
    CHECK_FALSE(*relayed);
    CHECK((*box)->stats().pending == 6);
    // A relayed batch: what was seen before, or earlier in the batch, is dropped.
    Result<size_t> batch = (*box)->EnqueueRelayed({{"ae.x.1", "t9", {{"model", "m"}}},
                                                    {"ae.x.2", "t9", {{"model", "m"}}},
                                                    {"ae.x.2", "t9", {{"model", "m"}}},
                                                    {"ae.x.3", "t8", {{"model", "m"}}}});
    REQUIRE(batch.ok());
    CHECK(*batch == 2);
    CHECK((*box)->stats().pending == 8);
  }  // the region stops with everything pending
  {
    std::lock_guard lock(mu);
    failures_left = 2;
  }
  Result<std::unique_ptr<Store>> store = Store::Open(dir / "store");
  REQUIRE(store.ok());
  Result<std::unique_ptr<ReportOutbox>> box = ReportOutbox::Open(**store, "sg", up, {.linger_ms = 10, .retry_ms_max = 50});
  REQUIRE(box.ok());
  CHECK((*box)->stats().pending == 8);
  REQUIRE(WaitFor([&] { return (*box)->stats().pending == 0; }, std::chrono::seconds(10)));
  CHECK((*box)->stats().forwarded == 8);
  CHECK((*box)->stats().upstream_ok);
  std::lock_guard lock(mu);
  REQUIRE(delivered.size() == 8);
  CHECK(std::set<std::string>(delivered.begin(), delivered.end()).size() == 8);
  CHECK(delivered[0].starts_with("sg."));
  CHECK(delivered[5] == "ae.x.1");
  CHECK(delivered[6] == "ae.x.2");
  CHECK(delivered[7] == "ae.x.3");
  // Ids carry the store's nonce: unchanged across the restart, in order.
  std::string prefix = delivered[0].substr(0, delivered[0].rfind('.') + 1);
  for (int i = 0; i < 5; ++i) CHECK(delivered[static_cast<size_t>(i)] == prefix + std::to_string(i + 1));
  std::printf("outbox: 8 reports, 2 failed sends then delivered once each after a restart\n");
}

TEST_CASE("report outbox: a batch refused as too large (413) is sent in halves; one report too large is dropped") {
  TempDir dir;
  std::mutex mu;
  std::vector<size_t> batches;  // the size of each batch the upstream saw
  std::vector<std::string> delivered;
  // An upstream (a proxy before it) that takes bodies of at most 3 reports,
  // and never a report holding "big".
  FakeHttpServer upstream([&](const FakeRequest& req) -> FakeReply {
    std::lock_guard lock(mu);
    Json batch = Json::parse(req.body);
    batches.push_back(batch["reports"].size());
    if (batch["reports"].size() > 3 || req.body.find("big") != std::string::npos) {
      return {413, R"({"error":{"code":"too_large","message":"body too large"}})"};
    }
    for (const auto& r : batch["reports"]) delivered.push_back(r["terminal"].get<std::string>());
    return {200, R"({"accepted":1,"duplicates":0,"rejected":0})"};
  });
  UpstreamOptions up{.urls = {upstream.url()}, .mirror_token = "m"};
  Result<std::unique_ptr<Store>> store = Store::Open(dir / "store");
  REQUIRE(store.ok());
  std::vector<ForwardedReport> reports;
  for (int i = 0; i < 7; ++i) reports.push_back({"ae.x." + std::to_string(i), "t" + std::to_string(i), {{"model", "m"}}});
  reports[2].report["reason"] = "big";
  // Queued before the outbox first sends: a linger of a minute, cut short by a full batch of 8.
  Result<std::unique_ptr<ReportOutbox>> box =
      ReportOutbox::Open(**store, "sg", up, {.batch_max = 8, .linger_ms = 60'000, .retry_ms_max = 50});
  REQUIRE(box.ok());
  REQUIRE((*box)->EnqueueRelayed(reports).ok());
  REQUIRE((*box)->Enqueue({"ae.x.7", "t7", {{"model", "m"}}}).ok());
  REQUIRE(WaitFor([&] { return (*box)->stats().pending == 0; }, std::chrono::seconds(10)));
  std::lock_guard lock(mu);
  // 8 → 4 → 2: {t0,t1} goes; {t2,t3} holds "big": halved to one, t2 dropped; then one a batch.
  CHECK(batches == std::vector<size_t>{8, 4, 2, 2, 1, 1, 1, 1, 1, 1});
  CHECK(delivered == std::vector<std::string>{"t0", "t1", "t3", "t4", "t5", "t6", "t7"});
  CHECK((*box)->stats().forwarded == 7);
}

TEST_CASE("report outbox: an upstream whose own outbox is full is waited for; nothing is dropped or halved") {
  TempDir dir;
  std::mutex mu;
  std::vector<size_t> batches;  // the size of each batch the upstream saw
  size_t delivered = 0;
  int full_left = 3;
  // An upstream with its own outbox full for a while: 503 outbox_full now,
  // 413 resource_exhausted from a daemon of before.
  FakeHttpServer upstream([&](const FakeRequest& req) -> FakeReply {
    std::lock_guard lock(mu);
    batches.push_back(Json::parse(req.body)["reports"].size());
    if (full_left > 0) {
      --full_left;
      if (full_left % 2 == 0) return {503, R"({"error":{"code":"outbox_full","message":"full"}})"};
      return {413, R"({"error":{"code":"resource_exhausted","message":"full"}})"};
    }
    delivered += batches.back();
    return {200, R"({"accepted":1,"duplicates":0,"rejected":0})"};
  });
  UpstreamOptions up{.urls = {upstream.url()}, .mirror_token = "m"};
  Result<std::unique_ptr<Store>> store = Store::Open(dir / "store");
  REQUIRE(store.ok());
  std::vector<ForwardedReport> reports;
  for (int i = 0; i < 4; ++i) reports.push_back({"ae.x." + std::to_string(i), "t" + std::to_string(i), {{"model", "m"}}});
  Result<std::unique_ptr<ReportOutbox>> box =
      ReportOutbox::Open(**store, "sg", up, {.batch_max = 4, .linger_ms = 60'000, .retry_ms_max = 20});
  REQUIRE(box.ok());
  REQUIRE((*box)->EnqueueRelayed(reports).ok());
  REQUIRE(WaitFor([&] { return (*box)->stats().pending == 0; }, std::chrono::seconds(10)));
  std::lock_guard lock(mu);
  CHECK(batches == std::vector<size_t>{4, 4, 4, 4});
  CHECK(delivered == 4);
  CHECK((*box)->stats().forwarded == 4);
}

TEST_CASE("report outbox: what waits is bounded in bytes as well as in reports") {
  TempDir dir;
  FakeHttpServer upstream([](const FakeRequest&) -> FakeReply { return {503, "{}"}; });  // away
  Result<std::unique_ptr<Store>> store = Store::Open(dir / "store");
  REQUIRE(store.ok());
  const OutboxOptions options{.linger_ms = 10, .retry_ms_max = 50, .pending_bytes_max = 4'000};
  Result<std::unique_ptr<ReportOutbox>> box =
      ReportOutbox::Open(**store, "sg", UpstreamOptions{.urls = {upstream.url()}, .mirror_token = "m"}, options);
  REQUIRE(box.ok());
  const Json report = {{"model", "m"}, {"reason", std::string(900, 'r')}};
  Status refused;
  int taken = 0;
  for (; taken < 100; ++taken) {
    Result<bool> r = (*box)->Enqueue({"", "t", report});
    if (!r.ok()) {
      refused = r.status();
      break;
    }
  }
  CHECK(taken == 5);  // four take under 4,000 bytes, so a fifth is let in, and no more
  CHECK(refused.code() == Status::Code::kResourceExhausted);
  CHECK_THAT(refused.message(), Catch::Contains("5 reports"));
  // Loaded whole after a restart (a page at a time), limits or not.
  box->reset();
  box = ReportOutbox::Open(**store, "sg", UpstreamOptions{.urls = {upstream.url()}, .mirror_token = "m"},
                           {.linger_ms = 10, .retry_ms_max = 50, .pending_bytes_max = 100});
  REQUIRE(box.ok());
  CHECK((*box)->stats().pending == 5);
  CHECK((*box)->Enqueue({"", "t", report}).status().code() == Status::Code::kResourceExhausted);
}

TEST_CASE("delta chunk writer: pieces of varied sizes cut the chunks a whole buffer does") {
  TempDir dir;
  Result<std::unique_ptr<Store>> store = Store::Open(dir / "store");
  REQUIRE(store.ok());
  const Bytes delta = RandomBytes(3'000'000, 5);
  Result<std::vector<ChunkRef>> whole = PutDeltaChunks(**store, delta);
  REQUIRE(whole.ok());
  REQUIRE(whole->size() > 4);
  std::mt19937_64 rng(6);
  for (size_t piece_max : {4096ul, 70'000ul, 300'000ul, 5'000'000ul}) {
    DeltaChunkWriter writer(**store);
    Status st;
    for (size_t pos = 0; st.ok() && pos < delta.size();) {
      const size_t n = std::min(delta.size() - pos, 1 + rng() % piece_max);
      st = writer.Append(ByteSpan(delta).subspan(pos, n));
      pos += n;
    }
    REQUIRE(st.ok());
    Result<std::vector<ChunkRef>> streamed = writer.Finish();
    REQUIRE(streamed.ok());
    CHECK(*streamed == *whole);
  }
  Bytes joined;
  for (const ChunkRef& c : *whole) {
    Result<Bytes> chunk = (*store)->GetChunk(c.digest);
    REQUIRE(chunk.ok());
    joined.insert(joined.end(), chunk->begin(), chunk->end());
  }
  CHECK(joined == delta);
}
