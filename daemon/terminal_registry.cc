// The known-terminal registry: records polls and reports in groups, bounded,
// and writes them to the store in batches (see terminal_registry.h).
#include "daemon/terminal_registry.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/state_record.h"

namespace meridian {

namespace {

// A group's key fields, by reference: compared on every poll, never copied.
auto KeyOf(TerminalGroup& g) {
  return std::tie(g.region, g.profile, g.current_version, g.previous_version, g.failed_version);
}

}  // namespace

TerminalRegistry::TerminalRegistry(Store& store, const Clock& clock, TerminalRegistryOptions options)
    : store_(store), clock_(clock), o_(options) {}

Result<std::unique_ptr<TerminalRegistry>> TerminalRegistry::Open(Store& store, const Clock& clock,
                                                                 TerminalRegistryOptions options) {
  std::unique_ptr<TerminalRegistry> r(new TerminalRegistry(store, clock, options));
  MERIDIAN_RETURN_IF_ERROR(r->Load());
  return r;
}

Status TerminalRegistry::Load() {
  std::lock_guard lock(mu_);
  return ForEachState(store_, "terminal/", [&](const std::string& k, const std::string& v) -> Status {
    if (count_ >= o_.terminals_max) return Status::Ok();  // the fleet view is full: the rest are skipped
    std::vector<std::string> parts = SplitStateKey(k, 4);
    nlohmann::json j = ParseStateRecord(v);
    if (parts.size() != 4 || !j.is_object()) return Status::Corruption(k + ": malformed terminal");
    GroupKey key{j.value("region", ""), j.value("profile", ""), j.value("current_version", ""),
                 j.value("previous_version", ""), j.value("failed_version", "")};
    bool changed = false;
    Channel* channel = ChannelLocked(parts[1], parts[2]);
    if (channel == nullptr) return Status::Ok();  // kept by an older daemon that held more channels
    Record* r = RecordLocked(*channel, parts[3], CohortPosition(parts[3]), key, &changed);
    if (r == nullptr) return Status::Ok();
    r->last_seen_ms = j.value("last_seen_ms", int64_t{0});
    r->last_report_ms = j.value("last_report_ms", int64_t{0});
    r->failures = j.value("failures", uint32_t{0});
    std::string outcome = j.value("last_report", "");
    r->last_report = outcome == "success" ? 0 : outcome == "failure" ? 1 : -1;
    return Status::Ok();
  });
}

TerminalRegistry::Channel* TerminalRegistry::ChannelLocked(std::string_view model, std::string_view channel) {
  ChannelKey key{std::string(model), std::string(channel)};
  auto it = channels_.find(key);
  if (it != channels_.end()) return &it->second;
  // The model's channels are adjacent in the map: count them from its first.
  size_t held = 0;
  for (auto m = channels_.lower_bound({key.first, ""}); m != channels_.end() && m->first.first == model; ++m) {
    if (++held >= o_.channels_per_model_max) return nullptr;
  }
  return &channels_[key];
}

TerminalRegistry::Record* TerminalRegistry::RecordLocked(Channel& channel, std::string_view id, uint16_t position,
                                                         const GroupKey& key, bool* changed) {
  auto it = channel.terminals.find(id);
  if (it == channel.terminals.end()) {
    if (count_ >= o_.terminals_max) return nullptr;  // the fleet view is full; targets still work
    ++count_;
    it = channel.terminals.emplace(std::string(id), Record{}).first;
    it->second.position = position;
  }
  Record& r = it->second;
  *changed = r.group == nullptr || KeyOf(*r.group) != key;
  if (!*changed) return &r;
  if (r.group != nullptr) {
    TerminalGroup& old = *r.group;
    old.positions.Add(r.position, -1);
    if (--old.terminals == 0) channel.groups.erase(GroupKey(KeyOf(old)));
  }
  auto [g, inserted] = channel.groups.try_emplace(key);
  if (inserted) KeyOf(g->second) = key;
  ++g->second.terminals;
  g->second.positions.Add(r.position, 1);
  r.group = &g->second;
  return &r;
}

void TerminalRegistry::RecordPoll(std::string_view model, std::string_view channel, const TerminalInfo& terminal) {
  uint16_t position = CohortPosition(terminal.id);  // hashed before the mutex is taken
  int64_t now = clock_.NowUnixMillis();
  std::lock_guard lock(mu_);
  Channel* channel_records = ChannelLocked(model, channel);
  if (channel_records == nullptr) return;
  Channel& c = *channel_records;
  std::string previous, failed;
  if (auto it = c.terminals.find(terminal.id); it != c.terminals.end()) {
    const TerminalGroup& g = *it->second.group;
    previous = g.current_version == terminal.current_version ? g.previous_version : g.current_version;
    failed = g.failed_version;
  }
  bool changed = false;
  Record* r = RecordLocked(c, terminal.id, position,
                           {terminal.region, terminal.profile, terminal.current_version, previous, failed}, &changed);
  if (r == nullptr) {
    if (c.terminals.empty()) channels_.erase({std::string(model), std::string(channel)});
    return;
  }
  if (changed || now - r->last_seen_ms >= o_.touch_ms) dirty_.emplace(model, channel, terminal.id);
  r->last_seen_ms = now;
}

void TerminalRegistry::RecordReport(std::string_view model, std::string_view channel, const TerminalReport& report) {
  uint16_t position = CohortPosition(report.terminal_id);
  int64_t now = clock_.NowUnixMillis();
  std::lock_guard lock(mu_);
  Channel* channel_records = ChannelLocked(model, channel);
  if (channel_records == nullptr) return;
  Channel& c = *channel_records;
  std::string running, previous;
  if (auto it = c.terminals.find(report.terminal_id); it != c.terminals.end()) {
    running = it->second.group->current_version;
    previous = it->second.group->previous_version;
  }
  bool success = report.outcome == ReportOutcome::kSuccess;
  if (success && report.version != running) {
    previous = running;
    running = report.version;
  }
  bool changed = false;
  Record* r = RecordLocked(c, report.terminal_id, position,
                           {report.region, report.profile, running, previous, success ? "" : report.version},
                           &changed);
  if (r == nullptr) {  // a full registry: not kept, as for a poll
    if (c.terminals.empty()) channels_.erase({std::string(model), std::string(channel)});
    return;
  }
  r->last_seen_ms = now;
  r->last_report_ms = now;
  r->last_report = static_cast<int8_t>(report.outcome);
  if (!success) ++r->failures;
  dirty_.emplace(model, channel, report.terminal_id);  // a report is rare: always written
}

void TerminalRegistry::VisitGroups(std::string_view model, std::string_view channel,
                                   const std::function<void(const TerminalGroup&)>& visit) const {
  std::lock_guard lock(mu_);
  auto it = channels_.find({std::string(model), std::string(channel)});
  if (it == channels_.end()) return;
  for (const auto& [key, group] : it->second.groups) visit(group);
}

TerminalRegistry::CohortCounts TerminalRegistry::Cohorts(const RolloutSpec& spec) const {
  CohortCounter counter(spec);  // its table of positions is built before the mutex is taken
  {
    std::lock_guard lock(mu_);  // groups and canaries from one moment
    auto it = channels_.find({spec.model, spec.channel});
    if (it != channels_.end()) {
      for (const auto& [key, group] : it->second.groups) counter.Add(group);
      for (const std::string& id : spec.canaries) {
        if (auto t = it->second.terminals.find(id); t != it->second.terminals.end()) {
          counter.AddCanary(*t->second.group, id);
        }
      }
    }
  }
  return {counter.Stages(), counter.StagesByRegion()};
}

KnownTerminal TerminalRegistry::Known(const std::string& id, const Record& r) {
  const TerminalGroup& g = *r.group;
  KnownTerminal k{{id, g.profile, g.region, g.current_version}, g.previous_version, g.failed_version,
                  r.last_seen_ms, r.last_report_ms, std::nullopt, r.failures};
  if (r.last_report >= 0) k.last_report = static_cast<ReportOutcome>(r.last_report);
  return k;
}

std::vector<TerminalInfo> TerminalRegistry::Latest(const std::vector<std::string>& ids) const {
  std::lock_guard lock(mu_);
  std::map<std::string, const Record*> latest;
  std::map<std::string, TerminalInfo> info;
  for (const auto& [ck, c] : channels_) {
    for (const std::string& id : ids) {
      auto it = c.terminals.find(id);
      if (it == c.terminals.end()) continue;
      const Record*& best = latest[id];
      if (best == nullptr || it->second.last_seen_ms > best->last_seen_ms) {
        best = &it->second;
        info[id] = Known(id, it->second).info;
      }
    }
  }
  std::vector<TerminalInfo> out;
  for (auto& [id, t] : info) out.push_back(std::move(t));
  return out;
}

FleetVersions TerminalRegistry::Versions(size_t versions_max) const {
  std::lock_guard lock(mu_);
  FleetVersions out;
  size_t taken = 0;
  for (const auto& [ck, c] : channels_) {
    ChannelVersions all{ck.first, ck.second, {}, {}};
    for (const auto& [key, g] : c.groups) {
      all.terminals_by_version[g.current_version] += g.terminals;
      all.by_region[g.region][g.current_version] += g.terminals;
    }
    // The first versions in version-text order, up to the limit.
    ChannelVersions& kept = out.channels.emplace_back(ChannelVersions{ck.first, ck.second, {}, {}});
    for (const auto& [version, terminals] : all.terminals_by_version) {
      if (taken == versions_max) {
        out.truncated = true;
        break;
      }
      kept.terminals_by_version.emplace(version, terminals);
      ++taken;
    }
    for (const auto& [region, counts] : all.by_region) {
      for (const auto& [version, terminals] : counts) {
        if (kept.terminals_by_version.contains(version)) kept.by_region[region][version] = terminals;
      }
    }
    if (kept.terminals_by_version.empty()) out.channels.pop_back();
    if (out.truncated) break;
  }
  return out;
}

FleetPage TerminalRegistry::Terminals(const FleetQuery& q, size_t scan_max) const {
  std::lock_guard lock(mu_);
  FleetPage page;
  auto c = channels_.find({q.model, q.channel});
  if (c == channels_.end()) return page;
  const auto& terminals = c->second.terminals;
  size_t scanned = 0;
  for (auto it = terminals.upper_bound(q.after); it != terminals.end(); ++it) {
    if (page.terminals.size() == q.limit || scanned == scan_max) {
      page.next = std::prev(it)->first;
      break;
    }
    ++scanned;
    const TerminalGroup& g = *it->second.group;
    if (!q.version.empty() && g.current_version != q.version) continue;
    if (!q.region.empty() && g.region != q.region) continue;
    if (q.state == FleetQuery::State::kFailed && g.failed_version.empty()) continue;
    if (q.state == FleetQuery::State::kOk && !g.failed_version.empty()) continue;
    page.terminals.push_back(Known(it->first, it->second));
  }
  return page;
}

size_t TerminalRegistry::size() const {
  std::lock_guard lock(mu_);
  return count_;
}

void TerminalRegistry::Flush() {
  std::lock_guard flush(flush_mu_);
  StateOps ops;
  {
    std::lock_guard lock(mu_);
    while (!dirty_.empty() && ops.size() < o_.flush_ops_max) {
      auto node = dirty_.extract(dirty_.begin());
      const auto& [model, channel, id] = node.value();
      const Channel& c = channels_.at({model, channel});
      KnownTerminal k = Known(id, c.terminals.find(id)->second);
      nlohmann::json j = nlohmann::json::object();
      auto put = [&j](const char* name, const std::string& value) {
        if (!value.empty()) j[name] = value;
      };
      put("region", k.info.region);
      put("profile", k.info.profile);
      put("current_version", k.info.current_version);
      put("previous_version", k.previous_version);
      put("failed_version", k.failed_version);
      j["last_seen_ms"] = k.last_seen_ms;
      if (k.last_report) {
        j["last_report_ms"] = k.last_report_ms;
        j["last_report"] = ReportOutcomeName(*k.last_report);
      }
      if (k.failures > 0) j["failures"] = k.failures;
      ops.emplace_back(fmt::format("terminal/{}/{}/{}", model, channel, id), j.dump());
    }
  }
  if (!ops.empty()) (void)store_.WriteState(ops);  // see Flush in the header: no retry of its own
}

}  // namespace meridian
