// The resumable download file (see download_spool.h).
#include "agent/download_spool.h"

#include <filesystem>

#include <fmt/format.h>

namespace meridian {

Result<std::unique_ptr<DownloadSpool>> DownloadSpool::Open(Env& env, const std::string& path, uint64_t size) {
  const bool existed = env.Exists(path);
  Result<std::unique_ptr<WritableFile>> file = env.ReopenWritableFile(path, 0644);
  if (!file.ok()) return file.status();
  if (!existed) MERIDIAN_RETURN_IF_ERROR(env.SyncDirectory(std::filesystem::path(path).parent_path().string()));
  Result<uint64_t> bytes = env.GetFileSize(path);
  if (!bytes.ok()) return bytes.status();
  auto spool = std::unique_ptr<DownloadSpool>(new DownloadSpool(path, size, *bytes, std::move(*file)));
  if (*bytes > size) MERIDIAN_RETURN_IF_ERROR(spool->RestartAt(0));
  return spool;
}

Status DownloadSpool::RestartAt(uint64_t offset) {
  if (offset == bytes_) return Status::Ok();
  if (offset > bytes_) {
    return Status::InvalidArgument(fmt::format("{}: restart at byte {} past the {} it has", path_, offset, bytes_));
  }
  MERIDIAN_RETURN_IF_ERROR(file_->Truncate(offset));
  bytes_ = offset;
  return Status::Ok();
}

Status DownloadSpool::Append(ByteSpan data) {
  if (data.size() > size_ - bytes_) {
    return Status::Corruption(fmt::format("server sent more than the {} signed bytes", size_));
  }
  MERIDIAN_RETURN_IF_ERROR(file_->Append(data));
  bytes_ += data.size();
  return Status::Ok();
}

Status DownloadSpool::Sync() { return file_->Sync(); }

}  // namespace meridian
