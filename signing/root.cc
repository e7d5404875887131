// The root of trust: the root document's JSON form and validation, and the
// checks built on it — role thresholds, root rotation, signed payloads.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/json.h"
#include "base/file.h"
#include "signing/signing.h"

namespace meridian {
namespace {

constexpr std::string_view kRequiredRoles[] = {"root", "release", "online"};
constexpr size_t kExpiresBytesMax = 64;
constexpr size_t kRoleNameBytesMax = 64;

Status Malformed(std::string_view field, std::string_view why) {
  return Status::InvalidArgument("root " + std::string(field) + ": " + std::string(why));
}

Result<PublicKey> ParseKey(const nlohmann::json& entry) {
  if (!entry.is_object()) return Status::InvalidArgument("not an object");
  auto keytype = entry.find("keytype");
  if (keytype == entry.end() || !keytype->is_string() || keytype->get_ref<const std::string&>() != "ed25519") {
    return Status::InvalidArgument("keytype is not ed25519");
  }
  auto public_b64 = entry.find("public");
  if (public_b64 == entry.end() || !public_b64->is_string()) return Status::InvalidArgument("no public key");
  Result<Bytes> raw = Base64Decode(public_b64->get_ref<const std::string&>());
  if (!raw.ok()) return raw.status();
  return PublicKey::FromBytes(*raw);
}

Result<std::map<std::string, PublicKey>> ParseKeys(const nlohmann::json& keys) {
  if (!keys.is_object()) return Malformed("keys", "not an object");
  if (keys.size() > kRootKeysMax) return Malformed("keys", "more than " + std::to_string(kRootKeysMax));
  std::map<std::string, PublicKey> out;
  for (const auto& item : keys.items()) {
    const std::string& keyid = item.key();
    if (keyid.size() > kKeyIdBytesMax) return Malformed("keys", "a key id is too long");
    Result<PublicKey> key = ParseKey(item.value());
    if (!key.ok()) return Malformed("keys." + keyid, key.status().message());
    if (key->KeyId() != keyid) return Malformed("keys." + keyid, "key id is not the SHA-256 of the key");
    out.emplace(keyid, *key);
  }
  return out;
}

// A role lists distinct known key ids and a threshold it can actually reach.
Result<Role> ParseRole(const nlohmann::json& j, const std::map<std::string, PublicKey>& keys) {
  if (!j.is_object()) return Status::InvalidArgument("not an object");
  auto keyids = j.find("keyids");
  if (keyids == j.end() || !keyids->is_array() || keyids->size() > kRootKeysMax) {
    return Status::InvalidArgument("keyids is not an array of at most " + std::to_string(kRootKeysMax));
  }
  Role role;
  std::set<std::string> seen;
  for (const nlohmann::json& id : *keyids) {
    if (!id.is_string() || !keys.contains(id.get_ref<const std::string&>())) {
      return Status::InvalidArgument("keyids names a key that is not in keys");
    }
    if (!seen.insert(id.get_ref<const std::string&>()).second) return Status::InvalidArgument("keyids repeats a key");
    role.keyids.push_back(id.get_ref<const std::string&>());
  }
  auto threshold = j.find("threshold");
  if (threshold == j.end() || !threshold->is_number_unsigned() || threshold->get<uint64_t>() < 1 ||
      threshold->get<uint64_t>() > role.keyids.size()) {
    return Status::InvalidArgument("threshold is not between 1 and the number of keyids");
  }
  role.threshold = static_cast<int>(threshold->get<uint64_t>());  // <= kRootKeysMax
  return role;
}

Result<std::map<std::string, Role>> ParseRoles(const nlohmann::json& roles,
                                               const std::map<std::string, PublicKey>& keys) {
  if (!roles.is_object()) return Malformed("roles", "not an object");
  if (roles.size() > kRootRolesMax) return Malformed("roles", "more than " + std::to_string(kRootRolesMax));
  std::map<std::string, Role> out;
  for (const auto& item : roles.items()) {
    const std::string& name = item.key();
    if (name.size() > kRoleNameBytesMax) return Malformed("roles", "a role name is too long");
    Result<Role> role = ParseRole(item.value(), keys);
    if (!role.ok()) return Malformed("roles." + name, role.status().message());
    out.emplace(name, std::move(*role));
  }
  for (std::string_view required : kRequiredRoles) {
    if (!out.contains(std::string(required))) return Malformed("roles", "no " + std::string(required) + " role");
  }
  return out;
}

Result<Root> ParseRootDocument(std::string_view json) {
  if (json.size() > kRootJsonBytesMax) {
    return Malformed("document", "larger than " + std::to_string(kRootJsonBytesMax) + " bytes");
  }
  Result<nlohmann::json> parsed = ParseJson(json, kRootJsonBytesMax);
  if (!parsed.ok()) return Malformed("document", parsed.status().message());
  if (!parsed->is_object()) return Malformed("document", "not a JSON object");
  const nlohmann::json& j = *parsed;

  auto type = j.find("type");
  if (type == j.end() || !type->is_string() || type->get_ref<const std::string&>() != kRootDocumentType) {
    return Malformed("type", "not " + std::string(kRootDocumentType));
  }
  Root root;
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_unsigned() || version->get<uint64_t>() < 1 ||
      version->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Malformed("version", "not an integer between 1 and 2^63-1");
  }
  root.version = static_cast<int64_t>(version->get<uint64_t>());
  auto expires = j.find("expires");
  if (expires == j.end() || !expires->is_string() || expires->get_ref<const std::string&>().size() > kExpiresBytesMax) {
    return Malformed("expires", "not a string of at most " + std::to_string(kExpiresBytesMax) + " bytes");
  }
  root.expires = expires->get<std::string>();

