// Tests of the delta codec: round trips over seeded random edits and weight-like
// arrays, refusal of hostile deltas, and the decoder's memory bound.
#include <catch2/catch.hpp>
#include <algorithm>
#include <numeric>
#include <bit>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include <lzma.h>
#include <zstd.h>

#include "delta/delta.h"
#include "delta/difference_model.h"

using namespace meridian;

namespace {

Bytes RandomBytes(size_t n, std::mt19937_64& rng) {
  Bytes b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// Text-like bytes: compressible, with repeats, like code.
Bytes CodeLike(size_t n, std::mt19937_64& rng) {
  static const char* kWords[] = {"local.get ", "i32.add ", "call $f", "br_if 0 ", "end\n", "i64.load ", "memory "};
  Bytes b;
  while (b.size() < n) {
    const char* w = kWords[rng() % 7];
    b.insert(b.end(), w, w + std::strlen(w));
    if (rng() % 5 == 0) b.push_back(static_cast<uint8_t>(rng()));
  }
  b.resize(n);
  return b;
}

uint16_t ToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int exp = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  return static_cast<uint16_t>(sign | (exp << 10) | ((x >> 13) & 0x3ff));
}

float FromHalf(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t x = exp == 0 ? sign : sign | ((exp - 15 + 127) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// Float16 weights ~ N(0, 0.05), and a copy with every value × (1 + N(0, rel)).
std::pair<Bytes, Bytes> Fp16Pair(size_t count, double rel, std::mt19937_64& rng) {
  std::normal_distribution<float> w(0, 0.05f), noise(0, static_cast<float>(rel));
  Bytes a(count * 2), b(count * 2);
  for (size_t i = 0; i < count; ++i) {
    const uint16_t h = ToHalf(w(rng));
    const uint16_t g = ToHalf(FromHalf(h) * (1 + noise(rng)));
    std::memcpy(&a[2 * i], &h, 2);
    std::memcpy(&b[2 * i], &g, 2);
  }
  return {a, b};
}

std::pair<Bytes, Bytes> Fp32Pair(size_t count, double rel, std::mt19937_64& rng) {
  std::normal_distribution<float> w(0, 0.05f), noise(0, static_cast<float>(rel));
  Bytes a(count * 4), b(count * 4);
  for (size_t i = 0; i < count; ++i) {
    const float x = w(rng), y = x * (1 + noise(rng));
    std::memcpy(&a[4 * i], &x, 4);
    std::memcpy(&b[4 * i], &y, 4);
  }
  return {a, b};
}

Bytes MustEncode(ByteSpan source, ByteSpan target, const DeltaOptions& options = {}) {
  Result<Bytes> delta = EncodeDelta(source, target, options);
  REQUIRE(delta.ok());
  return std::move(delta).value();
}

void CheckRoundTrip(const Bytes& source, const Bytes& target, const DeltaOptions& options = {}) {
  const Bytes delta = MustEncode(source, target, options);
  Result<Bytes> out = ApplyDelta(source, delta);
  INFO(out.status().ToString());
  REQUIRE(out.ok());
  REQUIRE(*out == target);
}

// Small segments, so that small inputs exercise many operations.
DeltaOptions SmallOptions() {
  DeltaOptions o;
  o.literal_level = 3;
  o.numeric_level = 3;
  o.segment_bytes = 64 * 1024;
  o.prefix_bytes_max = 256 * 1024;
  o.copy_bytes_min = 1024;
  return o;
}

// A random edit: insert, delete, replace or move a range.
Bytes Edit(const Bytes& in, std::mt19937_64& rng) {
  Bytes out = in;
  const size_t n = out.size();
  const size_t at = n ? rng() % n : 0;
  const size_t len = std::min<size_t>(n - at, rng() % 20000);
  switch (rng() % 4) {
    case 0: {
      Bytes ins = RandomBytes(rng() % 20000, rng);
      out.insert(out.begin() + static_cast<ptrdiff_t>(at), ins.begin(), ins.end());
      break;
    }
    case 1:
      out.erase(out.begin() + static_cast<ptrdiff_t>(at), out.begin() + static_cast<ptrdiff_t>(at + len));
      break;
    case 2:
      for (size_t i = at; i < at + len; ++i) out[i] = static_cast<uint8_t>(rng());
      break;
    default: {
      Bytes moved(out.begin() + static_cast<ptrdiff_t>(at), out.begin() + static_cast<ptrdiff_t>(at + len));
      out.erase(out.begin() + static_cast<ptrdiff_t>(at), out.begin() + static_cast<ptrdiff_t>(at + len));
      out.insert(out.end(), moved.begin(), moved.end());
      break;
    }
  }
  return out;
}

ApplyOptions SourceOnly(ByteSpan source) {
  ApplyOptions options;
  options.source_digest = Digest::Of(source);
  return options;
}

// Keeps what the decoder writes (and reads it back for target prefixes).
struct StoringSink final : TargetSink {
  Bytes out;
  uint64_t read_back_bytes = 0;  // target prefixes the decoder asked for
  Status Write(ByteSpan data) override {
    out.insert(out.end(), data.begin(), data.end());
    return Status::Ok();
  }
  Status ReadBack(uint64_t offset, std::span<uint8_t> dest) override {
    REQUIRE(offset + dest.size() <= out.size());
    std::memcpy(dest.data(), out.data() + offset, dest.size());
    read_back_bytes += dest.size();
    return Status::Ok();
  }
};

// Feeds `delta` to a decoder in pieces of `piece_bytes`, writing to `sink`;
// returns the first error or Finish's status.
Status ApplyInPieces(const Bytes& source, const Bytes& delta, size_t piece_bytes, StoringSink& sink) {
  SpanSourceReader reader(source);
  DeltaDecoder decoder(reader, sink, SourceOnly(source));
  for (size_t i = 0; i < delta.size(); i += piece_bytes) {
    Status st = decoder.Append(ByteSpan(delta).subspan(i, std::min(piece_bytes, delta.size() - i)));
    if (!st.ok()) return st;
  }
  Status st = decoder.Finish();
  CHECK(decoder.buffer_bytes_peak() <= kDeltaDecoderBufferBytesMax);
  return st;
}

// The same, with the output in `out`.
Status ApplyInPieces(const Bytes& source, const Bytes& delta, size_t piece_bytes, Bytes& out) {
  StoringSink sink;
  Status st = ApplyInPieces(source, delta, piece_bytes, sink);
  out = std::move(sink.out);
  return st;
}

}  // namespace

TEST_CASE("empty source and target round-trip") {
  std::mt19937_64 rng(1);
  const Bytes some = CodeLike(5000, rng);
  CheckRoundTrip({}, {});
  CheckRoundTrip({}, some);
  CheckRoundTrip(some, {});
  CheckRoundTrip(some, some);
}

TEST_CASE("random edits round-trip (seeded property test)") {
  for (uint64_t seed = 0; seed < 40; ++seed) {
    std::mt19937_64 rng(seed);
    const size_t n = rng() % 300000;
    const Bytes source = seed % 2 ? CodeLike(n, rng) : RandomBytes(n, rng);
    Bytes target = source;
    const int edits = static_cast<int>(rng() % 6);
    for (int e = 0; e < edits; ++e) target = Edit(target, rng);
    INFO("seed " << seed);
    CheckRoundTrip(source, target, SmallOptions());
    if (seed % 8 == 0) CheckRoundTrip(source, target);
  }
}

TEST_CASE("streamed in small pieces, the decoder gives the same bytes") {
  std::mt19937_64 rng(7);
  const Bytes source = CodeLike(200000, rng);
  const Bytes target = Edit(Edit(source, rng), rng);
  const Bytes delta = MustEncode(source, target, SmallOptions());
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}}) {
    Bytes out;
    REQUIRE(ApplyInPieces(source, delta, piece, out).ok());
    REQUIRE(out == target);
  }
}

