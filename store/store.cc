// The RocksDB implementation of store/store.h: column family layout and
// options, zstd chunk frames, the commit protocol and the consistency check.
#include "store/store.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <zstd.h>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <deque>
#include <exception>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <unordered_set>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "manifest/chunk_pages.h"
#include "store/manifest_cache.h"

namespace meridian {

namespace {

// Chunks at least this large once compressed go to blob files, so compactions
// move 32-byte keys and small blob references instead of the chunk bytes.
constexpr uint64_t kChunkBlobBytesMin = 4u << 10;
// Bloom filter on chunk keys: MissingChunks on a fresh upload asks mostly for
// absent digests, which the filter answers without reading a data block.
constexpr double kChunkBloomBitsPerKey = 10;
// Keys per MultiGet when testing chunk presence (in the small chunk index,
// never the chunk bytes).
constexpr size_t kPresenceBatchKeys = 256;
// Missing digests named in a CommitVersion error or a Check fault line.
constexpr size_t kMissingListedMax = 5;
// The memtable size derived from the file system's: a 32nd of it, so that a
// full disk resumes once a few percent of it is freed.
constexpr uint64_t kMemtableFsShare = 32;
// Stripes of the lock on rewriting and dropping a chunk (RocksStore::ChunkMutex).
constexpr size_t kChunkMutexes = 64;
// Unreferenced chunks CollectGarbage deletes per pass of its sweep.
constexpr size_t kSweepBatchChunks = 256;
// A commit reads chunks in batches of this many bytes, a batch per core ahead
// of hashing them (see ReadChunksOf): the thread it starts per batch costs
// little beside them.
constexpr uint64_t kCommitReadAheadBytes = 4u << 20;
// Bounds what one commit holds in memory to this many batches.
constexpr size_t kCommitReadersMax = 8;
// Closing waits at most this long for the flush it asks for.
constexpr std::chrono::seconds kCloseFlushWait{10};
// RocksDB's info log (LOG): lines longer are cut; past this size LOG becomes LOG.old.
constexpr size_t kInfoLogLineBytesMax = 4096;
constexpr uint64_t kInfoLogBytesMax = 16ull << 20;

// Column families, in the order they are opened (index into handles_).
// chunk_index holds digest -> uncompressed size for every stored chunk,
// written just before the chunk (see PutChunk): presence checks read it
// instead of the chunk, because RocksDB 7.8 reads a key's blob to answer any
// Get.
enum Cf : size_t { kDefault = 0, kChunks, kManifests, kArtifacts, kState, kChunkIndex, kCfCount };
constexpr const char* kCfNames[kCfCount] = {"default", "chunks", "manifests", "artifacts", "state", "chunk_index"};

// A chunk index entry: the chunk's uncompressed size, and when it was last
// written, uploaded again or named present (Unix ms): its age, for
// CollectGarbage. Stored as two 64-bit little-endian numbers; an entry of 8
// bytes (a store from before ages were kept) is the size alone, as old as
// can be.
struct IndexEntry {
  uint64_t size = 0;
  int64_t touched_ms = 0;
};

void AppendLe64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t ReadLe64(std::string_view bytes) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  return v;
}

std::string EncodeIndexEntry(uint64_t size, int64_t touched_ms) {
  std::string out;
  out.reserve(16);
  AppendLe64(out, size);
  AppendLe64(out, static_cast<uint64_t>(touched_ms));
  return out;
}

// The entry EncodeIndexEntry wrote; nullopt for a value of another length.
std::optional<IndexEntry> DecodeIndexEntry(std::string_view bytes) {
  if (bytes.size() != 8 && bytes.size() != 16) return std::nullopt;
  IndexEntry e;
  e.size = ReadLe64(bytes.substr(0, 8));
  if (bytes.size() == 16) e.touched_ms = static_cast<int64_t>(ReadLe64(bytes.substr(8)));
  return e;
}

std::string ChunkKey(const Digest& digest) {
  return std::string(AsString(ByteSpan(digest.bytes())));
}

// Valid model names and versions never contain '\0', so the key is unambiguous.
std::string VersionKey(std::string_view model, std::string_view version) {
  std::string key(model);
  key.push_back('\0');
  key.append(version);
  return key;
}

// The state key marking a version committed Holding::kManifestOnly.
std::string ManifestOnlyKey(std::string_view version_key) { return "manifest-only/" + std::string(version_key); }
// The state key that keeps a deleted version's whole-file digest (hex): its
// name is never committed again for other bytes.
std::string DeletedVersionKey(std::string_view version_key) { return "deleted-version/" + std::string(version_key); }
// The state key marking a chunk written but perhaps not yet on disk (see
// PutChunk): its chunk index entry is dropped when a crash lost the chunk.
constexpr std::string_view kUnflushedChunkPrefix = "unflushed-chunk/";
std::string UnflushedChunkKey(std::string_view chunk_key) {
  return std::string(kUnflushedChunkPrefix) + std::string(chunk_key);
}

// "model@version" for messages, from a manifests key.
std::string DescribeVersionKey(std::string_view key) {
  size_t nul = key.find('\0');
  if (nul == std::string_view::npos) return "manifests key \"" + std::string(key) + "\"";
  return std::string(key.substr(0, nul)) + "@" + std::string(key.substr(nul + 1));
}

std::string_view ToView(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

// Maps a RocksDB status to ours, keeping RocksDB's own message after `what`.
Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  std::string message = what + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(std::move(message));
  if (s.IsCorruption()) return Status::Corruption(std::move(message));
  if (s.IsInvalidArgument()) return Status::InvalidArgument(std::move(message));
  // The disk is full (ENOSPC, or an SstFileManager's space limit): a write
  // refused for it, or a background flush whose failure stopped the writes.
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kSpaceLimit) {
    return Status::InsufficientStorage(std::move(message));
  }
  if (s.IsMemoryLimit()) return Status::ResourceExhausted(std::move(message));
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain() || s.IsShutdownInProgress()) {
    return Status::Unavailable(std::move(message));
  }
  if (s.IsNotSupported()) return Status::FailedPrecondition(std::move(message));
  return Status::IOError(std::move(message));
}

// Store faults since opening, by code, for StoreStats::errors: what RocksDB
// failed to do (other than not finding a key), stored chunks that no longer
// verify, and exceptions. Answers to the caller's input (an upload that does
// not hash to its digest, a missing version) are not faults and not counted.
class FaultCounts {
 public:
  Status Count(Status st) {
    if (!st.ok()) counts_[static_cast<size_t>(st.code())].fetch_add(1, std::memory_order_relaxed);
    return st;
  }
  std::map<std::string, uint64_t> ByCodeName() const {
    std::map<std::string, uint64_t> out;
    for (size_t code = 0; code < counts_.size(); ++code) {
      if (uint64_t n = counts_[code].load(std::memory_order_relaxed); n > 0) {
        out[std::string(Status::CodeName(static_cast<Status::Code>(code)))] = n;
      }
    }
    return out;
  }

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Status::Code::kInsufficientStorage) + 1> counts_{};  // the last code
};

// Runs `body`, turning an exception (allocation failure, a library throwing)
// into a Status so that none escapes the module; counted in `faults` when given.
template <typename F>
auto Guard(FaultCounts* faults, std::string_view what, F&& body) noexcept -> decltype(body()) {
  try {
    return body();
  } catch (...) {
    Status st = StatusOfCurrentException(what);
    return faults != nullptr ? faults->Count(std::move(st)) : st;
  }
}
template <typename F>
auto Guard(std::string_view what, F&& body) noexcept -> decltype(body()) {
  return CatchExceptions(what, std::forward<F>(body));
}

// zstd contexts are reused per thread: creating one per chunk costs more than
// compressing a small chunk.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> ctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  return ctx.get();
}
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  return ctx.get();
}

Result<std::string> CompressChunk(ByteSpan data, int level) {
  ZSTD_CCtx* cctx = ThreadCCtx();
  if (cctx == nullptr) return Status::ResourceExhausted("zstd: cannot create a compression context");
  std::string frame(ZSTD_compressBound(data.size()), '\0');
  // The frame declares its content size, which a read checks against
  // kChunkBytesMax before allocating, and carries a content checksum, which
  // every decompression checks: what lets ServeChunk skip the SHA-256.
  size_t n = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(n)) n = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  if (!ZSTD_isError(n)) n = ZSTD_compress2(cctx, frame.data(), frame.size(), data.data(), data.size());
  if (ZSTD_isError(n)) return Status::IOError(std::string("zstd compression: ") + ZSTD_getErrorName(n));
  frame.resize(n);
  return frame;
}

// How durable a write is when it returns: synced to disk; in the WAL, which
// survives the process being killed and is synced by the next synced write;
// or in memory only, until FlushChunks writes it to table and blob files
// (chunks only: see PutChunk).
enum class Durability { kSynced, kUnsynced, kUnlogged };

// Whether reading a chunk re-hashes its bytes against its digest. Decoding
// checks a frame's content checksum whenever it carries one (every frame
// written since CompressChunk sets it; 32 bits of XXH64, RFC 8878): that
// finds damage as a disk does it, at memory speed. Only SHA-256 tells that
// the bytes are the digest's, which PutChunk checked before writing them.
enum class Rehash {
  kYes,                // always
  kUnlessChecksummed,  // a frame without a content checksum (written before it was set)
  kNo,                 // never: the caller hashes what it reads
};

// What a read does with a stored copy that fails to decode or verify.
enum class Damaged {
  kDrop,  // drop it (DropDamaged), so that it reads as missing and is sent again
  kKeep,  // leave it: Check reports, and drops only under CheckMode::kRepair
};

// Which form of a paged (v2) manifest a read wants.
enum class Pages {
  kResolved,  // its chunk list read from the index pages stored here
  kAsSigned,  // as signed: the pages named, not read (FindArtifactAsSigned)
};

// Whether a zstd frame carries a content checksum: bit 2 of its
// Frame_Header_Descriptor, the byte after the 4-byte magic (RFC 8878
// 3.1.1.1.1). `frame` is one zstd frame, so that byte is there.
bool HasContentChecksum(std::string_view frame) { return (static_cast<uint8_t>(frame[4]) & 0x04) != 0; }

// Decompresses a stored frame and re-hashes it as `rehash` says.
// Corruption (naming the digest) when the frame is malformed, declares an
// unknown, zero or too large size, carries trailing bytes, fails its content
// checksum, or (when re-hashed) hashes to anything but `digest`.
Result<Bytes> DecodeChunk(const Digest& digest, std::string_view frame, Rehash rehash = Rehash::kYes) {
  const std::string name = "chunk " + digest.ToString();
  if (frame.size() > ZSTD_compressBound(kChunkBytesMax)) {
    return Status::Corruption(name + ": stored frame of " + std::to_string(frame.size()) + " bytes is too large");
  }
  unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return Status::Corruption(name + ": stored value is not a zstd frame");
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) return Status::Corruption(name + ": frame does not declare its size");
  if (declared == 0 || declared > kChunkBytesMax) {
    return Status::Corruption(name + ": frame declares " + std::to_string(declared) + " bytes, outside 1.." +
                              std::to_string(kChunkBytesMax));
  }
  size_t frame_bytes = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_bytes) || frame_bytes != frame.size()) {
    return Status::Corruption(name + ": stored value is not exactly one zstd frame");
  }
  ZSTD_DCtx* dctx = ThreadDCtx();
  if (dctx == nullptr) return Status::ResourceExhausted("zstd: cannot create a decompression context");
  Bytes data(static_cast<size_t>(declared));
  // The output buffer is exactly the declared size: a frame that would
  // produce more fails with dstSize_tooSmall instead of growing anything.
  size_t n = ZSTD_decompressDCtx(dctx, data.data(), data.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) return Status::Corruption(name + ": zstd: " + ZSTD_getErrorName(n));
  if (n != data.size()) return Status::Corruption(name + ": frame holds fewer bytes than it declares");
  if (rehash == Rehash::kNo || (rehash == Rehash::kUnlessChecksummed && HasContentChecksum(frame))) return data;
  Digest actual = Digest::Of(data);
  if (actual != digest) return Status::Corruption(name + ": stored bytes hash to " + actual.ToString());
  return data;
}

