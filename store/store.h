// The content-addressed store: chunks, signed manifests and an artifact index, and a
// small durable key-value space for the daemon's state, in one RocksDB.
//
// Column families:
//   chunks     digest(32 raw bytes) -> zstd frame of the chunk (blob files)
//   manifests  "<model>\0<version>"  -> signed manifest envelope JSON
//   artifacts  digest(32 raw bytes)  -> "<model>\0<version>" (artifact index)
//   state      free-form keys        -> values (rollouts, events, …)
//   chunk_index digest(32 raw bytes) -> uncompressed size, then when the chunk
//              was last written or named present (Unix ms; 8 bytes LE each;
//              a store from before ages has the size alone), written with
//              each chunk; presence checks read it, never the chunk
//
// Contracts:
//  - Chunks are keyed by the SHA-256 of their uncompressed bytes and stored as
//    one zstd frame each, with a content checksum; PutChunk verifies the
//    digest before storing, GetChunk re-hashes on every read and answers
//    Corruption on mismatch (the bytes are never returned); ServeChunk checks
//    what it reads by the frame's checksum (which finds damage, not a frame
//    of other bytes: Check and a file's first commit re-hash) and serves
//    verified bytes it keeps in memory (what a name holds never changes); a
//    commit hashes the whole file once and re-hashes chunk by chunk only when
//    that fails, unless a committed version holds the same file (digest and
//    chunks): then it checks each chunk's frame checksum only. A
//    stored frame's declared size is checked against kChunkBytesMax before
//    anything is allocated.
//  - CommitVersion writes the manifest envelope and its artifact index entry
//    in one WriteBatch, and only when every chunk it names is present with
//    the size it says and the chunks hash, in order, to the whole-file digest:
//    a version is wholly visible or absent, also after a crash, and is what
//    its manifest says. Commits are
//    serialised, so two racing commits of one version cannot both win.
//  - A version leaves only by DeleteVersion, a chunk only by CollectGarbage
//    (or dropped as damaged). A chunk no version refers to is kept while it
//    is young: written, uploaded again or named present by MissingChunks
//    within StoreOptions::unreferenced_grace_ms, so a publish in flight
//    (chunks uploaded, commit to come) never loses one. A commit under way
//    while a collection runs keeps its chunks too. A deleted version's name
//    is never taken by other bytes: committing it again needs the same
//    whole-file digest.
//  - Parsed manifests are cached (GetManifest, FindArtifact): a version never
//    changes once committed (a deleted one leaves the cache), so it is parsed
//    at most once while it stays in
//    the cache — least recently used out first, within
//    StoreOptions::manifest_cache_bytes. Filled by reads and by commits; a
//    version that is absent or fails to parse is never cached. Check() reads
//    the disk, never the cache.
//  - Every write that returns OK is synced to disk (WAL fsync) unless
//    StoreOptions::sync_writes is false (tests and benchmarks only), but for
//    PutChunk and the chunk ages MissingChunks renews. Those ages are in the
//    WAL (they survive the process being killed; a power cut may lose them).
//    A chunk's bytes skip the WAL, so that they are written to disk once:
//    they are in memory until RocksDB flushes a full memtable to a blob file,
//    and a crash of either kind may lose them (their index entries go too,
//    when the store next opens). Every synced write first flushes the chunks
//    written before it, then syncs every earlier WAL record. So a commit never
//    names a chunk that could be lost, and a publish costs one flush and one
//    sync, not a sync per chunk or per question.
//  - A full disk: a write fails with InsufficientStorage and keeps nothing of
//    itself; RocksDB then stops every write (reads go on) until the store
//    resumes, which flushes the memtables and so needs about
//    StoreOptions::memtable_bytes free (twice that at most). It resumes by
//    itself (RocksDB checks the free space every 5 s); Health() says
//    InsufficientStorage meanwhile. Closing flushes too, so a store
//    closed cleanly opens again with almost no free space; after a crash or a
//    close on a full disk, opening replays and flushes the WAL (at most twice
//    memtable_bytes). A read-only open needs no free space at all.
//  - Thread-safe: every method may be called from any thread.
//  - No exception escapes: failures of RocksDB, zstd or allocation come back
//    as a Status that carries the underlying message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "manifest/manifest.h"
#include "trust/trust.h"

