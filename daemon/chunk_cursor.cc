#include "daemon/chunk_cursor.h"

#include <fmt/format.h>

#include "manifest/chunk_pages.h"

namespace meridian {

ChunkCursor::ChunkCursor(std::shared_ptr<const std::vector<ChunkRef>> chunks) : list_(std::move(chunks)) {}

ChunkCursor::ChunkCursor(Store& store, std::shared_ptr<const Manifest> manifest) {
  if (manifest->paged()) {
    store_ = &store;
    manifest_ = std::move(manifest);
  } else {
    list_ = std::shared_ptr<const std::vector<ChunkRef>>(manifest, &manifest->chunks);
  }
}

Status ChunkCursor::LoadPage(size_t page) {
  const ChunkPageRef& ref = manifest_->chunk_pages[page];
  Result<std::shared_ptr<const Bytes>> bytes = store_->ServeChunk(ref.digest);
  // A page the store lacks or holds damaged leaves the artifact unservable,
  // which is the store's fault, not a missing resource the client named.
  Status st = bytes.ok() ? CheckChunkPage(ref, **bytes) : bytes.status();
  if (!st.ok()) {
    return Status::Corruption(
        fmt::format("artifact {}: index page {}: {}", manifest_->digest.ToString(), ref.digest.ToString(), st.message()));
  }
  page_ = page;
  page_bytes_ = std::move(*bytes);
  index_ = 0;
  return Status::Ok();
}

Result<uint64_t> ChunkCursor::Seek(uint64_t offset) {
  uint64_t before = 0;
  index_ = 0;
  if (list_) {
    for (; index_ < list_->size() && before + (*list_)[index_].size <= offset; ++index_) before += (*list_)[index_].size;
    if (index_ == list_->size()) return Status::InvalidArgument("offset past the end");
    return offset - before;
  }
  const std::vector<ChunkPageRef>& pages = manifest_->chunk_pages;
  size_t page = 0;
  for (; page < pages.size() && before + pages[page].size <= offset; ++page) before += pages[page].size;
  if (page == pages.size()) return Status::InvalidArgument("offset past the end");
  MERIDIAN_RETURN_IF_ERROR(LoadPage(page));
  for (;; ++index_) {
    const uint64_t size = ChunkPageEntry(*page_bytes_, index_).size;
    if (before + size > offset) return offset - before;
    before += size;
  }
}

Result<std::optional<ChunkRef>> ChunkCursor::Next() {
  if (list_) {
    if (index_ == list_->size()) return std::optional<ChunkRef>();
    return std::optional<ChunkRef>((*list_)[index_++]);
  }
  if (!page_bytes_) MERIDIAN_RETURN_IF_ERROR(LoadPage(0));
  if (index_ == manifest_->chunk_pages[page_].chunks) {  // pages hold >= 1 chunk (CheckChunkPage)
    if (page_ + 1 == manifest_->chunk_pages.size()) return std::optional<ChunkRef>();
    MERIDIAN_RETURN_IF_ERROR(LoadPage(page_ + 1));
  }
  return std::optional<ChunkRef>(ChunkPageEntry(*page_bytes_, index_++));
}

}  // namespace meridian
