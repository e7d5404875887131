// Tests of the delta encoder within a memory budget: versions several times
// larger than the budget, read through readers (never whole in memory), are
// encoded in windows that round-trip, find content moved far away, and keep
// the heap within the budget (measured under AddressSanitizer, whose
// allocator counts every live byte, liblzma's and zstd's included).
#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <vector>

#include "delta/delta.h"

#if defined(__SANITIZE_ADDRESS__)
// From the sanitizer runtime's allocator interface (GCC ships no header for it).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*, size_t),
                                                         void (*free_hook)(const volatile void*));
#define MERIDIAN_HEAP_METER 1
#endif

using namespace meridian;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Incompressible bytes, unique everywhere, computed at any offset without
// being stored: 1 MiB of random words, each 4 KiB of it XORed with a key of
// its position and the stream's seed.
class Stream {
 public:
  explicit Stream(uint64_t seed) : seed_(seed), base_(kMiB / 8) {
    for (size_t i = 0; i < base_.size(); ++i) base_[i] = Mix(i ^ 0xabcdefull);
  }
  void Fill(uint64_t offset, uint8_t* out, size_t n) const {
    while (n > 0) {
      const uint64_t word_index = offset / 8;
      const uint64_t word = base_[word_index % base_.size()] ^ Mix((word_index / 512) ^ (seed_ << 40));
      const size_t skip = offset % 8, take = std::min<size_t>(n, 8 - skip);
      std::memcpy(out, reinterpret_cast<const uint8_t*>(&word) + skip, take);
      out += take, offset += take, n -= take;
    }
  }

 private:
  uint64_t seed_;
  std::vector<uint64_t> base_;
};

// A version made of pieces: ranges of the source stream (optionally with
// every 1024th byte changed, like drifted weights), or new bytes.
struct Piece {
  enum Kind { kSource, kDrifted, kNew } kind;
  uint64_t from;  // offset in the source stream, or the new stream
  uint64_t length;
};

class Version final : public SourceReader {
 public:
  Version(const Stream& source, const Stream& fresh, std::vector<Piece> pieces)
      : source_(source), fresh_(fresh), pieces_(std::move(pieces)) {
    for (const Piece& p : pieces_) size_ += p.length;
  }
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, std::span<uint8_t> out) override {
    if (offset > size_ || out.size() > size_ - offset) return Status::InvalidArgument("read out of range");
    uint64_t piece_start = 0;
    for (const Piece& p : pieces_) {
      const uint64_t piece_end = piece_start + p.length;
      if (!out.empty() && offset < piece_end) {
        const uint64_t within = offset - piece_start;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), piece_end - offset));
        (p.kind == Piece::kNew ? fresh_ : source_).Fill(p.from + within, out.data(), n);
        if (p.kind == Piece::kDrifted) {
          for (uint64_t i = (1024 - within % 1024) % 1024; i < n; i += 1024) ++out[i];
        }
        out = out.subspan(n), offset += n;
      }
      piece_start = piece_end;
    }
    return Status::Ok();
  }
  Digest Hash() {
    Sha256 h;
    Bytes buf(4 * kMiB);
    for (uint64_t off = 0; off < size_; off += buf.size()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size_ - off));
      REQUIRE(Read(off, std::span(buf.data(), n)).ok());
      h.Update(ByteSpan(buf.data(), n));
    }
    return h.Finish();
  }

 private:
  const Stream& source_;
  const Stream& fresh_;
  std::vector<Piece> pieces_;
  uint64_t size_ = 0;
};

// Checks what the decoder writes against the expected target as it comes.
class CheckingSink final : public TargetSink {
 public:
  explicit CheckingSink(Version& expected) : expected_(expected) {}
  Status Write(ByteSpan data) override {
    buf_.resize(data.size());
    MERIDIAN_RETURN_IF_ERROR(expected_.Read(written_, buf_));
    if (!std::equal(data.begin(), data.end(), buf_.begin())) return Status::Corruption("target differs");
    written_ += data.size();
    return Status::Ok();
  }
  Status ReadBack(uint64_t offset, std::span<uint8_t> out) override { return expected_.Read(offset, out); }

 private:
  Version& expected_;
  Bytes buf_;
  uint64_t written_ = 0;
};

#if MERIDIAN_HEAP_METER
// The most heap in use since Start, above what was in use then.
std::atomic<size_t> heap_peak{0};
void OnMalloc(const volatile void*, size_t) {
  const size_t now = __sanitizer_get_current_allocated_bytes();
  for (size_t seen = heap_peak.load(); now > seen && !heap_peak.compare_exchange_weak(seen, now);) {
  }
}
void OnFree(const volatile void*) {}
#endif

}  // namespace