namespace rocksdb {
class Env;
}

namespace meridian {

// Puts (value set) and deletes (value nullopt) of state keys, applied in order.
using StateOps = std::vector<std::pair<std::string, std::optional<std::string>>>;
// State keys with their values, in key order, as scans return them.
using StateRecords = std::vector<std::pair<std::string, std::string>>;

// Limits on what the store accepts and returns.
// Everything one ScanState call may return (keys plus values).
inline constexpr uint64_t kStateScanBytesMax = 256ull << 20;
// Fault lines kept by Check(); further faults are counted in one last line.
inline constexpr size_t kCheckFaultsMax = 1000;
// Damaged chunks Check() remembers, to name the versions they break and to
// drop them (kRepair); a repair past that many leaves the rest for a rerun.
inline constexpr size_t kCheckDamagedMax = 1'000'000;

struct StoreOptions {
  bool sync_writes = true;
  int zstd_level = 3;             // chunk compression level, ZSTD_minCLevel()..ZSTD_maxCLevel()
  bool create_if_missing = true;  // false: NotFound when the directory holds no store
  int max_open_files = -1;        // table and blob files RocksDB keeps open; -1: no limit
  // Parsed manifests kept in memory, charged mostly by their chunk lists
  // (about 40 bytes a chunk: 64 MiB holds some 1.6 million chunk entries).
  uint64_t manifest_cache_bytes = 64ull << 20;
  // Verified chunks kept in memory for ServeChunk: a fleet installing a new
  // version asks for the same chunks over and over, and each read from disk
  // costs a read, a decompression and a checksum.
  uint64_t chunk_cache_bytes = 256ull << 20;
  // Written to the store's memory by a column family before it is flushed to
  // table and blob files (RocksDB's write_buffer_size); the WAL is kept
  // within twice that. The free space a full store needs to resume, or to
  // open after a crash, is about as much. 0: a 32nd of the size of the file
  // system holding the store, between kMemtableBytesMin and kMemtableBytesMax.
  uint64_t memtable_bytes = 0;
  // Nothing in the directory is written (no WAL replayed into tables, no new
  // MANIFEST or LOG), so a store on a full disk opens; writes are
  // FailedPrecondition and Health() is OK. The directory's lock is taken all
  // the same: no other process writes meanwhile. create_if_missing is ignored.
  bool read_only = false;
  // Called (on the reading thread) for each chunk a read found damaged and
  // dropped, with the digest and what failed to verify: for the daemon's log
  // and a region's repair from upstream.
  std::function<void(const Digest&, const Status&)> on_damaged_chunk = nullptr;
  // Time for the ages of chunks (CollectGarbage); null: the system clock.
  const Clock* clock = nullptr;
  // A chunk no version refers to is not collected until it is this old: the
  // longest a publish may take from its first upload to its commit.
  int64_t unreferenced_grace_ms = 24ll * 3600 * 1000;
  // Tests only: the rocksdb::Env whose file system RocksDB's files go
  // through (one that can lose power: tests/power_cut_fs.h); it must outlive
  // the store. Null: the real one. The store makes its directory and writes
  // its LOG on the real file system either way.
  rocksdb::Env* env = nullptr;
};

// Bounds of the memtable size StoreOptions::memtable_bytes = 0 derives.
inline constexpr uint64_t kMemtableBytesMin = 1ull << 20;
inline constexpr uint64_t kMemtableBytesMax = 64ull << 20;

struct StoreStats {
  uint64_t chunks = 0;                // estimated number of stored chunks
  uint64_t versions = 0;              // committed model versions
  // Bytes of the store's files on disk, all column families: disk_bytes is
  // sst + blob + wal. What was written lately and not flushed yet is in
  // memtables in memory (not on disk) and, but for chunks, in the WAL.
  uint64_t disk_bytes = 0;
  uint64_t sst_bytes = 0;             // table files, of every live version (obsolete ones until deleted)
  uint64_t blob_bytes = 0;            // blob files (chunks of 4 KiB and more, once flushed)
  uint64_t blob_garbage_bytes = 0;    // of those, bytes of chunks deleted (returned by CollectGarbage's rewrite)
  uint64_t wal_bytes = 0;             // write-ahead log files
  uint64_t memtable_bytes = 0;        // memtables not flushed yet (memory)
  uint64_t fs_avail_bytes = 0;        // free to this process on the store directory's file system (statvfs)
  std::map<std::string, uint64_t> errors;  // store faults since opening by Status::CodeName: RocksDB failures
                                           // (not a key not found), stored chunks that no longer verify, exceptions
  uint64_t manifest_parses = 0;       // stored manifests parsed since opening: cache misses, and each Check() reads
  uint64_t manifest_cache_bytes = 0;  // charged to the parsed manifests cached now
  uint64_t chunk_cache_bytes = 0;     // charged to the verified chunks cached now
  uint64_t chunk_cache_hits = 0;      // ServeChunk answers from the cache since opening
};

// Check() reports faults; kRepair also drops the damaged chunks it finds
// (a writable store only), so that a publisher or a region's follower sends
// them again: MissingChunks names them from then on.
enum class CheckMode { kReport, kRepair };

struct CheckReport {
  uint64_t chunks_checked = 0;
  uint64_t manifests_checked = 0;
  uint64_t chunks_dropped = 0;  // CheckMode::kRepair
  std::vector<std::string> faults;  // one line per fault (at most kCheckFaultsMax + 1); empty = clean
  bool clean() const { return faults.empty(); }
};

// What CollectGarbage did.
struct CollectReport {
  uint64_t chunks_deleted = 0;
  uint64_t bytes_deleted = 0;        // their uncompressed bytes
  uint64_t chunks_referenced = 0;    // distinct chunks the versions and `more_referenced` name
  uint64_t chunks_young = 0;         // unreferenced, kept for StoreOptions::unreferenced_grace_ms
  bool blobs_rewritten = false;      // blob files were rewritten to return their garbage's space
};

// Garbage in blob files past which CollectGarbage rewrites them (a
// quarter: the store then takes at most 4/3 of its live bytes, and a rewrite
// copies at most three live bytes per byte it returns).
inline constexpr double kBlobGarbageRewriteShare = 0.25;

class Store {
 public:
  // Opens (or creates, with its parent directories) the store in directory
  // `dir`. NotFound when there is no store and !options.create_if_missing;
  // FailedPrecondition when another process (or another Store in this one)
  // holds the directory's lock; InvalidArgument for a bad zstd level;
  // InsufficientStorage when the disk lacks the space to replay the WAL.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, const StoreOptions& options = {});
  virtual ~Store() = default;

