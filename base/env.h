// The operating system as durable code sees it: files, directories, symlinks,
// sync and a clock, behind one interface (as LevelDB's Env), so that power
// cuts, full disks and failing syncs are tested without pulling plugs.
//
// Three implementations:
//   Env::Default()  the real file system (POSIX calls), one per process;
//   MemEnv          an in-memory file system that knows what was synced and
//                   can lose everything else in a simulated power cut;
//   FaultEnv        wraps any Env: fails a chosen mutating operation with an
//                   errno, counts the sync points an operation passes, and
//                   crashes (every later mutation fails) at a chosen one.
//
// Primitives: NewWritableFile, ReopenWritableFile (a file resumed: append at
// its end, Truncate), NewSequentialFile (streamed reads), NewRandomAccessFile
// (reads at an offset), ReadFile, Stat, GetFileSize, GetPermissions and
// SetPermissions, Rename, Exchange, SyncDirectory, RemoveFile, ListDirectory,
// CreateDir, Symlink, ReadLink, LockFile (one holder at a time) and the clock.
//
// The durability rules every program here follows are written once, on top
// of the primitives: WriteFileAtomic (temporary, sync, rename, directory
// sync), PublishFile (its last two steps, for a file written otherwise) and
// CreateDirectories (each new directory made durable in its parent).
// DigestOfFile streams a file through SHA-256.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"

namespace meridian {

// A file being written: bytes are appended; they are durable only once Sync
// returned OK. Close does not sync. On disk (Env::Default), an append of at
// least a block of zeros extends the file instead of writing them: the file
// system keeps whole blocks of them as holes, so a sparse artifact (a
// preallocated tensor store) takes no more disk than its data.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(ByteSpan data) = 0;
  // Cuts the file to its first `size` bytes (InvalidArgument past its end);
  // later appends follow them. Durable once Sync returned OK: until then a
  // power cut may leave either length (MemEnv keeps the shorter).
  virtual Status Truncate(uint64_t size) = 0;
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
};

// A file read from its first byte to its last.
class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Up to out.size() bytes into `out`: how many, 0 at the end of the file.
  virtual Result<size_t> Read(std::span<uint8_t> out) = 0;
};

// A file read where its reader asks (a delta's source, a target read back).
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Exactly out.size() bytes from `offset`; IOError when the file ends first.
  virtual Status Read(uint64_t offset, std::span<uint8_t> out) = 0;
};

// A lock on a file, held until destroyed (see Env::LockFile).
class FileLock {
 public:
  virtual ~FileLock() = default;
};

enum class FileType { kFile, kDirectory };

class Env {
 public:
  virtual ~Env() = default;

  // The real file system and SystemClock; lives as long as the process.
  static Env& Default();

  // ---- primitives. Errors: NotFound when a path (or its parent directory)
  // does not exist, PermissionDenied, else IOError; each names the path.

