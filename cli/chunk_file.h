// Cutting a file into content-defined chunks and hashing it, for publishing:
// the file is read once, while the whole-file SHA-256, the search for chunk
// boundaries and the chunks' SHA-256 run on all cores.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "manifest/manifest.h"

namespace meridian::cli {

struct ChunkedFile {
  Manifest manifest;              // size, digest and chunks filled in
  std::vector<uint64_t> offsets;  // of each chunk in the file
};

// Given a block's chunks and their offsets as soon as they are hashed, so
// that they can be sent while the rest is read; a failure it returns stops
// the reading.
using ChunksHashed = std::function<Status(std::span<const ChunkRef> chunks, std::span<const uint64_t> offsets)>;

// Chunks and hashes the file at `path`; `on_read(bytes)` is told of each
// block read (from another thread). ResourceExhausted past kManifestPagedChunksMax chunks.
Result<ChunkedFile> ChunkFile(const std::string& path, const std::function<void(uint64_t)>& on_read,
                              const ChunksHashed& on_chunks = nullptr);

}  // namespace meridian::cli
