// Tests of signing/: Ed25519 against RFC 8032, DSSE PAE and envelopes, role
// thresholds, root documents and rotation, key files, signed payloads.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "base/encoding.h"
#include "base/file.h"
#include "manifest/manifest.h"
#include "base/clock.h"
#include "signing/signing.h"

using namespace meridian;

namespace {

Bytes Hex(std::string_view hex) {
  Result<Bytes> b = HexDecode(hex);
  REQUIRE(b.ok());
  return *b;
}

struct Rfc8032Vector {
  const char* name;
  const char* seed;
  const char* public_key;
  const char* message;
  const char* signature;
};

// RFC 8032 section 7.1 (Ed25519). TEST 1024's message is 1023 bytes.
const Rfc8032Vector kRfc8032Vectors[] = {
    {"TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
    {"TEST 1024", "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
     "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
     "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
     "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
     "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
     "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
     "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
     "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
     "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
     "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
     "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
     "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
     "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
     "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
     "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
     "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
     "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
     "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
     "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
     "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
     "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
     "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
     "c60c905c15fc910840b94c00a0b9d0",
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
     "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03"},
    {"TEST SHA(abc)", "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"},
};

// A deterministic key: tests never depend on unseeded randomness.
SecretKey KeyFromByte(uint8_t b) {
  Bytes seed(kSeedBytes, b);
  Result<SecretKey> key = SecretKey::FromSeed(seed);
  REQUIRE(key.ok());
  return std::move(key).value();
}

struct RoleSpec {
  std::vector<const SecretKey*> keys;
  int threshold = 1;
};

Root MakeRoot(int64_t version, const RoleSpec& root_role, const RoleSpec& release, const RoleSpec& online) {
  Root root;
  root.version = version;
  root.expires = "2030-01-01T00:00:00.000Z";
  auto add = [&root](const char* name, const RoleSpec& spec) {
    Role role;
    role.threshold = spec.threshold;
    for (const SecretKey* k : spec.keys) {
      root.keys[k->KeyId()] = k->public_key();
      role.keyids.push_back(k->KeyId());
    }
    root.roles[name] = role;
  };
  add("root", root_role);
  add("release", release);
  add("online", online);
  return root;
}

Envelope SignedBy(std::string_view payload_type, std::string_view payload,
                  const std::vector<const SecretKey*>& signers) {
  Envelope env{std::string(payload_type), ToBytes(payload), {}};
  for (const SecretKey* k : signers) SignEnvelope(env, *k);
  return env;
}

Envelope SignedRoot(const Root& root, const std::vector<const SecretKey*>& signers) {
  return SignedBy(kRootPayloadType, RootToJson(root), signers);
}

// A fresh directory under /tmp, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "meridian-signing-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const char* name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

mode_t FileMode(const std::string& path) {
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return info.st_mode & 0777;
}

}  // namespace

TEST_CASE("Ed25519 matches the RFC 8032 section 7.1 test vectors") {
  for (const Rfc8032Vector& v : kRfc8032Vectors) {
    INFO(v.name);
    Result<SecretKey> key = SecretKey::FromSeed(Hex(v.seed));
    REQUIRE(key.ok());
    CHECK(HexEncode(key->public_key().bytes) == v.public_key);
    Bytes message = Hex(v.message);
    std::array<uint8_t, kSignatureBytes> sig = key->Sign(message);
    CHECK(HexEncode(sig) == v.signature);
    CHECK(VerifySignature(key->public_key(), message, sig));

    std::array<uint8_t, kSignatureBytes> flipped = sig;
    flipped[10] ^= 0x01;
    CHECK_FALSE(VerifySignature(key->public_key(), message, flipped));
    message.push_back(0);
    CHECK_FALSE(VerifySignature(key->public_key(), message, sig));
  }
  CHECK(Hex(kRfc8032Vectors[3].message).size() == 1023);
}

TEST_CASE("keys check their lengths and key ids are the SHA-256 of the public key") {
  CHECK(SecretKey::FromSeed(Bytes(31, 1)).status().code() == Status::Code::kInvalidArgument);
  CHECK(SecretKey::FromSeed(Bytes(33, 1)).status().code() == Status::Code::kInvalidArgument);
  CHECK(PublicKey::FromBytes(Bytes(31, 1)).status().code() == Status::Code::kInvalidArgument);
  REQUIRE(PublicKey::FromBytes(Bytes(32, 1)).ok());

  SecretKey key = KeyFromByte(7);
  CHECK_FALSE(VerifySignature(key.public_key(), AsBytes("m"), Bytes(63, 0)));
  Bytes long_sig(65, 0);
  std::array<uint8_t, kSignatureBytes> sig = key.Sign(AsBytes("m"));
  std::copy(sig.begin(), sig.end(), long_sig.begin());
  CHECK_FALSE(VerifySignature(key.public_key(), AsBytes("m"), long_sig));

  Result<SecretKey> test1 = SecretKey::FromSeed(Hex(kRfc8032Vectors[0].seed));
  REQUIRE(test1.ok());
  CHECK(test1->KeyId() == "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9");
}

TEST_CASE("generated keys differ and a moved-from key is wiped") {
  SecretKey a = SecretKey::Generate();
  SecretKey b = SecretKey::Generate();
  CHECK_FALSE(a.public_key() == b.public_key());
  PublicKey a_public = a.public_key();

  SecretKey moved = std::move(a);
  CHECK(moved.public_key() == a_public);
  CHECK(a.public_key() == PublicKey{});  // NOLINT(bugprone-use-after-move): checking the wipe
  CHECK(VerifySignature(a_public, AsBytes("x"), moved.Sign(AsBytes("x"))));

  b = std::move(moved);
  CHECK(b.public_key() == a_public);
  CHECK(moved.public_key() == PublicKey{});  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("PAE matches the DSSE specification's example") {
  Bytes pae = Pae("http://example.com/HelloWorld", AsBytes("hello world"));
  CHECK(AsString(pae) == "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
  CHECK(AsString(Pae("", {})) == "DSSEv1 0  0 ");
}

TEST_CASE("a signature covers the payload type as well as the payload") {
  SecretKey k = KeyFromByte(1);
  Root root = MakeRoot(1, {{&k}, 1}, {{&k}, 1}, {{&k}, 1});
  Envelope env = SignedBy("application/a", "payload", {&k});
  REQUIRE(VerifyRole(root, "release", env).ok());
  env.payload_type = "application/b";
  CHECK(VerifyRole(root, "release", env).code() == Status::Code::kPermissionDenied);
}

TEST_CASE("envelopes round-trip through JSON") {
  SecretKey k1 = KeyFromByte(1), k2 = KeyFromByte(2);
  Envelope env = SignedBy("application/vnd.test+json", R"({"x":1})", {&k1, &k2});
  std::string json = EnvelopeToJson(env);
  CHECK(json.find(R"("payloadType":"application/vnd.test+json")") != std::string::npos);
  CHECK(json.find(R"("payload":")" + Base64Encode(env.payload) + "\"") != std::string::npos);
  Result<Envelope> back = ParseEnvelope(json);
  REQUIRE(back.ok());
  CHECK(*back == env);
  REQUIRE(back->signatures.size() == 2);
  CHECK(back->signatures[0].keyid == k1.KeyId());
  CHECK(back->signatures[1].sig.size() == kSignatureBytes);
}

TEST_CASE("malformed envelopes are rejected") {
  const std::string sig = Base64Encode(Bytes(kSignatureBytes, 1));
  const std::string short_sig = Base64Encode(Bytes(kSignatureBytes - 1, 1));
  const std::string good =
      R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k","sig":")" + sig + R"("}]})";
  REQUIRE(ParseEnvelope(good).ok());
  // A repeated key is refused, not resolved either way.
  const std::string payload_twice =
      R"({"payloadType":"t","payload":"aGk=","payload":"aGE=","signatures":[{"keyid":"k","sig":")" + sig + R"("}]})";
  CHECK_THAT(ParseEnvelope(payload_twice).status().message(), Catch::Contains("repeats a key"));
  // Unknown fields are read past, but not a flood of tiny values.
  std::string flood = R"({"payloadType":"t","payload":"aGk=","signatures":[],"x":[)";
  for (uint64_t i = 0; i < kEnvelopeValuesMax; ++i) flood += "{},";
  CHECK_THAT(ParseEnvelope(flood + "{}]}").status().message(), Catch::Contains("values"));

  std::string too_many = R"({"payloadType":"t","payload":"aGk=","signatures":[)";
  for (size_t i = 0; i <= kEnvelopeSignaturesMax; ++i) {
    too_many += (i ? "," : "") + std::string(R"({"keyid":"k","sig":")") + sig + "\"}";
  }
  too_many += "]}";

  const std::string bad[] = {
      "",
      "not json",
      "[]",
      R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k","sig":")" + sig + R"("}])",
      R"({"payload":"aGk=","signatures":[]})",
      R"({"payloadType":"","payload":"aGk=","signatures":[]})",
      R"({"payloadType":7,"payload":"aGk=","signatures":[]})",
      R"({"payloadType":")" + std::string(kPayloadTypeBytesMax + 1, 'a') + R"(","payload":"aGk=","signatures":[]})",
      R"({"payloadType":"t","signatures":[]})",
      R"({"payloadType":"t","payload":"aGk","signatures":[]})",
      R"({"payloadType":"t","payload":"a!k=","signatures":[]})",
      R"({"payloadType":"t","payload":"aGk="})",
      R"({"payloadType":"t","payload":"aGk=","signatures":{}})",
      R"({"payloadType":"t","payload":"aGk=","signatures":["x"]})",
      R"({"payloadType":"t","payload":"aGk=","signatures":[{"sig":")" + sig + R"("}]})",
      R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"","sig":")" + sig + R"("}]})",
      R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k","sig":")" + short_sig + R"("}]})",
      R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k","sig":"!!!!"}]})",
      R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k"}]})",
      too_many,
  };
  for (const std::string& json : bad) {
    INFO(json.substr(0, 120));
    CHECK(ParseEnvelope(json).status().code() == Status::Code::kInvalidArgument);
  }
  CHECK(ParseEnvelope(std::string(kParseEnvelopeBytesMax + 1, ' ')).status().code() ==
        Status::Code::kInvalidArgument);
}

