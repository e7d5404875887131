// The delta encoder: finds what the target shares with the source through
// content-defined anchors, copies long shared runs, and encodes every other
// segment of the target the way a trial on a sample of it says is smallest —
// LZMA2 (or zstd) with the matching source range and earlier target as
// prefix (code),
// byte planes (new weights), or zigzag differences against the source (drifted
// weights). Segments are encoded in parallel.
#include <lzma.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>

#include "delta/approximate_match.h"
#include "delta/chunker.h"
#include "delta/delta.h"
#include "delta/difference_model.h"

namespace meridian {

using delta_format::Op;

namespace {

// Anchors: chunk starts of a fine content-defined chunking, keyed by the hash
// of the bytes that follow. A run shared by source and target, a few hundred
// bytes long, holds an anchor at the same content in both.
constexpr ChunkerParams kAnchorParams{.min_bytes = 64, .avg_bytes = 256, .max_bytes = 1024};
constexpr size_t kAnchorKeyBytes = 32;
// Element grids are chosen per block of this many target bytes.
constexpr uint64_t kBlockBytes = 4096;
// Runs of one element grid shorter than this join the run before them: each
// run costs a zstd frame.
constexpr uint64_t kRunBytesMin = 16 * 1024;
// Gaps between copies are cut into a part per thread down to this length
// (Plan); shorter parts lose more context than the threads gain.
constexpr uint64_t kSplitBytesMin = 1ull << 20;
// Bytes of a segment on which the encodings are tried, in pieces spread over it.
constexpr uint64_t kSampleBytes = 1ull << 20;
constexpr uint64_t kSamplePieces = 8;
constexpr int kTrialLevel = 1;
// The smallest fraction of its trial size (level kTrialLevel, on samples,
// scaled to the segment) a segment's final encoding is assumed to reach
// (SegmentEncoder::Encode): measured 0.34–1.84 on 46 segments of 10 pairs of
// code, LZMA literals with a prefix the lowest.
constexpr double kFinalGainMax = 0.3;
// An approximate-match operation replaces the segment's other encoding only
// when it is at least 1/kPatchSavingMin smaller (SegmentEncoder::Encode).
constexpr size_t kPatchSavingMin = 16;
// Differences are sparse when at most one byte in this many differs: a
// segment is then coded as differences along one diagonal (SparseAlong), and
// an approximate match is modelled (SegmentEncoder::EncodePatch).
constexpr size_t kDenseDifferencesRatio = 4;
constexpr bool SparseDifferences(size_t differing, size_t bytes) { return differing <= bytes / kDenseDifferencesRatio; }
// A segment gets a target window (Plan) when at least kTargetHintsMin of its
// anchors, and 1/kTargetHintsShare of them, recur in the earlier target but in
// no match with the source: content the source window lacks and an earlier
// file of the release may hold. LZMA's match finder takes about as long over a
// window as over as many bytes to code (measured: 0.49 and 0.54 s/MB), so a
// window of the segment's length makes it about a third slower to code, which
// content under 1 % of the segment cannot repay. (Counting anchors the source
// holds too gave every part of a 28.7 MB binary's patch release a window,
// which took a quarter of the time to make and saved 0.25 % of the delta.)
constexpr size_t kTargetHintsMin = 16;
constexpr size_t kTargetHintsShare = 100;

uint64_t AnchorKey(const uint8_t* p) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < kAnchorKeyBytes; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    h ^= h >> 31;
  }
  return h;
}

std::vector<uint64_t> AnchorPositions(ByteSpan data) {
  std::vector<uint64_t> out;
  uint64_t pos = 0;
  while (pos + kAnchorKeyBytes <= data.size()) {
    out.push_back(pos);
    pos += FindChunkEnd(data.subspan(pos), /*final=*/true, kAnchorParams);
  }
  return out;
}

// Open addressing from anchor key to the first position with it.
class AnchorIndex {
 public:
  // Room for `anchors` keys.
  explicit AnchorIndex(size_t anchors) {
    const size_t slots = std::bit_ceil(std::max<size_t>(16, anchors * 2));
    mask_ = slots - 1;
    keys_.assign(slots, 0);
    positions_.assign(slots, kEmpty);
  }
  AnchorIndex(ByteSpan data, const std::vector<uint64_t>& anchors) : AnchorIndex(anchors.size()) {
    for (uint64_t pos : anchors) Insert(AnchorKey(data.data() + pos), pos);
  }
  // Keeps the first position of a key. At most the `anchors` keys given to
  // the constructor.
  void Insert(uint64_t key, uint64_t pos) {
    for (size_t i = key & mask_;; i = (i + 1) & mask_) {
      if (positions_[i] == kEmpty) {
        keys_[i] = key;
        positions_[i] = pos;
        return;
      }
      if (keys_[i] == key) return;
    }
  }
  std::optional<uint64_t> Find(uint64_t key) const {
    for (size_t i = key & mask_; positions_[i] != kEmpty; i = (i + 1) & mask_) {
      if (keys_[i] == key) return positions_[i];
    }
    return std::nullopt;
  }

 private:
  static constexpr uint64_t kEmpty = UINT64_MAX;
  size_t mask_ = 0;
  std::vector<uint64_t> keys_;
  std::vector<uint64_t> positions_;
};

// A run of bytes the target shares with the source.
struct Match {
  uint64_t target_pos;
  uint64_t source_pos;
  uint64_t length;
  int64_t diagonal() const { return static_cast<int64_t>(source_pos) - static_cast<int64_t>(target_pos); }
};

// Maximal matches at target anchors, in target order, not overlapping.
std::vector<Match> FindMatches(ByteSpan source, ByteSpan target, const AnchorIndex& index,
                               const std::vector<uint64_t>& target_anchors) {
  std::vector<Match> matches;
  uint64_t covered = 0;
  for (uint64_t t : target_anchors) {
    if (t < covered) continue;
    std::optional<uint64_t> found = index.Find(AnchorKey(target.data() + t));
    if (!found || std::memcmp(source.data() + *found, target.data() + t, kAnchorKeyBytes) != 0) continue;
    uint64_t s = *found, begin = t, end = t + kAnchorKeyBytes;
    while (begin > covered && s > 0 && source[s - 1] == target[begin - 1]) --s, --begin;
    uint64_t s_end = *found + kAnchorKeyBytes;
    while (end < target.size() && s_end < source.size() && source[s_end] == target[end]) ++end, ++s_end;
    matches.push_back({begin, s, end - begin});
    covered = end;
  }
  return matches;
}

// A target range and the source range it is encoded against, both in
// memory, and where they start in the whole versions.
struct Window {
  ByteSpan source;
  uint64_t source_base = 0;
  ByteSpan target;
  uint64_t target_base = 0;
  // Where the target's content is expected in the source, as source −
  // target position in the window (0, unchanged offsets, in a whole pair):
  // a candidate alignment of every segment.
  int64_t diagonal = 0;
};

// Where a target segment probably lies in the source.
struct Segment {
  uint64_t begin = 0;
  uint64_t end = 0;
  std::vector<int64_t> diagonals;       // candidates, source = target + diagonal
  uint64_t window_begin = 0;            // source range for a zstd prefix
  uint64_t window_end = 0;
  uint64_t target_window_begin = 0;     // earlier target range appended to that prefix
  uint64_t target_window_end = 0;
};

