// The durability rules written once over Env's primitives, and the POSIX Env.
#include "base/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <random>

#include "base/file.h"

namespace meridian {

Status Env::WriteFileAtomic(const std::string& path, ByteSpan data, mode_t mode) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  static thread_local std::mt19937_64 rng(std::random_device{}());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rng());
  Result<std::unique_ptr<WritableFile>> file = NewWritableFile(tmp, mode);
  if (!file.ok() && file.status().code() == Status::Code::kNotFound) {
    return Status::NotFound("cannot write " + path + ": directory " + (dir.empty() ? "." : dir) + " does not exist");
  }
  // Errors name `path`, what the caller asked for, first.
  if (!file.ok()) return file.status().WithContext("write " + path);
  Status st = (*file)->Append(data);
  if (st.ok()) st = (*file)->Sync();
  if (Status closed = (*file)->Close(); st.ok()) st = closed;
  if (!st.ok()) {
    RemoveFile(tmp);  // best effort: a leftover temporary is never read as the file
    return st.WithContext("write " + path);
  }
  return PublishFile(tmp, path);
}

Status Env::PublishFile(const std::string& staged, const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (Status st = Rename(staged, path); !st.ok()) {
    RemoveFile(staged);  // best effort, as above
    return st.WithContext("write " + path);
  }
  return SyncDirectory(dir.empty() ? "." : dir).WithContext("write " + path);
}

Status Env::CreateDirectories(const std::string& dir, mode_t mode) {
  const std::filesystem::path target = std::filesystem::path(dir).lexically_normal();
  std::filesystem::path prefix;
  for (const std::filesystem::path& part : target) {
    prefix /= part;
    if (part.empty() || prefix == prefix.root_path()) continue;  // "/" and a trailing separator
    Result<FileType> type = Stat(prefix.string());
    if (type.ok() && *type != FileType::kDirectory) {
      return Status::IOError("create directory " + dir + ": " + prefix.string() + " is not a directory");
    }
    if (type.ok()) continue;
    if (type.status().code() != Status::Code::kNotFound) return type.status();
    Status made = CreateDir(prefix.string());
    // Another process may have made it in between: that one serves.
    if (!made.ok() && Stat(prefix.string()).ok()) continue;
    if (!made.ok()) return made;
    // The new directory survives a power cut only once its parent is synced.
    const std::string parent = prefix.parent_path().string();
    MERIDIAN_RETURN_IF_ERROR(SyncDirectory(parent.empty() ? "." : parent));
  }
  return SetPermissions(dir, mode);
}

Result<Digest> Env::DigestOfFile(const std::string& path) {
  Result<std::unique_ptr<SequentialFile>> file = NewSequentialFile(path);
  if (!file.ok()) return file.status();
  Sha256 h;
  Bytes buf(1 << 20);
  for (;;) {
    Result<size_t> n = (*file)->Read(buf);
    if (!n.ok()) return n.status();
    if (*n == 0) return h.Finish();
    h.Update(ByteSpan(buf.data(), *n));
  }
}

namespace {

// The shortest run of zeros an append leaves a hole: a file system block.
constexpr size_t kHoleBytesMin = 4096;

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Append(ByteSpan data) override {
    if (data.size() >= kHoleBytesMin && IsAllZeros(data)) return Extend(data.size());
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("write " + path_, errno);
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }
  Status Truncate(uint64_t size) override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return ErrnoStatus("stat " + path_, errno);
    if (size > static_cast<uint64_t>(st.st_size)) {
      return Status::InvalidArgument("truncate " + path_ + " to " + std::to_string(size) + " bytes: past its end");
    }
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return ErrnoStatus("truncate " + path_, errno);
    // The next append follows the kept bytes (without O_APPEND the offset stays put).
    if (::lseek(fd_, static_cast<off_t>(size), SEEK_SET) < 0) return ErrnoStatus("seek " + path_, errno);
    return Status::Ok();
  }
  Status Sync() override {
    if (::fsync(fd_) != 0) return ErrnoStatus("fsync " + path_, errno);
    return Status::Ok();
  }
  Status Close() override {
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return ErrnoStatus("close " + path_, errno);
    return Status::Ok();
  }

 private:
  // Zeros appended as a longer size, not written. The offset is the end: the
  // file is this object's alone (opened new, or with O_APPEND).
  Status Extend(uint64_t zeros) {
    const off_t end = ::lseek(fd_, 0, SEEK_END);
    if (end < 0) return ErrnoStatus("seek " + path_, errno);
    const off_t size = end + static_cast<off_t>(zeros);
    if (::ftruncate(fd_, size) != 0) return ErrnoStatus("extend " + path_, errno);
    if (::lseek(fd_, size, SEEK_SET) < 0) return ErrnoStatus("seek " + path_, errno);
    return Status::Ok();
  }
  int fd_;
  std::string path_;
};