// The manifest carried by a stored envelope. Its signatures were verified
// before it was committed (a VerifiedManifest), so they are not checked again.
Result<Manifest> ManifestFromEnvelope(std::string_view envelope_json) {
  Result<Envelope> env = ParseEnvelope(envelope_json);
  if (!env.ok()) return env.status();
  if (env->payload_type != kManifestPayloadType) {
    return Status::InvalidArgument("envelope payloadType is not " + std::string(kManifestPayloadType));
  }
  return ParseManifest(AsString(env->payload));
}

// The missing chunks of one manifest, for a message: how many, and the first few.
class MissingList {
 public:
  void Add(const Digest& d) {
    if (count_++ < kMissingListedMax) listed_ += (listed_.empty() ? "" : ", ") + d.ToString();
  }
  uint64_t count() const { return count_; }
  // "2 of 7 chunks missing: sha256:…, sha256:…" (`state`: "missing", "damaged")
  std::string Describe(size_t chunks, std::string_view state = "missing") const {
    return std::to_string(count_) + " of " + std::to_string(chunks) + " chunks " + std::string(state) + ": " + listed_ +
           (count_ > kMissingListedMax ? ", ..." : "");
  }

 private:
  uint64_t count_ = 0;
  std::string listed_;
};

// Reads of chunk values. A chunk's SHA-256 is its check (DecodeChunk): a
// blob's CRC, checked too, would fail the read naming no chunk, and stop a
// scan (Check) at the first damaged blob instead of going on past it.
rocksdb::ReadOptions ChunkReads() {
  rocksdb::ReadOptions ro;
  ro.verify_checksums = false;
  return ro;
}

// Collects Check() faults, keeping at most kCheckFaultsMax lines.
class FaultLog {
 public:
  explicit FaultLog(CheckReport& report) : report_(report) {}
  void Add(std::string line) {
    if (report_.faults.size() < kCheckFaultsMax) {
      report_.faults.push_back(std::move(line));
    } else {
      ++dropped_;
    }
  }
  void Finish() {
    if (dropped_ > 0) report_.faults.push_back("... and " + std::to_string(dropped_) + " more faults");
  }

 private:
  CheckReport& report_;
  uint64_t dropped_ = 0;
};

// RocksDB's info log, LOG in the store directory, written with write(2) whose
// failures are ignored. RocksDB's own file logger (as Debian builds 7.8, with
// assertions on) aborts the process on a line written after one that failed,
// and a full disk fails the next line. Bounded: past kInfoLogBytesMax, LOG
// becomes LOG.old (replacing it) and a new LOG starts.
class InfoLog final : public rocksdb::Logger {
 public:
  // `dir` empty: the lines go nowhere (a read-only store writes nothing).
  explicit InfoLog(std::string dir) : path_(dir.empty() ? "" : dir + "/LOG") {
    if (!path_.empty()) OpenLocked();
  }
  ~InfoLog() override {
    if (fd_ >= 0) ::close(fd_);
  }
  InfoLog(const InfoLog&) = delete;
  InfoLog& operator=(const InfoLog&) = delete;

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    if (path_.empty()) return;
    std::array<char, kInfoLogLineBytesMax> line;
    const time_t now = std::time(nullptr);
    struct tm t = {};
    gmtime_r(&now, &t);
    size_t n = std::strftime(line.data(), line.size(), "%Y-%m-%dT%H:%M:%SZ ", &t);
    va_list copy;
    va_copy(copy, ap);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int body = std::vsnprintf(line.data() + n, line.size() - n, format, copy);
#pragma GCC diagnostic pop
    va_end(copy);
    if (body < 0) return;
    n = std::min(n + static_cast<size_t>(body), line.size() - 2);  // cut, leaving room for the newline
    if (n == 0 || line[n - 1] != '\n') line[n++] = '\n';
    std::lock_guard lock(mu_);
    if (bytes_ > kInfoLogBytesMax) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      (void)std::rename(path_.c_str(), (path_ + ".old").c_str());
      OpenLocked();
    }
    if (fd_ < 0) return;
    ssize_t written = ::write(fd_, line.data(), n);
    if (written > 0) bytes_ += static_cast<uint64_t>(written);
  }

 private:
  void OpenLocked() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st = {};
    bytes_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }

  const std::string path_;
  std::mutex mu_;
  int fd_ = -1;         // guarded by mu_ (but for construction); -1 when LOG could not be opened
  uint64_t bytes_ = 0;  // guarded by mu_: LOG's size
};

// The store directories a Store of this process holds. A second open of one
// is refused before its LOCK file is touched: closing any descriptor of a
// file drops every fcntl lock the process holds on it, RocksDB's included.
class OpenDirs {
 public:
  static bool Claim(const std::string& dir) {
    std::lock_guard lock(mu());
    return dirs().insert(dir).second;
  }
  static void Release(const std::string& dir) {
    std::lock_guard lock(mu());
    dirs().erase(dir);
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::set<std::string>& dirs() {
    static std::set<std::string> d;
    return d;
  }
};

// A claim on a directory in OpenDirs, given back when destroyed.
class DirClaim {
 public:
  DirClaim() = default;
  explicit DirClaim(std::string dir) : dir_(std::move(dir)) {}
  DirClaim(DirClaim&& o) noexcept : dir_(std::exchange(o.dir_, "")) {}
  DirClaim& operator=(DirClaim&&) = delete;
  ~DirClaim() {
    if (!dir_.empty()) OpenDirs::Release(dir_);
  }

 private:
  std::string dir_;
};

// The lock a read-only store holds on LOCK: an open-file-description lock,
// which conflicts with the fcntl lock RocksDB takes in another process, so
// neither a daemon nor this reader opens while the other has the store.
class ReadLock {
 public:
  ReadLock() = default;
  ReadLock(ReadLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ReadLock& operator=(ReadLock&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~ReadLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  // FailedPrecondition when another process holds the lock.
  static Result<ReadLock> Take(const std::string& dir) {
    ReadLock l;
    const std::string path = dir + "/LOCK";
    l.fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (l.fd_ < 0) return ErrnoStatus("open " + path, errno);
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (::fcntl(l.fd_, F_OFD_SETLK, &fl) != 0) {
      if (errno == EAGAIN || errno == EACCES) {
        return Status::FailedPrecondition("store " + dir + " is in use by another process holding its lock");
      }
      return ErrnoStatus("lock " + path, errno);
    }
    return l;
  }

 private:
  int fd_ = -1;
};

// Tells the store how far RocksDB has flushed the chunks column family:
// chunks are written to memtables only (see PutChunk), and RocksDB flushes
// a full one on its own, in the background.
class ChunkFlushes final : public rocksdb::EventListener {
 public:
  // Every chunk write with a sequence number up to this one is on disk.
  rocksdb::SequenceNumber chunks_flushed_through() const { return through_.load(); }

  void OnFlushCompleted(rocksdb::DB*, const rocksdb::FlushJobInfo& info) override {
    if (info.cf_name != kCfNames[kChunks]) return;
    rocksdb::SequenceNumber seen = through_.load();
    while (seen < info.largest_seqno && !through_.compare_exchange_weak(seen, info.largest_seqno)) {
    }
  }

 private:
  std::atomic<rocksdb::SequenceNumber> through_{0};
};

class RocksStore final : public Store {
 public:
  RocksStore(std::string dir, DirClaim claim, ReadLock read_lock, std::unique_ptr<rocksdb::DB> db,
             std::vector<rocksdb::ColumnFamilyHandle*> handles, const StoreOptions& options,
             std::shared_ptr<const ChunkFlushes> flushes)
      : dir_(std::move(dir)),
        claim_(std::move(claim)),
        read_lock_(std::move(read_lock)),
        db_(std::move(db)),
        handles_(std::move(handles)),
        options_(options),
        flushes_(std::move(flushes)),
        clock_(options.clock != nullptr ? *options.clock : SystemClock::Get()),
        manifests_(options.manifest_cache_bytes),
        chunks_(options.chunk_cache_bytes) {
    write_options_.sync = options.sync_writes;
    if (!options_.read_only) DropLostUploads();
  }

  ~RocksStore() override {
    if (!options_.read_only) {
      // Best effort, as below: a chunk left unflushed keeps its marker, and
      // the next open drops it if it is gone.
      (void)FlushChunks();
      // What the WAL holds goes to table files now, while there is room, so
      // that the next open has nothing to replay and flush: a store stopped
      // cleanly opens again on a nearly full disk. Failing (a full disk, a
      // fault that stopped writes) loses nothing: the WAL still holds it.
      rocksdb::FlushOptions flush;
      flush.allow_write_stall = true;
      if (db_->Flush(flush, handles_).ok()) WaitForFlushes();
    }
    for (rocksdb::ColumnFamilyHandle* h : handles_) db_->DestroyColumnFamilyHandle(h);
    // Every write was already made durable (or deliberately not, per
    // sync_writes); a failing Close leaves nothing a destructor could fix.
    db_->Close().PermitUncheckedError();
  }

  RocksStore(const RocksStore&) = delete;
  RocksStore& operator=(const RocksStore&) = delete;

  Result<bool> HasChunk(const Digest& digest) override {
    return Guard(&faults_, "HasChunk", [&]() -> Result<bool> {
      rocksdb::PinnableSlice value;
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kChunkIndex), ChunkKey(digest), &value);
      if (s.IsNotFound()) return false;
      if (!s.ok()) return Fault(s, "reading chunk " + digest.ToString());
      return true;
    });
  }

  Result<std::vector<Digest>> MissingChunks(std::span<const Digest> digests) override {
    return Guard(&faults_, "MissingChunks", [&]() -> Result<std::vector<Digest>> {
      std::vector<Digest> missing;
      std::vector<Digest> stale;  // present, and old enough to be collected soon
      const int64_t stale_before = TouchBefore();
      Status s = ForEachIndexed(rocksdb::ReadOptions(), digests.size(),
                                [&](size_t i) -> const Digest& { return digests[i]; },
                                [&](size_t i, std::optional<IndexEntry> entry) {
                                  if (!entry) {
                                    missing.push_back(digests[i]);
                                  } else if (entry->touched_ms < stale_before) {
                                    stale.push_back(digests[i]);
                                  }
                                });
      if (!s.ok()) return s;
      // A publisher told a chunk is present will not upload it: it must
      // outlive the publish, even if no version refers to it now.
      if (!stale.empty()) MERIDIAN_RETURN_IF_ERROR(Touch(stale));
      return missing;
    });
  }