TEST_CASE("unchanged input costs almost nothing") {
  std::mt19937_64 rng(3);
  const Bytes data = RandomBytes(3 << 20, rng);
  const Bytes delta = MustEncode(data, data);
  CHECK(delta.size() < kDeltaHeaderBytes + 32);
  CheckRoundTrip(data, data);
}

TEST_CASE("weight-like arrays: fp16 and fp32 fine-tunes use differences") {
  std::mt19937_64 rng(11);
  {
    auto [a, b] = Fp16Pair(600000, 1e-3, rng);
    const Bytes delta = MustEncode(a, b);
    CHECK(*ApplyDelta(a, delta) == b);
    const Bytes no_base = MustEncode({}, b);
    CHECK(delta.size() * 2 < no_base.size());
  }
  {
    auto [a, b] = Fp32Pair(300000, 1e-3, rng);
    const Bytes delta = MustEncode(a, b);
    CHECK(*ApplyDelta(a, delta) == b);
    const Bytes no_base = MustEncode({}, b);
    CHECK(delta.size() * 5 < no_base.size() * 4);
  }
  {
    // Odd offset: the fp16 grid starts at byte 1, and a shifted copy follows.
    auto [a, b] = Fp16Pair(300000, 1e-2, rng);
    a.insert(a.begin(), 0x55);
    b.insert(b.begin(), 0x55);
    b.insert(b.begin() + 300001, a.begin(), a.begin() + 100000);
    CheckRoundTrip(a, b);
    CheckRoundTrip(a, b, SmallOptions());
  }
}

TEST_CASE("operations round-trip on their own") {
  std::mt19937_64 rng(5);
  for (unsigned width : {1u, 2u, 4u}) {
    const Bytes s = RandomBytes(1001, rng), t = RandomBytes(1001, rng);
    Bytes planes(t.size()), joined(t.size());
    delta_format::SplitPlanes(t, width, planes);
    delta_format::JoinPlanes(planes, width, joined);
    CHECK(joined == t);
    delta_format::DiffToPlanes(s, t, width, planes);
    Bytes data = s;
    delta_format::ApplyPlanes(planes, width, data);
    CHECK(data == t);
  }
}

