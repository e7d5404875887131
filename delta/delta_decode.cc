// The streaming delta decoder: parses operations as their bytes arrive, reads
// only the source ranges they name, and never believes a size it has not
// bounded first (docs/formats/delta.md, "Decoding rules").
#include <lzma.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "delta/delta.h"
#include "delta/difference_model.h"

namespace meridian {

using delta_format::Op;

namespace {

// COPY operations stream through the source buffer in slices of this size,
// and LITERAL_LZMA output through the output buffer.
constexpr uint64_t kCopySliceBytes = 1ull << 20;
// What the buffers can hold at most: a pending operation, the largest source
// range, one operation's output.
static_assert(delta_format::kOpFieldsBytesMax + ZSTD_COMPRESSBOUND(kDeltaOpTargetBytesMax) +
                  std::max(kDeltaPrefixBytesMax, kDeltaOpTargetBytesMax) + kDeltaOpTargetBytesMax <=
              kDeltaDecoderBufferBytesMax);
// A PATCH operation: pending (its LZMA2 stream), one entry's source range and
// the decoded control, differences and extra bytes. (lzma_stream_buffer_bound
// is not constexpr: LZMA2 adds at most 3 bytes per 64 KiB chunk and a few more.)
static_assert(delta_format::kOpFieldsBytesMax + 2 * kDeltaOpTargetBytesMax + (2 * kDeltaOpTargetBytesMax >> 14) + 64 +
                  kDeltaOpTargetBytesMax + 2 * kDeltaOpTargetBytesMax <=
              kDeltaDecoderBufferBytesMax);
// A PATCH_MODELED operation: pending (LZMA2 stream of at most 8 MiB of
// control and extra bytes, and a coded stream of at most length + 5 bytes),
// one entry's source range, the decoded control and extra bytes, the model.
static_assert(delta_format::kOpFieldsBytesMax + kDeltaOpTargetBytesMax + (kDeltaOpTargetBytesMax >> 14) + 64 +
                  kDeltaOpTargetBytesMax + 5 + 2 * kDeltaOpTargetBytesMax + kDifferenceModelBytes <=
              kDeltaDecoderBufferBytesMax);

// One parsed operation; `payload` points into the bytes it was parsed from.
struct ParsedOp {
  Op op = Op::kEnd;
  uint64_t width = 1;
  uint64_t source_offset = 0;
  uint64_t source_length = 0;  // the source range read (copy, prefix, diff)
  uint64_t target_offset = 0;  // the earlier target range read back (prefix)
  uint64_t target_length = 0;
  uint64_t length = 0;         // target bytes produced
  uint64_t control_bytes = 0;  // the control section (patch)
  uint64_t extra_bytes = 0;    // the extra bytes (modeled patch)
  uint64_t lzma_bytes = 0;     // the LZMA2 stream at the front of the payload (modeled patch)
  ByteSpan payload;
};

// Outcome of parsing the front of a buffer: an operation of `wire_bytes`, or
// the number of bytes needed before it can be parsed (`need_bytes`).
struct ParseStep {
  Status status;
  size_t wire_bytes = 0;
  size_t need_bytes = 0;
  ParsedOp op;
};

class FieldReader {
 public:
  explicit FieldReader(ByteSpan data) : data_(data) {}
  // False when the buffer ends first; `bad_` when the varint is over 64 bits.
  bool Varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return false;
      uint8_t b = data_[pos_++];
      if (shift == 63 && b > 1) break;
      v |= uint64_t{b & 0x7fu} << shift;
      if (b < 0x80) return true;
    }
    bad_ = true;
    return false;
  }
  bool Byte(uint64_t& v) {
    if (pos_ >= data_.size()) return false;
    v = data_[pos_++];
    return true;
  }
  bool bad() const { return bad_; }
  size_t pos() const { return pos_; }

 private:
  ByteSpan data_;
  size_t pos_ = 0;
  bool bad_ = false;
};

