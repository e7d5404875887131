// Power cuts under the daemon's durable operations, all of which go through
// the store (RocksDB): publish (chunks, then the commit), version deletion,
// garbage collection, state batches, and the rollout service's channel state
// changes and report ledger. The store runs on a PowerCutFs
// (tests/power_cut_fs.h): a clean run counts the sync points an operation
// passes; then, for k = 0, 1, … until the operation is done before the cut,
// power is cut right after the k-th sync point, and again with the unsynced
// writes after it left behind (power goes at the next sync point instead);
// the store is closed with its writes failing, the disk keeps only what was
// durable, and the store is opened afresh on the real file system. Nothing
// acknowledged may be lost, nothing half-written may be visible, and
// Store::Check() is clean. Then each mutating file system call of the
// operation is failed once, with ENOSPC and with EIO (a full disk, a failing
// one), the store closed and power cut as well (a failed sync may have left
// anything unsynced behind): the same must hold.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/digest.h"
#include "daemon/rollouts.h"
#include "rollout/rollout.h"
#include "store/store.h"
#include "tests/harness.h"
#include "tests/power_cut_fs.h"
#include "tests/verified_manifest.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

// What a run's steps saw when acknowledged, for its check (per run).
using Notes = std::vector<uint64_t>;
// One call of the operation; acknowledged when it returns OK.
using Step = std::function<Status()>;

// A durable operation: `setup` makes the state before it (on a store that is
// closed afterwards, so it lies in table and blob files, not only the WAL);
// `start`, on that store opened again, returns the steps, which run in order
// until one fails (they may own what they need, such as a Rollouts; they are
// dropped before the store closes); `check`, on the store reopened after the
// cut, asserts what may be seen when the first `acknowledged` steps returned
// OK and the next one did not.
struct DurableOp {
  std::string name;
  std::function<void(Store&, FakeClock&)> setup = nullptr;
  std::function<std::vector<Step>(Store&, FakeClock&, Notes&)> start = nullptr;
  std::function<void(Store&, FakeClock&, const Notes&, size_t acknowledged)> check = nullptr;
};

constexpr int64_t kGraceMs = 1'000;

StoreOptions Options(const Clock& clock, rocksdb::Env* env) {
  StoreOptions o;
  o.sync_writes = true;  // what is under test
  o.memtable_bytes = 1 << 20;  // far more than a run writes: flushes come from closing and collecting only
  o.clock = &clock;
  o.unreferenced_grace_ms = kGraceMs;
  o.env = env;
  return o;
}

std::unique_ptr<Store> OpenOrDie(const std::string& dir, const Clock& clock, rocksdb::Env* env) {
  Result<std::unique_ptr<Store>> s = Store::Open(dir, Options(clock, env));
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(s).value();
}

struct Run {
  uint64_t sync_points = 0;  // passed while the steps ran
  uint64_t mutations = 0;    // mutating calls made while the steps ran
  size_t acknowledged = 0;
  size_t steps = 0;
  bool power_lost = false;   // power went off before the steps were done
  bool cut_in_step = false;  // at a sync the steps' own thread made (CutAfter's unsynced_tail)
};

// What goes wrong while the steps run: power is cut after a sync point, or
// one mutating call fails. Either way power goes when the store has closed.
struct Fault {
  enum Kind { kPowerCut, kNoSpace, kIoError } kind = kPowerCut;
  uint64_t after_sync_points = 0;  // kPowerCut
  bool unsynced_tail = false;      // kPowerCut
  uint64_t nth_mutation = 0;       // kNoSpace, kIoError
};

// The state before `op`: its setup run once, on the real file system, and
// copied for each run (a store and the time its setup left the clock at).
struct Prepared {
  TempDir dir;
  int64_t clock_ms = 0;
  std::string store() const { return dir / "store"; }
};

void Prepare(const DurableOp& op, Prepared& prepared) {
  FakeClock clock;
  op.setup(*OpenOrDie(prepared.store(), clock, nullptr), clock);
  prepared.clock_ms = clock.NowUnixMillis();
}