namespace {

// A valid delta over a small source, to be damaged by the tests below.
struct Fixture {
  Bytes source;
  Bytes target;
  Bytes delta;
  Fixture() {
    std::mt19937_64 rng(9);
    source = CodeLike(100000, rng);
    target = Edit(source, rng);
    delta = MustEncode(source, target, SmallOptions());
  }
};

// `delta`'s header (changed by `edit`) followed by `ops`.
template <typename Edit>
Bytes Rebuilt(const Bytes& delta, Edit edit, ByteSpan ops) {
  DeltaHeader header = *ParseDeltaHeader(delta);
  edit(header);
  Bytes d;
  delta_format::PutHeader(d, header);
  d.insert(d.end(), ops.begin(), ops.end());
  return d;
}

Bytes WithOps(const Bytes& delta, const Bytes& ops) {
  return Rebuilt(delta, [](DeltaHeader&) {}, ops);
}

Bytes Copy(uint64_t offset, uint64_t length) {
  Bytes op = {static_cast<uint8_t>(delta_format::Op::kCopy)};
  delta_format::PutVarint(op, offset);
  delta_format::PutVarint(op, length);
  return op;
}

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("hostile deltas are refused") {
  Fixture f;
  REQUIRE(ApplyDelta(f.source, f.delta).ok());

  SECTION("truncated anywhere") {
    for (size_t len = 0; len < f.delta.size(); len += 1 + len / 3) {
      Result<Bytes> out = ApplyDelta(f.source, ByteSpan(f.delta).first(len));
      REQUIRE_FALSE(out.ok());
      CHECK(out.status().code() == Status::Code::kCorruption);
    }
  }
  SECTION("bad magic, version or flags") {
    for (size_t at : {size_t{0}, size_t{8}, size_t{10}}) {
      Bytes d = f.delta;
      d[at] ^= 0x40;
      CHECK(ApplyDelta(f.source, d).status().code() == Status::Code::kInvalidArgument);
    }
  }
  SECTION("another source") {
    Bytes other = f.source;
    other[5] ^= 1;
    CHECK(ApplyDelta(other, f.delta).status().code() == Status::Code::kInvalidArgument);
  }
  SECTION("copy outside the source") {
    const Bytes end = {0x00};
    CHECK(ApplyDelta(f.source, WithOps(f.delta, Concat({Copy(99999, 2), end}))).status().code() ==
          Status::Code::kCorruption);
    // An offset near 2^64 that would wrap around.
    CHECK(ApplyDelta(f.source, WithOps(f.delta, Concat({Copy(UINT64_MAX, 2), end}))).status().code() ==
          Status::Code::kCorruption);
    // A varint longer than 64 bits.
    const Bytes too_long = {0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x02, 0x00};
    CHECK(ApplyDelta(f.source, WithOps(f.delta, too_long)).status().code() == Status::Code::kCorruption);
  }
  SECTION("writing past the target size") {
    const Bytes end = {0x00};
    const Bytes thrice = Concat({Copy(0, 50000), Copy(0, 50000), Copy(0, 50000), end});
    CHECK(ApplyDelta(f.source, WithOps(f.delta, thrice)).status().code() == Status::Code::kCorruption);
    const Bytes one_byte = Rebuilt(f.delta, [](DeltaHeader& h) { h.target_size = 1; },
                                   ByteSpan(f.delta).subspan(kDeltaHeaderBytes));
    CHECK(ApplyDelta(f.source, one_byte).status().code() == Status::Code::kCorruption);
  }
  SECTION("oversize literal and prefix claims are refused before buffering") {
    // LITERAL width 1, length 2^40.
    const Bytes huge_literal = {0x02, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x05, 1, 2, 3, 4, 5, 0x00};
    CHECK(ApplyDelta(f.source, WithOps(f.delta, huge_literal)).status().code() == Status::Code::kCorruption);
    // LITERAL_PREFIX with a 64 MiB prefix.
    const Bytes huge_prefix = {0x03, 0x00, 0x80, 0x80, 0x80, 0x20, 0x01, 0x01, 0x00};
    CHECK(ApplyDelta(f.source, WithOps(f.delta, huge_prefix)).status().code() == Status::Code::kCorruption);
    // An unknown operation and a bad element width.
    CHECK(ApplyDelta(f.source, WithOps(f.delta, Bytes{0x09})).status().code() == Status::Code::kCorruption);
    const Bytes bad_width = {0x04, 0x03, 0x00, 0x01, 0x01, 0x00, 0x00};
    CHECK(ApplyDelta(f.source, WithOps(f.delta, bad_width)).status().code() == Status::Code::kCorruption);
  }
  SECTION("wrong target digest") {
    Bytes d = f.delta;
    d[70] ^= 1;
    CHECK(ApplyDelta(f.source, d).status().code() == Status::Code::kCorruption);
  }
  SECTION("damaged payload bytes never crash, and never pass") {
    std::mt19937_64 rng(13);
    for (int i = 0; i < 300; ++i) {
      Bytes d = f.delta;
      const size_t at = kDeltaHeaderBytes + rng() % (d.size() - kDeltaHeaderBytes);
      d[at] = static_cast<uint8_t>(d[at] ^ (1 + rng() % 255));
      CHECK_FALSE(ApplyDelta(f.source, d).ok());
    }
  }
  SECTION("bytes after the end operation") {
    Bytes d = f.delta;
    d.push_back(0x00);
    CHECK(ApplyDelta(f.source, d).status().code() == Status::Code::kCorruption);
  }
  SECTION("expectations of the caller") {
    SpanSourceReader reader(f.source);
    StoringSink sink;
    ApplyOptions limited = SourceOnly(f.source);
    limited.target_bytes_max = f.target.size() - 1;
    DeltaDecoder small(reader, sink, limited);
    CHECK(small.Append(f.delta).code() == Status::Code::kInvalidArgument);
    ApplyOptions expecting = SourceOnly(f.source);
    expecting.target_digest = Digest::Of("x");
    DeltaDecoder other(reader, sink, expecting);
    CHECK(other.Append(f.delta).code() == Status::Code::kInvalidArgument);
  }
}

TEST_CASE("decoder memory stays bounded on a large input") {
  // 48 MiB of fp16-like weights, fine-tuned, with a block of new bytes: the
  // decoder's buffers stay under the constant, whatever the input size.
  std::mt19937_64 rng(17);
  auto [a, b] = Fp16Pair(24u << 20, 1e-3, rng);
  const Bytes fresh = RandomBytes(1 << 20, rng);
  b.insert(b.begin() + (20 << 20), fresh.begin(), fresh.end());
  b.insert(b.end(), fresh.begin(), fresh.end());  // read back as target prefix
  const Bytes delta = MustEncode(a, b);
  Bytes out;
  REQUIRE(ApplyInPieces(a, delta, 1 << 16, out).ok());
  CHECK(out == b);
}

TEST_CASE("literals use the earlier target as prefix") {
  // Two similar files in a row, new against the source: the second compresses
  // against the first.
  std::mt19937_64 rng(19);
  const Bytes source = RandomBytes(1 << 20, rng);
  Bytes variant = RandomBytes(1 << 20, rng);
  Bytes target = variant;
  for (size_t i = 0; i < variant.size(); i += 997) variant[i] ^= 0x5a;
  target.insert(target.end(), variant.begin(), variant.end());
  DeltaOptions options;
  options.segment_bytes = 1 << 20;
  const Bytes delta = MustEncode(source, target, options);
  CHECK(delta.size() < (1 << 20) + (1 << 17));
  CheckRoundTrip(source, target, options);
}

TEST_CASE("literals get an earlier target as prefix only for content the source lacks") {
  // The source's 4 KiB blocks in two shuffled orders, one after the other:
  // the second half recurs in the first, but the source holds all of it, so
  // its literals take the source alone as prefix (a target prefix would only
  // slow LZMA down) and the decoder reads nothing back.
  std::mt19937_64 rng(23);
  constexpr size_t kBlock = 4 << 10, kBlocks = 256;
  const Bytes source = RandomBytes(kBlock * kBlocks, rng);
  Bytes target;
  for (int half = 0; half < 2; ++half) {
    std::vector<size_t> order(kBlocks);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t b : order) target.insert(target.end(), source.begin() + b * kBlock, source.begin() + (b + 1) * kBlock);
  }
  DeltaOptions options;
  options.segment_bytes = source.size();  // a literal operation per half
  // zstd literals: with LZMA, approximate matches would take the blocks
  // whole. Both codecs share the plan of prefixes.
  options.literal_codec = LiteralCodec::kZstd;
  options.literal_level = 3;
  const Bytes delta = MustEncode(source, target, options);
  StoringSink sink;
  REQUIRE(ApplyInPieces(source, delta, delta.size(), sink).ok());
  CHECK(sink.out == target);
  CHECK(sink.read_back_bytes == 0);
  CHECK(delta.size() < target.size() / 16);  // the blocks were found in the source
}