  // --- chunks ---
  // Whether a chunk is stored (its bytes are not verified: see GetChunk).
  virtual Result<bool> HasChunk(const Digest& digest) = 0;
  // The digests in `digests` that are not stored, in the order given
  // (a digest listed twice and missing appears twice).
  virtual Result<std::vector<Digest>> MissingChunks(std::span<const Digest> digests) = 0;
  // Stores `data` under `digest`. Corruption when SHA-256(data) != digest
  // (nothing is stored); InvalidArgument when `data` is empty;
  // ResourceExhausted when it is larger than kChunkBytesMax. OK without
  // writing when a copy that verifies is already present; a stored copy that
  // no longer verifies is replaced. Not durable (see the contracts above): the
  // commit that names it, or any synced write, makes it so.
  virtual Status PutChunk(const Digest& digest, ByteSpan data) = 0;
  // The uncompressed, verified bytes. NotFound, or Corruption when the stored
  // bytes no longer hash to `digest`: that copy is then dropped (see
  // StoreOptions::on_damaged_chunk), so the chunk reads as not stored and a
  // PutChunk restores it.
  virtual Result<Bytes> GetChunk(const Digest& digest) = 0;
  // What GetChunk gives, for serving: from the cache of verified chunks
  // (StoreOptions::chunk_cache_bytes) when there; else read, checked and
  // cached. A frame with a content checksum (every one written by this
  // store) is checked by it instead of a SHA-256, at several times the speed:
  // a damaged copy is Corruption and dropped as with GetChunk. A frame
  // without one (written by an older store) is re-hashed. A chunk dropped or
  // collected leaves the cache.
  virtual Result<std::shared_ptr<const Bytes>> ServeChunk(const Digest& digest) = 0;

