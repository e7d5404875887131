// Positioned reads and writes on descriptors; the rest forwards to the default Env.
#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/env.h"

namespace meridian {

Status ErrnoStatus(const std::string& what, int err) {
  if (err == ENOENT) return Status::NotFound(what + ": " + std::strerror(err));
  if (err == EACCES || err == EPERM) return Status::PermissionDenied(what + ": " + std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) return Status::InsufficientStorage(what + ": " + std::strerror(err));
  return Status::IOError(what + ": " + std::strerror(err));
}

Status PreadExact(int fd, uint64_t offset, std::span<uint8_t> out, const std::string& path) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read " + path, errno);
    if (n == 0) return Status::IOError(path + " is shorter than expected");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status PwriteAll(int fd, uint64_t offset, ByteSpan data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write " + path, errno);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// The durable-file functions are the default Env's: one implementation serves both.
Status SyncDirectory(const std::string& dir) { return Env::Default().SyncDirectory(dir); }

Status WriteFileAtomic(const std::string& path, ByteSpan data, mode_t mode) {
  return Env::Default().WriteFileAtomic(path, data, mode);
}

Result<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes) {
  return Env::Default().ReadFile(path, max_bytes);
}

Status CreateDirectories(const std::string& dir, mode_t mode) { return Env::Default().CreateDirectories(dir, mode); }

Result<ReadOnlyFile> OpenReadOnly(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("stat " + path, err);
  }
  return ReadOnlyFile{fd, static_cast<uint64_t>(st.st_size)};
}

}  // namespace meridian
