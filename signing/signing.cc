// Ed25519 keys and key files (libsodium) and DSSE envelopes: PAE, signing and
// the JSON form. The root document and the role checks live in root.cc.
#include "signing/signing.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <span>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/encoding.h"
#include "base/env.h"
#include "base/file.h"
#include "base/json.h"

namespace meridian {
namespace {

static_assert(crypto_sign_PUBLICKEYBYTES == kPublicKeyBytes);
static_assert(crypto_sign_SEEDBYTES == kSeedBytes);
static_assert(crypto_sign_BYTES == kSignatureBytes);
static_assert(crypto_sign_SECRETKEYBYTES == 64);

constexpr std::string_view kKeyType = "ed25519";

// sodium_init() runs once per process (thread-safe static); later calls read
// the cached answer.
bool SodiumReady() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

// Zeroes a buffer that held secret material when the scope ends, whichever
// return leaves it.
template <typename Buffer>
class WipeOnExit {
 public:
  explicit WipeOnExit(Buffer& buffer) : buffer_(buffer) {}
  ~WipeOnExit() { sodium_memzero(buffer_.data(), buffer_.size()); }
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;

 private:
  Buffer& buffer_;
};

constexpr size_t Base64Bytes(size_t raw_bytes) { return (raw_bytes + 2) / 3 * 4; }

// The member `name` of object `j` when it is a string, else nullptr.
const std::string* StringField(const nlohmann::json& j, std::string_view name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

std::string ModeOctal(mode_t mode) { return fmt::format("0{:o}", static_cast<unsigned>(mode & 0777)); }

// A secret key file is its owner's alone.
Status CheckSecretMode(mode_t mode, const std::string& path) {
  if ((mode & 077) == 0) return Status::Ok();
  return Status::PermissionDenied(path + " holds a secret key but group or others may access it (mode " +
                                  ModeOctal(mode) + "); run: chmod 600 " + path);
}

// Reads a secret file into `out`, which the caller wipes, through `read` (up
// to the span's size; 0 at the end). One allocation up front, read straight
// into it: no copy of the secret is left behind in a reallocated or stack
// buffer.
Status ReadSecretInto(const std::function<Result<size_t>(std::span<uint8_t>)>& read, const std::string& path,
                      std::string& out) {
  out.assign(kKeyFileBytesMax + 1, '\0');
  size_t done = 0;
  while (done < out.size()) {
    Result<size_t> n = read(std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()) + done, out.size() - done));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    done += *n;
  }
  if (done > kKeyFileBytesMax) {
    return Status::ResourceExhausted(path + " is larger than " + std::to_string(kKeyFileBytesMax) + " bytes");
  }
  out.resize(done);  // shrinking keeps the same buffer
  return Status::Ok();
}

// Reads an open secret file into `out`, which the caller wipes. The mode is
// checked on the descriptor, so nothing can swap the file between check and read.
Status ReadOpenSecretFile(int fd, const std::string& path, std::string& out) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return ErrnoStatus("stat " + path, errno);
  if (!S_ISREG(info.st_mode)) return Status::InvalidArgument(path + " is not a regular file");
  MERIDIAN_RETURN_IF_ERROR(CheckSecretMode(info.st_mode, path));
  return ReadSecretInto(
      [&](std::span<uint8_t> buf) -> Result<size_t> {
        for (;;) {
          ssize_t n = ::read(fd, buf.data(), buf.size());
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return ErrnoStatus("read " + path, errno);
          return static_cast<size_t>(n);
        }
      },
      path, out);
}

// Not base's ReadFileToString: that one copies through a stack buffer nobody
// wipes and cannot check the mode of the descriptor it reads.
Status ReadSecretFile(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  Status st = ReadOpenSecretFile(fd, path, out);
  ::close(fd);
  return st;
}

// Checks "keytype" and that "keyid" names `key`.
Status CheckKeyFileIdentity(const nlohmann::json& j, const PublicKey& key, const std::string& path) {
  const std::string* keytype = StringField(j, "keytype");
  if (keytype == nullptr || *keytype != kKeyType) return Status::InvalidArgument(path + ": keytype is not ed25519");
  const std::string* keyid = StringField(j, "keyid");
  if (keyid == nullptr || *keyid != key.KeyId()) {
    return Status::InvalidArgument(path + ": keyid does not match the key in the file");
  }
  return Status::Ok();
}