// One run of `op` from `prepared` with `fault` (none: power stays on until
// the store closed cleanly), then the check on the store reopened on the
// real file system.
Run RunOnce(const DurableOp& op, const Prepared& prepared, std::optional<Fault> fault) {
  TempDir dir;
  const std::string path = dir / "store";
  std::filesystem::copy(prepared.store(), path, std::filesystem::copy_options::recursive);
  FakeClock clock(prepared.clock_ms);
  auto [fs, env] = PowerCutFs::MakeEnv();
  Notes notes;
  Run run;
  {
    std::unique_ptr<Store> store = OpenOrDie(path, clock, env.get());
    std::vector<Step> steps = op.start(*store, clock, notes);
    run.steps = steps.size();
    const uint64_t before = fs->sync_points();
    const uint64_t mutations_before = fs->mutations();
    if (fault && fault->kind == Fault::kPowerCut) fs->CutAfter(fault->after_sync_points, fault->unsynced_tail);
    if (fault && fault->kind != Fault::kPowerCut) fs->FailMutation(fault->nth_mutation, fault->kind == Fault::kNoSpace);
    for (Step& step : steps) {
      if (!step().ok()) break;
      ++run.acknowledged;
    }
    run.sync_points = fs->sync_points() - before;
    run.mutations = fs->mutations() - mutations_before;
    run.power_lost = fs->down();
    run.cut_in_step = fs->cut_thread() == std::this_thread::get_id();
    steps.clear();
  }  // closed: with power off, its final flush fails
  fs->PowerComesBack();
  // Reopened on what is on disk now, through a file system whose power stays
  // on (it records syncs rather than making them: the check is no faster with them).
  auto [after_fs, after_env] = PowerCutFs::MakeEnv();
  std::unique_ptr<Store> store = OpenOrDie(path, clock, after_env.get());
  op.check(*store, clock, notes, run.acknowledged);
  CheckReport report = store->Check();
  for (const std::string& f : report.faults) UNSCOPED_INFO(f);
  CHECK(report.clean());
  return run;
}

struct Coverage {
  uint64_t sync_points = 0;  // of a run without a cut
  uint64_t cut_points = 0;   // runs with a cut
  uint64_t cuts_in_steps = 0; // of those, cut at a sync the steps' thread made
  uint64_t mutations = 0;    // of a run without a fault
  uint64_t failed_calls = 0; // runs with one call failed
  uint64_t failed_steps = 0; // of those, runs where a step reported the failure
};

// Runs `op` without a fault, then cuts power after sync point k = 0, 1, …
// until the steps finish before the cut and k is past every count seen:
// RocksDB flushes column families in parallel, so the count of a collection
// differs a little from run to run. Then fails mutating call n = 1, 2, …
// with ENOSPC and with EIO, likewise until every call was failed once.
Coverage CutPowerEverywhere(const DurableOp& op) {
  Coverage c;
  Prepared prepared;
  Prepare(op, prepared);
  {
    INFO(op.name << ": no fault");
    Run clean = RunOnce(op, prepared, std::nullopt);
    REQUIRE(clean.acknowledged == clean.steps);
    c.sync_points = clean.sync_points;
    c.mutations = clean.mutations;
  }
  uint64_t most = c.sync_points;  // seen in one run
  for (uint64_t k = 0;; ++k) {
    bool reached = false;
    for (bool tail : {false, true}) {
      INFO(op.name << ": power cut after sync point " << k << (tail ? ", unsynced writes after it" : ""));
      Run r = RunOnce(op, prepared, Fault{.kind = Fault::kPowerCut, .after_sync_points = k, .unsynced_tail = tail});
      ++c.cut_points;
      reached = reached || r.power_lost;
      most = std::max(most, r.sync_points);
      // A step whose own sync power failed fails. (A sync of RocksDB's
      // background work may be the one that fails instead, and no step
      // waits for it: a compaction it scheduled itself, say.)
      if (r.cut_in_step) {
        ++c.cuts_in_steps;
        CHECK(r.acknowledged < r.steps);
      }
    }
    if (!reached && k >= most) break;
  }
  uint64_t most_mutations = c.mutations;
  for (uint64_t n = 1; n <= most_mutations; ++n) {
    for (Fault::Kind kind : {Fault::kNoSpace, Fault::kIoError}) {
      INFO(op.name << ": mutating call " << n << " fails with " << (kind == Fault::kNoSpace ? "ENOSPC" : "EIO"));
      Run r = RunOnce(op, prepared, Fault{.kind = kind, .nth_mutation = n});
      ++c.failed_calls;
      if (r.acknowledged < r.steps) ++c.failed_steps;
      most_mutations = std::max(most_mutations, r.mutations);
    }
  }
  CHECK(c.failed_steps > 0);  // the failures reached the operation
  std::printf(
      "power cut: %-46s %3llu sync points, %3llu cut points (%llu in a step); %4llu mutating calls, %4llu failed-call "
      "runs\n",
      op.name.c_str(), static_cast<unsigned long long>(c.sync_points), static_cast<unsigned long long>(c.cut_points),
      static_cast<unsigned long long>(c.cuts_in_steps), static_cast<unsigned long long>(c.mutations),
      static_cast<unsigned long long>(c.failed_calls));
  return c;
}

