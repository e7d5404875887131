// Many chunks in one request body (POST /v1/chunks): a publish uploads its
// chunks a batch at a time, not a request per chunk, which over a long link
// costs a round trip each. A body is records, one after another to its end,
// each an index page's entry (the chunk's SHA-256, 32 raw bytes, then its
// size, 4 bytes little-endian, 1 … kChunkBytesMax) and then that many bytes
// of the chunk (docs/formats/manifest.md, "Chunk batches"). Pure: what the
// digests name is checked by the store that takes the chunks.
#pragma once

#include <cstdint>
#include <vector>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/status.h"

namespace meridian {

// The largest body: records are added while they fit.
inline constexpr uint64_t kChunkBatchBytesMax = 16u << 20;

// Appends one record to `body`.
void AppendBatchedChunk(Bytes& body, const Digest& digest, ByteSpan chunk);

struct BatchedChunk {
  Digest digest;
  ByteSpan bytes;  // within the parsed body
};

// The records of `body`, at least one: InvalidArgument naming the offset of
// the first that is cut short or whose size is 0 or over kChunkBytesMax.
Result<std::vector<BatchedChunk>> ParseChunkBatch(ByteSpan body);

}  // namespace meridian
