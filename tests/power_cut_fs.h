// A RocksDB file system that can lose power, for the store's power-cut tests
// (tests/store_power_cut_test.cc): it wraps the real one and remembers what a
// disk would keep, as RocksDB's own FaultInjectionTestFS
// (utilities/fault_injection_fs.h, not shipped by Debian) and Meridian's
// MemEnv (base/env.h) do.
//
// What survives a power cut:
//  - of a file written through it, the bytes up to its last Sync or Fsync
//    (RangeSync is sync_file_range: it promises nothing durable);
//  - of a directory, the entries as of its last FSDirectory::Fsync (or
//    FsyncWithDirOptions): a file created, renamed or deleted since is
//    deleted, renamed back or brought back (with what of it was durable).
// A file it never wrote counts as durable whole. Directories themselves are
// never undone, and a rename is taken to stay in one directory (RocksDB's
// only kind: a temporary to CURRENT or OPTIONS). Syncs are recorded, not
// made: the machine running the tests keeps its power, and real fsyncs
// would only slow every run down.
//
// Sync points are the file and directory syncs that succeed. Armed with
// CutAfter(k), the machine stops right after the k-th sync point from then:
// every write, sync, rename, creation and deletion fails with an IOError, so
// the database sees its writes fail and is then closed. PowerComesBack()
// then leaves on disk only what was durable, for a reopen on the real file
// system (rocksdb::Env::Default()). FailMutation(n, …) instead fails one
// write, sync, creation, rename or deletion with ENOSPC or EIO, as a full or
// failing disk does, and lets the rest through. FailReads(suffix) fails every
// read of the files so named with EIO, as a disk with bad sectors does.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

namespace meridian::testing {

class PowerCutFs final : public rocksdb::FileSystemWrapper {
 public:
  PowerCutFs();

  // An Env over a new one of these (StoreOptions::env), which shares it.
  // Its clock skips RocksDB's pause after a failed flush or compaction.
  static std::pair<std::shared_ptr<PowerCutFs>, std::unique_ptr<rocksdb::Env>> MakeEnv();

  static const char* kClassName() { return "PowerCutFs"; }
  const char* Name() const override { return kClassName(); }

  // Power goes off right after the k-th sync point from now (k = 0: at once).
  // With `unsynced_tail`, writes after that sync point still reach the files
  // (the page cache) and power goes off at the next sync point instead: the
  // tail they leave is then dropped.
  void CutAfter(uint64_t k, bool unsynced_tail = false);
  bool down() const;
  // With `unsynced_tail`: the thread whose sync power went off at, once it has.
  std::optional<std::thread::id> cut_thread() const;
  // Sync points passed since construction.
  uint64_t sync_points() const;

  // The n-th mutating call from now (1 = the next) fails once, without
  // reaching the disk: with IOStatus::NoSpace (ENOSPC) when `no_space`, else
  // an IOError (EIO); the calls before and after it go through. Mutating
  // calls: a file's creation (new or reopened), append, truncation and sync;
  // a directory's sync; a file's deletion and rename.
  void FailMutation(uint64_t n, bool no_space);
  // Mutating calls attempted since construction (failed ones included).
  uint64_t mutations() const;

  // From now on every read of a file whose name ends in `suffix` (".blob")
  // fails with an IOError (EIO), of files opened before too; "" (the
  // default): reads pass through.
  void FailReads(std::string suffix);
  // Reads FailReads failed since construction.
  uint64_t failed_reads() const;

  // Power returns: every file loses what was not synced and every directory
  // change not synced is undone, on the real disk. Call it with nothing open
  // on this file system (the store closed). Afterwards it is up again, with
  // nothing pending and no cut armed.
  void PowerComesBack();

  // --- rocksdb::FileSystem: the mutating calls are watched; reads pass through
  // (but for FailReads).
  rocksdb::IOStatus NewRandomAccessFile(const std::string& f, const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* r,
                                        rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& options,
                                 std::unique_ptr<rocksdb::FSDirectory>* r, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& f, size_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDir(const std::string& d, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteDir(const std::string& d, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;

 private:
  class File;
  class ReadableFile;
  class Directory;

  // A directory change not synced yet, undone by a power cut.
  struct Change {
    enum Kind { kCreated, kRenamed, kDeleted } kind;
    std::string path;                      // created, deleted, or renamed to
    std::string from;                      // kRenamed: the old name
    std::optional<std::string> displaced;  // the durable bytes of what `path` named before (kDeleted, kRenamed
                                           // over a file), put back when undone
  };
  struct Written {
    uint64_t bytes = 0;   // written so far
    uint64_t synced = 0;  // durable
  };

  // Counts a mutating call about to be made on `what`; not OK when it is the
  // one FailMutation chose (or power is off), which the caller then returns.
  rocksdb::IOStatus Mutating(const std::string& what);
  // Not OK when FailReads names `path` (counted).
  rocksdb::IOStatus Reading(const std::string& path);
  // Counts a sync point that succeeded; power goes off when the cut says so.
  void Synced();
  // Whether a sync about to run must fail: power is off, or due to go off at
  // this sync (CutAfter's unsynced_tail), which turns it off.
  bool SyncRefused();
  // What of `path` would survive a power cut now: its synced bytes if it is
  // being written, else all of it (it was durable before); nullopt: no file.
  std::optional<std::string> DurableBytes(const std::string& path) const;
  void Record(Change change);

  mutable std::mutex mu_;
  uint64_t sync_points_ = 0;
  std::optional<uint64_t> cut_at_;  // in sync points
  bool unsynced_tail_ = false;
  bool down_ = false;
  std::optional<std::thread::id> cut_thread_;
  uint64_t mutations_ = 0;
  std::optional<uint64_t> fail_at_;  // in mutations
  bool fail_no_space_ = false;
  std::string fail_reads_suffix_;
  uint64_t failed_reads_ = 0;
  std::map<std::string, Written> written_;                // by path: files written since they were opened
  std::map<std::string, std::vector<Change>> pending_;   // by directory, oldest first
};

}  // namespace meridian::testing
