// Tests of base/env.h: the POSIX Env on a temp dir, MemEnv's file system and
// its power cuts, FaultEnv's injected errors, sync-point counts and crashes.
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "base/env.h"

using namespace meridian;

namespace {

Status WriteUnsynced(Env& env, const std::string& path, std::string_view data) {
  Result<std::unique_ptr<WritableFile>> f = env.NewWritableFile(path, 0644);
  if (!f.ok()) return f.status();
  MERIDIAN_RETURN_IF_ERROR((*f)->Append(AsBytes(data)));
  return (*f)->Close();
}

std::string Read(Env& env, const std::string& path) {
  Result<std::string> text = env.ReadFile(path, 1 << 20);
  return text.ok() ? *text : "<" + text.status().ToString() + ">";
}

// What every Env must do alike, run on the real one and on MemEnv.
void CheckPrimitives(Env& env, const std::string& root) {
  const std::string d = root + "/a/b";
  REQUIRE(env.CreateDirectories(d, 0700).ok());
  REQUIRE(env.CreateDirectories(d, 0700).ok());  // already there: fine
  CHECK(env.Stat(d).value() == FileType::kDirectory);
  CHECK(env.WriteFileAtomic(d + "/f", std::string_view("one")).ok());
  CHECK(env.WriteFileAtomic(d + "/f", std::string_view("two!")).ok());
  CHECK(Read(env, d + "/f") == "two!");
  CHECK(env.Stat(d + "/f").value() == FileType::kFile);
  CHECK(env.ReadFile(d + "/f", 3).status().code() == Status::Code::kResourceExhausted);
  CHECK(env.ReadFile(d + "/nope", 3).status().code() == Status::Code::kNotFound);
  CHECK(env.WriteFileAtomic(root + "/no-such-dir/f", std::string_view("x")).code() == Status::Code::kNotFound);
  CHECK(!env.NewWritableFile(d + "/f", 0644).ok());  // never over an existing file

  REQUIRE(env.Symlink("f", d + "/link").ok());
  CHECK(env.ReadLink(d + "/link").value() == "f");
  CHECK(Read(env, d + "/link") == "two!");  // followed
  CHECK(!env.Symlink("g", d + "/link").ok());
  CHECK(env.ReadLink(d + "/none").status().code() == Status::Code::kNotFound);
  REQUIRE(env.Symlink("missing", d + "/dangling").ok());
  CHECK(!env.Exists(d + "/dangling"));

  REQUIRE(env.Rename(d + "/link", d + "/moved").ok());
  CHECK(env.ReadLink(d + "/moved").value() == "f");
  CHECK(env.Rename(d + "/link", d + "/x").code() == Status::Code::kNotFound);
  REQUIRE(env.Symlink("elsewhere", d + "/swap").ok());
  REQUIRE(env.Exchange(d + "/moved", d + "/swap").ok());
  CHECK(env.ReadLink(d + "/moved").value() == "elsewhere");
  CHECK(env.ReadLink(d + "/swap").value() == "f");
  CHECK(env.Exchange(d + "/moved", d + "/none").code() == Status::Code::kNotFound);
  REQUIRE(env.Exchange(d + "/swap", d + "/moved").ok());
  CHECK(env.ReadLink(d + "/moved").value() == "f");
  REQUIRE(env.RemoveFile(d + "/swap").ok());
  CHECK(env.ListDirectory(d).value() == std::vector<std::string>{"dangling", "f", "moved"});
  CHECK(env.ListDirectory(root + "/a").value() == std::vector<std::string>{"b"});
  REQUIRE(env.RemoveFile(d + "/dangling").ok());
  CHECK(env.RemoveFile(d + "/dangling").code() == Status::Code::kNotFound);
  CHECK(!env.RemoveFile(d).ok());  // a directory is not a file
  CHECK(env.ListDirectory(root + "/nope").status().code() == Status::Code::kNotFound);
  CHECK(env.SyncDirectory(d).ok());
  CHECK(env.SyncDirectory(root + "/nope").code() == Status::Code::kNotFound);
  CHECK(!env.CreateDirectories(d + "/f/g").ok());  // through a file
}

// Reopening, appending, truncating, streaming reads, sizes, modes and locks.
void CheckResumedFilesAndLocks(Env& env, const std::string& root) {
  const std::string d = root + "/r";
  REQUIRE(env.CreateDirectories(d, 0700).ok());
  CHECK(env.GetPermissions(d).value() == 0700);
  {
    Result<std::unique_ptr<WritableFile>> f = env.ReopenWritableFile(d + "/part", 0640);  // created
    REQUIRE(f.ok());
    REQUIRE((*f)->Append(AsBytes(std::string_view("hello "))).ok());
    REQUIRE((*f)->Close().ok());
  }
  CHECK(env.GetPermissions(d + "/part").value() == 0640);
  {
    Result<std::unique_ptr<WritableFile>> f = env.ReopenWritableFile(d + "/part", 0644);  // appended to
    REQUIRE(f.ok());
    REQUIRE((*f)->Append(AsBytes(std::string_view("world"))).ok());
    CHECK(env.GetFileSize(d + "/part").value() == 11);
    REQUIRE((*f)->Truncate(5).ok());
    CHECK((*f)->Truncate(6).code() == Status::Code::kInvalidArgument);  // past the end
    REQUIRE((*f)->Append(AsBytes(std::string_view("!"))).ok());  // follows the kept bytes
    REQUIRE((*f)->Sync().ok());
    REQUIRE((*f)->Close().ok());
  }
  CHECK(Read(env, d + "/part") == "hello!");
  CHECK(env.GetFileSize(d + "/part").value() == 6);
  CHECK(env.GetFileSize(d + "/nope").status().code() == Status::Code::kNotFound);
  CHECK(env.ReopenWritableFile(root + "/no-such-dir/part", 0644).status().code() == Status::Code::kNotFound);
  {  // A file written from its first byte truncates the same way.
    Result<std::unique_ptr<WritableFile>> f = env.NewWritableFile(d + "/new", 0600);
    REQUIRE(f.ok());
    REQUIRE((*f)->Append(AsBytes(std::string_view("abcdef"))).ok());
    REQUIRE((*f)->Truncate(2).ok());
    REQUIRE((*f)->Append(AsBytes(std::string_view("Z"))).ok());
    REQUIRE((*f)->Close().ok());
    CHECK(Read(env, d + "/new") == "abZ");
    CHECK(env.GetPermissions(d + "/new").value() == 0600);
    REQUIRE(env.SetPermissions(d + "/new", 0644).ok());
    CHECK(env.GetPermissions(d + "/new").value() == 0644);
  }

  // A streamed read, in pieces smaller than the file.
  std::string big(100'000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  REQUIRE(env.WriteFileAtomic(d + "/big", big).ok());
  Result<std::unique_ptr<SequentialFile>> in = env.NewSequentialFile(d + "/big");
  REQUIRE(in.ok());
  std::string back;
  uint8_t buf[7'000];
  for (;;) {
    Result<size_t> n = (*in)->Read(buf);
    REQUIRE(n.ok());
    CHECK(*n <= sizeof(buf));
    if (*n == 0) break;
    back.append(reinterpret_cast<const char*>(buf), *n);
  }
  CHECK(back == big);
  CHECK(env.DigestOfFile(d + "/big").value() == Digest::Of(big));
  CHECK(env.DigestOfFile(d + "/nope").status().code() == Status::Code::kNotFound);
  CHECK(env.NewSequentialFile(d + "/nope").status().code() == Status::Code::kNotFound);

  // Reads at an offset, and of bytes appended after the reader was opened.
  Result<std::unique_ptr<RandomAccessFile>> at = env.NewRandomAccessFile(d + "/big");
  REQUIRE(at.ok());
  uint8_t three[3];
  REQUIRE((*at)->Read(26 * 1000 + 2, three).ok());
  CHECK(std::string(reinterpret_cast<const char*>(three), 3) == "cde");
  CHECK((*at)->Read(big.size() - 2, three).code() == Status::Code::kIOError);  // ends first
  CHECK(env.NewRandomAccessFile(d + "/nope").status().code() == Status::Code::kNotFound);
  Result<std::unique_ptr<WritableFile>> growing = env.NewWritableFile(d + "/growing", 0644);
  REQUIRE(growing.ok());
  Result<std::unique_ptr<RandomAccessFile>> behind = env.NewRandomAccessFile(d + "/growing");
  REQUIRE(behind.ok());
  CHECK((*behind)->Read(0, three).code() == Status::Code::kIOError);
  REQUIRE((*growing)->Append(AsBytes(std::string_view("xyzw"))).ok());
  REQUIRE((*behind)->Read(1, three).ok());
  CHECK(std::string(reinterpret_cast<const char*>(three), 3) == "yzw");

  // One holder of a lock at a time; released when the holder lets go.
  Result<std::unique_ptr<FileLock>> first = env.LockFile(d + "/lock");
  REQUIRE(first.ok());
  CHECK(env.Exists(d + "/lock"));
  CHECK(env.LockFile(d + "/lock").status().code() == Status::Code::kFailedPrecondition);
  Result<std::unique_ptr<FileLock>> other = env.LockFile(d + "/other-lock");
  CHECK(other.ok());
  first->reset();
  Result<std::unique_ptr<FileLock>> again = env.LockFile(d + "/lock");
  CHECK(again.ok());
  CHECK(env.LockFile(root + "/no-such-dir/lock").status().code() == Status::Code::kNotFound);
}

}  // namespace

TEST_CASE("env: the POSIX Env and MemEnv agree on files, directories and symlinks") {
  SECTION("posix") {
    std::string root = (std::filesystem::temp_directory_path() / ("meridian-env-" + std::to_string(::getpid()))).string();
    CheckPrimitives(Env::Default(), root);
    std::filesystem::remove_all(root);
  }
  SECTION("memory") {
    MemEnv env;
    CheckPrimitives(env, "/state");
  }
}

TEST_CASE("env: resumed files, streamed reads, sizes, permissions and locks alike on POSIX and MemEnv") {
  SECTION("posix") {
    std::string root = (std::filesystem::temp_directory_path() / ("meridian-env-r-" + std::to_string(::getpid()))).string();
    CheckResumedFilesAndLocks(Env::Default(), root);
    std::filesystem::remove_all(root);
  }
  SECTION("memory") {
    MemEnv env;
    CheckResumedFilesAndLocks(env, "/state");
  }
  SECTION("fault env over memory") {
    MemEnv mem;
    FaultEnv env(mem);
    CheckResumedFilesAndLocks(env, "/state");
  }
}

TEST_CASE("env: a power cut keeps a reopened file's synced bytes; a truncation keeps what both lengths share") {
  MemEnv env;
  REQUIRE(env.CreateDirectories("/s").ok());
  auto reopen = [&] {
    Result<std::unique_ptr<WritableFile>> f = env.ReopenWritableFile("/s/part", 0644);
    REQUIRE(f.ok());
    return std::move(f).value();
  };
  // Created by reopening: the name is lost unless its directory is synced.
  REQUIRE(reopen()->Append(AsBytes(std::string_view("abc"))).ok());
  env.PowerCut();
  CHECK(!env.Exists("/s/part"));

  std::unique_ptr<WritableFile> f = reopen();
  REQUIRE(env.SyncDirectory("/s").ok());
  REQUIRE(f->Append(AsBytes(std::string_view("abcd"))).ok());
  REQUIRE(f->Sync().ok());
  REQUIRE(f->Append(AsBytes(std::string_view("efgh"))).ok());  // unsynced
  env.PowerCut();
  CHECK(Read(env, "/s/part") == "abcd");

  // Appends after a reopen: durable once synced, lost otherwise.
  f = reopen();
  REQUIRE(f->Append(AsBytes(std::string_view("EF"))).ok());
  REQUIRE(f->Sync().ok());
  REQUIRE(f->Append(AsBytes(std::string_view("GH"))).ok());
  env.PowerCut();
  CHECK(Read(env, "/s/part") == "abcdEF");

  // A truncation not synced: the cut keeps the bytes both lengths share, and
  // never the bytes appended after it.
  f = reopen();
  REQUIRE(f->Truncate(2).ok());
  REQUIRE(f->Append(AsBytes(std::string_view("xyz"))).ok());
  CHECK(Read(env, "/s/part") == "abxyz");
  env.PowerCut();
  CHECK(Read(env, "/s/part") == "ab");

  // Synced after the truncation: the new contents are kept.
  f = reopen();
  REQUIRE(f->Truncate(1).ok());
  REQUIRE(f->Append(AsBytes(std::string_view("QR"))).ok());
  REQUIRE(f->Sync().ok());
  REQUIRE(f->Append(AsBytes(std::string_view("S"))).ok());
  env.PowerCut();
  CHECK(Read(env, "/s/part") == "aQR");
  CHECK(env.GetFileSize("/s/part").value() == 3);

  // A power cut releases every lock: their holders died with the machine.
  Result<std::unique_ptr<FileLock>> lock = env.LockFile("/s/lock");
  REQUIRE(lock.ok());
  CHECK(env.LockFile("/s/lock").status().code() == Status::Code::kFailedPrecondition);
  env.PowerCut();
  Result<std::unique_ptr<FileLock>> after = env.LockFile("/s/lock");
  CHECK(after.ok());
  lock->reset();  // the dead holder's lock going away does not release the new one
  CHECK(env.LockFile("/s/lock").status().code() == Status::Code::kFailedPrecondition);
}

TEST_CASE("env: FaultEnv fails a reopen, an append or a truncation as the Nth mutation") {
  MemEnv mem;
  REQUIRE(mem.CreateDirectories("/s").ok());
  REQUIRE(mem.WriteFileAtomic("/s/part", std::string_view("abcdef")).ok());
  // reopen, truncate, append, sync, close: each can fail.
  auto resume = [](Env& env) -> Status {
    Result<std::unique_ptr<WritableFile>> f = env.ReopenWritableFile("/s/part", 0644);
    if (!f.ok()) return f.status();
    MERIDIAN_RETURN_IF_ERROR((*f)->Truncate(3));
    MERIDIAN_RETURN_IF_ERROR((*f)->Append(AsBytes(std::string_view("XYZ"))));
    MERIDIAN_RETURN_IF_ERROR((*f)->Sync());
    return (*f)->Close();
  };
  for (uint64_t n = 1; n <= 5; ++n) {
    INFO(n);
    FaultEnv env(mem);
    env.FailNthMutation(n, EIO);
    Status st = resume(env);
    CHECK(st.code() == Status::Code::kIOError);
    CHECK(st.message().find("/s/part") != std::string::npos);
    CHECK(st.message().find("Input/output error") != std::string::npos);
    CHECK(env.mutations() == n);  // stopped at the failure
    // Before the truncation failed or ran: the old bytes, after it the new ones.
    const std::string now = Read(mem, "/s/part");
    CHECK(now == (n == 1 || n == 2 ? "abcdef" : n == 3 ? "abc" : "abcXYZ"));
    REQUIRE(mem.WriteFileAtomic("/s/part", std::string_view("abcdef")).ok());
  }
  FaultEnv env(mem);
  CHECK(resume(env).ok());
  CHECK(env.mutations() == 5);
  CHECK(env.sync_points() == 1);
  CHECK(Read(mem, "/s/part") == "abcXYZ");
  // The lock goes straight through: not a mutation that can fail.
  env.FailNthMutation(1, EIO);
  CHECK(env.LockFile("/s/lock").ok());
  CHECK(env.mutations() == 5);
}

TEST_CASE("env: a power cut keeps synced bytes and entries of synced directories, nothing else") {
  MemEnv env;
  REQUIRE(env.CreateDirectories("/s/d").ok());  // made durable in their parents

  // File data: only what was synced.
  Result<std::unique_ptr<WritableFile>> f = env.NewWritableFile("/s/d/log", 0644);
  REQUIRE(f.ok());
  REQUIRE((*f)->Append(AsBytes(std::string_view("synced "))).ok());
  REQUIRE((*f)->Sync().ok());
  REQUIRE((*f)->Append(AsBytes(std::string_view("lost"))).ok());
  REQUIRE(env.SyncDirectory("/s/d").ok());
  REQUIRE(env.WriteFileAtomic("/s/d/atomic", std::string_view("old")).ok());
  REQUIRE(WriteUnsynced(env, "/s/d/never-synced-entry", "x").ok());
  CHECK(Read(env, "/s/d/log") == "synced lost");
  env.PowerCut();
  CHECK(Read(env, "/s/d/log") == "synced ");
  CHECK(!env.Exists("/s/d/never-synced-entry"));
  CHECK(Read(env, "/s/d/atomic") == "old");

  // A rename, a removal and a symlink are undone unless their directory was synced.
  REQUIRE(WriteUnsynced(env, "/s/d/tmp", "new").ok());
  REQUIRE(env.Rename("/s/d/tmp", "/s/d/atomic").ok());
  REQUIRE(env.RemoveFile("/s/d/log").ok());
  REQUIRE(env.Symlink("atomic", "/s/d/link").ok());
  env.PowerCut();
  CHECK(Read(env, "/s/d/atomic") == "old");
  CHECK(Read(env, "/s/d/log") == "synced ");
  CHECK(!env.Exists("/s/d/tmp"));
  CHECK(env.ReadLink("/s/d/link").status().code() == Status::Code::kNotFound);

  // Synced: a renamed file whose data was not synced keeps its name, not its bytes.
  REQUIRE(WriteUnsynced(env, "/s/d/tmp", "new").ok());
  REQUIRE(env.Rename("/s/d/tmp", "/s/d/atomic").ok());
  REQUIRE(env.RemoveFile("/s/d/log").ok());
  REQUIRE(env.Symlink("atomic", "/s/d/link").ok());
  REQUIRE(env.SyncDirectory("/s/d").ok());
  env.PowerCut();
  CHECK(Read(env, "/s/d/atomic").empty());
  CHECK(!env.Exists("/s/d/log"));
  CHECK(env.ReadLink("/s/d/link").value() == "atomic");

  // A directory whose parent was never synced is lost with all it holds.
  REQUIRE(env.CreateDir("/s/unsynced").ok());
  REQUIRE(env.WriteFileAtomic("/s/unsynced/f", std::string_view("x")).ok());
  env.PowerCut();
  CHECK(!env.Exists("/s/unsynced"));
  CHECK(!env.Exists("/s/unsynced/f"));
  CHECK(env.ListDirectory("/s").value() == std::vector<std::string>{"d"});
}

TEST_CASE("env: FaultEnv fails the Nth mutation with the asked errno and counts sync points") {
  MemEnv mem;
  FaultEnv env(mem);
  REQUIRE(env.CreateDirectories("/s").ok());
  const uint64_t before = env.sync_points();
  REQUIRE(env.WriteFileAtomic("/s/f", std::string_view("one")).ok());
  // The file's sync and its directory's.
  CHECK(env.sync_points() - before == 2);

  // create, append, sync, close, rename, sync directory: each can fail.
  const uint64_t mutations = env.mutations();
  REQUIRE(env.WriteFileAtomic("/s/f", std::string_view("two")).ok());
  CHECK(env.mutations() - mutations == 6);
  for (uint64_t n = 1; n <= 6; ++n) {
    INFO(n);
    env.FailNthMutation(n, ENOSPC);
    Status st = env.WriteFileAtomic("/s/f", std::string_view("three"));
    CHECK(st.code() == Status::Code::kInsufficientStorage);
    CHECK(st.message().find("No space left on device") != std::string::npos);
    CHECK(st.message().find("/s/f") != std::string::npos);
    // Failed before the rename: the old file, and no temporary left behind.
    if (n < 6) CHECK(Read(env, "/s/f") == "two");
    CHECK(env.ListDirectory("/s").value() == std::vector<std::string>{"f"});
  }
  CHECK(env.WriteFileAtomic("/s/f", std::string_view("four")).ok());  // one failure, not a broken Env
}

TEST_CASE("env: PublishFile puts a staged file in place whole, or removes it") {
  MemEnv mem;
  REQUIRE(mem.CreateDirectories("/out").ok());
  REQUIRE(mem.WriteFileAtomic("/out/model", std::string_view("old")).ok());
  auto stage = [&](Env& env) {
    std::unique_ptr<WritableFile> f = env.NewWritableFile("/out/model.partial.1", 0644).value();
    REQUIRE(f->Append(AsBytes(std::string_view("new"))).ok());
    REQUIRE(f->Sync().ok());
    REQUIRE(f->Close().ok());
  };
  // rename, directory sync: each can fail; the output is the old or the new
  // file, and the staged one is gone either way.
  for (uint64_t n = 1; n <= 2; ++n) {
    INFO(n);
    stage(mem);
    FaultEnv env(mem);
    env.FailNthMutation(n, ENOSPC);
    Status st = env.PublishFile("/out/model.partial.1", "/out/model");
    CHECK(st.code() == Status::Code::kInsufficientStorage);
    CHECK(st.message().starts_with("write /out/model: "));
    CHECK(Read(mem, "/out/model") == (n == 1 ? "old" : "new"));
    CHECK(mem.ListDirectory("/out").value() == std::vector<std::string>{"model"});
    REQUIRE(mem.WriteFileAtomic("/out/model", std::string_view("old")).ok());
  }
  // A power cut after it returned keeps the new file.
  stage(mem);
  REQUIRE(mem.PublishFile("/out/model.partial.1", "/out/model").ok());
  mem.PowerCut();
  CHECK(Read(mem, "/out/model") == "new");
  CHECK(mem.ListDirectory("/out").value() == std::vector<std::string>{"model"});
  CHECK(mem.PublishFile("/out/none", "/out/model").code() == Status::Code::kNotFound);
  CHECK(Read(mem, "/out/model") == "new");
}

TEST_CASE("env: FaultEnv crashes right after a sync point or just before the next one") {
  MemEnv mem;
  REQUIRE(mem.CreateDirectories("/s").ok());
  REQUIRE(mem.WriteFileAtomic("/s/f", std::string_view("old")).ok());
  for (FaultEnv::CrashPoint where : {FaultEnv::CrashPoint::kAfterSync, FaultEnv::CrashPoint::kBeforeNextSync}) {
    for (uint64_t k = 0; k <= 2; ++k) {
      INFO(k << (where == FaultEnv::CrashPoint::kAfterSync ? " after" : " before next"));
      FaultEnv env(mem);
      env.CrashAt(k, where);
      Status st = env.WriteFileAtomic("/s/f", std::string_view("new"));
      // Only a crash after the last sync point lets the write be acknowledged.
      CHECK(st.ok() == (k == 2));
      CHECK(env.crashed() == (k < 2));
      if (k < 2) CHECK(!env.SyncDirectory("/s").ok());  // a crashed machine does nothing more
      mem.PowerCut();
      CHECK(Read(mem, "/s/f") == (k == 2 ? "new" : "old"));
      REQUIRE(mem.WriteFileAtomic("/s/f", std::string_view("old")).ok());
    }
  }
}
