// The store's cache of parsed manifests: committed versions never change, so
// a manifest parsed once stays true while the store is open, and an artifact
// request (each Range request of a download) need not parse it again.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "manifest/manifest.h"

namespace meridian {

// Least-recently-used, bounded by the bytes its manifests occupy (Charge),
// thread-safe. Entries are shared: an evicted manifest stays valid for whoever
// still holds it.
class ManifestCache {
 public:
  explicit ManifestCache(uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  // The manifest cached under `key`, now the most recently used; null when none is.
  std::shared_ptr<const Manifest> Lookup(const std::string& key);
  // Caches `m` under `key` unless an entry is there already, and returns the
  // cached one: two threads that parsed the same version get one pointer.
  // Evicts the least recently used entries to stay within the capacity. A
  // manifest charged more than the whole capacity is returned, not cached;
  // so is one read before an Erase that came since (`erasures`, as erasures()
  // said before the read): a deleted version is never cached again by a
  // reader that raced its deletion.
  std::shared_ptr<const Manifest> Insert(const std::string& key, std::shared_ptr<const Manifest> m,
                                         uint64_t erasures);
  // Drops `key`'s entry (a deleted version).
  void Erase(const std::string& key);
  uint64_t erasures();

  uint64_t bytes();    // charged to the entries cached now; at most the capacity
  uint64_t entries();

  // Approximate bytes a cached manifest occupies: mostly its chunk list.
  static uint64_t Charge(const std::string& key, const Manifest& m);

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Manifest> manifest;
    uint64_t charge = 0;
  };

  const uint64_t capacity_bytes_;
  std::mutex mu_;
  uint64_t bytes_ = 0;
  uint64_t erasures_ = 0;  // Erase calls so far
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace meridian
