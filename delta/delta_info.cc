// JSON of the delta descriptor.
#include "delta/delta_info.h"

#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

namespace {

nlohmann::ordered_json ToJson(const DeltaInfo& i) {
  nlohmann::ordered_json j;
  j["from"] = i.from.ToString();
  j["to"] = i.to.ToString();
  j["worthwhile"] = i.worthwhile;
  if (i.worthwhile) {
    j["digest"] = i.digest.ToString();
    j["size"] = i.size;
  } else {
    j["reason"] = i.reason;
  }
  j["artifact_size"] = i.artifact_size;
  j["compressed_artifact_size"] = i.compressed_artifact_size;
  return j;
}

}  // namespace

std::string DeltaInfoToJson(const DeltaInfo& info) { return ToJson(info).dump(); }

Result<DeltaInfo> ParseDeltaInfo(std::string_view json) {
  Status bad = Status::InvalidArgument("malformed delta descriptor");
  if (json.size() > kDeltaInfoJsonBytesMax) return bad;
  Result<nlohmann::json> parsed = ParseJson(json, kDeltaInfoJsonBytesMax);
  if (!parsed.ok() || !parsed->is_object()) return bad;
  const nlohmann::json& j = *parsed;
  auto digest = [&](const char* key, Digest* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return false;
    Result<Digest> d = Digest::Parse(it->get<std::string>());
    if (d.ok()) *out = *d;
    return d.ok();
  };
  auto number = [&](const char* key, uint64_t* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned()) return false;
    *out = it->get<uint64_t>();
    return true;
  };
  DeltaInfo i;
  auto w = j.find("worthwhile");
  if (w == j.end() || !w->is_boolean()) return bad;
  i.worthwhile = w->get<bool>();
  if (!digest("from", &i.from) || !digest("to", &i.to) || !number("artifact_size", &i.artifact_size) ||
      !number("compressed_artifact_size", &i.compressed_artifact_size)) {
    return bad;
  }
  if (i.worthwhile) {
    if (!digest("digest", &i.digest) || !number("size", &i.size)) return bad;
  } else if (auto r = j.find("reason"); r != j.end() && r->is_string()) {
    i.reason = r->get<std::string>();
  }
  return i;
}

}  // namespace meridian
