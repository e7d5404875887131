// Tests of the content-defined chunker.
#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "base/digest.h"
#include "delta/chunker.h"

using namespace meridian;

static Bytes RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t k = 0; k < 8 && i + k < n; ++k) b[i + k] = static_cast<uint8_t>(v >> (8 * k));
  }
  return b;
}

static std::vector<Digest> ChunkDigests(const Bytes& data) {
  std::vector<Digest> out;
  size_t off = 0;
  for (size_t len : ChunkLengths(data)) {
    out.push_back(Digest::Of(ByteSpan(data).subspan(off, len)));
    off += len;
  }
  return out;
}

TEST_CASE("chunks cover the input, respect the bounds and average near 64 KiB") {
  Bytes data = RandomBytes(32 << 20, 1);
  ChunkerParams p;
  std::vector<size_t> lens = ChunkLengths(data, p);
  size_t total = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    total += lens[i];
    if (i + 1 < lens.size()) {
      CHECK(lens[i] > p.min_bytes);
      CHECK(lens[i] <= p.max_bytes);
    }
  }
  CHECK(total == data.size());
  double avg = static_cast<double>(total) / static_cast<double>(lens.size());
  CHECK(avg > 48 * 1024);
  CHECK(avg < 96 * 1024);
}

TEST_CASE("an insertion in the middle changes only the chunks around it") {
  Bytes a = RandomBytes(8 << 20, 2);
  Bytes b = a;
  Bytes insert = RandomBytes(1000, 3);
  b.insert(b.begin() + (4 << 20), insert.begin(), insert.end());
  std::vector<Digest> da = ChunkDigests(a), db = ChunkDigests(b);
  std::set<Digest> sa(da.begin(), da.end());
  size_t fresh = 0;
  for (const Digest& d : db) fresh += sa.count(d) == 0;
  CHECK(fresh >= 1);
  CHECK(fresh <= 2);
  // Chunks before the insertion are identical, in order.
  CHECK(da.front() == db.front());
  CHECK(da.back() == db.back());
}

TEST_CASE("streaming with partial buffers finds the same boundaries") {
  Bytes data = RandomBytes(2 << 20, 4);
  std::vector<size_t> whole = ChunkLengths(data);
  std::vector<size_t> streamed;
  size_t start = 0, avail = 0;
  while (start < data.size()) {
    avail = std::min(data.size(), avail + 10'000);
    bool final = avail == data.size();
    size_t len = FindChunkEnd(ByteSpan(data).subspan(start, avail - start), final);
    if (len == 0) continue;
    streamed.push_back(len);
    start += len;
    avail = std::max(avail, start);
  }
  CHECK(streamed == whole);
}

TEST_CASE("tiny and empty inputs") {
  CHECK(ChunkLengths({}).empty());
  Bytes one(1, 7);
  CHECK(ChunkLengths(one) == std::vector<size_t>{1});
  CHECK(FindChunkEnd(one, false) == 0);
  Bytes zeros(1 << 20, 0);  // no content boundary in constant data: max-size chunks
  std::vector<size_t> lens = ChunkLengths(zeros);
  CHECK(lens.size() == 4);
  CHECK(lens[0] == 256 * 1024);
}

TEST_CASE("the chunk format does not change: boundaries of fixed inputs") {
  // Chunk digests name stored chunks: other boundaries would share nothing
  // with versions published before.
  CHECK(ChunkLengths(RandomBytes(1 << 20, 9)) ==
        std::vector<size_t>{85617, 69531, 75302, 87780, 115088, 76549, 71591, 33561, 67744, 91442, 95631, 70261,
                            80031, 28448});
  const ChunkerParams small{.min_bytes = 64, .avg_bytes = 256, .max_bytes = 1024};
  CHECK(ChunkLengths(RandomBytes(4096, 10), small) ==
        std::vector<size_t>{306, 371, 260, 396, 270, 440, 126, 227, 281, 175, 303, 299, 321, 320, 1});
}

// Cuts `data` as a parallel caller would: candidates scanned in `pieces` ranges.
static std::vector<size_t> CutInPieces(const Bytes& data, bool final, size_t pieces, const ChunkerParams& p) {
  std::vector<CutCandidate> candidates;
  for (size_t k = 0; k < pieces; ++k) {
    std::vector<CutCandidate> part =
        ScanCutCandidates(data, data.size() * k / pieces, data.size() * (k + 1) / pieces, p);
    candidates.insert(candidates.end(), part.begin(), part.end());
  }
  return CutChunks(data, final, candidates, p);
}

// FindChunkEnd from the front until it asks for more input.
static std::vector<size_t> CutOneByOne(const Bytes& data, bool final, const ChunkerParams& p) {
  std::vector<size_t> lens;
  for (size_t start = 0, len; start < data.size(); start += len) {
    len = FindChunkEnd(ByteSpan(data).subspan(start), final, p);
    if (len == 0) break;
    lens.push_back(len);
  }
  return lens;
}

TEST_CASE("cutting from candidates scanned in pieces finds FindChunkEnd's boundaries") {
  const ChunkerParams small{.min_bytes = 64, .avg_bytes = 256, .max_bytes = 1024};
  Bytes text;  // low entropy: long runs without a boundary, forced cuts
  for (int i = 0; text.size() < (1 << 20); ++i) {
    std::string line = "weights[" + std::to_string(i % 977) + "] = 0.0;\n";
    text.insert(text.end(), line.begin(), line.end());
  }
  Bytes mixed = RandomBytes(3 << 20, 11);
  std::fill(mixed.begin() + (1 << 20), mixed.begin() + (2 << 20), 0);
  for (const Bytes* data : {&mixed, &text}) {
    for (const ChunkerParams& p : {ChunkerParams{}, small}) {
      for (bool final : {true, false}) {
        const std::vector<size_t> serial = CutOneByOne(*data, final, p);
        CHECK(serial.size() > 4);
        for (size_t pieces : {1, 2, 7, 64}) CHECK(CutInPieces(*data, final, pieces, p) == serial);
      }
    }
  }
  CHECK(CutChunks({}, true, {}).empty());
}
