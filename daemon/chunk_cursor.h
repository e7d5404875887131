// The chunks of a download in order, from the one holding a given byte: from
// a chunk list in memory (a v1 manifest's, a delta's), or page by page from a
// paged manifest's index pages (meridian.manifest/v2). Paged, a download holds
// one page at a time, and that page is the store's cached copy, shared with
// every other download of the model: serving takes the same memory whatever
// the model's size, and a Range request of a resumed download reads one page
// to find its place, not the whole list.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "manifest/manifest.h"
#include "store/store.h"

namespace meridian {

class ChunkCursor {
 public:
  // Over `chunks` (shared, not copied).
  explicit ChunkCursor(std::shared_ptr<const std::vector<ChunkRef>> chunks);
  // Over an artifact's chunks: a v1 manifest's list (shared, not copied), or
  // the index pages of a paged manifest (as signed), each read with
  // store.ServeChunk and checked against the manifest before it is used.
  ChunkCursor(Store& store, std::shared_ptr<const Manifest> manifest);

  // Moves to the chunk that holds byte `offset` of the whole, and returns how
  // many of its bytes come before it. InvalidArgument past the end;
  // Corruption when an index page cannot be read or does not check.
  Result<uint64_t> Seek(uint64_t offset);
  // The chunk at the cursor, which then moves past it; nullopt after the last.
  Result<std::optional<ChunkRef>> Next();

 private:
  Status LoadPage(size_t page);

  std::shared_ptr<const std::vector<ChunkRef>> list_;  // or, paged:
  Store* store_ = nullptr;
  std::shared_ptr<const Manifest> manifest_;
  size_t page_ = 0;                        // the page loaded
  std::shared_ptr<const Bytes> page_bytes_;  // its bytes, checked
  size_t index_ = 0;                       // the next chunk, in list_ or in the page
};

}  // namespace meridian
