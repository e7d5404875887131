// SHA-256 digests through OpenSSL EVP.
#include "base/digest.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>

#include "base/encoding.h"

namespace meridian {

namespace {

// OpenSSL 3 looks SHA-256 up among its providers on every EVP_Digest and on
// every EVP_DigestInit_ex given EVP_sha256(): a third of a microsecond, more
// than hashing a terminal id or a token takes. Fetched once, the lookup is
// gone (a short input: 326 ns → 89 ns with a kept context).
const EVP_MD* Sha256Algorithm() {
  static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (md == nullptr) std::abort();
  return md;
}

}  // namespace

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  // Allocation or initialisation failure here means the process cannot hash
  // anything at all; there is no sensible way to continue.
  if (ctx_->md == nullptr || EVP_DigestInit_ex(ctx_->md, Sha256Algorithm(), nullptr) != 1) std::abort();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_->md); }

void Sha256::Update(ByteSpan data) {
  if (!data.empty() && EVP_DigestUpdate(ctx_->md, data.data(), data.size()) != 1) std::abort();
}

Digest Sha256::Finish() {
  std::array<uint8_t, Digest::kSize> out{};
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx_->md, out.data(), &n) != 1 || n != out.size()) std::abort();
  if (EVP_DigestInit_ex(ctx_->md, Sha256Algorithm(), nullptr) != 1) std::abort();
  return Digest(out);
}

Digest Digest::Of(ByteSpan data) {
  // A context per thread: most inputs are short, and allocating a context
  // costs as much as hashing them.
  thread_local Sha256 hasher;
  hasher.Update(data);
  return hasher.Finish();
}

Result<Digest> Digest::Parse(std::string_view text) {
  if (text.size() != kPrefix.size() + 2 * kSize || text.substr(0, kPrefix.size()) != kPrefix) {
    return Status::InvalidArgument("digest must be sha256:<64 lowercase hex digits>");
  }
  std::string_view hex = text.substr(kPrefix.size());
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Status::InvalidArgument("digest must be sha256:<64 lowercase hex digits>");
    }
  }
  Result<Bytes> raw = HexDecode(hex);
  if (!raw.ok()) return raw.status();
  return FromBytes(*raw);
}

Result<Digest> Digest::FromBytes(ByteSpan raw) {
  if (raw.size() != kSize) return Status::InvalidArgument("digest must be 32 bytes");
  std::array<uint8_t, kSize> b{};
  std::memcpy(b.data(), raw.data(), kSize);
  return Digest(b);
}

std::string Digest::ToString() const { return std::string(kPrefix) + Hex(); }
std::string Digest::Hex() const { return HexEncode(bytes_); }

}  // namespace meridian
