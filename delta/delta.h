// Binary deltas between two versions of an artifact (format: docs/formats/delta.md).
//
// A delta turns a source (version A) into a target (version B). It is a header
// (sizes and digests of both) followed by operations, each producing the next
// bytes of the target: copy a range of the source, compressed literal bytes
// (LZMA2 or zstd, with a source range and an earlier target range as prefix
// dictionary; or zstd over byte planes), a numeric difference against a
// source range (element-wise subtraction of 1, 2 or 4 byte integers,
// zigzag-mapped, split into byte planes, zstd) that pays off on model weights
// whose values drift, and approximate matches (bsdiff's: source ranges plus
// byte-wise differences, coded by a model with the source bytes as context,
// and extra bytes) that pay off on code whose addresses moved.
//
// Encoding reads both versions in memory or through readers, a window at a
// time when they are larger than its memory budget.
// Decoding is streaming: the caller pushes delta bytes in pieces of any size,
// the decoder reads the source through a SourceReader and writes the target to
// a TargetSink; its memory is bounded by constants below, whatever the sizes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/status.h"

namespace meridian {

// ---------------------------------------------------------------------------
// Format limits. A decoder refuses any operation above them, which is what
// bounds its memory. Version 2 adds LITERAL_LZMA, version 3 PATCH, version 4
// PATCH_MODELED, version 5 a faster model for PATCH_MODELED's differences
// (DifferenceModelOf); an encoder writes the lowest version its operations
// need, so older decoders read those deltas.
inline constexpr uint16_t kDeltaFormatVersion = 5;
inline constexpr size_t kDeltaHeaderBytes = 92;
// Largest target range produced by one literal, difference or patch operation,
// and the largest control section of a patch operation.
inline constexpr uint64_t kDeltaOpTargetBytesMax = 8ull << 20;
// Largest prefix (source range plus earlier target range) of one literal operation.
inline constexpr uint64_t kDeltaPrefixBytesMax = 32ull << 20;
// Largest prefix of one LITERAL_LZMA operation: LZMA copies its prefix into a
// dictionary of prefix + length bytes, allocated by liblzma next to the
// decoder's buffers, so both are kept smaller than for zstd.
inline constexpr uint64_t kDeltaLzmaPrefixBytesMax = 16ull << 20;
// What a DeltaDecoder holds at most in its own buffers (pending operation,
// source range, output), asserted by tests; zstd's decompression context adds
// about 160 KiB (single-pass decoding allocates no window).
inline constexpr uint64_t kDeltaDecoderBufferBytesMax = 50ull << 20;
// The smallest memory budget an encoder accepts (DeltaOptions::memory_bytes_max).
inline constexpr uint64_t kDeltaEncoderMemoryMin = 16ull << 20;

// The fixed-size header at the start of every delta.
struct DeltaHeader {
  uint16_t format_version = kDeltaFormatVersion;
  uint64_t source_size = 0;
  Digest source_digest;
  uint64_t target_size = 0;
  Digest target_digest;
};

// Parses the header at the start of `delta`. InvalidArgument when `delta` is
// not a Meridian delta (magic) or has an unsupported version or flags;
// Corruption when it is shorter than the header.
Result<DeltaHeader> ParseDeltaHeader(ByteSpan delta);

// ---------------------------------------------------------------------------
// Encoding.

enum class LiteralCodec { kLzma, kZstd };

struct DeltaOptions {
  // How literal operations (code, new data) are compressed: LZMA2 (liblzma
  // preset `lzma_preset`) makes the smallest deltas of code; zstd at
  // `literal_level` is faster to make and to apply.
  LiteralCodec literal_codec = LiteralCodec::kLzma;
  int lzma_preset = 9;
  // zstd level of literal operations with LiteralCodec::kZstd.
  int literal_level = 19;
  // zstd level of numeric differences and byte-plane literals (weights): 18's
  // optimal parser makes fine-tune differences 10.8 % smaller than 9 (fp16),
  // about 7× slower to make (7 s for 88 MB), as fast to apply.
  int numeric_level = 18;
  // Worker threads compressing independent target segments.
  int threads = 2;
  // Target bytes per literal operation (at most kDeltaOpTargetBytesMax):
  // longer segments compress better, shorter ones spread over more threads.
  uint64_t segment_bytes = 8ull << 20;
  // Bytes given to zstd as prefix of a literal, source and earlier target
  // together (at most kDeltaPrefixBytesMax); the decoder holds them at once.
  uint64_t prefix_bytes_max = 16ull << 20;
  // Shared runs at least this long become copy operations; shorter ones are
  // left to zstd, which encodes them almost as cheaply inside a literal.
  uint64_t copy_bytes_min = 16ull << 10;
  // The most memory the encoder allocates, whatever the versions' sizes (at
  // least kDeltaEncoderMemoryMin). Versions too large to encode at once are
  // encoded a target window at a time, each against the source window where
  // its content lies, with fewer threads and shorter segments and prefixes
  // when the budget is small: deltas get somewhat larger, memory stays
  // bounded. The bytes of versions given in memory are the caller's and do
  // not count; those read through a reader do.
  uint64_t memory_bytes_max = 1ull << 30;
  // When set, told the target bytes of each part as it is encoded (from
  // several threads at once), so a caller can show progress.
  std::function<void(uint64_t target_bytes)> on_progress;
};

// Returns a delta that turns `source` into `target`. InvalidArgument when an
// option is out of range. Memory, within options.memory_bytes_max: for pairs
// that fit it at once, anchor indexes of about (source.size() + target.size()) / 8 bytes, the
// delta itself, and per thread a compression context — LZMA's binary-tree match
// finder takes about 11.5 × (prefix + segment), up to 280 MiB; zstd at level 19
// about 6 × — a copy of the prefix and two segment buffers. With LZMA literals,
// code adds a table of source positions for approximate matches (PATCH: 4 bytes
// per source byte up to 64 MiB, built once, on first use) and per thread their
// differences (about the segment's size). Measured with zstd literals: 410 MiB
// on 78 MB of code, 300 MiB on an 88 MB fp16 model, 680 MiB on a 176 MB fp32
// one; bench/delta/RESULTS.md has the LZMA figures.
Result<Bytes> EncodeDelta(ByteSpan source, ByteSpan target, const DeltaOptions& options = {});

class SourceReader;

// A version to make a delta from, read through `reader` (from start to end
// once, plus windows of the source), and the digest its bytes must have.
struct DeltaInput {
  SourceReader& reader;
  Digest digest;
};

// Makes the delta that turns `source` into `target`, passing its bytes to
// `write` in order, within options.memory_bytes_max whatever the sizes.
// Returns the lowest format version its operations need. The header, written
// first, says the highest this encoder writes (3) with LZMA literals, 1 with
// zstd literals: a caller that can still rewrite it sets the returned version
// (delta_format::SetFormatVersion), so that decoders predating the higher
// versions read the delta. Corruption when the bytes read do not hash to the
// digests given; then, as on any error, what was written is not a delta.
Result<uint16_t> EncodeDelta(const DeltaInput& source, const DeltaInput& target, const DeltaOptions& options,
                             const std::function<Status(ByteSpan)>& write);

// ---------------------------------------------------------------------------
// Decoding.

// Random access to the source version, owned by the caller (a file, a buffer);
// the encoder reads either version through one too.
class SourceReader {
 public:
  virtual ~SourceReader() = default;
  virtual uint64_t size() const = 0;
  // Fills `out` with the bytes at [offset, offset + out.size()). The decoder
  // only asks for ranges inside [0, size()).
  virtual Status Read(uint64_t offset, std::span<uint8_t> out) = 0;
};

// A SourceReader over bytes in memory.
class SpanSourceReader final : public SourceReader {
 public:
  explicit SpanSourceReader(ByteSpan data) : data_(data) {}
  uint64_t size() const override { return data_.size(); }
  Status Read(uint64_t offset, std::span<uint8_t> out) override;

