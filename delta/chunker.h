// Content-defined chunking (FastCDC with normalised chunking over a gear hash).
// Pure: the caller owns the bytes and the loop; the chunker only says where the
// chunk that starts at the front of a buffer ends. Because boundaries depend
// on the bytes around them and not on offsets, an insertion or change in the
// middle of a file changes only the chunks that touch it.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "base/bytes.h"

namespace meridian {

struct ChunkerParams {
  size_t min_bytes = 16 * 1024;   // no boundary before this
  size_t avg_bytes = 64 * 1024;   // a power of two; the distribution centres here
  size_t max_bytes = 256 * 1024;  // forced boundary
};

// Returns the length of the chunk that begins at data[0].
// - a content-defined boundary, or params.max_bytes when none is found before it;
// - 0 when `data` is shorter than max_bytes, holds no boundary and more input
//   may follow (`final` is false): call again with more bytes;
// - data.size() when `final` and no boundary is found (the last chunk).
size_t FindChunkEnd(ByteSpan data, bool final, const ChunkerParams& params = {});

// Cuts a whole buffer; returns the chunk lengths in order (they sum to data.size()).
std::vector<size_t> ChunkLengths(ByteSpan data, const ChunkerParams& params = {});

// Cutting a large buffer on several threads: the rolling hash depends on the
// last 64 bytes only, so the positions where a boundary may fall can be found
// in disjoint ranges at once, and the cut itself is then a quick serial pass
// over them. The chunks are exactly those FindChunkEnd cuts.
struct CutCandidate {
  size_t at;    // index of the byte a chunk would end with
  bool strict;  // passes the test before the average size too
};
// The candidates in data[from, to), in order (reading up to 63 bytes before `from`).
std::vector<CutCandidate> ScanCutCandidates(ByteSpan data, size_t from, size_t to, const ChunkerParams& params = {});
// The lengths FindChunkEnd gives cutting `data` from the front, one chunk
// after the other, given the candidates of all of `data` in order. Without
// `final` the uncut tail (no boundary, shorter than max_bytes) is left out.
std::vector<size_t> CutChunks(ByteSpan data, bool final, std::span<const CutCandidate> candidates,
                              const ChunkerParams& params = {});

}  // namespace meridian
