// SHA-256 digests through OpenSSL EVP.
#include "base/digest.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>

#include "base/encoding.h"

namespace meridian {

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  // Allocation or initialisation failure here means the process cannot hash
  // anything at all; there is no sensible way to continue.
  if (ctx_->md == nullptr || EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1) std::abort();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_->md); }

void Sha256::Update(ByteSpan data) {
  if (!data.empty() && EVP_DigestUpdate(ctx_->md, data.data(), data.size()) != 1) std::abort();
}

Digest Sha256::Finish() {
  std::array<uint8_t, Digest::kSize> out{};
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx_->md, out.data(), &n) != 1 || n != out.size()) std::abort();
  if (EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1) std::abort();
  return Digest(out);
}

Digest Digest::Of(ByteSpan data) {
  std::array<uint8_t, kSize> out{};
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr) != 1) std::abort();
  return Digest(out);
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