  Status PutChunk(const Digest& digest, ByteSpan data) override {
    return Guard(&faults_, "PutChunk", [&]() -> Status {
      if (data.empty()) return Status::InvalidArgument("chunk " + digest.ToString() + " is empty");
      if (data.size() > kChunkBytesMax) {
        return Status::ResourceExhausted("chunk " + digest.ToString() + " of " + std::to_string(data.size()) +
                                         " bytes exceeds " + std::to_string(kChunkBytesMax));
      }
      Digest actual = Digest::Of(data);
      if (actual != digest) {
        return Status::Corruption("chunk data hashes to " + actual.ToString() + ", not " + digest.ToString());
      }
      const std::string key = ChunkKey(digest);
      std::lock_guard lock(ChunkMutex(digest));  // see DropDamaged
      rocksdb::PinnableSlice stored;
      rocksdb::Status s = db_->Get(ChunkReads(), cf(kChunks), key, &stored);
      if (s.ok()) {
        // Idempotent, but only a copy that still verifies and is indexed
        // counts: anything else is rewritten, so re-sending a chunk repairs it.
        std::string indexed;
        rocksdb::Status is = db_->Get(rocksdb::ReadOptions(), cf(kChunkIndex), key, &indexed);
        std::optional<IndexEntry> entry = is.ok() ? DecodeIndexEntry(indexed) : std::nullopt;
        if (entry && entry->size == data.size() && DecodeChunk(digest, ToView(stored)).ok()) {
          // Uploaded again: young again, so it outlives the publish that sent it.
          if (entry->touched_ms >= TouchBefore()) return Status::Ok();
          rocksdb::WriteBatch touch;
          s = touch.Put(cf(kChunkIndex), key, EncodeIndexEntry(data.size(), Now()));
          if (!s.ok()) return Fault(s, "batching chunk " + digest.ToString());
          return Write(touch, "touching chunk " + digest.ToString(), Durability::kUnsynced);
        }
      } else if (!s.IsNotFound()) {
        return Fault(s, "reading chunk " + digest.ToString());
      }
      Result<std::string> frame = CompressChunk(data, options_.zstd_level);
      if (!frame.ok()) return frame.status();
      // The chunk is written to the memtable only, not to the WAL, so that
      // its bytes reach the disk once (in a blob file), not twice. RocksDB
      // flushes a full memtable in the background, and the next synced write
      // flushes the rest first (see Write): a publish costs one flush at its
      // commit, not a sync per chunk. Its index entry goes to the WAL first,
      // with a marker removed once the chunk is known to be flushed
      // (NoteUnflushed, FlushChunks): after a crash an index entry may
      // outlive its chunk, never the other way round, and the markers tell
      // the next open which entries to check (DropLostUploads). A chunk on
      // disk without its entry would be found by nothing but Check.
      rocksdb::WriteBatch indexed;
      s = indexed.Put(cf(kChunkIndex), key, EncodeIndexEntry(data.size(), Now()));
      if (s.ok()) s = indexed.Put(cf(kState), UnflushedChunkKey(key), "");
      rocksdb::WriteBatch chunk;
      if (s.ok()) s = chunk.Put(cf(kChunks), key, *frame);
      if (!s.ok()) return Fault(s, "batching chunk " + digest.ToString());
      MERIDIAN_RETURN_IF_ERROR(Write(indexed, "indexing chunk " + digest.ToString(), Durability::kUnsynced));
      if (Status written = Write(chunk, "writing chunk " + digest.ToString(), Durability::kUnlogged); !written.ok()) {
        // Best effort: an entry left behind is dropped by the next open.
        rocksdb::WriteBatch undo;
        if (undo.Delete(cf(kChunkIndex), key).ok() && undo.Delete(cf(kState), UnflushedChunkKey(key)).ok()) {
          (void)Write(undo, "unindexing chunk " + digest.ToString(), Durability::kUnsynced);
        }
        return written;
      }
      return NoteUnflushed(digest);
    });
  }

  Result<Bytes> GetChunk(const Digest& digest) override {
    return Guard(&faults_, "GetChunk", [&]() -> Result<Bytes> { return ReadChunk(digest, Rehash::kYes); });
  }

  Result<std::shared_ptr<const Bytes>> ServeChunk(const Digest& digest) override {
    return Guard(&faults_, "ServeChunk", [&]() -> Result<std::shared_ptr<const Bytes>> {
      const std::string key = ChunkKey(digest);
      if (std::shared_ptr<const Bytes> cached = chunks_.Lookup(key)) {
        chunk_cache_hits_.fetch_add(1, std::memory_order_relaxed);
        return cached;
      }
      const uint64_t erasures = chunks_.erasures();  // see SharedCache::Insert
      Result<Bytes> data = ReadChunk(digest, Rehash::kUnlessChecksummed);
      if (!data.ok()) return data.status();
      return chunks_.Insert(key, std::make_shared<const Bytes>(std::move(*data)), erasures);
    });
  }

  Result<bool> CommitVersion(const VerifiedManifest& verified, Holding holding) override {
    return Guard(&faults_, "CommitVersion", [&]() -> Result<bool> {
      const std::string& envelope_json = verified.envelope();
      const std::string what = verified.manifest().name + "@" + verified.manifest().version;
      const std::string key = VersionKey(verified.manifest().name, verified.manifest().version);
      rocksdb::ReadOptions ro;
      // A collection that begins now waits for this commit; one under way
      // keeps the chunks this commit is about to verify and name.
      std::shared_lock gate(collect_gate_);
      const bool bytes_here = holding == Holding::kBytes && !IsManifestOnly(ro, key);
      // A paged manifest is read here as ReadManifest will read it: resolved
      // from the index pages stored here when its bytes are, else not at all
      // (whoever resolved it before, the pages decide).
      std::optional<Manifest> paged;
      if (verified.manifest().paged()) {
        paged = verified.manifest();
        paged->chunks.clear();
        if (bytes_here) {
          if (Status st = ResolvePagesHere(&*paged); !st.ok()) {
            // Missing, or stored damaged and dropped: the publisher uploads it.
            if (st.code() != Status::Code::kNotFound && st.code() != Status::Code::kCorruption) return st;
            return Status::FailedPrecondition(what + ": " + st.message() + " (upload the index pages)");
          }
        }
      }
      const Manifest& m = paged ? *paged : verified.manifest();
      KeepForCollection(m);
      MERIDIAN_RETURN_IF_ERROR(CheckNotDeletedAsOther(ro, key, m));
      Result<bool> exists = SameVersionStored(ro, key, m, envelope_json);
      if (!exists.ok()) return exists.status();
      // What becomes visible must be what the manifest says: verified before
      // the lock, so one large commit does not hold up the others. A version
      // committed again (a retried publish) is verified too: its bytes may
      // have been damaged since, and the publisher is there to upload them.
      if (bytes_here) MERIDIAN_RETURN_IF_ERROR(VerifyChunksOf(ro, m, what));
      if (*exists) return false;
      // Held from the exists-check to the write, so that of two racing commits
      // of one version exactly one writes and the other sees it.
      std::lock_guard<std::mutex> lock(commit_mu_);
      exists = SameVersionStored(ro, key, m, envelope_json);
      if (!exists.ok()) return exists.status();
      if (*exists) return false;

      MERIDIAN_RETURN_IF_ERROR(CheckNotDeletedAsOther(ro, key, m));

      rocksdb::WriteBatch batch;
      rocksdb::Status bs = batch.Put(cf(kManifests), key, rocksdb::Slice(envelope_json.data(), envelope_json.size()));
      if (bs.ok()) bs = batch.Delete(cf(kState), DeletedVersionKey(key));
      if (!bs.ok()) return Fault(bs, "batching " + what);
      if (bytes_here) {
        const std::string artifact_key = ChunkKey(m.digest);
        std::string indexed;
        rocksdb::Status s = db_->Get(ro, cf(kArtifacts), artifact_key, &indexed);
        if (s.IsNotFound()) {
          bs = batch.Put(cf(kArtifacts), artifact_key, key);
        } else if (!s.ok()) {
          return Fault(s, "reading the artifact index for " + m.digest.ToString());
        }
      } else {
        bs = batch.Put(cf(kState), ManifestOnlyKey(key), "");
      }
      if (!bs.ok()) return Fault(bs, "batching " + what);
      MERIDIAN_RETURN_IF_ERROR(Write(batch, "committing " + what));
      manifests_.Insert(key, std::make_shared<const Manifest>(m), manifests_.erasures());  // the envelope says exactly `m`
      return true;
    });
  }

  Result<std::string> GetEnvelope(std::string_view model, std::string_view version) override {
    return Guard(&faults_, "GetEnvelope", [&]() -> Result<std::string> {
      if (!IsValidModelName(model) || !IsValidVersion(version)) {
        return Status::InvalidArgument("invalid model name or version");
      }
      return ReadEnvelope(rocksdb::ReadOptions(), VersionKey(model, version));
    });
  }

  Result<std::shared_ptr<const Manifest>> GetManifest(std::string_view model, std::string_view version) override {
    return Guard(&faults_, "GetManifest", [&]() -> Result<std::shared_ptr<const Manifest>> {
      if (!IsValidModelName(model) || !IsValidVersion(version)) {
        return Status::InvalidArgument("invalid model name or version");
      }
      return ReadManifest(rocksdb::ReadOptions(), VersionKey(model, version));
    });
  }

