#include "delta/difference_model.h"

#include <algorithm>
#include <array>
#include <vector>

namespace meridian {

namespace {

// Probabilities are 12-bit (P(bit = 1) × 4096), mixed in the logistic
// ("stretch") domain, ln(p / (1 − p)) × 256, clamped to ±2047.
constexpr int kProbBits = 12;
constexpr int kStretchMax = 2047;

constexpr int Squash(int x) {
  constexpr std::array<int, 33> t = {1,    2,    3,    6,    10,   16,   27,   45,   73,   120,  194,
                                     310,  488,  747,  1101, 1546, 2047, 2549, 2994, 3348, 3607, 3785,
                                     3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094};
  if (x > kStretchMax) return 4095;
  if (x < -kStretchMax) return 1;
  const int w = x & 127, i = (x >> 7) + 16;
  return (t[static_cast<size_t>(i)] * (128 - w) + t[static_cast<size_t>(i) + 1] * w + 64) >> 7;
}

// The inverse of Squash, as a table over the 4096 probabilities.
constexpr std::array<int16_t, 4096> kStretch = [] {
  std::array<int16_t, 4096> t{};
  int next = 0;
  for (int x = -kStretchMax; x <= kStretchMax; ++x) {
    for (int p = Squash(x); next <= p; ++next) t[static_cast<size_t>(next)] = static_cast<int16_t>(x);
  }
  for (; next < 4096; ++next) t[static_cast<size_t>(next)] = kStretchMax;
  return t;
}();

// Squash over the whole stretched domain: one load where the mixer needs it
// on every bit, instead of the interpolation.
constexpr std::array<int16_t, 2 * kStretchMax + 1> kSquash = [] {
  std::array<int16_t, 2 * kStretchMax + 1> t{};
  for (int x = -kStretchMax; x <= kStretchMax; ++x) {
    t[static_cast<size_t>(x + kStretchMax)] = static_cast<int16_t>(Squash(x));
  }
  return t;
}();

// An adaptive probability: 22 bits of P(1), 10 bits of how often it was
// updated. It moves by 1 / (n + 1.5) of the error, so a context seen a few
// times learns at once (most contexts are rare: the differences are sparse)
// and one seen often averages over its last thousand uses.
class Counter {
 public:
  static constexpr uint32_t kInitial = 1u << 31;  // P = 0.5, n = 0
  static int P(uint32_t state) { return std::clamp<int>(static_cast<int>(state >> 20), 1, 4095); }
  static void Update(uint32_t& state, int bit) {
    const uint32_t n = state & 1023;
    const int64_t p = state >> 10, target = int64_t{bit} << 22;
    // Stays within [0, 2^22) with no clamp: each rate is below 1 (2^16), so
    // a step is shorter than the way to the target, and rounding a step
    // toward 0 down still leaves it at most that long.
    const int64_t moved = p + (((target - p) * kRate[n]) >> 16);
    state = static_cast<uint32_t>(moved << 10) | std::min(n + 1, 1023u);
  }

 private:
  static constexpr std::array<int32_t, 1024> kRate = [] {
    std::array<int32_t, 1024> r{};
    for (size_t n = 0; n < r.size(); ++n) r[n] = static_cast<int32_t>(65536 * 2 / (2 * n + 3));
    return r;
  }();
  static_assert(kRate[0] < (1 << 16));
};

// Mixes `N` stretched predictions (plus a bias) with one of `Sets` weight
// vectors, chosen per bit by a small context, trained online toward the bit.
template <int N, int Sets>
class Mixer {
 public:
  // Each weight starts at `input_weight` / 65536, the bias's at `bias_weight`.
  explicit Mixer(int32_t input_weight = (1 << 16) / (N + 1), int32_t bias_weight = (1 << 16) / (N + 1)) {
    weights_.fill(input_weight);
    for (int set = 0; set < Sets; ++set) weights_[static_cast<size_t>(set) * (N + 1) + N] = bias_weight;
  }
  int Mix(const std::array<int, N>& stretched, int set) {
    inputs_ = stretched;
    base_ = static_cast<size_t>(set) * (N + 1);
    int64_t dot = int64_t{kBias} * weights_[base_ + N];
    for (int i = 0; i < N; ++i) dot += int64_t{inputs_[static_cast<size_t>(i)]} * weights_[base_ + static_cast<size_t>(i)];
    p_ = kSquash[static_cast<size_t>(std::clamp<int64_t>(dot >> 16, -kStretchMax, kStretchMax) + kStretchMax)];
    return p_;
  }
  void Update(int bit) {
    const int err = ((bit << kProbBits) - p_) * kLearningRate;
    auto train = [&](size_t i, int input) {
      weights_[i] = std::clamp(weights_[i] + ((input * err + 0x8000) >> 16), -kWeightMax, kWeightMax);
    };
    for (int i = 0; i < N; ++i) train(base_ + static_cast<size_t>(i), inputs_[static_cast<size_t>(i)]);
    train(base_ + N, kBias);
  }

