// A RocksDB file system that can lose power: see tests/power_cut_fs.h.
#include "tests/power_cut_fs.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <utility>

#include <rocksdb/system_clock.h>

namespace meridian::testing {

namespace {

namespace fs = std::filesystem;

// One spelling per path, so a file's directory matches the directory synced.
std::string Normal(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (!p.has_filename() && p.has_parent_path()) p = p.parent_path();  // "dir/" is "dir"
  return p.string();
}

std::string DirOf(const std::string& path) { return fs::path(path).parent_path().string(); }

rocksdb::IOStatus PowerIsOff(const std::string& what) { return rocksdb::IOStatus::IOError("power cut", what); }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("power cut fs: cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw std::runtime_error("power cut fs: cannot write " + path);
}

}  // namespace

// A file read at offsets (table and blob files): its reads fail while
// FailReads names it.
class PowerCutFs::ReadableFile final : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  ReadableFile(PowerCutFs& fs, std::string path, std::unique_ptr<rocksdb::FSRandomAccessFile> target)
      : FSRandomAccessFileOwnerWrapper(std::move(target)), fs_(fs), path_(std::move(path)) {}

  rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& options, rocksdb::Slice* result,
                         char* scratch, rocksdb::IODebugContext* dbg) const override {
    if (rocksdb::IOStatus refused = fs_.Reading(path_); !refused.ok()) return refused;
    return FSRandomAccessFileOwnerWrapper::Read(offset, n, options, result, scratch, dbg);
  }
  rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* reqs, size_t num_reqs, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus refused = fs_.Reading(path_); !refused.ok()) {
      for (size_t i = 0; i < num_reqs; ++i) reqs[i].status = refused;
      return refused;
    }
    return FSRandomAccessFileOwnerWrapper::MultiRead(reqs, num_reqs, options, dbg);
  }

 private:
  PowerCutFs& fs_;
  const std::string path_;
};

// A file being written: its writes and syncs go through the file system's
// books (and fail once power is off). Close only releases the descriptor:
// it makes nothing durable, and whatever it does is undone by the cut.
class PowerCutFs::File final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  File(PowerCutFs& fs, std::string path, std::unique_ptr<rocksdb::FSWritableFile> target)
      : FSWritableFileOwnerWrapper(std::move(target)), fs_(fs), path_(std::move(path)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    return Write(data.size(), [&] { return FSWritableFileOwnerWrapper::Append(data, options, dbg); });
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    return Write(data.size(), [&] { return FSWritableFileOwnerWrapper::Append(data, options, info, dbg); });
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                     rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerCutFs: positioned appends (direct I/O) are not modelled");
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                     const rocksdb::DataVerificationInfo&, rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerCutFs: positioned appends (direct I/O) are not modelled");
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    std::lock_guard lock(fs_.mu_);
    if (rocksdb::IOStatus refused = fs_.Mutating(path_); !refused.ok()) return refused;
    rocksdb::IOStatus s = FSWritableFileOwnerWrapper::Truncate(size, options, dbg);
    if (s.ok()) {
      Written& w = fs_.written_[path_];
      w.bytes = size;
      w.synced = std::min(w.synced, w.bytes);
    }
    return s;
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    std::lock_guard lock(fs_.mu_);
    if (fs_.down_) return PowerIsOff(path_);
    return FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, options, dbg);
  }
  rocksdb::IOStatus Allocate(uint64_t offset, uint64_t len, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    std::lock_guard lock(fs_.mu_);
    if (fs_.down_) return PowerIsOff(path_);
    return FSWritableFileOwnerWrapper::Allocate(offset, len, options, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return SyncPoint(); }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return SyncPoint(); }

 private:
  template <typename Op>
  rocksdb::IOStatus Write(size_t bytes, Op op) {
    std::lock_guard lock(fs_.mu_);
    if (rocksdb::IOStatus refused = fs_.Mutating(path_); !refused.ok()) return refused;
    rocksdb::IOStatus s = op();
    if (s.ok()) fs_.written_[path_].bytes += bytes;
    return s;
  }
  rocksdb::IOStatus SyncPoint() {
    std::lock_guard lock(fs_.mu_);
    if (fs_.SyncRefused()) return PowerIsOff(path_);
    if (rocksdb::IOStatus refused = fs_.Mutating(path_); !refused.ok()) return refused;
    Written& w = fs_.written_[path_];
    w.synced = w.bytes;
    fs_.Synced();
    return rocksdb::IOStatus::OK();
  }

  PowerCutFs& fs_;
  const std::string path_;
};

