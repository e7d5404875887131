// sign and show (co-signed releases), root rotate and root push.
#include <algorithm>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/clock.h"
#include "base/env.h"
#include "base/file.h"
#include "base/json.h"
#include "cli/commands.h"
#include "cli/cosign.h"
#include "cli/output.h"
#include "client/api.h"
#include "manifest/manifest.h"
#include "signing/signing.h"

namespace meridian::cli {

Result<std::vector<SecretKey>> ReadReleaseKeys(const std::vector<std::string>& files) {
  if (files.empty()) return Status::InvalidArgument("at least one --key is needed");
  std::vector<SecretKey> keys;
  for (const std::string& file : files) {
    Result<SecretKey> key = ReadSecretKeyFile(file);
    if (!key.ok()) return Status::InvalidArgument(file + ": " + key.status().message());
    for (const SecretKey& k : keys) {
      if (k.KeyId() == key->KeyId()) return Status::InvalidArgument(file + ": the same key is given twice");
    }
    keys.push_back(std::move(*key));
  }
  return keys;
}

Result<CommitAnswer> ParseCommitAnswer(const HttpReply& reply) {
  CommitAnswer a;
  a.pending = reply.status == 202;
  if (!a.pending) return a;
  Result<nlohmann::json> j = ParseJsonObject(reply.body, reply.body.size(), "the daemon's answer");
  if (!j.ok()) return j.status();
  JsonFields f(*j, "the daemon's answer", UnknownFields::kIgnore);
  f.Strings("signers", &a.signers, true);
  f.Uint("threshold", &a.threshold, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  return a;
}

void PrintCommitAnswer(const std::string& model, const std::string& version, const CommitAnswer& answer) {
  if (!answer.pending) return;
  fmt::print("{} of {} release signatures, by {}\n", answer.signers.size(), answer.threshold,
             fmt::join(answer.signers, ", "));
  fmt::print("invisible until signed by {} more: meridian sign {} {} --key KEY\n",
             answer.threshold - std::min<uint64_t>(answer.threshold, answer.signers.size()), model, version);
}

namespace {

// A version's envelope as the daemon holds it: visible, else pending.
struct Found {
  Envelope envelope;
  Manifest manifest;  // parsed from the payload, unverified: for a person to look at
  bool pending = false;
};

Result<Found> FetchEnvelope(HttpClient& client, const std::string& model, const std::string& version) {
  Found found;
  Result<HttpReply> r = GetSpooled(client, VersionPath(model, version), kManifestReplyBytesMax, SpoolDir());
  if (!r.ok()) return r.status();
  if (r->status == 404) {
    found.pending = true;
    r = GetSpooled(client, PendingVersionPath(model, version), kManifestReplyBytesMax, SpoolDir());
    if (!r.ok()) return r.status();
    if (r->status == 404) return Status::NotFound(model + " " + version + " is neither published nor waiting for signatures");
  }
  if (r->status != 200) return ReplyError(*r, found.pending ? "pending version" : "version");
  Result<Envelope> env = ParseEnvelope(r->body);
  if (!env.ok()) return env.status().WithContext("the daemon's envelope");
  if (env->payload_type != kManifestPayloadType) return Status::InvalidArgument("the daemon's envelope is not a manifest's");
  Result<Manifest> m = ParseManifest(AsString(env->payload));
  if (!m.ok()) return m.status().WithContext("the daemon's manifest");
  if (m->name != model || m->version != version) {
    return Status::Corruption(fmt::format("the daemon sent the manifest of {} {}", m->name, m->version));
  }
  found.envelope = std::move(*env);
  found.manifest = std::move(*m);
  return found;
}

std::vector<std::string> KeyIdsOf(const Envelope& env) {
  std::vector<std::string> ids;
  for (const Signature& s : env.signatures) {
    if (std::find(ids.begin(), ids.end(), s.keyid) == ids.end()) ids.push_back(s.keyid);
  }
  return ids;
}

void PrintManifest(const Manifest& m) {
  fmt::print("model    {}\nversion  {}\ndigest   {}\nsize     {} ({} bytes)\ncreated  {}\n", m.name, m.version,
             m.digest.ToString(), HumanBytes(m.size), m.size, m.created);
}

}  // namespace

int Sign(const GlobalOptions& g, const SignOptions& o) {
  if (!IsValidModelName(o.model)) return Fail("invalid model name '" + o.model + "'");
  if (!IsValidVersion(o.version)) return Fail("invalid version '" + o.version + "'");
  if (g.token.empty()) return Fail("signing needs a publisher token (--token, --token-file or MERIDIAN_TOKEN)");
  Result<std::vector<SecretKey>> keys = ReadReleaseKeys(o.key_files);
  if (!keys.ok()) return Fail(keys.status());
  HttpClient client(g.server, g.ClientOptions());
  Result<Found> found = FetchEnvelope(client, o.model, o.version);
  if (!found.ok()) return Fail(found.status());
  const Manifest& m = found->manifest;
  // What the signature vouches for: the person signing checks it here.
  if (!o.expect_digest.empty() && m.digest.ToString() != o.expect_digest) {
    return Fail(fmt::format("{} {} has digest {}, not the expected {}: not signing", m.name, m.version,
                            m.digest.ToString(), o.expect_digest));
  }
  if (!g.json) {
    PrintManifest(m);
    fmt::print("signed by {}\n", fmt::join(KeyIdsOf(found->envelope), ", "));
  }
  if (!found->pending) {
    if (g.json) PrintJson({{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()}, {"pending", false}});
    else fmt::print("already published: its signatures are final; nothing to sign\n");
    return 0;
  }
  for (const SecretKey& key : *keys) SignEnvelope(found->envelope, key);
  // The last signature commits the version: the daemon reads it all first.
  HttpClient committer(g.server, g.ClientOptions(CommitTimeoutMs(m.size)));
  Result<HttpReply> r = committer.Post(VersionsPath(o.model), EnvelopeToJson(found->envelope), kJsonReplyBytesMax);
  if (!r.ok()) return Fail(r.status());
  if (r->status != 200 && r->status != 201 && r->status != 202) return FailReply("sign", *r);
  Result<CommitAnswer> answer = ParseCommitAnswer(*r);
  if (!answer.ok()) return Fail(answer.status());
  if (g.json) {
    PrintJson({{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()}, {"pending", answer->pending},
               {"signers", answer->signers}, {"threshold", answer->threshold}});
  } else {
    fmt::print("{}\n", answer->pending ? "signed; still waiting for signatures" : "signed; published: the version is visible");
    PrintCommitAnswer(m.name, m.version, *answer);
  }
  return 0;
}

int Show(const GlobalOptions& g, const std::string& model, const std::string& version, const std::string& root_file) {
  if (!IsValidModelName(model)) return Fail("invalid model name '" + model + "'");
  if (!IsValidVersion(version)) return Fail("invalid version '" + version + "'");
  HttpClient client(g.server, g.ClientOptions());
  Result<Found> found = FetchEnvelope(client, model, version);
  if (!found.ok()) return Fail(found.status());
  std::vector<std::string> signers = KeyIdsOf(found->envelope);
  std::optional<int> threshold;
  if (!root_file.empty()) {
    Result<Root> root = LoadTrustedRootFile(root_file);
    if (!root.ok()) return Fail(root.status());
    signers = ValidSigners(*root, "release", found->envelope);
    threshold = root->roles.at("release").threshold;
  }
  const Manifest& m = found->manifest;
  if (g.json) {
    nlohmann::json j = {{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()}, {"size", m.size},
                        {"created", m.created}, {"pending", found->pending}, {"signers", signers}};
    if (threshold) j["threshold"] = *threshold;
    PrintJson(j);
    return 0;
  }
  PrintManifest(m);
  fmt::print("state    {}\n", found->pending ? "waiting for signatures (invisible)" : "published");
  fmt::print("signers  {}{}\n", signers.empty() ? "none" : fmt::format("{}", fmt::join(signers, ", ")),
             threshold ? fmt::format(" ({} of {} release signatures valid under {})", signers.size(), *threshold, root_file)
                       : std::string(" (as the envelope names them; --root checks them)"));
  return 0;
}

namespace {

Result<std::vector<SecretKey>> ReadSecretKeys(const std::vector<std::string>& files) {
  std::vector<SecretKey> keys;
  for (const std::string& file : files) {
    Result<SecretKey> key = ReadSecretKeyFile(file);
    if (!key.ok()) return Status::InvalidArgument(file + ": " + key.status().message());
    keys.push_back(std::move(*key));
  }
  return keys;
}

// A role of the keys `ids`: `threshold`, or when 0 the `fallback` threshold.
Result<Role> MakeRole(const char* name, std::vector<std::string> ids, int threshold, int fallback) {
  Role role{std::move(ids), threshold > 0 ? threshold : fallback};
  if (role.threshold < 1 || static_cast<size_t>(role.threshold) > role.keyids.size()) {
    return Status::InvalidArgument(fmt::format("the {} threshold {} is not between 1 and its {} keys", name,
                                               role.threshold, role.keyids.size()));
  }
  return role;
}

}  // namespace

int RootRotate(const GlobalOptions& g, const RootRotateOptions& o) {
  if (Env::Default().Exists(o.out)) return Fail(o.out + " exists; not overwriting a root");
  if (o.expires_days < 1) return Fail("--expires-days must be at least 1");
  // The current root need not be fresh: rotating is how an expired one is replaced.
  Result<Root> current = LoadTrustedRootFile(o.root_file);
  if (!current.ok()) return Fail(current.status());
  Result<std::vector<SecretKey>> old_keys = ReadSecretKeys(o.old_key_files);
  if (!old_keys.ok()) return Fail(old_keys.status());
  Result<std::vector<SecretKey>> new_keys = ReadSecretKeys(o.new_key_files);
  if (!new_keys.ok()) return Fail(new_keys.status());

  Root next;
  next.version = current->version + 1;
  next.expires = FormatRfc3339(SystemClock::Get().NowUnixMillis() + int64_t{o.expires_days} * 86'400'000);
  // Root keys: the new ones given, else root N's.
  const Role& old_root = current->roles.at("root");
  std::vector<std::string> root_ids;
  for (const SecretKey& k : *new_keys) {
    if (next.keys.emplace(k.KeyId(), k.public_key()).second) root_ids.push_back(k.KeyId());
  }
  if (new_keys->empty()) {
    root_ids = old_root.keyids;
    for (const std::string& id : root_ids) next.keys[id] = current->keys.at(id);
  }
  Result<Role> root_role =
      MakeRole("root", std::move(root_ids), o.root_threshold, new_keys->empty() ? old_root.threshold : 1);
  if (!root_role.ok()) return Fail(root_role.status());
  next.roles["root"] = std::move(*root_role);

  // Release keys: the public keys given, else root N's.
  const Role& old_release = current->roles.at("release");
  std::vector<std::string> release_ids;
  for (const std::string& file : o.release_key_files) {
    Result<PublicKey> k = ReadPublicKeyFile(file);
    if (!k.ok()) return Fail(file + ": " + k.status().message());
    next.keys[k->KeyId()] = *k;
    if (std::find(release_ids.begin(), release_ids.end(), k->KeyId()) == release_ids.end()) {
      release_ids.push_back(k->KeyId());
    }
  }
  if (o.release_key_files.empty()) {
    release_ids = old_release.keyids;
    for (const std::string& id : release_ids) next.keys[id] = current->keys.at(id);
  }
  Result<Role> release_role = MakeRole("release", std::move(release_ids), o.release_threshold,
                                       o.release_key_files.empty() ? old_release.threshold : 1);
  if (!release_role.ok()) return Fail(release_role.status());
  next.roles["release"] = std::move(*release_role);
  // The daemon's online key signs what terminals follow; it is not rotated here.
  next.roles["online"] = current->roles.at("online");
  for (const std::string& id : next.roles["online"].keyids) next.keys[id] = current->keys.at(id);

  Envelope env{std::string(kRootPayloadType), ToBytes(RootToJson(next)), {}};
  std::vector<std::string> signed_by;
  for (const std::vector<SecretKey>* keys : {&*old_keys, &*new_keys}) {
    for (const SecretKey& k : *keys) {
      if (std::find(signed_by.begin(), signed_by.end(), k.KeyId()) != signed_by.end()) continue;
      SignEnvelope(env, k);
      signed_by.push_back(k.KeyId());
    }
  }
  // Written only when every client following the chain will take it.
  Result<Root> accepted = VerifyRootUpdate(*current, env);
  if (!accepted.ok()) return Fail("root " + std::to_string(next.version) + " would be refused: " + accepted.status().message());
  if (Status st = WriteFileAtomic(o.out, EnvelopeToJson(env)); !st.ok()) return Fail(st);
  if (g.json) {
    PrintJson({{"version", next.version}, {"expires", next.expires}, {"out", o.out}, {"signed_by", signed_by}});
  } else {
    fmt::print("root version {} (expires {}) written to {}\n", next.version, next.expires, o.out);
    fmt::print("root keys: {} of {}; release keys: {} of {}; signed by {}\n", next.roles["root"].threshold,
               next.roles["root"].keyids.size(), next.roles["release"].threshold, next.roles["release"].keyids.size(),
               fmt::join(signed_by, ", "));
    fmt::print("install it at the origin: meridian root push {}\n", o.out);
  }
  return 0;
}

int RootPush(const GlobalOptions& g, const std::string& file) {
  if (g.token.empty()) return Fail("installing a root needs the operator token (--token, --token-file or MERIDIAN_TOKEN)");
  Result<std::string> text = ReadFileToString(file, kRootEnvelopeBytesMax);
  if (!text.ok()) return Fail(text.status());
  HttpClient client(g.server, g.ClientOptions());
  Result<HttpReply> r = client.Post(RootsPath(), *text, kJsonReplyBytesMax);
  if (!r.ok()) return Fail(r.status());
  if (r->status != 201) return FailReply("install root", *r);
  Result<nlohmann::json> j = ParseJsonObject(r->body, r->body.size(), "the daemon's answer");
  if (!j.ok()) return Fail(j.status());
  int64_t version = 0;
  JsonFields f(*j, "the daemon's answer", UnknownFields::kIgnore);
  f.Int64("version", &version, true);
  if (Status st = f.Finish(); !st.ok()) return Fail(st);
  if (g.json) {
    PrintJson(*j);
  } else {
    fmt::print("root version {} installed; regions and terminals follow it\n", version);
  }
  return 0;
}

}  // namespace meridian::cli
