// Power cuts while a region syncs from its origin. The origin runs in
// process, served over HTTP on loopback (tests/in_process_region.h), with
// three versions of a model (four chunks each, some shared), the deltas
// between them, and a rollout's channel state. The region's store runs on a
// PowerCutFs (tests/power_cut_fs.h). A clean run counts the sync points of
// one whole region sync: a terminal's report accepted into the region's
// outbox, then the follower fetching everything and telling the origin what
// it holds. Then, for k = 0, 1, … until the sync is done before the cut,
// power is cut right after the k-th sync point (and again with the unsynced
// writes after it left behind); the region stops, power comes back, the
// region opens again on the real file system and must be consistent —
// Store::Check() clean, every version whole and byte for byte the origin's,
// a channel state only with its versions, nothing it acknowledged lost (its
// state number, the holdings it told upstream, the report it accepted) — and
// a follower started again must bring it to the whole state, with the report
// delivered exactly once.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <rocksdb/env.h>

#include "client/api.h"
#include "tests/harness.h"
#include "tests/in_process_region.h"
#include "tests/power_cut_fs.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Bounds each wait on the follower (real time, real HTTP); a sync takes well under a second.
constexpr auto kSyncWait = std::chrono::seconds(30);

const std::vector<std::string> kVersions = {"1.0.0", "1.1.0", "1.2.0"};

// The origin with what a region syncs, served over HTTP.
struct Origin {
  InProcessDaemon daemon{{}, /*makes_deltas=*/true};
  std::vector<std::pair<Digest, Digest>> deltas;  // pairs the origin made (from, to)
  std::unique_ptr<ServedOrigin> served;

  Origin() {
    // Chunks of 8 KiB (over the store's blob threshold) from these seeds: each
    // version shares some with the one before, so the deltas are worthwhile.
    const std::vector<std::vector<uint64_t>> seeds = {{1, 2, 3, 4}, {1, 2, 3, 5}, {1, 6, 3, 5}};
    std::vector<Digest> artifacts;
    for (size_t i = 0; i < kVersions.size(); ++i) {
      std::vector<std::string> chunks;
      for (uint64_t seed : seeds[i]) chunks.emplace_back(AsString(RandomBytes(8 << 10, seed)));
      daemon.Publish("fraud", kVersions[i], chunks);
      artifacts.push_back((*daemon.store->GetManifest("fraud", kVersions[i]))->digest);
    }
    daemon.deltas->WaitIdle();
    for (size_t from = 0; from < artifacts.size(); ++from) {
      for (size_t to = from + 1; to < artifacts.size(); ++to) {
        if (daemon.deltas->Find(artifacts[from], artifacts[to]).ok()) deltas.emplace_back(artifacts[from], artifacts[to]);
      }
    }
    REQUIRE(!deltas.empty());
    // Never promoted (it would change the state from run to run): a state that stays.
    daemon.Operator("POST", RolloutsPath(), Json::parse(RolloutSpecJson("r1", "1.2.0", {{"min_reports", 1000}})));
    daemon.TerminalAuthorization("sg-1");  // enrolled: its reports count
    served = std::make_unique<ServedOrigin>(daemon);
  }

  // The origin's row of region sg (GET /v1/regions); null before it saw sg.
  Json RegionRow() {
    const Json regions = daemon.Operator("GET", "/v1/regions");
    for (const Json& row : regions.at("regions")) {
      if (row.at("region") == "sg") return row;
    }
    return nullptr;
  }
  uint64_t ReportsReceived() {
    Json row = RegionRow();
    return row.is_null() ? 0 : row.at("reports_received").get<uint64_t>();
  }
  // What sg told the origin it holds of fraud (GET /v1/residency), if it did
  // at `since_ms` or later.
  std::optional<ModelHolding> Told(int64_t since_ms) {
    const Json residency = daemon.Operator("GET", ResidencyPath());
    for (const Json& model : residency.at("models")) {
      if (model.at("model") != "fraud") continue;
      for (const Json& d : model.at("daemons")) {
        if (d.at("daemon") != "sg" || d.at("as_of_ms").get<int64_t>() < since_ms) continue;
        return ModelHolding{d.at("versions").get<uint64_t>(), d.at("versions_held").get<uint64_t>(),
                            d.at("bytes").get<uint64_t>()};
      }
    }
    return std::nullopt;
  }
};

// Every chunk of `m` is stored in `region` and reads back as the origin's bytes.
bool WholeAndSame(Store& region, Store& origin, const Manifest& m) {
  for (const ChunkRef& c : m.chunks) {
    Result<Bytes> here = region.GetChunk(c.digest);
    Result<Bytes> there = origin.GetChunk(c.digest);
    if (!here.ok() || !there.ok() || *here != *there) {
      UNSCOPED_INFO(m.version << ": chunk " << c.digest.ToString() << " "
                              << (here.ok() ? "differs" : here.status().ToString()));
      return false;
    }
  }
  return true;
}

