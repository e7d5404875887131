// Tests of store/: chunks verified on the way in and out, atomic version
// commits, ordering, state, the consistency check, all on a real RocksDB in a
// temporary directory. Damage is injected by opening the RocksDB directly.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "base/encoding.h"
#include "base/file.h"
#include "signing/signing.h"
#include "store/group_commit.h"
#include "store/manifest_cache.h"
#include "store/store.h"
#include "tests/raw_db.h"
#include "tests/tmpfs.h"
#include "tests/verified_manifest.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

// A fresh directory under /tmp, removed with everything in it afterwards.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/meridian-store-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

StoreOptions Fast() {
  StoreOptions o;
  o.sync_writes = false;  // the tests do not pull the plug
  return o;
}

std::unique_ptr<Store> OpenOrDie(const std::string& dir, const StoreOptions& options = Fast()) {
  Result<std::unique_ptr<Store>> s = Store::Open(dir, options);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(s).value();
}

// Incompressible bytes from a fixed seed, so chunks land in blob files.
Bytes RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// A model version cut into `n` chunks of 64 KiB.
Artifact MakeArtifact(const std::string& name, const std::string& version, size_t n, uint32_t seed) {
  std::vector<Bytes> chunks;
  for (size_t i = 0; i < n; ++i) chunks.push_back(RandomBytes(64 << 10, seed + static_cast<uint32_t>(i)));
  return ArtifactOf(name, version, std::move(chunks));
}

void CommitOrDie(Store& store, const Artifact& a) {
  PutAll(store, a);
  Status s = store.CommitVersion(Verified(a.manifest)).status();
  INFO(s.ToString());
  REQUIRE(s.ok());
}

bool AnyFaultMentions(const CheckReport& r, const std::string& text) {
  for (const std::string& f : r.faults) {
    if (f.find(text) != std::string::npos) return true;
  }
  return false;
}


std::string Zstd(ByteSpan data) {
  std::string frame(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(frame.data(), frame.size(), data.data(), data.size(), 1);
  REQUIRE_FALSE(ZSTD_isError(n));
  frame.resize(n);
  return frame;
}

}  // namespace

TEST_CASE("uploaded chunks wait in memory, not in the WAL, until a synced write flushes them to blob files") {
  TempDir dir;
  StoreOptions options = Fast();
  options.memtable_bytes = 64 << 20;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), options);
  const StoreStats before = store->Stats();
  // 4 MiB of incompressible chunks: far below the half memtable (32 MiB)
  // past which uploads flush on their own.
  constexpr size_t kChunks = 64, kChunkBytes = 64 << 10;
  for (size_t i = 0; i < kChunks; ++i) {
    Bytes chunk = RandomBytes(kChunkBytes, 100 + i);
    REQUIRE(store->PutChunk(Digest::Of(chunk), chunk).ok());
  }
  const StoreStats uploaded = store->Stats();
  CHECK(uploaded.sst_bytes + uploaded.blob_bytes == before.sst_bytes + before.blob_bytes);
  CHECK(uploaded.memtable_bytes >= kChunks * kChunkBytes);
  // The WAL holds their index entries only (tens of bytes each).
  CHECK(uploaded.wal_bytes < before.wal_bytes + kChunks * 256);
  CHECK(uploaded.disk_bytes == uploaded.sst_bytes + uploaded.blob_bytes + uploaded.wal_bytes);

  REQUIRE(store->WriteState({{"k", "v"}}).ok());  // any synced write
  const StoreStats flushed = store->Stats();
  CHECK(flushed.blob_bytes >= before.blob_bytes + kChunks * kChunkBytes);
  CHECK(flushed.disk_bytes == flushed.sst_bytes + flushed.blob_bytes + flushed.wal_bytes);
  CHECK(flushed.disk_bytes >= before.disk_bytes + kChunks * kChunkBytes);
  CHECK(flushed.fs_avail_bytes > 0);
  CHECK(flushed.errors.empty());
}

// Each uploaded chunk has a marker until it is known to be on disk (what
// the next open checks after a crash): RocksDB's own flushes of full
// memtables retire them as uploads go on, not only a commit's flush.
TEST_CASE("uploads past a memtable are flushed in the background, and their markers retired") {
  TempDir dir;
  StoreOptions options = Fast();
  options.memtable_bytes = 1 << 20;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), options);
  constexpr size_t kChunks = 256, kChunkBytes = 64 << 10;  // 16 memtables' worth
  for (size_t i = 0; i < kChunks; ++i) {
    Bytes chunk = RandomBytes(kChunkBytes, 7000 + i);
    REQUIRE(store->PutChunk(Digest::Of(chunk), chunk).ok());
  }
  Result<StateRecords> marked = store->ScanState("unflushed-chunk/");
  REQUIRE(marked.ok());
  CHECK(marked->size() > 0);              // the last ones, in the memtable still
  CHECK(marked->size() <= kChunks / 4);   // RocksDB holds back writes past two full memtables
  CHECK(store->Stats().blob_bytes >= (kChunks * kChunkBytes) / 2);
  REQUIRE(store->WriteState({{"k", "v"}}).ok());  // a synced write flushes the rest
  marked = store->ScanState("unflushed-chunk/");
  REQUIRE(marked.ok());
  CHECK(marked->empty());
  CHECK(store->Check().clean());
}

TEST_CASE("chunks round-trip, put is idempotent, big chunks go to blob files") {
  TempDir dir;
  Bytes random = RandomBytes(200 << 10, 1);
  Bytes zeros(kChunkBytesMax, 0);
  Bytes tiny = ToBytes("x");
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    for (const Bytes* b : {&random, &zeros, &tiny}) {
      Digest d = Digest::Of(*b);
      CHECK_FALSE(*store->HasChunk(d));
      REQUIRE(store->PutChunk(d, *b).ok());
      REQUIRE(store->PutChunk(d, *b).ok());
      CHECK(*store->HasChunk(d));
      Result<Bytes> back = store->GetChunk(d);
      REQUIRE(back.ok());
      CHECK(*back == *b);
    }
    CHECK(store->Stats().chunks >= 1);
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Result<Bytes> back = store->GetChunk(Digest::Of(random));
  REQUIRE(back.ok());
  CHECK(*back == random);
  CHECK(store->Stats().disk_bytes > 0);
  bool blob_file = false;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) blob_file |= e.path().extension() == ".blob";
  CHECK(blob_file);
  CHECK(store->GetChunk(Digest::Of("never stored")).status().code() == Status::Code::kNotFound);
}

TEST_CASE("a chunk whose bytes do not match its digest is refused and not stored") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Digest claimed = Digest::Of("the real content");
  Status s = store->PutChunk(claimed, AsBytes("other content"));
  CHECK(s.code() == Status::Code::kCorruption);
  CHECK_FALSE(*store->HasChunk(claimed));
  CHECK(store->GetChunk(claimed).status().code() == Status::Code::kNotFound);
  CHECK(store->PutChunk(Digest::Of(""), Bytes()).code() == Status::Code::kInvalidArgument);
  Bytes too_big(kChunkBytesMax + 1, 7);
  CHECK(store->PutChunk(Digest::Of(too_big), too_big).code() == Status::Code::kResourceExhausted);
  CHECK(store->Stats().errors.empty());  // the caller's mistakes, not the store's faults
  CHECK(store->Check().clean());
}

TEST_CASE("a damaged chunk: Check names it, a read is Corruption and drops it, a re-put restores it") {
  TempDir dir;
  Bytes good = RandomBytes(64 << 10, 2);
  Digest d = Digest::Of(good);
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    REQUIRE(store->PutChunk(d, good).ok());
    REQUIRE(store->Check().clean());
  }
  std::string declares_too_much = Zstd(Bytes(2 * kChunkBytesMax, 0));
  std::string other_frame = Zstd(RandomBytes(64 << 10, 3));
  std::string truncated = Zstd(good).substr(0, 1000);
  std::string not_zstd = "not a zstd frame at all";
  for (const std::string* bad : {&other_frame, &declares_too_much, &truncated, &not_zstd}) {
    { RawDb(dir.path()).Put(RawDb::kChunks, RawDb::Key(d), *bad); }
    std::vector<std::pair<Digest, Status>> told;
    StoreOptions options = Fast();
    options.on_damaged_chunk = [&](const Digest& digest, const Status& why) { told.emplace_back(digest, why); };
    std::unique_ptr<Store> store = OpenOrDie(dir.path(), options);
    CheckReport report = store->Check();
    CHECK(report.chunks_checked == 1);
    REQUIRE(report.faults.size() == 1);
    CHECK(report.faults[0].find(d.ToString()) != std::string::npos);
    CHECK(*store->HasChunk(d));  // presence is not verification
    CHECK(told.empty());         // Check only reports

    Result<Bytes> got = store->GetChunk(d);
    CHECK(got.status().code() == Status::Code::kCorruption);
    CHECK(store->Stats().errors == std::map<std::string, uint64_t>{{"corruption", 1}});
    REQUIRE(told.size() == 1);
    CHECK(told[0].first == d);
    CHECK(told[0].second.code() == Status::Code::kCorruption);
    // Dropped: it reads as not stored, so a publisher or a follower sends it again.
    CHECK_FALSE(*store->HasChunk(d));
    CHECK(store->MissingChunks(std::vector<Digest>{d}).value() == std::vector<Digest>{d});
    CHECK(store->GetChunk(d).status().code() == Status::Code::kNotFound);
    CHECK(store->Check().clean());
    REQUIRE(store->PutChunk(d, good).ok());
    Result<Bytes> repaired = store->GetChunk(d);
    REQUIRE(repaired.ok());
    CHECK(*repaired == good);
    CHECK(store->Check().clean());
    CHECK(told.size() == 1);
  }
  // A damaged copy still indexed is replaced by a re-put without a read first.
  { RawDb(dir.path()).Put(RawDb::kChunks, RawDb::Key(d), not_zstd); }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  REQUIRE(store->PutChunk(d, good).ok());
  CHECK(store->GetChunk(d).value() == good);
  CHECK(store->Check().clean());
}