// An element grid: `width`-byte elements starting at positions ≡ phase.
struct Grid {
  unsigned width = 1;
  unsigned phase = 0;
  bool operator==(const Grid&) const = default;
};
constexpr unsigned kWidths[] = {1, 2, 4};

template <typename T>
uint64_t DiffBits(const uint8_t* s, const uint8_t* t, size_t n) {
  uint64_t bits = 0;
  for (size_t i = 0; i < n; ++i) {
    T a, b;
    std::memcpy(&a, s + i * sizeof(T), sizeof(T));
    std::memcpy(&b, t + i * sizeof(T), sizeof(T));
    using S = std::make_signed_t<T>;
    const S d = static_cast<S>(static_cast<T>(b - a));
    bits += static_cast<uint64_t>(std::bit_width(static_cast<T>(d < 0 ? ~static_cast<T>(d) : static_cast<T>(d))));
  }
  return bits;
}

// Estimated bits per byte of the zigzag differences of [begin, end) on `grid`:
// the sum of the differences' significant bits. A fair proxy to compare the
// phases of one width, not widths (it rates float32 differences byte-wise
// cheaper than 4-byte-wise, which compresses 20 % worse): widths are compared
// by trial compression.
double GridCost(ByteSpan source, ByteSpan target, int64_t diagonal, uint64_t begin, uint64_t end, Grid grid) {
  uint64_t first = begin + (grid.phase + grid.width - begin % grid.width) % grid.width;
  if (first >= end) return 8;
  const size_t n = (end - first) / grid.width;
  if (n == 0) return 8;
  const uint8_t* s = source.data() + static_cast<int64_t>(first) + diagonal;
  const uint8_t* t = target.data() + first;
  uint64_t bits = grid.width == 1 ? DiffBits<uint8_t>(s, t, n)
                  : grid.width == 2 ? DiffBits<uint16_t>(s, t, n)
                                    : DiffBits<uint32_t>(s, t, n);
  return static_cast<double>(bits) / static_cast<double>(n * grid.width);
}

class SegmentEncoder {
  enum class LiteralMode { kPlain, kPlanes2, kPlanes4, kPrefix };

 public:
  // Encodes segments of `window.target` against `window.source`.
  // `patch_index`: gives the source's index for PATCH operations (built on
  // first use), or empty for no PATCH operations.
  SegmentEncoder(const Window& window, const DeltaOptions& options,
                 std::function<const SourceHashIndex&()> patch_index)
      : source_(window.source),
        target_(window.target),
        source_base_(window.source_base),
        target_base_(window.target_base),
        options_(options),
        patch_index_(patch_index),
        cctx_(ZSTD_createCCtx()) {}
  ~SegmentEncoder() { ZSTD_freeCCtx(cctx_); }
  SegmentEncoder(const SegmentEncoder&) = delete;
  SegmentEncoder& operator=(const SegmentEncoder&) = delete;

  Result<Bytes> Encode(const Segment& seg) {
    // The trials run on pieces spread over the segment: one piece in the
    // middle misjudges code whose alignment with the source drifts (a
    // patch release shifts every later address).
    std::vector<std::pair<uint64_t, uint64_t>> samples;
    const uint64_t len = seg.end - seg.begin, piece = std::min(len, kSampleBytes / kSamplePieces);
    for (uint64_t i = 0; i < kSamplePieces; ++i) {
      const uint64_t b = seg.begin + (len - piece) * (2 * i + 1) / (2 * kSamplePieces);
      if (samples.empty() || b >= samples.back().second) samples.emplace_back(b, b + piece);
    }
    auto trial = [&](auto&& encode) -> Result<size_t> {
      size_t total = 0;
      for (const auto& [b, e] : samples) {
        Result<Bytes> r = encode(b, e);
        if (!r.ok()) return r.status();
        total += r->size();
      }
      return total;
    };

    // The cheapest literal form on the samples.
    std::vector<LiteralMode> modes = {LiteralMode::kPlanes2, LiteralMode::kPlanes4};
    const bool has_prefix = seg.window_end > seg.window_begin || seg.target_window_end > seg.target_window_begin;
    modes.push_back(has_prefix ? LiteralMode::kPrefix : LiteralMode::kPlain);
    LiteralMode best_mode = modes.front();
    size_t best_size = SIZE_MAX;
    for (LiteralMode mode : modes) {
      Result<size_t> size =
          trial([&](uint64_t b, uint64_t e) { return EncodeLiteral(seg, b, e, mode, kTrialLevel); });
      if (!size.ok()) return size.status();
      if (*size < best_size) best_size = *size, best_mode = mode;
    }

    // Differences against the source, when a diagonal keeps the segment inside it.
    std::optional<int64_t> diagonal = ChooseDiagonal(seg);
    std::optional<unsigned> diff_width;
    for (unsigned width : kWidths) {
      if (!diagonal) break;
      Result<size_t> size =
          trial([&](uint64_t b, uint64_t e) { return EncodeDiff(b, e, *diagonal, width, kTrialLevel); });
      if (!size.ok()) return size.status();
      if (*size < best_size) best_size = *size, diff_width = width;
    }
    if (diff_width && has_prefix) {
      // Samples miss where code's alignment with the source drifts (a patch
      // release shifts every later address), which ruins differences along
      // one diagonal: their choice over a literal with a prefix is confirmed
      // on the whole segment.
      Result<Bytes> diff = EncodeDiff(seg.begin, seg.end, *diagonal, *diff_width, kTrialLevel);
      if (!diff.ok()) return diff.status();
      Result<Bytes> literal = EncodeLiteral(seg, seg.begin, seg.end, LiteralMode::kPrefix, kTrialLevel);
      if (!literal.ok()) return literal.status();
      if (literal->size() < diff->size()) diff_width.reset(), best_mode = LiteralMode::kPrefix;
    }
    if (!diff_width && (best_mode == LiteralMode::kPlanes2 || best_mode == LiteralMode::kPlanes4)) {
      return EncodePlanes(seg, best_mode);
    }
    // Code: differences or a literal, and approximate matches, which win on
    // patch releases (2× smaller on compiled code shifted by a small fix) and
    // lose on large changes: both are made, the smaller kept. Differences of
    // 2 or 4 bytes with a prefix too: tables of offsets in a binary (on
    // esbuild 0.24.0 -> 0.24.2, 741 KB of them took 89,278 bytes as DIFF).
    // The approximate matches come first: a patch under kFinalGainMax × the
    // trial's size (scaled to the segment) wins without the slow final pass
    // (patch releases: 2–5× faster to make).
    Result<Bytes> patch = Bytes{};
    // After 2- or 4-byte differences, only where they are sparse byte-wise:
    // weights that drifted everywhere differ in most bytes, and matching
    // them approximately alone took seconds per segment (fp32 full
    // fine-tune: 20 s to make became 54 s).
    const unsigned width = diff_width.value_or(1);
    const bool sparse = width == 1 || SparseAlong(seg, diagonal.value_or(0));
    if (has_prefix && patch_index_ && sparse) {
      patch = EncodePatch(seg, diagonal.value_or(seg.diagonals.front()));
    }
    if (!patch.ok()) return patch.status();
    uint64_t sampled = 0;
    for (const auto& [b, e] : samples) sampled += e - b;
    const double trial_estimate = static_cast<double>(best_size) * static_cast<double>(len) / static_cast<double>(sampled);
    if (!patch->empty() && static_cast<double>(patch->size()) < trial_estimate * kFinalGainMax) {
      used_patch_ = true;
      return patch;
    }
    Result<Bytes> chosen = diff_width ? EncodeDiff(seg.begin, seg.end, diagonal.value_or(0), width, options_.numeric_level)
                                      : EncodeFinalLiteral(seg, best_mode);
    // The model decodes at about 10 MB/s, LZMA literals 5 × faster: the
    // patch must save a sixteenth (on minor releases it often saved 0.4–3 %).
    if (!chosen.ok() || patch->empty() || patch->size() >= chosen->size() - chosen->size() / kPatchSavingMin) {
      return chosen;
    }
    used_patch_ = true;
    return patch;
  }

