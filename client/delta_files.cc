// SourceReader and TargetSink over an Env's files.
#include "client/delta_files.h"

namespace meridian {

Result<std::unique_ptr<FileSourceReader>> FileSourceReader::Open(Env& env, const std::string& path) {
  Result<std::unique_ptr<RandomAccessFile>> file = env.NewRandomAccessFile(path);
  if (!file.ok()) return file.status();
  Result<uint64_t> size = env.GetFileSize(path);
  if (!size.ok()) return size.status();
  return std::unique_ptr<FileSourceReader>(new FileSourceReader(std::move(*file), *size));
}

Status FileSourceReader::Read(uint64_t offset, std::span<uint8_t> out) {
  if (offset > size_ || out.size() > size_ - offset) return Status::InvalidArgument("read outside the source");
  return file_->Read(offset, out);
}

Result<std::unique_ptr<FileTargetSink>> FileTargetSink::Create(Env& env, const std::string& path) {
  Result<std::unique_ptr<WritableFile>> file = env.ReopenWritableFile(path, 0644);
  if (!file.ok()) return file.status();
  MERIDIAN_RETURN_IF_ERROR((*file)->Truncate(0));
  Result<std::unique_ptr<RandomAccessFile>> reader = env.NewRandomAccessFile(path);
  if (!reader.ok()) return reader.status();
  return std::unique_ptr<FileTargetSink>(new FileTargetSink(std::move(*file), std::move(*reader)));
}

Status FileTargetSink::Write(ByteSpan data) {
  MERIDIAN_RETURN_IF_ERROR(file_->Append(data));
  written_ += data.size();
  return Status::Ok();
}

Status FileTargetSink::ReadBack(uint64_t offset, std::span<uint8_t> out) {
  if (offset > written_ || out.size() > written_ - offset) return Status::InvalidArgument("read back past the written target");
  return reader_->Read(offset, out);
}

Status FileTargetSink::Sync() { return file_->Sync(); }

}  // namespace meridian
