// The rollout engine: rollout/ state machines and their report tallies,
// persisted in the store's state space; each change is signed into its
// channel's state by the channel signer (see rollouts.h).
#include "daemon/rollouts.h"

#include <algorithm>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/digest.h"
#include "daemon/state_record.h"
#include "manifest/manifest.h"
#include "store/group_commit.h"

namespace meridian {

namespace {

using ChannelKey = ChannelSigner::ModelChannel;

struct Entry {
  uint64_t seq;  // creation order: newer rollouts of a channel decide first
  Rollout rollout;
  ReportTally tally;
  // Reports on the previous version (Rollout::AdmitBaseline): what the health
  // rules compare the target with. Soft state, in memory only: agents report
  // their health every health_interval_ms, so a restart refills it.
  ReportTally baseline = {};
  // Known terminals in each stage's cohort, as Tick last counted them; empty
  // before the first count.
  std::vector<uint64_t> cohort_terminals = {};
  // The health rules on the current stage as Tick last judged them.
  std::optional<HealthJudgement> health = {};
};

// The known terminals stage `stage` adds to the cohort, from per-stage counts.
std::optional<uint64_t> StageTerminals(const std::vector<uint64_t>& cohort_terminals, uint32_t stage) {
  if (stage >= cohort_terminals.size()) return std::nullopt;
  return cohort_terminals[stage] - (stage > 0 ? cohort_terminals[stage - 1] : 0);
}

std::vector<uint64_t> TerminalsOf(const std::vector<StageCohort>& cohorts) {
  std::vector<uint64_t> out;
  for (const StageCohort& c : cohorts) out.push_back(c.terminals);
  return out;
}

std::string EntryJson(const Entry& e) {
  return fmt::format("{{\"seq\":{},\"rollout\":{}}}", e.seq, RolloutToJson(e.rollout));
}

bool Covers(const std::vector<std::string>& outer, const std::vector<std::string>& inner) {
  if (outer.empty()) return true;
  if (inner.empty()) return false;
  return std::all_of(inner.begin(), inner.end(),
                     [&](const std::string& x) { return std::find(outer.begin(), outer.end(), x) != outer.end(); });
}

bool CompletedEverywhere(const Rollout& r) {
  const RolloutSpec& s = r.spec();
  return r.state().phase == RolloutPhase::kCompleted && s.stages_percent.back() == 100 && s.regions.empty() &&
         s.profiles.empty();
}

}  // namespace

struct Rollouts::Impl {
  Store& store;
  const Clock& clock;
  RolloutsOptions o;
  // Each locks for itself; set once by Open.
  std::unique_ptr<ChannelSigner> signer;
  std::unique_ptr<TerminalRegistry> terminals;
  // Counted reports are queued under `mu` and waited for after it, so that
  // reports arriving together share one synced write.
  GroupCommit report_writes;

  mutable std::mutex mu;  // guards the members below
  std::map<std::string, Entry, std::less<>> rollouts;
  uint64_t next_seq = 1;
  std::map<std::pair<std::string, std::string>, VersionRef> refs;  // (model, version): versions are immutable

  Impl(Store& s, const Clock& c, RolloutsOptions opts) : store(s), clock(c), o(opts), report_writes(s) {}

  Result<VersionRef> Ref(const std::string& model, const std::string& version) {
    auto it = refs.find({model, version});
    if (it != refs.end()) return it->second;
    Result<std::string> env = store.GetEnvelope(model, version);
    if (!env.ok()) {
      if (env.status().code() == Status::Code::kNotFound) {
        return Status::NotFound(fmt::format("model '{}' version '{}' is not published", model, version));
      }
      return env.status();
    }
    Result<std::shared_ptr<const Manifest>> m = store.GetManifest(model, version);
    if (!m.ok()) return m.status();
    VersionRef ref{Digest::Of(*env), (*m)->digest, (*m)->size};
    refs.emplace(std::make_pair(model, version), ref);
    return ref;
  }

