// The store's cache of parsed manifests: committed versions never change, so
// a manifest parsed once stays true while the store is open, and an artifact
// request (each Range request of a download) need not parse it again.
#pragma once

#include <cstdint>

#include "manifest/manifest.h"
#include "store/shared_cache.h"

namespace meridian {

// The bytes a parsed manifest holds besides its own object: mostly its chunk list.
struct ManifestBytes {
  uint64_t operator()(const Manifest& m) const;
};

using ManifestCache = SharedCache<Manifest, ManifestBytes>;

}  // namespace meridian