TEST_CASE("serving checks a chunk by its frame's checksum; a frame without one is re-hashed") {
  TempDir dir;
  // Random bytes: zstd stores them as they are, so a flipped byte breaks no
  // structure of the frame and only a checksum finds it.
  const Bytes good = RandomBytes(64 << 10, 4), other = RandomBytes(64 << 10, 5);
  const Digest d = Digest::Of(good);
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    REQUIRE(store->PutChunk(d, good).ok());
  }
  const std::string written = RawDb(dir.path()).Get(RawDb::kChunks, RawDb::Key(d));
  REQUIRE(written.size() > 64 << 10);
  CHECK((static_cast<uint8_t>(written[4]) & 0x04) != 0);  // Content_Checksum_Flag (RFC 8878)

  // A flipped byte in a checksummed frame: found, not served, dropped.
  std::string flipped = written;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x01);
  { RawDb(dir.path()).Put(RawDb::kChunks, RawDb::Key(d), flipped); }
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    Result<std::shared_ptr<const Bytes>> served = store->ServeChunk(d);
    CHECK(served.status().code() == Status::Code::kCorruption);
    CHECK(served.status().message().find(d.ToString()) != std::string::npos);
    CHECK_FALSE(*store->HasChunk(d));
  }

  // A frame without a checksum (as an older store wrote them) is re-hashed:
  // one of other bytes is found.
  { RawDb(dir.path()).Put(RawDb::kChunks, RawDb::Key(d), Zstd(other)); }
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CHECK(store->ServeChunk(d).status().code() == Status::Code::kCorruption);
  }

  // A checksummed frame is not re-hashed to be served: even one of other
  // bytes, which only a bug could store under this digest, passes. Check and
  // GetChunk, which re-hash, find it.
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    REQUIRE(store->PutChunk(d, good).ok());  // the re-hash above dropped it
    REQUIRE(store->PutChunk(Digest::Of(other), other).ok());
  }
  {
    RawDb raw(dir.path());
    raw.Put(RawDb::kChunks, RawDb::Key(d), raw.Get(RawDb::kChunks, RawDb::Key(Digest::Of(other))));
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Result<std::shared_ptr<const Bytes>> served = store->ServeChunk(d);
  REQUIRE(served.ok());
  CHECK(**served == other);
  CHECK(AnyFaultMentions(store->Check(), d.ToString() + ": stored bytes hash to " + Digest::Of(other).ToString()));
  CHECK(store->GetChunk(d).status().code() == Status::Code::kCorruption);
}

// Flips `n` bytes 4 KiB past the middle of each of the store's blob files
// (the Store must be closed), in place: damage the way a failing disk does
// it, under RocksDB. Past the middle, as records of equal size meet there,
// and a record's header is not the chunk (reads go by offset and size).
void FlipBlobBytes(const std::string& dir, size_t n) {
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".blob") continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(e.file_size() / 2 + 4096);
    std::string bytes(n, '\0');
    f.seekg(middle);
    f.read(bytes.data(), static_cast<std::streamsize>(n));
    for (char& c : bytes) c = static_cast<char>(c ^ 0x5a);
    f.seekp(middle);
    f.write(bytes.data(), static_cast<std::streamsize>(n));
    REQUIRE(f.good());
    ++files;
  }
  REQUIRE(files > 0);
}

TEST_CASE("bytes flipped in a blob file: Check goes on past it and names the chunk and the versions it breaks; "
          "a repair drops it; a commit never skips it") {
  TempDir dir;
  // 10 MiB: a commit reads it in batches of 4 MiB.
  constexpr size_t kChunks = 160;
  Artifact a = MakeArtifact("fraud-detector", "1.0.0", kChunks, 100);
  Artifact b = MakeArtifact("fraud-detector", "2.0.0", kChunks, 100);  // the same chunks, another version
  b.manifest.created = "2026-11-25T00:00:00.000Z";
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CommitOrDie(*store, a);
    CommitOrDie(*store, b);
  }  // closing flushes: the chunks are in a blob file
  FlipBlobBytes(dir.path(), 16);
  // Which chunk the flip hit: the one that no longer reads back.
  std::vector<Digest> damaged;
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CheckReport report = store->Check();
    CHECK(report.chunks_checked == a.chunks.size());  // every chunk, past the damaged one
    for (const Bytes& c : a.chunks) {
      if (AnyFaultMentions(report, "chunk " + Digest::Of(c).ToString() + ":")) damaged.push_back(Digest::Of(c));
    }
    for (const std::string& f : report.faults) UNSCOPED_INFO(f);
    REQUIRE(damaged.size() == 1);
    const std::string one_of = ": 1 of " + std::to_string(kChunks) + " chunks damaged: " + damaged[0].ToString();
    CHECK(AnyFaultMentions(report, "fraud-detector@1.0.0" + one_of));
    CHECK(AnyFaultMentions(report, "fraud-detector@2.0.0" + one_of));
    CHECK(report.faults.size() == 3);
    CHECK(report.chunks_dropped == 0);

    // A version of the same chunks in another order, the damaged one in the
    // second 4 MiB a commit reads: the commit names that chunk, no other.
    const size_t at = static_cast<size_t>(
        std::find_if(a.chunks.begin(), a.chunks.end(), [&](const Bytes& c) { return Digest::Of(c) == damaged[0]; }) -
        a.chunks.begin());
    std::vector<Bytes> chunks = a.chunks;
    std::rotate(chunks.begin(), chunks.begin() + static_cast<ptrdiff_t>((at + kChunks - 100) % kChunks), chunks.end());
    const Artifact rotated = ArtifactOf("fraud-detector", "3.0.0", std::move(chunks));
    REQUIRE(rotated.manifest.chunks[100].digest == damaged[0]);
    Status refused = store->CommitVersion(Verified(rotated.manifest)).status();
    CHECK(refused.code() == Status::Code::kFailedPrecondition);
    CHECK_THAT(refused.message(), Catch::Contains("1 of " + std::to_string(kChunks) + " chunks missing: " +
                                                   damaged[0].ToString() + " (stored damaged, dropped"));

    // Committing the same release again reads every byte: the damaged chunk
    // is found, dropped and asked for, not skipped.
    Status again = store->CommitVersion(Verified(a.manifest)).status();
    CHECK(again.code() == Status::Code::kFailedPrecondition);
    CHECK(again.message().find(damaged[0].ToString()) != std::string::npos);
    CHECK(store->MissingChunks(damaged).value() == damaged);
    PutAll(*store, a);  // sent again: into a blob file of its own once closed
    REQUIRE(store->CommitVersion(Verified(a.manifest)).ok());
    CHECK(store->Check().clean());
  }
  FlipBlobBytes(dir.path(), 16);  // the new copy is damaged too (the old one is garbage)
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CheckReport report = store->Check(CheckMode::kRepair);
    CHECK(AnyFaultMentions(report, "chunk " + damaged[0].ToString() + ":"));
    CHECK(report.chunks_dropped == 1);
    CheckReport after = store->Check();
    // Now only missing, not damaged: the versions name what to send again.
    CHECK_FALSE(AnyFaultMentions(after, "damaged"));
    CHECK(AnyFaultMentions(after, "fraud-detector@1.0.0: "));
    PutAll(*store, a);
    CHECK(store->Check().clean());
    CHECK(store->CommitVersion(Verified(a.manifest)).ok());
  }
}