  // Creates a new file `path` (IOError when something is already there: never
  // truncates) with permission `mode` from its first byte, umask notwithstanding.
  // Neither the file nor its name is durable until Sync and a SyncDirectory
  // of its directory.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) = 0;
  // Opens `path` to append after the bytes it has (a download resumed), or
  // creates it empty with permission `mode` when there is none. A new file's
  // name is durable only once its directory was synced.
  virtual Result<std::unique_ptr<WritableFile>> ReopenWritableFile(const std::string& path, mode_t mode) = 0;
  // Opens a file to read it from the start (symlinks followed).
  virtual Result<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) = 0;
  // Opens a file to read it at any offset (symlinks followed). Bytes appended
  // later, through a WritableFile of the same file, can be read too.
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) = 0;
  // A whole file (symlinks followed); ResourceExhausted when it is larger than `max_bytes`.
  virtual Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) = 0;
  // What is at `path`, symlinks followed; NotFound when nothing (or a dangling link).
  virtual Result<FileType> Stat(const std::string& path) = 0;
  // The size in bytes of a file (symlinks followed).
  virtual Result<uint64_t> GetFileSize(const std::string& path) = 0;
  // The permission bits (07777) of a file or directory (symlinks followed).
  virtual Result<mode_t> GetPermissions(const std::string& path) = 0;
  // Renames a file or symlink, replacing what `to` names. Durable once the
  // directories of both were synced.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // Swaps what two existing paths in one directory name, atomically (two
  // symlinks: a crash leaves both as they were or both swapped). Durable once
  // the directory was synced. FailedPrecondition when the file system cannot
  // (Linux's RENAME_EXCHANGE refused), for the caller to do without.
  virtual Status Exchange(const std::string& a, const std::string& b) = 0;
  // Makes the creations, renames and removals inside `dir` durable.
  virtual Status SyncDirectory(const std::string& dir) = 0;
  // Removes a file or symlink (NotFound when there is none).
  virtual Status RemoveFile(const std::string& path) = 0;
  // The names in `dir` (no "." or ".."), sorted.
  virtual Result<std::vector<std::string>> ListDirectory(const std::string& dir) = 0;
  // Makes one directory (its parent must exist) with the default permission
  // (0777 less the umask). IOError when something is already there.
  virtual Status CreateDir(const std::string& dir) = 0;
  // Sets the permission of a file or directory.
  virtual Status SetPermissions(const std::string& path, mode_t mode) = 0;
  // Creates the symlink `link` pointing at `target` (not resolved); IOError
  // when something is already at `link`.
  virtual Status Symlink(const std::string& target, const std::string& link) = 0;
  // What the symlink `link` points at; NotFound when there is none.
  virtual Result<std::string> ReadLink(const std::string& link) = 0;
  // Locks `path` (created, 0600, when missing) for this holder until the
  // FileLock is destroyed; FailedPrecondition while another holder has it.
  // Advisory: it keeps out only those who ask for it too. The lock is
  // released with the process (and by a MemEnv's PowerCut).
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;

  virtual const Clock& clock() const = 0;

  // ---- built on the primitives, the same for every Env.

  bool Exists(const std::string& path) { return Stat(path).ok(); }
  // Atomically replaces `path` with `data`, created with permission `mode`
  // (secrets are never readable by others): a temporary beside it, synced,
  // renamed over it, the directory synced. A reader, and a power cut, sees the
  // old file or the new one, never half. The temporary is removed on failure.
  Status WriteFileAtomic(const std::string& path, ByteSpan data, mode_t mode = 0644);
  Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0644) {
    return WriteFileAtomic(path, AsBytes(data), mode);
  }
  // Moves the complete file `staged` (its bytes synced by its writer, beside
  // `path`) over `path` and syncs the directory: a reader, and a power cut,
  // sees the old file or the new one, never half. `staged` is removed on
  // failure; errors name `path`. WriteFileAtomic ends with it; a program that
  // writes a large output in place (pwrite, a delta's target) publishes it so.
  Status PublishFile(const std::string& staged, const std::string& path);
  // Like mkdir -p, and each directory it makes is made durable (its parent
  // synced); the last one gets permission `mode`, even when it existed.
  Status CreateDirectories(const std::string& dir, mode_t mode = 0755);
  // SHA-256 of a whole file, read as a stream (a model may be larger than memory).
  Result<Digest> DigestOfFile(const std::string& path);
};

// An in-memory file system for tests. Thread-safe. Paths are absolute
// ("/state/outbox/x.json"; a relative one is taken from "/"), "/" exists.
//
// It remembers what a disk would keep through a power cut: per file, how many
// of its bytes were synced; per directory, its entries as of its last
// SyncDirectory. PowerCut() drops every unsynced byte and undoes every
// creation, rename, removal and symlink whose directory was not synced since
// (what LevelDB's and RocksDB's fault-injection test envs do); entries under
// a directory that itself was lost go with it. A truncation not yet synced
// counts as synced down to the new size: a cut keeps the bytes both lengths
// share. Permissions are kept (a new directory's are 0755); locks are held in
// memory and all released by PowerCut.
class MemEnv final : public Env {
 public:
  explicit MemEnv(const Clock& clock = SystemClock::Get()) : clock_(&clock) {}

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) override;
  Result<std::unique_ptr<WritableFile>> ReopenWritableFile(const std::string& path, mode_t mode) override;
  Result<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override;
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) override;
  Result<FileType> Stat(const std::string& path) override;
  Result<uint64_t> GetFileSize(const std::string& path) override;
  Result<mode_t> GetPermissions(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Exchange(const std::string& a, const std::string& b) override;
  Status SyncDirectory(const std::string& dir) override;
  Status RemoveFile(const std::string& path) override;
  Result<std::vector<std::string>> ListDirectory(const std::string& dir) override;
  Status CreateDir(const std::string& dir) override;
  Status SetPermissions(const std::string& path, mode_t mode) override;
  Status Symlink(const std::string& target, const std::string& link) override;
  Result<std::string> ReadLink(const std::string& link) override;
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  const Clock& clock() const override { return *clock_; }

  // The machine loses power and comes back: see above. Open WritableFiles
  // must not be used afterwards.
  void PowerCut();

 private:
  struct Contents {
    std::string data;
    size_t synced_bytes = 0;
  };
  struct Entry {
    FileType type = FileType::kFile;
    std::shared_ptr<Contents> file;  // kFile and not a symlink
    std::string link_target;         // a symlink when not empty
    mode_t mode = 0755;
  };
  using Tree = std::map<std::string, Entry>;  // absolute normalised path -> entry
  class File;
  class Reader;
  class RandomReader;
  class Lock;

  // The entry `path` names after following symlinks; nullptr when none.
  const Entry* Resolve(const std::string& path) const;
  Status CheckParent(const std::string& path) const;

  const Clock* clock_;
  std::mutex mu_;
  Tree live_;     // what programs see now
  Tree durable_;  // what a power cut leaves
  std::map<std::string, uint64_t> locks_;  // locked path -> the holder's number
  uint64_t lock_number_ = 0;
};

