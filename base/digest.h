// Content addresses: SHA-256 digests written "sha256:<64 lowercase hex>".
// SHA-256 is computed by OpenSSL's EVP, which uses the CPU's SHA extensions.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

class Digest {
 public:
  static constexpr size_t kSize = 32;
  static constexpr std::string_view kPrefix = "sha256:";

  Digest() = default;  // all zero; never the digest of real content in practice
  explicit Digest(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // SHA-256 of `data`.
  static Digest Of(ByteSpan data);
  static Digest Of(std::string_view data) { return Of(AsBytes(data)); }
  // Parses "sha256:<64 lowercase hex>"; anything else is InvalidArgument.
  static Result<Digest> Parse(std::string_view text);
  // From 32 raw bytes; InvalidArgument on any other length.
  static Result<Digest> FromBytes(ByteSpan raw);

  std::string ToString() const;  // "sha256:…"
  std::string Hex() const;       // the 64 hex digits alone
  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }

  auto operator<=>(const Digest&) const = default;

 private:
  std::array<uint8_t, kSize> bytes_{};
};

// Incremental SHA-256 for streams that are never held whole in memory.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(ByteSpan data);
  void Update(std::string_view data) { Update(AsBytes(data)); }
  // Returns the digest of everything given so far and resets the hasher.
  Digest Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace meridian

template <>
struct std::hash<meridian::Digest> {
  size_t operator()(const meridian::Digest& d) const noexcept {
    size_t h;
    static_assert(sizeof(h) <= meridian::Digest::kSize);
    __builtin_memcpy(&h, d.bytes().data(), sizeof(h));
    return h;
  }
};