ParseStep ParseOp(ByteSpan data) {
  ParseStep step;
  FieldReader r(data);
  ParsedOp& op = step.op;
  uint64_t code = 0, zstd_bytes = 0;
  bool complete = r.Byte(code);
  if (complete) {
    op.op = static_cast<Op>(code);
    switch (op.op) {
      case Op::kEnd:
        break;
      case Op::kCopy:
        complete = r.Varint(op.source_offset) && r.Varint(op.length);
        op.source_length = op.length;
        break;
      case Op::kLiteral:
        complete = r.Byte(op.width) && r.Varint(op.length) && r.Varint(zstd_bytes);
        break;
      case Op::kLiteralPrefix:
        complete = r.Varint(op.source_offset) && r.Varint(op.source_length) && r.Varint(op.target_offset) &&
                   r.Varint(op.target_length) && r.Varint(op.length) && r.Varint(zstd_bytes);
        break;
      case Op::kLiteralLzma:
        complete = r.Byte(op.width) && r.Varint(op.source_offset) && r.Varint(op.source_length) &&
                   r.Varint(op.target_offset) && r.Varint(op.target_length) && r.Varint(op.length) &&
                   r.Varint(zstd_bytes);
        break;
      case Op::kDiff:
        complete = r.Byte(op.width) && r.Varint(op.source_offset) && r.Varint(op.length) && r.Varint(zstd_bytes);
        op.source_length = op.length;
        break;
      case Op::kPatch:
        complete = r.Varint(op.source_offset) && r.Varint(op.length) && r.Varint(op.control_bytes) &&
                   r.Varint(zstd_bytes);
        break;
      case Op::kPatchModeled: {
        uint64_t coded_bytes = 0;
        complete = r.Varint(op.source_offset) && r.Varint(op.length) && r.Varint(op.control_bytes) &&
                   r.Varint(op.extra_bytes) && r.Varint(op.lzma_bytes) && r.Varint(coded_bytes);
        // Both bounded below, before the sum is used.
        if (complete && coded_bytes >= kDifferenceStreamBytesMin && coded_bytes <= op.length + kDifferenceStreamBytesMin &&
            op.lzma_bytes <= lzma_stream_buffer_bound(kDeltaOpTargetBytesMax)) {
          zstd_bytes = op.lzma_bytes + coded_bytes;
        }
        break;
      }
      default:
        step.status = Status::Corruption("unknown delta operation " + std::to_string(code));
        return step;
    }
  }
  if (r.bad()) {
    step.status = Status::Corruption("delta varint overflows 64 bits");
    return step;
  }
  if (!complete) {
    step.need_bytes = data.size() + 1;
    return step;
  }
  if (op.op != Op::kEnd && op.op != Op::kCopy) {
    if (op.length == 0 || op.length > kDeltaOpTargetBytesMax || op.control_bytes > kDeltaOpTargetBytesMax) {
      step.status = Status::Corruption("delta operation length out of bounds");
      return step;
    }
    if (op.op == Op::kPatchModeled &&
        (op.extra_bytes > op.length || op.extra_bytes > kDeltaOpTargetBytesMax - op.control_bytes)) {
      step.status = Status::Corruption("delta patch control and extra bytes out of bounds");
      return step;
    }
    const size_t bound = op.op == Op::kLiteralLzma    ? lzma_stream_buffer_bound(op.length)
                         : op.op == Op::kPatch        ? lzma_stream_buffer_bound(op.control_bytes + op.length)
                         : op.op == Op::kPatchModeled ? zstd_bytes  // checked at parsing, 0 if out of bounds
                                                      : ZSTD_compressBound(op.length);
    if (zstd_bytes == 0 || zstd_bytes > bound ||
        (op.op == Op::kPatchModeled &&
         (op.lzma_bytes == 0 || op.lzma_bytes > lzma_stream_buffer_bound(op.control_bytes + op.extra_bytes)))) {
      step.status = Status::Corruption("delta operation compressed size out of bounds");
      return step;
    }
    if ((op.op == Op::kLiteral || op.op == Op::kDiff || op.op == Op::kLiteralLzma) &&
        !delta_format::IsElementWidth(op.width)) {
      step.status = Status::Corruption("delta operation element width invalid");
      return step;
    }
    if (op.op == Op::kLiteralPrefix &&
        (op.source_length > kDeltaPrefixBytesMax || op.target_length > kDeltaPrefixBytesMax - op.source_length ||
         op.source_length + op.target_length == 0)) {
      step.status = Status::Corruption("delta prefix length out of bounds");
      return step;
    }
    if (op.op == Op::kLiteralLzma &&
        (op.source_length > kDeltaLzmaPrefixBytesMax || op.target_length > kDeltaLzmaPrefixBytesMax - op.source_length ||
         (op.width > 1 && op.source_length + op.target_length > 0))) {
      step.status = Status::Corruption("delta prefix length out of bounds");
      return step;
    }
  }
  const size_t total = r.pos() + zstd_bytes;
  if (total > data.size()) {
    step.need_bytes = total;
    return step;
  }
  op.payload = data.subspan(r.pos(), zstd_bytes);
  step.wire_bytes = total;
  return step;
}

}  // namespace

