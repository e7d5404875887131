// The catalog: residency and public access per version, decided in memory.
#include "daemon/catalog.h"

#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

std::string HoldingsToJson(std::string_view region, const std::map<std::string, ModelHolding>& models) {
  nlohmann::json m = nlohmann::json::object();
  for (const auto& [name, h] : models) {
    m[name] = {{"versions", h.versions}, {"versions_held", h.versions_held}, {"bytes", h.bytes}};
  }
  return nlohmann::json{{"region", region}, {"models", m}}.dump();
}

Result<std::map<std::string, ModelHolding>> ParseHoldings(std::string_view json, std::string* region) {
  Result<nlohmann::json> parsed = ParseJsonObject(json, json.size(), "holdings");
  if (!parsed.ok()) return parsed.status();
  JsonFields f(*parsed, "holdings", UnknownFields::kIgnore);
  f.String("region", region, true);
  std::map<std::string, ModelHolding> out;
  if (const nlohmann::json* models = f.Object("models", true)) {
    if (models->size() > kHoldingsModelsMax) f.Fail("models", fmt::format("more than {} models", kHoldingsModelsMax));
    for (const auto& [name, value] : models->items()) {
      if (out.size() >= kHoldingsModelsMax) break;
      if (!IsValidModelName(name) || !value.is_object()) {
        f.Fail("models", "must map model names to objects");
        break;
      }
      ModelHolding h;
      const std::string what = "holdings.models." + name;
      JsonFields mf(value, what, UnknownFields::kIgnore);
      mf.Uint("versions", &h.versions, true);
      mf.Uint("versions_held", &h.versions_held, true);
      mf.Uint("bytes", &h.bytes, true);
      MERIDIAN_RETURN_IF_ERROR(mf.Finish());
      out.emplace(name, h);
    }
  }
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  if (!IsValidRegionOrProfile(*region)) return Status::InvalidArgument("holdings: region is not a valid region name");
  return out;
}

bool Catalog::MayHold(const std::vector<std::string>& regions) const { return ResidencyAllows(regions, jurisdiction_); }

std::string Catalog::DescribeJurisdiction() const {
  return jurisdiction_.empty() ? "this daemon declares no jurisdiction"
                               : fmt::format("this daemon's jurisdiction is '{}'", jurisdiction_);
}

Status Catalog::Load(Store& store) {
  std::lock_guard load(load_mu_);
  Sets fresh;
  Result<std::vector<std::string>> models = store.ListModels();
  if (!models.ok()) return models.status();
  for (const std::string& model : *models) {
    Result<std::vector<std::string>> versions = store.ListVersions(model);
    if (versions.status().code() == Status::Code::kNotFound) continue;  // its last version was just deleted
    if (!versions.ok()) return versions.status();
    for (const std::string& v : *versions) {
      Result<std::shared_ptr<const Manifest>> m = store.GetManifest(model, v);
      if (m.status().code() == Status::Code::kNotFound) continue;  // deleted meanwhile
      // A version that no longer reads here (a damaged envelope or index
      // page: fsck names it) is no exception: nothing of it can be served,
      // and the daemon starts, so that a publish or a region's sync restores it.
      if (m.status().code() == Status::Code::kCorruption) continue;
      if (!m.ok()) return m.status();
      Add(fresh, **m);
    }
  }
  std::unique_lock lock(mu_);
  sets_ = std::move(fresh);
  return Status::Ok();
}

void Catalog::Learn(const Manifest& m) {
  if (MayHold(m) && !m.is_public) return;
  std::lock_guard load(load_mu_);
  std::unique_lock lock(mu_);
  Add(sets_, m);
}

void Catalog::Add(Sets& sets, const Manifest& m) const {
  if (!MayHold(m)) {
    sets.elsewhere_artifacts.insert(m.digest);
    for (size_t i = 0; i < m.piece_count(); ++i) sets.elsewhere_chunks.insert(m.piece(i).digest);
  } else if (m.is_public) {
    for (size_t i = 0; i < m.piece_count(); ++i) sets.public_chunks.insert(m.piece(i).digest);
    sets.public_artifacts.insert(m.digest);
    sets.public_versions.emplace(m.name, m.version);
  }
}

bool Catalog::IsPublicChunk(const Digest& chunk) const {
  std::shared_lock lock(mu_);
  return sets_.public_chunks.count(chunk) > 0;
}

bool Catalog::IsPublicArtifact(const Digest& artifact) const {
  std::shared_lock lock(mu_);
  return sets_.public_artifacts.count(artifact) > 0;
}

bool Catalog::IsPublicVersion(const std::string& model, const std::string& version) const {
  std::shared_lock lock(mu_);
  return sets_.public_versions.count({model, version}) > 0;
}

std::vector<std::string> Catalog::PublicVersions(const std::string& model,
                                                 const std::vector<std::string>& versions) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  for (const std::string& v : versions) {
    if (sets_.public_versions.count({model, v})) out.push_back(v);
  }
  return out;
}

bool Catalog::IsElsewhereChunk(const Digest& chunk) const {
  std::shared_lock lock(mu_);
  return sets_.elsewhere_chunks.count(chunk) > 0;
}

bool Catalog::IsElsewhereArtifact(const Digest& artifact) const {
  std::shared_lock lock(mu_);
  return sets_.elsewhere_artifacts.count(artifact) > 0;
}

Result<std::map<std::string, ModelHolding>> Catalog::Holdings(Store& store) {
  std::map<std::string, ModelHolding> out;
  Result<std::vector<std::string>> models = store.ListModels();
  if (!models.ok()) return models.status();
  for (const std::string& model : *models) {
    Result<std::vector<std::string>> versions = store.ListVersions(model);
    if (versions.status().code() == Status::Code::kNotFound) continue;  // its last version was just deleted
    if (!versions.ok()) return versions.status();
    ModelHolding& h = out[model];
    std::unordered_set<Digest> counted;  // a chunk shared by versions counts once
    for (const std::string& v : *versions) {
      Result<std::shared_ptr<const Manifest>> m = store.GetManifest(model, v);
      if (m.status().code() == Status::Code::kNotFound) continue;  // deleted meanwhile
      // As in Load: one damaged version does not hide what the others hold.
      if (m.status().code() == Status::Code::kCorruption) {
        ++h.versions;
        continue;
      }
      if (!m.ok()) return m.status();
      ++h.versions;
      std::vector<Digest> digests;
      std::map<Digest, uint64_t> sizes;
      for (size_t i = 0; i < (*m)->piece_count(); ++i) {
        const ChunkRef c = (*m)->piece(i);
        if (sizes.emplace(c.digest, c.size).second) digests.push_back(c.digest);
      }
      Result<std::vector<Digest>> missing = store.MissingChunks(digests);
      if (!missing.ok()) return missing.status();
      if (missing->empty()) ++h.versions_held;
      std::unordered_set<Digest> absent(missing->begin(), missing->end());
      for (const Digest& d : digests) {
        if (!absent.count(d) && counted.insert(d).second) h.bytes += sizes[d];
      }
    }
  }
  return out;
}

}  // namespace meridian