// ---- versions

// Model "fraud" at `version`: small chunks of incompressible bytes (each
// over the store's blob threshold, so they land in blob files), chunk i from
// seed seeds[i]: artifacts sharing a seed share that chunk.
Artifact MakeArtifact(const std::string& version, const std::vector<uint64_t>& seeds) {
  std::vector<Bytes> chunks;
  for (uint64_t seed : seeds) chunks.push_back(RandomBytes(8 << 10, seed));
  return ArtifactOf("fraud", version, std::move(chunks));
}

Status PutChunk(Store& store, const Bytes& chunk) { return store.PutChunk(Digest::Of(chunk), chunk); }

Status Commit(Store& store, const Artifact& a) { return store.CommitVersion(Verified(a.manifest)).status(); }

void Publish(Store& store, const Artifact& a) {
  PutAll(store, a);
  REQUIRE(Commit(store, a).ok());
}

// A chunk is absent or reads back whole (never damaged, never other bytes),
// and its index entry (what presence checks read) agrees; returns which.
bool ChunkStored(Store& store, const Bytes& chunk) {
  Result<Bytes> got = store.GetChunk(Digest::Of(chunk));
  const bool stored = got.status().code() != Status::Code::kNotFound;
  CHECK(store.HasChunk(Digest::Of(chunk)).value() == stored);
  if (!stored) return false;
  INFO(got.status().ToString());
  REQUIRE(got.ok());
  CHECK(*got == chunk);
  return true;
}

// A version is wholly there (manifest, artifact index, every chunk) or
// wholly absent; returns which.
bool VersionStored(Store& store, const Artifact& a) {
  Result<std::shared_ptr<const Manifest>> m = store.GetManifest("fraud", a.manifest.version);
  if (m.status().code() == Status::Code::kNotFound) {
    CHECK(store.FindArtifact(a.manifest.digest).status().code() == Status::Code::kNotFound);
    return false;
  }
  INFO(m.status().ToString());
  REQUIRE(m.ok());
  CHECK(**m == a.manifest);
  CHECK(store.FindArtifact(a.manifest.digest).ok());
  for (const Bytes& c : a.chunks) CHECK(ChunkStored(store, c));
  return true;
}

const Artifact kV1 = MakeArtifact("1.0.0", {1, 2});
const Artifact kV2 = MakeArtifact("2.0.0", {2, 3, 4});  // its first chunk is 1.0.0's second
const Bytes kOrphan = RandomBytes(8 << 10, 99);       // uploaded, never committed

// ---- state batches

using StateMap = std::map<std::string, std::string>;

StateMap ScanAll(Store& store, const std::string& prefix) {
  Result<StateRecords> kv = store.ScanState(prefix);
  REQUIRE(kv.ok());
  return StateMap(kv->begin(), kv->end());
}

// ---- rollouts

// The daemon's online key, the same at every open (it signs the channel states).
SecretKey OnlineKey() { return SecretKey::FromSeed(Bytes(kSeedBytes, 7)).value(); }

