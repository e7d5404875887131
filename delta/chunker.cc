// FastCDC: a gear rolling hash tested against a stricter mask before the
// average size and a looser one after it, which narrows the size distribution.
#include "delta/chunker.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstdint>

namespace meridian {

namespace {

// 256 pseudo-random 64-bit values (splitmix64 from a fixed seed): the table is
// part of the chunk format, so it must never change between versions.
constexpr std::array<uint64_t, 256> MakeGearTable() {
  std::array<uint64_t, 256> table{};
  uint64_t x = 0x6d6572696469616eull;  // "meridian"
  for (uint64_t& v : table) {
    x += 0x9e3779b97f4a7c15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    v = z ^ (z >> 31);
  }
  return table;
}
constexpr std::array<uint64_t, 256> kGear = MakeGearTable();

// The hash shifts left, so its top bits depend on the most recent bytes.
constexpr uint64_t TopBitsMask(int bits) { return ~0ull << (64 - bits); }

}  // namespace

size_t FindChunkEnd(ByteSpan data, bool final, const ChunkerParams& p) {
  assert(p.min_bytes < p.avg_bytes && p.avg_bytes < p.max_bytes && std::has_single_bit(p.avg_bytes));
  const size_t n = data.size();
  if (n <= p.min_bytes) return final ? n : 0;

  const int bits = std::countr_zero(p.avg_bytes);
  const uint64_t mask_strict = TopBitsMask(bits + 2);
  const uint64_t mask_loose = TopBitsMask(bits - 2);
  const size_t limit = std::min(n, p.max_bytes);
  const size_t normal = std::min(limit, p.avg_bytes);

  uint64_t hash = 0;
  size_t i = p.min_bytes;
  for (; i < normal; ++i) {
    hash = (hash << 1) + kGear[data[i]];
    if ((hash & mask_strict) == 0) return i + 1;
  }
  for (; i < limit; ++i) {
    hash = (hash << 1) + kGear[data[i]];
    if ((hash & mask_loose) == 0) return i + 1;
  }
  if (limit == p.max_bytes) return p.max_bytes;
  return final ? n : 0;
}

std::vector<size_t> ChunkLengths(ByteSpan data, const ChunkerParams& params) {
  std::vector<size_t> lengths;
  while (!data.empty()) {
    size_t len = FindChunkEnd(data, /*final=*/true, params);
    lengths.push_back(len);
    data = data.subspan(len);
  }
  return lengths;
}

}  // namespace meridian
