// Files as the source and target of a streaming delta decoder (delta/delta.h),
// through an Env (Env::Default() unless one is given): the source is read
// where the decoder asks, the target is written to a staging file that the
// caller syncs and publishes only after DeltaDecoder::Finish verified it.
#pragma once

#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "delta/delta.h"

namespace meridian {

class FileSourceReader final : public SourceReader {
 public:
  // Opens `path` for reading; its size is taken when opened.
  static Result<std::unique_ptr<FileSourceReader>> Open(Env& env, const std::string& path);
  static Result<std::unique_ptr<FileSourceReader>> Open(const std::string& path) {
    return Open(Env::Default(), path);
  }
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, std::span<uint8_t> out) override;

 private:
  FileSourceReader(std::unique_ptr<RandomAccessFile> file, uint64_t size)
      : file_(std::move(file)), size_(size) {}
  std::unique_ptr<RandomAccessFile> file_;
  uint64_t size_;
};

class FileTargetSink final : public TargetSink {
 public:
  // Creates `path` (mode 0644), or empties it when it is there.
  static Result<std::unique_ptr<FileTargetSink>> Create(Env& env, const std::string& path);
  static Result<std::unique_ptr<FileTargetSink>> Create(const std::string& path) {
    return Create(Env::Default(), path);
  }
  Status Write(ByteSpan data) override;
  Status ReadBack(uint64_t offset, std::span<uint8_t> out) override;
  // Syncs the file (call after DeltaDecoder::Finish, before publishing it).
  Status Sync();
  uint64_t bytes_written() const { return written_; }

 private:
  FileTargetSink(std::unique_ptr<WritableFile> file, std::unique_ptr<RandomAccessFile> reader)
      : file_(std::move(file)), reader_(std::move(reader)) {}
  std::unique_ptr<WritableFile> file_;
  std::unique_ptr<RandomAccessFile> reader_;  // the same file, for ReadBack
  uint64_t written_ = 0;
};

}  // namespace meridian