  Result<std::vector<std::string>> ListModels() override {
    return Guard(&faults_, "ListModels", [&]() -> Result<std::vector<std::string>> {
      std::vector<std::string> models;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(kManifests)));
      it->SeekToFirst();
      while (it->Valid()) {
        std::string_view key = ToView(it->key());
        std::string model(key.substr(0, key.find('\0')));
        // Keys sort by model then '\0': seeking past "<model>\1" skips the
        // model's remaining versions in one step.
        it->Seek(model + '\x01');
        models.push_back(std::move(model));
      }
      if (!it->status().ok()) return Fault(it->status(), "listing models");
      return models;
    });
  }

  Result<std::vector<std::string>> ListVersions(std::string_view model) override {
    return Guard(&faults_, "ListVersions", [&]() -> Result<std::vector<std::string>> {
      if (!IsValidModelName(model)) return Status::InvalidArgument("invalid model name");
      const std::string prefix = VersionKey(model, "");
      std::vector<std::string> versions;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(kManifests)));
      for (it->Seek(prefix); it->Valid() && ToView(it->key()).starts_with(prefix); it->Next()) {
        std::string_view version = ToView(it->key()).substr(prefix.size());
        // Only CommitVersion writes keys, after validating; CompareVersions
        // needs valid versions, so anything else is damage, not data.
        if (!IsValidVersion(version)) {
          return Status::Corruption(DescribeVersionKey(ToView(it->key())) + ": manifests key names an invalid version");
        }
        versions.emplace_back(version);
      }
      if (!it->status().ok()) return Fault(it->status(), "listing versions of " + std::string(model));
      if (versions.empty()) return Status::NotFound("model " + std::string(model) + " has no version");
      // Keys arrive in lexical order, so a stable sort leaves versions of equal
      // precedence (differing in build metadata only) in lexical order.
      std::stable_sort(versions.begin(), versions.end(),
                       [](const std::string& a, const std::string& b) { return CompareVersions(a, b) < 0; });
      return versions;
    });
  }

  Result<std::shared_ptr<const Manifest>> FindArtifact(const Digest& digest) override {
    return Guard(&faults_, "FindArtifact", [&] { return IndexedVersion(rocksdb::ReadOptions(), digest); });
  }

  Result<std::shared_ptr<const Manifest>> FindArtifactAsSigned(const Digest& digest) override {
    return Guard(&faults_, "FindArtifactAsSigned",
                 [&] { return IndexedVersion(rocksdb::ReadOptions(), digest, Pages::kAsSigned); });
  }

  Status DeleteVersion(std::string_view model, std::string_view version) override {
    return Guard(&faults_, "DeleteVersion", [&]() -> Status {
      if (!IsValidModelName(model) || !IsValidVersion(version)) {
        return Status::InvalidArgument("invalid model name or version");
      }
      const std::string key = VersionKey(model, version);
      const std::string what = DescribeVersionKey(key);
      std::lock_guard<std::mutex> lock(commit_mu_);  // no commit of this version or its artifact meanwhile
      rocksdb::ReadOptions ro;
      Result<std::shared_ptr<const Manifest>> m = ReadManifest(ro, key);
      if (!m.ok()) return m.status();
      rocksdb::WriteBatch batch;
      rocksdb::Status bs = batch.Delete(cf(kManifests), key);
      if (bs.ok()) bs = batch.Delete(cf(kState), ManifestOnlyKey(key));
      if (bs.ok()) bs = batch.Put(cf(kState), DeletedVersionKey(key), (*m)->digest.Hex());
      if (!bs.ok()) return Fault(bs, "batching the deletion of " + what);
      const std::string artifact_key = ChunkKey((*m)->digest);
      std::string indexed;
      rocksdb::Status s = db_->Get(ro, cf(kArtifacts), artifact_key, &indexed);
      if (!s.ok() && !s.IsNotFound()) return Fault(s, "reading the artifact index for " + (*m)->digest.ToString());
      if (s.ok() && indexed == key) {
        Result<std::optional<std::string>> other = OtherVersionHolding(ro, (*m)->digest, key);
        if (!other.ok()) return other.status();
        bs = *other ? batch.Put(cf(kArtifacts), artifact_key, **other) : batch.Delete(cf(kArtifacts), artifact_key);
        if (!bs.ok()) return Fault(bs, "batching the deletion of " + what);
      }
      MERIDIAN_RETURN_IF_ERROR(Write(batch, "deleting " + what));
      manifests_.Erase(key);
      manifests_.Erase(AsSignedKey(key));
      return Status::Ok();
    });
  }

  Result<CollectReport> CollectGarbage(const std::function<Status(std::vector<Digest>&)>& more_referenced) override {
    return Guard(&faults_, "CollectGarbage", [&]() -> Result<CollectReport> {
      if (options_.read_only) return Status::FailedPrecondition("the store is open read-only");
      std::unique_lock<std::mutex> one(collect_run_mu_, std::try_to_lock);
      if (!one.owns_lock()) return Status::FailedPrecondition("a collection is running already");
      CollectReport report;
      Status st = Collect(more_referenced, report);
      {
        std::lock_guard lock(collect_mu_);
        collecting_ = false;
        kept_chunks_.clear();
      }
      if (!st.ok()) return st;
      if (report.chunks_deleted > 0) MERIDIAN_RETURN_IF_ERROR(ReturnSpace(report));
      return report;
    });
  }

  Status WriteState(const StateOps& ops) override {
    return Guard(&faults_, "WriteState", [&]() -> Status {
      if (ops.empty()) return Status::Ok();
      rocksdb::WriteBatch batch;
      for (const auto& [key, value] : ops) {
        rocksdb::Status s = value ? batch.Put(cf(kState), key, *value) : batch.Delete(cf(kState), key);
        if (!s.ok()) return Fault(s, "batching state key \"" + key + "\"");
      }
      return Write(batch, "writing state");
    });
  }

  Result<std::string> GetState(std::string_view key) override {
    return Guard(&faults_, "GetState", [&]() -> Result<std::string> {
      std::string value;
      rocksdb::Slice k(key.data(), key.size());
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kState), k, &value);
      if (s.IsNotFound()) return Status::NotFound("state key \"" + std::string(key) + "\" not found");
      if (!s.ok()) return Fault(s, "reading state key \"" + std::string(key) + "\"");
      return value;
    });
  }

  Result<StateRecords> ScanState(std::string_view prefix) override {
    return ScanStatePage(prefix, "", std::numeric_limits<size_t>::max());
  }

  Result<StateRecords> ScanStatePage(std::string_view prefix, std::string_view after_key, size_t limit) override {
    return Guard(&faults_, "ScanState", [&]() -> Result<StateRecords> {
      StateRecords out;
      uint64_t total_bytes = 0;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(kState)));
      std::string_view start = after_key > prefix ? after_key : prefix;
      it->Seek(rocksdb::Slice(start.data(), start.size()));
      if (it->Valid() && !after_key.empty() && ToView(it->key()) == after_key) it->Next();
      for (; out.size() < limit && it->Valid() && ToView(it->key()).starts_with(prefix); it->Next()) {
        total_bytes += it->key().size() + it->value().size();
        if (total_bytes > kStateScanBytesMax) {
          return Status::ResourceExhausted("state under prefix \"" + std::string(prefix) + "\" exceeds " +
                                           std::to_string(kStateScanBytesMax) + " bytes");
        }
        out.emplace_back(it->key().ToString(), it->value().ToString());
      }
      if (!it->status().ok()) return Fault(it->status(), "scanning state");
      return out;
    });
  }

  StoreStats Stats() override {
    StoreStats stats;
    stats.manifest_parses = manifest_parses_.load(std::memory_order_relaxed);
    stats.manifest_cache_bytes = manifests_.bytes();
    stats.chunk_cache_bytes = chunks_.bytes();
    stats.chunk_cache_hits = chunk_cache_hits_.load(std::memory_order_relaxed);
    stats.errors = faults_.ByCodeName();
    if (struct statvfs fs; statvfs(dir_.c_str(), &fs) == 0) stats.fs_avail_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
    try {
      uint64_t v = 0;
      if (db_->GetIntProperty(cf(kChunkIndex), rocksdb::DB::Properties::kEstimateNumKeys, &v)) stats.chunks = v;
      for (rocksdb::ColumnFamilyHandle* h : handles_) {
        if (db_->GetIntProperty(h, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) stats.sst_bytes += v;
        if (db_->GetIntProperty(h, rocksdb::DB::Properties::kTotalBlobFileSize, &v)) stats.blob_bytes += v;
        if (db_->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) stats.memtable_bytes += v;
      }
      // Until a memtable fills and is flushed, what was written is only in
      // the WAL: counting table and blob files alone said 0 for a store
      // holding tens of megabytes.
      rocksdb::VectorLogPtr wal_files;
      if (db_->GetSortedWalFiles(wal_files).ok()) {
        for (const std::unique_ptr<rocksdb::LogFile>& f : wal_files) stats.wal_bytes += f->SizeFileBytes();
      }
      stats.disk_bytes = stats.sst_bytes + stats.blob_bytes + stats.wal_bytes;
      stats.blob_garbage_bytes = BlobGarbage().garbage;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(kManifests)));
      uint64_t versions = 0;
      for (it->SeekToFirst(); it->Valid(); it->Next()) ++versions;
      if (it->status().ok()) stats.versions = versions;
    } catch (...) {
      // Figures are best effort by contract: those not gathered stay 0.
    }
    return stats;
  }

  Status Health() override {
    return Guard("Health", [&]() -> Status {
      if (options_.read_only) return Status::Ok();
      std::lock_guard lock(resume_mu_);
      rocksdb::Status s = db_->Resume();  // OK at once when nothing stopped the store
      // Busy: RocksDB's own recovery is under way, which only a full disk
      // starts here (see RecoverableIoFaults).
      if (s.IsBusy()) {
        return Status::InsufficientStorage("writes stopped: the disk is full; they resume by themselves once " +
                                           std::to_string(options_.memtable_bytes) + " bytes are free");
      }
      return s.ok() ? Status::Ok() : FromRocks(s, "writes stopped");
    });
  }

  CheckReport Check(CheckMode mode) override {
    CheckReport report;
    FaultLog faults(report);
    try {
      if (mode == CheckMode::kRepair && options_.read_only) {
        faults.Add("cannot repair: the store is open read-only");
        mode = CheckMode::kReport;
      }
      CheckAll(report, faults, mode);
    } catch (...) {
      faults.Add(StatusOfCurrentException("check stopped").message());
    }
    faults.Finish();
    return report;
  }

 private:
  rocksdb::ColumnFamilyHandle* cf(Cf which) const { return handles_[which]; }

  // True when `key` holds this version already (the same envelope or the
  // same release: a retried commit), false when it holds nothing;
  // AlreadyExists when it holds other content.
  Result<bool> SameVersionStored(const rocksdb::ReadOptions& ro, const std::string& key, const Manifest& m,
                                 std::string_view envelope_json) {
    const std::string what = m.name + "@" + m.version;
    rocksdb::PinnableSlice existing;
    rocksdb::Status s = db_->Get(ro, cf(kManifests), key, &existing);
    if (s.IsNotFound()) return false;
    if (!s.ok()) return Fault(s, "reading " + what);
    if (ToView(existing) == envelope_json) return true;
    Result<std::shared_ptr<const Manifest>> old = ReadManifest(ro, key);  // cached: a retried publish parses nothing
    if (!old.ok()) return old.status();
    if (SameRelease(**old, m)) return true;
    return Status::AlreadyExists(what + " already exists with other content");
  }

  // Checks that every chunk `m` names is stored with the size it says, then
  // streams them through SHA-256 against the whole-file digest:
  // FailedPrecondition for missing chunks and for a stored chunk that no
  // longer verifies (dropped, so MissingChunks names it from then on),
  // InvalidArgument for a size or digest that differs.
  Status VerifyChunksOf(const rocksdb::ReadOptions& ro, const Manifest& m, const std::string& what) {
    MissingList missing;
    std::string wrong_size;
    // The index pages of a paged manifest too: ReadManifest reads them again.
    MERIDIAN_RETURN_IF_ERROR(ForEachIndexed(ro, m.piece_count(), [&](size_t i) { return m.piece(i).digest; },
                                            [&](size_t i, std::optional<IndexEntry> entry) {
                                              const ChunkRef piece = m.piece(i);
                                              if (!entry) {
                                                missing.Add(piece.digest);
                                              } else if (entry->size != piece.size && wrong_size.empty()) {
                                                wrong_size = fmt::format("chunk {} ({}) is {} bytes, the manifest says {}",
                                                                         i, piece.digest.ToString(), entry->size,
                                                                         piece.size);
                                              }
                                            }));
    if (missing.count() > 0) return Status::FailedPrecondition(what + ": " + missing.Describe(m.piece_count()));
    if (!wrong_size.empty()) return Status::InvalidArgument(what + ": " + wrong_size);
    // Every byte is read, even of a file committed before: a stored chunk
    // damaged since is found (and dropped) here, not skipped. A file already
    // committed with these very chunks (another version of it, or this one
    // retried) was hashed whole then, so its chunks are only checked against
    // their frames' checksums, as serving does. Any other file gets one
    // SHA-256 pass over the whole; only when that fails are the chunks
    // re-hashed one by one, to tell damaged copies from a wrong manifest.
    if (SameFileCommitted(ro, m)) return ReadChunksOf(m, Rehash::kUnlessChecksummed, what, nullptr);
    auto hash_whole = [&](Rehash rehash) -> Result<Digest> {
      Sha256 sha;
      MERIDIAN_RETURN_IF_ERROR(ReadChunksOf(m, rehash, what, &sha));
      return sha.Finish();
    };
    Result<Digest> whole = hash_whole(Rehash::kNo);
    if (whole.ok() && *whole != m.digest) whole = hash_whole(Rehash::kYes);
    if (!whole.ok()) return whole.status();
    if (*whole != m.digest) {
      return Status::InvalidArgument(fmt::format("{}: the chunks hash to {}, the manifest says {}", what,
                                                 whole->ToString(), m.digest.ToString()));
    }
    return Status::Ok();
  }

  // The first version committed with the whole-file `digest` (the artifact
  // index): NotFound when none, Corruption when its entry names a version
  // that is gone.
  Result<std::shared_ptr<const Manifest>> IndexedVersion(const rocksdb::ReadOptions& ro, const Digest& digest,
                                                         Pages pages = Pages::kResolved) {
    std::string key;
    rocksdb::Status s = db_->Get(ro, cf(kArtifacts), ChunkKey(digest), &key);
    if (s.IsNotFound()) return Status::NotFound("no version with artifact " + digest.ToString());
    if (!s.ok()) return Fault(s, "reading the artifact index for " + digest.ToString());
    Result<std::shared_ptr<const Manifest>> m = ReadManifest(ro, key, pages);  // cached
    if (!m.ok() && m.status().code() == Status::Code::kNotFound) {
      return Status::Corruption("artifact index entry " + digest.ToString() + " points to missing " +
                                DescribeVersionKey(key));
    }
    return m;
  }

  // Where the manifest cache keeps a paged version's manifest as signed
  // (FindArtifactAsSigned), beside the resolved one under the version's key.
  // Version keys never end in \x01: versions are SemVer.
  static std::string AsSignedKey(const std::string& key) { return key + '\x01'; }

  // Whether a committed version holds exactly `m`'s file: the same digest,
  // size and chunks. Its commit hashed those chunks whole to that digest.
  // A lookup that fails proves nothing: the file is then hashed whole.
  bool SameFileCommitted(const rocksdb::ReadOptions& ro, const Manifest& m) {
    Result<std::shared_ptr<const Manifest>> committed = IndexedVersion(ro, m.digest);
    return committed.ok() && (*committed)->size == m.size && (*committed)->chunks == m.chunks;
  }

  // Reads `m`'s chunks in order, checked as `rehash` says, into `whole` when
  // not null. FailedPrecondition when a stored chunk fails to decode or
  // (Rehash::kYes) to verify: all of those are dropped, so one upload
  // restores the lot. The chunks are read and decompressed ahead on other
  // threads while this one hashes, so a commit takes about one SHA-256 pass
  // over the file, not that plus the reading.
  Status ReadChunksOf(const Manifest& m, Rehash rehash, const std::string& what, Sha256* whole) {
    using Batch = std::vector<Result<Bytes>>;
    auto read = [this, &m, rehash](size_t begin, size_t end) {
      Batch batch;
      for (size_t i = begin; i < end; ++i) batch.push_back(ReadChunk(m.chunks[i].digest, rehash));
      return batch;
    };
    // Batches are read on a thread per core (up to kCommitReadersMax), while
    // this one hashes them in order: decoding a chunk and checking its frame
    // costs about what hashing it does, and when nothing is hashed (a file
    // committed before) the reading is all the work.
    const size_t readers = std::clamp<size_t>(std::thread::hardware_concurrency(), 2, kCommitReadersMax);
    std::deque<std::future<Batch>> ahead;
    size_t queued = 0;  // chunks handed to a reader
    auto read_ahead = [&] {
      while (ahead.size() < readers && queued < m.chunks.size()) {
        const size_t begin = queued;
        for (uint64_t bytes = 0; queued < m.chunks.size() && bytes < kCommitReadAheadBytes; ++queued) {
          bytes += m.chunks[queued].size;
        }
        ahead.push_back(std::async(std::launch::async, read, begin, queued));
      }
    };
    MissingList damaged;
    // Returning early destroys `ahead`, which waits for the batches in flight.
    read_ahead();
    for (size_t next = 0; next < m.chunks.size();) {
      Batch batch = ahead.front().get();
      ahead.pop_front();
      read_ahead();
      const size_t begin = next;
      next += batch.size();
      for (size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].status().code() == Status::Code::kCorruption) {
          damaged.Add(m.chunks[begin + i].digest);
          continue;
        }
        if (!batch[i].ok()) return batch[i].status();
        if (whole != nullptr) whole->Update(*batch[i]);
      }
    }
    if (damaged.count() > 0) {
      return Status::FailedPrecondition(what + ": " + damaged.Describe(m.chunks.size()) +
                                        " (stored damaged, dropped: upload them again)");
    }
    return Status::Ok();
  }

  // Calls `on_entry(i, entry)` for each of the `count` digests `digest_at(i)`,
  // in order, with its chunk index entry or nullopt when it is not stored,
  // testing kPresenceBatchKeys keys per MultiGet.
  template <typename DigestAt, typename OnEntry>
  Status ForEachIndexed(const rocksdb::ReadOptions& ro, size_t count, DigestAt digest_at, OnEntry on_entry) {
    std::vector<std::string> keys;
    std::vector<rocksdb::Slice> slices;
    std::vector<rocksdb::PinnableSlice> values(kPresenceBatchKeys);
    std::vector<rocksdb::Status> statuses(kPresenceBatchKeys);
    for (size_t start = 0; start < count; start += kPresenceBatchKeys) {
      const size_t n = std::min(kPresenceBatchKeys, count - start);
      keys.clear();
      slices.clear();
      for (size_t i = 0; i < n; ++i) keys.push_back(ChunkKey(digest_at(start + i)));
      for (const std::string& k : keys) slices.emplace_back(k);
      db_->MultiGet(ro, cf(kChunkIndex), n, slices.data(), values.data(), statuses.data());
      for (size_t i = 0; i < n; ++i) {
        if (statuses[i].IsNotFound()) {
          on_entry(start + i, std::optional<IndexEntry>());
        } else if (!statuses[i].ok()) {
          return Fault(statuses[i], "reading chunk " + digest_at(start + i).ToString());
        } else {
          on_entry(start + i, DecodeIndexEntry(ToView(values[i])));
        }
        values[i].Reset();
      }
    }
    return Status::Ok();
  }

  Result<std::string> ReadEnvelope(const rocksdb::ReadOptions& ro, const std::string& key) {
    std::string envelope;
    rocksdb::Status s = db_->Get(ro, cf(kManifests), key, &envelope);
    if (s.IsNotFound()) return Status::NotFound(DescribeVersionKey(key) + " not found");
    if (!s.ok()) return Fault(s, "reading " + DescribeVersionKey(key));
    return envelope;
  }

  // The manifest stored under `key`, checked to be the version the key
  // names: from the cache, or parsed and cached. Versions never change once
  // committed, so the cache is right whatever snapshot `ro` reads. A paged
  // manifest comes resolved from the pages stored here (unless the version
  // is kept as a manifest only), or kAsSigned as signed, cached apart.
  Result<std::shared_ptr<const Manifest>> ReadManifest(const rocksdb::ReadOptions& ro, const std::string& key,
                                                       Pages pages = Pages::kResolved) {
    std::shared_ptr<const Manifest> cached = manifests_.Lookup(key);
    if (cached && (pages == Pages::kResolved || !cached->paged())) return cached;
    const std::string signed_key = AsSignedKey(key);
    if (pages == Pages::kAsSigned) {
      if (std::shared_ptr<const Manifest> as_signed = manifests_.Lookup(signed_key)) return as_signed;
    }
    const uint64_t erasures = manifests_.erasures();  // see ManifestCache::Insert
    Result<std::string> envelope = ReadEnvelope(ro, key);
    if (!envelope.ok()) return envelope.status();
    Result<Manifest> m = ParseStoredManifest(key, *envelope);
    if (!m.ok()) return m.status();
    const bool as_signed = m->paged() && pages == Pages::kAsSigned;
    if (m->paged() && !as_signed && !IsManifestOnly(ro, key)) {
      if (Status st = ResolvePagesHere(&*m); !st.ok()) {
        return Status::Corruption(DescribeVersionKey(key) + ": " + st.message());
      }
    }
    return manifests_.Insert(as_signed ? signed_key : key, std::make_shared<const Manifest>(std::move(*m)), erasures);
  }

  // Fills a paged manifest's chunk list from the index pages stored here. A
  // page is read as ServeChunk reads a chunk (its frame checksum finds damage
  // as a disk does it; a damaged copy is dropped, as by any read, unless
  // `damaged` says to keep it: Check only reports), because ReadChunkPage
  // hashes every page against its digest anyway: hashing here too read each
  // page's bytes twice on every resolve.
  Status ResolvePagesHere(Manifest* m, Damaged damaged = Damaged::kDrop) {
    return ResolveChunkPages(
        m, [&](const ChunkPageRef& p) { return ReadChunk(p.digest, Rehash::kUnlessChecksummed, damaged); });
  }

  // Every parse of a stored envelope goes through here, and is counted.
  Result<Manifest> ParseStoredManifest(std::string_view key, std::string_view envelope) {
    manifest_parses_.fetch_add(1, std::memory_order_relaxed);
    Result<Manifest> m = ManifestFromEnvelope(envelope);
    if (!m.ok()) return Status::Corruption(DescribeVersionKey(key) + ": stored envelope: " + m.status().message());
    if (VersionKey(m->name, m->version) != key) {
      return Status::Corruption(DescribeVersionKey(key) + ": stored envelope holds " + m->name + "@" + m->version);
    }
    return m;
  }

  void CheckAll(CheckReport& report, FaultLog& faults, CheckMode mode) {
    // One snapshot for the whole walk: a commit landing midway must not look
    // like a manifest without its index entry, or the other way round.
    rocksdb::ManagedSnapshot snapshot(db_.get());
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot.snapshot();
    ro.fill_cache = false;  // a full scan would only evict the working set

    // Chunks and the chunk index are both sorted by digest: walk them side by
    // side, so every chunk is checked against its index entry and the other
    // way round, in constant memory.
    rocksdb::ReadOptions chunk_ro = ChunkReads();
    chunk_ro.snapshot = ro.snapshot;
    chunk_ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(chunk_ro, cf(kChunks)));
    std::unique_ptr<rocksdb::Iterator> index(db_->NewIterator(ro, cf(kChunkIndex)));
    auto describe = [](const rocksdb::Slice& key) {
      Result<Digest> d = Digest::FromBytes(AsBytes(ToView(key)));
      return d.ok() ? d->ToString() : "key of " + std::to_string(key.size()) + " bytes";
    };
    // An entry whose chunk is not stored is a fault unless the chunk's
    // marker is there: an upload under way, or one a crash lost, which the
    // next writable open drops (DropLostUploads).
    auto check_unstored = [&](const rocksdb::Slice& key) {
      std::string marker;
      if (!db_->Get(ro, cf(kState), UnflushedChunkKey(ToView(key)), &marker).ok()) {
        faults.Add("chunk index lists " + describe(key) + ", which is not stored");
      }
    };
    std::unordered_set<Digest> damaged;  // named again with the versions they break
    index->SeekToFirst();
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++report.chunks_checked;
      for (; index->Valid() && index->key().compare(it->key()) < 0; index->Next()) check_unstored(index->key());
      bool indexed = index->Valid() && index->key() == it->key();
      std::string indexed_size = indexed ? index->value().ToString() : "";
      if (indexed) index->Next();
      Result<Digest> digest = Digest::FromBytes(AsBytes(ToView(it->key())));
      if (!digest.ok()) {
        faults.Add("chunks: key of " + std::to_string(it->key().size()) + " bytes is not a digest");
        continue;
      }
      Result<Bytes> data = DecodeChunk(*digest, ToView(it->value()));
      if (!data.ok()) {
        faults.Add(data.status().message());
        if (damaged.size() < kCheckDamagedMax) damaged.insert(*digest);
      } else if (std::optional<IndexEntry> entry = DecodeIndexEntry(indexed_size); !entry || entry->size != data->size()) {
        faults.Add("chunk " + digest->ToString() + (indexed ? ": wrong size in the chunk index" : ": not in the chunk index"));
      }
    }
    if (!it->status().ok()) faults.Add("chunks scan stopped: " + it->status().ToString());
    for (; index->Valid(); index->Next()) check_unstored(index->key());
    if (!index->status().ok()) faults.Add("chunk index scan stopped: " + index->status().ToString());

    // Artifact digests whose index entry points back at a version with that
    // digest: memory grows with the number of versions only.
    std::unordered_set<Digest> confirmed;
    it.reset(db_->NewIterator(ro, cf(kManifests)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++report.manifests_checked;
      const std::string key = it->key().ToString();
      const std::string what = DescribeVersionKey(key);
      Result<Manifest> m = ParseStoredManifest(key, ToView(it->value()));
      if (!m.ok()) {
        faults.Add(m.status().message());
        continue;
      }
      if (IsManifestOnly(ro, key)) continue;  // its bytes live elsewhere
      // A page that fails to read leaves the pages alone to check below (a
      // damaged one is in `damaged` already, dropped by kRepair below).
      if (Status st = ResolvePagesHere(&*m, Damaged::kKeep); !st.ok()) faults.Add(what + ": " + st.message());
      MissingList missing;
      Status ms = ForEachIndexed(ro, m->piece_count(), [&](size_t i) { return m->piece(i).digest; },
                                 [&](size_t i, std::optional<IndexEntry> entry) {
                                   if (!entry) missing.Add(m->piece(i).digest);
                                 });
      if (!ms.ok()) faults.Add(what + ": " + ms.ToString());
      if (missing.count() > 0) faults.Add(what + ": " + missing.Describe(m->piece_count()));
      if (!damaged.empty()) {
        MissingList broken;
        for (size_t i = 0; i < m->piece_count(); ++i) {
          if (damaged.count(m->piece(i).digest)) broken.Add(m->piece(i).digest);
        }
        if (broken.count() > 0) faults.Add(what + ": " + broken.Describe(m->piece_count(), "damaged"));
      }
      std::string indexed;
      rocksdb::Status s = db_->Get(ro, cf(kArtifacts), ChunkKey(m->digest), &indexed);
      if (s.IsNotFound()) {
        faults.Add(what + ": no artifact index entry for " + m->digest.ToString());
      } else if (!s.ok()) {
        faults.Add(what + ": reading artifact index: " + s.ToString());
      } else if (indexed == key) {
        confirmed.insert(m->digest);
      }
      // An entry pointing at another version is judged when that version is
      // walked: it must point back at itself with the same digest.
    }
    if (!it->status().ok()) faults.Add("manifests scan stopped: " + it->status().ToString());

    it.reset(db_->NewIterator(ro, cf(kArtifacts)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Result<Digest> digest = Digest::FromBytes(AsBytes(ToView(it->key())));
      if (!digest.ok()) {
        faults.Add("artifacts: key of " + std::to_string(it->key().size()) + " bytes is not a digest");
      } else if (!confirmed.contains(*digest)) {
        faults.Add("artifact index entry " + digest->ToString() + " points to " +
                   DescribeVersionKey(ToView(it->value())) + ", which is not a readable version with that digest");
      }
    }
    if (!it->status().ok()) faults.Add("artifacts scan stopped: " + it->status().ToString());

    if (mode == CheckMode::kRepair) {
      for (const Digest& d : damaged) report.chunks_dropped += DropDamaged(d) ? 1 : 0;
    }
  }

  int64_t Now() const { return clock_.NowUnixMillis(); }
  // Chunks touched before this are made young again when uploaded or named
  // present: half the grace period, so a publish has at least that long.
  int64_t TouchBefore() const { return Now() - options_.unreferenced_grace_ms / 2; }

  // Makes these chunks young (their index entries touched now), those still
  // stored, under their chunk locks: a sweep deciding on one of them either
  // deleted it before (it is not touched: the publisher uploads it again) or
  // sees it young.
  Status Touch(std::span<const Digest> digests) {
    std::array<bool, kChunkMutexes> needed{};
    for (const Digest& d : digests) needed[StripeOf(d)] = true;
    std::vector<std::unique_lock<std::mutex>> locks;  // in stripe order, as no other path takes two
    for (size_t i = 0; i < kChunkMutexes; ++i) {
      if (needed[i]) locks.emplace_back(chunk_mu_[i]);
    }
    rocksdb::WriteBatch batch;
    const int64_t now = Now();
    rocksdb::Status bs;
    MERIDIAN_RETURN_IF_ERROR(ForEachIndexed(rocksdb::ReadOptions(), digests.size(),
                                            [&](size_t i) -> const Digest& { return digests[i]; },
                                            [&](size_t i, std::optional<IndexEntry> entry) {
                                              if (entry && bs.ok()) {
                                                bs = batch.Put(cf(kChunkIndex), ChunkKey(digests[i]),
                                                               EncodeIndexEntry(entry->size, now));
                                              }
                                            }));
    if (!bs.ok()) return Fault(bs, "batching chunk ages");
    // Not synced, as a chunk's upload is not: a touch lost to a power cut
    // leaves a chunk older than it should be, which a collection may take
    // before the commit; that commit then names it missing and the publisher
    // uploads it again. A publish asks about its chunks a batch at a time,
    // and costs no sync per batch.
    return Write(batch, "touching chunks", Durability::kUnsynced);
  }

  // While a collection runs, the chunks of a commit begun meanwhile are not
  // swept (its versions were read before the commit).
  void KeepForCollection(const Manifest& m) {
    std::lock_guard lock(collect_mu_);
    if (!collecting_) return;
    for (size_t i = 0; i < m.piece_count(); ++i) kept_chunks_.insert(m.piece(i).digest);
  }

  // AlreadyExists when `key` names a deleted version whose bytes were other
  // than `m`'s.
  Status CheckNotDeletedAsOther(const rocksdb::ReadOptions& ro, const std::string& key, const Manifest& m) {
    std::string deleted_digest;
    rocksdb::Status s = db_->Get(ro, cf(kState), DeletedVersionKey(key), &deleted_digest);
    if (s.IsNotFound() || (s.ok() && deleted_digest == m.digest.Hex())) return Status::Ok();
    if (!s.ok()) return Fault(s, "reading " + DeletedVersionKey(key));
    return Status::AlreadyExists(m.name + "@" + m.version + " was deleted; its name stays with the bytes it had (sha256:" +
                                 deleted_digest + "): publish another version");
  }

  // A version other than `except_key` whose bytes are held here and whose
  // whole-file digest is `digest`; nullopt when none. Reads every manifest
  // (from the cache mostly): deleting is rare.
  Result<std::optional<std::string>> OtherVersionHolding(const rocksdb::ReadOptions& ro, const Digest& digest,
                                                         const std::string& except_key) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kManifests)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string key = it->key().ToString();
      if (key == except_key || IsManifestOnly(ro, key)) continue;
      Result<std::shared_ptr<const Manifest>> m = ReadManifest(ro, key);
      if (m.ok() && (*m)->digest == digest) return std::optional<std::string>(key);
    }
    if (!it->status().ok()) return Fault(it->status(), "listing versions");
    return std::optional<std::string>();
  }

  // Mark and sweep (CollectGarbage, which resets collecting_ after).
  Status Collect(const std::function<Status(std::vector<Digest>&)>& more_referenced, CollectReport& report) {
    std::vector<Digest> referenced;
    std::optional<rocksdb::ManagedSnapshot> snapshot;
    {
      // Commits in flight finish first, so each either is in the snapshot or
      // keeps its chunks (KeepForCollection).
      std::unique_lock gate(collect_gate_);
      std::lock_guard lock(collect_mu_);
      collecting_ = true;
      snapshot.emplace(db_.get());
    }
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot->snapshot();
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kManifests)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string key = it->key().ToString();
      if (IsManifestOnly(ro, key)) continue;  // none of its chunks belongs here
      Result<std::shared_ptr<const Manifest>> m = ReadManifest(ro, key);
      // A version that no longer parses still names its chunks for all we
      // know: nothing is swept until Check() has been looked at.
      if (!m.ok()) return Status::FailedPrecondition("not collecting: " + m.status().message() + " (run fsck)");
      for (size_t i = 0; i < (*m)->piece_count(); ++i) referenced.push_back((*m)->piece(i).digest);
    }
    if (!it->status().ok()) return Fault(it->status(), "listing versions");
    if (more_referenced) MERIDIAN_RETURN_IF_ERROR(more_referenced(referenced));
    std::sort(referenced.begin(), referenced.end());
    referenced.erase(std::unique(referenced.begin(), referenced.end()), referenced.end());
    report.chunks_referenced = referenced.size();

    // The chunk index and `referenced` are both in digest order: walked side by side.
    const int64_t young_after = Now() - options_.unreferenced_grace_ms;
    std::vector<Digest> unreferenced;
    auto next_ref = referenced.begin();
    it.reset(db_->NewIterator(ro, cf(kChunkIndex)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Result<Digest> d = Digest::FromBytes(AsBytes(ToView(it->key())));
      if (!d.ok()) continue;  // not a chunk's: Check() reports it
      while (next_ref != referenced.end() && *next_ref < *d) ++next_ref;
      if (next_ref != referenced.end() && *next_ref == *d) continue;
      std::optional<IndexEntry> entry = DecodeIndexEntry(ToView(it->value()));
      if (entry && entry->touched_ms > young_after) {
        ++report.chunks_young;
        continue;
      }
      unreferenced.push_back(*d);
      if (unreferenced.size() == kSweepBatchChunks) {
        MERIDIAN_RETURN_IF_ERROR(Sweep(unreferenced, young_after, report));
        unreferenced.clear();
      }
    }
    if (!it->status().ok()) return Fault(it->status(), "walking the chunk index");
    return Sweep(unreferenced, young_after, report);
  }

  // Deletes these unreferenced chunks, each under its lock and after reading
  // its entry again: one uploaded or named present since is young, one a
  // commit begun since names is kept.
  Status Sweep(std::span<const Digest> unreferenced, int64_t young_after, CollectReport& report) {
    rocksdb::WriteOptions unsynced;  // a deletion lost to a crash is made again by the next collection
    for (const Digest& d : unreferenced) {
      std::lock_guard chunk_lock(ChunkMutex(d));
      // Held to the deletion: a commit that keeps `d` either did so before
      // (skipped here) or finds it deleted when it verifies (and refuses).
      std::lock_guard lock(collect_mu_);
      if (kept_chunks_.contains(d)) continue;
      const std::string key = ChunkKey(d);
      std::string value;
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kChunkIndex), key, &value);
      if (s.IsNotFound()) continue;
      if (!s.ok()) return Fault(s, "reading chunk " + d.ToString());
      std::optional<IndexEntry> entry = DecodeIndexEntry(value);
      if (entry && entry->touched_ms > young_after) {
        ++report.chunks_young;
        continue;
      }
      rocksdb::WriteBatch batch;
      s = batch.Delete(cf(kChunks), key);
      if (s.ok()) s = batch.Delete(cf(kChunkIndex), key);
      if (s.ok()) s = db_->Write(unsynced, &batch);
      if (!s.ok()) return Fault(s, "deleting chunk " + d.ToString());
      chunks_.Erase(key);
      ++report.chunks_deleted;
      report.bytes_deleted += entry ? entry->size : 0;
    }
    return Status::Ok();
  }

  // Compacts the chunks' tables, so deleted chunks' blobs count as garbage
  // (blob files holding nothing else are removed), then rewrites the blob
  // files when garbage passes kBlobGarbageRewriteShare of them.
  Status ReturnSpace(CollectReport& report) {
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
    for (Cf which : {kChunkIndex, kChunks}) {
      rocksdb::Status s = db_->CompactRange(co, cf(which), nullptr, nullptr);
      if (!s.ok()) return Fault(s, std::string("compacting ") + kCfNames[which]);
    }
    BlobBytes blobs = BlobGarbage();
    if (blobs.total == 0 || static_cast<double>(blobs.garbage) <= kBlobGarbageRewriteShare * static_cast<double>(blobs.total)) {
      return Status::Ok();
    }
    co.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
    co.blob_garbage_collection_age_cutoff = 1.0;
    rocksdb::Status s = db_->CompactRange(co, cf(kChunks), nullptr, nullptr);
    if (!s.ok()) return Fault(s, "rewriting blob files");
    report.blobs_rewritten = true;
    return Status::Ok();
  }

  struct BlobBytes {
    uint64_t garbage = 0;
    uint64_t total = 0;
  };
  BlobBytes BlobGarbage() {
    rocksdb::ColumnFamilyMetaData meta;
    db_->GetColumnFamilyMetaData(cf(kChunks), &meta);
    BlobBytes b;
    for (const rocksdb::BlobMetaData& f : meta.blob_files) {
      b.garbage += f.garbage_blob_bytes;
      b.total += f.total_blob_bytes;
    }
    return b;
  }

  // Waits (at most kCloseFlushWait) until no memtable waits to be flushed
  // and no flush runs, or a flush fails: RocksDB 7.8's Flush() of several
  // column families may return before a flush it scheduled has run, and
  // closing cancels it.
  void WaitForFlushes() {
    const auto deadline = std::chrono::steady_clock::now() + kCloseFlushWait;
    uint64_t errors_before = 0;
    db_->GetIntProperty(rocksdb::DB::Properties::kBackgroundErrors, &errors_before);
    auto busy = [&] {
      uint64_t v = 0;
      if (db_->GetIntProperty(rocksdb::DB::Properties::kBackgroundErrors, &v) && v > errors_before) return false;
      if (db_->GetIntProperty(rocksdb::DB::Properties::kNumRunningFlushes, &v) && v > 0) return true;
      for (rocksdb::ColumnFamilyHandle* h : handles_) {
        if (db_->GetIntProperty(h, rocksdb::DB::Properties::kNumImmutableMemTable, &v) && v > 0) return true;
      }
      return false;
    };
    while (busy() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // A chunk's bytes, decoded and checked as `rehash` says. A stored copy that
  // fails is counted and dropped (see DropDamaged).
  // A copy that fails to decode or verify is dropped (DropDamaged) unless
  // the store is read-only or `damaged` says to keep it.
  Result<Bytes> ReadChunk(const Digest& digest, Rehash rehash, Damaged damaged = Damaged::kDrop) {
    rocksdb::PinnableSlice stored;
    rocksdb::Status s = db_->Get(ChunkReads(), cf(kChunks), ChunkKey(digest), &stored);
    if (s.IsNotFound()) return Status::NotFound("chunk " + digest.ToString() + " is not stored");
    if (!s.ok()) return Fault(s, "reading chunk " + digest.ToString());
    Result<Bytes> data = DecodeChunk(digest, ToView(stored), rehash);
    if (!data.ok()) {
      faults_.Count(data.status());
      if (!options_.read_only && damaged == Damaged::kDrop) DropDamaged(digest);
    }
    return data;
  }

  // Writes `batch` as durably as `durability` says (a synced write is not
  // synced when sync_writes is false, but is in the WAL all the same). A
  // write refused keeps nothing of the batch (a WAL record cut short is
  // dropped on replay). A synced write makes every write before it durable
  // first: it flushes the chunks written unlogged (FlushChunks), and its
  // sync syncs every WAL record before its own.
  Status Write(rocksdb::WriteBatch& batch, const std::string& what, Durability durability = Durability::kSynced) {
    if (durability == Durability::kSynced) MERIDIAN_RETURN_IF_ERROR(FlushChunks());
    rocksdb::WriteOptions options = durability == Durability::kSynced ? write_options_ : rocksdb::WriteOptions();
    options.disableWAL = durability == Durability::kUnlogged;
    rocksdb::Status s = db_->Write(options, &batch);
    if (!s.ok()) return Fault(s, what);
    return Status::Ok();
  }

  // A chunk written unlogged whose marker is still there.
  struct UnflushedChunk {
    Digest digest;
    rocksdb::SequenceNumber written;  // at least its write's sequence number
  };

  // Notes a chunk just written unlogged, and forgets the markers of those
  // that RocksDB has flushed since (it flushes a full memtable on its own,
  // in the background).
  Status NoteUnflushed(const Digest& digest) {
    // At least the write's sequence number: it is visible now.
    const rocksdb::SequenceNumber written = db_->GetLatestSequenceNumber();
    std::vector<UnflushedChunk> flushed;
    {
      std::lock_guard lock(unflushed_mu_);
      unflushed_.push_back({digest, written});
      // Pruned once per flush RocksDB reports, not at every upload.
      if (flushes_->chunks_flushed_through() == unflushed_checked_through_) return Status::Ok();
      flushed = TakeFlushed();
    }
    return Unmark(flushed);
  }

  // Takes out of unflushed_ (unflushed_mu_ held) the chunks RocksDB has
  // flushed past. Memtables are flushed in order: every chunk written at or
  // before the sequence number ChunkFlushes gives is in table and blob files.
  std::vector<UnflushedChunk> TakeFlushed() {
    const rocksdb::SequenceNumber through = flushes_->chunks_flushed_through();
    unflushed_checked_through_ = through;
    auto still = std::partition(unflushed_.begin(), unflushed_.end(),
                                [through](const UnflushedChunk& c) { return c.written > through; });
    std::vector<UnflushedChunk> flushed(still, unflushed_.end());
    unflushed_.erase(still, unflushed_.end());
    return flushed;
  }

  // Makes the chunks written unlogged so far durable: flushes those RocksDB
  // has not flushed already to table and blob files, then removes their
  // markers. RocksDB syncs the WAL files that hold their index entries and
  // markers first (it does before any flush when a database has several
  // column families), so a chunk on disk always has its entry. One at a
  // time, so that a caller finding nothing left to flush returns only once a
  // flush another began is done.
  Status FlushChunks() {
    std::lock_guard flush_lock(chunk_flush_mu_);
    std::vector<UnflushedChunk> flushed, flushing;
    {
      std::lock_guard lock(unflushed_mu_);
      flushed = TakeFlushed();
      flushing.swap(unflushed_);
    }
    if (!flushing.empty()) {
      rocksdb::FlushOptions flush;  // waits for it
      flush.allow_write_stall = true;
      if (rocksdb::Status s = db_->Flush(flush, cf(kChunks)); !s.ok()) {
        std::lock_guard lock(unflushed_mu_);  // for the next one to try again
        unflushed_.insert(unflushed_.end(), flushed.begin(), flushed.end());
        unflushed_.insert(unflushed_.end(), flushing.begin(), flushing.end());
        return Fault(s, "flushing chunks");
      }
      flushed.insert(flushed.end(), flushing.begin(), flushing.end());
    }
    return Unmark(flushed);
  }

  // Removes the markers of chunks now flushed: in the WAL, unsynced, as a
  // marker that outlives its chunk's flush only costs the next open a read.
  Status Unmark(std::span<const UnflushedChunk> flushed) {
    if (flushed.empty()) return Status::Ok();
    rocksdb::WriteBatch unmark;
    for (const UnflushedChunk& c : flushed) {
      if (rocksdb::Status bs = unmark.Delete(cf(kState), UnflushedChunkKey(ChunkKey(c.digest))); !bs.ok()) {
        return Fault(bs, "batching chunk markers");
      }
    }
    return Write(unmark, "removing chunk markers", Durability::kUnsynced);
  }

  // Drops the index entries of chunks a crash lost before FlushChunks made
  // them durable (their markers say which to check), so that MissingChunks
  // names them again. Run when a writable store opens; best effort: a
  // failure leaves the markers for the next open.
  void DropLostUploads() {
    rocksdb::ReadOptions ro;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kState)));
    rocksdb::WriteBatch batch;
    for (it->Seek(kUnflushedChunkPrefix); it->Valid() && it->key().starts_with(kUnflushedChunkPrefix); it->Next()) {
      const rocksdb::Slice key(it->key().data() + kUnflushedChunkPrefix.size(),
                               it->key().size() - kUnflushedChunkPrefix.size());
      rocksdb::PinnableSlice chunk;
      rocksdb::Status s = db_->Get(ChunkReads(), cf(kChunks), key, &chunk);
      if (s.IsNotFound()) {
        s = batch.Delete(cf(kChunkIndex), key);
      } else if (!s.ok()) {
        return;  // unreadable for now: the next open checks it again
      }
      if (s.ok()) s = batch.Delete(cf(kState), it->key());
      if (!s.ok()) return;
    }
    if (it->status().ok() && batch.Count() > 0) (void)Write(batch, "dropping uploads lost to a crash");
  }

  // Deletes `digest`'s chunk and index entry if the stored copy still fails
  // to verify (a PutChunk may have repaired it since it was read), so that
  // MissingChunks names it and a publisher, or a region's follower, sends it
  // again; then tells StoreOptions::on_damaged_chunk. Best effort: a failure
  // leaves the damaged copy, found again by the next read.
  bool DropDamaged(const Digest& digest) {
    const std::string key = ChunkKey(digest);
    Status damage;
    {
      std::lock_guard lock(ChunkMutex(digest));
      rocksdb::PinnableSlice stored;
      rocksdb::Status s = db_->Get(ChunkReads(), cf(kChunks), key, &stored);
      if (!s.ok()) return false;  // gone already, or unreadable for another reason
      damage = DecodeChunk(digest, ToView(stored)).status();
      if (damage.ok()) return false;
      rocksdb::WriteBatch batch;
      s = batch.Delete(cf(kChunks), key);
      if (s.ok()) s = batch.Delete(cf(kChunkIndex), key);
      Status dropped = s.ok() ? Write(batch, "dropping damaged chunk " + digest.ToString())
                              : Fault(s, "batching the drop of chunk " + digest.ToString());
      if (!dropped.ok()) return false;
      chunks_.Erase(key);
    }
    if (options_.on_damaged_chunk) options_.on_damaged_chunk(digest, damage);
    return true;
  }

  // A RocksDB failure, counted as a fault unless it is a key not found.
  Status Fault(const rocksdb::Status& s, const std::string& what) {
    Status st = FromRocks(s, what);
    return s.IsNotFound() ? st : faults_.Count(std::move(st));
  }
  // Whether the version at `key` was committed Holding::kManifestOnly.
  bool IsManifestOnly(const rocksdb::ReadOptions& ro, const std::string& key) {
    std::string marker;
    return db_->Get(ro, cf(kState), ManifestOnlyKey(key), &marker).ok();
  }

  const std::string dir_;
  DirClaim claim_;       // released after the database is closed (members go in reverse order)
  ReadLock read_lock_;   // held by a read-only store only
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // indexed by Cf
  const StoreOptions options_;
  std::shared_ptr<const ChunkFlushes> flushes_;
  rocksdb::WriteOptions write_options_;
  const Clock& clock_;
  std::mutex commit_mu_;  // serialises CommitVersion and DeleteVersion
  // Commits hold the gate shared; a collection takes it to begin, so that
  // every commit is in its snapshot or began after it (KeepForCollection).
  std::shared_mutex collect_gate_;
  std::mutex collect_run_mu_;  // one collection at a time
  std::mutex collect_mu_;      // guards collecting_ and kept_chunks_
  bool collecting_ = false;
  std::unordered_set<Digest> kept_chunks_;  // chunks of commits begun while collecting
  // Serialise rewriting and dropping one chunk (PutChunk, DropDamaged), by
  // digest: uploads of other chunks go on side by side (and their synced
  // writes are committed together).
  std::array<std::mutex, kChunkMutexes> chunk_mu_;
  static size_t StripeOf(const Digest& digest) { return digest.bytes()[0] % kChunkMutexes; }
  std::mutex& ChunkMutex(const Digest& digest) { return chunk_mu_[StripeOf(digest)]; }
  std::mutex resume_mu_;  // serialises Resume(): RocksDB answers a second, concurrent one Busy
  std::mutex chunk_flush_mu_;  // one FlushChunks at a time
  std::mutex unflushed_mu_;  // guards the two below
  std::vector<UnflushedChunk> unflushed_;  // chunks written unlogged, not known to be flushed (their markers are there)
  rocksdb::SequenceNumber unflushed_checked_through_ = 0;  // ChunkFlushes' figure when unflushed_ was last pruned
  ManifestCache manifests_;
  // The bytes a chunk holds beyond its vector object.
  struct ChunkBytes {
    uint64_t operator()(const Bytes& b) const { return b.capacity(); }
  };
  SharedCache<Bytes, ChunkBytes> chunks_;  // verified chunks, for ServeChunk
  std::atomic<uint64_t> chunk_cache_hits_{0};
  std::atomic<uint64_t> manifest_parses_{0};  // stored envelopes parsed: cache misses, and Check()
  FaultCounts faults_;
};