TEST_CASE("MissingChunks answers the absent digests in the order given") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  std::vector<Digest> all;
  for (int i = 0; i < 150; ++i) {  // more than one presence batch
    std::string data = "chunk " + std::to_string(i);
    all.push_back(Digest::Of(data));
    if (i % 3 == 0) REQUIRE(store->PutChunk(all.back(), AsBytes(data)).ok());
  }
  all.push_back(all[1]);  // listed twice, missing twice
  Result<std::vector<Digest>> missing = store->MissingChunks(all);
  REQUIRE(missing.ok());
  std::vector<Digest> expected;
  for (size_t i = 0; i < all.size(); ++i) {
    if (i >= 150 || i % 3 != 0) expected.push_back(all[i]);
  }
  CHECK(*missing == expected);
  CHECK(store->MissingChunks({}).value().empty());
}

TEST_CASE("a version with a missing chunk is not committed") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Artifact a = MakeArtifact("fraud-detector", "1.0.0", 4, 10);
  for (size_t i = 0; i < 3; ++i) REQUIRE(store->PutChunk(a.manifest.chunks[i].digest, a.chunks[i]).ok());
  Status s = store->CommitVersion(Verified(a.manifest)).status();
  CHECK(s.code() == Status::Code::kFailedPrecondition);
  CHECK(s.message().find(a.manifest.chunks[3].digest.ToString()) != std::string::npos);
  CHECK(store->GetEnvelope("fraud-detector", "1.0.0").status().code() == Status::Code::kNotFound);
  CHECK(store->ListVersions("fraud-detector").status().code() == Status::Code::kNotFound);
  CHECK(store->FindArtifact(a.manifest.digest).status().code() == Status::Code::kNotFound);
  CHECK(store->ListModels().value().empty());
  CHECK(store->Stats().versions == 0);
}

TEST_CASE("a version held elsewhere: only its manifest is kept, and Check does not look for its chunks") {
  TempDir dir;
  Artifact a = MakeArtifact("ocr-br", "1.0.0", 3, 40);
  a.manifest.regions = {"br"};
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    // Not one chunk is stored: a commit with bytes is refused, a manifest-only one is not.
    CHECK(store->CommitVersion(Verified(a.manifest)).status().code() == Status::Code::kFailedPrecondition);
    CHECK(store->CommitVersion(Verified(a.manifest), Store::Holding::kManifestOnly).value() == true);
    CHECK(store->CommitVersion(Verified(a.manifest), Store::Holding::kManifestOnly).value() == false);  // the same again
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  CHECK(*store->GetManifest("ocr-br", "1.0.0").value() == a.manifest);
  CHECK(store->ListVersions("ocr-br").value() == std::vector<std::string>{"1.0.0"});
  // No index entry names its artifact, and no chunk is stored.
  CHECK(store->FindArtifact(a.manifest.digest).status().code() == Status::Code::kNotFound);
  for (const ChunkRef& c : a.manifest.chunks) CHECK(store->GetChunk(c.digest).status().code() == Status::Code::kNotFound);
  CheckReport report = store->Check();
  INFO((report.faults.empty() ? std::string() : report.faults[0]));
  CHECK(report.clean());
  CHECK(report.manifests_checked == 1);
  // The same check finds a version with bytes that lost its chunks.
  Artifact b = MakeArtifact("ocr", "1.0.0", 2, 50);
  CommitOrDie(*store, b);
  CHECK(store->Check().clean());
}

TEST_CASE("a committed version is visible after reopening") {
  TempDir dir;
  Artifact a = MakeArtifact("fraud-detector", "1.2.0", 3, 20);
  a.manifest.regions = {"sg", "br"};
  a.manifest.annotations = {{"trained", "2026-11-01"}};
  const std::string envelope = Verified(a.manifest).envelope();
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path(), StoreOptions());  // synced writes
    CommitOrDie(*store, a);
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), StoreOptions());
  CHECK(store->GetEnvelope("fraud-detector", "1.2.0").value() == envelope);
  CHECK(*store->GetManifest("fraud-detector", "1.2.0").value() == a.manifest);
  CHECK(store->ListModels().value() == std::vector<std::string>{"fraud-detector"});
  CHECK(store->Stats().versions == 1);
  for (const ChunkRef& c : a.manifest.chunks) CHECK(store->GetChunk(c.digest).ok());
  CHECK(store->GetManifest("fraud-detector", "1.2.1").status().code() == Status::Code::kNotFound);
  CHECK(store->GetEnvelope("../etc", "1.2.0").status().code() == Status::Code::kInvalidArgument);
  CHECK(store->GetManifest("fraud-detector", "1.2").status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("re-committing a version: same content is a no-op, other content AlreadyExists") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Artifact a = MakeArtifact("kiosk-vision", "2.0.0", 2, 30);
  CommitOrDie(*store, a);
  const std::string first = Verified(a.manifest).envelope();
  CHECK(store->CommitVersion(Verified(a.manifest)).value() == false);  // nothing new made visible

  // Same manifest, differently signed envelope: OK, the first envelope stays.
  REQUIRE(Verified(a.manifest, true).envelope() != first);
  CHECK(store->CommitVersion(Verified(a.manifest, true)).value() == false);
  CHECK(store->GetEnvelope("kiosk-vision", "2.0.0").value() == first);

  // The same release made again later (only `created` differs): the same, a retried publish.
  Manifest again = a.manifest;
  again.created = "2031-01-01T00:00:00Z";
  CHECK(store->CommitVersion(Verified(again)).value() == false);
  CHECK(store->GetEnvelope("kiosk-vision", "2.0.0").value() == first);
  CHECK(store->Stats().manifest_parses == 0);  // the stored release came from the cache each time

  Manifest other = a.manifest;
  other.annotations["note"] = "rebuilt";
  Status s = store->CommitVersion(Verified(other)).status();
  CHECK(s.code() == Status::Code::kAlreadyExists);
  CHECK(*store->GetManifest("kiosk-vision", "2.0.0").value() == a.manifest);
  CHECK(store->Stats().versions == 1);
}

TEST_CASE("racing commits of one version: exactly one wins") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Artifact a = MakeArtifact("pos-ranker", "3.1.0", 2, 50);
  PutAll(*store, a);
  constexpr int kThreads = 8;
  std::vector<Manifest> manifests(kThreads, a.manifest);
  std::vector<VerifiedManifest> verified;
  for (int i = 0; i < kThreads; ++i) {
    manifests[i].annotations["writer"] = std::to_string(i);
    verified.push_back(Verified(manifests[i]));
  }
  std::atomic<int> ok{0}, exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      // Concurrent puts of the same chunk are harmless too.
      if (!store->PutChunk(a.manifest.chunks[0].digest, a.chunks[0]).ok()) return;
      Status s = store->CommitVersion(verified[i]).status();
      if (s.ok()) ++ok;
      if (s.code() == Status::Code::kAlreadyExists) ++exists;
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(ok == 1);
  CHECK(exists == kThreads - 1);
  CHECK(store->Check().clean());
}

TEST_CASE("versions list in SemVer order, models in lexical order") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  uint32_t seed = 100;
  for (const char* v : {"1.10.0", "1.9.0", "1.0.0", "1.0.0-rc.1", "2.0.0", "1.9.1", "1.0.0-alpha"}) {
    CommitOrDie(*store, MakeArtifact("fraud-detector", v, 1, seed++));
  }
  CommitOrDie(*store, MakeArtifact("fraud", "0.1.0", 1, seed++));
  CommitOrDie(*store, MakeArtifact("anomaly", "0.0.1", 1, seed++));
  CHECK(store->ListVersions("fraud-detector").value() ==
        std::vector<std::string>{"1.0.0-alpha", "1.0.0-rc.1", "1.0.0", "1.9.0", "1.9.1", "1.10.0", "2.0.0"});
  CHECK(store->ListVersions("fraud").value() == std::vector<std::string>{"0.1.0"});
  CHECK(store->ListModels().value() == std::vector<std::string>{"anomaly", "fraud", "fraud-detector"});
  CHECK(store->ListVersions("nothing").status().code() == Status::Code::kNotFound);
  CHECK(store->ListVersions("Bad/Name").status().code() == Status::Code::kInvalidArgument);
  CHECK(store->Stats().versions == 9);
  CHECK(store->Check().clean());
}

TEST_CASE("FindArtifact returns the first version committed with a digest") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Artifact a = MakeArtifact("fraud-detector", "1.0.0", 2, 200);
  CommitOrDie(*store, a);
  Artifact same_bytes = a;
  same_bytes.manifest.version = "1.0.1";  // republished unchanged
  CommitOrDie(*store, same_bytes);
  Result<std::shared_ptr<const Manifest>> found = store->FindArtifact(a.manifest.digest);
  REQUIRE(found.ok());
  CHECK((*found)->version == "1.0.0");
  CHECK(store->FindArtifact(Digest::Of("no such file")).status().code() == Status::Code::kNotFound);
  CHECK(store->Check().clean());
}

