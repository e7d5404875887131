// The known-terminal registry: records polls and reports, bounded, and
// writes them to the store in batches (see terminal_registry.h).
#include "daemon/terminal_registry.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/state_record.h"

namespace meridian {

TerminalRegistry::TerminalRegistry(Store& store, const Clock& clock, TerminalRegistryOptions options)
    : store_(store), clock_(clock), o_(options) {}

Result<std::unique_ptr<TerminalRegistry>> TerminalRegistry::Open(Store& store, const Clock& clock,
                                                                 TerminalRegistryOptions options) {
  std::unique_ptr<TerminalRegistry> r(new TerminalRegistry(store, clock, options));
  MERIDIAN_RETURN_IF_ERROR(r->Load());
  return r;
}

Status TerminalRegistry::Load() {
  Result<std::vector<std::pair<std::string, std::string>>> kv = store_.ScanState("terminal/");
  if (!kv.ok()) return kv.status();
  std::lock_guard lock(mu_);
  for (const auto& [k, v] : *kv) {
    std::vector<std::string> parts = SplitStateKey(k, 4);
    nlohmann::json j = ParseStateRecord(v);
    if (parts.size() != 4 || !j.is_object()) return Status::Corruption(k + ": malformed terminal");
    if (count_ >= o_.terminals_max) break;
    KnownTerminal t{{parts[3], j.value("profile", ""), j.value("region", ""), j.value("current_version", "")},
                    j.value("last_seen_ms", int64_t{0}), j.value("failed_version", "")};
    ++versions_[{parts[1], parts[2]}][t.info.current_version];
    terminals_[{parts[1], parts[2]}][parts[3]] = std::move(t);
    ++count_;
  }
  return Status::Ok();
}

KnownTerminal* TerminalRegistry::RecordLocked(const ChannelKey& ck, const TerminalInfo& t) {
  auto& known = terminals_[ck];
  int64_t now = clock_.NowUnixMillis();
  auto it = known.find(t.id);
  if (it == known.end()) {
    if (count_ >= o_.terminals_max) return nullptr;  // the fleet view is full; targets still work
    ++count_;
    ++versions_[ck][t.current_version];
    it = known.emplace(t.id, KnownTerminal{t, 0, {}}).first;
  }
  KnownTerminal& k = it->second;
  bool changed = k.info.profile != t.profile || k.info.region != t.region ||
                 k.info.current_version != t.current_version;
  if (changed || now - k.last_seen_ms >= o_.touch_ms) dirty_.emplace(ck.first, ck.second, t.id);
  if (k.info.current_version != t.current_version) MoveVersionLocked(ck, k.info.current_version, t.current_version);
  k.info = t;
  k.last_seen_ms = now;
  return &k;
}

void TerminalRegistry::MoveVersionLocked(const ChannelKey& ck, const std::string& from, const std::string& to) {
  std::map<std::string, uint64_t>& counts = versions_[ck];
  if (auto it = counts.find(from); it != counts.end() && --it->second == 0) counts.erase(it);
  ++counts[to];
}

void TerminalRegistry::RecordPoll(std::string_view model, std::string_view channel, const TerminalInfo& terminal) {
  std::lock_guard lock(mu_);
  RecordLocked({std::string(model), std::string(channel)}, terminal);
}

void TerminalRegistry::RecordReport(std::string_view model, std::string_view channel, const TerminalReport& report) {
  std::lock_guard lock(mu_);
  ChannelKey ck{std::string(model), std::string(channel)};
  const KnownTerminal* was = nullptr;
  if (auto t = terminals_.find(ck); t != terminals_.end()) {
    if (auto k = t->second.find(report.terminal_id); k != t->second.end()) was = &k->second;
  }
  std::string running = report.outcome == ReportOutcome::kSuccess ? report.version
                        : was != nullptr                          ? was->info.current_version
                                                                  : std::string();
  KnownTerminal* k = RecordLocked(ck, {report.terminal_id, report.profile, report.region, running});
  if (k == nullptr) return;  // a full registry: not kept, as for a poll
  std::string failed = report.outcome == ReportOutcome::kFailure ? report.version : std::string();
  // A failure usually leaves what RecordLocked compares unchanged: marked
  // here, or the failed version would wait for the next touch to be written.
  if (k->failed_version != failed) dirty_.emplace(ck.first, ck.second, report.terminal_id);
  k->failed_version = std::move(failed);
}

void TerminalRegistry::Visit(std::string_view model, std::string_view channel,
                             const std::function<void(const KnownTerminal&)>& visit) const {
  std::lock_guard lock(mu_);
  auto it = terminals_.find({std::string(model), std::string(channel)});
  if (it == terminals_.end()) return;
  for (const auto& [id, t] : it->second) visit(t);
}

std::vector<TerminalInfo> TerminalRegistry::Latest(const std::vector<std::string>& ids) const {
  std::lock_guard lock(mu_);
  std::map<std::string, const KnownTerminal*> latest;
  for (const auto& [ck, known] : terminals_) {
    for (const std::string& id : ids) {
      auto it = known.find(id);
      if (it == known.end()) continue;
      const KnownTerminal*& best = latest[id];
      if (best == nullptr || it->second.last_seen_ms > best->last_seen_ms) best = &it->second;
    }
  }
  std::vector<TerminalInfo> out;
  for (const auto& [id, k] : latest) out.push_back(k->info);
  return out;
}

FleetVersions TerminalRegistry::Versions(size_t versions_max) const {
  std::lock_guard lock(mu_);
  FleetVersions out;
  size_t taken = 0;
  for (const auto& [ck, counts] : versions_) {
    ChannelVersions& channel = out.channels.emplace_back(ChannelVersions{ck.first, ck.second, {}});
    for (const auto& [version, terminals] : counts) {
      if (taken == versions_max) {
        out.truncated = true;
        if (channel.terminals_by_version.empty()) out.channels.pop_back();
        return out;
      }
      channel.terminals_by_version.emplace(version, terminals);
      ++taken;
    }
  }
  return out;
}

size_t TerminalRegistry::size() const {
  std::lock_guard lock(mu_);
  return count_;
}

void TerminalRegistry::Flush() {
  std::lock_guard flush(flush_mu_);
  std::vector<std::pair<std::string, std::optional<std::string>>> ops;
  {
    std::lock_guard lock(mu_);
    while (!dirty_.empty() && ops.size() < o_.flush_ops_max) {
      auto node = dirty_.extract(dirty_.begin());
      const auto& [model, channel, id] = node.value();
      const KnownTerminal& k = terminals_[{model, channel}][id];
      nlohmann::json j = {{"profile", k.info.profile},
                          {"region", k.info.region},
                          {"current_version", k.info.current_version},
                          {"last_seen_ms", k.last_seen_ms},
                          {"failed_version", k.failed_version}};
      ops.emplace_back(fmt::format("terminal/{}/{}/{}", model, channel, id), j.dump());
    }
  }
  if (!ops.empty()) (void)store_.WriteState(ops);  // see Flush in the header: no retry of its own
}

}  // namespace meridian
