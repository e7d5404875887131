// Retry delays after errors: exponential with "equal jitter", so a fleet that
// lost its server does not come back in lock step.
#pragma once

#include <algorithm>
#include <cstdint>

namespace meridian {

// The delay before retry number `attempt` (0 for the first retry): a ceiling
// of initial_ms × 2^attempt, capped at max_ms, of which half is fixed and half
// drawn from `random`. Always in [ceiling / 2, ceiling].
inline int64_t BackoffDelayMs(int attempt, int64_t initial_ms, int64_t max_ms, uint64_t random) {
  int64_t ceiling = initial_ms;
  for (int i = 0; i < attempt && ceiling < max_ms; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, max_ms);
  int64_t half = ceiling / 2;
  return ceiling - half + static_cast<int64_t>(random % static_cast<uint64_t>(half + 1));
}

}  // namespace meridian