class PosixSequentialFile final : public SequentialFile {
 public:
  PosixSequentialFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixSequentialFile() override { ::close(fd_); }
  Result<size_t> Read(std::span<uint8_t> out) override {
    for (;;) {
      ssize_t n = ::read(fd_, out.data(), out.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("read " + path_, errno);
      return static_cast<size_t>(n);
    }
  }

 private:
  int fd_;
  std::string path_;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }
  Status Read(uint64_t offset, std::span<uint8_t> out) override { return PreadExact(fd_, offset, out, path_); }

 private:
  int fd_;
  std::string path_;
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }  // releases the flock

 private:
  int fd_;
};

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return ErrnoStatus("create " + path, errno);
    auto file = std::make_unique<PosixWritableFile>(fd, path);
    // open's mode is cut by the umask; the asked one holds before any byte is written.
    if (::fchmod(fd, mode) != 0) return ErrnoStatus("chmod " + path, errno);
    return std::unique_ptr<WritableFile>(std::move(file));
  }

  Result<std::unique_ptr<WritableFile>> ReopenWritableFile(const std::string& path, mode_t mode) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode);
    if (fd < 0) return ErrnoStatus("open " + path, errno);
    return std::unique_ptr<WritableFile>(std::make_unique<PosixWritableFile>(fd, path));
  }

  Result<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open " + path, errno);
    return std::unique_ptr<SequentialFile>(std::make_unique<PosixSequentialFile>(fd, path));
  }

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open " + path, errno);
    return std::unique_ptr<RandomAccessFile>(std::make_unique<PosixRandomAccessFile>(fd, path));
  }

  Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open " + path, errno);
    std::string out;
    char buf[64 * 1024];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        ::close(fd);
        return ErrnoStatus("read " + path, err);
      }
      if (n == 0) break;
      if (out.size() + static_cast<size_t>(n) > max_bytes) {
        ::close(fd);
        return Status::ResourceExhausted(path + " is larger than " + std::to_string(max_bytes) + " bytes");
      }
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }

  Result<FileType> Stat(const std::string& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path, errno);
    return S_ISDIR(st.st_mode) ? FileType::kDirectory : FileType::kFile;
  }

  Result<uint64_t> GetFileSize(const std::string& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Result<mode_t> GetPermissions(const std::string& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path, errno);
    return static_cast<mode_t>(st.st_mode & 07777);
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus("rename " + from + " to " + to, errno);
    return Status::Ok();
  }

  Status Exchange(const std::string& a, const std::string& b) override {
    if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return Status::Ok();
    const int err = errno;
    const std::string what = "exchange " + a + " and " + b;
    if (err == EINVAL || err == ENOSYS) return Status::FailedPrecondition(what + ": the file system cannot");
    return ErrnoStatus(what, err);
  }

  Status SyncDirectory(const std::string& dir) override {
    int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open directory " + dir, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoStatus("fsync directory " + dir, err);
    return Status::Ok();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("unlink " + path, errno);
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListDirectory(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoStatus("open directory " + dir, errno);
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return ErrnoStatus("read directory " + dir, err);
    std::sort(names.begin(), names.end());
    return names;
  }

  Status CreateDir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0777) != 0) return ErrnoStatus("create directory " + dir, errno);
    return Status::Ok();
  }

  Status SetPermissions(const std::string& path, mode_t mode) override {
    if (::chmod(path.c_str(), mode) != 0) return ErrnoStatus("chmod " + path, errno);
    return Status::Ok();
  }

  Status Symlink(const std::string& target, const std::string& link) override {
    if (::symlink(target.c_str(), link.c_str()) != 0) return ErrnoStatus("symlink " + link, errno);
    return Status::Ok();
  }

  Result<std::string> ReadLink(const std::string& link) override {
    char buf[PATH_MAX];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf));
    if (n < 0) return ErrnoStatus("readlink " + link, errno);
    if (static_cast<size_t>(n) == sizeof(buf)) return Status::IOError("readlink " + link + ": target too long");
    return std::string(buf, static_cast<size_t>(n));
  }

  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus("open " + path, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) return Status::FailedPrecondition(path + " is locked by another holder");
      return ErrnoStatus("lock " + path, err);
    }
    return std::unique_ptr<FileLock>(std::make_unique<PosixFileLock>(fd));
  }

  const Clock& clock() const override { return SystemClock::Get(); }
};

}  // namespace

Env& Env::Default() {
  static PosixEnv env;
  return env;
}

}  // namespace meridian