// The report a terminal of sg sends after installing 1.2.0.
ForwardedReport Report() {
  return {"", "sg-1",
          Json{{"model", "fraud"}, {"version", "1.2.0"}, {"rollout", "r1"}, {"event", "installed"}, {"reason", ""},
               {"health", {{"pass", true}, {"latency_ms", 12.5}}}, {"profile", "pos"}, {"region", "sg"}}};
}

// What the region acknowledged before the power went (or the run ended).
struct Acknowledged {
  bool report = false;        // Enqueue returned OK
  uint64_t state_version = 0; // the newest state it held (adopted: durable on return)
  std::optional<ModelHolding> told;  // the holdings it told the origin in this run
};

struct SyncRun {
  uint64_t sync_points = 0;
  bool power_lost = false;
  bool synced = false;  // the whole sync finished before any cut
  // What the region held when it opened again after the cut.
  uint64_t versions_kept = 0;
  bool state_kept = false;
  bool report_accepted = false;
};

class RegionPowerCut {
 public:
  // One region (a fresh store) syncing with power cut as asked (none: it stays
  // on), then stopped, power back, reopened on the real file system, checked,
  // and synced to the end.
  SyncRun RunOnce(std::optional<std::pair<uint64_t, bool>> cut) {
    auto [fs, env] = PowerCutFs::MakeEnv();
    // A run's mark on the origin's clock, which stamps the holdings it is told.
    origin_.daemon.clock.Advance(1s);
    const int64_t mark_ms = origin_.daemon.clock.NowUnixMillis();
    const uint64_t reports_before = origin_.ReportsReceived();
    InProcessRegion sg(origin_.daemon, {origin_.served->url()},
                       {.env = env.get(), .sync_writes = true, .follow = false});
    sg.clock.Set(mark_ms);
    SyncRun run;
    Acknowledged ack;
    const uint64_t before = fs->sync_points();
    if (cut) fs->CutAfter(cut->first, cut->second);
    std::string lacking;  // what the region lacked when last looked at
    ack.report = sg.outbox->Enqueue(Report()).ok();
    sg.Follow();
    const bool ended = WaitFor([&] {
      ack.state_version = std::max(ack.state_version, HeldStateVersion(*sg.rollouts));
      lacking = Lacking(sg, mark_ms, reports_before, true);
      return fs->down() || lacking.empty();
    }, kSyncWait);
    if (!ended) FAIL("the region neither lost power nor synced: it lacks " << lacking);
    run.power_lost = fs->down();
    run.synced = !run.power_lost;
    run.sync_points = fs->sync_points() - before;
    ack.told = origin_.Told(mark_ms);  // in this run
    ack.state_version = std::max(ack.state_version, HeldStateVersion(*sg.rollouts));
    // Stop: the origin's server away first answers the follower's held long
    // poll at once, so the follower stops at once too.
    origin_.served->Stop();
    sg.Close();
    fs->PowerComesBack();
    origin_.served->Start();

    sg.Open(rocksdb::Env::Default(), /*follow=*/false);
    Check(sg, ack, reports_before, &run);
    run.report_accepted = ack.report;
    // Synced to the end from there.
    origin_.daemon.clock.Advance(1s);
    const int64_t again_ms = origin_.daemon.clock.NowUnixMillis();
    sg.clock.Set(again_ms);
    sg.Follow();
    const bool synced = WaitFor([&] {
      lacking = Lacking(sg, again_ms, reports_before, ack.report);
      return lacking.empty();
    }, kSyncWait);
    if (!synced) FAIL("the region did not sync again: it lacks " << lacking);
    // Once if accepted, whether or not the outbox's own record of its delivery
    // survived; at most once if not (its write may have been durable all the same).
    const uint64_t received = origin_.ReportsReceived() - reports_before;
    if (ack.report) CHECK(received == 1);
    CHECK(received <= 1);
    CHECK(sg.store->Check().clean());
    origin_.served->Stop();
    sg.Close();
    origin_.served->Start();
    return run;
  }

 private:
  // What the region lacks of the origin's (every version whole, every delta,
  // the channel's state), or of its own sync: an empty outbox (with `report`,
  // the origin received one more of sg's reports than `reports_before`), and
  // holdings told the origin since `mark_ms`. Empty when it lacks nothing.
  std::string Lacking(InProcessRegion& sg, int64_t mark_ms, uint64_t reports_before, bool report) {
    for (const std::string& v : kVersions) {
      Result<std::shared_ptr<const Manifest>> m = sg.store->GetManifest("fraud", v);
      if (!m.ok()) return "version " + v;
      std::vector<Digest> digests;
      for (const ChunkRef& c : (*m)->chunks) digests.push_back(c.digest);
      Result<std::vector<Digest>> missing = sg.store->MissingChunks(digests);
      if (!missing.ok() || !missing->empty()) return "chunks of " + v;
    }
    for (const auto& [from, to] : origin_.deltas) {
      if (!sg.deltas->Find(from, to).ok()) return "delta " + from.ToString() + " -> " + to.ToString();
    }
    if (HeldStateVersion(*sg.rollouts) != HeldStateVersion(*origin_.daemon.rollouts)) return "the channel state";
    if (sg.outbox->stats().pending != 0) return "the outbox's delivery";
    if (report && origin_.ReportsReceived() != reports_before + 1) return "the report at the origin";
    std::optional<ModelHolding> told = origin_.Told(mark_ms);
    if (!told || told->versions_held != kVersions.size()) return "holdings told the origin";
    return "";
  }