  // Whether the segment's bytes differ sparsely from the source along
  // `diagonal` (which keeps the segment inside it).
  bool SparseAlong(const Segment& seg, int64_t diagonal) const {
    const uint8_t* source = source_.data() + static_cast<int64_t>(seg.begin) + diagonal;
    size_t differing = 0;
    for (uint64_t i = seg.begin; i < seg.end; ++i) differing += target_[i] != source[i - seg.begin];
    return SparseDifferences(differing, seg.end - seg.begin);
  }

  // The format version the operations this encoder made need: PATCH_MODELED
  // with the latest model of its differences (EncodePatch) is version 5's.
  uint16_t format_version() const { return used_patch_ ? 5 : used_lzma_ ? 2 : 1; }
  static_assert(DifferenceModelOf(5) == kDifferenceModelLatest);

 private:
  // A literal segment at the configured codec and level.
  Result<Bytes> EncodeFinalLiteral(const Segment& seg, LiteralMode mode) {
    if (options_.literal_codec == LiteralCodec::kLzma) return EncodeLzma(seg);
    return EncodeLiteral(seg, seg.begin, seg.end, mode, options_.literal_level);
  }

  Status Compress(ByteSpan data, int level, ByteSpan prefix, bool numeric, Bytes& out) {
    ZSTD_CCtx_reset(cctx_, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level);
    if (!prefix.empty()) {
      // The window must reach from the end of the data back to the prefix's start.
      const int window_log = std::max(10, static_cast<int>(std::bit_width(prefix.size() + data.size() - 1)));
      ZSTD_CCtx_setParameter(cctx_, ZSTD_c_windowLog, window_log);
      // Long-distance matching finds the prefix's long runs whatever the level:
      // without it a fast level's small tables miss most of a large prefix, and
      // the trials misjudge code (a shifted patch release) as cheaper to diff.
      ZSTD_CCtx_setParameter(cctx_, ZSTD_c_enableLongDistanceMatching, 1);
      ZSTD_CCtx_refPrefix(cctx_, prefix.data(), prefix.size());
    }
    // Residuals and planes are mostly short noise between runs of zeros: short
    // matches there cost more than the literals they replace (measured: -3 %).
    if (numeric) ZSTD_CCtx_setParameter(cctx_, ZSTD_c_minMatch, 7);
    ZSTD_CCtx_setPledgedSrcSize(cctx_, data.size());
    const size_t start = out.size();
    out.resize(start + ZSTD_compressBound(data.size()));
    const size_t n = ZSTD_compress2(cctx_, out.data() + start, out.size() - start, data.data(), data.size());
    if (ZSTD_isError(n)) return Status::IOError(std::string("zstd: ") + ZSTD_getErrorName(n));
    out.resize(start + n);
    return Status::Ok();
  }

  // Appends the varint zstd size and the frame of `data` to `op`.
  Status AppendFrame(Bytes& op, ByteSpan data, int level, ByteSpan prefix, bool numeric) {
    frame_.clear();
    MERIDIAN_RETURN_IF_ERROR(Compress(data, level, prefix, numeric, frame_));
    delta_format::PutVarint(op, frame_.size());
    op.insert(op.end(), frame_.begin(), frame_.end());
    return Status::Ok();
  }

  // The segment as one LITERAL_LZMA operation: LZMA2 with the segment's
  // prefix (when it has one, and it fits kDeltaLzmaPrefixBytesMax) as preset
  // dictionary. LZMA's optimal parsing and literal coding make code about
  // 15 % smaller than zstd -19 with the same prefix.
  Result<Bytes> EncodeLzma(const Segment& seg) {
    ByteSpan from_source = source_.subspan(seg.window_begin, seg.window_end - seg.window_begin);
    ByteSpan from_target = target_.subspan(seg.target_window_begin, seg.target_window_end - seg.target_window_begin);
    uint64_t source_offset = seg.window_begin, target_offset = seg.target_window_begin;
    if (from_source.size() + from_target.size() > kDeltaLzmaPrefixBytesMax) {
      // Keep the source window's middle and the nearest earlier target.
      const uint64_t keep_target = std::min<uint64_t>(from_target.size(), kDeltaLzmaPrefixBytesMax / 4);
      from_target = from_target.last(keep_target);
      target_offset = seg.target_window_end - keep_target;
      const uint64_t keep_source = kDeltaLzmaPrefixBytesMax - keep_target;
      const uint64_t cut = (from_source.size() - keep_source) / 2;
      from_source = from_source.subspan(cut, keep_source);
      source_offset += cut;
    }
    prefix_.assign(from_source.begin(), from_source.end());
    prefix_.insert(prefix_.end(), from_target.begin(), from_target.end());
    Bytes op = LzmaFields(1, source_base_ + source_offset, from_source.size(), target_base_ + target_offset,
                          from_target.size(), seg.end - seg.begin);
    MERIDIAN_RETURN_IF_ERROR(AppendLzma(op, target_.subspan(seg.begin, seg.end - seg.begin), prefix_, LzmaModel::kText));
    used_lzma_ = true;
    return op;
  }

  // New weights as byte planes, the smaller of zstd and LZMA2: LZMA's range
  // coder gets closer to the entropy of skewed exponent planes (fp32: 1 % less),
  // zstd does better on others (fp16: 0.6 % less).
  Result<Bytes> EncodePlanes(const Segment& seg, LiteralMode mode) {
    Result<Bytes> zstd = EncodeLiteral(seg, seg.begin, seg.end, mode, options_.numeric_level);
    if (!zstd.ok() || options_.literal_codec != LiteralCodec::kLzma) return zstd;
    const unsigned width = mode == LiteralMode::kPlanes2 ? 2 : 4;
    const ByteSpan data = target_.subspan(seg.begin, seg.end - seg.begin);
    planes_.resize(data.size());
    delta_format::SplitPlanes(data, width, planes_);
    Bytes op = LzmaFields(width, 0, 0, 0, 0, data.size());
    MERIDIAN_RETURN_IF_ERROR(AppendLzma(op, planes_, {}, LzmaModel::kNumeric));
    if (op.size() >= zstd->size()) return zstd;
    used_lzma_ = true;
    return op;
  }

