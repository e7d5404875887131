// FaultEnv: injected errors, counted sync points, simulated crashes (see env.h).
#include <cerrno>

#include "base/env.h"
#include "base/file.h"

namespace meridian {

class FaultEnv::File final : public WritableFile {
 public:
  File(FaultEnv* env, std::unique_ptr<WritableFile> base, std::string path)
      : env_(env), base_(std::move(base)), path_(std::move(path)) {}
  Status Append(ByteSpan data) override { return env_->Run("write " + path_, false, [&] { return base_->Append(data); }); }
  Status Truncate(uint64_t size) override {
    return env_->Run("truncate " + path_, false, [&] { return base_->Truncate(size); });
  }
  Status Sync() override { return env_->Run("fsync " + path_, true, [&] { return base_->Sync(); }); }
  Status Close() override { return env_->Run("close " + path_, false, [&] { return base_->Close(); }); }

 private:
  FaultEnv* env_;
  std::unique_ptr<WritableFile> base_;
  std::string path_;
};

void FaultEnv::FailNthMutation(uint64_t n, int err) {
  std::lock_guard lock(mu_);
  fail_at_ = mutations_ + n;
  fail_errno_ = err;
}

void FaultEnv::CrashAt(uint64_t k, CrashPoint where) {
  std::lock_guard lock(mu_);
  crash_armed_ = true;
  crash_at_ = sync_points_ + k;
  crash_where_ = where;
}

bool FaultEnv::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}

uint64_t FaultEnv::sync_points() const {
  std::lock_guard lock(mu_);
  return sync_points_;
}

uint64_t FaultEnv::mutations() const {
  std::lock_guard lock(mu_);
  return mutations_;
}

Status FaultEnv::Admit(const std::string& what, bool sync_point) {
  std::lock_guard lock(mu_);
  const uint64_t number = ++mutations_;
  if (crash_armed_ && !crashed_ && sync_points_ >= crash_at_ &&
      (crash_where_ == CrashPoint::kAfterSync || sync_point)) {
    crashed_ = true;
  }
  if (crashed_) return ErrnoStatus(what + " (crashed)", EIO);
  if (number == fail_at_) return ErrnoStatus(what, fail_errno_);
  return Status::Ok();
}

Status FaultEnv::Run(const std::string& what, bool sync_point, const std::function<Status()>& op) {
  MERIDIAN_RETURN_IF_ERROR(Admit(what, sync_point));
  Status st = op();
  if (st.ok() && sync_point) {
    std::lock_guard lock(mu_);
    ++sync_points_;
  }
  return st;
}

Result<std::unique_ptr<WritableFile>> FaultEnv::NewWritableFile(const std::string& path, mode_t mode) {
  MERIDIAN_RETURN_IF_ERROR(Admit("create " + path, false));
  Result<std::unique_ptr<WritableFile>> file = base_->NewWritableFile(path, mode);
  if (!file.ok()) return file.status();
  return std::unique_ptr<WritableFile>(std::make_unique<File>(this, std::move(*file), path));
}

Result<std::unique_ptr<WritableFile>> FaultEnv::ReopenWritableFile(const std::string& path, mode_t mode) {
  MERIDIAN_RETURN_IF_ERROR(Admit("open " + path, false));
  Result<std::unique_ptr<WritableFile>> file = base_->ReopenWritableFile(path, mode);
  if (!file.ok()) return file.status();
  return std::unique_ptr<WritableFile>(std::make_unique<File>(this, std::move(*file), path));
}

Status FaultEnv::Rename(const std::string& from, const std::string& to) {
  return Run("rename " + from + " to " + to, false, [&] { return base_->Rename(from, to); });
}

Status FaultEnv::Exchange(const std::string& a, const std::string& b) {
  return Run("exchange " + a + " and " + b, false, [&] { return base_->Exchange(a, b); });
}

Status FaultEnv::SyncDirectory(const std::string& dir) {
  return Run("fsync directory " + dir, true, [&] { return base_->SyncDirectory(dir); });
}

Status FaultEnv::RemoveFile(const std::string& path) {
  return Run("unlink " + path, false, [&] { return base_->RemoveFile(path); });
}

Status FaultEnv::CreateDir(const std::string& dir) {
  return Run("create directory " + dir, false, [&] { return base_->CreateDir(dir); });
}

Status FaultEnv::SetPermissions(const std::string& path, mode_t mode) {
  return Run("chmod " + path, false, [&] { return base_->SetPermissions(path, mode); });
}

Status FaultEnv::Symlink(const std::string& target, const std::string& link) {
  return Run("symlink " + link, false, [&] { return base_->Symlink(target, link); });
}

}  // namespace meridian
