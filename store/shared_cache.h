// A least-recently-used cache of immutable values shared by pointer, bounded
// by the bytes its entries occupy, thread-safe. The store keeps its parsed
// manifests and its verified chunks in one each: what a key names never
// changes once stored, so a cached value stays true until the key is erased.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace meridian {

// `ChargeOf{}(value)` is the bytes a value occupies beyond its own object.
template <typename T, typename ChargeOf>
class SharedCache {
 public:
  explicit SharedCache(uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  // The value cached under `key`, now the most recently used; null when none is.
  std::shared_ptr<const T> Lookup(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->value;
  }

  // Caches `v` under `key` unless an entry is there already, and returns the
  // cached one: two threads that read the same key get one pointer. Evicts
  // the least recently used entries to stay within the capacity. A value
  // charged more than the whole capacity is returned, not cached; so is one
  // read before an Erase that came since (`erasures`, as erasures() said
  // before the read): an erased key is never cached again by a reader that
  // raced its erasure.
  std::shared_ptr<const T> Insert(const std::string& key, std::shared_ptr<const T> v, uint64_t erasures) {
    const uint64_t charge = Charge(key, *v);
    std::lock_guard lock(mu_);
    if (erasures != erasures_) return v;
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->value;
    }
    if (charge > capacity_bytes_) return v;
    while (bytes_ + charge > capacity_bytes_) {
      bytes_ -= lru_.back().charge;
      index_.erase(lru_.back().key);
      lru_.pop_back();
    }
    lru_.push_front(Entry{key, v, charge});
    index_.emplace(key, lru_.begin());
    bytes_ += charge;
    return v;
  }

  // Drops `key`'s entry.
  void Erase(const std::string& key) {
    std::lock_guard lock(mu_);
    ++erasures_;
    auto it = index_.find(key);
    if (it == index_.end()) return;
    bytes_ -= it->second->charge;
    lru_.erase(it->second);
    index_.erase(it);
  }
  uint64_t erasures() {
    std::lock_guard lock(mu_);
    return erasures_;
  }

  uint64_t bytes() {  // charged to the entries cached now; at most the capacity
    std::lock_guard lock(mu_);
    return bytes_;
  }
  uint64_t entries() {
    std::lock_guard lock(mu_);
    return index_.size();
  }

  // Approximate bytes an entry occupies: the key twice (list entry and
  // index), the value, and the bookkeeping around it.
  static uint64_t Charge(const std::string& key, const T& v) {
    constexpr uint64_t kEntryOverhead = sizeof(Entry) + sizeof(T) + 64;
    return kEntryOverhead + 2 * key.size() + ChargeOf{}(v);
  }

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const T> value;
    uint64_t charge = 0;
  };

  const uint64_t capacity_bytes_;
  std::mutex mu_;
  uint64_t bytes_ = 0;
  uint64_t erasures_ = 0;  // Erase calls so far
  std::list<Entry> lru_;   // most recently used first
  std::unordered_map<std::string, typename std::list<Entry>::iterator> index_;
};

}  // namespace meridian
