// libFuzzer target for the index pages of paged manifests, which a daemon or
// the CLI reads from a store or a server, and for chunk batches, which a
// daemon reads from a publisher's request (the same entries, each followed by
// its chunk's bytes). For the page, the input's first 8 bytes are the
// size the manifest claims for the page's chunks (little-endian), the rest
// the page, named by its own digest (so the contents are what is fuzzed, not
// SHA-256). A page must be read or refused, never crash; one read must cut
// back into the same page, and resolve a manifest to the same chunks. The
// whole input is also parsed as a chunk batch: read or refused, and one read
// must write back into the same bytes.
#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "manifest/chunk_batch.h"
#include "manifest/chunk_pages.h"

using namespace meridian;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (Result<std::vector<BatchedChunk>> batch = ParseChunkBatch(ByteSpan(data, size)); batch.ok()) {
    Bytes again;
    for (const BatchedChunk& c : *batch) AppendBatchedChunk(again, c.digest, c.bytes);
    if (batch->empty() || !std::equal(data, data + size, again.begin(), again.end())) std::abort();
  }
  if (size < 8) return 0;
  ChunkPageRef ref;
  for (int i = 0; i < 8; ++i) ref.size |= uint64_t{data[i]} << (8 * i);
  const ByteSpan page(data + 8, size - 8);
  ref.digest = Digest::Of(page);
  ref.chunks = page.size() / kChunkPageEntryBytes;
  std::vector<ChunkRef> chunks;
  if (!ReadChunkPage(ref, page, &chunks).ok()) {
    if (!chunks.empty()) std::abort();  // nothing of a refused page
    return 0;
  }
  if (chunks.size() != ref.chunks) std::abort();
  std::vector<ChunkPage> again = MakeChunkPages(chunks, chunks.size());
  if (again.size() != 1 || again[0].ref != ref || !std::equal(page.begin(), page.end(), again[0].bytes.begin(),
                                                                 again[0].bytes.end())) {
    std::abort();
  }
  Manifest m;
  m.chunk_pages = {ref};
  m.size = ref.size;
  Status st = ResolveChunkPages(&m, [&](const ChunkPageRef&) -> Result<Bytes> { return Bytes(page.begin(), page.end()); });
  if (!st.ok() || m.chunks != chunks) std::abort();
  return 0;
}