std::unique_ptr<Rollouts> OpenRollouts(Store& store, const Clock& clock) {
  Result<std::unique_ptr<Rollouts>> r = Rollouts::Open(store, OnlineKey(), clock);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

// The channel's state_version, 0 when no rollout set it yet.
uint64_t StateVersion(const Rollouts& rollouts) {
  for (const SignedChannel& c : rollouts.Channels()) {
    if (c.state.model == "fraud" && c.state.channel == "stable") return c.state.state_version;
  }
  return 0;
}

Status Counted(const Result<bool>& counted) {
  if (!counted.ok()) return counted.status();
  return *counted ? Status::Ok() : Status::FailedPrecondition("report not counted");
}

TerminalReport Success(const std::string& terminal) {
  TerminalReport r;
  r.terminal_id = terminal;
  r.version = kV2.manifest.version;
  r.outcome = ReportOutcome::kSuccess;
  return r;
}

}  // namespace

TEST_CASE("power cut fs: only synced bytes and synced directory changes survive") {
  TempDir dir;
  auto fs = std::make_shared<PowerCutFs>();
  const rocksdb::IOOptions io;
  const rocksdb::FileOptions fo;
  std::unique_ptr<rocksdb::FSDirectory> d;
  REQUIRE(fs->NewDirectory(dir.path(), io, &d, nullptr).ok());
  auto write = [&](const std::string& name, const std::string& synced, const std::string& unsynced) {
    std::unique_ptr<rocksdb::FSWritableFile> f;
    REQUIRE(fs->NewWritableFile(dir / name, fo, &f, nullptr).ok());
    REQUIRE(f->Append(synced, io, nullptr).ok());
    REQUIRE(f->Sync(io, nullptr).ok());
    REQUIRE(f->Append(unsynced, io, nullptr).ok());
    REQUIRE(f->Close(io, nullptr).ok());
  };
  auto contents = [&](const std::string& name) -> std::optional<std::string> {
    if (!std::filesystem::exists(dir / name)) return std::nullopt;
    return std::string(AsString(ReadFile(dir / name)));
  };
  write("kept", "durable", " and lost");
  write("old", "old", "");
  REQUIRE(d->Fsync(io, nullptr).ok());  // both names are durable
  CHECK(fs->sync_points() == 3);
  write("new", "new", "");  // its name never is
  write("tmp", "replacement", "");
  REQUIRE(fs->RenameFile(dir / "tmp", dir / "old", io, nullptr).ok());
  REQUIRE(fs->DeleteFile(dir / "kept", io, nullptr).ok());
  fs->CutAfter(0, /*unsynced_tail=*/true);  // writes go on until the next sync point, which fails
  std::unique_ptr<rocksdb::FSWritableFile> f;
  REQUIRE(fs->NewWritableFile(dir / "late", fo, &f, nullptr).ok());
  REQUIRE(f->Append("late", io, nullptr).ok());
  CHECK_FALSE(fs->down());
  CHECK(f->Sync(io, nullptr).IsIOError());
  CHECK(fs->down());
  CHECK(f->Append("later", io, nullptr).IsIOError());
  CHECK(f->Close(io, nullptr).ok());
  CHECK(fs->NewWritableFile(dir / "later", fo, &f, nullptr).IsIOError());
  CHECK(fs->sync_points() == 5);
  fs->PowerComesBack();
  CHECK(contents("kept") == "durable");
  CHECK(contents("old") == "old");
  CHECK(contents("new") == std::nullopt);
  CHECK(contents("tmp") == std::nullopt);
  CHECK(contents("late") == std::nullopt);
  CHECK(contents("later") == std::nullopt);

  // One call failed: it does not reach the disk, the calls around it do.
  const uint64_t before = fs->mutations();
  fs->FailMutation(2, /*no_space=*/true);
  REQUIRE(fs->NewWritableFile(dir / "full", fo, &f, nullptr).ok());
  CHECK(f->Append("lost", io, nullptr).IsNoSpace());
  CHECK(f->Append("kept", io, nullptr).ok());
  fs->FailMutation(1, /*no_space=*/false);
  rocksdb::IOStatus failed_sync = f->Sync(io, nullptr);
  CHECK((failed_sync.IsIOError() && !failed_sync.IsNoSpace()));
  CHECK(f->Sync(io, nullptr).ok());
  CHECK(f->Close(io, nullptr).ok());
  CHECK(fs->mutations() - before == 5);
  CHECK_FALSE(fs->down());
  REQUIRE(d->Fsync(io, nullptr).ok());
  fs->PowerComesBack();
  CHECK(contents("full") == "kept");
}

