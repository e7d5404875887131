// A small tmpfs mounted by a test over a directory, to fill a disk for real
// (the test must run as root), and the free space on it.
#pragma once

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

namespace meridian::testing {

// Bytes free to this process on the file system holding `dir`.
inline uint64_t AvailBytes(const std::string& dir) {
  struct statvfs fs;
  if (statvfs(dir.c_str(), &fs) != 0) return 0;
  return uint64_t{fs.f_bavail} * fs.f_frsize;
}

// A tmpfs of `bytes` mounted on the directory `dir` for as long as this
// lives, holding a copy of what `dir` held. Unmounted on destruction, lazily
// when a process (a child a failed check left running) still holds a file
// in it. ok() false, and error() saying why, when not root or the mount fails.
class Tmpfs {
 public:
  Tmpfs(const std::string& dir, uint64_t bytes) : dir_(dir) {
    if (::geteuid() != 0) {
      error_ = "not root";
      return;
    }
    std::error_code ec;
    const std::string saved = dir + ".before-tmpfs";
    std::filesystem::copy(dir, saved, std::filesystem::copy_options::recursive, ec);
    if (ec) {
      error_ = "copying " + dir + ": " + ec.message();
      return;
    }
    const std::string data = "size=" + std::to_string(bytes) + ",mode=0755";
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, data.c_str()) != 0) {
      error_ = "mount -t tmpfs -o " + data + " tmpfs " + dir + ": " + std::strerror(errno);
      return;
    }
    mounted_ = true;
    std::filesystem::copy(saved, dir, std::filesystem::copy_options::recursive, ec);
    if (ec) error_ = "copying into the tmpfs: " + ec.message();
    std::filesystem::remove_all(saved, ec);
  }
  ~Tmpfs() {
    if (mounted_ && ::umount(dir_.c_str()) != 0) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  bool ok() const { return mounted_ && error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// Appends to the file `path` until its file system has at most `leave_bytes`
// free, or refuses more; false when the file cannot be opened.
inline bool FillUp(const std::string& path, uint64_t leave_bytes) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const std::vector<char> block(64u << 10, 'f');
  for (uint64_t avail = AvailBytes(dir); avail > leave_bytes; avail = AvailBytes(dir)) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(block.size(), avail - leave_bytes));
    if (::write(fd, block.data(), n) <= 0) break;
  }
  ::close(fd);
  return true;
}

// For a test that needs writes refused while the disk stays full: fills the
// file system holding `filler` to the last byte before each call of
// `refused(attempt)`, which writes new bytes and says whether the write was
// refused, until one is, at most `attempts` times; whether one was. Filling
// again is needed: after a refusal RocksDB may free space of its own (a
// failed flush's partial file, a WAL no longer needed) and, once a
// memtable's worth is free, rightly resume writes; a new WAL's preallocated
// space takes a write or two more. New bytes each time, as a chunk already
// stored is not written again.
inline bool RefusedWhileFull(const std::string& filler, int attempts, const std::function<bool(int)>& refused) {
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (!FillUp(filler, 0)) return false;
    if (refused(attempt)) return true;
  }
  return false;
}

}  // namespace meridian::testing