TEST_CASE("versions 4 x the memory budget: windows round-trip, find moved content, stay within the budget") {
  const Stream source_stream(1), fresh_stream(2);
  // The source: 256 MiB. The target: new bytes in front, the source's first
  // 96 MiB, its last 96 MiB (moved 64 MiB earlier), more new bytes, 16 MiB
  // of it drifted, the rest.
  Version source(source_stream, fresh_stream, {{Piece::kSource, 0, 256 * kMiB}});
  Version target(source_stream, fresh_stream,
                 {{Piece::kNew, 0, 4096},
                  {Piece::kSource, 0, 96 * kMiB},
                  {Piece::kSource, 160 * kMiB, 96 * kMiB},
                  {Piece::kNew, 4096, 12288},
                  {Piece::kDrifted, 96 * kMiB, 16 * kMiB},
                  {Piece::kSource, 112 * kMiB, 48 * kMiB}});
  const Digest source_digest = source.Hash(), target_digest = target.Hash();

  DeltaOptions options;
  options.memory_bytes_max = 64 * kMiB;
  Bytes delta;
  auto write = [&](ByteSpan bytes) {
    delta.insert(delta.end(), bytes.begin(), bytes.end());
    return Status::Ok();
  };
  delta.reserve(4 * kMiB);
#if MERIDIAN_HEAP_METER
  const size_t heap_before = __sanitizer_get_current_allocated_bytes();
  heap_peak = heap_before;
  __sanitizer_install_malloc_and_free_hooks(OnMalloc, OnFree);
#endif
  const Result<uint16_t> version = EncodeDelta({source, source_digest}, {target, target_digest}, options, write);
#if MERIDIAN_HEAP_METER
  __sanitizer_install_malloc_and_free_hooks(nullptr, nullptr);
  const size_t heap_used = heap_peak - heap_before;
  std::printf("windowed encoding of 256 MiB versions: heap used %zu bytes\n", heap_used);
  INFO("heap used while encoding: " << heap_used << " bytes");
  CHECK(heap_used <= options.memory_bytes_max);
  CHECK(heap_used >= options.memory_bytes_max / 4);  // the meter sees the encoder's allocations
#endif
  INFO(version.status().ToString());
  REQUIRE(version.ok());
  // The lowest version the operations need: a decoder refuses an operation
  // its header's version does not have.
  delta_format::SetFormatVersion(delta, *version);
  // Copies of the moved 96 MiB, differences of the drifted 16 MiB (16 Ki
  // changed bytes), the 16 KiB of new bytes as literals.
  std::printf("windowed encoding of 256 MiB versions: delta %zu bytes\n", delta.size());
  INFO("delta: " << delta.size() << " bytes");
  CHECK(delta.size() < kMiB);

  ApplyOptions apply;
  apply.source_digest = source_digest;
  apply.target_digest = target_digest;
  CheckingSink sink(target);
  DeltaDecoder decoder(source, sink, apply);
  for (size_t off = 0; off < delta.size(); off += 64 * 1024) {
    REQUIRE(decoder.Append(ByteSpan(delta).subspan(off, std::min<size_t>(64 * 1024, delta.size() - off))).ok());
  }
  const Status finished = decoder.Finish();
  INFO(finished.ToString());
  REQUIRE(finished.ok());
  CHECK(decoder.target_bytes_written() == target.size());
}

TEST_CASE("a version that does not hash to the digest given is refused") {
  const Stream source_stream(1), fresh_stream(2);
  Version source(source_stream, fresh_stream, {{Piece::kSource, 0, 3 * kMiB}});
  Version target(source_stream, fresh_stream, {{Piece::kNew, 0, 4096}, {Piece::kSource, 0, 3 * kMiB}});
  const Digest source_digest = source.Hash(), target_digest = target.Hash();
  DeltaOptions options;
  options.memory_bytes_max = kDeltaEncoderMemoryMin;
  auto discard = [](ByteSpan) { return Status::Ok(); };
  // In one window and in several (3 MiB is more than a 16 MiB budget holds at once).
  for (uint64_t budget : {uint64_t{1} << 30, kDeltaEncoderMemoryMin}) {
    options.memory_bytes_max = budget;
    CHECK(EncodeDelta({source, source_digest}, {target, target_digest}, options, discard).ok());
    CHECK(EncodeDelta({source, target_digest}, {target, target_digest}, options, discard).status().code() == Status::Code::kCorruption);
    CHECK(EncodeDelta({source, source_digest}, {target, source_digest}, options, discard).status().code() == Status::Code::kCorruption);
  }
  options.memory_bytes_max = kDeltaEncoderMemoryMin - 1;
  CHECK(EncodeDelta({source, source_digest}, {target, target_digest}, options, discard).status().code() ==
        Status::Code::kInvalidArgument);
}