// Chunk uploads are not synced one by one, nor written to the WAL: the commit
// flushes them before it syncs itself.
TEST_CASE("chunk uploads sync nothing: the commit makes them durable") {
  TempDir dir;
  FakeClock clock;
  auto [fs, env] = PowerCutFs::MakeEnv();
  std::unique_ptr<Store> store = OpenOrDie(dir / "store", clock, env.get());
  const uint64_t before = fs->sync_points();
  for (const Bytes& c : kV2.chunks) REQUIRE(PutChunk(*store, c).ok());
  CHECK(fs->sync_points() == before);
  REQUIRE(Commit(*store, kV2).ok());
  CHECK(fs->sync_points() > before);
}

// A cut after the commit synced the WAL (which holds the chunks' index
// entries) but before the chunks' flush is done loses chunks whose entries
// survive: the next open drops those entries (ChunkStored checks that
// presence checks agree with what is stored).
TEST_CASE("power cut: a publish commits a version wholly or not at all, and its chunks with it") {
  DurableOp op{
      .name = "publish: 3 chunks (1 stored before), commit",
      .setup = [](Store& store, FakeClock&) { Publish(store, kV1); },
      .start =
          [](Store& store, FakeClock&, Notes&) {
            std::vector<Step> steps;
            for (const Bytes& c : kV2.chunks) steps.push_back([&store, &c] { return PutChunk(store, c); });
            steps.push_back([&store] { return Commit(store, kV2); });
            return steps;
          },
      .check =
          [](Store& store, FakeClock&, const Notes&, size_t acknowledged) {
            CHECK(VersionStored(store, kV1));
            const bool committed = VersionStored(store, kV2);  // with every chunk, when there
            if (acknowledged == kV2.chunks.size() + 1) CHECK(committed);
            for (const Bytes& c : kV2.chunks) ChunkStored(store, c);
          },
  };
  Coverage c = CutPowerEverywhere(op);
  CHECK(c.cuts_in_steps > 0);
}

// A commit reads every chunk back, a batch (4 MiB) ahead on another thread:
// when a read fails, it returns with the next batch still being read.
TEST_CASE("failing reads: a commit that cannot read its chunks back fails with the error and commits nothing") {
  std::vector<uint64_t> seeds(700);  // 5.6 MiB of 8 KiB chunks: two batches
  std::iota(seeds.begin(), seeds.end(), 1000);
  const Artifact big = MakeArtifact("3.0.0", seeds);
  TempDir dir;
  FakeClock clock;
  auto [fs, env] = PowerCutFs::MakeEnv();
  {
    std::unique_ptr<Store> store = OpenOrDie(dir / "store", clock, env.get());
    PutAll(*store, big);
  }  // closed: the chunks are in blob files
  std::unique_ptr<Store> store = OpenOrDie(dir / "store", clock, env.get());
  fs->FailReads(".blob");
  Status failed = Commit(*store, big);
  CHECK(failed.code() == Status::Code::kIOError);
  CHECK(failed.message().find("reading chunk " + big.manifest.chunks[0].digest.ToString()) != std::string::npos);
  CHECK(fs->failed_reads() > 0);
  CHECK_FALSE(VersionStored(*store, big));
  CHECK(store->Stats().errors.at("io_error") > 0);
  fs->FailReads("");
  for (const Bytes& c : big.chunks) CHECK(ChunkStored(*store, c));  // a read error damages nothing
  REQUIRE(Commit(*store, big).ok());
  CHECK(VersionStored(*store, big));
}

// A publish asks which of its chunks are missing a batch at a time: renewing
// the ages of those present is written (the failed-call runs reach it) but
// not synced.
TEST_CASE("power cut: naming chunks present renews their ages without a sync") {
  DurableOp op{
      .name = "missing chunks: ages renewed",
      .setup =
          [](Store& store, FakeClock& clock) {
            Publish(store, kV1);
            clock.Advance(std::chrono::milliseconds(kGraceMs));  // old enough to be renewed
          },
      .start =
          [](Store& store, FakeClock&, Notes&) {
            return std::vector<Step>{[&store]() -> Status {
              std::vector<Digest> asked;
              for (const Bytes& c : kV1.chunks) asked.push_back(Digest::Of(c));
              Result<std::vector<Digest>> missing = store.MissingChunks(asked);
              if (!missing.ok()) return missing.status();
              CHECK(missing->empty());
              return Status::Ok();
            }};
          },
      .check = [](Store& store, FakeClock&, const Notes&, size_t) { CHECK(VersionStored(store, kV1)); },
  };
  CHECK(CutPowerEverywhere(op).sync_points == 0);
}