  std::vector<Entry*> ChannelEntries(std::string_view model, std::string_view channel) {
    std::vector<Entry*> out;
    for (auto& [id, e] : rollouts) {
      if (e.rollout.spec().model == model && e.rollout.spec().channel == channel) out.push_back(&e);
    }
    std::sort(out.begin(), out.end(), [](const Entry* a, const Entry* b) { return a->seq > b->seq; });
    return out;
  }

  // The version the channel holds for the regions of `probe`: what a new
  // rollout there moves away from (and what its rollback returns to).
  std::string HeldVersion(const RolloutSpec& probe) {
    for (const Entry* e : ChannelEntries(probe.model, probe.channel)) {
      if (!Overlaps(e->rollout.spec(), probe)) continue;
      const Rollout& r = e->rollout;
      bool moved = r.state().phase == RolloutPhase::kCompleted && r.spec().stages_percent.back() == 100;
      return moved ? r.spec().target_version : r.spec().previous_version;
    }
    return signer->Pointer(probe.model, probe.channel);
  }

  // Has the signer sign the channel's next state, made from the rollouts in
  // memory, and write it together with `ops` in one synced batch.
  Status Publish(const ChannelKey& ck, const std::string& pointer, ChannelSigner::StateOps ops) {
    MERIDIAN_RETURN_IF_ERROR(signer->CanSign());
    // Every report a gate may have counted is stored before the change it led to.
    report_writes.Flush();
    ChannelState s;
    s.model = ck.first;
    s.channel = ck.second;
    s.version = pointer;
    // Newest first; a rollout whose regions and profiles a newer kept one
    // covers can never decide for any terminal, so it is left out.
    for (const Entry* e : ChannelEntries(ck.first, ck.second)) {
      if (s.rollouts.size() >= kChannelRolloutsMax) break;
      const RolloutSpec& spec = e->rollout.spec();
      bool covered = std::any_of(s.rollouts.begin(), s.rollouts.end(), [&](const ChannelRollout& k) {
        return Covers(k.spec.regions, spec.regions) && Covers(k.spec.profiles, spec.profiles);
      });
      if (!covered) s.rollouts.push_back({spec, e->rollout.state()});
    }
    std::vector<std::string> named = {pointer};
    for (const ChannelRollout& r : s.rollouts) {
      named.push_back(r.spec.target_version);
      named.push_back(r.spec.previous_version);
    }
    for (const std::string& v : named) {
      if (v.empty() || s.versions.count(v)) continue;
      Result<VersionRef> ref = Ref(ck.first, v);
      if (!ref.ok()) return ref.status();
      s.versions.emplace(v, *ref);
    }
    return signer->Publish(std::move(s), std::move(ops));
  }

  // Makes the change already applied to `e` durable with its channel's new
  // signed state; restores `before` when that fails.
  Status Commit(Entry& e, const Rollout& before) {
    const RolloutSpec& spec = e.rollout.spec();
    std::string pointer = signer->Pointer(spec.model, spec.channel);
    if (CompletedEverywhere(e.rollout)) pointer = spec.target_version;
    Status st = Publish({spec.model, spec.channel}, pointer, {{"rollout/" + spec.id, EntryJson(e)}});
    if (!st.ok()) e.rollout = before;
    return st;
  }

  // What the gates of `e`'s current stage know besides its reports.
  // `cohort_terminals`: known terminals per stage (empty: not counted).
  GateContext Context(const Entry& e, const std::vector<uint64_t>& cohort_terminals) const {
    const RolloutState& state = e.rollout.state();
    GateContext context = GateContext::At(clock.NowUnixMillis());
    context.stage_terminals = StageTerminals(cohort_terminals, state.stage);
    context.health = e.health;
    Result<std::optional<WindowStatus>> window = StageWindow(e.rollout.spec(), state.stage, context.now_ms);
    if (window.ok()) context.window = *window;
    else context.window_problem = window.status().message();  // checked at start; the tz database changed since
    return context;
  }

