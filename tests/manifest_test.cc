// Tests of manifest/: names, SemVer, JSON round trip and validation, the
// index pages of paged manifests, and the runs of a chunk list.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "manifest/chunk_batch.h"
#include "manifest/chunk_pages.h"
#include "manifest/manifest.h"

using namespace meridian;

TEST_CASE("model names follow [a-z0-9][a-z0-9._-]{0,63}") {
  for (const char* ok : {"a", "fraud-detector", "m0.v_1", "9"}) CHECK(IsValidModelName(ok));
  for (std::string bad : {std::string(""), std::string(".."), std::string("a/b"), std::string("A"),
                          std::string("-a"), std::string("a\0b", 3), std::string(65, 'a'),
                          std::string("%2e%2e"), std::string("a b")}) {
    CHECK_FALSE(IsValidModelName(bad));
  }
  CHECK(IsValidModelName(std::string(64, 'a')));
}

TEST_CASE("versions are SemVer 2.0.0 and compare by precedence") {
  for (const char* ok : {"1.0.0", "0.0.1", "1.2.3-rc.1", "1.2.3+build.5", "10.20.30-alpha-1.0+x"}) {
    CHECK(IsValidVersion(ok));
  }
  for (const char* bad : {"1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "v1.0.0", "1.0.0/..",
                          "1..0", ""}) {
    CHECK_FALSE(IsValidVersion(bad));
  }
  CHECK(CompareVersions("1.0.0", "1.0.1") < 0);
  CHECK(CompareVersions("1.10.0", "1.9.0") > 0);
  CHECK(CompareVersions("1.0.0-rc.1", "1.0.0") < 0);
  CHECK(CompareVersions("1.0.0-alpha", "1.0.0-alpha.1") < 0);
  CHECK(CompareVersions("1.0.0-alpha.2", "1.0.0-alpha.10") < 0);
  CHECK(CompareVersions("1.0.0-1", "1.0.0-alpha") < 0);
  CHECK(CompareVersions("1.0.0+a", "1.0.0+b") == 0);
}

static Manifest Sample() {
  Manifest m;
  m.name = "fraud-detector";
  m.version = "1.2.0";
  m.chunks = {{Digest::Of("a"), 10}, {Digest::Of("b"), 20}};
  m.size = 30;
  m.digest = Digest::Of("ab");
  m.profiles = {"pos-arm64"};
  m.regions = {"sg", "br"};
  m.annotations = {{"trained", "2026-11-01"}};
  m.created = "2026-11-24T00:00:00.000Z";
  return m;
}

TEST_CASE("manifest JSON round-trips") {
  Manifest m = Sample();
  Result<Manifest> back = ParseManifest(ManifestToJson(m));
  REQUIRE(back.ok());
  CHECK(*back == m);
}

TEST_CASE("manifest parse rejects inconsistent or malformed input") {
  Manifest m = Sample();
  m.size = 31;
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  m = Sample();
  m.name = "../etc";
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  m = Sample();
  m.regions = {"SG"};
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  m = Sample();
  m.chunks[0].size = 0;
  m.size = 20;
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  for (const char* bad : {"", "{", "[]", "null", "{\"name\":\"a\"}"}) CHECK_FALSE(ParseManifest(bad).ok());
  std::string json = ManifestToJson(Sample());
  json.replace(json.find("\"size\":30"), 9, "\"size\":-30");
  CHECK_FALSE(ParseManifest(json).ok());
}

TEST_CASE("a manifest naming a key twice is refused, wherever the repeat is") {
  const std::string json = ManifestToJson(Sample());
  REQUIRE(ParseManifest(json).ok());
  std::string top = json;
  top.insert(1, "\"version\":\"9.9.9\",");
  std::string nested = json;
  nested.insert(nested.find("\"digest\":\"sha256:", nested.find("\"chunks\"")), "\"size\":1,");
  for (const std::string& bad : {top, nested}) {
    Result<Manifest> m = ParseManifest(bad);
    CHECK(m.status().code() == Status::Code::kInvalidArgument);
    CHECK_THAT(m.status().message(), Catch::Contains("repeats a key"));
  }
}