TEST_CASE("manifests are parsed once: a second read returns the same pointer") {
  TempDir dir;
  Artifact a = MakeArtifact("fraud-detector", "1.0.0", 3, 210);
  Artifact b = MakeArtifact("fraud-detector", "1.1.0", 2, 220);
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CommitOrDie(*store, a);
    // Filled on commit: reading what was just committed parses nothing.
    std::shared_ptr<const Manifest> first = store->GetManifest("fraud-detector", "1.0.0").value();
    CHECK(*first == a.manifest);
    CHECK(store->FindArtifact(a.manifest.digest).value() == first);
    CHECK(store->Stats().manifest_parses == 0);
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  CommitOrDie(*store, b);
  std::shared_ptr<const Manifest> first = store->FindArtifact(a.manifest.digest).value();  // filled on read
  CHECK(*first == a.manifest);
  CHECK(store->GetManifest("fraud-detector", "1.0.0").value() == first);
  CHECK(store->FindArtifact(a.manifest.digest).value() == first);
  CHECK(*store->GetManifest("fraud-detector", "1.1.0").value() == b.manifest);
  CHECK(store->Stats().manifest_parses == 1);
  CHECK(store->Stats().manifest_cache_bytes > 0);

  // Threads racing on a version nobody read yet all get one manifest.
  store.reset();  // the directory's lock goes with it
  store = OpenOrDie(dir.path());
  std::vector<std::shared_ptr<const Manifest>> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = store->GetManifest("fraud-detector", "1.1.0").value(); });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& m : got) CHECK(m == got[0]);
  CHECK(*got[0] == b.manifest);
}

TEST_CASE("the manifest cache stays within its bound, evicting the least recently used") {
  TempDir dir;
  std::vector<Artifact> versions;
  for (uint32_t i = 0; i < 24; ++i) versions.push_back(MakeArtifact("ocr", "1.0." + std::to_string(i), 2, 1000 + 10 * i));
  const uint64_t charge = ManifestCache::Charge(std::string("ocr\0" "1.0.10", 10), versions[10].manifest);
  StoreOptions o = Fast();
  o.manifest_cache_bytes = 4 * charge + charge / 2;  // room for four (the charge varies by a few bytes)
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path(), o);
    for (const Artifact& a : versions) CommitOrDie(*store, a);
    CHECK(store->Stats().manifest_cache_bytes <= o.manifest_cache_bytes);
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), o);
  uint64_t parses = 0;
  for (const Artifact& a : versions) {
    CHECK(*store->GetManifest("ocr", a.manifest.version).value() == a.manifest);
    CHECK(store->Stats().manifest_parses == ++parses);
    CHECK(store->Stats().manifest_cache_bytes <= o.manifest_cache_bytes);
    // Kept in use, the first version outlives every other.
    CHECK(*store->FindArtifact(versions[0].manifest.digest).value() == versions[0].manifest);
    CHECK(store->Stats().manifest_parses == parses);
  }
  // 1.0.0 and the three newest are cached; anything older was evicted and is parsed again.
  CHECK(store->GetManifest("ocr", "1.0.23").ok());
  CHECK(store->GetManifest("ocr", "1.0.21").ok());
  CHECK(store->Stats().manifest_parses == parses);
  CHECK(store->GetManifest("ocr", "1.0.5").ok());
  CHECK(store->Stats().manifest_parses == parses + 1);
  CHECK(store->Stats().manifest_cache_bytes <= o.manifest_cache_bytes);
}

TEST_CASE("the manifest cache holds nothing for absent or unreadable versions") {
  TempDir dir;
  Artifact a = MakeArtifact("fraud-detector", "1.0.0", 2, 230);
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CHECK(store->GetManifest("fraud-detector", "1.0.0").status().code() == Status::Code::kNotFound);
    CHECK(store->FindArtifact(a.manifest.digest).status().code() == Status::Code::kNotFound);
    CHECK(store->Stats().manifest_cache_bytes == 0);
    CommitOrDie(*store, a);
    CHECK(*store->GetManifest("fraud-detector", "1.0.0").value() == a.manifest);
    CHECK(*store->FindArtifact(a.manifest.digest).value() == a.manifest);
  }
  {
    RawDb raw(dir.path());
    raw.Put(RawDb::kManifests, std::string("fraud-detector\0" "9.0.0", 20), "{garbage");
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  for (uint64_t parses = 1; parses <= 2; ++parses) {
    CHECK(store->GetManifest("fraud-detector", "9.0.0").status().code() == Status::Code::kCorruption);
    CHECK(store->Stats().manifest_parses == parses);  // tried again, not remembered
  }
  CHECK(store->Stats().manifest_cache_bytes == 0);
}

TEST_CASE("chunks are served from the cache of verified chunks, within its bound, least recently used out first") {
  TempDir dir;
  Artifact a = MakeArtifact("ocr", "1.0.0", 4, 500);
  StoreOptions o = Fast();
  o.chunk_cache_bytes = 3 * ((64 << 10) + 1024);  // room for three chunks of 64 KiB
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), o);
  CommitOrDie(*store, a);
  for (size_t i = 0; i < a.chunks.size(); ++i) {
    Result<std::shared_ptr<const Bytes>> got = store->ServeChunk(a.manifest.chunks[i].digest);
    REQUIRE(got.ok());
    CHECK(**got == a.chunks[i]);
  }
  CHECK(store->Stats().chunk_cache_hits == 0);
  CHECK(store->Stats().chunk_cache_bytes > 2 * (64 << 10));
  CHECK(store->Stats().chunk_cache_bytes <= o.chunk_cache_bytes);
  // The last three are cached: one pointer for every reader.
  Result<std::shared_ptr<const Bytes>> again = store->ServeChunk(a.manifest.chunks[3].digest);
  REQUIRE(again.ok());
  CHECK(**again == a.chunks[3]);
  CHECK(store->ServeChunk(a.manifest.chunks[3].digest).value() == *again);
  CHECK(store->Stats().chunk_cache_hits == 2);
  REQUIRE(store->ServeChunk(a.manifest.chunks[0].digest).ok());  // evicted first: read again
  CHECK(store->Stats().chunk_cache_hits == 2);
  CHECK(store->ServeChunk(Digest::Of(ToBytes("never stored"))).status().code() == Status::Code::kNotFound);
}

TEST_CASE("a manifest larger than the whole cache is returned, not cached") {
  ManifestCache cache(100);
  Manifest m = MakeArtifact("ocr", "1.0.0", 1, 240).manifest;
  auto given = std::make_shared<const Manifest>(m);
  CHECK(cache.Insert("ocr/1.0.0", given, cache.erasures()) == given);
  CHECK(cache.Lookup("ocr/1.0.0") == nullptr);
  CHECK(cache.bytes() == 0);
  CHECK(cache.entries() == 0);
}

TEST_CASE("state: atomic batches of puts and deletes, scans by prefix") {
  TempDir dir;
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path(), StoreOptions());
    REQUIRE(store->WriteState({{"rollout/r1", "staged"}, {"rollout/r2", "paused"}, {"event/0001", "created"},
                               {"rolloutx", "not under rollout/"}})
                .ok());
    REQUIRE(store->WriteState({{"rollout/r1", std::nullopt}, {"rollout/r3", "done"}, {"rollout/r2", "running"}}).ok());
    CHECK(store->WriteState({}).ok());
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  CHECK(store->GetState("rollout/r1").status().code() == Status::Code::kNotFound);
  CHECK(store->GetState("rollout/r2").value() == "running");
  CHECK(store->ScanState("rollout/").value() == StateRecords{{"rollout/r2", "running"}, {"rollout/r3", "done"}});
  CHECK(store->ScanState("event/").value() == StateRecords{{"event/0001", "created"}});
  CHECK(store->ScanState("none/").value().empty());
  CHECK(store->ScanState("").value().size() == 4);
  std::string binary("k\0\xff", 3);
  REQUIRE(store->WriteState({{binary, std::string("v\0", 2)}}).ok());
  CHECK(store->GetState(binary).value() == std::string("v\0", 2));
}

TEST_CASE("state: a prefix read a page at a time, after a key") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), StoreOptions());
  REQUIRE(store->WriteState({{"a/1", "one"}, {"a/2", "two"}, {"a/4", "four"}, {"a0", "not under a/"}, {"Z", "before"}})
              .ok());
  CHECK(store->ScanStatePage("a/", "", 2).value() == StateRecords{{"a/1", "one"}, {"a/2", "two"}});
  CHECK(store->ScanStatePage("a/", "a/2", 2).value() == StateRecords{{"a/4", "four"}});
  CHECK(store->ScanStatePage("a/", "a/3", 10).value() == StateRecords{{"a/4", "four"}});  // the key itself may be gone
  CHECK(store->ScanStatePage("a/", "a/4", 10).value().empty());
  CHECK(store->ScanStatePage("a/", "A", 10).value().size() == 3);  // a key before the prefix: from its start
  CHECK(store->ScanStatePage("a/", "", 0).value().empty());
}

