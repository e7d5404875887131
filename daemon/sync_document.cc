// The sync document, its revocations and a region's record of them (see sync_document.h).
#include "daemon/sync_document.h"

#include <limits>

#include <nlohmann/json.hpp>

#include "base/json.h"
#include "manifest/manifest.h"
#include "rollout/rollout.h"

namespace meridian {

using Json = nlohmann::json;

nlohmann::json RevocationsToJson(const std::vector<Revocation>& revocations) {
  nlohmann::json out = nlohmann::json::array();
  for (const Revocation& r : revocations) out.push_back({{"terminal", r.terminal_id}, {"revoked_ms", r.revoked_ms}});
  return out;
}

Result<std::vector<Revocation>> RevocationsFromJson(const nlohmann::json& j) {
  if (!j.is_array()) return Status::InvalidArgument("revocations: not an array");
  std::vector<Revocation> out;
  out.reserve(j.size());
  for (const nlohmann::json& item : j) {
    if (!item.is_object()) return Status::InvalidArgument("revocations: not an object");
    JsonFields f(item, "revocation", UnknownFields::kIgnore);
    Revocation r;
    f.String("terminal", &r.terminal_id, true);
    f.Int64("revoked_ms", &r.revoked_ms, true);
    MERIDIAN_RETURN_IF_ERROR(f.Finish());
    if (!IsValidTerminalId(r.terminal_id)) return Status::InvalidArgument("revocations: invalid terminal id");
    out.push_back(std::move(r));
  }
  return out;
}

std::string SyncDocumentToJson(const SyncDocument& doc) {
  Json versions = Json::array(), channels = Json::array();
  for (const SyncVersion& v : doc.versions) {
    versions.push_back({{"model", v.model}, {"version", v.version}, {"regions", v.regions}});
  }
  for (const SyncChannel& c : doc.channels) {
    channels.push_back(
        {{"model", c.model}, {"channel", c.channel}, {"state_version", c.state_version}, {"envelope", c.envelope}});
  }
  return Json{{"sync_version", doc.sync_version},
              {"root_version", doc.root_version},
              {"versions", versions},
              {"channels", channels},
              {"revoked", RevocationsToJson(doc.revoked)},
              {"revocations", doc.revocations}}
      .dump();
}

Result<SyncDocument> ParseSyncDocument(std::string_view json) {
  Result<Json> parsed = ParseJsonObject(json, kSyncDocumentBytesMax, "sync document");
  if (!parsed.ok()) return parsed.status();
  // The upstream wrote it, maybe a newer daemon: what it adds is ignored.
  JsonFields f(*parsed, "sync document", UnknownFields::kIgnore);
  SyncDocument doc;
  f.Uint("sync_version", &doc.sync_version, true);
  f.Uint("revocations", &doc.revocations);
  uint64_t root_version = 0;
  f.Uint("root_version", &root_version, false);  // absent from an upstream older than the chain of roots
  const Json* versions = f.Objects("versions", kSyncDocumentBytesMax, true);  // bounded by the bytes
  const Json* channels = f.Objects("channels", kSyncDocumentBytesMax, true);
  const Json* revoked = f.Objects("revoked", kSyncDocumentBytesMax);  // absent from an older upstream's
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  if (revoked != nullptr) {
    Result<std::vector<Revocation>> list = RevocationsFromJson(*revoked);
    if (!list.ok()) return Status::InvalidArgument("sync document: " + list.status().message());
    doc.revoked = std::move(*list);
  }
  if (root_version > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Status::InvalidArgument("sync document: root_version out of range");
  }
  doc.root_version = static_cast<int64_t>(root_version);
  for (const Json& v : *versions) {
    SyncVersion sv;
    JsonFields vf(v, "sync document version", UnknownFields::kIgnore);
    vf.String("model", &sv.model, true);
    vf.String("version", &sv.version, true);
    vf.Strings("regions", &sv.regions, true);
    MERIDIAN_RETURN_IF_ERROR(vf.Finish());
    if (!IsValidModelName(sv.model) || !IsValidVersion(sv.version)) {
      return Status::InvalidArgument("sync document: invalid model name or version");
    }
    doc.versions.push_back(std::move(sv));
  }
  for (const Json& c : *channels) {
    SyncChannel sc;
    JsonFields cf(c, "sync document channel", UnknownFields::kIgnore);
    cf.String("model", &sc.model, true);
    cf.String("channel", &sc.channel, true);
    cf.Uint("state_version", &sc.state_version, true);
    cf.String("envelope", &sc.envelope, true);
    MERIDIAN_RETURN_IF_ERROR(cf.Finish());
    doc.channels.push_back(std::move(sc));
  }
  return doc;
}

std::string RegionRevocationsToJson(const RegionRevocations& record) {
  return Json{{"made", record.made}, {"revoked", RevocationsToJson(record.revoked)}}.dump();
}

Result<RegionRevocations> ParseRegionRevocations(std::string_view json) {
  constexpr std::string_view kWhat = "revoked-terminals";
  Result<Json> j = ParseJsonObject(json, kSyncDocumentBytesMax, kWhat);
  if (!j.ok()) return j.status();
  RegionRevocations record;
  JsonFields f(*j, kWhat, UnknownFields::kIgnore);
  f.Uint("made", &record.made, true);
  const Json* revoked = f.Array("revoked", kSyncDocumentBytesMax, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  Result<std::vector<Revocation>> list = RevocationsFromJson(*revoked);
  if (!list.ok()) return list.status();
  record.revoked = std::move(*list);
  return record;
}

}  // namespace meridian