// Decodes the base64 seed with libsodium straight into a fixed buffer: base's
// Base64Decode re-encodes its output to check it, leaving an unwiped copy.
Result<SecretKey> SecretKeyFromBase64Seed(const std::string& seed_b64) {
  std::array<uint8_t, kSeedBytes> seed{};
  WipeOnExit wipe_seed(seed);
  size_t seed_bytes = 0;
  const char* end = nullptr;
  int rc = sodium_base642bin(seed.data(), seed.size(), seed_b64.data(), seed_b64.size(), nullptr, &seed_bytes,
                             &end, sodium_base64_VARIANT_ORIGINAL);
  if (rc != 0 || end != seed_b64.data() + seed_b64.size() || seed_bytes != kSeedBytes) {
    return Status::InvalidArgument("seed is not 32 bytes of base64");
  }
  return SecretKey::FromSeed(seed);
}

}  // namespace

Result<SecretKey> ParseSecretKeyFile(std::string_view text, const std::string& path) {
  Result<nlohmann::json> parsed = ParseJson(text, kKeyFileBytesMax);
  if (!parsed.ok() || !parsed->is_object()) return Status::InvalidArgument(path + ": not a JSON object");
  nlohmann::json& j = *parsed;
  auto seed_field = j.find("seed");
  if (seed_field == j.end() || !seed_field->is_string()) return Status::InvalidArgument(path + ": no seed");
  std::string& seed_b64 = seed_field->get_ref<std::string&>();
  WipeOnExit wipe_seed_b64(seed_b64);
  Result<SecretKey> key = SecretKeyFromBase64Seed(seed_b64);
  if (!key.ok()) return Status::InvalidArgument(path + ": " + key.status().message());
  MERIDIAN_RETURN_IF_ERROR(CheckKeyFileIdentity(j, key->public_key(), path));
  return key;
}

Result<PublicKey> ParsePublicKeyFile(std::string_view text, const std::string& path) {
  Result<nlohmann::json> parsed = ParseJson(text, kKeyFileBytesMax);
  if (!parsed.ok() || !parsed->is_object()) return Status::InvalidArgument(path + ": not a JSON object");
  const nlohmann::json& j = *parsed;
  const std::string* public_b64 = StringField(j, "public");
  if (public_b64 == nullptr) return Status::InvalidArgument(path + ": no public key");
  Result<Bytes> raw = Base64Decode(*public_b64);
  if (!raw.ok()) return Status::InvalidArgument(path + ": public: " + raw.status().message());
  Result<PublicKey> key = PublicKey::FromBytes(*raw);
  if (!key.ok()) return Status::InvalidArgument(path + ": " + key.status().message());
  MERIDIAN_RETURN_IF_ERROR(CheckKeyFileIdentity(j, *key, path));
  return key;
}

namespace {

Result<Signature> ParseSignature(const nlohmann::json& j) {
  if (!j.is_object()) return Status::InvalidArgument("envelope signature is not an object");
  const std::string* keyid = StringField(j, "keyid");
  if (keyid == nullptr || keyid->empty() || keyid->size() > kKeyIdBytesMax) {
    return Status::InvalidArgument("envelope signature keyid is missing or longer than " +
                                   std::to_string(kKeyIdBytesMax) + " bytes");
  }
  const std::string* sig_b64 = StringField(j, "sig");
  if (sig_b64 == nullptr || sig_b64->size() != Base64Bytes(kSignatureBytes)) {
    return Status::InvalidArgument("envelope signature sig is not 64 bytes of base64");
  }
  Result<Bytes> sig = Base64Decode(*sig_b64);
  if (!sig.ok() || sig->size() != kSignatureBytes) {
    return Status::InvalidArgument("envelope signature sig is not 64 bytes of base64");
  }
  return Signature{*keyid, std::move(*sig)};
}

Result<Envelope> ParseEnvelopeJson(std::string_view json) {
  if (json.size() > kParseEnvelopeBytesMax) {
    return Status::InvalidArgument("envelope is larger than " + std::to_string(kParseEnvelopeBytesMax) + " bytes");
  }
  Result<nlohmann::json> parsed = ParseJson(json, kParseEnvelopeBytesMax, kEnvelopeValuesMax);
  if (!parsed.ok()) return Status::InvalidArgument("envelope: " + parsed.status().message());
  if (!parsed->is_object()) return Status::InvalidArgument("envelope is not a JSON object");
  const nlohmann::json& j = *parsed;

  Envelope env;
  const std::string* type = StringField(j, "payloadType");
  if (type == nullptr || type->empty() || type->size() > kPayloadTypeBytesMax) {
    return Status::InvalidArgument("envelope payloadType is missing, empty or too long");
  }
  env.payload_type = *type;

  const std::string* payload_b64 = StringField(j, "payload");
  if (payload_b64 == nullptr || payload_b64->size() > Base64Bytes(kEnvelopePayloadBytesMax)) {
    return Status::InvalidArgument("envelope payload is missing or larger than " +
                                   std::to_string(kEnvelopePayloadBytesMax) + " bytes");
  }
  Result<Bytes> payload = Base64Decode(*payload_b64);
  if (!payload.ok()) return Status::InvalidArgument("envelope payload: " + payload.status().message());
  env.payload = std::move(*payload);

  auto sigs = j.find("signatures");
  if (sigs == j.end() || !sigs->is_array()) return Status::InvalidArgument("envelope signatures is not an array");
  if (sigs->size() > kEnvelopeSignaturesMax) {
    return Status::InvalidArgument("envelope has " + std::to_string(sigs->size()) + " signatures, more than " +
                                   std::to_string(kEnvelopeSignaturesMax));
  }
  for (const nlohmann::json& s : *sigs) {
    Result<Signature> sig = ParseSignature(s);
    if (!sig.ok()) return sig.status();
    env.signatures.push_back(std::move(*sig));
  }
  return env;
}

}  // namespace