TEST_CASE("state: ForEachState visits every pair under a prefix in order, page by page, and stops at an error") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), Fast());
  StateOps ops = {{"b", "before"}, {"d/", "after"}};
  for (int i = 0; i < 20; ++i) ops.emplace_back("c/" + std::to_string(100 + i), std::to_string(i));
  REQUIRE(store->WriteState(ops).ok());
  for (size_t page : {size_t{0}, size_t{1}, size_t{3}, size_t{20}, size_t{21}, kStatePageRecords}) {
    std::vector<std::string> seen;
    REQUIRE(ForEachState(*store, "c/", [&](const std::string& key, const std::string& value) {
              CHECK(key == "c/" + std::to_string(100 + std::stoi(value)));
              seen.push_back(value);
              return Status::Ok();
            }, page).ok());
    std::vector<std::string> want;
    for (int i = 0; i < 20; ++i) want.push_back(std::to_string(i));
    CHECK(seen == want);
  }
  int visited = 0;
  Status stopped = ForEachState(*store, "c/", [&](const std::string&, const std::string&) {
    return ++visited == 5 ? Status::Corruption("fifth") : Status::Ok();
  }, 3);
  CHECK(stopped.code() == Status::Code::kCorruption);
  CHECK(visited == 5);
}

TEST_CASE("state: ForEachStatePage goes on after a page that deleted or rewrote its own keys") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), Fast());
  StateOps ops;
  for (int i = 0; i < 10; ++i) ops.emplace_back("p/" + std::to_string(i), "new");
  REQUIRE(store->WriteState(ops).ok());
  for (size_t page_records : {size_t{1}, size_t{3}, size_t{5}, size_t{10}, size_t{11}}) {
    std::vector<size_t> pages;
    std::vector<std::string> seen;
    // As retention does: the even keys are deleted, the odd ones stamped.
    REQUIRE(ForEachStatePage(*store, "p/", page_records, [&](const StateRecords& page) {
              pages.push_back(page.size());
              StateOps writes;
              for (const auto& [key, value] : page) {
                seen.push_back(key);
                const bool even = (key.back() - '0') % 2 == 0;
                writes.emplace_back(key, even ? std::nullopt : std::optional<std::string>("stamped"));
              }
              return store->WriteState(writes);
            }).ok());
    std::vector<std::string> every;
    for (int i = 0; i < 10; ++i) every.push_back("p/" + std::to_string(i));
    CHECK(seen == every);  // each key once, in order
    CHECK(std::find(pages.begin(), pages.end(), 0u) == pages.end());  // never an empty page
    CHECK(store->ScanState("p/").value() ==
          StateRecords{{"p/1", "stamped"}, {"p/3", "stamped"}, {"p/5", "stamped"}, {"p/7", "stamped"}, {"p/9", "stamped"}});
    REQUIRE(store->WriteState(ops).ok());  // every key back, unstamped, for the next page size
  }
}

// A GroupCommit writer that records each batch it is given and holds the
// first one until released, so that a test can queue writes behind it.
class HeldWriter {
 public:
  Status Write(const StateOps& ops) {
    std::unique_lock lock(mu_);
    batches_.push_back(ops);
    changed_.notify_all();
    changed_.wait(lock, [&] { return released_; });
    return fail_ ? Status::IOError("disk gone") : Status::Ok();
  }
  void AwaitBatches(size_t n) {
    std::unique_lock lock(mu_);
    REQUIRE(changed_.wait_for(lock, std::chrono::seconds(10), [&] { return batches_.size() >= n; }));
  }
  void Release(bool fail = false) {
    std::lock_guard lock(mu_);
    released_ = true;
    fail_ = fail;
    changed_.notify_all();
  }
  std::vector<StateOps> batches() {
    std::lock_guard lock(mu_);
    return batches_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<StateOps> batches_;
  bool released_ = false, fail_ = false;
};

TEST_CASE("GroupCommit: writes queued while one is written go together in one batch, in queue order") {
  HeldWriter writer;
  GroupCommit commit([&](const StateOps& ops) { return writer.Write(ops); });
  GroupCommit::Ticket first = commit.Enqueue({{"a", "1"}});
  std::vector<std::thread> waiters;
  std::vector<Status> results(4, Status::IOError("not waited"));
  waiters.emplace_back([&] { results[0] = commit.Wait(first); });
  writer.AwaitBatches(1);  // the first waiter writes "a" and is held there
  std::vector<GroupCommit::Ticket> queued = {commit.Enqueue({{"b", "2"}}), commit.Enqueue({{"a", std::nullopt}}),
                                             commit.Enqueue({{"c", "3"}, {"b", "4"}})};
  for (size_t i = 0; i < queued.size(); ++i) waiters.emplace_back([&, i] { results[i + 1] = commit.Wait(queued[i]); });
  writer.Release();
  for (std::thread& t : waiters) t.join();
  for (const Status& st : results) CHECK(st.ok());
  const std::vector<StateOps> batches = writer.batches();
  REQUIRE(batches.size() == 2);
  CHECK(batches[0] == StateOps{{"a", "1"}});
  CHECK(batches[1] == StateOps{{"b", "2"}, {"a", std::nullopt}, {"c", "3"}, {"b", "4"}});
  commit.Flush();  // nothing queued: returns at once
  CHECK(writer.batches().size() == 2);
}

TEST_CASE("GroupCommit: a failed batch fails every write in it; Flush waits for what was queued") {
  HeldWriter writer;
  GroupCommit commit([&](const StateOps& ops) { return writer.Write(ops); });
  GroupCommit::Ticket first = commit.Enqueue({{"a", "1"}});
  Status first_status;
  std::thread leader([&] { first_status = commit.Wait(first); });
  writer.AwaitBatches(1);
  GroupCommit::Ticket second = commit.Enqueue({{"b", "2"}}), third = commit.Enqueue({{"c", "3"}});
  std::thread flusher([&] { commit.Flush(); });  // writes b and c as the next batch
  writer.Release(/*fail=*/true);
  leader.join();
  flusher.join();
  CHECK(first_status.code() == Status::Code::kIOError);
  CHECK(writer.batches().size() == 2);
  CHECK(commit.Wait(second).code() == Status::Code::kIOError);  // done already: no write
  CHECK(commit.Wait(third).code() == Status::Code::kIOError);
  CHECK(writer.batches().size() == 2);
}

TEST_CASE("GroupCommit: a batch stops before kBatchBytesMax, and holds at least one write") {
  HeldWriter writer;
  GroupCommit commit([&](const StateOps& ops) { return writer.Write(ops); });
  GroupCommit::Ticket first = commit.Enqueue({{"a", "1"}});
  std::thread leader([&] { (void)commit.Wait(first); });
  writer.AwaitBatches(1);
  const std::string third(GroupCommit::kBatchBytesMax / 3, 'x'), large(GroupCommit::kBatchBytesMax + 1, 'y');
  // Keys of one byte: 3 thirds overflow by 3 bytes, so they go 2 + 1; the large one alone.
  GroupCommit::Ticket last;
  for (const char* key : {"1", "2", "3"}) last = commit.Enqueue({{key, third}});
  last = commit.Enqueue({{"4", large}});
  writer.Release();
  CHECK(commit.Wait(last).ok());
  leader.join();
  std::vector<size_t> sizes;
  for (const StateOps& batch : writer.batches()) sizes.push_back(batch.size());
  CHECK(sizes == std::vector<size_t>{1, 2, 1, 1});
}

TEST_CASE("GroupCommit on a store: writes from 16 threads are all there after a reopen") {
  TempDir dir;
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path(), StoreOptions());
    GroupCommit commit(*store);
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i) CHECK(commit.Wait(commit.Enqueue({{"k/" + std::to_string(t * 100 + i), "v"}})).ok());
      });
    }
    for (std::thread& t : threads) t.join();
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Result<StateRecords> all = store->ScanState("k/");
  REQUIRE(all.ok());
  CHECK(all->size() == 800);
}

TEST_CASE("state: ForEachState reads a prefix holding more than ScanState returns at once") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), Fast());
  const std::string value(4 << 20, 'v');
  const size_t n = kStateScanBytesMax / value.size() + 1;
  for (size_t i = 0; i < n; ++i) REQUIRE(store->WriteState({{"big/" + std::to_string(1000 + i), value}}).ok());
  CHECK(store->ScanState("big/").status().code() == Status::Code::kResourceExhausted);
  size_t visited = 0;
  REQUIRE(ForEachState(*store, "big/", [&](const std::string& key, const std::string& v) {
            CHECK(key == "big/" + std::to_string(1000 + visited));
            CHECK(v.size() == value.size());
            ++visited;
            return Status::Ok();
          }, 16).ok());
  CHECK(visited == n);
}

