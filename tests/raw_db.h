// A stopped store's RocksDB opened directly, for tests that damage it the way
// a failing disk or an operator's mistake would (store/store.cc's layout).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/digest.h"

namespace meridian::testing {

class RawDb {
 public:
  // Column families, in the store's order.
  static constexpr size_t kChunks = 1, kManifests = 2, kArtifacts = 3, kChunkIndex = 5;

  // Opens the store in `dir` (the Store must be closed); fails the test case
  // when it cannot.
  explicit RawDb(const std::string& dir);
  ~RawDb();
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void Put(size_t cf, std::string_view key, std::string_view value);
  std::string Get(size_t cf, std::string_view key);
  void Delete(size_t cf, std::string_view key);

  // The key of a chunk (kChunks, kChunkIndex) or an artifact (kArtifacts).
  static std::string Key(const Digest& d);
  // Removes a chunk and its index entry: a chunk lost from the store.
  void Lose(const Digest& chunk);

 private:
  struct Db;
  std::unique_ptr<Db> db_;
};

}  // namespace meridian::testing