 private:
  static constexpr int kBias = 256, kLearningRate = 14, kWeightMax = 1 << 22;
  std::array<int32_t, static_cast<size_t>(Sets) * (N + 1)> weights_;
  std::array<int, N> inputs_{};
  size_t base_ = 0;
  int p_ = 2048;
};

uint32_t Hash(uint32_t x) {
  x *= 0x9E3779B1u;
  x ^= x >> 15;
  x *= 0x2C1B3C6Du;
  return x ^ (x >> 12);
}

// LZMA's range coder: encodes a bit with probability P(1) = p / 4096.
class RangeEncoder {
 public:
  // Returns `bit`, as RangeDecoder::Bit returns the bit it decodes.
  int Bit(int p1, int bit) {
    const uint32_t bound = (range_ >> kProbBits) * static_cast<uint32_t>(4096 - p1);
    if (bit == 0) {
      range_ = bound;
    } else {
      low_ += bound;
      range_ -= bound;
    }
    while (range_ < (1u << 24)) {
      range_ <<= 8;
      ShiftLow();
    }
    return bit;
  }
  Bytes Finish() {
    for (int i = 0; i < 5; ++i) ShiftLow();
    return std::move(out_);
  }

 private:
  void ShiftLow() {
    if (static_cast<uint32_t>(low_) < 0xFF000000u || (low_ >> 32) != 0) {
      const auto carry = static_cast<uint8_t>(low_ >> 32);
      for (uint8_t byte = cache_; pending_ > 0; --pending_, byte = 0xFF) out_.push_back(static_cast<uint8_t>(byte + carry));
      cache_ = static_cast<uint8_t>(low_ >> 24);
    }
    ++pending_;
    low_ = (low_ & 0x00FFFFFFu) << 8;
  }
  uint64_t low_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  uint8_t cache_ = 0;
  uint64_t pending_ = 1;
  Bytes out_;
};

class RangeDecoder {
 public:
  void Reset(ByteSpan in) {
    in_ = in;
    pos_ = 0;
    overrun_ = false;
    range_ = 0xFFFFFFFFu;
    code_ = 0;
    // The encoder's first byte is always 0 (its initial cache).
    if (Next() != 0) overrun_ = true;
    for (int i = 0; i < 4; ++i) code_ = (code_ << 8) | Next();
  }
  int Bit(int p1, int /*unused*/) {
    const uint32_t bound = (range_ >> kProbBits) * static_cast<uint32_t>(4096 - p1);
    int bit;
    if (code_ < bound) {
      range_ = bound;
      bit = 0;
    } else {
      code_ -= bound;
      range_ -= bound;
      bit = 1;
    }
    while (range_ < (1u << 24)) {
      range_ <<= 8;
      code_ = (code_ << 8) | Next();
    }
    return bit;
  }
  bool overrun() const { return overrun_; }
  // The encoder's flush leaves exactly its `low` in the last bytes, so a
  // stream read to its end leaves code 0 (as xz checks for LZMA).
  bool AtEnd() const { return !overrun_ && pos_ == in_.size() && code_ == 0; }

 private:
  uint32_t Next() {
    if (pos_ < in_.size()) return in_[pos_++];
    overrun_ = true;
    return 0;
  }
  ByteSpan in_;
  size_t pos_ = 0;
  bool overrun_ = false;
  uint32_t range_ = 0xFFFFFFFFu;
  uint32_t code_ = 0;
};

// The model. Per difference, one bit says whether it is zero, predicted from
// the source bytes at and before it and from how far back the last non-zero
// difference was; a non-zero difference is then coded bit by bit (a binary
// tree, high bit first), predicted from the previous difference, the last
// non-zero one (a moved address moves by the same amount wherever it is
// used) and the source bytes. Each prediction comes from a table of 2^16
// counters indexed by a hash of its context. DifferenceModel::kConfidentZeros
// codes the zero bit with one counter alone where that counter is sure.
class Model {
 public:
  explicit Model(DifferenceModel variant)
      : tables_(size_t{kZeroModels + kValueModels} << kTableBits, Counter::kInitial),
        sure_(variant == DifferenceModel::kConfidentZeros ? kSureContexts : 0, Counter::kInitial) {}

