// staging/download.part: the bytes of one download, kept across runs and
// power cuts so that a download stopped on the way resumes where it stopped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/bytes.h"
#include "base/env.h"
#include "base/status.h"

namespace meridian {

class DownloadSpool {
 public:
  // Opens `path` for a download of `size` bytes, keeping the bytes an earlier
  // run left; more than `size` cannot be this download's, and the file is
  // emptied. A file it creates has its name made durable (its directory
  // synced) at once, so that bytes synced into it later survive a power cut.
  static Result<std::unique_ptr<DownloadSpool>> Open(Env& env, const std::string& path, uint64_t size);

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }    // the signed size
  uint64_t bytes() const { return bytes_; }  // in the file now

  // Keeps the first `offset` bytes (no more than bytes()) and writes on from
  // there: 0 when a server sends the whole body again.
  Status RestartAt(uint64_t offset);
  // Appends `data`; Corruption, and nothing written, past the signed size.
  Status Append(ByteSpan data);
  // Makes every byte so far durable: a run that stops after it resumes from here.
  Status Sync();

 private:
  DownloadSpool(std::string path, uint64_t size, uint64_t bytes, std::unique_ptr<WritableFile> file)
      : path_(std::move(path)), size_(size), bytes_(bytes), file_(std::move(file)) {}

  std::string path_;
  uint64_t size_;
  uint64_t bytes_;
  std::unique_ptr<WritableFile> file_;
};

}  // namespace meridian