// Presence lookups ask mostly for absent digests on a fresh upload: a bloom
// filter answers those without reading a data block.
rocksdb::ColumnFamilyOptions ChunkIndexOptions() {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kChunkBloomBitsPerKey));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

// RocksDB rates a failed flush, compaction or memtable switch as fatal when
// paranoid checks are on: only closing and reopening the database would clear
// it. A file that could not be opened or written there (descriptors exhausted,
// disk full) loses nothing, though: the memtables and the WAL still hold what
// was written, a compaction's inputs are still there, a new WAL that could not
// be made holds nothing. Such an I/O fault is rated hard instead, so writes
// stop until Store::Health's Resume() flushes again. A failed WAL append or
// sync (a record may be half written) and corruption stay fatal, but for a
// full disk, which RocksDB itself rates hard (Resume() switches to a new WAL).
//
// A full disk is left to RocksDB's own recovery: its SstFileManager resumes
// the store as soon as a memtable's worth of space is free, checking every
// 5 s, and meanwhile answers Resume() Busy. Resuming from outside instead
// (Resume() from Health() or a refused write) could hang in RocksDB 7.8: a
// flush queued when the error struck is dropped by the flush thread (writes
// stopped, no recovery under way) yet stays queued, so Resume()'s flush of
// that column family is never scheduled and waits for ever. Other faults
// get no automatic recovery (RocksDB would mark one under way and never run
// it, answering Resume() Busy for good): Health() resumes those, on the
// daemon's timer thread, never a request's.
//
// A compaction that finds the disk full is rated soft: writes and background
// work go on, so there is nothing to recover from. It gets no automatic
// recovery either: RocksDB 7.8 recovers from a soft error by clearing it
// without waking a Close() that waits for the recovery to end, so a store
// closed meanwhile would hang for good (seen as a store_power_cut run that
// never ended).
class RecoverableIoFaults final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status bg_error, bool* auto_recovery) override {
    *auto_recovery = bg_error.IsNoSpace() && bg_error.severity() >= rocksdb::Status::kHardError;
  }
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* bg_error) override {
    using Reason = rocksdb::BackgroundErrorReason;
    const bool nothing_half_written = reason == Reason::kFlush || reason == Reason::kFlushNoWAL ||
                                      reason == Reason::kCompaction || reason == Reason::kMemTable;
    if (nothing_half_written && bg_error->IsIOError() && bg_error->severity() > rocksdb::Status::kHardError) {
      *bg_error = rocksdb::Status(*bg_error, rocksdb::Status::kHardError);
    }
  }
};

