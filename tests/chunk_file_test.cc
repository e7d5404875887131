// Tests of cutting and hashing a file for publishing (cli/chunk_file.h).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
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