// A directory: its syncs make the changes inside it durable.
class PowerCutFs::Directory final : public rocksdb::FSDirectoryWrapper {
 public:
  Directory(PowerCutFs& fs, std::string path, std::unique_ptr<rocksdb::FSDirectory> target)
      : FSDirectoryWrapper(std::move(target)), fs_(fs), path_(std::move(path)) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return SyncPoint(); }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions&, rocksdb::IODebugContext*,
                                        const rocksdb::DirFsyncOptions&) override {
    return SyncPoint();
  }

 private:
  rocksdb::IOStatus SyncPoint() {
    std::lock_guard lock(fs_.mu_);
    if (fs_.SyncRefused()) return PowerIsOff(path_);
    if (rocksdb::IOStatus refused = fs_.Mutating(path_); !refused.ok()) return refused;
    fs_.pending_.erase(path_);
    fs_.Synced();
    return rocksdb::IOStatus::OK();
  }

  PowerCutFs& fs_;
  const std::string path_;
};

namespace {

// RocksDB pauses a second after a failed flush or compaction before it goes
// on (DBImpl::BackgroundCallFlush): with power off each one fails, and every
// run would wait for nothing. This clock skips RocksDB's pauses.
class NoPauseClock final : public rocksdb::SystemClockWrapper {
 public:
  using SystemClockWrapper::SystemClockWrapper;
  const char* Name() const override { return "NoPauseClock"; }
  void SleepForMicroseconds(int) override {}
};

// Env::Default()'s threads, with the file system and the clock above.
class PowerCutEnv final : public rocksdb::EnvWrapper {
 public:
  explicit PowerCutEnv(const std::shared_ptr<PowerCutFs>& fs) : EnvWrapper(rocksdb::NewCompositeEnv(fs)) {
    file_system_ = fs;
    system_clock_ = std::make_shared<NoPauseClock>(target()->GetSystemClock());
  }
  const char* Name() const override { return "PowerCutEnv"; }
};

}  // namespace

PowerCutFs::PowerCutFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}

std::pair<std::shared_ptr<PowerCutFs>, std::unique_ptr<rocksdb::Env>> PowerCutFs::MakeEnv() {
  auto fs = std::make_shared<PowerCutFs>();
  std::unique_ptr<rocksdb::Env> env = std::make_unique<PowerCutEnv>(fs);
  return {std::move(fs), std::move(env)};
}

void PowerCutFs::CutAfter(uint64_t k, bool unsynced_tail) {
  std::lock_guard lock(mu_);
  cut_at_ = sync_points_ + k;
  unsynced_tail_ = unsynced_tail;
  down_ = k == 0 && !unsynced_tail;
}

std::optional<std::thread::id> PowerCutFs::cut_thread() const {
  std::lock_guard lock(mu_);
  return cut_thread_;
}

bool PowerCutFs::down() const {
  std::lock_guard lock(mu_);
  return down_;
}

uint64_t PowerCutFs::sync_points() const {
  std::lock_guard lock(mu_);
  return sync_points_;
}

void PowerCutFs::FailMutation(uint64_t n, bool no_space) {
  std::lock_guard lock(mu_);
  fail_at_ = mutations_ + n;
  fail_no_space_ = no_space;
}

uint64_t PowerCutFs::mutations() const {
  std::lock_guard lock(mu_);
  return mutations_;
}

void PowerCutFs::FailReads(std::string suffix) {
  std::lock_guard lock(mu_);
  fail_reads_suffix_ = std::move(suffix);
}

uint64_t PowerCutFs::failed_reads() const {
  std::lock_guard lock(mu_);
  return failed_reads_;
}

rocksdb::IOStatus PowerCutFs::Reading(const std::string& path) {
  std::lock_guard lock(mu_);
  if (fail_reads_suffix_.empty() || !path.ends_with(fail_reads_suffix_)) return rocksdb::IOStatus::OK();
  ++failed_reads_;
  return rocksdb::IOStatus::IOError("injected EIO", path);
}

