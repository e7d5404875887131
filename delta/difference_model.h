// The differences of approximate matches (PATCH entries), coded with the
// source bytes they apply to as context: a context-mixing model (after PAQ /
// lpaq: several adaptive predictions per bit, mixed by a small online-trained
// network) driving a binary range coder (LZMA's).
//
// Why: on a patch release of compiled code the differences are zeros except
// at the operands of instructions whose targets moved. Whether a byte is such
// an operand is told by the source bytes just before it (the opcode), which a
// general-purpose compressor of the differences alone never sees: on the
// ONNX Runtime 1.19.0 → 1.19.2 WebAssembly file the 11 MB of differences take
// 88 KB with LZMA, 77 KB with bzip2, 37 KB here.
//
// The encoder and the decoder run the same model (one template) and must
// agree bit for bit, so it is integer arithmetic only. Internal to the delta
// encoder and decoder (the PATCH_MODELED operation, docs/formats/delta.md).
#pragma once

#include <cstdint>
#include <memory>

#include "base/bytes.h"

namespace meridian {

// The model of each delta format version that has one: the version of a
// delta says which one coded its differences.
enum class DifferenceModel : uint8_t {
  kMixed,  // version 4: every difference's zero flag mixed from five predictions
  // Version 5: where one counter (of the source byte, the one before and how
  // far back the last non-zero difference was) has seen its context a few
  // times and puts a non-zero difference below 1/64, it alone codes the zero
  // flag. Most differences of a patch release are such zeros: deltas that
  // are mostly differences applied in 0.59–0.88 of the time, at 0.96–1.008 ×
  // the size (bench/delta/RESULTS.md, "Format version 5").
  kConfidentZeros,
};
inline constexpr DifferenceModel kDifferenceModelLatest = DifferenceModel::kConfidentZeros;
// The model a delta of `format_version` (4 or later) codes its differences with.
constexpr DifferenceModel DifferenceModelOf(uint16_t format_version) {
  return format_version >= 5 ? DifferenceModel::kConfidentZeros : DifferenceModel::kMixed;
}

// Bytes a DifferenceDecoder or the encoder's model holds (its tables).
inline constexpr uint64_t kDifferenceModelBytes = ((9ull << 16) + (1ull << 18)) * 4;
// The shortest coded stream (that of no differences): the range coder's flush.
inline constexpr uint64_t kDifferenceStreamBytesMin = 5;

// The coded form of `differences` (target − source mod 256, byte for byte)
// where `source` holds the source byte each difference applies to.
Bytes EncodeDifferences(ByteSpan source, ByteSpan differences, DifferenceModel model);

// Decodes one coded stream in pieces: each call turns the next
// `source_and_target.size()` source bytes into target bytes, in place.
class DifferenceDecoder {
 public:
  DifferenceDecoder();
  ~DifferenceDecoder();
  DifferenceDecoder(const DifferenceDecoder&) = delete;
  DifferenceDecoder& operator=(const DifferenceDecoder&) = delete;

  // Starts on a new stream coded by `model` (`coded` must outlive the calls below).
  void Reset(ByteSpan coded, DifferenceModel model);
  // False when the stream ended before these bytes (Corruption for the caller).
  bool Apply(std::span<uint8_t> source_and_target);
  // True when the stream was read exactly to its end, and ended as the
  // encoder ends it.
  bool AtEnd() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace meridian