  // Back to the state of a new model of `variant`, keeping the tables' memory.
  void Clear(DifferenceModel variant) {
    std::fill(tables_.begin(), tables_.end(), Counter::kInitial);
    sure_.assign(variant == DifferenceModel::kConfidentZeros ? kSureContexts : 0, Counter::kInitial);
    zero_mixer_ = decltype(zero_mixer_)();
    value_mixer_ = decltype(value_mixer_)();
    sure_mixer_ = SureMixer();
    history_ = 0;
    last_ = last_nonzero_ = 0;
    distance_ = 0;
  }

  // Codes one difference (encoding: `difference`; decoding: ignored) and
  // returns it.
  template <class Coder>
  uint8_t Code(Coder& coder, uint8_t source, uint8_t difference) {
    const uint32_t s0 = source, s1 = history_ & 0xFF, s2 = (history_ >> 8) & 0xFF, s3 = history_ >> 16;
    const uint32_t nonzero = last_ != 0;
    const std::array<uint32_t, kZeroModels> zero_contexts = {
        s0 | s1 << 8 | nonzero << 16,
        Hash(s0 | s1 << 8 | s2 << 16 | nonzero << 24 | 1u << 25),
        Hash(s0 | s1 << 8 | s2 << 16 | s3 << 24) ^ nonzero,
        Hash(s0 | distance_ << 8 | uint32_t{last_} << 12 | 3u << 20),
        Hash(distance_ | uint32_t{last_nonzero_} << 4 | s1 << 12 | 4u << 20),
    };
    int is_nonzero;
    if (sure_.empty()) {
      is_nonzero = MixedZeroBit(coder, zero_contexts, nonzero, difference);
    } else {
      // The five predictions, their mixing and their updates cost several
      // times what one counter does, and where it is this sure they would
      // add little. A mixer of its one prediction learns how far to trust
      // it: without, deltas of patch releases were up to 0.7 % larger.
      uint32_t& sure = sure_[s0 | s1 << 8 | std::min(distance_, 3u) << 16];
      const int p1 = Counter::P(sure);
      if ((sure & 1023) >= kSureSeenMin && p1 < kSureNonZeroBelow) {
        const int p = std::clamp(
            sure_mixer_.Mix({kStretch[static_cast<size_t>(p1)]}, static_cast<int>(std::min(distance_, 3u))), 1, 4095);
        is_nonzero = coder.Bit(p, difference != 0);
        sure_mixer_.Update(is_nonzero);
      } else {
        is_nonzero = MixedZeroBit(coder, zero_contexts, nonzero, difference);
      }
      Counter::Update(sure, is_nonzero);
    }
    uint8_t value = 0;
    if (is_nonzero) {
      uint32_t node = 1;
      for (int b = 7; b >= 0; --b) {
        const std::array<uint32_t, kValueModels> contexts = {
            Hash(uint32_t{last_} | s0 << 8 | node << 16),
            Hash(uint32_t{last_nonzero_} | node << 8 | 5u << 20),
            Hash(s0 | s1 << 8 | node << 16 | 6u << 24),
            Hash(node | 7u << 20),
        };
        const int bit = Predict<kValueModels>(coder, value_mixer_, kZeroModels, contexts, b, (difference >> b) & 1);
        node = node * 2 + static_cast<uint32_t>(bit);
      }
      value = static_cast<uint8_t>(node);
      last_nonzero_ = value;
      distance_ = 0;
    } else {
      distance_ = std::min(distance_ + 1, 15u);
    }
    last_ = value;
    history_ = ((history_ << 8) | s0) & 0xFFFFFF;
    return value;
  }