rocksdb::IOStatus PowerCutFs::NewRandomAccessFile(const std::string& fname, const rocksdb::FileOptions& options,
                                                  std::unique_ptr<rocksdb::FSRandomAccessFile>* r,
                                                  rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSRandomAccessFile> target;
  rocksdb::IOStatus s = FileSystemWrapper::NewRandomAccessFile(fname, options, &target, dbg);
  if (!s.ok()) return s;
  *r = std::make_unique<ReadableFile>(*this, Normal(fname), std::move(target));
  return s;
}

rocksdb::IOStatus PowerCutFs::Mutating(const std::string& what) {
  if (down_) return PowerIsOff(what);
  if (++mutations_ != fail_at_) return rocksdb::IOStatus::OK();
  fail_at_.reset();
  if (fail_no_space_) return rocksdb::IOStatus::NoSpace("injected ENOSPC", what);
  return rocksdb::IOStatus::IOError("injected EIO", what);
}

void PowerCutFs::Synced() {
  ++sync_points_;
  if (cut_at_ && !unsynced_tail_ && sync_points_ >= *cut_at_) down_ = true;
}

bool PowerCutFs::SyncRefused() {
  if (!down_ && cut_at_ && unsynced_tail_ && sync_points_ >= *cut_at_) {
    down_ = true;
    cut_thread_ = std::this_thread::get_id();
  }
  return down_;
}

std::optional<std::string> PowerCutFs::DurableBytes(const std::string& path) const {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::string bytes = ReadAll(path);
  if (auto w = written_.find(path); w != written_.end() && bytes.size() > w->second.synced) {
    bytes.resize(w->second.synced);
  }
  return bytes;
}

void PowerCutFs::Record(Change change) { pending_[DirOf(change.path)].push_back(std::move(change)); }

rocksdb::IOStatus PowerCutFs::NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                                              rocksdb::IODebugContext* dbg) {
  const std::string f = Normal(fname);
  std::lock_guard lock(mu_);
  if (rocksdb::IOStatus refused = Mutating(f); !refused.ok()) return refused;
  std::optional<std::string> displaced = DurableBytes(f);  // NewWritableFile truncates what is there
  std::unique_ptr<rocksdb::FSWritableFile> target;
  rocksdb::IOStatus s = FileSystemWrapper::NewWritableFile(fname, options, &target, dbg);
  if (!s.ok()) return s;
  Record(Change{.kind = Change::kCreated, .path = f, .from = "", .displaced = std::move(displaced)});
  written_[f] = Written{};
  *r = std::make_unique<File>(*this, f, std::move(target));
  return s;
}

rocksdb::IOStatus PowerCutFs::ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                                 std::unique_ptr<rocksdb::FSWritableFile>* r,
                                                 rocksdb::IODebugContext* dbg) {
  const std::string f = Normal(fname);
  std::lock_guard lock(mu_);
  if (rocksdb::IOStatus refused = Mutating(f); !refused.ok()) return refused;
  std::error_code ec;
  const bool existed = fs::is_regular_file(f, ec);
  std::unique_ptr<rocksdb::FSWritableFile> target;
  rocksdb::IOStatus s = FileSystemWrapper::ReopenWritableFile(fname, options, &target, dbg);
  if (!s.ok()) return s;
  if (!existed) {
    Record(Change{.kind = Change::kCreated, .path = f, .from = "", .displaced = std::nullopt});
    written_[f] = Written{};
  } else if (!written_.contains(f)) {
    const uint64_t size = fs::file_size(f);  // it was durable, all of it
    written_[f] = Written{.bytes = size, .synced = size};
  }
  *r = std::make_unique<File>(*this, f, std::move(target));
  return s;
}

rocksdb::IOStatus PowerCutFs::ReuseWritableFile(const std::string&, const std::string&, const rocksdb::FileOptions&,
                                                std::unique_ptr<rocksdb::FSWritableFile>*, rocksdb::IODebugContext*) {
  return rocksdb::IOStatus::NotSupported("PowerCutFs: recycled log files are not modelled");
}

rocksdb::IOStatus PowerCutFs::NewRandomRWFile(const std::string&, const rocksdb::FileOptions&,
                                              std::unique_ptr<rocksdb::FSRandomRWFile>*, rocksdb::IODebugContext*) {
  return rocksdb::IOStatus::NotSupported("PowerCutFs: files written in place are not modelled");
}

rocksdb::IOStatus PowerCutFs::LinkFile(const std::string&, const std::string&, const rocksdb::IOOptions&,
                                       rocksdb::IODebugContext*) {
  return rocksdb::IOStatus::NotSupported("PowerCutFs: hard links are not modelled");
}