TEST_CASE("a gap no longer than a segment is cut into a part per thread, of at least 1 MiB") {
  // A target of new code only: one gap of 2 MiB, within one segment.
  std::mt19937_64 rng(29);
  const Bytes source = RandomBytes(64 << 10, rng);
  const Bytes target = CodeLike(2 << 20, rng);
  // The target bytes of each part, as the encoder reports them.
  auto parts = [&](int threads) {
    std::mutex mu;
    std::vector<uint64_t> sizes;
    DeltaOptions o;
    o.lzma_preset = 1;  // fast: the parts, not their size, are under test
    o.segment_bytes = 2 << 20;
    o.threads = threads;
    o.on_progress = [&](uint64_t bytes) {
      std::lock_guard lock(mu);
      sizes.push_back(bytes);
    };
    Result<Bytes> out = ApplyDelta(source, MustEncode(source, target, o));
    REQUIRE(out.ok());
    CHECK(*out == target);
    std::sort(sizes.begin(), sizes.end());
    return sizes;
  };
  CHECK(parts(1) == std::vector<uint64_t>{2 << 20});
  CHECK(parts(2) == std::vector<uint64_t>{1 << 20, 1 << 20});
  CHECK(parts(4) == std::vector<uint64_t>{1 << 20, 1 << 20});  // not four of 512 KiB
}

namespace {

// A raw LZMA2 stream of `data` (preset 6), with a dictionary of at least `dict_bytes`.
Bytes RawLzma(ByteSpan data, uint64_t dict_bytes) {
  lzma_options_lzma lz{};
  REQUIRE_FALSE(lzma_lzma_preset(&lz, 6));
  lz.dict_size = static_cast<uint32_t>(std::max<uint64_t>(LZMA_DICT_SIZE_MIN, dict_bytes));
  const lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &lz}, {LZMA_VLI_UNKNOWN, nullptr}};
  Bytes frame(lzma_stream_buffer_bound(data.size()));
  size_t n = 0;
  REQUIRE(lzma_raw_buffer_encode(filters, nullptr, data.data(), data.size(), frame.data(), &n, frame.size()) == LZMA_OK);
  frame.resize(n);
  return frame;
}

// A LITERAL_LZMA operation producing `data` with no prefix, claiming `length`.
Bytes LzmaOp(ByteSpan data, uint64_t length, uint64_t source_length = 0) {
  const Bytes frame = RawLzma(data, length);
  Bytes op = {static_cast<uint8_t>(delta_format::Op::kLiteralLzma), 1};
  for (uint64_t v : {uint64_t{0}, source_length, uint64_t{0}, uint64_t{0}, length, uint64_t{frame.size()}}) {
    delta_format::PutVarint(op, v);
  }
  op.insert(op.end(), frame.begin(), frame.end());
  return op;
}

}  // namespace

TEST_CASE("code literals: LZMA by default (format version 2, 3 with approximate matches), zstd on request (version 1)") {
  std::mt19937_64 rng(23);
  const Bytes source = CodeLike(3 << 20, rng);
  Bytes target = source;
  for (int i = 0; i < 40; ++i) target = Edit(target, rng);
  const Bytes lzma = MustEncode(source, target);
  DeltaOptions zstd_options;
  zstd_options.literal_codec = LiteralCodec::kZstd;
  const Bytes zstd = MustEncode(source, target, zstd_options);
  CHECK(ParseDeltaHeader(lzma)->format_version >= 2);
  CHECK(ParseDeltaHeader(zstd)->format_version == 1);
  for (const Bytes* d : {&lzma, &zstd}) {
    Bytes out;
    REQUIRE(ApplyInPieces(source, *d, 4096, out).ok());
    CHECK(out == target);
  }
  // Random inserts dominate this input, so the codecs tie; on real code LZMA
  // is 10-18 % smaller (bench/delta).
  CHECK(lzma.size() * 100 <= zstd.size() * 102);
  std::printf("code-like 3 MiB, 40 edits: LZMA literals %zu bytes, zstd -19 %zu (%.2f)\n", lzma.size(), zstd.size(),
              static_cast<double>(lzma.size()) / static_cast<double>(zstd.size()));
}

