// pread/pwrite-backed SourceReader and TargetSink.
#include "client/delta_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "base/file.h"

namespace meridian {

FileSourceReader::~FileSourceReader() { ::close(fd_); }

Result<std::unique_ptr<FileSourceReader>> FileSourceReader::Open(const std::string& path) {
  Result<ReadOnlyFile> f = OpenReadOnly(path);
  if (!f.ok()) return f.status();
  return std::unique_ptr<FileSourceReader>(new FileSourceReader(f->fd, f->size, path));
}

static Status PreadExact(int fd, uint64_t offset, std::span<uint8_t> out, const std::string& path) {
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

Status FileSourceReader::Read(uint64_t offset, std::span<uint8_t> out) {
  if (offset > size_ || out.size() > size_ - offset) return Status::InvalidArgument("read outside the source");
  return PreadExact(fd_, offset, out, path_);
}

FileTargetSink::~FileTargetSink() { ::close(fd_); }

Result<std::unique_ptr<FileTargetSink>> FileTargetSink::Create(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create " + path, errno);
  return std::unique_ptr<FileTargetSink>(new FileTargetSink(fd, path));
}

Status FileTargetSink::Write(ByteSpan data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(written_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write " + path_, errno);
    done += static_cast<size_t>(n);
  }
  written_ += data.size();
  return Status::Ok();
}

Status FileTargetSink::ReadBack(uint64_t offset, std::span<uint8_t> out) {
  if (offset > written_ || out.size() > written_ - offset) return Status::InvalidArgument("read back past the written target");
  return PreadExact(fd_, offset, out, path_);
}

Status FileTargetSink::Sync() {
  if (::fsync(fd_) != 0) return ErrnoStatus("fsync " + path_, errno);
  return Status::Ok();
}

Result<Digest> DigestOfFile(const std::string& path) {
  Result<std::unique_ptr<FileSourceReader>> f = FileSourceReader::Open(path);
  if (!f.ok()) return f.status();
  Sha256 h;
  Bytes buf(4 << 20);
  for (uint64_t off = 0; off < (*f)->size();) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), (*f)->size() - off));
    MERIDIAN_RETURN_IF_ERROR((*f)->Read(off, std::span<uint8_t>(buf.data(), n)));
    h.Update(ByteSpan(buf.data(), n));
    off += n;
  }
  return h.Finish();
}

}  // namespace meridian
