// Small file utilities on the real file system. WriteFileAtomic,
// ReadFileToString, SyncDirectory and CreateDirectories are Env::Default()'s
// (base/env.h: the durability rules are written there once); code that must
// be tested against power cuts takes an Env& instead of calling these.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

// Atomically replaces `path` with `data`, created with permission `mode`
// (the mode holds from the first byte written: secrets are never readable by others):
// a temporary beside it, fsynced, renamed over it, the directory fsynced.
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

// Creates `dir` and its parents (like mkdir -p), each new one made durable in
// its parent; `dir` gets `mode`.
Status CreateDirectories(const std::string& dir, mode_t mode = 0755);

// "No such file or directory" and friends, prefixed with what was being done:
// NotFound, PermissionDenied, InsufficientStorage (a full disk or quota), else IOError.
Status ErrnoStatus(const std::string& what, int err);

}  // namespace meridian
