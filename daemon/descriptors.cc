#include "daemon/descriptors.h"

#include <sys/resource.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

namespace meridian {

DescriptorBudget SplitDescriptors(uint64_t limit, uint64_t store_files, uint32_t connections_wanted) {
  DescriptorBudget b;
  b.limit = limit;
  const uint64_t share_max = std::clamp<uint64_t>(limit / 8, 32, 4096);
  const uint64_t wanted = std::max({kStoreFilesMin, limit / 64, 2 * store_files});
  b.store_files_max = static_cast<int>(std::min(share_max, wanted));
  b.connections_max = static_cast<uint32_t>(
      std::min<uint64_t>(limit - static_cast<uint64_t>(b.store_files_max) - kDescriptorsReserved, connections_wanted));
  return b;
}

Result<DescriptorBudget> BudgetDescriptors(const std::string& store_dir, uint32_t connections_wanted) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return Status::IOError("getrlimit(RLIMIT_NOFILE) failed");
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  const uint64_t limit = rl.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : rl.rlim_cur;
  if (limit < kDescriptorsMin) {
    return Status::FailedPrecondition(fmt::format(
        "the open-file limit is {}; meridiand needs at least {} (raise ulimit -n, or LimitNOFILE in its unit)", limit,
        kDescriptorsMin));
  }
  // A store that cannot be listed is reported when it is opened, next.
  uint64_t files = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(store_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::filesystem::path extension = it->path().extension();
    files += extension == ".sst" || extension == ".blob";
  }
  return SplitDescriptors(limit, files, connections_wanted);
}

}  // namespace meridian