  auto keys = j.find("keys");
  if (keys == j.end()) return Malformed("keys", "missing");
  Result<std::map<std::string, PublicKey>> parsed_keys = ParseKeys(*keys);
  if (!parsed_keys.ok()) return parsed_keys.status();
  root.keys = std::move(*parsed_keys);

  auto roles = j.find("roles");
  if (roles == j.end()) return Malformed("roles", "missing");
  Result<std::map<std::string, Role>> parsed_roles = ParseRoles(*roles, root.keys);
  if (!parsed_roles.ok()) return parsed_roles.status();
  root.roles = std::move(*parsed_roles);
  return root;
}

// Distinct key ids of `role` with a valid signature in `env`, in the order of
// their first valid signature. A key id that repeats is verified until one of
// its signatures is valid, then skipped, so one key never counts twice; ids
// not in the role or not in root.keys are skipped without verifying anything.
std::vector<std::string> SignersOf(const Root& root, const Role& role, const Envelope& env) {
  const std::set<std::string_view> allowed(role.keyids.begin(), role.keyids.end());
  std::vector<std::string> signers;
  const Bytes pae = Pae(env.payload_type, env.payload);
  for (const Signature& s : env.signatures) {
    if (!allowed.contains(s.keyid) || std::find(signers.begin(), signers.end(), s.keyid) != signers.end()) continue;
    auto key = root.keys.find(s.keyid);
    if (key == root.keys.end()) continue;
    if (VerifySignature(key->second, pae, s.sig)) signers.push_back(s.keyid);
  }
  return signers;
}

// VerifyRole, with `whose` ("trusted root", "new root") naming the root in messages.
Status CheckRole(const Root& root, std::string_view role_name, const Envelope& env, std::string_view whose) {
  const std::string label = (whose.empty() ? "" : std::string(whose) + ": ") + std::string(role_name) + " role";
  auto it = root.roles.find(std::string(role_name));
  if (it == root.roles.end()) return Status::InvalidArgument(label + " does not exist");
  const Role& role = it->second;
  // A threshold of 0 would accept an unsigned envelope; only a Root built by
  // hand can carry one, ParseRoot refuses it.
  if (role.threshold < 1) return Status::InvalidArgument(label + ": threshold is below 1");
  if (env.signatures.size() > kEnvelopeSignaturesMax) {
    return Status::InvalidArgument(label + ": envelope has more than " + std::to_string(kEnvelopeSignaturesMax) +
                                   " signatures");
  }
  size_t valid = SignersOf(root, role, env).size();
  if (valid >= static_cast<size_t>(role.threshold)) return Status::Ok();
  return Status::PermissionDenied(label + ": " + std::to_string(valid) + " of " + std::to_string(role.threshold) +
                                  " required valid signatures");
}

Status CheckPayloadType(const Envelope& env, std::string_view payload_type) {
  if (env.payload_type == payload_type) return Status::Ok();
  return Status::InvalidArgument("payload type is \"" + env.payload_type + "\", expected \"" +
                                 std::string(payload_type) + "\"");
}

}  // namespace

std::string RootToJson(const Root& root) {
  nlohmann::ordered_json keys = nlohmann::ordered_json::object();
  for (const auto& [keyid, key] : root.keys) {
    nlohmann::ordered_json entry;
    entry["keytype"] = "ed25519";
    entry["public"] = Base64Encode(key.bytes);
    keys[keyid] = std::move(entry);
  }
  nlohmann::ordered_json roles = nlohmann::ordered_json::object();
  for (const auto& [name, role] : root.roles) {
    nlohmann::ordered_json entry;
    entry["keyids"] = role.keyids;
    entry["threshold"] = role.threshold;
    roles[name] = std::move(entry);
  }
  nlohmann::ordered_json j;
  j["type"] = std::string(kRootDocumentType);
  j["version"] = root.version;
  j["expires"] = root.expires;
  j["keys"] = std::move(keys);
  j["roles"] = std::move(roles);
  // Replacing invalid UTF-8 keeps this exception-free; ParseRoot then refuses
  // the mangled ids.
  return DumpJson(j);
}

