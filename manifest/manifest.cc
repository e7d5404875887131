// Manifest JSON and name/version validation.
#include "manifest/manifest.h"

#include <charconv>
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

void Require(bool ok, const char* what, std::string* error) {
  if (!ok && error->empty()) *error = what;
}

}  // namespace

bool SameRelease(const Manifest& a, const Manifest& b) {
  Manifest b_as_of_a = b;
  b_as_of_a.created = a.created;
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

std::string ManifestToJson(const Manifest& m) {
  nlohmann::ordered_json j;
  j["schema"] = "meridian.manifest/v1";
  j["name"] = m.name;
  j["version"] = m.version;
  j["size"] = m.size;
  j["digest"] = m.digest.ToString();
  j["media_type"] = m.media_type;
  nlohmann::ordered_json chunks = nlohmann::ordered_json::array();
  for (const ChunkRef& c : m.chunks) {
    chunks.push_back({{"digest", c.digest.ToString()}, {"size", c.size}});
  }
  j["chunks"] = std::move(chunks);
  j["profiles"] = m.profiles;
  j["regions"] = m.regions;
  j["annotations"] = m.annotations;
  j["created"] = m.created;
  return j.dump();
}

Result<Manifest> ParseManifest(std::string_view json) {
  if (json.size() > kManifestJsonBytesMax) return Status::InvalidArgument("manifest is too large");
  Result<nlohmann::json> parsed = ParseJson(json, kManifestJsonBytesMax);
  if (!parsed.ok()) return Status::InvalidArgument("manifest: " + parsed.status().message());
  if (!parsed->is_object()) return Status::InvalidArgument("manifest is not a JSON object");
  const nlohmann::json& j = *parsed;

  std::string error;
  auto str = [&](const char* key) -> std::string {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      Require(false, key, &error);
      return {};
    }
    return it->get<std::string>();
  };
  auto strings = [&](const char* key, std::vector<std::string>* out) {
    auto it = j.find(key);
    if (it == j.end()) return;
    if (!it->is_array() || it->size() > kManifestListMax) return Require(false, key, &error);
    for (const auto& v : *it) {
      if (!v.is_string() || !IsValidRegionOrProfile(v.get<std::string>())) return Require(false, key, &error);
      out->push_back(v.get<std::string>());
    }
  };

  Manifest m;
  Require(str("schema") == "meridian.manifest/v1", "schema", &error);
  m.name = str("name");
  Require(IsValidModelName(m.name), "name", &error);
  m.version = str("version");
  Require(IsValidVersion(m.version), "version", &error);
  auto size = j.find("size");
  Require(size != j.end() && size->is_number_unsigned(), "size", &error);
  if (error.empty()) m.size = size->get<uint64_t>();
  Result<Digest> digest = Digest::Parse(str("digest"));
  Require(digest.ok(), "digest", &error);
  if (digest.ok()) m.digest = *digest;
  if (j.contains("media_type")) {
    m.media_type = str("media_type");
    Require(!m.media_type.empty() && m.media_type.size() <= kManifestStringBytesMax, "media_type", &error);
  }
  auto chunks = j.find("chunks");
  Require(chunks != j.end() && chunks->is_array() && chunks->size() <= kManifestChunksMax, "chunks", &error);
  if (error.empty()) {
    uint64_t total = 0;
    m.chunks.reserve(chunks->size());
    for (const auto& c : *chunks) {
      auto cd = c.find("digest");
      auto cs = c.find("size");
      if (!c.is_object() || cd == c.end() || !cd->is_string() || cs == c.end() || !cs->is_number_unsigned()) {
        Require(false, "chunks", &error);
        break;
      }
      Result<Digest> d = Digest::Parse(cd->get<std::string>());
      uint64_t n = cs->get<uint64_t>();
      if (!d.ok() || n == 0 || n > kChunkBytesMax) {
        Require(false, "chunks", &error);
        break;
      }
      total += n;
      m.chunks.push_back({*d, n});
    }
    Require(total == m.size, "size (chunk sizes do not add up to it)", &error);
  }
  strings("profiles", &m.profiles);
  strings("regions", &m.regions);
  if (auto a = j.find("annotations"); a != j.end()) {
    if (!a->is_object() || a->size() > kManifestListMax) {
      Require(false, "annotations", &error);
    } else {
      for (const auto& [k, v] : a->items()) {
        if (!v.is_string() || k.size() > kManifestStringBytesMax ||
            v.get<std::string>().size() > kManifestStringBytesMax) {
          Require(false, "annotations", &error);
          break;
        }
        m.annotations[k] = v.get<std::string>();
      }
    }
  }
  if (j.contains("created")) m.created = str("created");
  if (!error.empty()) return Status::InvalidArgument("manifest: invalid or missing field '" + error + "'");
  return m;
}

}  // namespace meridian
