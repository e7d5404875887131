// The manifest: what one model version is (name, SemVer version, size,
// whole-file digest, ordered chunk list, targeting and residency) and its JSON
// form, plus the validation rules for model names and versions. Pure: no I/O.
// The JSON is carried as the payload of a signed DSSE envelope (signing/), so
// it is never re-canonicalised: the signed bytes are the bytes parsed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"

namespace meridian {

// The DSSE payloadType of a signed manifest.
inline constexpr std::string_view kManifestPayloadType = "application/vnd.meridian.manifest.v1+json";

// Limits a manifest must stay within (a manifest is parsed before it is trusted).
inline constexpr uint64_t kManifestJsonBytesMax = 64ull << 20;
inline constexpr size_t kManifestChunksMax = 1'000'000;
inline constexpr uint64_t kChunkBytesMax = 1u << 20;
inline constexpr size_t kManifestListMax = 256;         // profiles, regions, annotations
inline constexpr size_t kManifestStringBytesMax = 1024;  // any one string in the lists above

struct ChunkRef {
  Digest digest;   // SHA-256 of the uncompressed chunk bytes
  uint64_t size = 0;
  bool operator==(const ChunkRef&) const = default;
};

struct Manifest {
  std::string name;     // model name, see IsValidModelName
  std::string version;  // SemVer 2.0.0, see IsValidVersion
  uint64_t size = 0;    // bytes of the whole artifact
  Digest digest;        // SHA-256 of the whole artifact
  std::string media_type = "application/octet-stream";
  std::vector<ChunkRef> chunks;        // in file order; sizes sum to `size`
  std::vector<std::string> profiles;   // device profiles targeted; empty = any
  std::vector<std::string> regions;    // regions it may be stored and served in; empty = all
  bool is_public = false;              // readable without a credential (JSON "public"; absent = false)
  std::map<std::string, std::string> annotations;
  std::string created;                 // RFC 3339 UTC

  bool operator==(const Manifest&) const = default;
};

// Whether two manifests describe the same release: equal in everything but
// `created`, so publishing the same bytes with the same metadata again (a
// retried job) is recognised as what it is.
bool SameRelease(const Manifest& a, const Manifest& b);

// [a-z0-9][a-z0-9._-]{0,63}
bool IsValidModelName(std::string_view name);
// Semantic Versioning 2.0.0 (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]), at most 128 bytes.
bool IsValidVersion(std::string_view version);
// SemVer precedence: <0, 0, >0. Both must be valid versions.
int CompareVersions(std::string_view a, std::string_view b);
// Region and profile identifiers: [a-z0-9][a-z0-9-]{0,31}
bool IsValidRegionOrProfile(std::string_view id);

// Whether a manifest's region list admits `region` (empty = everywhere; the
// region "" — an origin that declares no jurisdiction — is admitted by no list).
bool ResidencyAllows(const std::vector<std::string>& regions, std::string_view region);

// Serialises to compact JSON.
std::string ManifestToJson(const Manifest& m);
// Parses and validates (names, sizes, limits, chunk sizes summing to size).
// InvalidArgument with a message naming the offending field otherwise.
Result<Manifest> ParseManifest(std::string_view json);

}  // namespace meridian
