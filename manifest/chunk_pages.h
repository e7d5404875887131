// The index pages of a paged manifest (meridian.manifest/v2): a chunk list
// too long for one JSON document, cut into binary pages that are stored and
// fetched as chunks of their own and named, with their digests, by the
// signed manifest. A page is verified against its digest before a byte of it
// is read, so a resolved chunk list is as trustworthy as the signature.
// Pure: reading a page is the caller's (a store, an upstream, a server).
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "manifest/manifest.h"

namespace meridian {

struct ChunkPage {
  ChunkPageRef ref;
  Bytes bytes;
};

// Cuts `chunks` into pages of at most `chunks_per_page` entries (clamped to
// 1 … kChunkPageEntriesMax), in order.
std::vector<ChunkPage> MakeChunkPages(std::span<const ChunkRef> chunks, size_t chunks_per_page = kChunkPageEntriesMax);

// Checks `page` against `ref`: 1 to kChunkPageEntriesMax chunks, its digest,
// its length (kChunkPageEntryBytes per chunk), each size in 1 … kChunkBytesMax
// and all of them summing to ref.size. Corruption otherwise.
Status CheckChunkPage(const ChunkPageRef& ref, ByteSpan page);

// Entry `i` of a page CheckChunkPage accepted (i < ref.chunks): a reader that
// walks a page in place, without a copy of its list. Also how a chunk batch
// (manifest/chunk_batch.h) names each of its chunks.
ChunkRef ChunkPageEntry(ByteSpan page, size_t i);
// Appends `chunk`'s entry (its digest, then its size as 4 bytes little-endian).
void AppendChunkPageEntry(Bytes& out, const ChunkRef& chunk);

// Appends the entries of `page` to `out` once CheckChunkPage accepts it
// (nothing appended otherwise).
Status ReadChunkPage(const ChunkPageRef& ref, ByteSpan page, std::vector<ChunkRef>* out);

// Reads one page's bytes (at most ref.page_bytes() are needed).
using ReadPage = std::function<Result<Bytes>(const ChunkPageRef& ref)>;

// Fills m->chunks from m->chunk_pages, each page read with `read_page` and
// checked by ReadChunkPage; the error of the first page that fails (its
// digest named), m->chunks left empty. Nothing to do for a v1 manifest or one
// already resolved.
Status ResolveChunkPages(Manifest* m, const ReadPage& read_page);

}  // namespace meridian