Result<Root> ParseRoot(std::string_view json) {
  try {
    return ParseRootDocument(json);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("root: ") + e.what());
  }
}

Status VerifyRole(const Root& root, std::string_view role, const Envelope& env) {
  return CheckRole(root, role, env, "");
}

std::vector<std::string> ValidSigners(const Root& root, std::string_view role, const Envelope& env) {
  auto it = root.roles.find(std::string(role));
  if (it == root.roles.end()) return {};
  return SignersOf(root, it->second, env);
}

Result<Envelope> MergeSignatures(const Root& root, std::string_view role, const Envelope& base,
                                 const Envelope& more) {
  if (base.payload_type != more.payload_type || base.payload != more.payload) {
    return Status::InvalidArgument("the signatures are over another payload");
  }
  if (base.signatures.size() > kEnvelopeSignaturesMax || more.signatures.size() > kEnvelopeSignaturesMax) {
    return Status::InvalidArgument("envelope has more than " + std::to_string(kEnvelopeSignaturesMax) + " signatures");
  }
  Envelope both = base;
  both.signatures.insert(both.signatures.end(), more.signatures.begin(), more.signatures.end());
  Envelope merged{base.payload_type, base.payload, {}};
  // One valid signature per signer: the first, as SignersOf found it.
  const Bytes pae = Pae(both.payload_type, both.payload);
  for (const std::string& keyid : ValidSigners(root, role, both)) {
    const PublicKey& key = root.keys.at(keyid);
    for (const Signature& s : both.signatures) {
      if (s.keyid == keyid && VerifySignature(key, pae, s.sig)) {
        merged.signatures.push_back(s);
        break;
      }
    }
  }
  return merged;
}

Status CheckRootFresh(const Root& root, int64_t now_unix_ms) {
  Result<int64_t> expires = ParseRfc3339(root.expires);
  if (!expires.ok()) {
    return Status::FailedPrecondition("root version " + std::to_string(root.version) + ": expires is not an RFC 3339 "
                                      "UTC time: " + expires.status().message());
  }
  if (now_unix_ms < *expires) return Status::Ok();
  return Status::FailedPrecondition("root version " + std::to_string(root.version) + " expired at " + root.expires);
}

Result<Root> LoadTrustedRoot(std::string_view envelope_json) {
  Result<Envelope> env = ParseEnvelope(envelope_json);
  if (!env.ok()) return env.status();
  MERIDIAN_RETURN_IF_ERROR(CheckPayloadType(*env, kRootPayloadType));
  Result<Root> root = ParseRoot(AsString(env->payload));
  if (!root.ok()) return root.status();
  MERIDIAN_RETURN_IF_ERROR(CheckRole(*root, "root", *env, "initial root"));
  return root;
}

Result<Root> LoadTrustedRootFile(const std::string& path) {
  Result<std::string> text = ReadFileToString(path, kRootEnvelopeBytesMax);
  if (!text.ok()) return text.status();
  Result<Root> root = LoadTrustedRoot(*text);
  if (root.ok()) return root;
  if (root.status().code() == Status::Code::kPermissionDenied) {
    return Status::PermissionDenied(path + ": " + root.status().message());
  }
  return Status::InvalidArgument(path + ": " + root.status().message());
}

Result<Root> VerifyRootUpdate(const Root& trusted, const Envelope& next) {
  MERIDIAN_RETURN_IF_ERROR(CheckPayloadType(next, kRootPayloadType));
  // The trusted keys vouch for the bytes before anything parses them.
  MERIDIAN_RETURN_IF_ERROR(CheckRole(trusted, "root", next, "trusted root"));
  Result<Root> root = ParseRoot(AsString(next.payload));
  if (!root.ok()) return root.status();
  MERIDIAN_RETURN_IF_ERROR(CheckRole(*root, "root", next, "new root"));
  // version >= 1 after ParseRoot, so version - 1 cannot overflow.
  if (root->version - 1 != trusted.version) {
    return Status::FailedPrecondition("root version " + std::to_string(root->version) +
                                      " does not follow trusted version " + std::to_string(trusted.version));
  }
  return root;
}

Result<std::string> VerifyPayload(const Root& root, std::string_view role, std::string_view payload_type,
                                  std::string_view envelope_json) {
  Result<Envelope> env = ParseEnvelope(envelope_json);
  if (!env.ok()) return Status::InvalidArgument("not a DSSE envelope: " + env.status().message());
  MERIDIAN_RETURN_IF_ERROR(CheckPayloadType(*env, payload_type));
  MERIDIAN_RETURN_IF_ERROR(VerifyRole(root, role, *env));
  return std::string(AsString(env->payload));
}

}  // namespace meridian
