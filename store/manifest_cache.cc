#include "store/manifest_cache.h"

#include <string>

namespace meridian {

uint64_t ManifestBytes::operator()(const Manifest& m) const {
  uint64_t strings = m.name.size() + m.version.size() + m.media_type.size() + m.created.size();
  for (const std::string& s : m.profiles) strings += sizeof(s) + s.size();
  for (const std::string& s : m.regions) strings += sizeof(s) + s.size();
  for (const auto& [k, v] : m.annotations) strings += 2 * sizeof(std::string) + k.size() + v.size();
  return strings + m.chunks.capacity() * sizeof(ChunkRef) + m.chunk_pages.capacity() * sizeof(ChunkPageRef);
}

}  // namespace meridian