TEST_CASE("Check is clean on a good store and names damaged versions and index entries") {
  TempDir dir;
  Artifact a = MakeArtifact("fraud-detector", "1.0.0", 3, 300);
  Artifact b = MakeArtifact("fraud-detector", "1.1.0", 2, 400);
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CommitOrDie(*store, a);
    CommitOrDie(*store, b);
    CheckReport report = store->Check();
    CHECK(report.clean());
    CHECK(report.chunks_checked == 5);
    CHECK(report.manifests_checked == 2);
  }
  Digest stray = Digest::Of("an artifact nobody committed");
  {
    RawDb raw(dir.path());
    raw.Lose(a.manifest.chunks[1].digest);
    raw.Delete(RawDb::kArtifacts, RawDb::Key(b.manifest.digest));
    raw.Put(RawDb::kArtifacts, RawDb::Key(stray), std::string("fraud-detector\0" "1.0.0", 20));
    raw.Put(RawDb::kManifests, std::string("fraud-detector\0" "9.0.0", 20), "{garbage");
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  CheckReport report = store->Check();
  CHECK(report.chunks_checked == 4);
  CHECK(report.manifests_checked == 3);
  CHECK(report.faults.size() == 4);
  CHECK(AnyFaultMentions(report, "fraud-detector@1.0.0: 1 of 3 chunks missing: " + a.manifest.chunks[1].digest.ToString()));
  CHECK(AnyFaultMentions(report, "fraud-detector@1.1.0: no artifact index entry"));
  CHECK(AnyFaultMentions(report, "artifact index entry " + stray.ToString()));
  CHECK(AnyFaultMentions(report, "fraud-detector@9.0.0"));
  CHECK(store->GetManifest("fraud-detector", "9.0.0").status().code() == Status::Code::kCorruption);
}

TEST_CASE("Check finds chunks and chunk index entries without each other") {
  TempDir dir;
  Artifact a = MakeArtifact("m", "1.0.0", 3, 300);
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CommitOrDie(*store, a);
  }
  Digest orphan = Digest::Of("chunk without index entry");
  {
    RawDb raw(dir.path());
    raw.Delete(RawDb::kChunks, RawDb::Key(a.manifest.chunks[0].digest));  // index entry left behind
    raw.Put(RawDb::kChunks, RawDb::Key(orphan), Zstd(AsBytes("chunk without index entry")));
  }
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  CheckReport report = store->Check();
  CHECK(report.faults.size() == 2);
  CHECK(AnyFaultMentions(report, "chunk index lists " + a.manifest.chunks[0].digest.ToString() + ", which is not stored"));
  CHECK(AnyFaultMentions(report, "chunk " + orphan.ToString() + ": not in the chunk index"));
  // Presence answers from the index: a chunk the index does not list is missing, and re-putting it heals.
  CHECK(*store->HasChunk(orphan) == false);
  REQUIRE(store->PutChunk(orphan, AsBytes("chunk without index entry")).ok());
  CHECK(*store->HasChunk(orphan));
}

TEST_CASE("Check keeps at most kCheckFaultsMax fault lines and counts the rest") {
  TempDir dir;
  { OpenOrDie(dir.path()); }
  {
    RawDb raw(dir.path());
    for (size_t i = 0; i < kCheckFaultsMax + 5; ++i) raw.Put(RawDb::kChunks, RawDb::Key(Digest::Of(std::to_string(i))), "junk");
  }
  CheckReport report = OpenOrDie(dir.path())->Check();
  CHECK(report.chunks_checked == kCheckFaultsMax + 5);
  REQUIRE(report.faults.size() == kCheckFaultsMax + 1);
  CHECK(report.faults.back() == "... and 5 more faults");
}

TEST_CASE("opening: missing store, bad options, a directory locked by another process") {
  TempDir dir;
  StoreOptions no_create = Fast();
  no_create.create_if_missing = false;
  CHECK(Store::Open(dir.path() + "/absent", no_create).status().code() == Status::Code::kNotFound);
  StoreOptions bad_level = Fast();
  bad_level.zstd_level = 1000;
  CHECK(Store::Open(dir.path(), bad_level).status().code() == Status::Code::kInvalidArgument);

  const std::string nested = dir.path() + "/a/b/store";
  std::unique_ptr<Store> first = OpenOrDie(nested);
  Result<std::unique_ptr<Store>> second = Store::Open(nested, Fast());
  CHECK(second.status().code() == Status::Code::kFailedPrecondition);
  CHECK(second.status().message().find("lock") != std::string::npos);
  first.reset();
  CHECK(Store::Open(nested, no_create).ok());

  // Another process holds the POSIX record lock RocksDB takes on LOCK. The
  // child only makes system calls: it must not run RocksDB after fork().
  int ready[2], done[2];
  REQUIRE(pipe(ready) == 0);
  REQUIRE(pipe(done) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int fd = open((nested + "/LOCK").c_str(), O_RDWR);
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    char c = (fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0) ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(1);
    if (read(done[0], &c, 1) != 1) _exit(1);
    _exit(0);
  }
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  REQUIRE(c == 'y');
  Result<std::unique_ptr<Store>> locked = Store::Open(nested, Fast());
  CHECK(locked.status().code() == Status::Code::kFailedPrecondition);
  CHECK(locked.status().message().find("another process") != std::string::npos);
  StoreOptions read_only = Fast();
  read_only.read_only = true;
  Result<std::unique_ptr<Store>> locked_reader = Store::Open(nested, read_only);
  CHECK(locked_reader.status().code() == Status::Code::kFailedPrecondition);
  CHECK(locked_reader.status().message().find("another process") != std::string::npos);
  REQUIRE(write(done[1], "x", 1) == 1);
  int wstatus = 0;
  REQUIRE(waitpid(child, &wstatus, 0) == child);
  for (int fd : {ready[0], ready[1], done[0], done[1]}) close(fd);
  CHECK(Store::Open(nested, Fast()).ok());
}

namespace {

// Every file of a directory with its size and modification time.
std::map<std::string, std::pair<uintmax_t, std::filesystem::file_time_type>> Listing(const std::string& dir) {
  std::map<std::string, std::pair<uintmax_t, std::filesystem::file_time_type>> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out[e.path().filename().string()] = {e.is_regular_file() ? e.file_size() : 0, e.last_write_time()};
  }
  return out;
}

}  // namespace

TEST_CASE("read-only: reads as the writer left it (WAL included), writes nothing, refuses writes") {
  TempDir dir;
  Artifact a = MakeArtifact("fraud", "1.0.0", 3, 900);
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path());
    CommitOrDie(*store, a);
  }
  {
    // RocksDB left alone flushes nothing at close: this is only in the WAL.
    RawDb raw(dir.path());
    raw.Put(4, "only-in-the-wal", "yes");
  }
  const auto before = Listing(dir.path());
  StoreOptions options = Fast();
  options.read_only = true;
  {
    std::unique_ptr<Store> reader = OpenOrDie(dir.path(), options);
    CHECK(reader->ListVersions("fraud").value() == std::vector<std::string>{"1.0.0"});
    CHECK(reader->GetState("only-in-the-wal").value() == "yes");
    Result<Bytes> chunk = reader->GetChunk(Digest::Of(a.chunks[0]));
    REQUIRE(chunk.ok());
    CHECK(*chunk == a.chunks[0]);
    CheckReport report = reader->Check();
    CHECK(report.clean());
    CHECK(report.manifests_checked == 1);
    Bytes more = RandomBytes(100, 1);
    CHECK(reader->PutChunk(Digest::Of(more), more).code() == Status::Code::kFailedPrecondition);
    CHECK(reader->WriteState({{"k", "v"}}).code() == Status::Code::kFailedPrecondition);
    CHECK(reader->Health().ok());
    // One Store per directory in a process, whichever kind.
    Result<std::unique_ptr<Store>> second = Store::Open(dir.path(), options);
    CHECK(second.status().code() == Status::Code::kFailedPrecondition);
    CHECK(second.status().message().find("lock") != std::string::npos);
    CHECK(Store::Open(dir.path(), Fast()).status().code() == Status::Code::kFailedPrecondition);
  }
  CHECK(Listing(dir.path()) == before);
  CHECK(Store::Open(dir.path() + "/absent", options).status().code() == Status::Code::kNotFound);
  CHECK(!std::filesystem::exists(dir.path() + "/absent"));
}