  // The segment as one PATCH_MODELED operation (approximate matches from the
  // source position the segment's diagonal gives), or empty when its control
  // and extra bytes are over the format's limit or its differences are dense.
  Result<Bytes> EncodePatch(const Segment& seg, int64_t diagonal) {
    const uint64_t start = static_cast<uint64_t>(
        std::clamp<int64_t>(static_cast<int64_t>(seg.begin) + diagonal, 0, static_cast<int64_t>(source_.size())));
    ApproximateMatches m = MatchApproximately(source_, target_, seg.begin, seg.end, start, patch_index_());
    if (m.control.size() + m.extra.size() > kDeltaOpTargetBytesMax) return Bytes{};
    // The model pays off on sparse differences (moved operands in code that
    // is otherwise the same); dense ones (weights that drifted everywhere)
    // are what DIFF is for, and modelling them costs 1 s per 10 MB.
    const auto nonzero = static_cast<size_t>(std::count_if(m.diff.begin(), m.diff.end(), [](uint8_t d) { return d != 0; }));
    if (!SparseDifferences(nonzero, m.diff.size())) return Bytes{};
    Bytes content = std::move(m.control);
    const size_t control_bytes = content.size();
    content.insert(content.end(), m.extra.begin(), m.extra.end());
    const Bytes coded = EncodeDifferences(m.diff_source, m.diff, kDifferenceModelLatest);
    Bytes op = {static_cast<uint8_t>(Op::kPatchModeled)};
    for (uint64_t v : {source_base_ + start, seg.end - seg.begin, static_cast<uint64_t>(control_bytes),
                       static_cast<uint64_t>(m.extra.size())}) {
      delta_format::PutVarint(op, v);
    }
    MERIDIAN_RETURN_IF_ERROR(CompressLzma(content, {}, LzmaModel::kText));
    delta_format::PutVarint(op, frame_.size());
    delta_format::PutVarint(op, coded.size());
    op.insert(op.end(), frame_.begin(), frame_.end());
    op.insert(op.end(), coded.begin(), coded.end());
    return op;
  }

  // The fields of a LITERAL_LZMA operation, up to its stream.
  Bytes LzmaFields(unsigned width, uint64_t source_offset, uint64_t source_length, uint64_t target_offset,
                   uint64_t target_length, uint64_t length) {
    Bytes op = {static_cast<uint8_t>(Op::kLiteralLzma), static_cast<uint8_t>(width)};
    for (uint64_t v : {source_offset, source_length, target_offset, target_length, length}) {
      delta_format::PutVarint(op, v);
    }
    return op;
  }

  enum class LzmaModel {
    kText,     // the preset's model
    kNumeric,  // no literal context or position bits (lc = lp = pb = 0): byte planes of numbers
  };

  // Appends the varint size and the raw LZMA2 stream of `data` (with `prefix`
  // as preset dictionary) to `op`.
  Status AppendLzma(Bytes& op, ByteSpan data, ByteSpan prefix, LzmaModel model) {
    MERIDIAN_RETURN_IF_ERROR(CompressLzma(data, prefix, model));
    delta_format::PutVarint(op, frame_.size());
    op.insert(op.end(), frame_.begin(), frame_.end());
    return Status::Ok();
  }

  // The raw LZMA2 stream of `data` (with `prefix` as preset dictionary), in frame_.
  Status CompressLzma(ByteSpan data, ByteSpan prefix, LzmaModel model) {
    lzma_options_lzma lz{};
    if (lzma_lzma_preset(&lz, static_cast<uint32_t>(options_.lzma_preset))) return Status::InvalidArgument("lzma preset");
    lz.dict_size = static_cast<uint32_t>(std::max<uint64_t>(LZMA_DICT_SIZE_MIN, prefix.size() + data.size()));
    lz.preset_dict = prefix.empty() ? nullptr : prefix.data();
    lz.preset_dict_size = static_cast<uint32_t>(prefix.size());
    if (model == LzmaModel::kNumeric) lz.lc = lz.lp = lz.pb = 0;
    const lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &lz}, {LZMA_VLI_UNKNOWN, nullptr}};
    frame_.resize(lzma_stream_buffer_bound(data.size()));
    size_t frame_bytes = 0;
    const lzma_ret r =
        lzma_raw_buffer_encode(filters, nullptr, data.data(), data.size(), frame_.data(), &frame_bytes, frame_.size());
    if (r != LZMA_OK) return Status::IOError("lzma_raw_buffer_encode failed (" + std::to_string(r) + ")");
    frame_.resize(frame_bytes);
    return Status::Ok();
  }

  Result<Bytes> EncodeLiteral(const Segment& seg, uint64_t begin, uint64_t end, LiteralMode mode, int level) {
    Bytes op;
    ByteSpan data = target_.subspan(begin, end - begin);
    if (mode == LiteralMode::kPrefix) {
      // The prefix: the source window, then the earlier target window.
      const ByteSpan from_source = source_.subspan(seg.window_begin, seg.window_end - seg.window_begin);
      const ByteSpan from_target =
          target_.subspan(seg.target_window_begin, seg.target_window_end - seg.target_window_begin);
      op.push_back(static_cast<uint8_t>(Op::kLiteralPrefix));
      delta_format::PutVarint(op, source_base_ + seg.window_begin);
      delta_format::PutVarint(op, from_source.size());
      delta_format::PutVarint(op, target_base_ + seg.target_window_begin);
      delta_format::PutVarint(op, from_target.size());
      delta_format::PutVarint(op, data.size());
      prefix_.assign(from_source.begin(), from_source.end());
      prefix_.insert(prefix_.end(), from_target.begin(), from_target.end());
      MERIDIAN_RETURN_IF_ERROR(AppendFrame(op, data, level, prefix_, false));
      return op;
    }
    const unsigned width = mode == LiteralMode::kPlanes2 ? 2 : mode == LiteralMode::kPlanes4 ? 4 : 1;
    op.push_back(static_cast<uint8_t>(Op::kLiteral));
    op.push_back(static_cast<uint8_t>(width));
    delta_format::PutVarint(op, data.size());
    if (width == 1) {
      MERIDIAN_RETURN_IF_ERROR(AppendFrame(op, data, level, {}, false));
    } else {
      planes_.resize(data.size());
      delta_format::SplitPlanes(data, width, planes_);
      MERIDIAN_RETURN_IF_ERROR(AppendFrame(op, planes_, level, {}, true));
    }
    return op;
  }

  // The best phase of `width` for each block of [begin, end) (ties keep the
  // grid of the block before), as runs; runs shorter than kRunBytesMin join
  // the run before.
  std::vector<std::pair<uint64_t, Grid>> GridRuns(uint64_t begin, uint64_t end, int64_t diagonal,
                                                  unsigned width) const {
    std::vector<std::pair<uint64_t, Grid>> blocks;  // (start, grid) where the grid changes
    for (uint64_t b = begin; b < end; b += kBlockBytes) {
      const uint64_t e = std::min(end, b + kBlockBytes);
      Grid best = blocks.empty() ? Grid{width, 0} : blocks.back().second;
      double best_cost = GridCost(source_, target_, diagonal, b, e, best);
      for (unsigned phase = 0; phase < width; ++phase) {
        const double cost = GridCost(source_, target_, diagonal, b, e, Grid{width, phase});
        if (cost < best_cost) best_cost = cost, best = Grid{width, phase};
      }
      if (blocks.empty() || !(best == blocks.back().second)) blocks.emplace_back(b, best);
    }
    std::vector<std::pair<uint64_t, Grid>> runs;
    for (size_t i = 0; i < blocks.size(); ++i) {
      const uint64_t len = (i + 1 < blocks.size() ? blocks[i + 1].first : end) - blocks[i].first;
      if (!runs.empty() && (len < kRunBytesMin || blocks[i].second == runs.back().second)) continue;
      runs.push_back(blocks[i]);
    }
    return runs;
  }

  // Differences of [begin, end) against the source at `diagonal` in elements
  // of `width`, one operation per run of a phase. A run starts at its phase;
  // bytes before the first grid position go in a 1-byte-element operation.
  Result<Bytes> EncodeDiff(uint64_t begin, uint64_t end, int64_t diagonal, unsigned width, int level) {
    std::vector<std::pair<uint64_t, Grid>> runs = GridRuns(begin, end, diagonal, width);
    std::vector<std::pair<uint64_t, unsigned>> ops;  // (start, width)
    for (const auto& [start, grid] : runs) {
      const uint64_t aligned = start + (grid.phase + grid.width - start % grid.width) % grid.width;
      if (ops.empty() && aligned != begin) ops.emplace_back(begin, 1);
      if (aligned < end) ops.emplace_back(aligned, grid.width);
    }
    if (ops.empty()) ops.emplace_back(begin, 1);
    Bytes out;
    for (size_t i = 0; i < ops.size(); ++i) {
      const uint64_t b = ops[i].first, e = i + 1 < ops.size() ? ops[i + 1].first : end;
      if (b >= e) continue;
      const unsigned op_width = ops[i].second;
      out.push_back(static_cast<uint8_t>(Op::kDiff));
      out.push_back(static_cast<uint8_t>(op_width));
      const uint64_t s = static_cast<uint64_t>(static_cast<int64_t>(b) + diagonal);
      delta_format::PutVarint(out, source_base_ + s);
      delta_format::PutVarint(out, e - b);
      planes_.resize(e - b);
      delta_format::DiffToPlanes(source_.subspan(s, e - b), target_.subspan(b, e - b), op_width, planes_);
      MERIDIAN_RETURN_IF_ERROR(AppendFrame(out, planes_, level, {}, true));
    }
    return out;
  }

  // The candidate diagonal whose differences look cheapest on a sparse sample of blocks.
  std::optional<int64_t> ChooseDiagonal(const Segment& seg) const {
    std::optional<int64_t> best;
    double best_cost = 0;
    for (int64_t d : seg.diagonals) {
      if (static_cast<int64_t>(seg.begin) + d < 0 || static_cast<int64_t>(seg.end) + d > static_cast<int64_t>(source_.size())) {
        continue;
      }
      double cost = 0;
      const uint64_t stride = kBlockBytes * 16;
      for (uint64_t b = seg.begin; b < seg.end; b += stride) {
        const uint64_t e = std::min(seg.end, b + kBlockBytes);
        double block_best = 8;
        for (unsigned width : kWidths) {
          for (unsigned phase = 0; phase < width; ++phase) {
            block_best = std::min(block_best, GridCost(source_, target_, d, b, e, Grid{width, phase}));
          }
        }
        cost += block_best;
      }
      if (!best || cost < best_cost) best = d, best_cost = cost;
    }
    return best;
  }

  ByteSpan source_;
  ByteSpan target_;
  uint64_t source_base_;  // where source_ and target_ start in the whole versions
  uint64_t target_base_;
  const DeltaOptions& options_;
  std::function<const SourceHashIndex&()> patch_index_;
  ZSTD_CCtx* cctx_;
  Bytes planes_;
  Bytes frame_;
  Bytes prefix_;
  bool used_lzma_ = false;
  bool used_patch_ = false;
};

