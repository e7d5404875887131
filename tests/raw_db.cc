#include "tests/raw_db.h"

#include <rocksdb/db.h>

#include <catch2/catch.hpp>
#include <vector>

#include "base/bytes.h"

namespace meridian::testing {

struct RawDb::Db {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
};

RawDb::RawDb(const std::string& dir) : db_(std::make_unique<Db>()) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const char* name : {"default", "chunks", "manifests", "artifacts", "state", "chunk_index"}) {
    cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(), dir, cfs, &db_->handles, &raw);
  INFO(s.ToString());
  REQUIRE(s.ok());
  db_->db.reset(raw);
}

RawDb::~RawDb() {
  for (rocksdb::ColumnFamilyHandle* h : db_->handles) db_->db->DestroyColumnFamilyHandle(h);
  db_->db->Close().PermitUncheckedError();
}

void RawDb::Put(size_t cf, std::string_view key, std::string_view value) {
  REQUIRE(db_->db->Put(rocksdb::WriteOptions(), db_->handles[cf], rocksdb::Slice(key.data(), key.size()),
                       rocksdb::Slice(value.data(), value.size()))
              .ok());
}

std::string RawDb::Get(size_t cf, std::string_view key) {
  std::string value;
  rocksdb::Status s =
      db_->db->Get(rocksdb::ReadOptions(), db_->handles[cf], rocksdb::Slice(key.data(), key.size()), &value);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return value;
}

void RawDb::Delete(size_t cf, std::string_view key) {
  REQUIRE(db_->db->Delete(rocksdb::WriteOptions(), db_->handles[cf], rocksdb::Slice(key.data(), key.size())).ok());
}

std::string RawDb::Key(const Digest& d) { return std::string(AsString(ByteSpan(d.bytes()))); }

void RawDb::Lose(const Digest& chunk) {
  Delete(kChunks, Key(chunk));
  Delete(kChunkIndex, Key(chunk));
}

}  // namespace meridian::testing
