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
