// Manifest JSON and name/version validation.
#include "manifest/manifest.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool IsNumericIdentifier(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) if (c < '0' || c > '9') return false;
  return s.size() == 1 || s[0] != '0';
}

bool IsAlnumHyphenIdentifier(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')) return false;
  }
  return true;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) return parts;
    start = pos + 1;
  }
}

struct ParsedVersion {
  std::string_view core[3];
  std::string_view prerelease;  // empty when absent
};

bool ParseVersion(std::string_view v, ParsedVersion* out) {
  if (v.empty() || v.size() > 128) return false;
  size_t plus = v.find('+');
  if (plus != std::string_view::npos) {
    for (std::string_view id : Split(v.substr(plus + 1), '.')) {
      if (!IsAlnumHyphenIdentifier(id)) return false;
    }
    v = v.substr(0, plus);
  }
  size_t dash = v.find('-');
  std::string_view core = v.substr(0, dash);
  out->prerelease = dash == std::string_view::npos ? std::string_view() : v.substr(dash + 1);
  if (dash != std::string_view::npos) {
    for (std::string_view id : Split(out->prerelease, '.')) {
      if (!IsAlnumHyphenIdentifier(id)) return false;
      bool numeric = id.find_first_not_of("0123456789") == std::string_view::npos;
      if (numeric && !IsNumericIdentifier(id)) return false;
    }
  }
  std::vector<std::string_view> parts = Split(core, '.');
  if (parts.size() != 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (!IsNumericIdentifier(parts[i]) || parts[i].size() > 18) return false;
    out->core[i] = parts[i];
  }
  return true;
}

int CompareNumeric(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
}

// One entry of a manifest's "chunks".
bool ReadChunk(const nlohmann::json& c, ChunkRef* out) {
  if (!c.is_object()) return false;
  JsonFields f(c, "chunk", UnknownFields::kIgnore);
  f.Digest("digest", &out->digest, true);
  f.Uint("size", &out->size, true, kChunkBytesMax);
  return f.ok() && out->size > 0;
}

// One entry of a paged manifest's "chunk_pages".
bool ReadPageRef(const nlohmann::json& c, ChunkPageRef* out) {
  if (!c.is_object()) return false;
  JsonFields f(c, "chunk page", UnknownFields::kIgnore);
  f.Digest("digest", &out->digest, true);
  f.Uint("chunks", &out->chunks, true, kChunkPageEntriesMax);
  f.Uint("size", &out->size, true, out->chunks * kChunkBytesMax);
  return f.ok() && out->chunks > 0 && out->size >= out->chunks;
}

// A list of region or profile names.
void ReadNames(JsonFields& f, std::string_view key, std::vector<std::string>* out) {
  f.Strings(key, out);
  if (out->size() > kManifestListMax || !std::all_of(out->begin(), out->end(), IsValidRegionOrProfile)) {
    f.Fail(key, fmt::format("must list at most {} region or profile names", kManifestListMax));
  }
}

}  // namespace

std::vector<ChunkRun> FirstOccurrenceRuns(const std::vector<ChunkRef>& chunks, std::set<Digest> wanted,
                                          uint64_t run_bytes_max) {
  std::vector<ChunkRun> runs;
  uint64_t offset = 0;
  for (size_t i = 0; i < chunks.size(); offset += chunks[i].size, ++i) {
    if (wanted.erase(chunks[i].digest) == 0) continue;  // not wanted, or taken at an earlier occurrence
    if (runs.empty() || runs.back().end != i || offset + chunks[i].size - runs.back().begin > run_bytes_max) {
      runs.push_back({.first = i, .end = i, .begin = offset, .end_byte = offset});
    }
    runs.back().end = i + 1;
    runs.back().end_byte = offset + chunks[i].size;
  }
  return runs;
}

bool SameRelease(const Manifest& a, const Manifest& b) {
  Manifest b_as_of_a = b;
  b_as_of_a.created = a.created;
  if (a.paged() && b.paged()) b_as_of_a.chunks = a.chunks;  // the pages decide
  return a == b_as_of_a;
}

bool IsValidModelName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !IsLowerAlnum(name[0])) return false;
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

bool IsValidVersion(std::string_view version) {
  ParsedVersion p;
  return ParseVersion(version, &p);
}

int CompareVersions(std::string_view a, std::string_view b) {
  ParsedVersion pa, pb;
  bool oka = ParseVersion(a, &pa), okb = ParseVersion(b, &pb);
  if (!oka || !okb) return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
  for (int i = 0; i < 3; ++i) {
    if (int c = CompareNumeric(pa.core[i], pb.core[i]); c != 0) return c;
  }
  if (pa.prerelease.empty() || pb.prerelease.empty()) {
    if (pa.prerelease.empty() == pb.prerelease.empty()) return 0;
    return pa.prerelease.empty() ? 1 : -1;  // a pre-release sorts before the release
  }
  std::vector<std::string_view> ia = Split(pa.prerelease, '.'), ib = Split(pb.prerelease, '.');
  for (size_t i = 0; i < ia.size() && i < ib.size(); ++i) {
    bool na = IsNumericIdentifier(ia[i]), nb = IsNumericIdentifier(ib[i]);
    int c;
    if (na && nb) c = CompareNumeric(ia[i], ib[i]);
    else if (na != nb) c = na ? -1 : 1;
    else c = ia[i].compare(ib[i]) < 0 ? -1 : (ia[i] == ib[i] ? 0 : 1);
    if (c != 0) return c;
  }
  if (ia.size() == ib.size()) return 0;
  return ia.size() < ib.size() ? -1 : 1;
}