TEST_CASE("a full disk: InsufficientStorage, reads go on, writes resume once space is freed, a clean close "
          "reopens with no room") {
  TempDir dir;
  const std::string store_dir = dir.path() + "/store";
  std::filesystem::create_directories(store_dir);
  Tmpfs tmpfs(store_dir, 32u << 20);
  if (!tmpfs.ok()) {
    WARN("SKIP: a tmpfs could not be mounted for the store (root is needed): " << tmpfs.error());
    return;
  }
  const std::string filler = store_dir + "/filler";  // not the store's: freed to make room
  REQUIRE(FillUp(filler, AvailBytes(store_dir) - (4u << 20)));
  std::unique_ptr<Store> store = OpenOrDie(store_dir);  // 32 MiB: memtables of 1 MiB
  const Bytes first = RandomBytes(64 << 10, 1);
  REQUIRE(store->PutChunk(Digest::Of(first), first).ok());
  Status refused;
  uint32_t seed = 2;
  for (; seed < 1000 && refused.ok(); ++seed) {
    Bytes chunk = RandomBytes(64 << 10, seed);
    refused = store->PutChunk(Digest::Of(chunk), chunk);
  }
  INFO(refused.ToString());
  REQUIRE(refused.code() == Status::Code::kInsufficientStorage);
  CHECK(store->Stats().errors.at("insufficient_storage") >= 1);
  // Refused again while the disk stays full.
  CHECK(RefusedWhileFull(filler, 20, [&](int attempt) {
    Bytes chunk = RandomBytes(64 << 10, seed + static_cast<uint32_t>(attempt));
    return store->PutChunk(Digest::Of(chunk), chunk).code() == Status::Code::kInsufficientStorage;
  }));
  CHECK(store->Health().code() == Status::Code::kInsufficientStorage);
  Bytes late = RandomBytes(64 << 10, 5000);
  CHECK(store->PutChunk(Digest::Of(late), late).code() == Status::Code::kInsufficientStorage);
  CHECK(store->WriteState({{"k", "v"}}).code() == Status::Code::kInsufficientStorage);
  Result<Bytes> read = store->GetChunk(Digest::Of(first));
  REQUIRE(read.ok());
  CHECK(*read == first);

  // The filler removed (4 MiB and more): the store resumes by itself (Health()
  // is not called meanwhile), within RocksDB's 5 s between checks of the free space.
  REQUIRE(std::filesystem::remove(filler));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  Status resumed = store->PutChunk(Digest::Of(late), late);
  while (!resumed.ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    resumed = store->PutChunk(Digest::Of(late), late);
  }
  INFO(resumed.ToString());
  CHECK(resumed.ok());
  CHECK(store->Health().ok());
  CHECK(store->WriteState({{"k", "v"}}).ok());

  // Closed cleanly, then the disk filled to the last byte: a reader opens,
  // and Check is clean. With a few hundred KiB, the writer opens too.
  store.reset();
  REQUIRE(FillUp(filler, 0));
  StoreOptions read_only = Fast();
  read_only.read_only = true;
  {
    std::unique_ptr<Store> reader = OpenOrDie(store_dir, read_only);
    CheckReport report = reader->Check();
    CHECK(report.clean());
    CHECK(reader->GetState("k").value() == "v");
  }
  std::filesystem::resize_file(filler, std::filesystem::file_size(filler) - (256u << 10));
  store = OpenOrDie(store_dir);
  CHECK(store->GetChunk(Digest::Of(late)).ok());
}

// ---------------------------------------------------------------------------
// Deleting versions and collecting chunks.

namespace {

StoreOptions Collecting(const FakeClock& clock) {
  StoreOptions o = Fast();
  o.clock = &clock;
  o.unreferenced_grace_ms = 3'600'000;
  return o;
}

constexpr std::chrono::milliseconds kPastGrace{3'600'001};

}  // namespace

TEST_CASE("DeleteVersion: the version is gone, its artifact index entry moves to a version with the same bytes, "
          "and its name stays with its bytes") {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path());
  Artifact a = MakeArtifact("ocr", "1.0.0", 2, 10);
  Artifact same = a;  // the same bytes under another version
  same.manifest.version = "1.0.1";
  CommitOrDie(*store, a);
  CommitOrDie(*store, same);
  REQUIRE(store->FindArtifact(a.manifest.digest).value()->version == "1.0.0");

  REQUIRE(store->DeleteVersion("ocr", "1.0.0").ok());
  CHECK(store->GetEnvelope("ocr", "1.0.0").status().code() == Status::Code::kNotFound);
  CHECK(store->GetManifest("ocr", "1.0.0").status().code() == Status::Code::kNotFound);
  CHECK(store->ListVersions("ocr").value() == std::vector<std::string>{"1.0.1"});
  CHECK(store->FindArtifact(a.manifest.digest).value()->version == "1.0.1");
  CHECK(store->DeleteVersion("ocr", "1.0.0").code() == Status::Code::kNotFound);
  CHECK(store->DeleteVersion("ocr", "not a version").code() == Status::Code::kInvalidArgument);
  CHECK(store->Check().clean());

  // Other bytes never take a deleted version's name; its own bytes may.
  Artifact other = MakeArtifact("ocr", "1.0.0", 1, 99);
  PutAll(*store, other);
  Status refused = store->CommitVersion(Verified(other.manifest)).status();
  CHECK(refused.code() == Status::Code::kAlreadyExists);
  CHECK(refused.message().find("was deleted") != std::string::npos);
  CHECK(store->CommitVersion(Verified(a.manifest)).value());
  CHECK(store->GetManifest("ocr", "1.0.0").value()->digest == a.manifest.digest);

  REQUIRE(store->DeleteVersion("ocr", "1.0.1").ok());
  REQUIRE(store->DeleteVersion("ocr", "1.0.0").ok());
  CHECK(store->FindArtifact(a.manifest.digest).status().code() == Status::Code::kNotFound);
  CHECK(store->ListVersions("ocr").status().code() == Status::Code::kNotFound);
  CHECK(store->Check().clean());
}

TEST_CASE("CollectGarbage deletes old unreferenced chunks only, and the disk space comes back") {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), Collecting(clock));
  Artifact kept = MakeArtifact("ocr", "1.0.0", 8, 100);
  Artifact deleted = MakeArtifact("ocr", "1.1.0", 64, 200);  // 4 MiB of incompressible chunks
  Artifact delta_bytes = MakeArtifact("delta", "0.0.1", 2, 300);  // stored, named by no version
  CommitOrDie(*store, kept);
  CommitOrDie(*store, deleted);
  PutAll(*store, delta_bytes);
  store.reset();  // closing flushes: the chunks are in blob files, as they are on a store in use
  store = OpenOrDie(dir.path(), Collecting(clock));
  REQUIRE(store->DeleteVersion("ocr", "1.1.0").ok());
  const Digest delta_chunk = delta_bytes.manifest.chunks[0].digest;
  auto deltas = [&](std::vector<Digest>& referenced) {
    referenced.push_back(delta_chunk);
    return Status::Ok();
  };

  // Young: nothing is collected within the grace period.
  CollectReport young = store->CollectGarbage(deltas).value();
  CHECK(young.chunks_deleted == 0);
  CHECK(young.chunks_young == 64 + 1);
  CHECK(young.chunks_referenced == 8 + 1);

  clock.Advance(kPastGrace);
  // Named present by MissingChunks (a publisher about to commit it): young again.
  REQUIRE(store->MissingChunks(std::vector<Digest>{deleted.manifest.chunks[0].digest}).value().empty());
  const uint64_t disk_before = store->Stats().disk_bytes;
  REQUIRE(store->ServeChunk(deleted.manifest.chunks[1].digest).ok());  // cached, then collected below
  CollectReport r = store->CollectGarbage(deltas).value();
  CHECK(r.chunks_deleted == 63 + 1);
  CHECK(r.bytes_deleted == 64ull * (64 << 10));
  CHECK(r.chunks_young == 1);
  for (const Bytes& c : kept.chunks) CHECK(store->GetChunk(Digest::Of(c)).ok());
  CHECK(store->GetChunk(delta_chunk).ok());
  CHECK(store->HasChunk(deleted.manifest.chunks[0].digest).value());
  CHECK_FALSE(store->HasChunk(deleted.manifest.chunks[1].digest).value());
  CHECK(store->ServeChunk(deleted.manifest.chunks[1].digest).status().code() == Status::Code::kNotFound);
  CHECK_FALSE(store->HasChunk(delta_bytes.manifest.chunks[1].digest).value());
  CHECK(r.blobs_rewritten);
  const StoreStats after = store->Stats();
  INFO("disk bytes " << disk_before << " -> " << after.disk_bytes << " (blob " << after.blob_bytes << ", sst "
                      << after.sst_bytes << ", wal " << after.wal_bytes << ")");
  CHECK(after.disk_bytes + 3 * (1 << 20) < disk_before);
  CHECK(after.blob_garbage_bytes == 0);
  CHECK(store->Check().clean());
  CHECK(store->MissingChunks(std::vector<Digest>{deleted.manifest.chunks[1].digest}).value().size() == 1);
}