 private:
  ByteSpan data_;
};

// Where the target bytes go, in order. The bytes are not verified until
// DeltaDecoder::Finish returns OK: write them to a staging place and only
// install them after that.
class TargetSink {
 public:
  virtual ~TargetSink() = default;
  virtual Status Write(ByteSpan data) = 0;
  // Fills `out` with target bytes already written, at [offset, offset +
  // out.size()) (the decoder checks the range): literals may use earlier parts
  // of the target as zstd prefix, since the files of one release resemble each
  // other. A staging file answers with pread.
  virtual Status ReadBack(uint64_t offset, std::span<uint8_t> out) = 0;
};

struct ApplyOptions {
  // The digest of the source the caller holds (known from its manifest, or
  // verified by hashing the file before applying). A delta made from another
  // source is refused before anything is written. The decoder does not hash
  // the source itself: it reads only parts of it.
  Digest source_digest;
  // When set, the delta must produce exactly this target (the signed digest).
  std::optional<Digest> target_digest;
  // A delta announcing a larger target is refused (the signed size).
  uint64_t target_bytes_max = UINT64_MAX;
};

// Applies a delta pushed in pieces. Not thread-safe; one delta per decoder.
// Every error is final: later calls return the same error.
class DeltaDecoder {
 public:
  DeltaDecoder(SourceReader& source, TargetSink& sink, ApplyOptions options);
  ~DeltaDecoder();
  DeltaDecoder(const DeltaDecoder&) = delete;
  DeltaDecoder& operator=(const DeltaDecoder&) = delete;