// Splits the target between copies (matches of copy_bytes_min or more) and
// segments of at most segment_bytes, each with its candidate diagonals and
// prefix window. `items` holds, in target order, a copy (`copy`) or a segment.
struct Item {
  std::optional<Match> copy;
  Segment segment;
};

Bytes CopyOp(const Window& w, const Match& copy) {
  Bytes op = {static_cast<uint8_t>(Op::kCopy)};
  delta_format::PutVarint(op, w.source_base + copy.source_pos);
  delta_format::PutVarint(op, copy.length);
  return op;
}

// The weighted median of (value, weight) pairs; `values` is not empty.
template <typename T>
T WeightedMedian(std::vector<std::pair<T, uint64_t>> values) {
  std::sort(values.begin(), values.end());
  uint64_t total = 0, acc = 0;
  for (const auto& [value, weight] : values) total += weight;
  for (const auto& [value, weight] : values) {
    acc += weight;
    if (acc * 2 >= total) return value;
  }
  return values.back().first;
}

// The range [begin, end) within [0, end_max), at most `limit` long, reaching
// `reach` bytes either side of the weighted median of `spans` (position, weight).
std::pair<uint64_t, uint64_t> WindowAround(std::vector<std::pair<uint64_t, uint64_t>> spans, uint64_t reach,
                                           uint64_t end_max, uint64_t limit) {
  const uint64_t median = std::min(WeightedMedian(std::move(spans)), end_max);
  uint64_t lo = median > reach ? median - reach : 0;
  uint64_t hi = std::min(end_max, median + reach);
  if (hi - lo > limit) {
    lo = median - std::min(median - lo, limit / 2);
    hi = std::min(end_max, lo + limit);
    lo = hi - limit;
  }
  return {lo, hi};
}