  // Runs the gates of one rollout; true when they changed its state.
  Result<bool> Gate(Entry& e) {
    Rollout before = e.rollout;
    GateContext context = Context(e, e.cohort_terminals);
    const RolloutState& state = e.rollout.state();
    if (!e.rollout.spec().health_rules.empty() &&
        EvaluateGates(e.rollout.spec(), state, e.tally.Stats(state.stage, state.gate_since_ms), context).verdict ==
            GateVerdict::kPromote) {
      // Tick judges health once a second; a promote is never made on a judgement older than its reports.
      e.health = context.health = JudgeStageHealth(e.rollout.spec(), state, e.tally, e.baseline);
    }
    Result<GateDecision> d = e.rollout.Tick(e.tally, context);
    if (!d.ok()) return d.status();
    if (d->verdict == GateVerdict::kNone) return false;
    MERIDIAN_RETURN_IF_ERROR(Commit(e, before));
    if (o.on_gate_change) o.on_gate_change(e.rollout.spec(), e.rollout.events().back());
    return true;
  }

  Status LoadRollouts() {
    Result<StateRecords> kv = store.ScanState("rollout/");
    if (!kv.ok()) return kv.status();
    for (const auto& [k, v] : *kv) {
      nlohmann::json j = ParseStateRecord(v);
      if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned() ||
          !j.contains("rollout")) {
        return Status::Corruption(k + ": malformed rollout record");
      }
      Result<Rollout> r = RolloutFromJson(j["rollout"].dump());
      if (!r.ok()) return Status::Corruption(k + ": " + r.status().message());
      uint64_t seq = j["seq"].get<uint64_t>();
      next_seq = std::max(next_seq, seq + 1);
      std::string id = r->spec().id;
      rollouts.emplace(id, Entry{seq, std::move(*r), {}});
    }
    return Status::Ok();
  }

  // Into the tallies of the rollouts loaded before.
  Status LoadReports() {
    return ForEachState(store, "report/", [&](const std::string& k, const std::string& v) {
      std::vector<std::string> parts = SplitStateKey(k, 4);
      Result<TerminalReport> r = ReportFromJson(v);
      auto it = parts.size() == 4 ? rollouts.find(parts[1]) : rollouts.end();
      if (!r.ok() || it == rollouts.end()) return Status::Corruption(k + ": malformed report record");
      return it->second.tally.Add(*r);
    });
  }

  // A version whose manifest lists regions may only be rolled out there:
  // every region the spec names must be listed, and it must name some.
  Status CheckResidency(const RolloutSpec& spec) {
    Result<std::shared_ptr<const Manifest>> target = store.GetManifest(spec.model, spec.target_version);
    if (!target.ok()) return target.status();
    const std::vector<std::string>& allowed = (*target)->regions;
    if (allowed.empty()) return Status::Ok();
    std::string list = fmt::format("{}", fmt::join(allowed, ","));
    if (spec.regions.empty()) {
      return Status::InvalidArgument(fmt::format(
          "{} {} may only be stored and served in regions {}: name them (regions)", spec.model, spec.target_version, list));
    }
    for (const std::string& r : spec.regions) {
      if (std::find(allowed.begin(), allowed.end(), r) == allowed.end()) {
        return Status::InvalidArgument(fmt::format("{} {} may not be served in region '{}' (its manifest allows {})",
                                                   spec.model, spec.target_version, r, list));
      }
    }
    return Status::Ok();
  }

  // Start's checks of a spec whose id and previous version are filled in;
  // `canaries`: what its canaries last declared (TerminalRegistry::Latest).
  Status CheckStartable(const RolloutSpec& spec, const std::vector<TerminalInfo>& canaries) const {
    MERIDIAN_RETURN_IF_ERROR(ValidateRolloutSpec(spec));
    for (const auto& [region, zone] : spec.time_zones) {
      if (Status st = CheckTimeZone(zone); !st.ok()) return Status::InvalidArgument("time_zones: " + st.message());
    }
    return CheckCanariesEligible(spec, canaries);
  }

  // The daemon's configured zones, for the regions a windowed spec names no zone for.
  void FillTimeZones(RolloutSpec& spec) const {
    if (spec.window.empty()) return;
    for (const auto& [region, zone] : o.time_zones) spec.time_zones.try_emplace(region, zone);
  }
};