  // The region reopened after the cut: consistent, and nothing acknowledged lost.
  void Check(InProcessRegion& sg, const Acknowledged& ack, uint64_t reports_before, SyncRun* run) {
    CheckReport report = sg.store->Check();
    for (const std::string& f : report.faults) UNSCOPED_INFO(f);
    CHECK(report.clean());
    Store& origin_store = *origin_.daemon.store;
    // Every version it lists is whole, byte for byte (none is kept manifest-only here).
    Result<std::vector<std::string>> versions = sg.store->ListVersions("fraud");
    if (versions.status().code() == Status::Code::kNotFound) versions = std::vector<std::string>{};
    INFO(versions.status().ToString());
    REQUIRE(versions.ok());
    uint64_t whole = 0;
    for (const std::string& v : *versions) {
      Result<std::shared_ptr<const Manifest>> m = sg.store->GetManifest("fraud", v);
      REQUIRE(m.ok());
      CHECK(WholeAndSame(*sg.store, origin_store, **m));
      Result<std::string> envelope = sg.store->GetEnvelope("fraud", v);
      REQUIRE(envelope.ok());
      CHECK(*envelope == *origin_store.GetEnvelope("fraud", v));
      ++whole;
    }
    // A delta kept has all its bytes.
    for (const auto& [from, to] : origin_.deltas) {
      Result<DeltaRecord> d = sg.deltas->Find(from, to);
      if (!d.ok()) continue;
      for (const ChunkRef& c : d->chunks) {
        Result<bool> has = sg.store->HasChunk(c.digest);
        CHECK((has.ok() && *has));
      }
    }
    // A channel state only with the versions it names, and never older than one it held.
    for (const Rollouts::ChannelSnapshot& c : sg.rollouts->Channels()) {
      for (const auto& [version, ref] : c.state.versions) {
        INFO("state " << c.state.state_version << " names " << version);
        CHECK(sg.store->GetManifest(c.state.model, version).ok());
      }
    }
    CHECK(HeldStateVersion(*sg.rollouts) >= ack.state_version);
    run->versions_kept = whole;
    run->state_kept = HeldStateVersion(*sg.rollouts) > 0;
    // What it told the origin it holds, it still holds.
    if (ack.told) {
      Result<std::map<std::string, ModelHolding>> holdings = Catalog::Holdings(*sg.store);
      REQUIRE(holdings.ok());
      const ModelHolding now = holdings->count("fraud") ? holdings->at("fraud") : ModelHolding{};
      CHECK(now.versions >= ack.told->versions);
      CHECK(now.versions_held >= ack.told->versions_held);
      CHECK(whole >= ack.told->versions_held);
    }
    // The report it accepted is still to be sent, or was received upstream.
    // (Pending first: the outbox drops it only once the origin has it.)
    if (ack.report) {
      const bool pending = sg.outbox->stats().pending == 1;
      CHECK((pending || origin_.ReportsReceived() == reports_before + 1));
    }
  }

  Origin origin_;
};

}  // namespace

TEST_CASE("power cuts while a region syncs: what it acknowledged stays, nothing is half there, it syncs again") {
  RegionPowerCut test;
  SyncRun clean = test.RunOnce(std::nullopt);
  REQUIRE(clean.synced);
  REQUIRE(clean.sync_points > 0);
  uint64_t most = clean.sync_points;
  uint64_t cut_points = 0;
  std::map<uint64_t, uint64_t> kept;  // versions kept after a cut -> cuts
  uint64_t states_kept = 0, reports_accepted = 0;
  for (uint64_t k = 0;; ++k) {
    bool reached = false;
    for (bool tail : {false, true}) {
      INFO("power cut after sync point " << k << (tail ? ", unsynced writes after it" : ""));
      SyncRun r = test.RunOnce(std::make_pair(k, tail));
      ++cut_points;
      reached = reached || r.power_lost;
      most = std::max(most, r.sync_points);
      ++kept[r.versions_kept];
      states_kept += r.state_kept;
      reports_accepted += r.report_accepted;
    }
    if (!reached && k >= most) break;
  }
  // The cuts fell all along the sync: before anything, with some versions, with the state.
  CHECK(kept[0] > 0);
  CHECK(kept.size() == kVersions.size() + 1);
  CHECK(states_kept > 0);
  CHECK(states_kept < cut_points);
  std::string versions;
  for (const auto& [n, cuts] : kept) versions += fmt::format(" {} after {},", n, cuts);
  std::printf("region power cut: %llu sync points in a whole region sync, %llu cut points; versions kept:%s "
              "the state after %llu, the report accepted before %llu\n",
              static_cast<unsigned long long>(clean.sync_points), static_cast<unsigned long long>(cut_points),
              versions.c_str(), static_cast<unsigned long long>(states_kept),
              static_cast<unsigned long long>(reports_accepted));
}