std::vector<Item> Plan(const Window& w, const std::vector<Match>& matches, const AnchorIndex& target_index,
                       const std::vector<uint64_t>& target_anchors, const DeltaOptions& o) {
  const ByteSpan source = w.source, target = w.target;
  std::vector<Match> copies;
  for (const Match& m : matches) {
    if (m.length >= o.copy_bytes_min) copies.push_back(m);
  }
  // Parts of at most segment_bytes, and of at most a thread's share of all
  // the gaps' bytes: one large gap cut in segment_bytes alone leaves the
  // other threads idle (a minor release of esbuild: a 6.4 MB gap of 9.7 MB
  // took 11 of the 11.4 s to make on one thread).
  uint64_t gap_bytes = target.size();  // less the copies, which are sorted and do not overlap
  for (const Match& copy : copies) gap_bytes -= copy.length;
  // In rounds of a part per thread: three parts on two threads take two
  // parts' time, four shorter ones one and a half (ONNX Runtime's 19.5 MB
  // jsep build: 26.4 s to make became 22.0 s).
  const auto threads = static_cast<uint64_t>(o.threads);
  const uint64_t rounds = std::max<uint64_t>(1, (gap_bytes + threads * o.segment_bytes - 1) / (threads * o.segment_bytes));
  const uint64_t part_bytes_max = std::clamp<uint64_t>((gap_bytes + threads * rounds - 1) / (threads * rounds),
                                                       std::min(kSplitBytesMin, o.segment_bytes), o.segment_bytes);
  std::vector<Item> items;
  size_t hint = 0;  // first match not wholly before the segment being planned
  auto add_gap = [&](uint64_t begin, uint64_t end, size_t copy_index) {
    // Equal parts: a short last part would compress with little context
    // (measured: code deltas 2-3.5 % smaller).
    const uint64_t parts = (end - begin + part_bytes_max - 1) / part_bytes_max;
    for (uint64_t part = 0; part < parts; ++part) {
      Segment seg;
      seg.begin = begin + (end - begin) * part / parts;
      seg.end = begin + (end - begin) * (part + 1) / parts;
      // Diagonals: of the copies around the gap, of the short matches covering
      // most of the segment, and the window's.
      if (copy_index > 0) seg.diagonals.push_back(copies[copy_index - 1].diagonal());
      if (copy_index < copies.size()) seg.diagonals.push_back(copies[copy_index].diagonal());
      seg.diagonals.push_back(w.diagonal);
      while (hint < matches.size() && matches[hint].target_pos + matches[hint].length <= seg.begin) ++hint;
      std::map<int64_t, uint64_t> bytes_by_diagonal;
      std::vector<std::pair<uint64_t, uint64_t>> spans;  // source position, bytes
      for (size_t i = hint; i < matches.size() && matches[i].target_pos < seg.end; ++i) {
        bytes_by_diagonal[matches[i].diagonal()] += matches[i].length;
        spans.emplace_back(matches[i].source_pos, matches[i].length);
      }
      if (!bytes_by_diagonal.empty()) {
        auto top = std::max_element(bytes_by_diagonal.begin(), bytes_by_diagonal.end(),
                                    [](const auto& a, const auto& b2) { return a.second < b2.second; });
        seg.diagonals.push_back(top->first);
      }
      std::sort(seg.diagonals.begin(), seg.diagonals.end());
      seg.diagonals.erase(std::unique(seg.diagonals.begin(), seg.diagonals.end()), seg.diagonals.end());
      // Prefix: the earlier target where the segment's anchors that no match
      // covers recur (the files of one release resemble each other), then the
      // source where the hints point, else the first diagonal's image of the
      // segment.
      const uint64_t len = seg.end - seg.begin;
      std::vector<std::pair<uint64_t, uint64_t>> earlier;  // target position, weight
      size_t anchors = 0, m = hint;
      for (auto it = std::lower_bound(target_anchors.begin(), target_anchors.end(), seg.begin);
           it != target_anchors.end() && *it < seg.end; ++it) {
        ++anchors;
        while (m < matches.size() && matches[m].target_pos + matches[m].length <= *it) ++m;
        if (m < matches.size() && matches[m].target_pos <= *it) continue;  // the source has it
        std::optional<uint64_t> p = target_index.Find(AnchorKey(target.data() + *it));
        if (p && *p + kAnchorKeyBytes <= seg.begin) earlier.emplace_back(*p, 1);
      }
      if (earlier.size() >= std::max(kTargetHintsMin, anchors / kTargetHintsShare)) {
        std::tie(seg.target_window_begin, seg.target_window_end) =
            WindowAround(std::move(earlier), len / 2, seg.begin, std::min(len, o.prefix_bytes_max / 2));
      }
      if (spans.empty()) {
        const int64_t middle = static_cast<int64_t>(seg.begin + len / 2) + seg.diagonals.front();
        spans.emplace_back(static_cast<uint64_t>(std::max<int64_t>(0, middle)), 1);
      }
      std::tie(seg.window_begin, seg.window_end) =
          WindowAround(std::move(spans), len, source.size(),
                       o.prefix_bytes_max - (seg.target_window_end - seg.target_window_begin));
      items.push_back({std::nullopt, std::move(seg)});
    }
  };
  uint64_t pos = 0;
  for (size_t i = 0; i < copies.size(); ++i) {
    add_gap(pos, copies[i].target_pos, i);
    items.push_back({copies[i], {}});
    pos = copies[i].target_pos + copies[i].length;
  }
  add_gap(pos, target.size(), copies.size());
  return items;
}

using Writer = std::function<Status(ByteSpan)>;

struct WindowResult {
  uint16_t format_version = 1;           // that its operations need
  std::optional<int64_t> last_diagonal;  // of its last copy, in the whole versions
};

// Encodes `w.target` against `w.source`, writing its operations in order.
Result<WindowResult> EncodeWindow(const Window& w, const DeltaOptions& options, unsigned patch_slot_bits_max,
                                  const Writer& write) {
  std::vector<uint64_t> source_anchors, target_anchors;
  {
    std::jthread side([&] { target_anchors = AnchorPositions(w.target); });
    source_anchors = AnchorPositions(w.source);
  }
  std::vector<Match> matches;
  {
    AnchorIndex index(w.source, source_anchors);
    matches = FindMatches(w.source, w.target, index, target_anchors);
  }
  const std::vector<Item> items =
      Plan(w, matches, AnchorIndex(w.target, target_anchors), target_anchors, options);

  // Largest work first (segment and prefix bytes), so that the threads end
  // close together.
  std::vector<size_t> order;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].copy) order.push_back(i);
  }
  auto work_bytes = [&](size_t i) {
    const Segment& seg = items[i].segment;
    return (seg.end - seg.begin) + (seg.window_end - seg.window_begin) + (seg.target_window_end - seg.target_window_begin);
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return work_bytes(a) > work_bytes(b); });
  if (options.on_progress) {
    for (const Item& item : items) {
      if (item.copy) options.on_progress(item.copy->length);
    }
  }
  std::vector<Result<Bytes>> encoded(items.size(), Result<Bytes>(Bytes{}));
  std::atomic<size_t> next{0};
  std::atomic<uint16_t> format_version{1};
  // Approximate matches (PATCH) go with LZMA literals: the fast zstd mode
  // makes version 1 deltas.
  std::once_flag index_once;
  std::optional<SourceHashIndex> index;
  std::function<const SourceHashIndex&()> patch_index;
  if (options.literal_codec == LiteralCodec::kLzma && SourceHashIndex::Indexable(w.source)) {
    patch_index = [&]() -> const SourceHashIndex& {
      std::call_once(index_once, [&] { index.emplace(w.source, patch_slot_bits_max); });
      return *index;
    };
  }
  auto work = [&] {
    SegmentEncoder encoder(w, options, patch_index);
    while (true) {
      const size_t k = next.fetch_add(1);
      if (k >= order.size()) break;
      const Segment& segment = items[order[k]].segment;
      encoded[order[k]] = encoder.Encode(segment);
      if (options.on_progress) options.on_progress(segment.end - segment.begin);
    }
    for (uint16_t v = format_version; v < encoder.format_version();) format_version.compare_exchange_weak(v, encoder.format_version());
  };
  {
    std::vector<std::jthread> workers;
    for (int t = 1; t < options.threads; ++t) workers.emplace_back(work);
    work();
  }

  WindowResult result;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].copy) {
      result.last_diagonal =
          static_cast<int64_t>(w.source_base) - static_cast<int64_t>(w.target_base) + items[i].copy->diagonal();
      MERIDIAN_RETURN_IF_ERROR(write(CopyOp(w, *items[i].copy)));
    } else {
      if (!encoded[i].ok()) return encoded[i].status();
      MERIDIAN_RETURN_IF_ERROR(write(*encoded[i]));
      Bytes().swap(*encoded[i]);
    }
  }
  result.format_version = format_version;
  return result;
}