bool IsValidRegionOrProfile(std::string_view id) {
  if (id.empty() || id.size() > 32 || !IsLowerAlnum(id[0])) return false;
  for (char c : id) if (!IsLowerAlnum(c) && c != '-') return false;
  return true;
}

bool ResidencyAllows(const std::vector<std::string>& regions, std::string_view region) {
  return regions.empty() || std::find(regions.begin(), regions.end(), region) != regions.end();
}

std::string ManifestToJson(const Manifest& m) {
  nlohmann::ordered_json j;
  j["schema"] = m.paged() ? "meridian.manifest/v2" : "meridian.manifest/v1";
  j["name"] = m.name;
  j["version"] = m.version;
  j["size"] = m.size;
  j["digest"] = m.digest.ToString();
  j["media_type"] = m.media_type;
  if (m.paged()) {
    nlohmann::ordered_json pages = nlohmann::ordered_json::array();
    for (const ChunkPageRef& p : m.chunk_pages) {
      pages.push_back({{"digest", p.digest.ToString()}, {"chunks", p.chunks}, {"size", p.size}});
    }
    j["chunk_pages"] = std::move(pages);
  } else {
    nlohmann::ordered_json chunks = nlohmann::ordered_json::array();
    for (const ChunkRef& c : m.chunks) {
      chunks.push_back({{"digest", c.digest.ToString()}, {"size", c.size}});
    }
    j["chunks"] = std::move(chunks);
  }
  j["profiles"] = m.profiles;
  j["regions"] = m.regions;
  if (m.is_public) j["public"] = true;  // absent when false: manifests from before the field read the same
  j["annotations"] = m.annotations;
  j["created"] = m.created;
  return j.dump();
}

Result<Manifest> ParseManifest(std::string_view json) {
  Result<nlohmann::json> parsed = ParseJsonObject(json, kManifestJsonBytesMax, "manifest");
  if (!parsed.ok()) return parsed.status();
  JsonFields f(*parsed, "manifest", UnknownFields::kIgnore);
  Manifest m;
  std::string schema;
  f.String("schema", &schema, true);
  const bool paged = schema == "meridian.manifest/v2";
  if (schema != "meridian.manifest/v1" && !paged) f.Fail("schema", "is not meridian.manifest/v1 or /v2");
  f.String("name", &m.name, true);
  if (!IsValidModelName(m.name)) f.Fail("name", "is not a valid model name");
  f.String("version", &m.version, true);
  if (!IsValidVersion(m.version)) f.Fail("version", "is not a valid version");
  f.Uint("size", &m.size, true);
  f.Digest("digest", &m.digest, true);
  f.String("media_type", &m.media_type);
  if (m.media_type.empty() || m.media_type.size() > kManifestStringBytesMax) {
    f.Fail("media_type", fmt::format("must be 1 to {} bytes", kManifestStringBytesMax));
  }
  if (paged && f.Find("chunks") != nullptr) f.Fail("chunks", "is not in a v2 manifest (its chunk_pages list them)");
  if (const nlohmann::json* pages = paged ? f.Array("chunk_pages", kManifestPagesMax, true) : nullptr) {
    uint64_t total = 0, chunks = 0;
    m.chunk_pages.reserve(pages->size());
    for (const nlohmann::json& p : *pages) {
      ChunkPageRef page;
      if (!ReadPageRef(p, &page)) {
        f.Fail("chunk_pages", fmt::format("must hold objects of a digest, 1 to {} chunks and the size they hold",
                                          kChunkPageEntriesMax));
        break;
      }
      total += page.size;
      chunks += page.chunks;
      m.chunk_pages.push_back(page);
    }
    if (pages->empty()) f.Fail("chunk_pages", "is empty");
    if (chunks > kManifestPagedChunksMax) {
      f.Fail("chunk_pages", fmt::format("list more than {} chunks", kManifestPagedChunksMax));
    }
    if (total != m.size) f.Fail("size", "is not the sum of the page sizes");
  }
  if (const nlohmann::json* chunks = paged ? nullptr : f.Array("chunks", kManifestChunksMax, true)) {
    uint64_t total = 0;
    m.chunks.reserve(chunks->size());
    for (const nlohmann::json& c : *chunks) {
      ChunkRef chunk;
      if (!ReadChunk(c, &chunk)) {
        f.Fail("chunks", fmt::format("must hold objects of a digest and a size of 1 to {} bytes", kChunkBytesMax));
        break;
      }
      total += chunk.size;
      m.chunks.push_back(chunk);
    }
    if (total != m.size) f.Fail("size", "is not the sum of the chunk sizes");
  }
  ReadNames(f, "profiles", &m.profiles);
  ReadNames(f, "regions", &m.regions);
  f.Bool("public", &m.is_public);
  if (const nlohmann::json* a = f.Object("annotations")) {
    for (const auto& [k, v] : a->items()) {
      if (a->size() > kManifestListMax || !v.is_string() || k.size() > kManifestStringBytesMax ||
          v.get_ref<const std::string&>().size() > kManifestStringBytesMax) {
        f.Fail("annotations", fmt::format("must map at most {} keys to strings of at most {} bytes", kManifestListMax,
                                          kManifestStringBytesMax));
        break;
      }
      m.annotations[k] = v.get<std::string>();
    }
  }
  f.String("created", &m.created);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  return m;
}

}  // namespace meridian