TEST_CASE("hostile LZMA operations are refused") {
  Fixture f;
  const Bytes end = {0x00};
  const ByteSpan first = ByteSpan(f.target).first(5000);
  auto v2 = [&](const Bytes& ops) {
    return Rebuilt(f.delta, [](DeltaHeader& h) { h.format_version = 2; }, ops);
  };
  // A well-formed operation, then the rest copied: accepted only whole.
  const Bytes good = Concat({LzmaOp(first, first.size()), Copy(0, f.target.size() - 5000), end});
  Result<Bytes> out = ApplyDelta(f.source, v2(good));
  CHECK(out.status().code() == Status::Code::kCorruption);  // the copy makes another target: digest
  SECTION("in a version 1 delta") {
    CHECK(ApplyDelta(f.source, Rebuilt(f.delta, [](DeltaHeader& h) { h.format_version = 1; },
                                       Concat({LzmaOp(first, first.size()), end})))
              .status()
              .code() == Status::Code::kCorruption);
  }
  SECTION("a stream longer or shorter than its operation") {
    CHECK(ApplyDelta(f.source, v2(Concat({LzmaOp(first, first.size() - 1), end}))).status().code() ==
          Status::Code::kCorruption);
    CHECK(ApplyDelta(f.source, v2(Concat({LzmaOp(first, first.size() + 1), end}))).status().code() ==
          Status::Code::kCorruption);
  }
  SECTION("a prefix over the LZMA limit") {
    CHECK(ApplyDelta(f.source, v2(Concat({LzmaOp(first, first.size(), kDeltaLzmaPrefixBytesMax + 1), end})))
              .status()
              .code() == Status::Code::kCorruption);
  }
  SECTION("damaged stream bytes") {
    std::mt19937_64 rng(29);
    const Bytes op = LzmaOp(first, first.size());
    for (int i = 0; i < 200; ++i) {
      Bytes damaged = op;
      const size_t at = 8 + rng() % (damaged.size() - 8);
      damaged[at] = static_cast<uint8_t>(damaged[at] ^ (1 + rng() % 255));
      CHECK_FALSE(ApplyDelta(f.source, v2(Concat({damaged, end}))).ok());
    }
  }
}

TEST_CASE("LZMA operations of any size, before and after a zstd prefix operation, share one decoder") {
  // The decoder keeps one LZMA dictionary across operations: 1 MiB for small
  // ones, 24 MiB once one needs more, freed for a LITERAL_PREFIX operation.
  std::mt19937_64 rng(31);
  const Bytes source = CodeLike(1 << 20, rng);
  const Bytes small = CodeLike(1000, rng), big = CodeLike(3 << 20, rng);
  const Bytes from_source(source.begin() + 1000, source.begin() + 201000);
  // LITERAL_PREFIX: `from_source` compressed with the whole source as prefix.
  Bytes prefix_op = {static_cast<uint8_t>(delta_format::Op::kLiteralPrefix)};
  {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_CCtx_refPrefix(c, source.data(), source.size());
    Bytes frame(ZSTD_compressBound(from_source.size()));
    const size_t n = ZSTD_compress2(c, frame.data(), frame.size(), from_source.data(), from_source.size());
    ZSTD_freeCCtx(c);
    REQUIRE_FALSE(ZSTD_isError(n));
    for (uint64_t v : {uint64_t{0}, uint64_t{source.size()}, uint64_t{0}, uint64_t{0}, uint64_t{from_source.size()},
                       uint64_t{n}}) {
      delta_format::PutVarint(prefix_op, v);
    }
    prefix_op.insert(prefix_op.end(), frame.begin(), frame.begin() + static_cast<ptrdiff_t>(n));
  }
  const Bytes parts[] = {small, big, small, from_source, small, big};
  Bytes target, ops;
  for (const Bytes& part : parts) {
    target.insert(target.end(), part.begin(), part.end());
    const Bytes op = &part == &parts[3] ? prefix_op : LzmaOp(part, part.size());
    ops.insert(ops.end(), op.begin(), op.end());
  }
  ops.push_back(static_cast<uint8_t>(delta_format::Op::kEnd));
  Bytes delta;
  delta_format::PutHeader(delta, DeltaHeader{2, source.size(), Digest::Of(source), target.size(), Digest::Of(target)});
  delta.insert(delta.end(), ops.begin(), ops.end());
  for (size_t piece : {size_t{4096}, delta.size()}) {
    Bytes out;
    REQUIRE(ApplyInPieces(source, delta, piece, out).ok());
    CHECK(out == target);
  }
}

