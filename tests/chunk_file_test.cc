// Tests of cutting and hashing a file for publishing (cli/chunk_file.h).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "base/digest.h"
#include "cli/chunk_file.h"
#include "delta/chunker.h"

using namespace meridian;
using meridian::cli::ChunkedFile;
using meridian::cli::ChunkFile;

namespace {

Bytes RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

std::string WriteTemp(const Bytes& data, const std::string& name) {
  std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return path;
}

}  // namespace

TEST_CASE("a file read in blocks on all cores is cut and hashed as one buffer would be") {
  // Larger than a read block (8 MiB), with a stretch of no boundaries (zeros:
  // forced cuts) across the first block's end.
  Bytes data = RandomBytes(21 << 20, 7);
  std::fill(data.begin() + (8 << 20) - 300'000, data.begin() + (8 << 20) + 300'000, 0);
  const std::string path = WriteTemp(data, "meridian-chunk-file-test");
  uint64_t told = 0;
  Result<ChunkedFile> f = ChunkFile(path, [&](uint64_t n) { told += n; });
  std::filesystem::remove(path);
  REQUIRE(f.ok());
  CHECK(told == data.size());
  CHECK(f->manifest.size == data.size());
  CHECK(f->manifest.digest == Digest::Of(data));
  const std::vector<size_t> lengths = ChunkLengths(data);
  REQUIRE(f->manifest.chunks.size() == lengths.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    CHECK(f->offsets[i] == offset);
    CHECK(f->manifest.chunks[i].size == lengths[i]);
    CHECK(f->manifest.chunks[i].digest == Digest::Of(ByteSpan(data).subspan(offset, lengths[i])));
    offset += lengths[i];
  }
}

TEST_CASE("an empty file, and one that cannot be read") {
  const std::string path = WriteTemp({}, "meridian-chunk-file-empty");
  Result<ChunkedFile> empty = ChunkFile(path, [](uint64_t) {});
  std::filesystem::remove(path);
  REQUIRE(empty.ok());
  CHECK(empty->manifest.size == 0);
  CHECK(empty->manifest.chunks.empty());
  CHECK(empty->manifest.digest == Digest::Of(ByteSpan()));

  Result<ChunkedFile> missing = ChunkFile("/nonexistent/meridian-model.bin", [](uint64_t) {});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("/nonexistent/meridian-model.bin") != std::string::npos);
}

TEST_CASE("a long uncut tail carried from one block to the next is cut as one buffer would be") {
  // Random bytes, then zeros across the first block's end (8 MiB): zeros hold
  // no boundary, so chunks are cut there at the largest size from the last
  // boundary in the random bytes, and the first block leaves a tail of
  // (8 MiB - that boundary) modulo the largest size. A prefix whose tail is
  // nearly a whole chunk is looked for among a few lengths.
  const size_t block = size_t{8} << 20, largest = ChunkerParams{}.max_bytes;
  std::optional<Bytes> data;
  for (size_t prefix = 1 << 20; prefix < (2 << 20) && !data; prefix += 37'000) {
    Bytes d = RandomBytes(block + (1 << 20), prefix);
    std::fill(d.begin() + static_cast<ptrdiff_t>(prefix), d.begin() + static_cast<ptrdiff_t>(block + largest), 0);
    size_t cut = 0;
    for (size_t len : ChunkLengths(d)) {
      if (cut + len > block) break;
      cut += len;
    }
    if (block - cut > largest * 7 / 8) data = std::move(d);
  }
  REQUIRE(data);
  const std::string path = WriteTemp(*data, "meridian-chunk-file-tail");
  Result<ChunkedFile> f = ChunkFile(path, [](uint64_t) {});
  std::filesystem::remove(path);
  REQUIRE(f.ok());
  CHECK(f->manifest.digest == Digest::Of(*data));
  const std::vector<size_t> lengths = ChunkLengths(*data);
  REQUIRE(f->manifest.chunks.size() == lengths.size());
  for (size_t i = 0, offset = 0; i < lengths.size(); offset += lengths[i++]) {
    CHECK(f->manifest.chunks[i].size == lengths[i]);
    CHECK(f->manifest.chunks[i].digest == Digest::Of(ByteSpan(*data).subspan(offset, lengths[i])));
  }
}
