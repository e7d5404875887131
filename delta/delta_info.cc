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
  Result<nlohmann::json> parsed = ParseJsonObject(json, kDeltaInfoJsonBytesMax, "delta descriptor");
  if (!parsed.ok()) return parsed.status();
  JsonFields f(*parsed, "delta descriptor", UnknownFields::kIgnore);
  DeltaInfo i;
  f.Digest("from", &i.from, true);
  f.Digest("to", &i.to, true);
  f.Bool("worthwhile", &i.worthwhile, true);
  if (i.worthwhile) {
    f.Digest("digest", &i.digest, true);
    f.Uint("size", &i.size, true);
  } else {
    f.String("reason", &i.reason);
  }
  f.Uint("artifact_size", &i.artifact_size, true);
  f.Uint("compressed_artifact_size", &i.compressed_artifact_size, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  return i;
}

}  // namespace meridian
