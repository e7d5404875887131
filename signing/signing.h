// Trust: Ed25519 keys (libsodium), DSSE envelopes, and the TUF-style root
// document that says which keys may sign what.
//
//  - A key id is the lowercase hex SHA-256 of the 32-byte public key.
//  - DSSE: signatures are over PAE(payloadType, payload) =
//      "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload
//    (LEN is the byte length in ASCII decimal), so signed JSON is never
//    re-canonicalised: the bytes verified are the bytes parsed. Envelope JSON:
//      {"payloadType":"…","payload":"<base64>","signatures":[{"keyid":"…","sig":"<base64>"}]}
//    Here every signature must carry a keyid (DSSE makes it optional) and a
//    64-byte sig; unknown fields are ignored.
//  - Root document (the payload of a root envelope, payloadType kRootPayloadType):
//      {"type":"meridian.root/v1","version":N,"expires":"RFC3339",
//       "keys":{"<keyid>":{"keytype":"ed25519","public":"<base64>"}},
//       "roles":{"root":{"keyids":[…],"threshold":1},"release":{…},"online":{…}}}
//  - A role is satisfied by signatures from at least `threshold` distinct key
//    ids listed for that role; unknown keys, repeated key ids and bad
//    signatures are skipped, never counted.
//  - Root rotation (N -> N+1) needs a threshold of the old root's root keys
//    AND of the new root's root keys, so neither a stolen old key set nor a
//    self-declared new one can take over alone.
//
// Nothing here throws: malformed input comes back as a Status. Secrets are
// wiped (sodium_memzero) from the buffers this module owns; the JSON parser's
// own scratch buffers are beyond its reach (best effort).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

inline constexpr std::string_view kRootPayloadType = "application/vnd.meridian.root.v1+json";
inline constexpr std::string_view kRootDocumentType = "meridian.root/v1";

// Limits on untrusted trust documents.
inline constexpr size_t kEnvelopeSignaturesMax = 64;
inline constexpr size_t kEnvelopePayloadBytesMax = 64u << 20;  // a manifest's JSON is at most this
// ParseEnvelope refuses longer input: the base64 payload plus 1 MiB for the rest.
inline constexpr size_t kParseEnvelopeBytesMax = (kEnvelopePayloadBytesMax + 2) / 3 * 4 + (1u << 20);
// Nor more JSON values than this: an envelope holds about 200 (64 signatures
// of 3), so that megabytes of tiny values ({},{},…, some 60 bytes each in
// memory) cannot take memory before any signature is checked.
inline constexpr uint64_t kEnvelopeValuesMax = 4096;
inline constexpr size_t kPayloadTypeBytesMax = 256;
inline constexpr size_t kKeyIdBytesMax = 256;
inline constexpr size_t kRootKeysMax = 256;
inline constexpr size_t kRootRolesMax = 16;
inline constexpr size_t kRootJsonBytesMax = 1u << 20;
// A root envelope: the base64 of a root document plus its signatures.
inline constexpr size_t kRootEnvelopeBytesMax = (kRootJsonBytesMax + 2) / 3 * 4 + (64u << 10);
inline constexpr size_t kKeyFileBytesMax = 4096;

inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSeedBytes = 32;
inline constexpr size_t kSignatureBytes = 64;

struct PublicKey {
  std::array<uint8_t, kPublicKeyBytes> bytes{};
  // From exactly 32 raw bytes; InvalidArgument on any other length.
  static Result<PublicKey> FromBytes(ByteSpan raw);
  // Lowercase hex SHA-256 of the key bytes.
  std::string KeyId() const;
  bool operator==(const PublicKey&) const = default;
};

class Env;
class SecretKey;
Status WriteSecretKeyFile(Env& env, const std::string& path, const SecretKey& key);

