// MemEnv: an in-memory file system that can lose power (see env.h).
#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "base/env.h"
#include "base/file.h"

namespace meridian {
namespace {

// Absolute, normalised, without a trailing separator ("/" alone for the root).
std::string Normal(const std::string& path) {
  std::string p = std::filesystem::path(path.starts_with('/') ? path : "/" + path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string Parent(const std::string& normal) {
  size_t slash = normal.rfind('/');
  return slash == 0 ? "/" : normal.substr(0, slash);
}

// Symlinks followed when resolving a path, at most (ELOOP past it).
constexpr int kSymlinkHopsMax = 16;

}  // namespace

class MemEnv::File final : public WritableFile {
 public:
  File(MemEnv* env, std::shared_ptr<Contents> contents) : env_(env), contents_(std::move(contents)) {}
  Status Append(ByteSpan data) override {
    std::lock_guard lock(env_->mu_);
    contents_->data.append(reinterpret_cast<const char*>(data.data()), data.size());
    return Status::Ok();
  }
  Status Truncate(uint64_t size) override {
    std::lock_guard lock(env_->mu_);
    if (size > contents_->data.size()) return Status::InvalidArgument("truncate past the end of a file");
    contents_->data.resize(size);
    // The bytes a cut may keep are those both lengths share: appends after
    // this rewrite what lies beyond.
    contents_->synced_bytes = std::min<size_t>(contents_->synced_bytes, size);
    return Status::Ok();
  }
  Status Sync() override {
    std::lock_guard lock(env_->mu_);
    contents_->synced_bytes = contents_->data.size();
    return Status::Ok();
  }
  Status Close() override { return Status::Ok(); }

 private:
  MemEnv* env_;
  std::shared_ptr<Contents> contents_;
};

class MemEnv::Reader final : public SequentialFile {
 public:
  Reader(MemEnv* env, std::shared_ptr<Contents> contents) : env_(env), contents_(std::move(contents)) {}
  Result<size_t> Read(std::span<uint8_t> out) override {
    std::lock_guard lock(env_->mu_);
    const std::string& data = contents_->data;
    size_t n = offset_ >= data.size() ? 0 : std::min(out.size(), data.size() - offset_);
    std::copy_n(data.data() + offset_, n, reinterpret_cast<char*>(out.data()));
    offset_ += n;
    return n;
  }

 private:
  MemEnv* env_;
  std::shared_ptr<Contents> contents_;
  size_t offset_ = 0;
};

class MemEnv::RandomReader final : public RandomAccessFile {
 public:
  RandomReader(MemEnv* env, std::shared_ptr<Contents> contents, std::string path)
      : env_(env), contents_(std::move(contents)), path_(std::move(path)) {}
  Status Read(uint64_t offset, std::span<uint8_t> out) override {
    std::lock_guard lock(env_->mu_);
    const std::string& data = contents_->data;
    if (offset > data.size() || out.size() > data.size() - offset) {
      return Status::IOError("read " + path_ + ": the file ends before byte " + std::to_string(offset + out.size()));
    }
    std::copy_n(data.data() + offset, out.size(), reinterpret_cast<char*>(out.data()));
    return Status::Ok();
  }

 private:
  MemEnv* env_;
  std::shared_ptr<Contents> contents_;
  std::string path_;
};

class MemEnv::Lock final : public FileLock {
 public:
  Lock(MemEnv* env, std::string path, uint64_t number) : env_(env), path_(std::move(path)), number_(number) {}
  ~Lock() override {
    std::lock_guard lock(env_->mu_);
    // A PowerCut released it, and another holder may have it since.
    if (auto it = env_->locks_.find(path_); it != env_->locks_.end() && it->second == number_) env_->locks_.erase(it);
  }

 private:
  MemEnv* env_;
  std::string path_;
  uint64_t number_;
};

const MemEnv::Entry* MemEnv::Resolve(const std::string& path) const {
  static const Entry kRoot{FileType::kDirectory, nullptr, ""};
  std::string p = Normal(path);
  for (int hops = 0; hops <= kSymlinkHopsMax; ++hops) {
    if (p == "/") return &kRoot;
    auto it = live_.find(p);
    if (it == live_.end()) return nullptr;
    const std::string& target = it->second.link_target;
    if (target.empty()) return &it->second;
    p = Normal(target.starts_with('/') ? target : Parent(p) + "/" + target);
  }
  return nullptr;
}

Status MemEnv::CheckParent(const std::string& path) const {
  std::string parent = Parent(Normal(path));
  if (parent == "/") return Status::Ok();
  auto it = live_.find(parent);
  if (it == live_.end()) return ErrnoStatus(path, ENOENT);
  if (it->second.type != FileType::kDirectory || !it->second.link_target.empty()) return ErrnoStatus(path, ENOTDIR);
  return Status::Ok();
}

Result<std::unique_ptr<WritableFile>> MemEnv::NewWritableFile(const std::string& path, mode_t mode) {
  std::lock_guard lock(mu_);
  MERIDIAN_RETURN_IF_ERROR(CheckParent(path).WithContext("create"));
  std::string n = Normal(path);
  if (live_.count(n)) return ErrnoStatus("create " + path, EEXIST);
  auto contents = std::make_shared<Contents>();
  live_[n] = Entry{FileType::kFile, contents, "", static_cast<mode_t>(mode & 07777)};
  return std::unique_ptr<WritableFile>(std::make_unique<File>(this, std::move(contents)));
}

Result<std::unique_ptr<WritableFile>> MemEnv::ReopenWritableFile(const std::string& path, mode_t mode) {
  std::lock_guard lock(mu_);
  if (const Entry* e = Resolve(path); e != nullptr) {
    if (e->type == FileType::kDirectory) return ErrnoStatus("open " + path, EISDIR);
    return std::unique_ptr<WritableFile>(std::make_unique<File>(this, e->file));
  }
  MERIDIAN_RETURN_IF_ERROR(CheckParent(path).WithContext("open"));
  std::string n = Normal(path);
  if (live_.count(n)) return ErrnoStatus("open " + path, ENOENT);  // a dangling symlink
  auto contents = std::make_shared<Contents>();
  live_[n] = Entry{FileType::kFile, contents, "", static_cast<mode_t>(mode & 07777)};
  return std::unique_ptr<WritableFile>(std::make_unique<File>(this, std::move(contents)));
}

Result<std::unique_ptr<SequentialFile>> MemEnv::NewSequentialFile(const std::string& path) {
  std::lock_guard lock(mu_);
  const Entry* e = Resolve(path);
  if (e == nullptr) return ErrnoStatus("open " + path, ENOENT);
  if (e->type == FileType::kDirectory) return ErrnoStatus("read " + path, EISDIR);
  return std::unique_ptr<SequentialFile>(std::make_unique<Reader>(this, e->file));
}

Result<std::string> MemEnv::ReadFile(const std::string& path, uint64_t max_bytes) {
  std::lock_guard lock(mu_);
  const Entry* e = Resolve(path);
  if (e == nullptr) return ErrnoStatus("open " + path, ENOENT);
  if (e->type == FileType::kDirectory) return ErrnoStatus("read " + path, EISDIR);
  if (e->file->data.size() > max_bytes) {
    return Status::ResourceExhausted(path + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  return e->file->data;
}

Result<FileType> MemEnv::Stat(const std::string& path) {
  std::lock_guard lock(mu_);
  const Entry* e = Resolve(path);
  if (e == nullptr) return ErrnoStatus("stat " + path, ENOENT);
  return e->type;
}

Result<std::unique_ptr<RandomAccessFile>> MemEnv::NewRandomAccessFile(const std::string& path) {
  std::lock_guard lock(mu_);
  const Entry* e = Resolve(path);
  if (e == nullptr) return ErrnoStatus("open " + path, ENOENT);
  if (e->type == FileType::kDirectory) return ErrnoStatus("read " + path, EISDIR);
  return std::unique_ptr<RandomAccessFile>(std::make_unique<RandomReader>(this, e->file, path));
}

Result<uint64_t> MemEnv::GetFileSize(const std::string& path) {
  std::lock_guard lock(mu_);
  const Entry* e = Resolve(path);
  if (e == nullptr) return ErrnoStatus("stat " + path, ENOENT);
  if (e->type == FileType::kDirectory) return ErrnoStatus("stat " + path, EISDIR);
  return static_cast<uint64_t>(e->file->data.size());
}

Result<mode_t> MemEnv::GetPermissions(const std::string& path) {
  std::lock_guard lock(mu_);
  const Entry* e = Resolve(path);
  if (e == nullptr) return ErrnoStatus("stat " + path, ENOENT);
  return e->mode;
}

Status MemEnv::Rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  const std::string f = Normal(from), t = Normal(to);
  const std::string what = "rename " + from + " to " + to;
  auto it = live_.find(f);
  if (it == live_.end()) return ErrnoStatus(what, ENOENT);
  if (it->second.type == FileType::kDirectory) return Status::IOError(what + ": MemEnv renames files and symlinks only");
  MERIDIAN_RETURN_IF_ERROR(CheckParent(t).WithContext(what));
  if (auto dst = live_.find(t); dst != live_.end() && dst->second.type == FileType::kDirectory) {
    return ErrnoStatus(what, EISDIR);
  }
  if (f == t) return Status::Ok();
  Entry moved = it->second;
  live_.erase(it);
  live_[t] = std::move(moved);
  return Status::Ok();
}

Status MemEnv::Exchange(const std::string& a, const std::string& b) {
  std::lock_guard lock(mu_);
  auto first = live_.find(Normal(a)), second = live_.find(Normal(b));
  const std::string what = "exchange " + a + " and " + b;
  if (first == live_.end() || second == live_.end()) return ErrnoStatus(what, ENOENT);
  std::swap(first->second, second->second);
  return Status::Ok();
}

Status MemEnv::SyncDirectory(const std::string& dir) {
  std::lock_guard lock(mu_);
  const std::string d = Normal(dir);
  const Entry* e = Resolve(d);
  if (e == nullptr) return ErrnoStatus("open directory " + dir, ENOENT);
  if (e->type != FileType::kDirectory) return ErrnoStatus("open directory " + dir, ENOTDIR);
  const std::string prefix = d == "/" ? "/" : d + "/";
  auto direct_child = [&prefix](const std::string& p) {
    return p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0 &&
           p.find('/', prefix.size()) == std::string::npos;
  };
  std::erase_if(durable_, [&](const auto& kv) { return direct_child(kv.first); });
  for (auto it = live_.lower_bound(prefix); it != live_.end() && it->first.starts_with(prefix); ++it) {
    if (direct_child(it->first)) durable_[it->first] = it->second;
  }
  return Status::Ok();
}

Status MemEnv::RemoveFile(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = live_.find(Normal(path));
  if (it == live_.end()) return ErrnoStatus("unlink " + path, ENOENT);
  if (it->second.type == FileType::kDirectory) return ErrnoStatus("unlink " + path, EISDIR);
  live_.erase(it);
  return Status::Ok();
}

Result<std::vector<std::string>> MemEnv::ListDirectory(const std::string& dir) {
  std::lock_guard lock(mu_);
  const std::string d = Normal(dir);
  if (d != "/") {
    auto it = live_.find(d);
    if (it == live_.end()) return ErrnoStatus("open directory " + dir, ENOENT);
    if (it->second.type != FileType::kDirectory) return ErrnoStatus("open directory " + dir, ENOTDIR);
  }
  const std::string prefix = d == "/" ? "/" : d + "/";
  std::vector<std::string> names;  // in map order, which is name order within one directory
  for (auto it = live_.lower_bound(prefix); it != live_.end() && it->first.starts_with(prefix); ++it) {
    if (it->first.find('/', prefix.size()) == std::string::npos) names.push_back(it->first.substr(prefix.size()));
  }
  return names;
}

Status MemEnv::CreateDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  MERIDIAN_RETURN_IF_ERROR(CheckParent(dir).WithContext("create directory"));
  std::string n = Normal(dir);
  if (n == "/" || live_.count(n)) return ErrnoStatus("create directory " + dir, EEXIST);
  live_[n] = Entry{FileType::kDirectory, nullptr, "", 0755};
  return Status::Ok();
}

Status MemEnv::SetPermissions(const std::string& path, mode_t mode) {
  std::lock_guard lock(mu_);
  const Entry* e = Resolve(path);
  if (e == nullptr) return ErrnoStatus("chmod " + path, ENOENT);
  // Resolve's entry, found again without const; the root (a shared constant)
  // stays at 0755.
  for (auto& [name, entry] : live_) {
    if (&entry == e) entry.mode = static_cast<mode_t>(mode & 07777);
  }
  return Status::Ok();
}

Status MemEnv::Symlink(const std::string& target, const std::string& link) {
  std::lock_guard lock(mu_);
  MERIDIAN_RETURN_IF_ERROR(CheckParent(link).WithContext("symlink"));
  std::string n = Normal(link);
  if (live_.count(n)) return ErrnoStatus("symlink " + link, EEXIST);
  live_[n] = Entry{FileType::kFile, nullptr, target, 0777};
  return Status::Ok();
}

Result<std::string> MemEnv::ReadLink(const std::string& link) {
  std::lock_guard lock(mu_);
  auto it = live_.find(Normal(link));
  if (it == live_.end()) return ErrnoStatus("readlink " + link, ENOENT);
  if (it->second.link_target.empty()) return ErrnoStatus("readlink " + link, EINVAL);
  return it->second.link_target;
}

Result<std::unique_ptr<FileLock>> MemEnv::LockFile(const std::string& path) {
  std::lock_guard lock(mu_);
  const std::string n = Normal(path);
  if (Resolve(n) == nullptr) {
    MERIDIAN_RETURN_IF_ERROR(CheckParent(path).WithContext("lock"));
    if (live_.count(n)) return ErrnoStatus("lock " + path, ENOENT);  // a dangling symlink
    live_[n] = Entry{FileType::kFile, std::make_shared<Contents>(), "", 0600};
  }
  if (locks_.count(n)) return Status::FailedPrecondition(path + " is locked by another holder");
  locks_[n] = ++lock_number_;
  return std::unique_ptr<FileLock>(std::make_unique<Lock>(this, n, lock_number_));
}

void MemEnv::PowerCut() {
  std::lock_guard lock(mu_);
  locks_.clear();  // their holders died with the machine
  for (auto& [path, entry] : durable_) {
    if (entry.file) entry.file->data.resize(entry.file->synced_bytes);
  }
  live_ = durable_;
  // An entry whose directory was lost is lost with it. Parents sort before
  // their children, so one pass in order sees every parent's fate first.
  for (auto it = live_.begin(); it != live_.end();) {
    const std::string parent = Parent(it->first);
    auto p = live_.find(parent);
    bool kept = parent == "/" ||
                (p != live_.end() && p->second.type == FileType::kDirectory && p->second.link_target.empty());
    it = kept ? std::next(it) : live_.erase(it);
  }
  durable_ = live_;
}

}  // namespace meridian
