// Chunk batches: records of an index page's entry and the chunk's bytes.
#include "manifest/chunk_batch.h"

#include <algorithm>

#include <fmt/format.h>

#include "manifest/chunk_pages.h"
#include "manifest/manifest.h"

namespace meridian {

void AppendBatchedChunk(Bytes& body, const Digest& digest, ByteSpan chunk) {
  AppendChunkPageEntry(body, {digest, chunk.size()});
  body.insert(body.end(), chunk.begin(), chunk.end());
}

Result<std::vector<BatchedChunk>> ParseChunkBatch(ByteSpan body) {
  if (body.empty()) return Status::InvalidArgument("a chunk batch holds at least one chunk");
  std::vector<BatchedChunk> out;
  for (size_t at = 0; at < body.size();) {
    if (body.size() - at < kChunkPageEntryBytes) {
      return Status::InvalidArgument(fmt::format("chunk batch: the record at byte {} is cut short", at));
    }
    const ChunkRef entry = ChunkPageEntry(body.subspan(at), 0);
    if (entry.size == 0 || entry.size > kChunkBytesMax) {
      return Status::InvalidArgument(
          fmt::format("chunk batch: the record at byte {} says {} bytes (1 … {})", at, entry.size, kChunkBytesMax));
    }
    if (body.size() - at - kChunkPageEntryBytes < entry.size) {
      return Status::InvalidArgument(fmt::format("chunk batch: the record at byte {} is cut short", at));
    }
    out.push_back({entry.digest, body.subspan(at + kChunkPageEntryBytes, entry.size)});
    at += kChunkPageEntryBytes + entry.size;
  }
  return out;
}

uint64_t NextChunkBatchBytes(uint64_t limit, uint64_t sent_bytes, double seconds) {
  double fits = static_cast<double>(kChunkBatchBytesMax);
  if (seconds > 0) fits = static_cast<double>(sent_bytes) / seconds * kChunkBatchSeconds;
  fits = std::min(fits, 2.0 * static_cast<double>(limit));
  return std::clamp(static_cast<uint64_t>(std::min(fits, static_cast<double>(kChunkBatchBytesMax))), kChunkBatchBytesMin,
                    kChunkBatchBytesMax);
}

}  // namespace meridian
