// Channel state documents: JSON, signing, a terminal's verification, and
// target resolution over rollout/'s cohort rule.
#include "target/target.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/json.h"
#include "manifest/manifest.h"

namespace meridian {

namespace {

using Json = nlohmann::json;

Status CheckVersionNamed(const ChannelState& s, const std::string& version) {
  if (version.empty() || s.versions.count(version)) return Status::Ok();
  return Status::InvalidArgument(fmt::format("channel state: version '{}' is not listed in versions", version));
}

}  // namespace

std::string ChannelStateToJson(const ChannelState& s) {
  Json rollouts = Json::array();
  for (const ChannelRollout& r : s.rollouts) {
    rollouts.push_back({{"spec", Json::parse(RolloutSpecToJson(r.spec))},
                        {"state", Json::parse(RolloutStateToJson(r.state))}});
  }
  Json versions = Json::object();
  for (const auto& [v, ref] : s.versions) {
    versions[v] = {
        {"manifest_digest", ref.manifest_digest.ToString()}, {"digest", ref.digest.ToString()}, {"size", ref.size}};
  }
  return DumpJson(Json{{"type", kTargetDocumentType},
                       {"model", s.model},
                       {"channel", s.channel},
                       {"state_version", s.state_version},
                       {"issued_ms", s.issued_ms},
                       {"expires_ms", s.expires_ms},
                       {"version", s.version},
                       {"rollouts", rollouts},
                       {"versions", versions}});
}

Result<ChannelState> ChannelStateFromJson(std::string_view text) {
  Result<Json> parsed = ParseJsonObject(text, kChannelStateJsonBytesMax, "channel state");
  if (!parsed.ok()) return parsed.status();
  JsonFields f(*parsed, "channel state", UnknownFields::kIgnore);
  ChannelState s;
  std::string type;
  f.String("type", &type, true);
  f.String("model", &s.model, true);
  f.String("channel", &s.channel, true);
  f.Uint("state_version", &s.state_version, true);
  f.Int64("issued_ms", &s.issued_ms, true);
  f.Int64("expires_ms", &s.expires_ms, true);
  f.String("version", &s.version, true);
  const Json* rollouts = f.Objects("rollouts", kChannelRolloutsMax, true);
  const Json* versions = f.Object("versions", true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  if (type != kTargetDocumentType) return Status::InvalidArgument(fmt::format("channel state: type '{}'", type));
  if (!IsValidModelName(s.model) || !IsValidRegionOrProfile(s.channel)) {
    return Status::InvalidArgument("channel state: invalid model or channel name");
  }
  if (!s.version.empty() && !IsValidVersion(s.version)) return Status::InvalidArgument("channel state: invalid version");
  if (versions->size() > kChannelVersionsMax) {
    return Status::InvalidArgument(fmt::format("channel state: versions must be an object of at most {}", kChannelVersionsMax));
  }
  for (const Json& r : *rollouts) {
    JsonFields rf(r, "channel state rollout", UnknownFields::kIgnore);
    const Json* spec_json = rf.Object("spec", true);
    const Json* state_json = rf.Object("state", true);
    MERIDIAN_RETURN_IF_ERROR(rf.Finish());
    Result<RolloutSpec> spec = RolloutSpecFromJson(DumpJson(*spec_json));
    if (!spec.ok()) return spec.status();
    Result<RolloutState> state = RolloutStateFromJson(DumpJson(*state_json));
    if (!state.ok()) return state.status();
    if (spec->model != s.model || spec->channel != s.channel) {
      return Status::InvalidArgument(fmt::format("channel state: rollout '{}' is of another channel", spec->id));
    }
    if (state->stage >= StageCount(*spec)) {
      return Status::InvalidArgument(fmt::format("channel state: rollout '{}' stage out of range", spec->id));
    }
    s.rollouts.push_back({std::move(*spec), *state});
  }
  for (const auto& [v, ref] : versions->items()) {
    if (!IsValidVersion(v) || !ref.is_object()) return Status::InvalidArgument("channel state: malformed versions entry");
    VersionRef out;
    JsonFields vf(ref, fmt::format("channel state: version '{}'", v), UnknownFields::kIgnore);
    vf.Digest("manifest_digest", &out.manifest_digest, true);
    vf.Digest("digest", &out.digest, true);
    vf.Uint("size", &out.size, true);
    MERIDIAN_RETURN_IF_ERROR(vf.Finish());
    s.versions.emplace(v, out);
  }
  MERIDIAN_RETURN_IF_ERROR(CheckVersionNamed(s, s.version));
  for (const ChannelRollout& r : s.rollouts) {
    MERIDIAN_RETURN_IF_ERROR(CheckVersionNamed(s, r.spec.target_version));
    MERIDIAN_RETURN_IF_ERROR(CheckVersionNamed(s, r.spec.previous_version));
  }
  return s;
}

std::string SignChannelState(const ChannelState& state, const SecretKey& online_key) {
  Envelope env;
  env.payload_type = std::string(kTargetPayloadType);
  env.payload = ToBytes(ChannelStateToJson(state));
  SignEnvelope(env, online_key);
  return EnvelopeToJson(env);
}

Result<ChannelState> VerifyChannelState(const Root& root, std::string_view envelope_json, std::string_view model,
                                        std::string_view channel, uint64_t last_seen_state_version, int64_t now_ms) {
  Result<std::string> payload = VerifyPayload(root, "online", kTargetPayloadType, envelope_json);
  if (!payload.ok()) return payload.status();
  Result<ChannelState> s = ChannelStateFromJson(*payload);
  if (!s.ok()) return s.status();
  if (s->model != model || s->channel != channel) {
    return Status::InvalidArgument(fmt::format("channel state is for {}/{}, not {}/{}", s->model, s->channel, model,
                                               channel));
  }
  if (s->state_version < last_seen_state_version) {
    return Status::FailedPrecondition(fmt::format("channel state version {} is older than {} already seen (replayed)",
                                                  s->state_version, last_seen_state_version));
  }
  if (now_ms >= s->expires_ms) {
    return Status::DeadlineExceeded(fmt::format("channel state expired at {} (now {})", FormatRfc3339(s->expires_ms),
                                                FormatRfc3339(now_ms)));
  }
  return s;
}

ChannelTarget ResolveChannelTarget(const ChannelState& state, const TerminalInfo& terminal) {
  ChannelTarget t;
  t.version = state.version;
  t.reason = "channel";
  for (const ChannelRollout& r : state.rollouts) {
    if (!IsEligible(r.spec, terminal)) continue;
    TargetResolution res = ResolveTarget(r.spec, r.state, terminal);
    t.version = res.version;
    t.rollout = r.spec.id;
    t.reason = std::string(TargetReasonName(res.reason));
    break;
  }
  if (auto it = state.versions.find(t.version); it != state.versions.end()) t.ref = it->second;
  return t;
}

}  // namespace meridian