namespace {

// A synthetic build of compiled code: `functions` functions of random
// instructions, a fifth of them calls holding the callee's absolute address (4
// bytes, little-endian). `grow` bytes added to function 2 (a small fix) move
// every later function, so every call to one of them changes: a patch release.
Bytes SyntheticBuild(size_t functions, size_t grow) {
  std::mt19937_64 rng(37);
  struct Instruction {
    uint8_t opcode;
    size_t callee;  // SIZE_MAX: no operand
    uint8_t immediate;
  };
  std::vector<std::vector<Instruction>> bodies(functions);
  for (auto& body : bodies) {
    body.resize(20 + rng() % 200);
    for (Instruction& in : body) {
      in.opcode = static_cast<uint8_t>(rng() % 40);
      in.callee = rng() % 5 == 0 ? rng() % functions : SIZE_MAX;
      in.immediate = static_cast<uint8_t>(rng() % 16);
    }
  }
  for (size_t i = 0; i < grow; ++i) bodies[2].push_back({static_cast<uint8_t>(41 + i % 8), SIZE_MAX, 0});
  auto bytes_of = [](const Instruction& in) { return in.callee == SIZE_MAX ? 2 : 5; };
  std::vector<uint32_t> starts;
  uint32_t at = 0;
  for (const auto& body : bodies) {
    starts.push_back(at);
    for (const Instruction& in : body) at += static_cast<uint32_t>(bytes_of(in));
  }
  Bytes out;
  for (const auto& body : bodies) {
    for (const Instruction& in : body) {
      out.push_back(in.opcode);
      if (in.callee == SIZE_MAX) {
        out.push_back(in.immediate);
        continue;
      }
      for (int k = 0; k < 4; ++k) out.push_back(static_cast<uint8_t>(starts[in.callee] >> (8 * k)));
    }
  }
  return out;
}

// What libzstd's prefix-dictionary API makes of `target` with `source` as
// prefix at level 19 (zstd --patch-from's method).
size_t ZstdPrefixBytes(ByteSpan source, ByteSpan target) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 19);
  ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, static_cast<int>(std::bit_width(source.size() + target.size())));
  ZSTD_CCtx_refPrefix(c, source.data(), source.size());
  Bytes frame(ZSTD_compressBound(target.size()));
  const size_t n = ZSTD_compress2(c, frame.data(), frame.size(), target.data(), target.size());
  ZSTD_freeCCtx(c);
  REQUIRE_FALSE(ZSTD_isError(n));
  return n;
}

}  // namespace

TEST_CASE("a patch release of compiled code: at most 0.9 x libzstd's prefix dictionary") {
  const Bytes source = SyntheticBuild(8000, 0);
  const Bytes target = SyntheticBuild(8000, 7);
  REQUIRE(source.size() > (2 << 20));
  const Bytes delta = MustEncode(source, target);
  CHECK(ParseDeltaHeader(delta)->format_version == 5);  // approximate matches (PATCH_MODELED, model 5)
  Bytes out;
  REQUIRE(ApplyInPieces(source, delta, 65536, out).ok());
  CHECK(out == target);
  const size_t zstd = ZstdPrefixBytes(source, target);
  std::printf("synthetic patch release, %zu bytes: delta %zu bytes, libzstd prefix -19 %zu (%.2f)\n", target.size(),
              delta.size(), zstd, static_cast<double>(delta.size()) / static_cast<double>(zstd));
  CHECK(delta.size() * 10 <= zstd * 9);
}

namespace {

struct PatchEntry {
  uint64_t diff_length;
  uint64_t extra_length;
  int64_t seek;
};

Bytes PatchControl(const std::vector<PatchEntry>& entries) {
  Bytes control;
  for (const PatchEntry& e : entries) {
    delta_format::PutVarint(control, e.diff_length);
    delta_format::PutVarint(control, e.extra_length);
    delta_format::PutVarint(control, (static_cast<uint64_t>(e.seek) << 1) ^ static_cast<uint64_t>(e.seek >> 63));
  }
  return control;
}

// A PATCH operation from `source_offset` with these entries, differences and
// extra bytes, claiming `length` (and `control_bytes` when given).
Bytes PatchOp(uint64_t source_offset, uint64_t length, const std::vector<PatchEntry>& entries, ByteSpan diff,
              ByteSpan extra, std::optional<uint64_t> control_bytes = std::nullopt) {
  Bytes content = PatchControl(entries);
  const uint64_t control = content.size();
  content.insert(content.end(), diff.begin(), diff.end());
  content.insert(content.end(), extra.begin(), extra.end());
  const Bytes frame = RawLzma(content, content.size());
  Bytes op = {static_cast<uint8_t>(delta_format::Op::kPatch)};
  for (uint64_t v : {source_offset, length, control_bytes.value_or(control), uint64_t{frame.size()}}) {
    delta_format::PutVarint(op, v);
  }
  op.insert(op.end(), frame.begin(), frame.end());
  return op;
}

// The fields of a PATCH_MODELED operation, overridden by a test.
struct ModeledFields {
  std::optional<uint64_t> control_bytes{}, extra_bytes{}, lzma_bytes{}, coded_bytes{};  // each {}: a test names only the ones it sets
};

// A PATCH_MODELED operation: the same entries, `coded` the differences'
// stream (EncodeDifferences).
Bytes ModeledPatchOp(uint64_t source_offset, uint64_t length, const std::vector<PatchEntry>& entries, ByteSpan coded,
                     ByteSpan extra, ModeledFields fields = {}) {
  Bytes content = PatchControl(entries);
  const uint64_t control = content.size();
  content.insert(content.end(), extra.begin(), extra.end());
  const Bytes frame = RawLzma(content, content.size());
  Bytes op = {static_cast<uint8_t>(delta_format::Op::kPatchModeled)};
  for (uint64_t v : {source_offset, length, fields.control_bytes.value_or(control), fields.extra_bytes.value_or(extra.size()),
                     fields.lzma_bytes.value_or(frame.size()), fields.coded_bytes.value_or(coded.size())}) {
    delta_format::PutVarint(op, v);
  }
  op.insert(op.end(), frame.begin(), frame.end());
  op.insert(op.end(), coded.begin(), coded.end());
  return op;
}

}  // namespace

