// The delta format's building blocks: header, varints, byte planes and the
// zigzag difference transform, shared by the encoder and the decoder.
#include <cstring>
#include <string>
#include <type_traits>

#include "delta/delta.h"

namespace meridian {

namespace {

// PNG-style: a high byte against 7-bit transports, CR LF against newline
// conversion, ^Z against DOS `type`.
constexpr uint8_t kMagic[8] = {0x89, 'M', 'D', 'L', 'T', '\r', '\n', 0x1a};

void PutLe(Bytes& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t GetLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // little-endian hosts only (x86-64, arm64)
  return v;
}

template <typename T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

template <typename T>
T Zigzag(T d) {
  using S = std::make_signed_t<T>;
  return static_cast<T>(static_cast<T>(d << 1) ^ static_cast<T>(static_cast<S>(d) >> (8 * sizeof(T) - 1)));
}

template <typename T>
T Unzigzag(T z) {
  return static_cast<T>((z >> 1) ^ static_cast<T>(0 - (z & 1)));
}

template <typename T>
void DiffToPlanesT(ByteSpan source, ByteSpan target, std::span<uint8_t> planes) {
  constexpr size_t w = sizeof(T);
  const size_t n = target.size() / w;
  for (size_t i = 0; i < n; ++i) {
    T z = Zigzag(static_cast<T>(Load<T>(&target[i * w]) - Load<T>(&source[i * w])));
    for (size_t k = 0; k < w; ++k) planes[k * n + i] = static_cast<uint8_t>(z >> (8 * k));
  }
  for (size_t i = n * w; i < target.size(); ++i) {
    planes[i] = Zigzag(static_cast<uint8_t>(target[i] - source[i]));
  }
}

template <typename T>
void ApplyPlanesT(ByteSpan planes, std::span<uint8_t> data) {
  constexpr size_t w = sizeof(T);
  const size_t n = data.size() / w;
  for (size_t i = 0; i < n; ++i) {
    T z = 0;
    for (size_t k = 0; k < w; ++k) z = static_cast<T>(z | T{planes[k * n + i]} << (8 * k));
    Store<T>(&data[i * w], static_cast<T>(Load<T>(&data[i * w]) + Unzigzag(z)));
  }
  for (size_t i = n * w; i < data.size(); ++i) data[i] = static_cast<uint8_t>(data[i] + Unzigzag(planes[i]));
}

}  // namespace

Status SpanSourceReader::Read(uint64_t offset, std::span<uint8_t> out) {
  if (offset > data_.size() || out.size() > data_.size() - offset) {
    return Status::InvalidArgument("source read out of range");
  }
  if (!out.empty()) std::memcpy(out.data(), data_.data() + offset, out.size());
  return Status::Ok();
}

Result<DeltaHeader> ParseDeltaHeader(ByteSpan delta) {
  if (delta.size() < kDeltaHeaderBytes) return Status::Corruption("delta shorter than its header");
  if (std::memcmp(delta.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::InvalidArgument("not a Meridian delta (bad magic)");
  }
  const uint8_t* p = delta.data() + sizeof(kMagic);
  DeltaHeader h;
  h.format_version = static_cast<uint16_t>(GetLe(p, 2));
  if (h.format_version < 1 || h.format_version > kDeltaFormatVersion) {
    return Status::InvalidArgument("unsupported delta format version " + std::to_string(h.format_version));
  }
  if (GetLe(p + 2, 2) != 0) return Status::InvalidArgument("unsupported delta flags");
  h.source_size = GetLe(p + 4, 8);
  h.source_digest = *Digest::FromBytes(ByteSpan(p + 12, Digest::kSize));
  h.target_size = GetLe(p + 44, 8);
  h.target_digest = *Digest::FromBytes(ByteSpan(p + 52, Digest::kSize));
  return h;
}

namespace delta_format {

void PutVarint(Bytes& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<uint8_t>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<uint8_t>(value));
}

void PutHeader(Bytes& out, const DeltaHeader& h) {
  out.insert(out.end(), std::begin(kMagic), std::end(kMagic));
  PutLe(out, h.format_version, 2);
  PutLe(out, 0, 2);  // flags
  PutLe(out, h.source_size, 8);
  out.insert(out.end(), h.source_digest.bytes().begin(), h.source_digest.bytes().end());
  PutLe(out, h.target_size, 8);
  out.insert(out.end(), h.target_digest.bytes().begin(), h.target_digest.bytes().end());
}

void SetFormatVersion(std::span<uint8_t> delta_start, uint16_t version) {
  Bytes le;
  PutLe(le, version, 2);
  std::copy(le.begin(), le.end(), delta_start.begin() + sizeof(kMagic));
}

void SplitPlanes(ByteSpan data, unsigned width, std::span<uint8_t> out) {
  const size_t n = data.size() / width;
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < width; ++k) out[k * n + i] = data[i * width + k];
  }
  std::memcpy(out.data() + n * width, data.data() + n * width, data.size() - n * width);
}

void JoinPlanes(ByteSpan planes, unsigned width, std::span<uint8_t> out) {
  const size_t n = out.size() / width;
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < width; ++k) out[i * width + k] = planes[k * n + i];
  }
  std::memcpy(out.data() + n * width, planes.data() + n * width, out.size() - n * width);
}

void DiffToPlanes(ByteSpan source, ByteSpan target, unsigned width, std::span<uint8_t> planes_out) {
  switch (width) {
    case 1: return DiffToPlanesT<uint8_t>(source, target, planes_out);
    case 2: return DiffToPlanesT<uint16_t>(source, target, planes_out);
    default: return DiffToPlanesT<uint32_t>(source, target, planes_out);
  }
}

void ApplyPlanes(ByteSpan planes, unsigned width, std::span<uint8_t> data) {
  switch (width) {
    case 1: return ApplyPlanesT<uint8_t>(planes, data);
    case 2: return ApplyPlanesT<uint16_t>(planes, data);
    default: return ApplyPlanesT<uint32_t>(planes, data);
  }
}

}  // namespace delta_format

}  // namespace meridian