 private:
  static constexpr int kZeroModels = 5, kValueModels = 4;
  // kConfidentZeros: a counter for each source byte, byte before and
  // distance to the last non-zero difference (0, 1, 2, 3 or more), sure once
  // it has seen its context kSureSeenMin times and gives P(non-zero) below
  // kSureNonZeroBelow / 4096. At 1/64 most differences of patch releases
  // take the one-counter path; at 1/16 their deltas grew by up to 1 % for
  // no measurable speed.
  static constexpr size_t kSureContexts = size_t{1} << 18;
  static constexpr uint32_t kSureSeenMin = 4;
  static constexpr int kSureNonZeroBelow = 64;

  template <class Coder>
  int MixedZeroBit(Coder& coder, const std::array<uint32_t, kZeroModels>& contexts, uint32_t nonzero,
                   uint8_t difference) {
    return Predict<kZeroModels>(coder, zero_mixer_, 0, contexts, static_cast<int>(nonzero * 4 + std::min(distance_, 3u)),
                                difference != 0);
  }
  // 2^16 counters a table: 2.25 MiB in all, next to the decoder's other
  // buffers within an apply's 64 MiB. 2^18 made deltas 5.5 % smaller (ONNX
  // Runtime, esbuild and libvips releases) and decoding 1.4–1.7 × slower.
  static constexpr unsigned kTableBits = 16;
  static_assert(kDifferenceModelBytes >=
                ((size_t{kZeroModels + kValueModels} << kTableBits) + kSureContexts) * sizeof(uint32_t));

  template <int N, class Coder, class M>
  int Predict(Coder& coder, M& mixer, int first_table, const std::array<uint32_t, N>& contexts, int set, int bit_in) {
    std::array<uint32_t*, N> counters;
    std::array<int, N> stretched;
    for (int i = 0; i < N; ++i) {
      const size_t slot = (size_t{static_cast<uint32_t>(first_table + i)} << kTableBits) |
                          (contexts[static_cast<size_t>(i)] & ((1u << kTableBits) - 1));
      counters[static_cast<size_t>(i)] = &tables_[slot];
      stretched[static_cast<size_t>(i)] = kStretch[static_cast<size_t>(Counter::P(tables_[slot]))];
    }
    const int p1 = std::clamp(mixer.Mix(stretched, set), 1, 4095);
    const int bit = coder.Bit(p1, bit_in);
    mixer.Update(bit);
    for (uint32_t* c : counters) Counter::Update(*c, bit);
    return bit;
  }

  std::vector<uint32_t> tables_;
  std::vector<uint32_t> sure_;  // kConfidentZeros only, else empty
  Mixer<kZeroModels, 8> zero_mixer_;
  Mixer<kValueModels, 8> value_mixer_;
  // Starts by taking the counter's prediction as it is.
  static Mixer<1, 4> SureMixer() { return Mixer<1, 4>(1 << 16, 0); }
  Mixer<1, 4> sure_mixer_ = SureMixer();
  uint32_t history_ = 0;  // the three source bytes before this one
  uint8_t last_ = 0, last_nonzero_ = 0;
  uint32_t distance_ = 0;  // differences since the last non-zero one, at most 15
};

}  // namespace

Bytes EncodeDifferences(ByteSpan source, ByteSpan differences, DifferenceModel variant) {
  auto model = std::make_unique<Model>(variant);
  RangeEncoder coder;
  for (size_t i = 0; i < differences.size(); ++i) model->Code(coder, source[i], differences[i]);
  return coder.Finish();
}

struct DifferenceDecoder::State {
  std::unique_ptr<Model> model;
  RangeDecoder coder;
};

DifferenceDecoder::DifferenceDecoder() : state_(std::make_unique<State>()) {}
DifferenceDecoder::~DifferenceDecoder() = default;

void DifferenceDecoder::Reset(ByteSpan coded, DifferenceModel variant) {
  // One model for the decoder's life: allocating its tables per operation
  // would leave freed ones resident in the C library's heap.
  if (state_->model) {
    state_->model->Clear(variant);
  } else {
    state_->model = std::make_unique<Model>(variant);
  }
  state_->coder.Reset(coded);
}

bool DifferenceDecoder::Apply(std::span<uint8_t> source_and_target) {
  for (uint8_t& byte : source_and_target) {
    byte = static_cast<uint8_t>(byte + state_->model->Code(state_->coder, byte, 0));
  }
  return !state_->coder.overrun();
}

bool DifferenceDecoder::AtEnd() const { return state_->coder.AtEnd(); }

}  // namespace meridian