struct DeltaDecoder::State {
  SourceReader& source;
  TargetSink& sink;
  ApplyOptions options;
  Status error;
  std::optional<DeltaHeader> header;
  bool ended = false;
  uint64_t written = 0;
  Sha256 hasher;
  ZSTD_DCtx* dctx = nullptr;
  Bytes pending;     // bytes of an operation (or the header) not yet complete
  Bytes source_buf;  // a source range: copy slice, prefix, diff base
  Bytes out_buf;     // decompressed bytes of one operation
  uint64_t peak_bytes = 0;
  DifferenceDecoder differences;  // of PATCH_MODELED operations
  bool differences_used = false;   // its model is allocated
  // LITERAL_LZMA operations share one liblzma decoder, re-initialised per
  // operation with the same dictionary size so that it keeps its buffer (as
  // source_buf keeps its capacity): freeing and allocating tens of MiB per
  // operation left freed memory resident in the heap (67 MiB peak RSS on 78 MB
  // of code instead of 61). The dictionary is 1 MiB while every operation fits,
  // then the largest any operation needs, for the rest of the delta.
  lzma_stream lzma = LZMA_STREAM_INIT;
  uint32_t lzma_dict_bytes = 0;  // 0: not initialised

  State(SourceReader& s, TargetSink& k, ApplyOptions o) : source(s), sink(k), options(std::move(o)) {}
  ~State() {
    ZSTD_freeDCtx(dctx);
    lzma_end(&lzma);
  }

  void NotePeak() {
    peak_bytes = std::max<uint64_t>(peak_bytes, pending.capacity() + source_buf.capacity() + out_buf.capacity() +
                                                    (differences_used ? kDifferenceModelBytes : 0));
  }

  Status Emit(ByteSpan bytes) {
    hasher.Update(bytes);
    written += bytes.size();
    return sink.Write(bytes);
  }

  Status ReadSource(uint64_t offset, uint64_t length) {
    if (offset > header->source_size || length > header->source_size - offset) {
      return Status::Corruption("delta reads outside the source");
    }
    source_buf.resize(length);
    NotePeak();
    return length == 0 ? Status::Ok() : source.Read(offset, source_buf);
  }

  // Decompresses `payload` into out_buf (exactly `length` bytes), with the
  // bytes in source_buf as prefix when `with_prefix`.
  Status Decompress(ByteSpan payload, uint64_t length, bool with_prefix) {
    const unsigned long long declared = ZSTD_getFrameContentSize(payload.data(), payload.size());
    if (declared != length) return Status::Corruption("delta zstd frame size differs from its operation");
    if (dctx == nullptr && (dctx = ZSTD_createDCtx()) == nullptr) return Status::IOError("ZSTD_createDCtx failed");
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    if (with_prefix && ZSTD_isError(ZSTD_DCtx_refPrefix(dctx, source_buf.data(), source_buf.size()))) {
      return Status::IOError("ZSTD_DCtx_refPrefix failed");
    }
    out_buf.resize(length);
    NotePeak();
    const size_t got = ZSTD_decompressDCtx(dctx, out_buf.data(), out_buf.size(), payload.data(), payload.size());
    if (ZSTD_isError(got) || got != length) return Status::Corruption("delta zstd frame does not decode");
    return Status::Ok();
  }