// An Ed25519 secret key. Wiped from memory (sodium_memzero) when destroyed or
// moved from. A default-constructed key is empty (all zero) and must not sign;
// assign a generated or loaded key to it first.
class SecretKey {
 public:
  SecretKey();
  ~SecretKey();
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  SecretKey(SecretKey&&) noexcept;
  SecretKey& operator=(SecretKey&&) noexcept;

  // A fresh random key. Aborts if libsodium cannot initialise (no randomness).
  static SecretKey Generate();
  // Deterministic key from a 32-byte seed (RFC 8032 test vectors, key files).
  // InvalidArgument on any other seed length.
  static Result<SecretKey> FromSeed(ByteSpan seed);

  const PublicKey& public_key() const { return public_; }
  std::string KeyId() const { return public_.KeyId(); }
  // Detached 64-byte Ed25519 signature of `message`.
  std::array<uint8_t, kSignatureBytes> Sign(ByteSpan message) const;

 private:
  // Writes the seed, which only this module may see.
  friend Status WriteSecretKeyFile(Env& env, const std::string& path, const SecretKey& key);
  void Wipe();

  std::array<uint8_t, 64> secret_{};  // libsodium's seed||public form
  PublicKey public_;
};

// Verifies a detached Ed25519 signature; false for a signature that is not
// exactly 64 bytes.
bool VerifySignature(const PublicKey& key, ByteSpan message, ByteSpan signature);

// Key files. Secret file (0600): {"keytype":"ed25519","keyid":"…","seed":"<base64>"}.
// Public file: {"keytype":"ed25519","keyid":"…","public":"<base64>"}.
// Writers replace an existing file atomically (base/file.h WriteFileAtomic):
// callers that must not lose a key check for it first.
Status WriteSecretKeyFile(const std::string& path, const SecretKey& key);  // mode 0600
Status WritePublicKeyFile(const std::string& path, const PublicKey& key);
// Reads a secret key file. PermissionDenied when the file's mode lets group or
// others in (mode & 077): a key others could read is not a secret any more.
// NotFound when missing; ResourceExhausted when larger than kKeyFileBytesMax;
// InvalidArgument when malformed or its keyid does not match the key.
Result<SecretKey> ReadSecretKeyFile(const std::string& path);
// The same through an Env (the agent's terminal key, tested against power
// cuts): written with Env::WriteFileAtomic; read with the mode checked on the
// path just before the file is opened, not on the descriptor.
Status WriteSecretKeyFile(Env& env, const std::string& path, const SecretKey& key);  // mode 0600
Result<SecretKey> ReadSecretKeyFile(Env& env, const std::string& path);
// The key at `path`, or a new one written there (0600, atomically: a power
// cut leaves no file or the whole key) when there is none (a terminal's first
// start). The other errors of ReadSecretKeyFile are returned, naming the path:
// a damaged key is never replaced.
Result<SecretKey> LoadOrCreateSecretKeyFile(Env& env, const std::string& path);
// Reads a public key file; same errors as above except the mode check.
Result<PublicKey> ReadPublicKeyFile(const std::string& path);
// The readers' parsers of a key file's text (`path` names it in errors):
// InvalidArgument when malformed or its keyid does not match the key.
Result<SecretKey> ParseSecretKeyFile(std::string_view text, const std::string& path);
Result<PublicKey> ParsePublicKeyFile(std::string_view text, const std::string& path);

// DSSE envelope.
struct Signature {
  std::string keyid;
  Bytes sig;
  bool operator==(const Signature&) const = default;
};
struct Envelope {
  std::string payload_type;
  Bytes payload;
  std::vector<Signature> signatures;
  bool operator==(const Envelope&) const = default;
};

// The DSSE pre-authentication encoding.
Bytes Pae(std::string_view payload_type, ByteSpan payload);
// Adds a signature by `key` over PAE(payload_type, payload).
void SignEnvelope(Envelope& env, const SecretKey& key);
std::string EnvelopeToJson(const Envelope& env);
// Parses the JSON form; InvalidArgument on malformed input (bad base64, a
// signature that is not 64 bytes, a missing keyid) or over the limits above.
Result<Envelope> ParseEnvelope(std::string_view json);

