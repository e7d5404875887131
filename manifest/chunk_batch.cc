// Chunk batches: records of an index page's entry and the chunk's bytes.
#include "manifest/chunk_batch.h"

#include <fmt/format.h>

#include "manifest/manifest.h"

namespace meridian {

void AppendBatchedChunk(Bytes& body, const Digest& digest, ByteSpan chunk) {
  body.insert(body.end(), digest.bytes().begin(), digest.bytes().end());
  for (int shift = 0; shift < 32; shift += 8) body.push_back(static_cast<uint8_t>(chunk.size() >> shift));
  body.insert(body.end(), chunk.begin(), chunk.end());
}

Result<std::vector<BatchedChunk>> ParseChunkBatch(ByteSpan body) {
  if (body.empty()) return Status::InvalidArgument("a chunk batch holds at least one chunk");
  std::vector<BatchedChunk> out;
  for (size_t at = 0; at < body.size();) {
    if (body.size() - at < kChunkPageEntryBytes) {
      return Status::InvalidArgument(fmt::format("chunk batch: the record at byte {} is cut short", at));
    }
    const ByteSpan entry = body.subspan(at, kChunkPageEntryBytes);
    uint64_t size = 0;
    for (size_t b = 0; b < 4; ++b) size |= uint64_t{entry[Digest::kSize + b]} << (8 * b);
    if (size == 0 || size > kChunkBytesMax) {
      return Status::InvalidArgument(
          fmt::format("chunk batch: the record at byte {} says {} bytes (1 … {})", at, size, kChunkBytesMax));
    }
    if (body.size() - at - kChunkPageEntryBytes < size) {
      return Status::InvalidArgument(fmt::format("chunk batch: the record at byte {} is cut short", at));
    }
    out.push_back({*Digest::FromBytes(entry.first(Digest::kSize)), body.subspan(at + kChunkPageEntryBytes, size)});
    at += kChunkPageEntryBytes + size;
  }
  return out;
}

}  // namespace meridian
