// The manifest: what one model version is (name, SemVer version, size,
// whole-file digest, ordered chunk list, targeting and residency) and its JSON
// form, plus the validation rules for model names and versions. Pure: no I/O.
// The JSON is carried as the payload of a signed DSSE envelope (signing/), so
// it is never re-canonicalised: the signed bytes are the bytes parsed.
//
// Two forms: meridian.manifest/v1 lists the chunks in the JSON; /v2 (a paged
// manifest, for chunk lists longer than one page) names binary index pages by
// digest instead, each stored as a chunk of its own and read back into
// `chunks` by ResolveChunkPages (manifest/chunk_pages.h).
#pragma once

#include <cstdint>
#include <map>
#include <set>
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
inline constexpr size_t kManifestChunksMax = 1'000'000;  // listed in a v1 manifest's JSON
inline constexpr uint64_t kChunkBytesMax = 1u << 20;
// A paged manifest: an index page lists chunks as 36-byte entries (the
// digest, then the size as 4 bytes little-endian) and is at most one chunk
// long; the chunk list of all pages is at most kManifestPagedChunksMax long
// (about 1 TiB at the chunker's 64 KiB average, 640 MiB once read).
inline constexpr size_t kChunkPageEntryBytes = 36;
inline constexpr size_t kChunkPageEntriesMax = kChunkBytesMax / kChunkPageEntryBytes;  // 29,127
inline constexpr size_t kManifestPagedChunksMax = size_t{1} << 24;
inline constexpr size_t kManifestPagesMax = 65'536;
inline constexpr size_t kManifestListMax = 256;         // profiles, regions, annotations
inline constexpr size_t kManifestStringBytesMax = 1024;  // any one string in the lists above

struct ChunkRef {
  Digest digest;   // SHA-256 of the uncompressed chunk bytes
  uint64_t size = 0;
  bool operator==(const ChunkRef&) const = default;
};

// One index page of a paged manifest.
struct ChunkPageRef {
  Digest digest;        // SHA-256 of the page
  uint64_t chunks = 0;  // entries in it: the page is kChunkPageEntryBytes times as long
  uint64_t size = 0;    // bytes of the artifact its chunks hold
  uint64_t page_bytes() const { return chunks * kChunkPageEntryBytes; }
  bool operator==(const ChunkPageRef&) const = default;
};

struct Manifest {
  std::string name;     // model name, see IsValidModelName
  std::string version;  // SemVer 2.0.0, see IsValidVersion
  uint64_t size = 0;    // bytes of the whole artifact
  Digest digest;        // SHA-256 of the whole artifact
  std::string media_type = "application/octet-stream";
  std::vector<ChunkRef> chunks;        // in file order; sizes sum to `size` (a paged one: once resolved)
  std::vector<ChunkPageRef> chunk_pages;  // a paged manifest's index pages, in order; empty: v1
  std::vector<std::string> profiles;   // device profiles targeted; empty = any
  std::vector<std::string> regions;    // regions it may be stored and served in; empty = all
  bool is_public = false;              // readable without a credential (JSON "public"; absent = false)
  std::map<std::string, std::string> annotations;
  std::string created;                 // RFC 3339 UTC

  bool operator==(const Manifest&) const = default;

  bool paged() const { return !chunk_pages.empty(); }
  // Whether `chunks` holds the whole chunk list: always for v1, after
  // ResolveChunkPages for a paged manifest.
  bool resolved() const { return !paged() || !chunks.empty(); }
  // What the version's bytes are stored as, each a chunk of the store: the
  // index pages (sized as pages), then the chunks (those resolved). What a
  // store must hold for the version, a collection keep and a region fetch.
  size_t piece_count() const { return chunk_pages.size() + chunks.size(); }
  ChunkRef piece(size_t i) const {
    if (i < chunk_pages.size()) return {chunk_pages[i].digest, chunk_pages[i].page_bytes()};
    return chunks[i - chunk_pages.size()];
  }
};

// Adjacent chunks of an artifact, [first, end) in its chunk list, at bytes
// [begin, end_byte) of the artifact: what one ranged GET of it fetches.
struct ChunkRun {
  size_t first = 0, end = 0;
  uint64_t begin = 0, end_byte = 0;
  bool operator==(const ChunkRun&) const = default;
};
// The runs of `chunks` that hold the first occurrence of each of `wanted`, in
// order: a client fetches what it lacks with a request per run, not per chunk.
// A run is cut before a chunk that would take it past `run_bytes_max` (a
// chunk longer than that is a run of its own), so that several connections
// can share a long one.
std::vector<ChunkRun> FirstOccurrenceRuns(const std::vector<ChunkRef>& chunks, std::set<Digest> wanted,
                                          uint64_t run_bytes_max = UINT64_MAX);

// Whether two manifests describe the same release: equal in everything but
// `created`, so publishing the same bytes with the same metadata again (a
// retried job) is recognised as what it is. Two paged manifests naming the
// same pages name the same chunks, resolved or not.
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

// Serialises to compact JSON: v2 (the pages, not the chunks) when paged.
std::string ManifestToJson(const Manifest& m);
// Parses and validates (names, sizes, limits, chunk or page sizes summing to
// size). InvalidArgument with a message naming the offending field
// otherwise. A paged manifest comes back unresolved (`chunks` empty).
Result<Manifest> ParseManifest(std::string_view json);

}  // namespace meridian