rocksdb::IOStatus PowerCutFs::NewDirectory(const std::string& name, const rocksdb::IOOptions& options,
                                           std::unique_ptr<rocksdb::FSDirectory>* r, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSDirectory> target;
  rocksdb::IOStatus s = FileSystemWrapper::NewDirectory(name, options, &target, dbg);
  if (s.ok()) *r = std::make_unique<Directory>(*this, Normal(name), std::move(target));
  return s;
}

rocksdb::IOStatus PowerCutFs::DeleteFile(const std::string& fname, const rocksdb::IOOptions& options,
                                         rocksdb::IODebugContext* dbg) {
  const std::string f = Normal(fname);
  std::lock_guard lock(mu_);
  if (rocksdb::IOStatus refused = Mutating(f); !refused.ok()) return refused;
  std::optional<std::string> displaced = DurableBytes(f);
  rocksdb::IOStatus s = FileSystemWrapper::DeleteFile(fname, options, dbg);
  if (!s.ok()) return s;
  Record(Change{.kind = Change::kDeleted, .path = f, .from = "", .displaced = std::move(displaced)});
  written_.erase(f);
  return s;
}

rocksdb::IOStatus PowerCutFs::RenameFile(const std::string& from_name, const std::string& to_name,
                                         const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) {
  const std::string from = Normal(from_name), to = Normal(to_name);
  std::lock_guard lock(mu_);
  if (rocksdb::IOStatus refused = Mutating(from + " to " + to); !refused.ok()) return refused;
  std::optional<std::string> displaced = DurableBytes(to);
  rocksdb::IOStatus s = FileSystemWrapper::RenameFile(from_name, to_name, options, dbg);
  if (!s.ok()) return s;
  Record(Change{.kind = Change::kRenamed, .path = to, .from = from, .displaced = std::move(displaced)});
  written_.erase(to);
  if (auto w = written_.find(from); w != written_.end()) {
    written_[to] = w->second;
    written_.erase(from);
  }
  return s;
}

rocksdb::IOStatus PowerCutFs::Truncate(const std::string& fname, size_t size, const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) {
  const std::string f = Normal(fname);
  std::lock_guard lock(mu_);
  if (rocksdb::IOStatus refused = Mutating(f); !refused.ok()) return refused;
  rocksdb::IOStatus s = FileSystemWrapper::Truncate(fname, size, options, dbg);
  if (s.ok()) {
    if (auto w = written_.find(f); w != written_.end()) {
      w->second.bytes = size;
      w->second.synced = std::min<uint64_t>(w->second.synced, size);
    }
  }
  return s;
}

rocksdb::IOStatus PowerCutFs::CreateDir(const std::string& d, const rocksdb::IOOptions& options,
                                        rocksdb::IODebugContext* dbg) {
  if (down()) return PowerIsOff(d);
  return FileSystemWrapper::CreateDir(d, options, dbg);
}

rocksdb::IOStatus PowerCutFs::CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions& options,
                                                 rocksdb::IODebugContext* dbg) {
  if (down()) return PowerIsOff(d);
  return FileSystemWrapper::CreateDirIfMissing(d, options, dbg);
}

rocksdb::IOStatus PowerCutFs::DeleteDir(const std::string& d, const rocksdb::IOOptions& options,
                                        rocksdb::IODebugContext* dbg) {
  if (down()) return PowerIsOff(d);
  return FileSystemWrapper::DeleteDir(d, options, dbg);
}

void PowerCutFs::PowerComesBack() {
  std::lock_guard lock(mu_);
  for (const auto& [path, w] : written_) {
    std::error_code ec;
    if (fs::is_regular_file(path, ec) && fs::file_size(path) > w.synced) fs::resize_file(path, w.synced);
  }
  for (auto& entry : pending_) {
    for (auto c = entry.second.rbegin(); c != entry.second.rend(); ++c) {
      switch (c->kind) {
        case Change::kCreated:
          fs::remove(c->path);
          break;
        case Change::kRenamed:
          fs::rename(c->path, c->from);
          break;
        case Change::kDeleted:
          break;
      }
      if (c->displaced) WriteAll(c->path, *c->displaced);
    }
  }
  written_.clear();
  pending_.clear();
  cut_at_.reset();
  unsynced_tail_ = false;
  down_ = false;
  cut_thread_.reset();
  fail_at_.reset();
}

}  // namespace meridian::testing
