// Small file utilities with the durability rules every program here follows:
// write to a temporary beside the target, fsync it, rename over the target,
// fsync the directory. A reader sees the old file or the new one, never half.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

// Atomically replaces `path` with `data`, created with permission `mode`
// (the mode holds from the first byte written: secrets are never readable by others).
Status WriteFileAtomic(const std::string& path, ByteSpan data, mode_t mode = 0644);
inline Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0644) {
  return WriteFileAtomic(path, AsBytes(data), mode);
}

// Reads a whole file; ResourceExhausted when it is larger than `max_bytes`.
Result<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes);

// A file opened read-only (O_CLOEXEC): its descriptor, which the caller
// closes, and its size when it was opened.
struct ReadOnlyFile {
  int fd = -1;
  uint64_t size = 0;
};
Result<ReadOnlyFile> OpenReadOnly(const std::string& path);

// Reads exactly out.size() bytes of `fd` at `offset`, through short reads
// and EINTR; IOError naming `path` when the file ends first.
Status PreadExact(int fd, uint64_t offset, std::span<uint8_t> out, const std::string& path);
// Writes all of `data` to `fd` at `offset`, through short writes and EINTR.
Status PwriteAll(int fd, uint64_t offset, ByteSpan data, const std::string& path);

// fsyncs a directory so that renames and creations inside it are durable.
Status SyncDirectory(const std::string& dir);

// Creates `dir` and its parents (like mkdir -p) with `mode`.
Status CreateDirectories(const std::string& dir, mode_t mode = 0755);

// "No such file or directory" and friends, prefixed with what was being done.
Status ErrnoStatus(const std::string& what, int err);

}  // namespace meridian
