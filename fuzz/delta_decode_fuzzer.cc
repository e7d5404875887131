// libFuzzer target for the delta decoder: hostile deltas against a fixed small
// source must end in an error or a verified target, never in a crash, a read
// outside the source, a write past the header's target size or unbounded memory.
// With MERIDIAN_FUZZ_WRITE_CORPUS=DIR set, it writes its seed corpus (valid
// deltas against the same source) to DIR and exits.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "delta/delta.h"

using namespace meridian;

namespace {

// 64 KiB: text-like bytes, then fp16-like words, so every operation kind appears.
const Bytes& FuzzSource() {
  static const Bytes source = [] {
    Bytes b(64 * 1024);
    uint64_t x = 0x6d6572696469616eull;
    for (size_t i = 0; i < b.size(); ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      b[i] = i < b.size() / 2 ? static_cast<uint8_t>("abcdefgh \n"[(x >> 33) % 10])
                              : static_cast<uint8_t>(i % 2 ? 0x2c + ((x >> 40) & 3) : x >> 56);
    }
    return b;
  }();
  return source;
}

class CheckedSource final : public SourceReader {
 public:
  uint64_t size() const override { return FuzzSource().size(); }
  Status Read(uint64_t offset, std::span<uint8_t> out) override {
    if (offset > size() || out.size() > size() - offset) std::abort();  // the decoder broke its contract
    std::memcpy(out.data(), FuzzSource().data() + offset, out.size());
    return Status::Ok();
  }
};

// Aborts when the decoder writes past the target size its header announced or
// reads back what it has not written.
class BoundedSink final : public TargetSink {
 public:
  const DeltaDecoder* decoder = nullptr;
  Status Write(ByteSpan data) override {
    written_.insert(written_.end(), data.begin(), data.end());
    if (!decoder->header() || written_.size() > decoder->header()->target_size) std::abort();
    return Status::Ok();
  }
  Status ReadBack(uint64_t offset, std::span<uint8_t> out) override {
    if (offset > written_.size() || out.size() > written_.size() - offset) std::abort();
    std::memcpy(out.data(), written_.data() + offset, out.size());
    return Status::Ok();
  }

 private:
  Bytes written_;
};

void WriteCorpus(const char* dir) {
  const Bytes& s = FuzzSource();
  Bytes moved(s.begin() + 1000, s.end());
  moved.insert(moved.end(), s.begin(), s.begin() + 1000);
  Bytes tweaked = s;
  for (size_t i = s.size() / 2; i < s.size(); i += 2) tweaked[i] = static_cast<uint8_t>(tweaked[i] + (i % 7 == 0));
  Bytes repeated(s.rbegin(), s.rbegin() + 3000);  // no match in the source, then a repeat
  repeated.insert(repeated.end(), repeated.begin(), repeated.end());
  // A patch release: 3 bytes inserted early, then in the text every byte
  // after an 'h' changed (approximate matches whose differences the source
  // bytes tell: PATCH_MODELED operations, with LZMA).
  Bytes shifted = s;
  shifted.insert(shifted.begin() + 100, {1, 2, 3});
  for (size_t i = 200; i < shifted.size() / 2; ++i) {
    if (shifted[i - 1] == 'h') shifted[i] = static_cast<uint8_t>(shifted[i] + 2);
  }
  const Bytes targets[] = {s, moved, tweaked, Bytes(s.begin(), s.begin() + 5000), Bytes{}, Bytes(100, 7), repeated,
                           shifted};
  DeltaOptions options;
  options.copy_bytes_min = 4096;
  options.segment_bytes = 16 * 1024;
  // Literals both ways: zstd (seed-N) and LZMA (seed-lzma-N).
  for (LiteralCodec codec : {LiteralCodec::kZstd, LiteralCodec::kLzma}) {
    options.literal_codec = codec;
    int n = 0;
    for (const Bytes& t : targets) {
      Result<Bytes> delta = EncodeDelta(s, t, options);
      if (!delta.ok() || !ApplyDelta(s, *delta).ok()) std::abort();
      const std::string path =
          std::string(dir) + (codec == LiteralCodec::kZstd ? "/seed-" : "/seed-lzma-") + std::to_string(n++);
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (f == nullptr || std::fwrite(delta->data(), 1, delta->size(), f) != delta->size() || std::fclose(f) != 0) {
        std::abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("MERIDIAN_FUZZ_WRITE_CORPUS")) {
    WriteCorpus(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Digest source_digest = Digest::Of(FuzzSource());
  // The source fields of the header are set to the fixed source, so that the
  // fuzzer spends its time on operations (header checks are unit-tested).
  Bytes delta(data, data + size);
  if (delta.size() >= kDeltaHeaderBytes) {
    const uint64_t source_size = FuzzSource().size();
    for (int i = 0; i < 8; ++i) delta[12 + static_cast<size_t>(i)] = static_cast<uint8_t>(source_size >> (8 * i));
    std::memcpy(&delta[20], source_digest.bytes().data(), Digest::kSize);
  }
  CheckedSource source;
  BoundedSink sink;
  ApplyOptions options;
  options.source_digest = source_digest;
  options.target_bytes_max = 1 << 20;
  DeltaDecoder decoder(source, sink, options);
  sink.decoder = &decoder;
  // Two pieces, so both the in-place and the pending paths run.
  const size_t split = size / 3;
  Status status = decoder.Append(ByteSpan(delta).first(split));
  if (status.ok()) status = decoder.Append(ByteSpan(delta).subspan(split));
  if (status.ok()) status = decoder.Finish();
  if (decoder.buffer_bytes_peak() > kDeltaDecoderBufferBytesMax) std::abort();
  return 0;
}