TEST_CASE("a 2-of-3 role counts distinct valid signatures of its own keys") {
  SecretKey r = KeyFromByte(1), a = KeyFromByte(2), b = KeyFromByte(3), c = KeyFromByte(4);
  SecretKey online = KeyFromByte(5), stranger = KeyFromByte(6);
  Root root = MakeRoot(1, {{&r}, 1}, {{&a, &b, &c}, 2}, {{&online}, 1});

  SECTION("two valid signatures pass") {
    CHECK(VerifyRole(root, "release", SignedBy("t", "p", {&a, &c})).ok());
  }
  SECTION("one valid plus one bad signature is not enough") {
    Envelope env = SignedBy("t", "p", {&a, &b});
    env.signatures[1].sig[0] ^= 0x01;
    Status st = VerifyRole(root, "release", env);
    CHECK(st.code() == Status::Code::kPermissionDenied);
    CHECK(st.message() == "release role: 1 of 2 required valid signatures");
    // ...and a third good one makes it pass despite the bad one.
    SignEnvelope(env, c);
    CHECK(VerifyRole(root, "release", env).ok());
  }
  SECTION("the same key signing twice counts once") {
    Envelope env = SignedBy("t", "p", {&a, &a});
    REQUIRE(env.signatures.size() == 2);
    CHECK(VerifyRole(root, "release", env).message() == "release role: 1 of 2 required valid signatures");
  }
  SECTION("a bad signature does not hide a later good one by the same key") {
    Envelope env = SignedBy("t", "p", {&a, &a, &b});
    env.signatures[0].sig[5] ^= 0x80;
    CHECK(VerifyRole(root, "release", env).ok());
  }
  SECTION("keys outside the role or outside the root are ignored") {
    Envelope env = SignedBy("t", "p", {&a, &online, &stranger, &r});
    CHECK(VerifyRole(root, "release", env).message() == "release role: 1 of 2 required valid signatures");
  }
  SECTION("a listed key id missing from root.keys is skipped") {
    Root broken = root;
    broken.keys.erase(b.KeyId());
    CHECK(VerifyRole(broken, "release", SignedBy("t", "p", {&a, &b})).code() == Status::Code::kPermissionDenied);
  }
  SECTION("no signatures at all") {
    CHECK(VerifyRole(root, "online", SignedBy("t", "p", {})).message() ==
          "online role: 0 of 1 required valid signatures");
  }
  SECTION("unknown roles, hand-built zero thresholds and oversized envelopes are refused") {
    CHECK(VerifyRole(root, "mirror", SignedBy("t", "p", {&a})).code() == Status::Code::kInvalidArgument);
    Root zero = root;
    zero.roles["release"].threshold = 0;
    CHECK(VerifyRole(zero, "release", SignedBy("t", "p", {})).code() == Status::Code::kInvalidArgument);
    Envelope many = SignedBy("t", "p", {&a, &b});
    many.signatures.resize(kEnvelopeSignaturesMax + 1, many.signatures[0]);
    CHECK(VerifyRole(root, "release", many).code() == Status::Code::kInvalidArgument);
  }
}