// ---------------------------------------------------------------------------
// Encoding within a memory budget (DeltaOptions::memory_bytes_max).
//
// A pair whose bytes, indexes and compression contexts fit the budget is one
// window, as above. A larger pair is encoded a target window at a time, in
// order, each against the source window where its content lies: coarse
// anchors of the whole source (content-defined chunks of 64 KiB or more, a
// few bytes each) say where the target window's chunks occur in the source,
// and the source window is centred on their weighted median alignment (or on
// the alignment of the window before, when none occurs: new content, or
// weights that drifted everywhere). The estimates below are upper bounds of
// what each part allocates; tests check the whole stays within the budget.

// Per encoder thread: LZMA's binary-tree match finder takes up to 13.5 × its
// dictionary (prefix + segment; lzma_raw_encoder_memusage says 12.2-13.3 ×
// from 1 to 24 MiB); zstd's tables at level 18 about 6 × the segment
// (numeric operations), or with the zstd literal codec at level 19 about
// 3.5 × prefix and segment; plus the prefix, segment-sized buffers and the
// output.
uint64_t ThreadBytes(const DeltaOptions& o) {
  const uint64_t span = o.prefix_bytes_max + o.segment_bytes;
  const uint64_t contexts = o.literal_codec == LiteralCodec::kLzma ? span * 27 / 2 + 6 * o.segment_bytes
                                                                   : span * 7 / 2 + 6 * o.segment_bytes;
  return contexts + o.prefix_bytes_max + 4 * o.segment_bytes;
}

// Per window: the bytes (when read through a reader), the anchors (an 8-byte
// position per ~256 bytes, their indexes up to 64 bytes per anchor), the
// encoded operations held until written (at most about the target), and the
// PATCH table.
uint64_t WindowBytes(uint64_t source_bytes, uint64_t target_bytes, unsigned patch_slot_bits_max) {
  return (source_bytes + target_bytes) * 13 / 10 + target_bytes +
         SourceHashIndex::MemoryBytes(source_bytes, patch_slot_bits_max);
}

// The shortest prefix + segment a thread gets while there are other threads to cut.
constexpr uint64_t kSpanBytesMin = 3ull << 20;

struct WindowPlan {
  DeltaOptions options;  // threads, segment and prefix sizes within the budget
  uint64_t target_window = 0;
  uint64_t source_window = 0;
  unsigned patch_slot_bits_max = SourceHashIndex::kSlotBitsMax;
  ChunkerParams coarse;  // anchors locating target windows in the source
};

WindowPlan ChooseWindows(uint64_t source_size, uint64_t target_size, const DeltaOptions& o) {
  WindowPlan p{o, target_size, source_size, SourceHashIndex::kSlotBitsMax, ChunkerParams{}};
  const uint64_t budget = o.memory_bytes_max;
  // What the caller holds besides (a piece of the delta, a reader's chunk).
  constexpr uint64_t kCallerBytes = 8ull << 20;
  if (o.threads * ThreadBytes(o) + WindowBytes(source_size, target_size, p.patch_slot_bits_max) + kCallerBytes <=
      budget) {
    return p;
  }
  // Windows add the coarse index (at most budget / 32, below).
  const uint64_t reserve = budget / 16;
  // Contexts get at most half the budget: shorter segments and prefixes (a
  // third of the span is segment, as by default), and fewer threads when
  // that would make them shorter than kSpanBytesMin.
  const uint64_t span_default = o.prefix_bytes_max + o.segment_bytes;
  for (;; --p.options.threads) {
    const uint64_t thread_share = budget / 2 / static_cast<uint64_t>(p.options.threads);
    const uint64_t span =
        thread_share >= ThreadBytes(o) ? span_default : span_default * thread_share / ThreadBytes(o);
    p.options.segment_bytes = std::min(o.segment_bytes, std::max<uint64_t>(span / 3, 1));
    p.options.prefix_bytes_max = std::min(o.prefix_bytes_max, span - p.options.segment_bytes);
    if (span >= kSpanBytesMin || p.options.threads == 1) break;
  }
  // Windows get the rest: the source window twice the target's (room for
  // drift), the PATCH table at most the target window.
  const uint64_t rest = budget - reserve - static_cast<uint64_t>(p.options.threads) * ThreadBytes(p.options);
  p.target_window = std::max<uint64_t>(rest / 6, 1);
  p.source_window = 2 * p.target_window;
  p.patch_slot_bits_max =
      static_cast<unsigned>(std::bit_width(std::max<uint64_t>(p.target_window / sizeof(uint32_t), 2))) - 1;
  // The coarse index has room for a chunk per min_bytes, 32 to 64 bytes each:
  // at most budget / 32.
  while (source_size / p.coarse.min_bytes > budget / 2048) {
    p.coarse.min_bytes *= 2, p.coarse.avg_bytes *= 2, p.coarse.max_bytes *= 2;
  }
  return p;
}

// A version being encoded: bytes in memory, or a reader windows are copied
// from. Those are hashed as they are read (the encoder reads each version
// from start to end once) to check the digest the caller gave.
class Input {
 public:
  explicit Input(ByteSpan bytes) : bytes_(bytes), size_(bytes.size()) {}
  Input(SourceReader& reader, const Digest& digest) : reader_(&reader), digest_(digest), size_(reader.size()) {}

  uint64_t size() const { return size_; }

  // The bytes at [offset, offset + length), valid until the next call.
  Result<ByteSpan> Read(uint64_t offset, uint64_t length) {
    if (reader_ == nullptr) return bytes_.subspan(offset, length);
    buffer_.resize(length);
    MERIDIAN_RETURN_IF_ERROR(reader_->Read(offset, buffer_));
    if (offset <= hashed_ && hashed_ < offset + length) {
      hasher_.Update(ByteSpan(buffer_).subspan(hashed_ - offset));
      hashed_ = offset + length;
    }
    return ByteSpan(buffer_);
  }

  // Corruption when what was read does not hash to the digest given.
  Status CheckDigest(const char* what) {
    if (reader_ == nullptr) return Status::Ok();
    if (hashed_ != size_ || hasher_.Finish() != digest_) {
      return Status::Corruption(std::string(what) + "'s bytes do not match its digest " + digest_.ToString());
    }
    return Status::Ok();
  }

 private:
  ByteSpan bytes_;
  SourceReader* reader_ = nullptr;
  Digest digest_;
  uint64_t size_;
  Bytes buffer_;
  Sha256 hasher_;
  uint64_t hashed_ = 0;
};

// The coarse anchors of the whole source, read once from start to end.
Result<AnchorIndex> IndexCoarsely(Input& source, const ChunkerParams& params) {
  AnchorIndex index(static_cast<size_t>(source.size() / params.min_bytes) + 1);
  const uint64_t piece = 16 * params.max_bytes;
  for (uint64_t pos = 0; pos < source.size();) {
    const uint64_t length = std::min(piece, source.size() - pos);
    Result<ByteSpan> bytes = source.Read(pos, length);
    if (!bytes.ok()) return bytes.status();
    const bool final = pos + length == source.size();
    size_t at = 0;
    while (at < bytes->size()) {
      const size_t n = FindChunkEnd(bytes->subspan(at), final, params);
      if (n == 0) break;
      if (at + kAnchorKeyBytes <= bytes->size()) index.Insert(AnchorKey(bytes->data() + at), pos + at);
      at += n;
    }
    pos += at;
  }
  return index;
}

