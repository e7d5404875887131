// How meridiand shares out its open-file limit: every connection is a
// descriptor, and so is every file RocksDB keeps open. Sized so that together
// they never exhaust the limit, leaving a reserve for the listener, logs, the
// WAL and MANIFEST, upstream connections and delta work.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace meridian {

inline constexpr uint64_t kDescriptorsReserved = 64;
// meridiand refuses to start under a smaller limit.
inline constexpr uint64_t kDescriptorsMin = 256;
// The fewest store files kept open when the limit allows them (an eighth of it).
inline constexpr uint64_t kStoreFilesMin = 256;

struct DescriptorBudget {
  uint64_t limit = 0;
  uint32_t connections_max = 0;
  int store_files_max = 0;
};

// Splits `limit` (at least kDescriptorsMin). The store gets twice the table
// and blob files it holds now (`store_files`: room to grow before RocksDB
// closes the least recently used ones and opens them again when read), at
// least kStoreFilesMin and a sixty-fourth of the limit (a new region filled
// with a 200 GiB model, some 800 blob files, keeps them open under 65,536),
// at most an eighth of the limit (32 to 4,096); connections get the rest but
// the reserve, at most `connections_wanted`.
DescriptorBudget SplitDescriptors(uint64_t limit, uint64_t store_files, uint32_t connections_wanted);

// Raises the soft open-file limit to the hard one, counts the table and blob
// files in `store_dir`, and splits the limit. FailedPrecondition when the
// limit is below kDescriptorsMin.
Result<DescriptorBudget> BudgetDescriptors(const std::string& store_dir, uint32_t connections_wanted);

}  // namespace meridian