std::string DescribeRolloutEvent(const RolloutEvent& e) {
  std::string line = e.before.empty() ? e.after : e.before + " -> " + e.after;
  if (!e.reason.empty()) line += "; " + e.reason;
  return line;
}

Rollouts::Rollouts(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Rollouts::~Rollouts() = default;

Result<std::unique_ptr<Rollouts>> Rollouts::Open(Store& store, std::optional<SecretKey> online_key, const Clock& clock,
                                                 RolloutsOptions options) {
  auto impl = std::make_unique<Impl>(store, clock, options);
  // Reports go into the tallies of their rollouts, so rollouts load first.
  MERIDIAN_RETURN_IF_ERROR(impl->LoadRollouts());
  Result<std::unique_ptr<ChannelSigner>> signer = ChannelSigner::Open(
      store, std::move(online_key), clock,
      ChannelSignerOptions{.state_expiry_ms = options.state_expiry_ms, .state_refresh_ms = options.state_refresh_ms});
  if (!signer.ok()) return signer.status();
  impl->signer = std::move(*signer);
  MERIDIAN_RETURN_IF_ERROR(impl->LoadReports());
  Result<std::unique_ptr<TerminalRegistry>> terminals = TerminalRegistry::Open(
      store, clock,
      TerminalRegistryOptions{.terminals_max = options.terminals_max, .touch_ms = options.terminal_touch_ms,
                              .flush_ops_max = options.terminal_flush_ops_max});
  if (!terminals.ok()) return terminals.status();
  impl->terminals = std::move(*terminals);
  return std::unique_ptr<Rollouts>(new Rollouts(std::move(impl)));
}

Result<Rollout> Rollouts::Start(RolloutSpec spec, std::string_view actor, std::string_view reason) {
  // Asked of the registry before the engine's mutex is taken: no nesting.
  std::vector<TerminalInfo> canaries = impl_->terminals->Latest(spec.canaries);
  Result<Rollout> out = Status::Unavailable("not started");
  {
    std::lock_guard lock(impl_->mu);
    Impl& m = *impl_;
    if (m.rollouts.size() >= m.o.rollouts_max) {
      return Status::ResourceExhausted(fmt::format("the daemon holds {} rollouts already", m.o.rollouts_max));
    }
    if (spec.id.empty()) {
      for (uint64_t n = m.next_seq; spec.id.empty() || m.rollouts.count(spec.id); ++n) spec.id = fmt::format("r{}", n);
    }
    spec.previous_version = m.HeldVersion(spec);
    m.FillTimeZones(spec);
    MERIDIAN_RETURN_IF_ERROR(m.CheckStartable(spec, canaries));
    if (Result<VersionRef> ref = m.Ref(spec.model, spec.target_version); !ref.ok()) return ref.status();
    MERIDIAN_RETURN_IF_ERROR(m.CheckResidency(spec));
    std::vector<const Rollout*> existing;
    for (const auto& [id, e] : m.rollouts) existing.push_back(&e.rollout);
    MERIDIAN_RETURN_IF_ERROR(CheckNoConflict(existing, spec));
    Result<Rollout> r = Rollout::Start(spec, m.clock.NowUnixMillis(), actor, reason);
    if (!r.ok()) return r.status();
    Entry& e = m.rollouts.emplace(spec.id, Entry{m.next_seq++, *r, {}}).first->second;
    if (Status st = m.Commit(e, *r); !st.ok()) {
      m.rollouts.erase(spec.id);
      return st;
    }
    out = e.rollout;
  }
  notifier_.NotifyAll();
  return out;
}

Result<Rollout> Rollouts::Act(std::string_view id, RolloutAction action, std::string_view actor,
                              std::string_view reason) {
  Result<Rollout> out = Status::Unavailable("not applied");
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->rollouts.find(id);
    if (it == impl_->rollouts.end()) return Status::NotFound(fmt::format("no rollout '{}'", id));
    Entry& e = it->second;
    Rollout before = e.rollout;
    MERIDIAN_RETURN_IF_ERROR(e.rollout.Apply(action, impl_->clock.NowUnixMillis(), actor, reason));
    MERIDIAN_RETURN_IF_ERROR(impl_->Commit(e, before));
    out = e.rollout;
  }
  notifier_.NotifyAll();
  return out;
}