TEST_CASE("a paged manifest: committed once its index pages are stored, read from them, kept and checked with them") {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), Collecting(clock));
  const Artifact a = Paged(MakeArtifact("big", "1.0.0", 10, 500), 3);
  REQUIRE(a.pages.size() == 4);
  for (const Bytes& c : a.chunks) REQUIRE(store->PutChunk(Digest::Of(c), c).ok());
  Status without_pages = store->CommitVersion(Verified(a.manifest)).status();
  CHECK(without_pages.code() == Status::Code::kFailedPrecondition);
  CHECK_THAT(without_pages.message(), Catch::Contains("upload the index pages"));
  CHECK(store->GetEnvelope("big", "1.0.0").status().code() == Status::Code::kNotFound);

  PutAll(*store, a);
  REQUIRE(store->CommitVersion(Verified(a.manifest)).value());
  // Committed as a publisher holds it, and as the pages say after a reopen.
  for (int open = 0; open < 2; ++open) {
    std::shared_ptr<const Manifest> m = store->GetManifest("big", "1.0.0").value();
    CHECK(m->paged());
    CHECK(m->chunk_pages == a.manifest.chunk_pages);
    CHECK(m->chunks == a.manifest.chunks);
    CHECK(store->FindArtifact(a.manifest.digest).value()->chunks == a.manifest.chunks);
    store.reset();
    store = OpenOrDie(dir.path(), Collecting(clock));
  }
  CHECK(store->CommitVersion(Verified(a.manifest, true)).value() == false);  // a retry: the same release

  clock.Advance(kPastGrace);
  CollectReport r = store->CollectGarbage().value();
  CHECK(r.chunks_deleted == 0);
  CHECK(r.chunks_referenced == 10 + 4);
  for (const Bytes& p : a.pages) CHECK(store->GetChunk(Digest::Of(p)).ok());
  CheckReport check = store->Check();
  INFO(check.faults.size());
  CHECK(check.clean());

  // A page lost (here deleted behind the store's back, as a repair drops a
  // damaged one): the version no longer reads, Check names the page, and
  // the page uploaded again mends both.
  const Digest lost = a.manifest.chunk_pages[1].digest;
  store.reset();
  {
    RawDb raw(dir.path());
    raw.Lose(lost);
  }
  store = OpenOrDie(dir.path(), Collecting(clock));
  Status unreadable = store->GetManifest("big", "1.0.0").status();
  CHECK(unreadable.code() == Status::Code::kCorruption);
  CHECK_THAT(unreadable.message(), Catch::Contains(lost.ToString()));
  CHECK(AnyFaultMentions(store->Check(), lost.ToString()));
  CHECK(store->CollectGarbage().status().code() == Status::Code::kFailedPrecondition);  // nothing swept meanwhile
  REQUIRE(store->PutChunk(lost, a.pages[1]).ok());
  CHECK(store->GetManifest("big", "1.0.0").value()->chunks == a.manifest.chunks);
  CHECK(store->Check().clean());

  // A page damaged on disk (a flipped byte in its frame): found by its frame
  // checksum though a page is not re-hashed as it is read (ReadChunkPage
  // hashes it), dropped, so the store asks for it again, and mended by it.
  const Digest flipped = a.manifest.chunk_pages[2].digest;
  store.reset();
  {
    RawDb raw(dir.path());
    std::string frame = raw.Get(RawDb::kChunks, RawDb::Key(flipped));
    frame[frame.size() / 2] = static_cast<char>(frame[frame.size() / 2] ^ 0x01);
    raw.Put(RawDb::kChunks, RawDb::Key(flipped), frame);
  }
  store = OpenOrDie(dir.path(), Collecting(clock));
  Status damaged = store->GetManifest("big", "1.0.0").status();
  CHECK(damaged.code() == Status::Code::kCorruption);
  CHECK_THAT(damaged.message(), Catch::Contains(flipped.ToString()));
  CHECK(store->MissingChunks(std::vector<Digest>{flipped}).value() == std::vector<Digest>{flipped});
  REQUIRE(store->PutChunk(flipped, a.pages[2]).ok());
  CHECK(store->GetManifest("big", "1.0.0").value()->chunks == a.manifest.chunks);

  // A paged version held elsewhere needs no page here, and reads unresolved.
  Artifact elsewhere = Paged(MakeArtifact("far", "1.0.0", 4, 600), 2);
  REQUIRE(store->CommitVersion(Verified(elsewhere.manifest), Store::Holding::kManifestOnly).value());
  std::shared_ptr<const Manifest> far = store->GetManifest("far", "1.0.0").value();
  CHECK(far->chunk_pages == elsewhere.manifest.chunk_pages);
  CHECK(far->chunks.empty());
  CHECK(store->Check().clean());
}

TEST_CASE("CollectGarbage: one at a time, refused read-only, and a version that no longer parses stops it") {
  TempDir dir;
  FakeClock clock;
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path(), Collecting(clock));
    CommitOrDie(*store, MakeArtifact("ocr", "1.0.0", 1, 5));
    Status busy = Status::Ok();
    REQUIRE(store->CollectGarbage([&](std::vector<Digest>&) {
                   busy = store->CollectGarbage().status();
                   return Status::Ok();
                 }).ok());
    CHECK(busy.code() == Status::Code::kFailedPrecondition);
  }
  {
    RawDb raw(dir.path());
    raw.Put(RawDb::kManifests, std::string("ocr\0" "9.0.0", 9), "{garbage");
  }
  {
    std::unique_ptr<Store> store = OpenOrDie(dir.path(), Collecting(clock));
    CHECK(store->CollectGarbage().status().code() == Status::Code::kFailedPrecondition);
  }
  StoreOptions ro = Collecting(clock);
  ro.read_only = true;
  CHECK(OpenOrDie(dir.path(), ro)->CollectGarbage().status().code() == Status::Code::kFailedPrecondition);
}

TEST_CASE("a publish racing a collection and a deletion loses nothing (random timing, 120 rounds)") {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store = OpenOrDie(dir.path(), Collecting(clock));
  std::mt19937 rng(20261130);
  Artifact previous = MakeArtifact("ocr", "1.0.0", 6, 1);
  CommitOrDie(*store, previous);
  for (int round = 1; round <= 120; ++round) {
    // Every chunk stored so far is old: only references and ages keep them.
    clock.Advance(kPastGrace);
    // The next version shares half its chunks with the one being deleted.
    std::vector<Bytes> chunks(previous.chunks.begin() + 3, previous.chunks.end());
    for (uint32_t i = 0; i < 3; ++i) chunks.push_back(RandomBytes(64 << 10, 1000u * static_cast<uint32_t>(round) + i));
    Artifact next = ArtifactOf("ocr", "1." + std::to_string(round) + ".0", std::move(chunks));
    const int publish_delay = static_cast<int>(rng() % 300);
    const int collect_delay = static_cast<int>(rng() % 300);
    Status committed = Status::Ok();
    std::thread publisher([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(publish_delay));
      // As `meridian publish` does: ask what is missing, upload it, commit;
      // on missing chunks, upload them and commit once more.
      std::vector<Digest> all;
      for (const ChunkRef& c : next.manifest.chunks) all.push_back(c.digest);
      for (int attempt = 0; attempt < 2; ++attempt) {
        Result<std::vector<Digest>> missing = store->MissingChunks(all);
        if (!missing.ok()) {
          committed = missing.status();
          return;
        }
        for (const Digest& d : *missing) {
          for (const Bytes& c : next.chunks) {
            if (Digest::Of(c) == d) REQUIRE(store->PutChunk(d, c).ok());
          }
        }
        committed = store->CommitVersion(Verified(next.manifest)).status();
        if (committed.code() != Status::Code::kFailedPrecondition) return;
      }
    });
    std::thread collector([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(collect_delay));
      REQUIRE(store->DeleteVersion("ocr", previous.manifest.version).ok());
      REQUIRE(store->CollectGarbage().ok());
    });
    publisher.join();
    collector.join();
    INFO("round " << round << ": " << committed.ToString());
    REQUIRE(committed.ok());
    for (const ChunkRef& c : next.manifest.chunks) REQUIRE(store->GetChunk(c.digest).ok());
    previous = std::move(next);
  }
  clock.Advance(kPastGrace);
  REQUIRE(store->CollectGarbage().ok());
  CHECK(store->Stats().chunks <= 6 + 1);  // an estimate
  CHECK(store->Check().clean());
  CHECK(store->ListVersions("ocr").value() == std::vector<std::string>{previous.manifest.version});
}