// ---- keys ----

Result<PublicKey> PublicKey::FromBytes(ByteSpan raw) {
  if (raw.size() != kPublicKeyBytes) {
    return Status::InvalidArgument("an ed25519 public key is 32 bytes, not " + std::to_string(raw.size()));
  }
  PublicKey key;
  std::copy(raw.begin(), raw.end(), key.bytes.begin());
  return key;
}

std::string PublicKey::KeyId() const { return Digest::Of(ByteSpan(bytes)).Hex(); }

SecretKey::SecretKey() = default;

SecretKey::~SecretKey() { Wipe(); }

SecretKey::SecretKey(SecretKey&& other) noexcept : secret_(other.secret_), public_(other.public_) { other.Wipe(); }

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    secret_ = other.secret_;
    public_ = other.public_;
    other.Wipe();
  }
  return *this;
}

void SecretKey::Wipe() {
  sodium_memzero(secret_.data(), secret_.size());
  public_ = PublicKey{};
}

SecretKey SecretKey::Generate() {
  if (!SodiumReady()) {
    // No randomness means no keys at all; there is nothing sensible to return.
    std::fputs("meridian: libsodium failed to initialise\n", stderr);
    std::abort();
  }
  SecretKey key;
  crypto_sign_keypair(key.public_.bytes.data(), key.secret_.data());
  return key;
}

Result<SecretKey> SecretKey::FromSeed(ByteSpan seed) {
  if (!SodiumReady()) return Status::IOError("libsodium failed to initialise");
  if (seed.size() != kSeedBytes) {
    return Status::InvalidArgument("an ed25519 seed is 32 bytes, not " + std::to_string(seed.size()));
  }
  SecretKey key;
  crypto_sign_seed_keypair(key.public_.bytes.data(), key.secret_.data(), seed.data());
  return key;
}

std::array<uint8_t, kSignatureBytes> SecretKey::Sign(ByteSpan message) const {
  assert(!sodium_is_zero(secret_.data(), secret_.size()) && "Sign() on an empty SecretKey");
  std::array<uint8_t, kSignatureBytes> sig{};
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), secret_.data());
  return sig;
}

bool VerifySignature(const PublicKey& key, ByteSpan message, ByteSpan signature) {
  if (signature.size() != kSignatureBytes || !SodiumReady()) return false;
  return crypto_sign_verify_detached(signature.data(), message.data(), message.size(), key.bytes.data()) == 0;
}

// ---- key files ----

Status WriteSecretKeyFile(const std::string& path, const SecretKey& key) {
  return WriteSecretKeyFile(Env::Default(), path, key);
}

Status WriteSecretKeyFile(Env& env, const std::string& path, const SecretKey& key) {
  std::array<uint8_t, kSeedBytes> seed{};
  WipeOnExit wipe_seed(seed);
  crypto_sign_ed25519_sk_to_seed(seed.data(), key.secret_.data());
  std::string seed_b64 = Base64Encode(seed);
  WipeOnExit wipe_seed_b64(seed_b64);

  static constexpr std::string_view kHead = R"({"keytype":"ed25519","keyid":")";
  static constexpr std::string_view kSeedField = R"(","seed":")";
  static constexpr std::string_view kTail = "\"}\n";
  const std::string keyid = key.KeyId();
  std::string text;
  WipeOnExit wipe_text(text);
  // Reserved once so appending never moves the secret and leaves a stale copy.
  text.reserve(kHead.size() + keyid.size() + kSeedField.size() + seed_b64.size() + kTail.size());
  text.append(kHead).append(keyid).append(kSeedField).append(seed_b64).append(kTail);
  return env.WriteFileAtomic(path, text, 0600);
}

