// FastCDC: a gear rolling hash tested against a stricter mask before the
// average size and a looser one after it, which narrows the size distribution.
#include "delta/chunker.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstdint>
#include <optional>

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

// The hash shifts left one bit a byte, so once it has taken 64 bytes it is a
// function of the last 64 alone: a window hash, the same whatever came before.
// That is what lets disjoint ranges be scanned for boundaries independently.
constexpr size_t kWindowBytes = 64;

struct Masks {
  uint64_t strict;  // before the average size
  uint64_t loose;   // after it
};
Masks MasksOf(const ChunkerParams& p) {
  assert(p.min_bytes < p.avg_bytes && p.avg_bytes < p.max_bytes && std::has_single_bit(p.avg_bytes));
  const int bits = std::countr_zero(p.avg_bytes);
  return {TopBitsMask(bits + 2), TopBitsMask(bits - 2)};
}

// The end of the chunk that starts at data[0] (FindChunkEnd's contract).
// `find(from, to, strict, hash)` gives the first i in [from, to) whose hash
// passes the strict or loose mask; `hash` is the rolling hash of the bytes
// from min_bytes to from - 1, for a finder that goes on rolling it. A range
// that is not empty starts 63 bytes or more past min_bytes: its hashes are
// window hashes.
template <typename Find>
size_t ChunkEnd(ByteSpan data, bool final, const ChunkerParams& p, const Masks& masks, Find find) {
  const size_t n = data.size();
  if (n <= p.min_bytes) return final ? n : 0;
  const size_t limit = std::min(n, p.max_bytes);
  const size_t normal = std::min(limit, p.avg_bytes);
  // The hash starts from zero at min_bytes: until it has taken a whole
  // window it is not the window hash, and is tested here.
  const size_t windowed = std::min(limit, p.min_bytes + kWindowBytes - 1);
  uint64_t hash = 0;
  for (size_t i = p.min_bytes; i < windowed; ++i) {
    hash = (hash << 1) + kGear[data[i]];
    if ((hash & (i < normal ? masks.strict : masks.loose)) == 0) return i + 1;
  }
  if (windowed < normal) {
    if (std::optional<size_t> i = find(windowed, normal, true, hash)) return *i + 1;
  }
  if (std::optional<size_t> i = find(std::max(windowed, normal), limit, false, hash)) return *i + 1;
  if (limit == p.max_bytes) return p.max_bytes;
  return final ? n : 0;
}

}  // namespace

size_t FindChunkEnd(ByteSpan data, bool final, const ChunkerParams& p) {
  const Masks masks = MasksOf(p);
  return ChunkEnd(data, final, p, masks,
                  [&](size_t from, size_t to, bool strict, uint64_t& rolled) -> std::optional<size_t> {
                    // A local: the bytes read may alias what a reference names,
                    // which would store the hash to memory at every byte.
                    uint64_t hash = rolled;
                    const uint64_t mask = strict ? masks.strict : masks.loose;
                    for (size_t i = from; i < to; ++i) {
                      hash = (hash << 1) + kGear[data[i]];
                      if ((hash & mask) == 0) return i;
                    }
                    rolled = hash;
                    return std::nullopt;
                  });
}

std::vector<CutCandidate> ScanCutCandidates(ByteSpan data, size_t from, size_t to, const ChunkerParams& p) {
  const Masks masks = MasksOf(p);
  std::vector<CutCandidate> out;
  // Each hash step waits for the one before: two halves of the range are
  // rolled side by side, so the processor overlaps their steps.
  const size_t half = from + (to - from) / 2;
  auto warm = [&](size_t at) {
    uint64_t h = 0;
    for (size_t i = at - std::min(at, kWindowBytes - 1); i < at; ++i) h = (h << 1) + kGear[data[i]];
    return h;
  };
  std::vector<CutCandidate> second;
  uint64_t a = warm(from), b = warm(half);
  const uint8_t* bytes = data.data();
  const uint64_t loose = masks.loose;
  for (size_t i = from, j = half; i < half; ++i, ++j) {
    a = (a << 1) + kGear[bytes[i]];
    b = (b << 1) + kGear[bytes[j]];
    if ((a & loose) == 0) [[unlikely]] out.push_back({i, (a & masks.strict) == 0});
    if ((b & loose) == 0) [[unlikely]] second.push_back({j, (b & masks.strict) == 0});
  }
  for (size_t j = half + (half - from); j < to; ++j) {
    b = (b << 1) + kGear[bytes[j]];
    if ((b & loose) == 0) second.push_back({j, (b & masks.strict) == 0});
  }
  out.insert(out.end(), second.begin(), second.end());
  return out;
}

std::vector<size_t> CutChunks(ByteSpan data, bool final, std::span<const CutCandidate> candidates,
                              const ChunkerParams& p) {
  const Masks masks = MasksOf(p);
  std::vector<size_t> lengths;
  for (size_t start = 0; start < data.size();) {
    const size_t len = ChunkEnd(data.subspan(start), final, p, masks,
                                [&](size_t from, size_t to, bool strict, uint64_t&) -> std::optional<size_t> {
                                  auto it = std::lower_bound(candidates.begin(), candidates.end(), start + from,
                                                             [](const CutCandidate& c, size_t at) { return c.at < at; });
                                  for (; it != candidates.end() && it->at < start + to; ++it) {
                                    if (it->strict || !strict) return it->at - start;
                                  }
                                  return std::nullopt;
                                });
    if (len == 0) break;
    lengths.push_back(len);
    start += len;
  }
  return lengths;
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
