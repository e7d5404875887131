// libFuzzer target for the index pages of paged manifests, which a daemon or
// the CLI reads from a store or a server: the input's first 8 bytes are the
// size the manifest claims for the page's chunks (little-endian), the rest
// the page, named by its own digest (so the contents are what is fuzzed, not
// SHA-256). A page must be read or refused, never crash; one read must cut
// back into the same page, and resolve a manifest to the same chunks.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "manifest/chunk_pages.h"

using namespace meridian;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