Status WritePublicKeyFile(const std::string& path, const PublicKey& key) {
  nlohmann::ordered_json j;
  j["keytype"] = std::string(kKeyType);
  j["keyid"] = key.KeyId();
  j["public"] = Base64Encode(key.bytes);
  return WriteFileAtomic(path, j.dump() + "\n", 0644);
}

namespace {

// Parses a secret key file read into `text` by one of the readers above.
Result<SecretKey> SecretKeyFromFileText(const std::string& text, const std::string& path) {
  try {
    return ParseSecretKeyFile(text, path);
  } catch (const std::exception&) {
    // The exception's text could quote the file; this file is a secret.
    return Status::InvalidArgument(path + ": malformed secret key file");
  }
}

}  // namespace

Result<SecretKey> ReadSecretKeyFile(const std::string& path) {
  std::string text;
  WipeOnExit wipe_text(text);
  MERIDIAN_RETURN_IF_ERROR(ReadSecretFile(path, text));
  return SecretKeyFromFileText(text, path);
}

Result<SecretKey> ReadSecretKeyFile(Env& env, const std::string& path) {
  Result<FileType> type = env.Stat(path);
  if (!type.ok()) return type.status();
  if (*type != FileType::kFile) return Status::InvalidArgument(path + " is not a regular file");
  Result<mode_t> mode = env.GetPermissions(path);
  if (!mode.ok()) return mode.status();
  MERIDIAN_RETURN_IF_ERROR(CheckSecretMode(*mode, path));
  Result<std::unique_ptr<SequentialFile>> file = env.NewSequentialFile(path);
  if (!file.ok()) return file.status();
  std::string text;
  WipeOnExit wipe_text(text);
  MERIDIAN_RETURN_IF_ERROR(ReadSecretInto([&](std::span<uint8_t> buf) { return (*file)->Read(buf); }, path, text));
  return SecretKeyFromFileText(text, path);
}

Result<SecretKey> LoadOrCreateSecretKeyFile(Env& env, const std::string& path) {
  Result<SecretKey> key = ReadSecretKeyFile(env, path);
  if (key.ok()) return key;
  if (key.status().code() != Status::Code::kNotFound) return key.status().WithContext(path);
  SecretKey made = SecretKey::Generate();
  MERIDIAN_RETURN_IF_ERROR(WriteSecretKeyFile(env, path, made));
  return made;
}

Result<PublicKey> ReadPublicKeyFile(const std::string& path) {
  Result<std::string> text = ReadFileToString(path, kKeyFileBytesMax);
  if (!text.ok()) return text.status();
  try {
    return ParsePublicKeyFile(*text, path);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(path + ": " + e.what());
  }
}

// ---- DSSE envelopes ----

Bytes Pae(std::string_view payload_type, ByteSpan payload) {
  std::string head = "DSSEv1 " + std::to_string(payload_type.size()) + " ";
  head.append(payload_type).append(" ").append(std::to_string(payload.size())).append(" ");
  Bytes out;
  out.reserve(head.size() + payload.size());
  out.insert(out.end(), head.begin(), head.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void SignEnvelope(Envelope& env, const SecretKey& key) {
  std::array<uint8_t, kSignatureBytes> sig = key.Sign(Pae(env.payload_type, env.payload));
  env.signatures.push_back(Signature{key.KeyId(), Bytes(sig.begin(), sig.end())});
}

std::string EnvelopeToJson(const Envelope& env) {
  nlohmann::ordered_json sigs = nlohmann::ordered_json::array();
  for (const Signature& s : env.signatures) {
    nlohmann::ordered_json entry;
    entry["keyid"] = s.keyid;
    entry["sig"] = Base64Encode(s.sig);
    sigs.push_back(std::move(entry));
  }
  nlohmann::ordered_json j;
  j["payloadType"] = env.payload_type;
  j["payload"] = Base64Encode(env.payload);
  j["signatures"] = std::move(sigs);
  // Invalid UTF-8 in a type or keyid is replaced rather than thrown on; such
  // an envelope no longer verifies, which is the honest outcome.
  return DumpJson(j);
}

Result<Envelope> ParseEnvelope(std::string_view json) {
  try {
    return ParseEnvelopeJson(json);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("envelope: ") + e.what());
  }
}

}  // namespace meridian
