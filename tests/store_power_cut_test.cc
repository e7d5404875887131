// Power cuts under the daemon's durable operations, all of which go through
// the store (RocksDB). The store runs on a PowerCutFs (tests/power_cut_fs.h);
// first, that it keeps what a disk keeps through a power cut.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

#include "tests/harness.h"
#include "tests/power_cut_fs.h"

using namespace meridian;
using namespace meridian::testing;

TEST_CASE("power cut fs: only synced bytes and synced directory changes survive") {
  TempDir dir;
  auto fs = std::make_shared<PowerCutFs>();
  const rocksdb::IOOptions io;
  const rocksdb::FileOptions fo;
  std::unique_ptr<rocksdb::FSDirectory> d;
  REQUIRE(fs->NewDirectory(dir.path(), io, &d, nullptr).ok());
  auto write = [&](const std::string& name, const std::string& synced, const std::string& unsynced) {
    std::unique_ptr<rocksdb::FSWritableFile> f;
    REQUIRE(fs->NewWritableFile(dir / name, fo, &f, nullptr).ok());
    REQUIRE(f->Append(synced, io, nullptr).ok());
    REQUIRE(f->Sync(io, nullptr).ok());
    REQUIRE(f->Append(unsynced, io, nullptr).ok());
    REQUIRE(f->Close(io, nullptr).ok());
  };
  auto contents = [&](const std::string& name) -> std::optional<std::string> {
    if (!std::filesystem::exists(dir / name)) return std::nullopt;
    return std::string(AsString(ReadFile(dir / name)));
  };
  write("kept", "durable", " and lost");
  write("old", "old", "");
  REQUIRE(d->Fsync(io, nullptr).ok());  // both names are durable
  CHECK(fs->sync_points() == 3);
  write("new", "new", "");  // its name never is
  write("tmp", "replacement", "");
  REQUIRE(fs->RenameFile(dir / "tmp", dir / "old", io, nullptr).ok());
  REQUIRE(fs->DeleteFile(dir / "kept", io, nullptr).ok());
  fs->CutAfter(0, /*unsynced_tail=*/true);  // writes go on until the next sync point, which fails
  std::unique_ptr<rocksdb::FSWritableFile> f;
  REQUIRE(fs->NewWritableFile(dir / "late", fo, &f, nullptr).ok());
  REQUIRE(f->Append("late", io, nullptr).ok());
  CHECK_FALSE(fs->down());
  CHECK(f->Sync(io, nullptr).IsIOError());
  CHECK(fs->down());
  CHECK(f->Append("later", io, nullptr).IsIOError());
  CHECK(f->Close(io, nullptr).ok());
  CHECK(fs->NewWritableFile(dir / "later", fo, &f, nullptr).IsIOError());
  CHECK(fs->sync_points() == 5);
  fs->PowerComesBack();
  CHECK(contents("kept") == "durable");
  CHECK(contents("old") == "old");
  CHECK(contents("new") == std::nullopt);
  CHECK(contents("tmp") == std::nullopt);
  CHECK(contents("late") == std::nullopt);
  CHECK(contents("later") == std::nullopt);
}
