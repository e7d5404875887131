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
// A sender's first batch, and the least it shrinks to.
inline constexpr uint64_t kChunkBatchBytesFirst = 1u << 20;
inline constexpr uint64_t kChunkBatchBytesMin = 64u << 10;
// How long a batch should take to send at the rate the last one went.
inline constexpr double kChunkBatchSeconds = 10;

// The size of the next batch after one of `sent_bytes` (at most `limit`, the
// size asked for) took `seconds`: what carries about kChunkBatchSeconds at
// that rate, at most twice `limit`, within [kChunkBatchBytesMin,
// kChunkBatchBytesMax]. So a fast link reaches the largest batches in a few,
// and a slow one (a publish over a 1 Mbit/s uplink) never sends a body that
// takes minutes: one the daemon would stop waiting for (body_timeout_ms).
uint64_t NextChunkBatchBytes(uint64_t limit, uint64_t sent_bytes, double seconds);

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