TEST_CASE("power cut: a version deletion is whole, and kept once acknowledged") {
  DurableOp op{
      .name = "delete version",
      .setup =
          [](Store& store, FakeClock&) {
            Publish(store, kV1);
            Publish(store, kV2);
          },
      .start = [](Store& store, FakeClock&,
                  Notes&) { return std::vector<Step>{[&store] { return store.DeleteVersion("fraud", "1.0.0"); }}; },
      .check =
          [](Store& store, FakeClock&, const Notes&, size_t acknowledged) {
            CHECK(VersionStored(store, kV2));
            bool kept = VersionStored(store, kV1);
            if (acknowledged == 1) CHECK_FALSE(kept);
            // Deleted or not, every chunk of it is still there until a collection.
            for (const Bytes& c : kV1.chunks) CHECK(ChunkStored(store, c));
          },
  };
  Coverage c = CutPowerEverywhere(op);
  CHECK(c.sync_points >= 1);
  CHECK(c.cuts_in_steps > 0);
}

TEST_CASE("power cut: a collection never takes a referenced chunk, and what it deleted stays deleted") {
  DurableOp op{
      .name = "collect garbage",
      .setup =
          [](Store& store, FakeClock& clock) {
            // Every chunk is uploaded before the first commit flushes them:
            // all in one blob file, which the collection leaves part garbage.
            PutAll(store, kV1);
            PutAll(store, kV2);
            REQUIRE(PutChunk(store, kOrphan).ok());
            REQUIRE(Commit(store, kV1).ok());
            REQUIRE(Commit(store, kV2).ok());
            REQUIRE(store.DeleteVersion("fraud", "1.0.0").ok());
            clock.Advance(std::chrono::milliseconds(2 * kGraceMs));  // nothing is young any more
          },
      .start =
          [](Store& store, FakeClock&, Notes&) {
            return std::vector<Step>{[&store]() -> Status {
              Result<CollectReport> r = store.CollectGarbage();
              if (!r.ok()) return r.status();
              // 1.0.0's own chunk and the orphan, of the blob file's five: it is rewritten.
              CHECK(r->chunks_deleted == 2);
              CHECK(r->blobs_rewritten);
              return Status::Ok();
            }};
          },
      .check =
          [](Store& store, FakeClock&, const Notes&, size_t acknowledged) {
            CHECK(VersionStored(store, kV2));
            CHECK_FALSE(VersionStored(store, kV1));
            // A deletion lost to the cut is the next collection's to make again.
            for (const Bytes* c : {&kV1.chunks[0], &kOrphan}) {
              bool stored = ChunkStored(store, *c);
              if (acknowledged == 1) CHECK_FALSE(stored);
            }
          },
  };
  CHECK(CutPowerEverywhere(op).sync_points >= 1);
}

TEST_CASE("power cut: a state batch is applied wholly or not at all, and kept once acknowledged") {
  const std::vector<StateOps> batches = {
      {{"test/a", "1"}, {"test/b", "1"}, {"test/c", "1"}},
      {{"test/a", "2"}, {"test/b", std::nullopt}, {"test/d", "2"}},
      // A value over the WAL's 32 KiB block: a record a cut may tear across blocks.
      {{"test/c", "3"}, {"test/d", std::nullopt}, {"test/e", std::string(64 << 10, 'e')}},
  };
  // The state after each batch.
  std::vector<StateMap> after;
  StateMap state;
  for (const StateOps& batch : batches) {
    for (const auto& [key, value] : batch) {
      if (value) {
        state[key] = *value;
      } else {
        state.erase(key);
      }
    }
    after.push_back(state);
  }
  DurableOp op{
      .name = "state batches",
      .setup = [&](Store& store, FakeClock&) { REQUIRE(store.WriteState(batches[0]).ok()); },
      .start =
          [&](Store& store, FakeClock&, Notes&) {
            return std::vector<Step>{[&store, &batches] { return store.WriteState(batches[1]); },
                                     [&store, &batches] { return store.WriteState(batches[2]); }};
          },
      .check =
          [&](Store& store, FakeClock&, const Notes&, size_t acknowledged) {
            StateMap now = ScanAll(store, "test/");
            const bool as_acknowledged = now == after[acknowledged];
            const bool next_landed = acknowledged + 1 < after.size() && now == after[acknowledged + 1];
            CHECK((as_acknowledged || next_landed));
          },
  };
  Coverage c = CutPowerEverywhere(op);
  CHECK(c.sync_points >= 2);
  CHECK(c.cuts_in_steps > 0);
}

