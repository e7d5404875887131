// Deltas between versions, as the daemon makes, caches and describes them.
//
// A delta is computed (delta/delta.h) from two stored artifacts, then stored
// like any artifact: cut into content-defined chunks in the chunk store, with
// a record in the state space ("delta/<from hex>/<to hex>"). Its descriptor —
// from, to, the delta's digest and size, and whether it is worth downloading —
// is signed by the daemon's online key, so a client knows what it is about to
// apply before it downloads it (docs/api.md, "Deltas").
//
// Work happens on one background thread: deltas from the previous few
// versions of a model are queued when a version is published; a request for a
// pair not made yet queues it too and the caller is told to retry (or to
// download the artifact). Memory while computing: the encoder's budget
// (DeltaOptions::memory_bytes_max, 1 GiB by default), which holds both
// artifacts at once when they fit and windows of them otherwise: artifacts
// of any size are diffed, read from the store in order (artifacts above
// DeltaServiceOptions::artifact_bytes_max are not, to bound the time).
//
// A region's service holds no key and computes nothing: it keeps the records
// its follower fetched (Adopt), each with the descriptor as the origin signed
// it, and hands pairs it lacks to a miss handler (the follower fetches them).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "delta/delta.h"
#include "delta/delta_info.h"
#include "manifest/manifest.h"
#include "signing/signing.h"
#include "store/store.h"

namespace meridian {

struct DeltaServiceOptions {
  int previous_versions = 3;                   // deltas made at publish time, from this many older versions
  uint64_t artifact_bytes_max = 1ull << 40;    // larger artifacts are not diffed (time: about 20 s per GiB)
  DeltaOptions encoder;                        // threads, literal codec
  size_t queue_max = 1000;                     // pending pairs; more are refused (retry later)
};

// A computed delta: its descriptor, and where its bytes are stored.
struct DeltaRecord {
  DeltaInfo info;
  std::vector<ChunkRef> chunks;  // the delta bytes, in order (empty when not worthwhile)
  std::string signed_info;       // the descriptor's envelope as fetched from upstream; empty when made here
};

class DeltaService {
 public:
  // With a key: computes and signs (origin). Without: a replica (region).
  DeltaService(Store& store, std::optional<SecretKey> online_key, DeltaServiceOptions options = {});
  ~DeltaService();  // finishes the delta in progress, drops the rest of the queue
  DeltaService(const DeltaService&) = delete;
  DeltaService& operator=(const DeltaService&) = delete;

  // The record of a computed pair; NotFound when not computed yet.
  Result<DeltaRecord> Find(const Digest& from, const Digest& to);
  // Find, and when not computed yet, queue it: FailedPrecondition ("pending")
  // then; NotFound when either artifact is unknown, when both are the same,
  // or when they are versions of different models (nothing is queued);
  // ResourceExhausted when the queue is full. A replica passes the pair to
  // the miss handler instead.
  Result<DeltaRecord> FindOrQueue(const Digest& from, const Digest& to);
  // Replica: called (without locks held) with each pair FindOrQueue misses.
  void SetMissHandler(std::function<void(const Digest& from, const Digest& to)> handler);
  // Replica: stores a record fetched from upstream (its chunks already stored).
  Status Adopt(const DeltaRecord& record);
  // Queues deltas from the previous versions of `published`'s model.
  void QueueForNewVersion(const Manifest& published);
  // Blocks until the queue is empty and nothing is being computed (tests, bench).
  void WaitIdle();
  // Pairs waiting or being computed now (/metrics).
  uint64_t jobs();

  // Deletes the records of pairs whose source or target artifact is no
  // longer stored (and those that no longer parse: made again on request),
  // and adds the chunks of the others to `referenced`, for a collection
  // (Store::CollectGarbage). Returns how many were deleted.
  Result<uint64_t> DropStale(std::vector<Digest>& referenced);

  // The descriptor as a DSSE envelope signed by the online key: the fetched
  // one for an adopted record, else signed here.
  std::string SignedInfo(const DeltaRecord& record) const;

  // Computes a record now, on the calling thread (what the worker runs).
  Result<DeltaRecord> Compute(const Digest& from, const Digest& to);

 private:
  void Run();

  Store& store_;
  const std::optional<SecretKey> online_key_;
  const DeltaServiceOptions options_;
  std::function<void(const Digest&, const Digest&)> miss_handler_;  // set before serving
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Digest, Digest>> queue_;   // guarded by mu_
  std::set<std::pair<Digest, Digest>> queued_;    // guarded by mu_: no pair twice
  bool busy_ = false;                             // guarded by mu_
  bool stopping_ = false;                         // guarded by mu_
  std::thread worker_;
};

// Stores delta bytes like an artifact, content-defined chunks in the chunk
// store, as they arrive in pieces: a region fetching a delta holds at most one
// chunk (256 KiB) of it plus the piece in hand. Each Append scans the pending
// chunk again, so pieces should be kilobytes (as HTTP delivers them), not bytes.
class DeltaChunkWriter {
 public:
  // With `hold_first_chunk`, the first chunk is stored by Finish, after its
  // caller may rewrite bytes in it (a header completed last).
  explicit DeltaChunkWriter(Store& store, bool hold_first_chunk = false)
      : store_(store), hold_first_chunk_(hold_first_chunk) {}
  Status Append(ByteSpan bytes);
  // Stores the last chunk (and the first, held, after `amend_first_chunk`
  // rewrote bytes in it: at most its first 64, which no cut depends on);
  // returns all of them in order.
  Result<std::vector<ChunkRef>> Finish(const std::function<void(std::span<uint8_t>)>& amend_first_chunk = nullptr);

 private:
  Status Put(ByteSpan chunk);
  Store& store_;
  const bool hold_first_chunk_;
  Bytes tail_;  // bytes of the chunk not cut yet
  Bytes first_chunk_;
  std::vector<ChunkRef> chunks_;
};

// A whole delta through a DeltaChunkWriter.
Result<std::vector<ChunkRef>> PutDeltaChunks(Store& store, ByteSpan delta);

// JSON of a record as kept in the store:
// {"info":{…},"chunks":[{"digest","size"}…],"signed_info":"<envelope>"?}.
std::string DeltaRecordToJson(const DeltaRecord& record);
Result<DeltaRecord> DeltaRecordFromJson(std::string_view json);

}  // namespace meridian