  // --- versions ---
  // Commits a version: its verified manifest and, byte for byte, the
  // envelope it came in (what GetEnvelope serves).
  // FailedPrecondition (message lists the first missing digests) when a chunk
  // is missing; InvalidArgument when a stored chunk's size differs from the
  // manifest's or the chunks do not hash to its digest (the whole artifact is
  // read for that, a version committed again too, and hashed unless that
  // file is committed already); FailedPrecondition too
  // when a stored chunk no longer verifies (it is dropped: upload it again);
  // AlreadyExists when that model version exists with other content. True
  // when this call made the version visible; false (nothing written, the
  // first envelope kept) when it exists already as the same release
  // (SameRelease: only `created` or the signatures differ). The artifact index
  // keeps the first version committed with a given whole-file digest.
  //
  // kManifestOnly commits a version whose bytes this store may not hold (its
  // residency excludes the daemon): only the envelope is written, no chunk is
  // looked for and no artifact index entry is made, so nothing here names its
  // bytes; Check() knows such versions and does not look for their chunks.
  enum class Holding { kBytes, kManifestOnly };
  virtual Result<bool> CommitVersion(const VerifiedManifest& verified, Holding holding = Holding::kBytes) = 0;
  // The signed envelope JSON of a version, byte for byte as committed;
  // NotFound; InvalidArgument for an invalid model name or version.
  virtual Result<std::string> GetEnvelope(std::string_view model, std::string_view version) = 0;
  // The manifest parsed from the stored envelope, shared and immutable (from
  // the manifest cache: a second call usually returns the same pointer);
  // NotFound; InvalidArgument for an invalid model name or version;
  // Corruption when the stored envelope no longer parses or names another
  // version.
  virtual Result<std::shared_ptr<const Manifest>> GetManifest(std::string_view model, std::string_view version) = 0;
  // Model names in lexical order (empty when the store holds no version).
  virtual Result<std::vector<std::string>> ListModels() = 0;
  // Versions of `model` in SemVer precedence order (oldest first; versions of
  // equal precedence, differing only in build metadata, in lexical order);
  // NotFound when the model has no version.
  virtual Result<std::vector<std::string>> ListVersions(std::string_view model) = 0;
  // The manifest of a version whose whole-file digest is `digest` (the first
  // committed with it), shared and cached like GetManifest's; NotFound.
  virtual Result<std::shared_ptr<const Manifest>> FindArtifact(const Digest& digest) = 0;
  // FindArtifact's manifest as it was signed: a paged manifest's chunk list
  // is left in its index pages (`chunks` empty, the pages not read), for a
  // caller that reads them one at a time, such as a download served in
  // bounded memory whatever the model's size. A v1 manifest is FindArtifact's.
  virtual Result<std::shared_ptr<const Manifest>> FindArtifactAsSigned(const Digest& digest) = 0;
  // Removes a version: its envelope and, when it was the artifact index's
  // version for its digest, that entry (moved to another version holding the
  // same bytes, if one is stored). Its chunks stay until CollectGarbage.
  // Synced. NotFound; InvalidArgument for an invalid model name or version.
  // The name may be committed again with the same whole-file digest only
  // (AlreadyExists otherwise): what terminals installed under a version's
  // name stays what it names.
  virtual Status DeleteVersion(std::string_view model, std::string_view version) = 0;
  // Deletes the chunks that no version refers to, nor `more_referenced`
  // (delta bytes, which the store does not know of: called once, after the
  // collection began, to add the digests it names), and that are not young
  // (see the contracts above), then returns the space: table files are
  // compacted, and blob files rewritten when their garbage exceeds
  // kBlobGarbageRewriteShare. Memory: 32 bytes per chunk reference of every
  // version. One collection at a time (FailedPrecondition while another runs).
  virtual Result<CollectReport> CollectGarbage(
      const std::function<Status(std::vector<Digest>&)>& more_referenced = nullptr) = 0;

