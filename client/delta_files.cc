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
  MERIDIAN_RETURN_IF_ERROR(PwriteAll(fd_, written_, data, path_));
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