Result<Rollout> Rollouts::Get(std::string_view id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->rollouts.find(id);
  if (it == impl_->rollouts.end()) return Status::NotFound(fmt::format("no rollout '{}'", id));
  return it->second.rollout;
}

std::vector<Rollout> Rollouts::List() const {
  std::lock_guard lock(impl_->mu);
  std::vector<const Entry*> entries;
  for (const auto& [id, e] : impl_->rollouts) entries.push_back(&e);
  std::sort(entries.begin(), entries.end(), [](const Entry* a, const Entry* b) { return a->seq < b->seq; });
  std::vector<Rollout> out;
  for (const Entry* e : entries) out.push_back(e->rollout);
  return out;
}

Result<std::vector<StageRow>> Rollouts::Stages(std::string_view id) const {
  Result<Rollout> got = Get(id);
  if (!got.ok()) return got.status();
  // Counted with the engine's mutex released; the spec never changes.
  std::vector<StageCohort> cohorts = impl_->terminals->Cohorts(got->spec()).all;
  std::lock_guard lock(impl_->mu);
  const Entry& e = impl_->rollouts.find(id)->second;  // rollouts are never removed
  const RolloutSpec& spec = e.rollout.spec();
  const RolloutState& state = e.rollout.state();
  uint32_t stages_told = 0;  // stages whose cohort is told the target
  if (e.rollout.active()) stages_told = state.stage + 1;
  if (state.phase == RolloutPhase::kCompleted) stages_told = StageCount(spec);
  std::vector<StageRow> rows;
  for (uint32_t k = 0; k < StageCount(spec); ++k) {
    StageRow row;
    row.percent = StagePercent(spec, k);
    row.region = StageRegion(spec, k);
    StageStats stats = e.tally.Stats(k);
    row.failed = stats.failed;
    row.healthy = stats.succeeded;
    row.eligible = cohorts[k].terminals;
    row.updated = cohorts[k].updated;
    if (k < stages_told) row.downloading = cohorts[k].terminals - cohorts[k].updated - cohorts[k].failed;
    bool done = state.phase == RolloutPhase::kCompleted;
    if (k < state.stage || done) row.gate = "passed";
    else if (k > state.stage) row.gate = "pending";
    else if (state.phase == RolloutPhase::kRunning) {
      row.gate = EvaluateGates(spec, state, e.tally.Stats(k, state.gate_since_ms),
                               impl_->Context(e, TerminalsOf(cohorts))).reason;
    } else {
      row.gate = std::string(PhaseName(state.phase));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<std::vector<RegionRow>> Rollouts::Regions(std::string_view id) const {
  RolloutSpec spec;
  RolloutState state;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->rollouts.find(id);
    if (it == impl_->rollouts.end()) return Status::NotFound(fmt::format("no rollout '{}'", id));
    spec = it->second.rollout.spec();
    state = it->second.rollout.state();
  }
  std::set<std::string> seen;                 // regions of the channel's known terminals
  std::map<std::string, RegionRow> counted;  // by region: terminals the rollout covers
  impl_->terminals->VisitGroups(spec.model, spec.channel, [&](const TerminalGroup& g) {
    seen.insert(g.region);
    if (!IsEligible(spec, {"", g.profile, g.region, g.current_version})) return;
    RegionRow& c = counted[g.region];
    c.terminals += g.terminals;
    if (g.current_version == spec.target_version) c.updated += g.terminals;
    if (g.failed_version == spec.target_version) c.failed += g.terminals;
  });
  std::vector<std::string> regions = spec.regions;
  if (regions.empty()) regions.assign(seen.begin(), seen.end());
  size_t per_wave = spec.stages_percent.size();
  std::vector<RegionRow> rows;
  for (size_t i = 0; i < regions.size(); ++i) {
    RegionRow row = counted[regions[i]];
    row.region = regions[i];
    row.wave = std::string(PhaseName(state.phase));
    if (spec.waves && state.phase != RolloutPhase::kRolledBack) {
      size_t wave = state.stage / per_wave;
      if (i < wave || state.phase == RolloutPhase::kCompleted) row.wave = "done";
      else if (i > wave) row.wave = "waiting";
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<RolloutPlan> Rollouts::Plan(
    RolloutSpec spec, const std::function<uint64_t(const std::string& current_version)>& download_bytes) const {
  if (spec.id.empty()) spec.id = "plan";
  std::vector<TerminalInfo> canaries = impl_->terminals->Latest(spec.canaries);
  uint64_t target_bytes = 0;
  {
    std::lock_guard lock(impl_->mu);
    spec.previous_version = impl_->HeldVersion(spec);
    impl_->FillTimeZones(spec);
    MERIDIAN_RETURN_IF_ERROR(impl_->CheckStartable(spec, canaries));
    Result<VersionRef> ref = impl_->Ref(spec.model, spec.target_version);
    if (!ref.ok()) return ref.status();
    target_bytes = ref->size;
  }
  // download_bytes is asked once per version the cohorts' terminals run, in
  // the order of the versions, with no mutex held.
  RolloutPlan plan;
  plan.target_bytes = target_bytes;
  TerminalRegistry::CohortCounts cohorts = impl_->terminals->Cohorts(spec);
  std::map<std::string, uint64_t> bytes_from;  // current version -> bytes to download
  for (const StageCohort& c : cohorts.all) {
    for (const auto& [v, n] : c.moving) bytes_from.try_emplace(v, 0);
  }
  for (auto& [v, bytes] : bytes_from) bytes = download_bytes(v);
  auto bytes = [&](const StageCohort& c) {
    std::pair<uint64_t, uint64_t> full_and_delta{0, 0};
    for (const auto& [v, n] : c.moving) {
      full_and_delta.first += n * target_bytes;
      full_and_delta.second += n * bytes_from[v];
    }
    return full_and_delta;
  };
  for (const StageCohort& c : cohorts.all) {
    auto [full, delta] = bytes(c);
    plan.eligible.push_back(c.terminals);
    plan.full_download_bytes.push_back(full);
    plan.delta_download_bytes.push_back(delta);
  }
  // Per region, the whole rollout: its last stage's cohort.
  for (const auto& [region, stages] : cohorts.by_region) {
    if (stages.empty() || stages.back().terminals == 0) continue;
    auto [full, delta] = bytes(stages.back());
    plan.regions.push_back({region, stages.back().terminals, full, delta});
  }
  plan.spec = std::move(spec);
  return plan;
}

Result<TargetAnswer> Rollouts::Target(std::string_view model, std::string_view channel, const TerminalInfo& terminal) {
  Result<std::shared_ptr<const SignedChannel>> held = impl_->signer->Current(model, channel);
  if (!held.ok()) {
    // Before the channel's first rollout: a terminal of a published model
    // still counts for `rollout plan` (and the first rollout's cohorts).
    if (held.status().code() == Status::Code::kNotFound && impl_->store.ListVersions(model).ok()) {
      impl_->terminals->RecordPoll(model, channel, terminal);
    }
    return held.status();
  }
  impl_->terminals->RecordPoll(model, channel, terminal);
  const SignedChannel& c = **held;
  return TargetAnswer{c.state.state_version, c.envelope_json, ResolveChannelTarget(c.state, terminal)};
}

Result<bool> Rollouts::Report(std::string_view rollout_id, std::string_view model, std::string_view channel,
                              TerminalReport report, bool periodic) {
  report.received_ms = impl_->clock.NowUnixMillis();
  report.stage = 0;
  MERIDIAN_RETURN_IF_ERROR(ValidateReport(report));
  impl_->terminals->RecordReport(model, channel, report);
  GroupCommit::Ticket stored;
  Result<bool> gated = false;
  {
    std::lock_guard lock(impl_->mu);
    Impl& m = *impl_;
    Entry* e = nullptr;
    if (!rollout_id.empty()) {
      auto it = m.rollouts.find(rollout_id);
      if (it != m.rollouts.end() && it->second.rollout.spec().model == model) e = &it->second;
    } else {
      TerminalInfo t{report.terminal_id, report.profile, report.region, report.version};
      for (Entry* c : m.ChannelEntries(model, channel)) {
        if (c->rollout.active() && IsEligible(c->rollout.spec(), t)) {
          e = c;
          break;
        }
      }
    }
    if (e == nullptr) return false;
    if (!e->rollout.Admit(&report)) {
      // Not the target's: the health rules' baseline when it is about the
      // previous version (judged at the next Tick), else nothing.
      if (e->rollout.AdmitBaseline(&report)) (void)e->baseline.Add(report);  // full: the baseline stays as it is
      return false;
    }
    const TerminalReport* counted = e->tally.Latest(report.stage, report.terminal_id);
    bool unchanged = periodic && counted != nullptr && counted->outcome == report.outcome;
    // Into the tally first: a report over the tally's limit must not be stored,
    // or the next start would refuse to load it.
    MERIDIAN_RETURN_IF_ERROR(e->tally.Add(report));
    if (unchanged) return true;  // fresher numbers in memory; the stored verdict stands
    std::string key = fmt::format("report/{}/{}/{}", e->rollout.spec().id, report.stage, report.terminal_id);
    stored = m.report_writes.Enqueue({{key, ReportToJson(report)}});
    gated = m.Gate(*e);
  }
  // Answered once stored. A change the gates made stands (and wakes the
  // long polls) even when the report's own write failed.
  Status written = impl_->report_writes.Wait(stored);
  if (gated.ok() && *gated) notifier_.NotifyAll();
  MERIDIAN_RETURN_IF_ERROR(written);
  if (!gated.ok()) return gated.status();
  return true;
}

std::vector<Rollouts::ChannelSnapshot> Rollouts::Channels() const { return impl_->signer->Channels(); }

Result<bool> Rollouts::Adopt(const ChannelState& state, std::string envelope_json) {
  Result<bool> adopted = impl_->signer->Adopt(state, std::move(envelope_json));
  if (adopted.ok() && *adopted) notifier_.NotifyAll();
  return adopted;
}

size_t Rollouts::KnownTerminals() const { return impl_->terminals->size(); }

FleetVersions Rollouts::KnownVersions(size_t versions_max) const { return impl_->terminals->Versions(versions_max); }

FleetPage Rollouts::KnownTerminalPage(const FleetQuery& query) const { return impl_->terminals->Terminals(query); }

void Rollouts::Tick() {
  // Cohorts are counted with the engine's mutex released; specs never change.
  std::vector<RolloutSpec> running;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& [id, e] : impl_->rollouts) {
      if (e.rollout.state().phase == RolloutPhase::kRunning) running.push_back(e.rollout.spec());
    }
  }
  std::map<std::string, std::vector<uint64_t>> counted;
  for (const RolloutSpec& spec : running) counted[spec.id] = TerminalsOf(impl_->terminals->Cohorts(spec).all);
  bool changed = false;
  {
    std::lock_guard lock(impl_->mu);
    Impl& m = *impl_;
    for (auto& [id, e] : m.rollouts) {
      if (e.rollout.state().phase != RolloutPhase::kRunning) continue;
      if (auto c = counted.find(id); c != counted.end()) e.cohort_terminals = std::move(c->second);
      e.health = JudgeStageHealth(e.rollout.spec(), e.rollout.state(), e.tally, e.baseline);
      Result<bool> gated = m.Gate(e);
      changed = changed || (gated.ok() && *gated);
    }
    for (const ChannelKey& ck : m.signer->Expiring()) {
      changed = m.Publish(ck, m.signer->Pointer(ck.first, ck.second), {}).ok() || changed;
    }
  }
  // Outside the engine's mutex: a batch of terminal records holds up no rollout call.
  impl_->terminals->Flush();
  if (changed) notifier_.NotifyAll();
}

}  // namespace meridian
