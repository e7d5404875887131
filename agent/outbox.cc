// The on-disk report outbox (see outbox.h).
#include "agent/outbox.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <random>

#include <fmt/format.h>

#include "base/file.h"

namespace meridian {

Status Outbox::Init() const { return CreateDirectories(dir_); }

std::vector<std::string> Outbox::Names() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    std::string n = e.path().filename().string();
    // WriteFileAtomic's temporaries end in ".tmp.<pid>.<n>": only finished reports count.
    if (n.ends_with(".json")) names.push_back(std::move(n));
  }
  std::sort(names.begin(), names.end());
  return names;
}

size_t Outbox::Count() const { return Names().size(); }

Status Outbox::Add(const std::string& body, int64_t now_ms) {
  if (body.size() > kOutboxReportBytesMax) return Status::ResourceExhausted("report too large");
  if (Count() >= kOutboxReportsMax) {
    return Status::ResourceExhausted(fmt::format("{} reports are waiting to be sent", kOutboxReportsMax));
  }
  // Time first so that names sort in the order reports were made; the random
  // part keeps two reports of one millisecond apart.
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::string name = fmt::format("{:015d}-{:016x}.json", now_ms, rng());
  return WriteFileAtomic(dir_ + "/" + name, body);
}

Result<std::vector<PendingReport>> Outbox::Oldest(size_t max) const {
  std::vector<PendingReport> out;
  for (const std::string& n : Names()) {
    if (out.size() >= max) break;
    std::string path = dir_ + "/" + n;
    Result<std::string> body = ReadFileToString(path, kOutboxReportBytesMax);
    if (!body.ok()) return body.status();
    out.push_back({path, std::move(*body)});
  }
  return out;
}

Status Outbox::Remove(const PendingReport& report) const {
  if (::unlink(report.path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + report.path, errno);
  return SyncDirectory(dir_);
}

}  // namespace meridian
