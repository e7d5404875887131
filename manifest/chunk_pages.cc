// Index pages of paged manifests.
#include "manifest/chunk_pages.h"

#include <algorithm>

#include <fmt/format.h>

namespace meridian {

std::vector<ChunkPage> MakeChunkPages(std::span<const ChunkRef> chunks, size_t chunks_per_page) {
  chunks_per_page = std::clamp<size_t>(chunks_per_page, 1, kChunkPageEntriesMax);
  std::vector<ChunkPage> pages;
  for (size_t begin = 0; begin < chunks.size(); begin += chunks_per_page) {
    std::span<const ChunkRef> part = chunks.subspan(begin, std::min(chunks_per_page, chunks.size() - begin));
    ChunkPage page;
    page.bytes.reserve(part.size() * kChunkPageEntryBytes);
    for (const ChunkRef& c : part) {
      AppendChunkPageEntry(page.bytes, c);
      page.ref.size += c.size;
    }
    page.ref.chunks = part.size();
    page.ref.digest = Digest::Of(page.bytes);
    pages.push_back(std::move(page));
  }
  return pages;
}

void AppendChunkPageEntry(Bytes& out, const ChunkRef& chunk) {
  out.insert(out.end(), chunk.digest.bytes().begin(), chunk.digest.bytes().end());
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<uint8_t>(chunk.size >> shift));
}

ChunkRef ChunkPageEntry(ByteSpan page, size_t i) {
  const ByteSpan entry = page.subspan(i * kChunkPageEntryBytes, kChunkPageEntryBytes);
  ChunkRef c;
  c.digest = *Digest::FromBytes(entry.first(Digest::kSize));
  for (size_t b = 0; b < 4; ++b) c.size |= uint64_t{entry[Digest::kSize + b]} << (8 * b);
  return c;
}

Status CheckChunkPage(const ChunkPageRef& ref, ByteSpan page) {
  const std::string what = "index page " + ref.digest.ToString();
  if (ref.chunks == 0 || ref.chunks > kChunkPageEntriesMax) {
    return Status::Corruption(fmt::format("{} is said to hold {} chunks (1 to {})", what, ref.chunks,
                                          kChunkPageEntriesMax));
  }
  if (page.size() != ref.page_bytes()) {
    return Status::Corruption(fmt::format("{} is {} bytes, the manifest says {}", what, page.size(), ref.page_bytes()));
  }
  if (Digest::Of(page) != ref.digest) return Status::Corruption(what + ": its bytes hash to another digest");
  uint64_t total = 0;
  for (size_t i = 0; i < ref.chunks; ++i) {
    const uint64_t size = ChunkPageEntry(page, i).size;
    if (size == 0 || size > kChunkBytesMax) {
      return Status::Corruption(fmt::format("{}: chunk {} has size {} (1 to {})", what, i, size, kChunkBytesMax));
    }
    total += size;
  }
  if (total != ref.size) {
    return Status::Corruption(fmt::format("{}: its chunks hold {} bytes, the manifest says {}", what, total, ref.size));
  }
  return Status::Ok();
}

Status ReadChunkPage(const ChunkPageRef& ref, ByteSpan page, std::vector<ChunkRef>* out) {
  MERIDIAN_RETURN_IF_ERROR(CheckChunkPage(ref, page));
  for (size_t i = 0; i < ref.chunks; ++i) out->push_back(ChunkPageEntry(page, i));
  return Status::Ok();
}

Status ResolveChunkPages(Manifest* m, const ReadPage& read_page) {
  if (m->resolved()) return Status::Ok();
  uint64_t entries = 0;
  for (const ChunkPageRef& p : m->chunk_pages) entries += p.chunks;
  std::vector<ChunkRef> chunks;
  chunks.reserve(entries);
  for (const ChunkPageRef& p : m->chunk_pages) {
    Result<Bytes> page = read_page(p);
    if (!page.ok()) return page.status().WithContext("index page " + p.digest.ToString());
    MERIDIAN_RETURN_IF_ERROR(ReadChunkPage(p, *page, &chunks));
  }
  m->chunks = std::move(chunks);
  return Status::Ok();
}

}  // namespace meridian
