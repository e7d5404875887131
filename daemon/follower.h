// A region's follower: keeps the region's store in step with its upstream.
//
// It long-polls GET /v1/sync on the upstream (docs/api.md, "Regions") and, for
// each change, fetches what the region's terminals will need before they ask:
//   1. versions: the newest few of each model (and any a channel state names)
//      whose residency admits this region — the manifest envelope, verified
//      against the root's release keys, then the missing chunks (ranges of the
//      artifact, a request per run of adjacent ones; each chunk re-hashed by
//      the store), then an atomic commit;
//   2. deltas into those versions from the few before them, with the
//      descriptor as the origin signed it (a pending one is asked again);
//   3. channel states, verified against the root's online keys, adopted once
//      every version they name that this region may hold is stored here.
// Before all that, the roots the upstream has beyond this region's newest,
// one version at a time, each verified against the one before
// (RootChain::Add): the region then verifies and serves with the newest.
// Of a version whose signed manifest excludes this region only the manifest
// is kept (so the region answers 451 for its bytes), never a chunk; after
// each complete round the region tells its upstream what it holds of each
// model (POST /v1/holdings, for GET /v1/residency). Nothing the region serves is trusted by terminals without their own
// checks (regions hold no keys). While the upstream is away the region keeps
// what it has, and the follower retries with backoff, trying each upstream.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "daemon/catalog.h"
#include "daemon/deltas.h"
#include "daemon/enrolment.h"
#include "daemon/root_chain.h"
#include "daemon/rollouts.h"
#include "daemon/sync_document.h"
#include "daemon/upstream.h"
#include "manifest/manifest.h"
#include "signing/signing.h"
#include "store/store.h"

namespace meridian {

// The sync document (GET /v1/sync), what the follower reads: daemon/sync_document.h.

// The earliest expiry among `channels`' signed states; none when there are none.
std::optional<int64_t> EarliestStateExpiry(const std::vector<SignedChannel>& channels);



// ---------------------------------------------------------------------------

struct FollowerOptions {
  std::string region;
  int64_t poll_wait_s = 25;        // long-poll hold asked of the upstream (at most half its stall limit)
  size_t versions_per_model = 5;   // newest versions of each model kept in step (plus those channels name)
  int previous_versions = 3;       // deltas fetched into each of those from this many older versions
  int64_t retry_ms_max = 10'000;   // backoff cap while no upstream answers
  int64_t retry_pause_ms = 1'000;  // between rounds while something is left to retry (a delta upstream computes)
  int delta_attempts_max = 60;     // rounds a pending delta is asked for before giving up on it
};

struct FollowerStatus {
  bool upstream_ok = false;       // the last sync round reached an upstream
  std::string upstream;           // the URL used last
  uint64_t sync_version = 0;      // the upstream's, as of the last complete round
  int64_t last_sync_ms = 0;       // end of the last complete round (0: none yet)
  bool synced_once = false;       // a round completed, in this run or an earlier one of this data directory
  std::string last_error;         // what went wrong in the last round, verification included; "" when nothing
};

// The longest last_error a region reports upstream (GET /v1/sync).
inline constexpr size_t kRegionErrorBytesMax = 256;

class Follower {
 public:
  // `catalog` learns of every version the follower commits; `enrolment` of
  // the terminals the upstream revoked; `roots` of every root the upstream
  // rotated to.
  Follower(Store& store, Catalog& catalog, Enrolment& enrolment, RootChain& roots, Rollouts& rollouts, DeltaService& deltas,
           const Clock& clock, UpstreamOptions upstream, FollowerOptions options);
  ~Follower();  // stops within about a second
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  void Start();
  FollowerStatus status() const;
  // Asks for a delta on the next round (a terminal wanted one not fetched yet).
  void WantDelta(const Digest& from, const Digest& to);
  // Fetches a chunk again from upstream, at once, on a thread of its own
  // (this store found its copy damaged and dropped it: Store::GetChunk).
  void WantChunk(const Digest& digest);

 private:
  void Run();
  // Fetches the chunks WantChunk asked for, until stopped.
  void Repair();
  // One round on `doc`; sets *complete when nothing is left to retry.
  // Fetches and adopts what `doc` lists. Problems with one item (a version
  // or state that fails verification, a fetch that fails) do not stop the
  // round: the first is put in *problem and the round is left incomplete.
  Status Apply(UpstreamClient& up, const SyncDocument& doc, bool* complete, std::string* problem);
  Status FetchVersion(UpstreamClient& up, const SyncVersion& v);
  // Fetches the chunks of `m` that the store lacks: index pages one by one,
  // the artifact's chunks a run at a time (FetchRun): a request per run, not
  // per chunk (a round trip each, across continents).
  Status FetchMissingChunks(UpstreamClient& up, const Manifest& m);
  // GETs `run` of `m`'s artifact (Range) and stores each chunk as it arrives
  // (re-hashed: a lying upstream fails). A transfer that fails part way keeps
  // the chunks it stored, and the next upstream is asked for the rest.
  Status FetchRun(UpstreamClient& up, const Manifest& m, const ChunkRun& run);
  // GETs a chunk from upstream and stores it (re-hashed: a lying upstream fails).
  Status FetchChunk(UpstreamClient& up, const Digest& digest);
  // Follows the upstream's chain of roots up to `version`.
  Status FetchRoots(UpstreamClient& up, int64_t version);
  // OK when stored or not worth it; FailedPrecondition while upstream computes it.
  Status FetchDelta(UpstreamClient& up, const Digest& from, const Digest& to);
  std::string PollPath(uint64_t known, int64_t wait_s);
  // Tells the upstream what this region holds after a complete round of
  // `sync_version`, once per sync version (what the region holds changes only
  // with it): a count of every chunk, so not on every idle poll.
  void SendHoldings(UpstreamClient& up, uint64_t sync_version);

  Store& store_;
  Catalog& catalog_;
  Enrolment& enrolment_;
  RootChain& roots_;
  Rollouts& rollouts_;
  DeltaService& deltas_;
  const Clock& clock_;
  UpstreamOptions upstream_;
  const FollowerOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  FollowerStatus status_;                                 // guarded by mu_
  std::set<std::pair<Digest, Digest>> wanted_;            // guarded by mu_
  std::set<Digest> wanted_chunks_;                        // guarded by mu_
  std::map<std::pair<Digest, Digest>, int> attempts_;     // pending deltas: rounds asked (follower thread only)
  std::optional<uint64_t> holdings_sent_at_;              // the sync version last told upstream (follower thread only)
  bool held_checked_ = false;                             // held versions checked for missing chunks (follower thread only)
  bool synced_once_ = false;                              // kSyncedOnceKey is stored (follower thread only)
  bool stopping_ = false;                                 // guarded by mu_
  std::atomic<bool> cancel_{false};
  std::thread thread_;
  std::thread repair_thread_;
};

}  // namespace meridian