  // --- state (small values for the daemon's other modules) ---
  // Applies puts (value set) and deletes (value nullopt) atomically; synced.
  virtual Status WriteState(const StateOps& ops) = 0;
  // NotFound when the key holds no value.
  virtual Result<std::string> GetState(std::string_view key) = 0;
  // Every (key, value) whose key starts with `prefix`, in byte-wise key order;
  // ResourceExhausted when they add up to more than kStateScanBytesMax.
  virtual Result<StateRecords> ScanState(std::string_view prefix) = 0;
  // A page of ScanState: the first `limit` pairs under `prefix` whose key
  // sorts after `after_key` (from the first when empty), so a long list is
  // read a page at a time; also ResourceExhausted past kStateScanBytesMax.
  virtual Result<StateRecords> ScanStatePage(std::string_view prefix, std::string_view after_key, size_t limit) = 0;

  // --- operations ---
  // Cheap figures for /metrics; a figure RocksDB cannot give is left 0.
  virtual StoreStats Stats() = 0;
  // OK, or the error that stops the store's writes: a write or a background
  // flush or compaction that failed (descriptors exhausted, disk full:
  // InsufficientStorage), which RocksDB keeps until the store resumes. Tries
  // to resume the store first, so a fault whose cause went away clears here.
  // Costs a flush while faulty: call it on a timer, not per request.
  virtual Status Health() = 0;
  // Walks the whole store in one consistent snapshot, streaming (memory
  // grows with the number of versions, not of chunks): re-hashes every
  // chunk, parses every manifest, checks each names only present chunks and
  // has an artifact index entry, and that every index entry points to a
  // version with that digest. Each fault line names the digest or version;
  // a damaged chunk is named, and so is each version it breaks. A damaged
  // blob stops nothing: the walk goes on past it.
  virtual CheckReport Check(CheckMode mode = CheckMode::kReport) = 0;
};

// Calls `visit_page` with each page of the records under `prefix`, in key
// order, `page_records` at a time (never with an empty page), so that state
// of any size (a fleet's records) is read in bounded memory, where one
// ScanState would refuse it past kStateScanBytesMax (a page still may not
// exceed it: 8,192 records of up to 32 KiB each). `visit_page` may write
// state, the page's own keys included: the next page starts after the
// page's last key. Stops at the first error, the store's or `visit_page`'s.
inline constexpr size_t kStatePageRecords = 8192;
Status ForEachStatePage(Store& store, std::string_view prefix, size_t page_records,
                        const std::function<Status(const StateRecords& page)>& visit_page);
// ForEachStatePage, record by record.
Status ForEachState(Store& store, std::string_view prefix,
                    const std::function<Status(const std::string& key, const std::string& value)>& visit,
                    size_t page_records = kStatePageRecords);

}  // namespace meridian