  // Reads a literal's prefix into source_buf: the source range, then the
  // earlier target range.
  Status ReadPrefix(const ParsedOp& op) {
    if (op.target_offset > written || op.target_length > written - op.target_offset) {
      return Status::Corruption("delta reads target bytes not yet written");
    }
    MERIDIAN_RETURN_IF_ERROR(ReadSource(op.source_offset, op.source_length));
    source_buf.resize(op.source_length + op.target_length);
    NotePeak();
    if (op.target_length == 0) return Status::Ok();
    return sink.ReadBack(op.target_offset, std::span<uint8_t>(source_buf).subspan(op.source_length));
  }

  // LITERAL_LZMA: liblzma copies the prefix into its dictionary, and plain
  // output streams out through a slice-sized buffer (planes, which have no
  // prefix, are joined from the whole output). At most: the dictionary (24
  // MiB), source_buf (16 MiB), the pending operation and out_buf.
  Status DecodeLzma(const ParsedOp& op) {
    if (header->format_version < 2) return Status::Corruption("LZMA literal in a version 1 delta");
    // Kept from the operation before, unless larger than this one can use
    // (after a 32 MiB zstd prefix; planes join into at most `length` bytes).
    const bool planes = op.width > 1;
    if (source_buf.capacity() > (planes ? op.length : kDeltaLzmaPrefixBytesMax)) Bytes().swap(source_buf);
    source_buf.reserve(op.source_length + op.target_length);
    MERIDIAN_RETURN_IF_ERROR(ReadPrefix(op));
    out_buf.resize(planes ? op.length : std::min(kCopySliceBytes, op.length));
    NotePeak();
    MERIDIAN_RETURN_IF_ERROR(DecodeLzmaStream(op.payload, source_buf, op.length, /*whole=*/planes));
    if (!planes) return Status::Ok();
    source_buf.resize(op.length);
    NotePeak();
    delta_format::JoinPlanes(out_buf, static_cast<unsigned>(op.width), source_buf);
    return Emit(source_buf);
  }

