// The LRU behind store/manifest_cache.h.
#include "store/manifest_cache.h"

#include <utility>

namespace meridian {

std::shared_ptr<const Manifest> ManifestCache::Lookup(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->manifest;
}

std::shared_ptr<const Manifest> ManifestCache::Insert(const std::string& key, std::shared_ptr<const Manifest> m,
                                                      uint64_t erasures) {
  const uint64_t charge = Charge(key, *m);
  std::lock_guard lock(mu_);
  if (erasures != erasures_) return m;
  if (auto it = index_.find(key); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->manifest;
  }
  if (charge > capacity_bytes_) return m;
  while (bytes_ + charge > capacity_bytes_) {
    bytes_ -= lru_.back().charge;
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, m, charge});
  index_.emplace(key, lru_.begin());
  bytes_ += charge;
  return m;
}

void ManifestCache::Erase(const std::string& key) {
  std::lock_guard lock(mu_);
  ++erasures_;
  auto it = index_.find(key);
  if (it == index_.end()) return;
  bytes_ -= it->second->charge;
  lru_.erase(it->second);
  index_.erase(it);
}

uint64_t ManifestCache::erasures() {
  std::lock_guard lock(mu_);
  return erasures_;
}

uint64_t ManifestCache::bytes() {
  std::lock_guard lock(mu_);
  return bytes_;
}

uint64_t ManifestCache::entries() {
  std::lock_guard lock(mu_);
  return index_.size();
}

uint64_t ManifestCache::Charge(const std::string& key, const Manifest& m) {
  uint64_t strings = m.name.size() + m.version.size() + m.media_type.size() + m.created.size();
  for (const std::string& s : m.profiles) strings += sizeof(s) + s.size();
  for (const std::string& s : m.regions) strings += sizeof(s) + s.size();
  for (const auto& [k, v] : m.annotations) strings += 2 * sizeof(std::string) + k.size() + v.size();
  // Key twice (list entry and index) plus the bookkeeping around an entry.
  constexpr uint64_t kEntryOverhead = sizeof(Entry) + sizeof(Manifest) + 64;
  return kEntryOverhead + 2 * key.size() + strings + m.chunks.capacity() * sizeof(ChunkRef);
}

}  // namespace meridian