TEST_CASE("the difference models decode what they encoded, in pieces of any size, and know where their stream ends") {
  // Each model is the specification of a format version (docs/formats/delta.md):
  // a change to it, however small, makes the deltas that daemons and agents
  // already hold unreadable. So what each writes is pinned here; a faster
  // model must write the same bytes.
  struct Pinned {
    DifferenceModel model;
    size_t sparse_bytes;
    const char* sparse_digest;
    const char* noise_digest;  // the value bits' models are coded on every byte
  };
  const Pinned pinned = GENERATE(
      Pinned{DifferenceModel::kMixed, 756, "sha256:70bc4f4c6d6289a88a58a00815e9117e5405dcda5b797293f9e74cc365d41eb1",
             "sha256:8d6246995617ca725769a0bf54221b91eab3f40f853a511c809be7c64a731379"},
      // The same on noise: no context is ever sure of it.
      Pinned{DifferenceModel::kConfidentZeros, 763,
             "sha256:107b993d6d3928db3d84e033263483ceedcedca8c214317ffe5603fabcd4d1a9",
             "sha256:8d6246995617ca725769a0bf54221b91eab3f40f853a511c809be7c64a731379"});
  CAPTURE(static_cast<int>(pinned.model));
  std::mt19937_64 rng(7);
  Bytes source(300000), differences(300000);
  for (size_t i = 0; i < source.size(); ++i) {
    source[i] = static_cast<uint8_t>(rng() % 64);
    // Sparse, and told by the source byte before: like moved operands.
    differences[i] = i > 0 && source[i - 1] == 17 ? static_cast<uint8_t>(3 + rng() % 2) : 0;
  }
  const Bytes coded = EncodeDifferences(source, differences, pinned.model);
  CHECK(coded.size() < differences.size() / 50);
  Bytes target = source;
  DifferenceDecoder decoder;
  decoder.Reset(coded, pinned.model);
  for (size_t at = 0; at < target.size();) {
    const size_t n = std::min<size_t>(1 + rng() % 5000, target.size() - at);
    REQUIRE(decoder.Apply(std::span<uint8_t>(target).subspan(at, n)));
    at += n;
  }
  CHECK(decoder.AtEnd());
  for (size_t i = 0; i < target.size(); ++i) REQUIRE(static_cast<uint8_t>(target[i] - source[i]) == differences[i]);

  SECTION("the coded bytes are the format") {
    CHECK(coded.size() == pinned.sparse_bytes);
    CHECK(Digest::Of(coded).ToString() == pinned.sparse_digest);
  }
  SECTION("the other model does not read them") {
    const DifferenceModel other = pinned.model == DifferenceModel::kMixed ? DifferenceModel::kConfidentZeros
                                                                         : DifferenceModel::kMixed;
    Bytes out = source;
    decoder.Reset(coded, other);
    CHECK_FALSE((decoder.Apply(out) && decoder.AtEnd() && out == target));
  }
  SECTION("incompressible differences") {
    for (uint8_t& d : differences) d = static_cast<uint8_t>(rng());
    const Bytes noise = EncodeDifferences(source, differences, pinned.model);
    CHECK(Digest::Of(noise).ToString() == pinned.noise_digest);
    Bytes out = source;
    decoder.Reset(noise, pinned.model);
    REQUIRE(decoder.Apply(out));
    CHECK(decoder.AtEnd());
    for (size_t i = 0; i < out.size(); ++i) REQUIRE(static_cast<uint8_t>(out[i] - source[i]) == differences[i]);
  }
  SECTION("a stream cut short, or longer than its differences") {
    Bytes out = source;
    decoder.Reset(ByteSpan(coded).first(coded.size() - 3), pinned.model);
    CHECK_FALSE(decoder.Apply(out));
    Bytes longer = coded;
    longer.push_back(0);
    out = source;
    decoder.Reset(longer, pinned.model);
    CHECK(decoder.Apply(out));
    CHECK_FALSE(decoder.AtEnd());
    // No differences: the flush alone.
    CHECK(EncodeDifferences({}, {}, pinned.model).size() == kDifferenceStreamBytesMin);
  }
}

