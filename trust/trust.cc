#include "trust/trust.h"

#include <fmt/format.h>

namespace meridian {

Status VerifiedManifest::CheckNames(std::string_view model, std::string_view version) const {
  if (manifest_.name == model && (version.empty() || manifest_.version == version)) return Status::Ok();
  return Status::Corruption(fmt::format("the manifest is of {} {}, not {} {}", manifest_.name, manifest_.version,
                                        model, version.empty() ? "(any version)" : version));
}

Result<VerifiedManifest> VerifySignedManifest(const Root& root, std::string envelope_json) {
  Result<std::string> payload = VerifyPayload(root, "release", kManifestPayloadType, envelope_json);
  if (!payload.ok()) return payload.status();
  Result<Manifest> m = ParseManifest(*payload);
  if (!m.ok()) return Status::Corruption("signed manifest: " + m.status().message());
  return VerifiedManifest(std::move(*m), std::move(envelope_json));
}

Result<CoSignedManifest> VerifyCoSignedManifest(const Root& root, std::string_view envelope_json) {
  Result<Envelope> env = ParseEnvelope(envelope_json);
  if (!env.ok()) return Status::InvalidArgument("not a DSSE envelope: " + env.status().message());
  if (env->payload_type != kManifestPayloadType) {
    return Status::InvalidArgument(fmt::format("payload type is \"{}\", expected \"{}\"", env->payload_type,
                                               kManifestPayloadType));
  }
  auto role = root.roles.find("release");
  if (role == root.roles.end()) return Status::InvalidArgument("the root has no release role");
  Result<Envelope> kept = MergeSignatures(root, "release", *env, Envelope{env->payload_type, env->payload, {}});
  if (!kept.ok()) return kept.status();
  if (kept->signatures.empty()) {
    return Status::PermissionDenied("release role: no valid signature by a release key of the root");
  }
  Result<Manifest> m = ParseManifest(AsString(kept->payload));
  if (!m.ok()) return Status::Corruption("signed manifest: " + m.status().message());
  CoSignedManifest out{std::move(*m), std::move(*kept), {}, role->second.threshold};
  for (const Signature& s : out.envelope.signatures) out.signers.push_back(s.keyid);
  return out;
}

Result<DeltaInfo> VerifyDeltaInfo(const Root& root, std::string_view envelope_json, const Digest& from,
                                  const Digest& to) {
  Result<std::string> payload = VerifyPayload(root, "online", kDeltaInfoPayloadType, envelope_json);
  if (!payload.ok()) return payload.status();
  Result<DeltaInfo> info = ParseDeltaInfo(*payload);
  if (!info.ok()) return Status::Corruption("signed delta descriptor: " + info.status().message());
  if (info->from != from || info->to != to) {
    return Status::Corruption("the signed delta descriptor is of another pair of versions");
  }
  return info;
}

}  // namespace meridian