  // Decodes the raw LZMA2 `payload`, with `prefix` as preset dictionary, to
  // exactly `length` bytes: into out_buf when `whole` (sized by the caller),
  // else emitted as target bytes through out_buf's slices.
  Status DecodeLzmaStream(ByteSpan payload, ByteSpan prefix, uint64_t length, bool whole) {
    constexpr uint32_t kSmallDictBytes = 1 << 20;
    if (prefix.size() + length > kSmallDictBytes) {
      lzma_dict_bytes = static_cast<uint32_t>(kDeltaLzmaPrefixBytesMax + kDeltaOpTargetBytesMax);
    } else if (lzma_dict_bytes == 0) {
      lzma_dict_bytes = kSmallDictBytes;
    }
    lzma_options_lzma lz{};
    if (lzma_lzma_preset(&lz, 0)) return Status::IOError("lzma preset");
    lz.dict_size = lzma_dict_bytes;
    lz.preset_dict = prefix.empty() ? nullptr : prefix.data();
    lz.preset_dict_size = static_cast<uint32_t>(prefix.size());
    const lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &lz}, {LZMA_VLI_UNKNOWN, nullptr}};
    if (lzma_raw_decoder(&lzma, filters) != LZMA_OK) return Status::IOError("lzma_raw_decoder failed");
    lzma.next_in = payload.data();
    lzma.avail_in = payload.size();
    uint64_t left = length;
    size_t filled = 0;  // whole: bytes of out_buf decoded so far
    for (;;) {
      const size_t in_before = lzma.avail_in;
      lzma.next_out = out_buf.data() + filled;
      lzma.avail_out = std::min<uint64_t>(out_buf.size() - filled, left);
      const lzma_ret r = lzma_code(&lzma, LZMA_FINISH);
      const size_t got = static_cast<size_t>(lzma.next_out - (out_buf.data() + filled));
      left -= got;
      if (whole) {
        filled += got;
      } else if (got > 0) {
        MERIDIAN_RETURN_IF_ERROR(Emit(ByteSpan(out_buf.data(), got)));
      }
      if (r == LZMA_STREAM_END) break;
      // Past `length`, or no progress: the stream is longer than it says, or cut.
      if (r != LZMA_OK || (got == 0 && lzma.avail_in == in_before)) {
        return Status::Corruption("delta LZMA stream does not decode to its operation's length");
      }
    }
    if (left != 0 || lzma.avail_in != 0) return Status::Corruption("delta LZMA stream size differs from its operation");
    return Status::Ok();
  }

  // PATCH: the control entries, differences and extra bytes are decoded
  // whole (at most 16 MiB), checked, then each entry adds its differences to
  // the source range it names and appends its extra bytes. PATCH_MODELED: the
  // same with the control entries and extra bytes decoded whole (at most 8
  // MiB), and the differences decoded entry by entry from their own stream.
  Status DecodePatch(const ParsedOp& op) {
    const bool modeled = op.op == Op::kPatchModeled;
    if (header->format_version < (modeled ? 4 : 3)) {
      return Status::Corruption("patch operation in a delta of a version before it");
    }
    out_buf.resize(op.control_bytes + (modeled ? op.extra_bytes : op.length));
    NotePeak();
    MERIDIAN_RETURN_IF_ERROR(
        DecodeLzmaStream(modeled ? op.payload.first(op.lzma_bytes) : op.payload, {}, out_buf.size(), /*whole=*/true));
    struct Entry {
      uint64_t diff_length, extra_length, seek;
    };
    auto entries = [&](auto&& visit) -> Status {
      FieldReader r(ByteSpan(out_buf).first(op.control_bytes));
      uint64_t produced = 0;
      while (r.pos() < op.control_bytes) {
        Entry e;
        if (!r.Varint(e.diff_length) || !r.Varint(e.extra_length) || !r.Varint(e.seek) ||
            e.diff_length > op.length - produced || e.extra_length > op.length - produced - e.diff_length) {
          return Status::Corruption("delta patch control entry malformed or past the operation's length");
        }
        produced += e.diff_length + e.extra_length;
        MERIDIAN_RETURN_IF_ERROR(visit(e));
      }
      if (produced != op.length) return Status::Corruption("delta patch entries do not make the operation's length");
      return Status::Ok();
    };
    uint64_t diff_total = 0;
    MERIDIAN_RETURN_IF_ERROR(entries([&](const Entry& e) {
      diff_total += e.diff_length;
      return Status::Ok();
    }));
    if (modeled) {
      if (op.length - diff_total != op.extra_bytes) {
        return Status::Corruption("delta patch extra bytes differ from what its entries take");
      }
      differences_used = true;
      NotePeak();
      differences.Reset(op.payload.subspan(op.lzma_bytes), DifferenceModelOf(header->format_version));
    }
    uint64_t cursor = op.source_offset, diff_at = op.control_bytes;
    uint64_t extra_at = op.control_bytes + (modeled ? 0 : diff_total);
    const Status applied = entries([&](const Entry& e) -> Status {
      MERIDIAN_RETURN_IF_ERROR(ReadSource(cursor, e.diff_length));
      if (modeled) {
        if (!differences.Apply(source_buf)) return Status::Corruption("delta patch differences end early");
      } else {
        for (uint64_t i = 0; i < e.diff_length; ++i) source_buf[i] = static_cast<uint8_t>(source_buf[i] + out_buf[diff_at + i]);
        diff_at += e.diff_length;
      }
      MERIDIAN_RETURN_IF_ERROR(Emit(source_buf));
      MERIDIAN_RETURN_IF_ERROR(Emit(ByteSpan(out_buf).subspan(extra_at, e.extra_length)));
      extra_at += e.extra_length;
      // Zigzag seek from the end of the differences; the cursor stays inside the source.
      const uint64_t magnitude = (e.seek >> 1) + (e.seek & 1);
      cursor += e.diff_length;
      if ((e.seek & 1) ? magnitude > cursor : magnitude > header->source_size - cursor) {
        return Status::Corruption("delta patch seeks outside the source");
      }
      cursor = (e.seek & 1) ? cursor - magnitude : cursor + magnitude;
      return Status::Ok();
    });
    if (!applied.ok() || !modeled) return applied;
    if (!differences.AtEnd()) return Status::Corruption("delta patch differences longer than its entries");
    return Status::Ok();
  }

  Status Execute(const ParsedOp& op) {
    if (ended) return Status::Corruption("delta has bytes after its end operation");
    if (op.op == Op::kEnd) {
      ended = true;
      return Status::Ok();
    }
    if (op.length > header->target_size - written) return Status::Corruption("delta writes past the target size");
    switch (op.op) {
      case Op::kCopy:
        if (op.source_offset > header->source_size || op.length > header->source_size - op.source_offset) {
          return Status::Corruption("delta reads outside the source");
        }
        for (uint64_t done = 0; done < op.length;) {
          const uint64_t n = std::min(kCopySliceBytes, op.length - done);
          MERIDIAN_RETURN_IF_ERROR(ReadSource(op.source_offset + done, n));
          MERIDIAN_RETURN_IF_ERROR(Emit(source_buf));
          done += n;
        }
        return Status::Ok();
      case Op::kLiteral:
        MERIDIAN_RETURN_IF_ERROR(Decompress(op.payload, op.length, false));
        if (op.width == 1) return Emit(out_buf);
        source_buf.resize(op.length);
        NotePeak();
        delta_format::JoinPlanes(out_buf, static_cast<unsigned>(op.width), source_buf);
        return Emit(source_buf);
      case Op::kLiteralPrefix:
        // Up to 32 MiB of prefix: the LZMA dictionary goes first.
        lzma_end(&lzma);
        lzma = LZMA_STREAM_INIT;
        lzma_dict_bytes = 0;
        MERIDIAN_RETURN_IF_ERROR(ReadPrefix(op));
        MERIDIAN_RETURN_IF_ERROR(Decompress(op.payload, op.length, true));
        return Emit(out_buf);
      case Op::kLiteralLzma:
        return DecodeLzma(op);
      case Op::kPatch:
      case Op::kPatchModeled:
        return DecodePatch(op);
      case Op::kDiff:
        MERIDIAN_RETURN_IF_ERROR(ReadSource(op.source_offset, op.length));
        MERIDIAN_RETURN_IF_ERROR(Decompress(op.payload, op.length, false));
        delta_format::ApplyPlanes(out_buf, static_cast<unsigned>(op.width), source_buf);
        return Emit(source_buf);
      case Op::kEnd:
        break;
    }
    return Status::Corruption("unknown delta operation");
  }

  Status CheckHeader(ByteSpan bytes) {
    Result<DeltaHeader> h = ParseDeltaHeader(bytes);
    if (!h.ok()) return h.status();
    if (h->source_size != source.size() || h->source_digest != options.source_digest) {
      return Status::InvalidArgument("delta was made from another source");
    }
    if (options.target_digest && *options.target_digest != h->target_digest) {
      return Status::InvalidArgument("delta makes another target than expected");
    }
    if (h->target_size > options.target_bytes_max) return Status::InvalidArgument("delta target larger than allowed");
    header = *h;
    return Status::Ok();
  }

  // Runs the complete operations at the front of `data`; `consumed` says how
  // many bytes they took.
  Status Consume(ByteSpan data, size_t& consumed) {
    consumed = 0;
    while (consumed < data.size()) {
      ParseStep step = ParseOp(data.subspan(consumed));
      MERIDIAN_RETURN_IF_ERROR(step.status);
      if (step.wire_bytes == 0) return Status::Ok();
      MERIDIAN_RETURN_IF_ERROR(Execute(step.op));
      consumed += step.wire_bytes;
    }
    return Status::Ok();
  }

  Status Append(ByteSpan in) {
    if (!header) {
      const size_t take = std::min(in.size(), kDeltaHeaderBytes - pending.size());
      pending.insert(pending.end(), in.begin(), in.begin() + static_cast<ptrdiff_t>(take));
      in = in.subspan(take);
      if (pending.size() < kDeltaHeaderBytes) return Status::Ok();
      MERIDIAN_RETURN_IF_ERROR(CheckHeader(pending));
      pending.clear();
    }
    while (!in.empty()) {
      if (pending.empty()) {
        // Operations complete in the caller's bytes run from there, uncopied.
        size_t consumed = 0;
        MERIDIAN_RETURN_IF_ERROR(Consume(in, consumed));
        pending.assign(in.begin() + static_cast<ptrdiff_t>(consumed), in.end());
        NotePeak();
        return Status::Ok();
      }
      // Complete the pending operation with just the bytes it still needs.
      ParseStep step = ParseOp(pending);
      MERIDIAN_RETURN_IF_ERROR(step.status);
      if (step.wire_bytes == 0) {
        const size_t take = std::min(in.size(), step.need_bytes - pending.size());
        pending.reserve(step.need_bytes);
        pending.insert(pending.end(), in.begin(), in.begin() + static_cast<ptrdiff_t>(take));
        NotePeak();
        in = in.subspan(take);
        continue;
      }
      MERIDIAN_RETURN_IF_ERROR(Execute(step.op));
      pending.clear();
    }
    // The pending operation may now be complete.
    if (!pending.empty()) {
      ParseStep step = ParseOp(pending);
      MERIDIAN_RETURN_IF_ERROR(step.status);
      if (step.wire_bytes != 0) {
        MERIDIAN_RETURN_IF_ERROR(Execute(step.op));
        pending.clear();
      }
    }
    return Status::Ok();
  }
};

