// Files as the source and target of a streaming delta decoder (delta/delta.h):
// the source is read with pread where the decoder asks, the target is written
// to a staging file that the caller fsyncs and renames only after
// DeltaDecoder::Finish verified it.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "delta/delta.h"

namespace meridian {

class FileSourceReader final : public SourceReader {
 public:
  ~FileSourceReader() override;
  // Opens `path` for reading.
  static Result<std::unique_ptr<FileSourceReader>> Open(const std::string& path);
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, std::span<uint8_t> out) override;

 private:
  FileSourceReader(int fd, uint64_t size, std::string path) : fd_(fd), size_(size), path_(std::move(path)) {}
  int fd_;
  uint64_t size_;
  std::string path_;
};

class FileTargetSink final : public TargetSink {
 public:
  ~FileTargetSink() override;
  // Creates (truncates) `path`, mode 0644.
  static Result<std::unique_ptr<FileTargetSink>> Create(const std::string& path);
  Status Write(ByteSpan data) override;
  Status ReadBack(uint64_t offset, std::span<uint8_t> out) override;
  // fsyncs the file (call after DeltaDecoder::Finish, before renaming it).
  Status Sync();
  uint64_t bytes_written() const { return written_; }

 private:
  FileTargetSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  uint64_t written_ = 0;
};

// SHA-256 of a whole file, streamed.
Result<Digest> DigestOfFile(const std::string& path);

}  // namespace meridian
