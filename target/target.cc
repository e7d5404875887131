// Channel state documents: JSON, signing, a terminal's verification, and
// target resolution over rollout/'s cohort rule.
#include "target/target.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/json.h"
#include "manifest/manifest.h"

namespace meridian {

namespace {

using Json = nlohmann::json;

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Reads a field of an expected JSON type, or records why not.
template <typename T>
bool Read(const Json& j, const char* key, T* out, std::string* error) {
  auto it = j.find(key);
  bool ok = it != j.end();
  if (ok) {
    if constexpr (std::is_same_v<T, std::string>) ok = it->is_string();
    else if constexpr (std::is_same_v<T, uint64_t>) ok = it->is_number_unsigned();
    else ok = it->is_number_integer();
  }
  if (!ok) {
    if (error->empty()) *error = fmt::format("channel state: field '{}' is missing or of the wrong type", key);
    return false;
  }
  *out = it->get<T>();
  return true;
}

Status ParseDigestField(const std::string& version, const char* key, std::string_view text, Digest* out) {
  Result<Digest> d = Digest::Parse(text);
  if (!d.ok()) {
    return Status::InvalidArgument(
        fmt::format("channel state: version '{}' field '{}': {}", version, key, d.status().message()));
  }
  *out = *d;
  return Status::Ok();
}

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
  return Dump({{"type", kTargetDocumentType},
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
  if (text.size() > kChannelStateJsonBytesMax) return Status::InvalidArgument("channel state: document too large");
  Result<Json> parsed = ParseJson(text, kChannelStateJsonBytesMax);
  if (!parsed.ok()) return Status::InvalidArgument("channel state: " + parsed.status().message());
  if (!parsed->is_object()) return Status::InvalidArgument("channel state: not a JSON object");
  const Json& j = *parsed;
  ChannelState s;
  std::string type, error;
  Read(j, "type", &type, &error);
  Read(j, "model", &s.model, &error);
  Read(j, "channel", &s.channel, &error);
  Read(j, "state_version", &s.state_version, &error);
  Read(j, "issued_ms", &s.issued_ms, &error);
  Read(j, "expires_ms", &s.expires_ms, &error);
  Read(j, "version", &s.version, &error);
  if (!error.empty()) return Status::InvalidArgument(error);
  if (type != kTargetDocumentType) return Status::InvalidArgument(fmt::format("channel state: type '{}'", type));
  if (!IsValidModelName(s.model) || !IsValidRegionOrProfile(s.channel)) {
    return Status::InvalidArgument("channel state: invalid model or channel name");
  }
  if (!s.version.empty() && !IsValidVersion(s.version)) return Status::InvalidArgument("channel state: invalid version");

  auto rollouts = j.find("rollouts");
  auto versions = j.find("versions");
  if (rollouts == j.end() || !rollouts->is_array() || rollouts->size() > kChannelRolloutsMax) {
    return Status::InvalidArgument(fmt::format("channel state: rollouts must be an array of at most {}", kChannelRolloutsMax));
  }
  if (versions == j.end() || !versions->is_object() || versions->size() > kChannelVersionsMax) {
    return Status::InvalidArgument(fmt::format("channel state: versions must be an object of at most {}", kChannelVersionsMax));
  }
  for (const Json& r : *rollouts) {
    if (!r.is_object() || !r.contains("spec") || !r.contains("state")) {
      return Status::InvalidArgument("channel state: every rollout needs spec and state");
    }
    Result<RolloutSpec> spec = RolloutSpecFromJson(Dump(r["spec"]));
    if (!spec.ok()) return spec.status();
    Result<RolloutState> state = RolloutStateFromJson(Dump(r["state"]));
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
    std::string manifest_digest, digest;
    Read(ref, "manifest_digest", &manifest_digest, &error);
    Read(ref, "digest", &digest, &error);
    Read(ref, "size", &out.size, &error);
    if (!error.empty()) return Status::InvalidArgument(error);
    MERIDIAN_RETURN_IF_ERROR(ParseDigestField(v, "manifest_digest", manifest_digest, &out.manifest_digest));
    MERIDIAN_RETURN_IF_ERROR(ParseDigestField(v, "digest", digest, &out.digest));
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
  Result<Envelope> env = ParseEnvelope(envelope_json);
  if (!env.ok()) return env.status();
  Result<std::string> payload = VerifyPayload(root, "online", kTargetPayloadType, *env);
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
    return Status::DeadlineExceeded(fmt::format("channel state expired at {} (now {})", s->expires_ms, now_ms));
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