rocksdb::ColumnFamilyOptions ChunksOptions() {
  rocksdb::ColumnFamilyOptions o;
  // Values are zstd frames already: compressing them again only costs CPU.
  o.compression = rocksdb::kNoCompression;
  o.enable_blob_files = true;
  o.min_blob_size = kChunkBlobBytesMin;
  o.blob_compression_type = rocksdb::kNoCompression;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kChunkBloomBitsPerKey));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

// StoreOptions::memtable_bytes, or a 32nd of the file system holding `dir`
// within [kMemtableBytesMin, kMemtableBytesMax] (the most when its size is unknown).
uint64_t MemtableBytes(const std::string& dir, const StoreOptions& options) {
  if (options.memtable_bytes > 0) return options.memtable_bytes;
  struct statvfs fs;
  if (statvfs(dir.c_str(), &fs) != 0) return kMemtableBytesMax;
  const uint64_t fs_bytes = uint64_t{fs.f_blocks} * fs.f_frsize;
  return std::clamp(fs_bytes / kMemtableFsShare, kMemtableBytesMin, kMemtableBytesMax);
}

Result<std::unique_ptr<Store>> OpenRocksStore(const std::string& dir, const StoreOptions& options) {
  if (options.zstd_level < ZSTD_minCLevel() || options.zstd_level > ZSTD_maxCLevel()) {
    return Status::InvalidArgument("zstd level " + std::to_string(options.zstd_level) + " outside " +
                                   std::to_string(ZSTD_minCLevel()) + ".." + std::to_string(ZSTD_maxCLevel()));
  }
  if (options.create_if_missing && !options.read_only) {
    MERIDIAN_RETURN_IF_ERROR(CreateDirectories(dir));
  } else {
    std::error_code ec;
    bool exists = std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec);
    if (ec) return Status::IOError("looking for a store in " + dir + ": " + ec.message());
    if (!exists) return Status::NotFound("no store in " + dir);
  }

  std::error_code ec;
  const std::string canonical = std::filesystem::weakly_canonical(dir, ec).string();
  if (ec) return Status::IOError("resolving " + dir + ": " + ec.message());
  if (!OpenDirs::Claim(canonical)) {
    return Status::FailedPrecondition("store " + dir + " is in use by another Store of this process, which holds its lock");
  }
  DirClaim claim(canonical);
  ReadLock read_lock;
  if (options.read_only) {
    Result<ReadLock> taken = ReadLock::Take(dir);
    if (!taken.ok()) return taken.status();
    read_lock = std::move(*taken);
  }

  const uint64_t memtable_bytes = MemtableBytes(dir, options);
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.max_open_files = options.max_open_files;
  if (options.env != nullptr) db_options.env = options.env;
  db_options.listeners.push_back(std::make_shared<RecoverableIoFaults>());
  auto flushes = std::make_shared<ChunkFlushes>();
  db_options.listeners.push_back(flushes);
  db_options.info_log = std::make_shared<InfoLog>(options.read_only ? "" : dir);
  // What a full disk needs freed to resume, or to open after a crash, is what
  // the memtables and the WAL hold: both are bounded by memtable_bytes. Left
  // to RocksDB, the WAL grows until every column family has flushed, up to
  // gigabytes, while the small ones (state, manifests) rarely fill.
  db_options.max_total_wal_size = 2 * memtable_bytes;
  // Preallocated WAL and MANIFEST space (a write buffer and 4 MiB) is taken
  // from the disk at once (ext4, tmpfs): near full it would take the room
  // the flush that resumes writes needs.
  db_options.allow_fallocate = false;
  // A store from an older build gains column families added since.
  db_options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (size_t i = 0; i < kCfCount; ++i) {
    descriptors.emplace_back(kCfNames[i], i == kChunks       ? ChunksOptions()
                                          : i == kChunkIndex ? ChunkIndexOptions()
                                                             : rocksdb::ColumnFamilyOptions());
    descriptors.back().options.write_buffer_size = memtable_bytes;
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = options.read_only ? rocksdb::DB::OpenForReadOnly(db_options, dir, descriptors, &handles, &raw)
                                        : rocksdb::DB::Open(db_options, dir, descriptors, &handles, &raw);
  if (!s.ok()) {
    // RocksDB reports its LOCK file held elsewhere as a plain IOError; name
    // the usual cause so the operator does not go looking for disk trouble.
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return Status::FailedPrecondition("store " + dir + " is in use by another process (or another Store) " +
                                        "holding its lock: " + s.ToString());
    }
    return FromRocks(s, "opening store " + dir);
  }
  StoreOptions resolved = options;
  resolved.memtable_bytes = memtable_bytes;
  return std::unique_ptr<Store>(std::make_unique<RocksStore>(dir, std::move(claim), std::move(read_lock),
                                                             std::unique_ptr<rocksdb::DB>(raw), std::move(handles),
                                                             resolved, std::move(flushes)));
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, const StoreOptions& options) {
  return Guard("opening store " + dir, [&] { return OpenRocksStore(dir, options); });
}

Status ForEachStatePage(Store& store, std::string_view prefix, size_t page_records,
                        const std::function<Status(const StateRecords& page)>& visit_page) {
  page_records = std::max<size_t>(page_records, 1);
  std::string after;
  for (;;) {
    Result<StateRecords> page = store.ScanStatePage(prefix, after, page_records);
    if (!page.ok()) return page.status();
    if (page->empty()) return Status::Ok();
    MERIDIAN_RETURN_IF_ERROR(visit_page(*page));
    if (page->size() < page_records) return Status::Ok();
    after = std::move(page->back().first);
  }
}

Status ForEachState(Store& store, std::string_view prefix,
                    const std::function<Status(const std::string& key, const std::string& value)>& visit,
                    size_t page_records) {
  return ForEachStatePage(store, prefix, page_records, [&](const StateRecords& page) -> Status {
    for (const auto& [key, value] : page) MERIDIAN_RETURN_IF_ERROR(visit(key, value));
    return Status::Ok();
  });
}

}  // namespace meridian