TEST_CASE("co-signing: ValidSigners and MergeSignatures keep one valid signature per release key") {
  SecretKey r = KeyFromByte(1), a = KeyFromByte(2), b = KeyFromByte(3), c = KeyFromByte(4);
  SecretKey online = KeyFromByte(5), stranger = KeyFromByte(6);
  Root root = MakeRoot(1, {{&r}, 1}, {{&a, &b, &c}, 2}, {{&online}, 1});

  Envelope first = SignedBy("t", "p", {&stranger, &a, &a});
  first.signatures[1].sig[3] ^= 0x10;  // a's first signature is bad, its second good
  CHECK(ValidSigners(root, "release", first) == std::vector<std::string>{a.KeyId()});
  CHECK(ValidSigners(root, "mirror", first).empty());

  Envelope second = SignedBy("t", "p", {&a, &online, &b});
  Result<Envelope> merged = MergeSignatures(root, "release", first, second);
  REQUIRE(merged.ok());
  CHECK(merged->payload == first.payload);
  REQUIRE(merged->signatures.size() == 2);  // a once (its good signature), then b; stranger and online dropped
  CHECK(merged->signatures[0] == first.signatures[2]);
  CHECK(merged->signatures[1].keyid == b.KeyId());
  CHECK(VerifyRole(root, "release", *merged).ok());

  CHECK(MergeSignatures(root, "release", first, SignedBy("t", "other", {&b})).status().code() ==
        Status::Code::kInvalidArgument);
  CHECK(MergeSignatures(root, "release", first, SignedBy("u", "p", {&b})).status().code() ==
        Status::Code::kInvalidArgument);
  Envelope many = SignedBy("t", "p", {&b});
  many.signatures.resize(kEnvelopeSignaturesMax + 1, many.signatures[0]);
  CHECK(MergeSignatures(root, "release", first, many).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("CheckRootFresh refuses a root from its expiry on, and one whose expiry does not parse") {
  SecretKey r = KeyFromByte(1);
  Root root = MakeRoot(3, {{&r}, 1}, {{&r}, 1}, {{&r}, 1});
  const int64_t expires = ParseRfc3339(root.expires).value();
  CHECK(CheckRootFresh(root, expires - 1).ok());
  Status expired = CheckRootFresh(root, expires);
  CHECK(expired.code() == Status::Code::kFailedPrecondition);
  CHECK(expired.message() == "root version 3 expired at 2030-01-01T00:00:00.000Z");
  root.expires = "soon";
  CHECK(CheckRootFresh(root, 0).code() == Status::Code::kFailedPrecondition);
}

TEST_CASE("root documents round-trip and malformed ones are rejected") {
  SecretKey r1 = KeyFromByte(1), r2 = KeyFromByte(2), rel = KeyFromByte(3), onl = KeyFromByte(4);
  Root root = MakeRoot(3, {{&r1, &r2}, 2}, {{&rel}, 1}, {{&onl}, 1});
  std::string json = RootToJson(root);
  CHECK(json.find(R"("type":"meridian.root/v1")") != std::string::npos);
  Result<Root> back = ParseRoot(json);
  REQUIRE(back.ok());
  CHECK(*back == root);

  auto mutated = [&](auto&& change) {
    Root copy = root;
    change(copy);
    return ParseRoot(RootToJson(copy)).status().code();
  };
  const auto kInvalid = Status::Code::kInvalidArgument;
  CHECK(mutated([](Root& x) { x.roles.erase("online"); }) == kInvalid);
  CHECK(mutated([](Root& x) { x.roles.erase("root"); }) == kInvalid);
  CHECK(mutated([](Root& x) { x.roles["root"].threshold = 0; }) == kInvalid);
  CHECK(mutated([](Root& x) { x.roles["root"].threshold = 3; }) == kInvalid);  // only 2 keys
  CHECK(mutated([](Root& x) { x.roles["release"].keyids.push_back(std::string(64, 'a')); }) == kInvalid);
  CHECK(mutated([&](Root& x) { x.roles["root"].keyids.push_back(r1.KeyId()); }) == kInvalid);  // repeated id
  CHECK(mutated([&](Root& x) { x.keys[r1.KeyId()] = r2.public_key(); }) == kInvalid);  // id of another key
  CHECK(mutated([](Root& x) { x.version = 0; }) == kInvalid);
  CHECK(mutated([](Root& x) { x.version = -1; }) == kInvalid);
  CHECK(mutated([](Root& x) { x.expires = std::string(100, '9'); }) == kInvalid);
  CHECK(mutated([](Root& x) {
          for (size_t i = 0; i < kRootRolesMax; ++i) x.roles["extra" + std::to_string(i)] = x.roles["root"];
        }) == kInvalid);
  CHECK(mutated([](Root& x) { x.roles["mirror"] = x.roles["online"]; }) == Status::Code::kOk);

  std::string wrong_type = json;
  wrong_type.replace(wrong_type.find("meridian.root/v1"), 16, "meridian.root/v2");
  CHECK(ParseRoot(wrong_type).status().code() == kInvalid);
  std::string float_threshold = json;
  float_threshold.replace(float_threshold.find(R"("threshold":1)"), 13, R"("threshold":1.0)");
  CHECK(ParseRoot(float_threshold).status().code() == kInvalid);
  CHECK(ParseRoot("[]").status().code() == kInvalid);
  CHECK(ParseRoot("{").status().code() == kInvalid);
  CHECK(ParseRoot(std::string(kRootJsonBytesMax + 1, ' ')).status().code() == kInvalid);
}

TEST_CASE("a shipped root loads only when it signs itself") {
  SecretKey r1 = KeyFromByte(1), r2 = KeyFromByte(2), rel = KeyFromByte(3);
  Root root = MakeRoot(1, {{&r1, &r2}, 2}, {{&rel}, 1}, {{&rel}, 1});
  Result<Root> loaded = LoadTrustedRoot(EnvelopeToJson(SignedRoot(root, {&r1, &r2})));
  REQUIRE(loaded.ok());
  CHECK(*loaded == root);
  CHECK(LoadTrustedRoot(EnvelopeToJson(SignedRoot(root, {&r1, &rel}))).status().code() ==
        Status::Code::kPermissionDenied);
  CHECK(LoadTrustedRoot(EnvelopeToJson(SignedBy("application/other", RootToJson(root), {&r1, &r2})))
            .status()
            .code() == Status::Code::kInvalidArgument);
}

TEST_CASE("root rotation needs a threshold of the old root keys and of the new ones") {
  // Root 1 trusts A and B (2 of 2); root 2 swaps A for C (B and C, 2 of 2).
  SecretKey a = KeyFromByte(1), b = KeyFromByte(2), c = KeyFromByte(3), rel = KeyFromByte(4);
  Root v1 = MakeRoot(1, {{&a, &b}, 2}, {{&rel}, 1}, {{&rel}, 1});
  Root v2 = MakeRoot(2, {{&b, &c}, 2}, {{&rel}, 1}, {{&rel}, 1});

  SECTION("accepted when both thresholds are met") {
    Result<Root> next = VerifyRootUpdate(v1, SignedRoot(v2, {&a, &b, &c}));
    REQUIRE(next.ok());
    CHECK(*next == v2);
    // ...and the chain continues from the new root.
    Root v3 = MakeRoot(3, {{&c}, 1}, {{&rel}, 1}, {{&rel}, 1});
    CHECK(VerifyRootUpdate(*next, SignedRoot(v3, {&b, &c})).ok());
    CHECK(VerifyRootUpdate(v1, SignedRoot(v3, {&a, &b, &c})).status().code() ==
          Status::Code::kFailedPrecondition);
  }
  SECTION("rejected when only the old keys signed") {
    Status st = VerifyRootUpdate(v1, SignedRoot(v2, {&a, &b})).status();
    CHECK(st.code() == Status::Code::kPermissionDenied);
    CHECK(st.message() == "new root: root role: 1 of 2 required valid signatures");
  }
  SECTION("rejected when only the new keys signed") {
    Status st = VerifyRootUpdate(v1, SignedRoot(v2, {&b, &c})).status();
    CHECK(st.code() == Status::Code::kPermissionDenied);
    CHECK(st.message() == "trusted root: root role: 1 of 2 required valid signatures");
  }
  SECTION("rejected when the version skips, repeats or goes back") {
    Root skip = v2;
    skip.version = 3;
    CHECK(VerifyRootUpdate(v1, SignedRoot(skip, {&a, &b, &c})).status().code() ==
          Status::Code::kFailedPrecondition);
    Root same = v1;
    CHECK(VerifyRootUpdate(v1, SignedRoot(same, {&a, &b})).status().code() == Status::Code::kFailedPrecondition);
  }
  SECTION("rejected with the wrong payload type or a malformed payload") {
    CHECK(VerifyRootUpdate(v1, SignedBy(kManifestPayloadType, RootToJson(v2), {&a, &b, &c})).status().code() ==
          Status::Code::kInvalidArgument);
    CHECK(VerifyRootUpdate(v1, SignedBy(kRootPayloadType, "{}", {&a, &b})).status().code() ==
          Status::Code::kInvalidArgument);
  }
}

TEST_CASE("key files round-trip, and the secret one is private") {
  TempDir dir;
  SecretKey key = KeyFromByte(9);
  const std::string secret_path = dir.File("release.key");
  const std::string public_path = dir.File("release.pub");
  REQUIRE(WriteSecretKeyFile(secret_path, key).ok());
  REQUIRE(WritePublicKeyFile(public_path, key.public_key()).ok());
  CHECK(FileMode(secret_path) == 0600);

  Result<SecretKey> secret = ReadSecretKeyFile(secret_path);
  REQUIRE(secret.ok());
  CHECK(secret->public_key() == key.public_key());
  CHECK(VerifySignature(key.public_key(), AsBytes("m"), secret->Sign(AsBytes("m"))));
  Result<PublicKey> pub = ReadPublicKeyFile(public_path);
  REQUIRE(pub.ok());
  CHECK(*pub == key.public_key());

  Result<std::string> text = ReadFileToString(secret_path, kKeyFileBytesMax);
  REQUIRE(text.ok());
  CHECK(text->find(R"("keyid":")" + key.KeyId() + "\"") != std::string::npos);

  SECTION("a secret key file readable by others is refused") {
    REQUIRE(::chmod(secret_path.c_str(), 0640) == 0);
    Result<SecretKey> refused = ReadSecretKeyFile(secret_path);
    CHECK(refused.status().code() == Status::Code::kPermissionDenied);
    CHECK(refused.status().message().find("chmod 600") != std::string::npos);
  }
  SECTION("a key id that does not match the key is refused") {
    std::string swapped = *text;
    swapped.replace(swapped.find(key.KeyId()), 64, KeyFromByte(8).KeyId());
    REQUIRE(WriteFileAtomic(secret_path, swapped, 0600).ok());
    CHECK(ReadSecretKeyFile(secret_path).status().code() == Status::Code::kInvalidArgument);
    REQUIRE(WriteFileAtomic(public_path, R"({"keytype":"ed25519","keyid":")" + KeyFromByte(8).KeyId() +
                                             R"(","public":")" + Base64Encode(key.public_key().bytes) + "\"}")
                .ok());
    CHECK(ReadPublicKeyFile(public_path).status().code() == Status::Code::kInvalidArgument);
  }
  SECTION("malformed, oversized and missing files are refused") {
    REQUIRE(WriteFileAtomic(secret_path, R"({"keytype":"ed25519","keyid":"x","seed":"AAAA"})", 0600).ok());
    CHECK(ReadSecretKeyFile(secret_path).status().code() == Status::Code::kInvalidArgument);
    REQUIRE(WriteFileAtomic(secret_path, std::string(kKeyFileBytesMax + 1, ' '), 0600).ok());
    CHECK(ReadSecretKeyFile(secret_path).status().code() == Status::Code::kResourceExhausted);
    CHECK(ReadSecretKeyFile(dir.File("absent.key")).status().code() == Status::Code::kNotFound);
    CHECK(ReadPublicKeyFile(dir.File("absent.pub")).status().code() == Status::Code::kNotFound);
  }
}

