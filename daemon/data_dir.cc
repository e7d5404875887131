// meridiand init: keys, root of trust, tokens and an empty store.
#include "daemon/data_dir.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/env.h"
#include "base/file.h"
#include "store/store.h"

namespace meridian {

Result<std::string> NewToken() {
  Bytes raw(32);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) return Status::IOError("no randomness for a token");
  return HexEncode(raw);
}

Result<std::string> ReadTokenFile(const std::string& path) {
  Result<std::string> text = ReadFileToString(path, 4096);
  if (!text.ok()) return text.status();
  std::string t = *text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  if (t.empty()) return Status::InvalidArgument(path + " is empty");
  return t;
}

Result<std::string> ReadOrCreateTokenFile(const std::string& path) {
  if (!Env::Default().Exists(path)) {
    Result<std::string> token = NewToken();
    if (!token.ok()) return token.status();
    MERIDIAN_RETURN_IF_ERROR(WriteFileAtomic(path, *token + "\n", 0600));
  }
  return ReadTokenFile(path);
}

// Tokens, store and (last, marking completion) the root: what every data
// directory has.
static Status FinishDataDir(const DataDir& d, const std::string& root_json, std::vector<std::string>& lines) {
  for (const auto& [path, what] : {std::pair{d.operator_token(), "operator token: "},
                                   {d.terminal_token(), "terminal token (give this to terminals): "},
                                   {d.mirror_token(), "mirror token (give this to regions downstream): "}}) {
    Result<std::string> token = ReadOrCreateTokenFile(path);
    if (!token.ok()) return token.status();
    lines.push_back(what + path);
  }
  Result<std::unique_ptr<Store>> store = Store::Open(d.store());
  if (!store.ok()) return store.status();
  lines.push_back("store: " + d.store());
  MERIDIAN_RETURN_IF_ERROR(WriteFileAtomic(d.root(), root_json, 0644));
  lines.push_back("root of trust: " + d.root() + " (give this file to terminals and release managers)");
  return Status::Ok();
}

static Result<std::vector<std::string>> InitRegionDataDir(const InitOptions& o) {
  DataDir d{o.data_dir};
  if (!o.release_key_files.empty() || !o.root_key_file.empty()) {
    return Status::InvalidArgument("a region holds no keys: give --root (the origin's root.json) and no --release-key or --root-key");
  }
  Result<std::string> text = ReadFileToString(o.region_root_file, kParseEnvelopeBytesMax);
  if (!text.ok()) return text.status();
  Result<Root> root = LoadTrustedRoot(*text);
  if (!root.ok()) return Status::InvalidArgument(o.region_root_file + ": " + root.status().message());
  MERIDIAN_RETURN_IF_ERROR(CreateDirectories(d.dir, 0755));
  std::vector<std::string> lines;
  MERIDIAN_RETURN_IF_ERROR(FinishDataDir(d, *text, lines));
  return lines;
}

Result<std::vector<std::string>> InitDataDir(const InitOptions& o) {
  DataDir d{o.data_dir};
  std::vector<std::string> lines;
  if (Env::Default().Exists(d.root())) {
    return Status::AlreadyExists(d.dir + " is already initialised (" + d.root() + " exists)");
  }
  if (!o.region_root_file.empty()) return InitRegionDataDir(o);
  if (o.release_key_files.empty()) return Status::InvalidArgument("at least one --release-key is needed (or --root ORIGIN_ROOT.json for a region)");
  if (o.release_threshold < 1 || o.release_threshold > static_cast<int>(o.release_key_files.size())) {
    return Status::InvalidArgument("release threshold must be between 1 and the number of release keys");
  }
  std::vector<PublicKey> release;
  for (const std::string& f : o.release_key_files) {
    Result<PublicKey> k = ReadPublicKeyFile(f);
    if (!k.ok()) return Status::InvalidArgument("release key " + f + ": " + k.status().message());
    release.push_back(*k);
  }
  MERIDIAN_RETURN_IF_ERROR(CreateDirectories(d.dir, 0755));
  MERIDIAN_RETURN_IF_ERROR(CreateDirectories(d.keys(), 0700));

  SecretKey root_key;
  if (o.root_key_file.empty()) {
    root_key = SecretKey::Generate();
    MERIDIAN_RETURN_IF_ERROR(WriteSecretKeyFile(d.root_key(), root_key));
    lines.push_back("root key (generated; move it offline): " + d.root_key());
  } else {
    Result<SecretKey> k = ReadSecretKeyFile(o.root_key_file);
    if (!k.ok()) return Status::InvalidArgument("root key " + o.root_key_file + ": " + k.status().message());
    root_key = std::move(*k);
    lines.push_back("root key: " + o.root_key_file + " (given)");
  }
  SecretKey online = SecretKey::Generate();
  MERIDIAN_RETURN_IF_ERROR(WriteSecretKeyFile(d.online_key(), online));
  lines.push_back("online key: " + d.online_key());

  Root root;
  root.version = 1;
  root.expires = FormatRfc3339(SystemClock::Get().NowUnixMillis() + int64_t{o.root_expiry_days} * 86'400'000);
  root.keys[root_key.KeyId()] = root_key.public_key();
  root.keys[online.KeyId()] = online.public_key();
  root.roles["root"] = Role{{root_key.KeyId()}, 1};
  root.roles["online"] = Role{{online.KeyId()}, 1};
  Role release_role{{}, o.release_threshold};
  for (const PublicKey& k : release) {
    root.keys[k.KeyId()] = k;
    release_role.keyids.push_back(k.KeyId());
  }
  root.roles["release"] = release_role;
  Envelope env;
  env.payload_type = std::string(kRootPayloadType);
  env.payload = ToBytes(RootToJson(root));
  SignEnvelope(env, root_key);

  Result<std::string> publisher = NewToken();
  if (!publisher.ok()) return publisher.status();
  MERIDIAN_RETURN_IF_ERROR(WriteFileAtomic(d.publisher_token(), *publisher + "\n", 0600));
  lines.push_back("publisher token: " + d.publisher_token());
  MERIDIAN_RETURN_IF_ERROR(FinishDataDir(d, EnvelopeToJson(env), lines));
  return lines;
}

}  // namespace meridian