  // Consumes the next bytes of the delta, writing target bytes as operations
  // complete. Corruption on a malformed delta (bad operation, a range outside
  // the source or past the target size, undecodable zstd data);
  // InvalidArgument when the header is not a supported delta or does not match
  // ApplyOptions; the reader's and the sink's errors as they come.
  Status Append(ByteSpan delta_bytes);
  // Checks that the delta ended properly (end operation, nothing after it),
  // that exactly target_size bytes were written, and that their SHA-256 equals
  // the header's target digest (Corruption otherwise). Only then is the
  // target valid.
  Status Finish();

  // The header once its bytes have been appended.
  const std::optional<DeltaHeader>& header() const;
  uint64_t target_bytes_written() const;
  // The most the decoder's buffers held at once (≤ kDeltaDecoderBufferBytesMax).
  uint64_t buffer_bytes_peak() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Applies a whole delta to a whole source in memory (hashes the source first).
Result<Bytes> ApplyDelta(ByteSpan source, ByteSpan delta);

// ---------------------------------------------------------------------------
// Format building blocks shared by the encoder, the decoder and their tests.
namespace delta_format {

enum class Op : uint8_t {
  kEnd = 0x00,
  kCopy = 0x01,           // varint source_offset, varint length
  kLiteral = 0x02,        // u8 plane_width, varint length, varint zstd_bytes, zstd frame
  kLiteralPrefix = 0x03,  // varint source_offset, varint source_length, varint target_offset,
                          // varint target_length, varint length, varint zstd_bytes, zstd frame
                          // compressed with the source range then the target range as prefix
  kDiff = 0x04,           // u8 element_width, varint source_offset, varint length,
                          // varint zstd_bytes, zstd frame of the residual planes
  kLiteralLzma = 0x05,    // (version 2) u8 plane_width, then the fields of kLiteralPrefix (ranges
                          // may be empty; must be with width > 1), then a raw LZMA2 stream whose
                          // preset dictionary is the prefix
  kPatch = 0x06,          // (version 3) varint source_offset, varint length, varint control_bytes,
                          // varint lzma_bytes, raw LZMA2 stream of the control entries, then the
                          // differences, then the extra bytes (approximate matches, after bsdiff)
  kPatchModeled = 0x07,   // (version 4) varint source_offset, varint length, varint control_bytes,
                          // varint extra_bytes, varint lzma_bytes, varint coded_bytes, raw LZMA2
                          // stream of the control entries then the extra bytes, then the
                          // differences coded by delta/difference_model.h (the model of the
                          // delta's version)
};

// Bytes of the largest operation before its zstd frame.
inline constexpr size_t kOpFieldsBytesMax = 1 + 7 * 10;

void PutVarint(Bytes& out, uint64_t value);
void PutHeader(Bytes& out, const DeltaHeader& header);
// Rewrites the format version in `delta_start` (at least the header's first 10 bytes).
void SetFormatVersion(std::span<uint8_t> delta_start, uint16_t version);

// Element widths allowed for byte planes and differences.
inline bool IsElementWidth(uint64_t width) { return width == 1 || width == 2 || width == 4; }

// Byte planes: for `width`-byte little-endian elements, plane k holds byte k
// of every element; the len % width trailing bytes follow unchanged.
// `out` has data.size() bytes.
void SplitPlanes(ByteSpan data, unsigned width, std::span<uint8_t> out);
void JoinPlanes(ByteSpan planes, unsigned width, std::span<uint8_t> out);

// Residual of `target` against `source` (same length): per element, target −
// source modulo 2^(8·width), zigzag-mapped (0, −1, 1, −2 → 0, 1, 2, 3) so small
// changes either way have small values, written as byte planes. Trailing
// len % width bytes are treated as 1-byte elements.
void DiffToPlanes(ByteSpan source, ByteSpan target, unsigned width, std::span<uint8_t> planes_out);
// Inverse: `data` holds the source range and is turned into the target.
void ApplyPlanes(ByteSpan planes, unsigned width, std::span<uint8_t> data);

}  // namespace delta_format

}  // namespace meridian