// The next target window: the longest start of `target` (at `target_base`)
// whose coarse chunks found in the source keep one alignment (source position
// − target position, within `tolerance`: small edits move it a little), at
// least a quarter of it (a window per short moved piece would re-read the
// source too often); and the weighted median of those alignments, or
// `otherwise` when none is found.
struct TargetWindow {
  uint64_t length;
  int64_t diagonal;
};
TargetWindow NextWindow(ByteSpan target, uint64_t target_base, const AnchorIndex& coarse, const ChunkerParams& params,
                        int64_t tolerance, int64_t otherwise) {
  struct Hit {
    uint64_t at;
    int64_t diagonal;
    uint64_t bytes;
  };
  std::vector<Hit> hits;
  for (size_t at = 0; at + kAnchorKeyBytes <= target.size();) {
    const size_t n = FindChunkEnd(target.subspan(at), /*final=*/true, params);
    if (std::optional<uint64_t> s = coarse.Find(AnchorKey(target.data() + at))) {
      hits.push_back({at, static_cast<int64_t>(*s) - static_cast<int64_t>(target_base + at), n});
    }
    at += n;
  }
  auto far = [&](int64_t a, int64_t b) { return a - b > tolerance || b - a > tolerance; };
  uint64_t length = target.size();
  size_t kept = hits.size();
  for (size_t i = 1; i + 1 < hits.size(); ++i) {
    // A cut where two chunks in a row agree on another alignment (one alone
    // may be a repeated string, zeros).
    if (hits[i].at >= target.size() / 4 && far(hits[i].diagonal, hits[0].diagonal) &&
        !far(hits[i].diagonal, hits[i + 1].diagonal)) {
      length = hits[i].at;
      kept = i;
      break;
    }
  }
  std::vector<std::pair<int64_t, uint64_t>> diagonals;
  for (size_t i = 0; i < kept; ++i) diagonals.emplace_back(hits[i].diagonal, hits[i].bytes);
  return {length, diagonals.empty() ? otherwise : WeightedMedian(std::move(diagonals))};
}

// Encodes `source` → `target` within options.memory_bytes_max, writing the
// operations (after the header, which the caller writes) and the end.
// Returns the format version the operations need.
Result<uint16_t> EncodeInWindows(Input& source, Input& target, const DeltaOptions& options, const Writer& write) {
  const WindowPlan plan = ChooseWindows(source.size(), target.size(), options);
  uint16_t version = 1;
  if (plan.target_window >= target.size() && plan.source_window >= source.size()) {
    Result<ByteSpan> source_bytes = source.Read(0, source.size());
    if (!source_bytes.ok()) return source_bytes.status();
    Result<ByteSpan> target_bytes = target.Read(0, target.size());
    if (!target_bytes.ok()) return target_bytes.status();
    Result<WindowResult> r =
        EncodeWindow({*source_bytes, 0, *target_bytes, 0}, plan.options, plan.patch_slot_bits_max, write);
    if (!r.ok()) return r.status();
    version = r->format_version;
  } else {
    Result<AnchorIndex> coarse = IndexCoarsely(source, plan.coarse);
    if (!coarse.ok()) return coarse.status();
    int64_t diagonal = 0;
    for (uint64_t begin = 0; begin < target.size();) {
      Result<ByteSpan> target_bytes = target.Read(begin, std::min(plan.target_window, target.size() - begin));
      if (!target_bytes.ok()) return target_bytes.status();
      const TargetWindow next = NextWindow(*target_bytes, begin, *coarse, plan.coarse,
                                           static_cast<int64_t>(plan.source_window / 4), diagonal);
      *target_bytes = target_bytes->first(next.length);
      diagonal = next.diagonal;
      // The source window, centred on the target window's image, inside the source.
      const int64_t middle = static_cast<int64_t>(begin + target_bytes->size() / 2) + diagonal;
      const uint64_t length = std::min(plan.source_window, source.size());
      const uint64_t start = static_cast<uint64_t>(std::clamp<int64_t>(
          middle - static_cast<int64_t>(length / 2), 0, static_cast<int64_t>(source.size() - length)));
      Result<ByteSpan> source_bytes = source.Read(start, length);
      if (!source_bytes.ok()) return source_bytes.status();
      const Window window{*source_bytes, start, *target_bytes, begin,
                          diagonal - (static_cast<int64_t>(start) - static_cast<int64_t>(begin))};
      Result<WindowResult> r = EncodeWindow(window, plan.options, plan.patch_slot_bits_max, write);
      if (!r.ok()) return r.status();
      version = std::max(version, r->format_version);
      // Where the next window's content is, unless its coarse chunks say otherwise.
      if (r->last_diagonal) diagonal = *r->last_diagonal;
      begin += target_bytes->size();
    }
  }
  MERIDIAN_RETURN_IF_ERROR(source.CheckDigest("source"));
  MERIDIAN_RETURN_IF_ERROR(target.CheckDigest("target"));
  const uint8_t end[] = {static_cast<uint8_t>(Op::kEnd)};
  MERIDIAN_RETURN_IF_ERROR(write(end));
  return version;
}

Status CheckOptions(const DeltaOptions& options) {
  if (options.threads < 1 || options.segment_bytes == 0 || options.segment_bytes > kDeltaOpTargetBytesMax ||
      options.prefix_bytes_max > kDeltaPrefixBytesMax || options.copy_bytes_min < kAnchorKeyBytes ||
      options.lzma_preset < 0 || options.lzma_preset > 9 || options.memory_bytes_max < kDeltaEncoderMemoryMin) {
    return Status::InvalidArgument("delta options out of range");
  }
  return Status::Ok();
}

}  // namespace

Result<Bytes> EncodeDelta(ByteSpan source, ByteSpan target, const DeltaOptions& options) {
  MERIDIAN_RETURN_IF_ERROR(CheckOptions(options));
  DeltaHeader header;
  header.source_size = source.size();
  header.target_size = target.size();
  {
    std::jthread side([&] { header.target_digest = Digest::Of(target); });
    header.source_digest = Digest::Of(source);
  }
  Bytes out;
  delta_format::PutHeader(out, header);
  Input source_input(source), target_input(target);
  Result<uint16_t> version = EncodeInWindows(source_input, target_input, options, [&](ByteSpan bytes) {
    out.insert(out.end(), bytes.begin(), bytes.end());
    return Status::Ok();
  });
  if (!version.ok()) return version.status();
  // The lowest version that holds the operations: older decoders read it.
  delta_format::SetFormatVersion(out, *version);
  return out;
}

Result<uint16_t> EncodeDelta(const DeltaInput& source, const DeltaInput& target, const DeltaOptions& options,
                             const std::function<Status(ByteSpan)>& write) {
  MERIDIAN_RETURN_IF_ERROR(CheckOptions(options));
  DeltaHeader header;
  header.format_version = options.literal_codec == LiteralCodec::kLzma ? kDeltaFormatVersion : 1;
  header.source_size = source.reader.size();
  header.source_digest = source.digest;
  header.target_size = target.reader.size();
  header.target_digest = target.digest;
  Bytes header_bytes;
  delta_format::PutHeader(header_bytes, header);
  MERIDIAN_RETURN_IF_ERROR(write(header_bytes));
  Input source_input(source.reader, source.digest), target_input(target.reader, target.digest);
  return EncodeInWindows(source_input, target_input, options, write);
}

}  // namespace meridian