TEST_CASE("power cut: a rollout's state, its channel and its counted reports survive as acknowledged") {
  // Start, three reports, pause, roll back: each start, pause and roll back
  // signs the channel anew. One stage of 100% that needs more reports than
  // three, so that no gate moves the rollout on its own.
  const std::vector<RolloutPhase> phase_after = {
      RolloutPhase::kRunning, RolloutPhase::kRunning, RolloutPhase::kRunning, RolloutPhase::kRunning,
      RolloutPhase::kRunning, RolloutPhase::kPaused, RolloutPhase::kRolledBack};
  const std::vector<size_t> reports_after = {0, 0, 1, 2, 3, 3, 3};
  DurableOp op{
      .name = "rollout: start, report, pause, roll back",
      .setup =
          [](Store& store, FakeClock&) {
            Publish(store, kV1);
            Publish(store, kV2);
          },
      .start =
          [](Store& store, FakeClock& clock, Notes& notes) {
            std::shared_ptr<Rollouts> rollouts = OpenRollouts(store, clock);
            // After each acknowledged step: the channel's state_version.
            auto noted = [rollouts, &notes](Status s) {
              if (s.ok()) notes.push_back(StateVersion(*rollouts));
              return s;
            };
            std::vector<Step> steps;
            steps.push_back([rollouts, noted] {
              RolloutSpec spec = RolloutSpecFromJson(RolloutSpecJson("r1", "2.0.0", {{"min_reports", 100}})).value();
              return noted(rollouts->Start(spec, "alice", "test").status());
            });
            for (const char* t : {"t1", "t2", "t3"}) {
              steps.push_back([rollouts, noted, t] {
                return noted(Counted(rollouts->Report("r1", "fraud", "stable", Success(t))));
              });
            }
            for (RolloutAction a : {RolloutAction::kPause, RolloutAction::kRollback}) {
              steps.push_back([rollouts, noted, a] { return noted(rollouts->Act("r1", a, "alice", "test").status()); });
            }
            return steps;
          },
      .check =
          [&](Store& store, FakeClock& clock, const Notes& notes, size_t acknowledged) {
            std::unique_ptr<Rollouts> rollouts = OpenRollouts(store, clock);  // every record parses
            Result<Rollout> r = rollouts->Get("r1");
            if (!r.ok()) {
              CHECK(r.status().code() == Status::Code::kNotFound);
              CHECK(acknowledged == 0);
              CHECK(StateVersion(*rollouts) == 0);
              return;
            }
            const RolloutPhase phase = r->state().phase;
            CHECK((phase == phase_after[acknowledged] ||
                   (acknowledged + 1 < phase_after.size() && phase == phase_after[acknowledged + 1])));
            // The report ledger: one record per counted terminal.
            const size_t reports = ScanAll(store, "report/r1/").size();
            CHECK((reports == reports_after[acknowledged] ||
                   (acknowledged + 1 < reports_after.size() && reports == reports_after[acknowledged + 1])));
            // The channel was signed with the rollout's state in the same
            // write, and a state_version a terminal may have seen is never
            // handed out again.
            for (const SignedChannel& c : rollouts->Channels()) {
              for (const ChannelRollout& cr : c.state.rollouts) {
                if (cr.spec.id == "r1") CHECK(cr.state == r->state());
              }
            }
            if (!notes.empty()) CHECK(StateVersion(*rollouts) >= notes.back());
          },
  };
  Coverage c = CutPowerEverywhere(op);
  CHECK(c.sync_points >= 6);
  CHECK(c.cuts_in_steps > 0);
}