// Wraps an Env to inject faults and count sync points. Thread-safe.
// Mutating operations: NewWritableFile, ReopenWritableFile, Append, Truncate,
// Sync, Close, Rename, Exchange, SyncDirectory, RemoveFile, CreateDir,
// SetPermissions, Symlink. Sync points: a file's Sync and SyncDirectory.
// LockFile and the reads go straight through.
class FaultEnv final : public Env {
 public:
  explicit FaultEnv(Env& base) : base_(&base) {}

  // The `n`-th mutating operation from now (1 = the next) fails with `err`
  // (ENOSPC, EIO, …) without reaching the wrapped Env; the others go through.
  void FailNthMutation(uint64_t n, int err);
  // Where a simulated crash stops the machine, counted in sync points passed
  // from now: kAfterSync stops right after the `k`-th sync point (k = 0: at
  // once); kBeforeNextSync lets every mutation after it through and stops at
  // the next sync point instead, so unsynced data and entries are left
  // behind. Once stopped, every mutating operation fails with EIO.
  enum class CrashPoint { kAfterSync, kBeforeNextSync };
  void CrashAt(uint64_t k, CrashPoint where);
  bool crashed() const;

  // Sync points passed (succeeded) and mutating operations attempted since construction.
  uint64_t sync_points() const;
  uint64_t mutations() const;

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) override;
  Result<std::unique_ptr<WritableFile>> ReopenWritableFile(const std::string& path, mode_t mode) override;
  Result<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override {
    return base_->NewSequentialFile(path);
  }
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return base_->NewRandomAccessFile(path);
  }
  Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) override {
    return base_->ReadFile(path, max_bytes);
  }
  Result<FileType> Stat(const std::string& path) override { return base_->Stat(path); }
  Result<uint64_t> GetFileSize(const std::string& path) override { return base_->GetFileSize(path); }
  Result<mode_t> GetPermissions(const std::string& path) override { return base_->GetPermissions(path); }
  Status Rename(const std::string& from, const std::string& to) override;
  Status Exchange(const std::string& a, const std::string& b) override;
  Status SyncDirectory(const std::string& dir) override;
  Status RemoveFile(const std::string& path) override;
  Result<std::vector<std::string>> ListDirectory(const std::string& dir) override {
    return base_->ListDirectory(dir);
  }
  Status CreateDir(const std::string& dir) override;
  Status SetPermissions(const std::string& path, mode_t mode) override;
  Status Symlink(const std::string& target, const std::string& link) override;
  Result<std::string> ReadLink(const std::string& link) override { return base_->ReadLink(link); }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override { return base_->LockFile(path); }
  const Clock& clock() const override { return base_->clock(); }

 private:
  class File;
  // Decides the fate of one mutating operation on `what` before it runs:
  // OK to go on, or the injected error (or EIO once crashed).
  Status Admit(const std::string& what, bool sync_point);
  // Admit, then `op` on the wrapped Env, counting a sync point that passed.
  Status Run(const std::string& what, bool sync_point, const std::function<Status()>& op);

  Env* base_;
  mutable std::mutex mu_;
  uint64_t mutations_ = 0;
  uint64_t sync_points_ = 0;
  uint64_t fail_at_ = 0;  // mutation number that fails; 0: none
  int fail_errno_ = 0;
  bool crash_armed_ = false;
  uint64_t crash_at_ = 0;  // in sync points
  CrashPoint crash_where_ = CrashPoint::kAfterSync;
  bool crashed_ = false;
};

}  // namespace meridian