struct Role {
  std::vector<std::string> keyids;
  int threshold = 1;
  bool operator==(const Role&) const = default;
};

struct Root {
  int64_t version = 1;
  std::string expires;                      // RFC 3339 UTC; see CheckRootFresh
  std::map<std::string, PublicKey> keys;    // keyid -> key (keyid must be key.KeyId())
  std::map<std::string, Role> roles;        // "root", "release", "online"
  bool operator==(const Root&) const = default;
};

std::string RootToJson(const Root& root);
// Parses a root payload and checks it is well formed: type kRootDocumentType,
// version >= 1, every key is ed25519 and filed under its own key id, every role
// present lists distinct known key ids and has 1 <= threshold <= their count,
// roles "root", "release" and "online" exist, counts within the limits above.
// InvalidArgument naming the offending field otherwise.
Result<Root> ParseRoot(std::string_view json);

// OK when at least role.threshold distinct keys of `role` in `root` signed
// `env` validly. PermissionDenied otherwise, with a message such as
// "release role: 0 of 1 required valid signatures". InvalidArgument when
// `root` has no such role, the role's threshold is below 1, or `env` carries
// more than kEnvelopeSignaturesMax signatures.
Status VerifyRole(const Root& root, std::string_view role, const Envelope& env);

// The distinct key ids of `role` in `root` with a valid signature in `env`,
// in the order their first valid signature appears (what VerifyRole counts).
// Empty when `root` has no such role.
std::vector<std::string> ValidSigners(const Root& root, std::string_view role, const Envelope& env);

// Co-signing: `base` with only the valid signatures of `role` keys from `base`
// and then `more`, one per key id (the first valid one), so an envelope signed
// in several places gathers its signatures without keeping anything unverified.
// InvalidArgument when the two do not carry the same payload type and payload
// bytes, or when either carries more than kEnvelopeSignaturesMax signatures.
Result<Envelope> MergeSignatures(const Root& root, std::string_view role, const Envelope& base,
                                 const Envelope& more);

// Loads a trusted root from an envelope that the root itself signs (first use,
// "trust on first use" of a file shipped with a terminal): payload type and
// self-signature threshold of the "root" role are checked. Expiry is not.
Result<Root> LoadTrustedRoot(std::string_view envelope_json);
// LoadTrustedRoot of a file (at most kRootEnvelopeBytesMax);
// errors name the file.
Result<Root> LoadTrustedRootFile(const std::string& path);

// Root rotation: accepts `next` only when its payload type is
// kRootPayloadType (else InvalidArgument), it is signed by a threshold of
// trusted's root keys AND a threshold of its own root keys (else
// PermissionDenied), and its version is trusted.version + 1 (else
// FailedPrecondition: a replayed, rolled-back or skipping root). Signatures
// by the trusted root are checked before the new payload is even parsed.
// Returns the new root.
Result<Root> VerifyRootUpdate(const Root& trusted, const Envelope& next);

// OK while `now_unix_ms` is before the root's `expires`; FailedPrecondition
// naming the version and its expiry from then on, or when `expires` is not an
// RFC 3339 UTC time (base/clock.h ParseRfc3339). TUF's order: a client checks
// the expiry of the root it ends with after following the chain of updates,
// so an expired root can still be replaced through VerifyRootUpdate.
Status CheckRootFresh(const Root& root, int64_t now_unix_ms);

// Parses the DSSE envelope `envelope_json` and verifies that it carries
// `payload_type` and is signed by a threshold of `role` keys of `root` (for a
// manifest: kManifestPayloadType and "release"); returns the payload.
// InvalidArgument for a malformed envelope or a wrong type, PermissionDenied
// for too few valid signatures. trust/ builds its verifiers on this.
Result<std::string> VerifyPayload(const Root& root, std::string_view role, std::string_view payload_type,
                                  std::string_view envelope_json);

}  // namespace meridian
