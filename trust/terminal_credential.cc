// Terminal credential requests and credentials: see terminal_credential.h.
#include "trust/terminal_credential.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "base/encoding.h"
#include "base/json.h"
#include "manifest/manifest.h"
#include "rollout/rollout.h"

namespace meridian {
namespace {

constexpr std::string_view kCredentialPrefix = "mtc1.";
// Clocks of daemons differ a little: a credential issued up to this far in
// "the future" is accepted.
constexpr int64_t kClockSlackMs = 60'000;

Bytes RequestMessage(std::string_view terminal_id, int64_t time_ms) {
  return Pae(kCredentialRequestType, AsBytes(fmt::format("{} {}", terminal_id, time_ms)));
}

// Splits "a.b.c" into exactly three non-empty parts.
bool SplitThree(std::string_view text, std::string_view parts[3]) {
  for (int i = 0; i < 2; ++i) {
    size_t dot = text.find('.');
    if (dot == std::string_view::npos || dot == 0) return false;
    parts[i] = text.substr(0, dot);
    text.remove_prefix(dot + 1);
  }
  parts[2] = text;
  return !text.empty() && text.find('.') == std::string_view::npos;
}

}  // namespace

std::string SignCredentialRequest(const SecretKey& key, std::string_view terminal_id, int64_t time_ms) {
  auto sig = key.Sign(RequestMessage(terminal_id, time_ms));
  return fmt::format("{} {}.{}.{}", kCredentialRequestScheme, Base64Encode(key.public_key().bytes), time_ms,
                     Base64Encode(sig));
}

Result<CredentialRequest> VerifyCredentialRequest(std::string_view authorization, std::string_view terminal_id) {
  auto bad = [](std::string_view what) {
    return Status::InvalidArgument(fmt::format("credential request: {}; expected 'Authorization: {} "
                                               "<base64 key>.<unix ms>.<base64 signature>'",
                                               what, kCredentialRequestScheme));
  };
  if (authorization.size() > kCredentialBytesMax) return bad("too long");
  if (!authorization.starts_with(kCredentialRequestScheme) ||
      authorization.substr(kCredentialRequestScheme.size(), 1) != " ") {
    return bad("not the request scheme");
  }
  std::string_view parts[3];
  if (!SplitThree(authorization.substr(kCredentialRequestScheme.size() + 1), parts)) return bad("not three parts");
  Result<Bytes> key_bytes = Base64Decode(parts[0]);
  if (!key_bytes.ok()) return bad("the key is not base64");
  Result<PublicKey> key = PublicKey::FromBytes(*key_bytes);
  if (!key.ok()) return bad("the key is not 32 bytes");
  CredentialRequest request{*key, 0};
  auto [end, ec] = std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), request.time_ms);
  if (ec != std::errc() || end != parts[1].data() + parts[1].size() || request.time_ms < 0) {
    return bad("the time is not unix milliseconds");
  }
  Result<Bytes> sig = Base64Decode(parts[2]);
  if (!sig.ok()) return bad("the signature is not base64");
  if (!VerifySignature(request.key, RequestMessage(terminal_id, request.time_ms), *sig)) {
    return Status::PermissionDenied(
        fmt::format("credential request: the signature is not this key's over terminal '{}' at {}", terminal_id,
                    request.time_ms));
  }
  return request;
}

std::string IssueCredential(const TerminalCredential& c, const SecretKey& online) {
  std::string payload = nlohmann::json{{"type", kCredentialDocumentType},
                                       {"terminal", c.terminal_id},
                                       {"region", c.region},
                                       {"profile", c.profile},
                                       {"issued_ms", c.issued_ms},
                                       {"expires_ms", c.expires_ms},
                                       {"keyid", online.KeyId()}}
                            .dump();
  auto sig = online.Sign(Pae(kCredentialPayloadType, AsBytes(payload)));
  return fmt::format("{}{}.{}", kCredentialPrefix, Base64Encode(AsBytes(payload)), Base64Encode(sig));
}

bool LooksLikeCredential(std::string_view text) { return text.starts_with(kCredentialPrefix); }

Result<TerminalCredential> VerifyCredential(const Root& root, std::string_view text, int64_t now_ms) {
  if (!LooksLikeCredential(text) || text.size() > kCredentialBytesMax) {
    return Status::InvalidArgument("not a terminal credential");
  }
  text.remove_prefix(kCredentialPrefix.size());
  size_t dot = text.find('.');
  if (dot == std::string_view::npos) return Status::InvalidArgument("terminal credential: no signature");
  Result<Bytes> payload = Base64Decode(text.substr(0, dot));
  Result<Bytes> sig = Base64Decode(text.substr(dot + 1));
  if (!payload.ok() || !sig.ok()) return Status::InvalidArgument("terminal credential: not base64");
  Result<nlohmann::json> j = ParseJsonObject(AsString(*payload), kCredentialBytesMax, "terminal credential");
  if (!j.ok()) return Status::InvalidArgument(j.status().message());
  JsonFields f(*j, "terminal credential", UnknownFields::kIgnore);
  TerminalCredential c;
  std::string type, keyid;
  f.String("type", &type, true);
  f.String("terminal", &c.terminal_id, true);
  f.String("region", &c.region, true);
  f.String("profile", &c.profile, true);
  f.Int64("issued_ms", &c.issued_ms, true);
  f.Int64("expires_ms", &c.expires_ms, true);
  f.String("keyid", &keyid, true);
  if (Status st = f.Finish(); !st.ok()) return Status::InvalidArgument(st.message());
  if (type != kCredentialDocumentType) return Status::InvalidArgument("terminal credential: unknown type");
  // The signer must be an online key of the root before its signature is worth checking.
  auto role = root.roles.find("online");
  auto key = root.keys.find(keyid);
  if (role == root.roles.end() || key == root.keys.end() ||
      std::find(role->second.keyids.begin(), role->second.keyids.end(), keyid) == role->second.keyids.end()) {
    return Status::PermissionDenied("terminal credential: not signed by an online key of the root");
  }
  if (!VerifySignature(key->second, Pae(kCredentialPayloadType, *payload), *sig)) {
    return Status::PermissionDenied("terminal credential: bad signature");
  }
  if (!IsValidTerminalId(c.terminal_id) || (!c.region.empty() && !IsValidRegionOrProfile(c.region)) ||
      (!c.profile.empty() && !IsValidRegionOrProfile(c.profile))) {
    return Status::PermissionDenied("terminal credential: invalid terminal id, region or profile");
  }
  if (c.issued_ms > now_ms + kClockSlackMs) return Status::PermissionDenied("terminal credential: issued in the future");
  if (c.expires_ms <= now_ms) {
    return Status::PermissionDenied(fmt::format("terminal credential of '{}' expired; the agent renews it with its key",
                                                c.terminal_id));
  }
  return c;
}

}  // namespace meridian