// A paged manifest of `chunks` in pages of `per_page`, and the pages by digest.
static std::pair<Manifest, std::map<Digest, Bytes>> Paged(const std::vector<ChunkRef>& chunks, size_t per_page) {
  Manifest m = Sample();
  m.chunks.clear();
  m.size = 0;
  std::map<Digest, Bytes> pages;
  for (ChunkPage& p : MakeChunkPages(chunks, per_page)) {
    m.chunk_pages.push_back(p.ref);
    m.size += p.ref.size;
    pages[p.ref.digest] = std::move(p.bytes);
  }
  return {m, pages};
}

static std::vector<ChunkRef> SyntheticChunks(size_t n) {
  std::vector<ChunkRef> chunks(n);
  for (size_t i = 0; i < n; ++i) {
    std::array<uint8_t, Digest::kSize> raw{};
    for (size_t b = 0; b < 8; ++b) raw[b] = static_cast<uint8_t>(i >> (8 * b));
    chunks[i] = {Digest(raw), 1 + (i * 7919) % kChunkBytesMax};
  }
  return chunks;
}

TEST_CASE("a paged manifest names its index pages, not its chunks, and resolves back to them") {
  const std::vector<ChunkRef> chunks = SyntheticChunks(10);
  auto [m, pages] = Paged(chunks, 3);
  REQUIRE(m.chunk_pages.size() == 4);
  CHECK(m.chunk_pages[3].chunks == 1);
  const std::string json = ManifestToJson(m);
  CHECK_THAT(json, Catch::Contains("\"schema\":\"meridian.manifest/v2\""));
  CHECK_THAT(json, !Catch::Contains("\"chunks\":["));
  Result<Manifest> back = ParseManifest(json);
  REQUIRE(back.ok());
  CHECK(*back == m);
  CHECK_FALSE(back->resolved());
  CHECK(back->piece_count() == 4);  // unresolved: the pages alone

  int reads = 0;
  REQUIRE(ResolveChunkPages(&*back, [&](const ChunkPageRef& p) -> Result<Bytes> {
    ++reads;
    return pages.at(p.digest);
  }).ok());
  CHECK(reads == 4);
  CHECK(back->chunks == chunks);
  CHECK(back->piece_count() == 14);
  CHECK(back->piece(0) == ChunkRef{m.chunk_pages[0].digest, 3 * kChunkPageEntryBytes});
  CHECK(back->piece(4) == chunks[0]);
  // Resolved or not, two manifests naming the same pages are the same release.
  CHECK(SameRelease(*back, m));
  CHECK(ParseManifest(ManifestToJson(*back))->chunk_pages == m.chunk_pages);
}

TEST_CASE("a paged manifest is refused when its pages and sizes disagree, or it also lists chunks") {
  auto [m, pages] = Paged(SyntheticChunks(5), 2);
  Manifest bad = m;
  bad.size += 1;
  CHECK_THAT(ParseManifest(ManifestToJson(bad)).status().message(), Catch::Contains("sum of the page sizes"));
  bad = m;
  bad.chunk_pages[0].chunks = 0;
  CHECK_FALSE(ParseManifest(ManifestToJson(bad)).ok());
  bad = m;
  bad.chunk_pages[0].chunks = kChunkPageEntriesMax + 1;
  CHECK_FALSE(ParseManifest(ManifestToJson(bad)).ok());
  bad = m;
  bad.chunk_pages[0].size = bad.chunk_pages[0].chunks * kChunkBytesMax + 1;
  bad.size = bad.chunk_pages[0].size + bad.chunk_pages[1].size + bad.chunk_pages[2].size;
  CHECK_FALSE(ParseManifest(ManifestToJson(bad)).ok());
  std::string both = ManifestToJson(m);
  both.insert(1, "\"chunks\":[],");
  CHECK_THAT(ParseManifest(both).status().message(), Catch::Contains("chunks"));
  std::string empty = ManifestToJson(m);
  const size_t at = empty.find("\"chunk_pages\":[") + 15;
  empty.replace(at, empty.find(']', at) - at, "");
  CHECK_FALSE(ParseManifest(empty).ok());
}

