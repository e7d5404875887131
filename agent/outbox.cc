// The on-disk report outbox (see outbox.h).
#include "agent/outbox.h"

#include <random>

#include <fmt/format.h>

namespace meridian {

Status Outbox::Init() const { return env_->CreateDirectories(dir_); }

std::vector<std::string> Outbox::Names() const {
  // No directory (never initialised, or unreadable) holds no reports.
  Result<std::vector<std::string>> all = env_->ListDirectory(dir_);
  std::vector<std::string> names;
  if (!all.ok()) return names;
  // WriteFileAtomic's temporaries end in ".tmp.<pid>.<n>": only finished reports count.
  for (std::string& n : *all) {
    if (n.ends_with(".json")) names.push_back(std::move(n));
  }
  return names;  // sorted, as ListDirectory gives them
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
  return env_->WriteFileAtomic(dir_ + "/" + name, body);
}

Result<std::vector<PendingReport>> Outbox::Oldest(size_t max) const {
  std::vector<PendingReport> out;
  for (const std::string& n : Names()) {
    if (out.size() >= max) break;
    std::string path = dir_ + "/" + n;
    Result<std::string> body = env_->ReadFile(path, kOutboxReportBytesMax);
    if (!body.ok()) return body.status();
    out.push_back({path, std::move(*body)});
  }
  return out;
}

Status Outbox::Remove(const PendingReport& report) const {
  Status removed = env_->RemoveFile(report.path);
  if (!removed.ok() && removed.code() != Status::Code::kNotFound) return removed;
  return env_->SyncDirectory(dir_);
}

}  // namespace meridian
