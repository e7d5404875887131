// Tests of trust/: signed manifests and delta descriptors verified into values,
// with one error code per kind of refusal.
#include <catch2/catch.hpp>

#include "base/encoding.h"
#include "trust/trust.h"

using namespace meridian;

namespace {

SecretKey KeyFromByte(uint8_t b) { return SecretKey::FromSeed(Bytes(kSeedBytes, b)).value(); }

struct Keys {
  SecretKey release = KeyFromByte(1);
  SecretKey online = KeyFromByte(2);
  Root root;
  Keys() {
    for (auto [role, key] : {std::pair{"release", &release}, std::pair{"online", &online}}) {
      root.keys[key->KeyId()] = key->public_key();
      root.roles[role].keyids.push_back(key->KeyId());
    }
  }
};

std::string Signed(std::string_view type, std::string_view payload, const SecretKey* key) {
  Envelope env;
  env.payload_type = std::string(type);
  env.payload = ToBytes(payload);
  if (key != nullptr) SignEnvelope(env, *key);
  return EnvelopeToJson(env);
}

Manifest SmallManifest() {
  Manifest m;
  m.name = "fraud-detector";
  m.version = "1.2.0";
  m.size = 10;
  m.digest = Digest::Of(AsBytes("0123456789"));
  m.chunks = {{m.digest, 10}};
  m.created = "2026-11-29T00:00:00Z";
  return m;
}

}  // namespace

TEST_CASE("VerifySignedManifest: a manifest signed by a release key, with its envelope as received") {
  Keys k;
  const std::string envelope = Signed(kManifestPayloadType, ManifestToJson(SmallManifest()), &k.release);
  Result<VerifiedManifest> v = VerifySignedManifest(k.root, envelope);
  REQUIRE(v.ok());
  CHECK(v->manifest() == SmallManifest());
  CHECK(v->envelope() == envelope);
  CHECK(v->CheckNames("fraud-detector").ok());
  CHECK(v->CheckNames("fraud-detector", "1.2.0").ok());
  CHECK(v->CheckNames("fraud-detector", "1.2.1").code() == Status::Code::kCorruption);
  CHECK(v->CheckNames("other", "1.2.0").code() == Status::Code::kCorruption);
}

TEST_CASE("VerifySignedManifest: one error code per kind of refusal") {
  Keys k;
  const std::string json = ManifestToJson(SmallManifest());
  auto code = [&](const std::string& envelope) { return VerifySignedManifest(k.root, envelope).status().code(); };
  for (const char* bad : {"", "{", "[]", "{\"payloadType\":1}", "{\"payloadType\":\"x\",\"payload\":\"not base64!\"}"}) {
    INFO(bad);
    CHECK(code(bad) == Status::Code::kInvalidArgument);
  }
  CHECK(code(Signed(kDeltaInfoPayloadType, json, &k.release)) == Status::Code::kInvalidArgument);
  CHECK(code(Signed(kManifestPayloadType, json, nullptr)) == Status::Code::kPermissionDenied);
  CHECK(code(Signed(kManifestPayloadType, json, &k.online)) == Status::Code::kPermissionDenied);
  // Validly signed, but no manifest: a key named twice, a broken document.
  std::string twice = json;
  twice.insert(1, "\"version\":\"9.9.9\",");
  CHECK(code(Signed(kManifestPayloadType, twice, &k.release)) == Status::Code::kCorruption);
  CHECK(code(Signed(kManifestPayloadType, "{}", &k.release)) == Status::Code::kCorruption);
}

TEST_CASE("VerifyDeltaInfo: signed by the online role, and of the pair asked for") {
  Keys k;
  DeltaInfo info;
  info.from = Digest::Of(AsBytes("a"));
  info.to = Digest::Of(AsBytes("b"));
  info.worthwhile = true;
  info.digest = Digest::Of(AsBytes("delta"));
  info.size = 5;
  info.artifact_size = 100;
  info.compressed_artifact_size = 80;
  const std::string json = DeltaInfoToJson(info);
  Result<DeltaInfo> ok = VerifyDeltaInfo(k.root, Signed(kDeltaInfoPayloadType, json, &k.online), info.from, info.to);
  REQUIRE(ok.ok());
  CHECK(*ok == info);
  auto code = [&](const std::string& envelope, const Digest& from, const Digest& to) {
    return VerifyDeltaInfo(k.root, envelope, from, to).status().code();
  };
  const std::string good = Signed(kDeltaInfoPayloadType, json, &k.online);
  CHECK(code(good, info.to, info.from) == Status::Code::kCorruption);  // a descriptor of another pair, replayed
  CHECK(code(Signed(kDeltaInfoPayloadType, json, &k.release), info.from, info.to) ==
        Status::Code::kPermissionDenied);
  CHECK(code(Signed(kManifestPayloadType, json, &k.online), info.from, info.to) == Status::Code::kInvalidArgument);
  CHECK(code(Signed(kDeltaInfoPayloadType, "{}", &k.online), info.from, info.to) == Status::Code::kCorruption);
  CHECK(code("{", info.from, info.to) == Status::Code::kInvalidArgument);
}

TEST_CASE("VerifyCoSignedManifest: at least one release signature, only release signatures kept") {
  Keys k;
  SecretKey second = KeyFromByte(3), stranger = KeyFromByte(4);
  k.root.keys[second.KeyId()] = second.public_key();
  k.root.roles["release"].keyids.push_back(second.KeyId());
  k.root.roles["release"].threshold = 2;
  const std::string payload = ManifestToJson(SmallManifest());

  Envelope env{std::string(kManifestPayloadType), ToBytes(payload), {}};
  SignEnvelope(env, stranger);
  SignEnvelope(env, k.release);
  SignEnvelope(env, k.release);
  Result<CoSignedManifest> one = VerifyCoSignedManifest(k.root, EnvelopeToJson(env));
  REQUIRE(one.ok());
  CHECK(one->manifest == SmallManifest());
  CHECK(one->signers == std::vector<std::string>{k.release.KeyId()});
  CHECK(one->envelope.signatures.size() == 1);
  CHECK(one->threshold == 2);
  CHECK_FALSE(one->complete());
  SignEnvelope(env, second);
  CHECK(VerifyCoSignedManifest(k.root, EnvelopeToJson(env))->complete());

  CHECK(VerifyCoSignedManifest(k.root, Signed(kManifestPayloadType, payload, &stranger)).status().code() ==
        Status::Code::kPermissionDenied);
  CHECK(VerifyCoSignedManifest(k.root, Signed(kManifestPayloadType, payload, nullptr)).status().code() ==
        Status::Code::kPermissionDenied);
  CHECK(VerifyCoSignedManifest(k.root, Signed("text/plain", payload, &k.release)).status().code() ==
        Status::Code::kInvalidArgument);
  CHECK(VerifyCoSignedManifest(k.root, Signed(kManifestPayloadType, "{}", &k.release)).status().code() ==
        Status::Code::kCorruption);
  CHECK(VerifyCoSignedManifest(k.root, "not json").status().code() == Status::Code::kInvalidArgument);
}