TEST_CASE("an index page is read only when its digest, length, entry sizes and total all match") {
  const std::vector<ChunkRef> chunks = SyntheticChunks(3);
  ChunkPage page = MakeChunkPages(chunks)[0];
  REQUIRE(page.bytes.size() == 3 * kChunkPageEntryBytes);
  std::vector<ChunkRef> out = {chunks[0]};
  REQUIRE(ReadChunkPage(page.ref, page.bytes, &out).ok());
  CHECK(out.size() == 4);

  auto refused = [&](ChunkPageRef ref, Bytes bytes, const std::string& says) {
    std::vector<ChunkRef> got;
    Status st = ReadChunkPage(ref, bytes, &got);
    CHECK(st.code() == Status::Code::kCorruption);
    CHECK_THAT(st.message(), Catch::Contains(says));
    CHECK(got.empty());  // nothing of a refused page
  };
  Bytes flipped = page.bytes;
  flipped[5] ^= 1;
  refused(page.ref, flipped, "hash to another digest");
  refused(page.ref, Bytes(page.bytes.begin(), page.bytes.end() - 1), "is 107 bytes");
  // Pages that hash right but lie inside: a zero size, a size over a chunk, a wrong total.
  for (uint64_t size : {uint64_t{0}, kChunkBytesMax + 1}) {
    Bytes lying = page.bytes;
    for (int i = 0; i < 4; ++i) lying[Digest::kSize + i] = static_cast<uint8_t>(size >> (8 * i));
    ChunkPageRef ref = page.ref;
    ref.digest = Digest::Of(lying);
    refused(ref, lying, "has size");
  }
  refused(ChunkPageRef{Digest::Of(Bytes()), 0, 0}, Bytes(), "hold 0 chunks");
  ChunkPageRef wrong_total = page.ref;
  wrong_total.size += 1;
  refused(wrong_total, page.bytes, "hold");

  // A page that cannot be read names itself; the manifest stays unresolved.
  auto [m, pages] = Paged(chunks, 1);
  Status st = ResolveChunkPages(&m, [&](const ChunkPageRef& p) -> Result<Bytes> {
    if (p.digest == m.chunk_pages[2].digest) return Status::NotFound("gone");
    return pages.at(p.digest);
  });
  CHECK(st.code() == Status::Code::kNotFound);
  CHECK_THAT(st.message(), Catch::Contains(m.chunk_pages[2].digest.ToString()));
  CHECK(m.chunks.empty());
}

TEST_CASE("ten million chunk entries: a manifest of a few hundred pages and kilobytes, resolved exactly") {
  constexpr size_t kChunks = 10'000'000;  // some 620 GiB at the chunker's 64 KiB average
  const std::vector<ChunkRef> chunks = SyntheticChunks(kChunks);
  auto [m, pages] = Paged(chunks, kChunkPageEntriesMax);
  CHECK(m.chunk_pages.size() == (kChunks + kChunkPageEntriesMax - 1) / kChunkPageEntriesMax);  // 344
  for (const auto& [digest, bytes] : pages) CHECK(bytes.size() <= kChunkBytesMax);
  const std::string json = ManifestToJson(m);
  CHECK(json.size() < 64 * 1024);
  Result<Manifest> back = ParseManifest(json);
  REQUIRE(back.ok());
  REQUIRE(ResolveChunkPages(&*back, [&](const ChunkPageRef& p) -> Result<Bytes> { return pages.at(p.digest); }).ok());
  CHECK(back->chunks.size() == kChunks);
  CHECK(back->chunks == chunks);
  // Past kManifestPagedChunksMax the manifest itself is refused.
  Manifest over = m;
  over.chunk_pages.resize(kManifestPagedChunksMax / kChunkPageEntriesMax + 1, m.chunk_pages[0]);
  over.size = over.chunk_pages.size() * m.chunk_pages[0].size;
  CHECK_THAT(ParseManifest(ManifestToJson(over)).status().message(), Catch::Contains("list more than"));
  // Past kManifestPagesMax pages too, however few chunks they hold: one
  // page more than the cap, of one chunk each, is refused, the cap is not.
  auto [small, small_pages] = Paged(SyntheticChunks(kManifestPagesMax + 1), 1);
  REQUIRE(small.chunk_pages.size() == kManifestPagesMax + 1);
  CHECK_THAT(ParseManifest(ManifestToJson(small)).status().message(),
             Catch::Contains("at most " + std::to_string(kManifestPagesMax) + " elements"));
  small.size -= small.chunk_pages.back().size;
  small.chunk_pages.pop_back();
  CHECK(ParseManifest(ManifestToJson(small)).ok());
}

