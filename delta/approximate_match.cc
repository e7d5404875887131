#include "delta/approximate_match.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "delta/delta.h"

namespace meridian {

namespace {

constexpr size_t kKeyBytes = 8;
constexpr unsigned kSlotBitsMin = 10;

unsigned SlotBits(uint64_t source_bytes, unsigned slot_bits_max) {
  return std::clamp<unsigned>(static_cast<unsigned>(std::bit_width(source_bytes)), kSlotBitsMin,
                              std::max(kSlotBitsMin, slot_bits_max));
}

uint64_t Key(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, kKeyBytes);
  return v * 0x9E3779B97F4A7C15ull;
}

}  // namespace

SourceHashIndex::SourceHashIndex(ByteSpan source, unsigned slot_bits_max) {
  bits_ = SlotBits(source.size(), slot_bits_max);
  slots_.assign(size_t{1} << bits_, UINT32_MAX);
  for (uint64_t i = 0; i + kKeyBytes <= source.size(); ++i) {
    slots_[Key(source.data() + i) >> (64 - bits_)] = static_cast<uint32_t>(i);
  }
}

uint64_t SourceHashIndex::MemoryBytes(uint64_t source_bytes, unsigned slot_bits_max) {
  return sizeof(uint32_t) << SlotBits(source_bytes, slot_bits_max);
}

uint32_t SourceHashIndex::Candidate(const uint8_t* p) const { return slots_[Key(p) >> (64 - bits_)]; }

ApproximateMatches MatchApproximately(ByteSpan source, ByteSpan target, uint64_t begin, uint64_t end,
                                      uint64_t source_start, const SourceHashIndex& index) {
  // bsdiff's scan, with signed positions as in the original, over
  // target[begin, end): `scan` looks for the next exact match (`pos`, `len`)
  // that the current alignment (`last_offset`) does not already explain
  // (`old_score`: its bytes equal along that alignment); then the entry since
  // `last_scan` is extended forward from the last match and the next match
  // backward, as far as more than half their bytes agree.
  const int64_t old_size = static_cast<int64_t>(source.size()), new_end = static_cast<int64_t>(end);
  const uint8_t* old = source.data();
  const uint8_t* now = target.data();
  auto equal_at = [&](int64_t old_pos, int64_t new_pos) {
    return old_pos >= 0 && old_pos < old_size && old[old_pos] == now[new_pos];
  };
  auto search = [&](int64_t at, int64_t& pos) -> int64_t {
    if (at + static_cast<int64_t>(kKeyBytes) > new_end) return 0;
    const uint32_t c = index.Candidate(now + at);
    if (c == UINT32_MAX) return 0;
    int64_t n = 0;
    while (c + n < old_size && at + n < new_end && old[c + n] == now[at + n]) ++n;
    pos = c;
    return n;
  };

  ApproximateMatches out;
  int64_t scan = static_cast<int64_t>(begin), len = 0, pos = 0;
  int64_t last_scan = scan, last_pos = static_cast<int64_t>(source_start), last_offset = last_pos - last_scan;
  while (scan < new_end) {
    int64_t old_score = 0;
    int64_t scsc = scan += len;
    for (; scan < new_end; ++scan) {
      len = search(scan, pos);
      for (; scsc < scan + len; ++scsc) old_score += equal_at(scsc + last_offset, scsc);
      if ((len == old_score && len != 0) || len > old_score + 8) break;
      old_score -= equal_at(scan + last_offset, scan);
    }
    if (len == old_score && scan != new_end) continue;

    int64_t len_forward = 0;
    for (int64_t i = 0, s = 0, best = 0; last_scan + i < scan && last_pos + i < old_size;) {
      s += old[last_pos + i] == now[last_scan + i];
      ++i;
      if (s * 2 - i > best * 2 - len_forward) best = s, len_forward = i;
    }
    int64_t len_back = 0;
    if (scan < new_end) {
      for (int64_t i = 1, s = 0, best = 0; scan >= last_scan + i && pos >= i; ++i) {
        s += old[pos - i] == now[scan - i];
        if (s * 2 - i > best * 2 - len_back) best = s, len_back = i;
      }
    }
    if (last_scan + len_forward > scan - len_back) {
      // The two extensions overlap: split where the bytes agree best.
      const int64_t overlap = (last_scan + len_forward) - (scan - len_back);
      int64_t s = 0, best = 0, keep = 0;
      for (int64_t i = 0; i < overlap; ++i) {
        s += now[last_scan + len_forward - overlap + i] == old[last_pos + len_forward - overlap + i];
        s -= now[scan - len_back + i] == old[pos - len_back + i];
        if (s > best) best = s, keep = i + 1;
      }
      len_forward += keep - overlap;
      len_back -= keep;
    }
    for (int64_t i = 0; i < len_forward; ++i) {
      out.diff.push_back(static_cast<uint8_t>(now[last_scan + i] - old[last_pos + i]));
    }
    out.diff_source.insert(out.diff_source.end(), old + last_pos, old + last_pos + len_forward);
    const int64_t extra_begin = last_scan + len_forward, extra_end = scan - len_back;
    out.extra.insert(out.extra.end(), now + extra_begin, now + extra_end);
    // The last entry seeks nowhere: a decoder checks every seek.
    const int64_t seek = scan < new_end ? (pos - len_back) - (last_pos + len_forward) : 0;
    delta_format::PutVarint(out.control, static_cast<uint64_t>(len_forward));
    delta_format::PutVarint(out.control, static_cast<uint64_t>(extra_end - extra_begin));
    delta_format::PutVarint(out.control, (static_cast<uint64_t>(seek) << 1) ^ static_cast<uint64_t>(seek >> 63));
    last_scan = scan - len_back;
    last_pos = pos - len_back;
    last_offset = pos - scan;
  }
  return out;
}

}  // namespace meridian