TEST_CASE("VerifyPayload checks the payload type and the role threshold") {
  SecretKey r = KeyFromByte(1), rel1 = KeyFromByte(2), rel2 = KeyFromByte(3), onl = KeyFromByte(4);
  Root root = MakeRoot(1, {{&r}, 1}, {{&rel1, &rel2}, 2}, {{&onl}, 1});
  const std::string manifest = R"({"schema":"meridian.manifest/v1","name":"m"})";

  Result<std::string> ok = VerifyPayload(root, "release", kManifestPayloadType,
                                         EnvelopeToJson(SignedBy(kManifestPayloadType, manifest, {&rel1, &rel2})));
  REQUIRE(ok.ok());
  CHECK(*ok == manifest);

  Result<std::string> wrong_type =
      VerifyPayload(root, "release", kManifestPayloadType,
                    EnvelopeToJson(SignedBy(kRootPayloadType, manifest, {&rel1, &rel2})));
  CHECK(wrong_type.status().code() == Status::Code::kInvalidArgument);
  CHECK(VerifyPayload(root, "release", kManifestPayloadType, "{\"payloadType\":1}").status().code() ==
        Status::Code::kInvalidArgument);

  Result<std::string> wrong_role =
      VerifyPayload(root, "release", kManifestPayloadType,
                    EnvelopeToJson(SignedBy(kManifestPayloadType, manifest, {&onl, &rel1})));
  CHECK(wrong_role.status().code() == Status::Code::kPermissionDenied);
  CHECK(wrong_role.status().message() == "release role: 1 of 2 required valid signatures");
}
