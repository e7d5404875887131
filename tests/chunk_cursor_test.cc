// Unit tests of the download cursor (daemon/chunk_cursor.h) over a real
// store: from any byte, a paged manifest's pages walked one at a time give
// the same chunks as its resolved list, and a page the store lost is an
// error naming it, not a short download.
#include "daemon/chunk_cursor.h"

#include <catch2/catch.hpp>

#include "tests/harness.h"
#include "tests/raw_db.h"
#include "tests/verified_manifest.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

// Seeks `cursor` to `offset` and reads it to the end: the bytes to skip in
// the first chunk, then the chunks.
std::pair<uint64_t, std::vector<ChunkRef>> ReadFrom(ChunkCursor& cursor, uint64_t offset) {
  std::pair<uint64_t, std::vector<ChunkRef>> out;
  out.first = cursor.Seek(offset).value();
  for (;;) {
    Result<std::optional<ChunkRef>> next = cursor.Next();
    REQUIRE(next.ok());
    if (!*next) return out;
    out.second.push_back(**next);
  }
}

}  // namespace

TEST_CASE("a paged manifest's pages, walked a page at a time from any byte, give its chunks; a lost page is named") {
  TempDir dir;
  std::vector<Bytes> chunks;
  for (uint32_t i = 0; i < 7; ++i) chunks.push_back(RandomBytes(500 + 37 * i, 20 + i));
  const Artifact big = Paged(ArtifactOf("big", "1.0.0", std::move(chunks)), 3);  // pages of 3, 3, 1
  REQUIRE(big.manifest.chunk_pages.size() == 3);
  const std::vector<ChunkRef>& all = big.manifest.chunks;
  {
    std::unique_ptr<Store> store = Store::Open(dir / "store").value();
    PutAll(*store, big);
    REQUIRE(store->CommitVersion(Verified(big.manifest)).ok());

    std::shared_ptr<const Manifest> as_signed = store->FindArtifactAsSigned(big.manifest.digest).value();
    REQUIRE(as_signed->paged());
    CHECK(as_signed->chunks.empty());  // the pages are read as the cursor goes
    ChunkCursor paged(*store, as_signed);
    ChunkCursor list(std::make_shared<const std::vector<ChunkRef>>(all));

    // Every chunk's first and last byte, and a byte inside it.
    uint64_t start = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      for (uint64_t offset : {start, start + 1, start + all[i].size - 1}) {
        INFO("chunk " << i << ", byte " << offset);
        const std::vector<ChunkRef> rest(all.begin() + static_cast<ptrdiff_t>(i), all.end());
        for (ChunkCursor* cursor : {&paged, &list}) {
          auto [skip, got] = ReadFrom(*cursor, offset);
          CHECK(skip == offset - start);
          CHECK(got == rest);
        }
      }
      start += all[i].size;
    }
    for (ChunkCursor* cursor : {&paged, &list}) {
      CHECK(cursor->Seek(big.manifest.size).status().code() == Status::Code::kInvalidArgument);
    }
  }

  // The middle page lost behind the store's back: the chunks before it are
  // given, then an error naming the page; a seek into it fails the same way.
  { RawDb(dir / "store").Lose(big.manifest.chunk_pages[1].digest); }
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();
  ChunkCursor cursor(*store, store->FindArtifactAsSigned(big.manifest.digest).value());
  REQUIRE(cursor.Seek(0).value() == 0);
  for (size_t i = 0; i < 3; ++i) CHECK(cursor.Next().value() == all[i]);
  Result<std::optional<ChunkRef>> lost = cursor.Next();
  CHECK(lost.status().code() == Status::Code::kCorruption);
  CHECK_THAT(lost.status().message(), Catch::Contains(big.manifest.chunk_pages[1].digest.ToString()));
  CHECK(cursor.Seek(big.manifest.chunk_pages[0].size).status().code() == Status::Code::kCorruption);
  // The last page still reads.
  auto [skip, tail] = ReadFrom(cursor, big.manifest.size - 1);
  CHECK(skip == all.back().size - 1);
  CHECK(tail == std::vector<ChunkRef>{all.back()});
}