TEST_CASE("patch operations: entries add differences to source ranges, and hostile ones are refused") {
  std::mt19937_64 rng(41);
  const Bytes source = CodeLike(20000, rng);
  // target: source[100, 1100) with every 50th byte + 3, then "fix", then
  // source[5000, 6000) unchanged.
  Bytes target(source.begin() + 100, source.begin() + 1100);
  Bytes diff(1000, 0);
  for (size_t i = 0; i < diff.size(); i += 50) diff[i] = 3, target[i] = static_cast<uint8_t>(target[i] + 3);
  const Bytes extra = {'f', 'i', 'x'};
  target.insert(target.end(), extra.begin(), extra.end());
  target.insert(target.end(), source.begin() + 5000, source.begin() + 6000);
  diff.resize(2000, 0);
  const Bytes end = {0x00};
  DeltaHeader header;
  header.format_version = 3;
  header.source_size = source.size();
  header.source_digest = Digest::Of(source);
  header.target_size = target.size();
  header.target_digest = Digest::Of(target);
  auto delta_of = [&](const Bytes& ops, uint16_t version = 3) {
    DeltaHeader h = header;
    h.format_version = version;
    Bytes d;
    delta_format::PutHeader(d, h);
    d.insert(d.end(), ops.begin(), ops.end());
    return d;
  };
  // From 100: 1000 differences, 3 extra bytes, seek 5000 - 1100 = 3900; then 1000 differences.
  const std::vector<PatchEntry> entries = {{1000, 3, 3900}, {1000, 0, 0}};
  Result<Bytes> out = ApplyDelta(source, delta_of(Concat({PatchOp(100, target.size(), entries, diff, extra), end})));
  INFO(out.status().ToString());
  REQUIRE(out.ok());
  CHECK(*out == target);

  auto refused = [&](const Bytes& op, uint16_t version = 3) {
    return ApplyDelta(source, delta_of(Concat({op, end}), version)).status().code() == Status::Code::kCorruption;
  };
  CHECK(refused(PatchOp(100, target.size(), entries, diff, extra), 2));  // PATCH needs version 3
  CHECK(refused(PatchOp(100, target.size() + 1, entries, diff, extra)));  // entries make less than the length
  CHECK(refused(PatchOp(100, target.size() - 1, entries, diff, extra)));  // or more
  CHECK(refused(PatchOp(19500, target.size(), entries, diff, extra)));    // differences read past the source
  CHECK(refused(PatchOp(20001, 3, {{0, 3, 0}}, {}, extra)));             // starts outside the source
  CHECK(refused(PatchOp(100, target.size(), {{1000, 3, 30000}, {1000, 0, 0}}, diff, extra)));  // seeks past the end
  CHECK(refused(PatchOp(100, target.size(), {{1000, 3, -1200}, {1000, 0, 0}}, diff, extra)));  // or before the start
  CHECK(refused(PatchOp(100, target.size(), entries, diff, extra, 5)));  // control cut mid-entry
  CHECK(refused(PatchOp(100, target.size(), entries, diff, extra, kDeltaOpTargetBytesMax + 1)));
  SECTION("damaged stream bytes") {
    const Bytes op = PatchOp(100, target.size(), entries, diff, extra);
    for (int i = 0; i < 200; ++i) {
      Bytes damaged = op;
      const size_t at = 8 + rng() % (damaged.size() - 8);
      damaged[at] = static_cast<uint8_t>(damaged[at] ^ (1 + rng() % 255));
      CHECK_FALSE(ApplyDelta(source, delta_of(Concat({damaged, end}))).ok());
    }
  }
  SECTION("modeled: the differences in their own stream, with the source bytes as context") {
    // Version 4 codes them with the first model, version 5 with its own.
    const uint16_t version = GENERATE(4, 5);
    CAPTURE(version);
    // The source bytes the differences apply to, in entry order.
    Bytes applied_to(source.begin() + 100, source.begin() + 1100);
    applied_to.insert(applied_to.end(), source.begin() + 5000, source.begin() + 6000);
    const Bytes coded = EncodeDifferences(applied_to, diff, DifferenceModelOf(version));
    Result<Bytes> modeled =
        ApplyDelta(source, delta_of(Concat({ModeledPatchOp(100, target.size(), entries, coded, extra), end}), version));
    INFO(modeled.status().ToString());
    REQUIRE(modeled.ok());
    CHECK(*modeled == target);
    auto refused_modeled = [&](const Bytes& op, uint16_t v = 0) { return refused(op, v == 0 ? version : v); };
    CHECK(refused_modeled(ModeledPatchOp(100, target.size(), entries, coded, extra), 3));  // needs version 4
    // Coded by the other version's model: the target differs (its digest catches it).
    CHECK_FALSE(ApplyDelta(source, delta_of(Concat({ModeledPatchOp(100, target.size(), entries, coded, extra), end}),
                                            version == 4 ? 5 : 4))
                    .ok());
    CHECK(refused_modeled(ModeledPatchOp(100, target.size(), entries, coded, extra, {.extra_bytes = 2})));
    CHECK(refused_modeled(ModeledPatchOp(100, target.size(), entries, coded, extra, {.extra_bytes = 4})));
    CHECK(refused_modeled(ModeledPatchOp(100, target.size(), entries, ByteSpan(coded).first(coded.size() - 2), extra)));
    Bytes longer = coded;
    longer.push_back(0);
    CHECK(refused_modeled(ModeledPatchOp(100, target.size(), entries, longer, extra)));
    CHECK(refused_modeled(ModeledPatchOp(100, target.size(), entries, coded, extra, {.coded_bytes = target.size() + 6})));
    CHECK(refused_modeled(ModeledPatchOp(100, target.size(), entries, coded, extra, {.coded_bytes = 4})));
    CHECK(refused_modeled(ModeledPatchOp(19500, target.size(), entries, coded, extra)));  // reads past the source
    // Control and extra bytes over an operation's bound, and LZMA2 streams empty or over
    // theirs, are refused before anything is decoded.
    auto refusal = [&](ModeledFields fields) {
      const Bytes op = ModeledPatchOp(100, target.size(), entries, coded, extra, fields);
      return ApplyDelta(source, delta_of(Concat({op, end}), version)).status().ToString();
    };
    CHECK_THAT(refusal({.control_bytes = kDeltaOpTargetBytesMax}), Catch::Contains("control and extra bytes out of bounds"));
    CHECK_THAT(refusal({.lzma_bytes = 0}), Catch::Contains("compressed size out of bounds"));
    CHECK_THAT(refusal({.lzma_bytes = kDeltaOpTargetBytesMax}), Catch::Contains("compressed size out of bounds"));
    // Any byte of the coded differences (LZMA2 streams are damaged above).
    const Bytes op = ModeledPatchOp(100, target.size(), entries, coded, extra);
    for (int i = 0; i < 200; ++i) {
      Bytes damaged = op;
      const size_t at = op.size() - coded.size() + rng() % coded.size();
      damaged[at] = static_cast<uint8_t>(damaged[at] ^ (1 + rng() % 255));
      CHECK_FALSE(ApplyDelta(source, delta_of(Concat({damaged, end}), version)).ok());
    }
  }
}