TEST_CASE("the runs of a chunk list that hold the first occurrence of each wanted digest") {
  auto digest = [](char c) { return Digest::Of(AsBytes(std::string(1, c))); };
  auto chunks = [&](const std::string& letters) {
    std::vector<ChunkRef> out;
    for (char c : letters) out.push_back({digest(c), static_cast<uint64_t>(c - 'a' + 1)});
    return out;
  };
  // Sizes a=1, b=2, …: runs of the wanted ones, each at its first occurrence.
  CHECK(FirstOccurrenceRuns(chunks("abcde"), {digest('b'), digest('c'), digest('e')}) ==
        std::vector<ChunkRun>{{1, 3, 1, 6}, {4, 5, 10, 15}});
  CHECK(FirstOccurrenceRuns(chunks("abab"), {digest('a'), digest('b')}) == std::vector<ChunkRun>{{0, 2, 0, 3}});
  CHECK(FirstOccurrenceRuns(chunks("aba"), {digest('a')}) == std::vector<ChunkRun>{{0, 1, 0, 1}});
  CHECK(FirstOccurrenceRuns(chunks("abc"), {}).empty());
  // Cut before a chunk that would take a run past the limit; a longer chunk alone.
  const std::set<Digest> all = {digest('a'), digest('b'), digest('c'), digest('d'), digest('e')};
  CHECK(FirstOccurrenceRuns(chunks("abcde"), all, 6) ==
        std::vector<ChunkRun>{{0, 3, 0, 6}, {3, 4, 6, 10}, {4, 5, 10, 15}});
  CHECK(FirstOccurrenceRuns(chunks("abcde"), all, 3) ==
        std::vector<ChunkRun>{{0, 2, 0, 3}, {2, 3, 3, 6}, {3, 4, 6, 10}, {4, 5, 10, 15}});
}

TEST_CASE("chunk batches are sized to carry about ten seconds at the last batch's rate") {
  constexpr uint64_t MiB = 1u << 20;
  // Fast: at most twice the last, up to the largest body.
  CHECK(NextChunkBatchBytes(kChunkBatchBytesFirst, MiB, 0.01) == 2 * MiB);
  CHECK(NextChunkBatchBytes(8 * MiB, 8 * MiB, 0.05) == kChunkBatchBytesMax);
  CHECK(NextChunkBatchBytes(kChunkBatchBytesMax, kChunkBatchBytesMax, 0.1) == kChunkBatchBytesMax);
  CHECK(NextChunkBatchBytes(MiB, MiB, 0) == 2 * MiB);
  // A 1 Mbit/s uplink (125,000 bytes/s): 1 MiB took 8.4 s, the next carries 10 s of it.
  const uint64_t slow = NextChunkBatchBytes(MiB, MiB, MiB / 125'000.0);
  CHECK(slow >= 1'249'999);
  CHECK(slow <= 1'250'000);
  // Slower still: smaller, never below the least.
  CHECK(NextChunkBatchBytes(MiB, MiB, 100) == 104'857);
  CHECK(NextChunkBatchBytes(MiB, MiB, 10'000) == kChunkBatchBytesMin);
  // A batch smaller than asked (the file's last chunks) still gives the rate.
  CHECK(NextChunkBatchBytes(16 * MiB, MiB, 1) == 10 * MiB);
}
