// Approximate matching, after bsdiff (Colin Percival, "Naive differences of
// executable code"): the target is cut into entries, each a run that follows
// the source byte for byte except here and there (its byte-wise difference
// against the source is mostly zeros), then bytes with no counterpart. A
// small fix in compiled code moves every later address by a few bytes; exact
// matching (LZ) breaks at each moved address, approximate matching keeps the
// alignment and leaves the moved addresses as small, repetitive differences
// for the compressor. Internal to the delta encoder (the PATCH operation).
#pragma once

#include <cstdint>
#include <vector>

#include "base/bytes.h"

namespace meridian {

// Where each 8-byte string of the source last occurs, in a table of at most
// 2^slot_bits_max slots (4 bytes each; 2^24, 64 MiB, unless memory is short):
// a one-candidate match finder, as good here as longer chains (measured: same
// size with 64 candidates). Sources of 4 GiB or more are not indexed
// (positions are 32-bit).
class SourceHashIndex {
 public:
  static constexpr unsigned kSlotBitsMax = 24;
  explicit SourceHashIndex(ByteSpan source, unsigned slot_bits_max = kSlotBitsMax);
  // The table's bytes for `source_bytes` of source.
  static uint64_t MemoryBytes(uint64_t source_bytes, unsigned slot_bits_max = kSlotBitsMax);
  static bool Indexable(ByteSpan source) { return source.size() < (uint64_t{1} << 32); }
  // The source position recorded for the 8 bytes at `p`, or UINT32_MAX.
  uint32_t Candidate(const uint8_t* p) const;

 private:
  unsigned bits_ = 0;
  std::vector<uint32_t> slots_;
};

// The entries of target[begin, end) against `source`, starting at source
// position `source_start` (≤ source.size()), in the PATCH operation's layout
// (docs/formats/delta.md): `control` holds per entry varint diff_length,
// varint extra_length, zigzag varint seek; `diff` the byte-wise differences
// (target − source mod 256) of every entry in order, `diff_source` the source
// byte each of them applies to, `extra` their unmatched bytes. Every
// difference reads inside the source.
struct ApproximateMatches {
  Bytes control;
  Bytes diff;
  Bytes diff_source;
  Bytes extra;
};
ApproximateMatches MatchApproximately(ByteSpan source, ByteSpan target, uint64_t begin, uint64_t end,
                                      uint64_t source_start, const SourceHashIndex& index);

}  // namespace meridian