DeltaDecoder::DeltaDecoder(SourceReader& source, TargetSink& sink, ApplyOptions options)
    : state_(std::make_unique<State>(source, sink, std::move(options))) {}

DeltaDecoder::~DeltaDecoder() = default;

Status DeltaDecoder::Append(ByteSpan delta_bytes) {
  State& s = *state_;
  if (s.error.ok()) s.error = s.Append(delta_bytes);
  return s.error;
}

Status DeltaDecoder::Finish() {
  State& s = *state_;
  if (!s.error.ok()) return s.error;
  if (!s.header) {
    s.error = Status::Corruption("delta shorter than its header");
  } else if (!s.ended || !s.pending.empty()) {
    s.error = Status::Corruption("delta truncated: no end operation");
  } else if (s.written != s.header->target_size) {
    s.error = Status::Corruption("delta produced " + std::to_string(s.written) + " bytes, header says " +
                                 std::to_string(s.header->target_size));
  } else if (s.hasher.Finish() != s.header->target_digest) {
    s.error = Status::Corruption("delta output does not match the target digest");
  } else {
    return Status::Ok();
  }
  return s.error;
}

const std::optional<DeltaHeader>& DeltaDecoder::header() const { return state_->header; }
uint64_t DeltaDecoder::target_bytes_written() const { return state_->written; }
uint64_t DeltaDecoder::buffer_bytes_peak() const { return state_->peak_bytes; }

Result<Bytes> ApplyDelta(ByteSpan source, ByteSpan delta) {
  struct VectorSink final : TargetSink {
    Bytes out;
    Status Write(ByteSpan data) override {
      out.insert(out.end(), data.begin(), data.end());
      return Status::Ok();
    }
    Status ReadBack(uint64_t offset, std::span<uint8_t> dest) override {
      std::copy_n(out.begin() + static_cast<ptrdiff_t>(offset), dest.size(), dest.begin());
      return Status::Ok();
    }
  };
  SpanSourceReader reader(source);
  VectorSink sink;
  ApplyOptions options;
  options.source_digest = Digest::Of(source);
  DeltaDecoder decoder(reader, sink, options);
  MERIDIAN_RETURN_IF_ERROR(decoder.Append(delta));
  MERIDIAN_RETURN_IF_ERROR(decoder.Finish());
  return std::move(sink.out);
}

}  // namespace meridian
