// Staged rollouts: spec validation, cohorts, the state machine, reports, gates,
// target resolution and conflicts. JSON lives in rollout_json.cc.
#include "rollout/rollout.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "base/clock.h"
#include "base/digest.h"
#include "base/encoding.h"
#include "manifest/manifest.h"

namespace meridian {

namespace {

constexpr uint32_t kBuckets = kCohortPositions;

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool IsIdOf(std::string_view id, size_t bytes_max, std::string_view punctuation) {
  if (id.empty() || id.size() > bytes_max || !IsAsciiAlnum(id[0])) return false;
  for (char c : id) {
    if (!IsAsciiAlnum(c) && punctuation.find(c) == std::string_view::npos) return false;
  }
  return true;
}

// Stage bounds are whole buckets: percents are validated to two decimals, and
// rounding keeps 0.07 × 100 = 7.000000000000001 from letting bucket 7 in.
uint32_t BucketBound(double percent) { return static_cast<uint32_t>(std::llround(percent * 100)); }

bool HasTwoDecimalsAtMost(double percent) {
  double scaled = percent * 100;
  return std::fabs(scaled - std::round(scaled)) < 1e-6;
}

bool Contains(const std::vector<std::string>& list, std::string_view value) {
  for (const std::string& s : list) {
    if (s == value) return true;
  }
  return false;
}

// Checks a list of identifiers: each valid, no duplicates, at most `count_max`.
Status ValidateIdList(const std::vector<std::string>& list, const char* field, size_t count_max,
                      bool (*valid)(std::string_view)) {
  if (list.size() > count_max) {
    return Status::InvalidArgument(fmt::format("{}: {} entries, at most {} allowed", field, list.size(), count_max));
  }
  std::set<std::string_view> seen;
  for (const std::string& s : list) {
    if (!valid(s)) return Status::InvalidArgument(fmt::format("{}: '{}' is not a valid identifier", field, s));
    if (!seen.insert(s).second) return Status::InvalidArgument(fmt::format("{}: '{}' is listed twice", field, s));
  }
  return Status::Ok();
}

Status ValidateActorAndReason(std::string_view actor, std::string_view reason) {
  if (actor.empty() || actor.size() > kRolloutActorBytesMax) {
    return Status::InvalidArgument(fmt::format("actor must be 1 to {} bytes", kRolloutActorBytesMax));
  }
  if (reason.size() > kRolloutReasonBytesMax) {
    return Status::InvalidArgument(fmt::format("reason must be at most {} bytes", kRolloutReasonBytesMax));
  }
  return Status::Ok();
}

// The zone of `region` in the spec: its own, else "*"'s, else empty.
std::string ZoneOf(const RolloutSpec& spec, std::string_view region) {
  auto it = spec.time_zones.find(std::string(region));
  if (it == spec.time_zones.end()) it = spec.time_zones.find(std::string(kAnyRegionZone));
  return it == spec.time_zones.end() ? std::string() : it->second;
}

std::string RegionsText(const std::vector<std::string>& regions) {
  return regions.empty() ? std::string("all regions") : fmt::format("regions {}", fmt::join(regions, ","));
}

// The window's text and the zones it needs: each stage must have one.
Status ValidateWindow(const RolloutSpec& spec) {
  if (spec.time_zones.size() > kRolloutRegionsMax + 1) {
    return Status::InvalidArgument(fmt::format("time_zones: at most {} entries", kRolloutRegionsMax + 1));
  }
  for (const auto& [region, zone] : spec.time_zones) {
    if (region != kAnyRegionZone && !IsValidRegionOrProfile(region)) {
      return Status::InvalidArgument(fmt::format("time_zones: '{}' is not a region (or \"*\" for any other)", region));
    }
    bool name_chars = std::all_of(zone.begin(), zone.end(), [](char c) {
      return IsAsciiAlnum(c) || c == '/' || c == '_' || c == '-' || c == '+';
    });
    if (zone.empty() || zone.size() > kTimeZoneBytesMax || !name_chars) {
      return Status::InvalidArgument(fmt::format(
          "time_zones: the zone of '{}' must be an IANA zone name (1 to {} of A-Z a-z 0-9 / _ - +)", region,
          kTimeZoneBytesMax));
    }
  }
  if (spec.window.empty()) return Status::Ok();
  if (Result<RolloutWindow> w = ParseRolloutWindow(spec.window); !w.ok()) {
    return Status::InvalidArgument("window: " + w.status().message());
  }
  for (size_t k = 0; k < StageCount(spec); ++k) {
    if (!StageTimeZone(spec, k).empty()) continue;
    if (spec.waves || spec.regions.empty()) {
      std::string_view region = spec.waves ? StageRegion(spec, k) : std::string_view("*");
      return Status::InvalidArgument(fmt::format(
          "time_zones: the window needs a time zone for region '{}' (e.g. {}=Asia/Singapore, or *=ZONE for all)",
          region, region));
    }
    std::vector<std::string> zones;
    for (const std::string& region : spec.regions) zones.push_back(fmt::format("{}: {}", region, ZoneOf(spec, region)));
    return Status::InvalidArgument(fmt::format(
        "time_zones: the window is read in one zone per stage, but these regions move together: {}; give them one "
        "zone or use waves, so that each region advances in its own window",
        fmt::join(zones, ", ")));
  }
  return Status::Ok();
}

}  // namespace

std::string StageTimeZone(const RolloutSpec& spec, size_t stage) {
  if (spec.window.empty() || stage >= StageCount(spec)) return {};
  if (spec.waves) return ZoneOf(spec, StageRegion(spec, stage));
  if (spec.regions.empty()) return ZoneOf(spec, kAnyRegionZone);
  std::string zone = ZoneOf(spec, spec.regions.front());
  for (const std::string& region : spec.regions) {
    if (ZoneOf(spec, region) != zone) return {};
  }
  return zone;
}

Result<std::optional<WindowStatus>> StageWindow(const RolloutSpec& spec, size_t stage, int64_t now_ms) {
  if (spec.window.empty()) return std::optional<WindowStatus>();
  Result<RolloutWindow> window = ParseRolloutWindow(spec.window);
  if (!window.ok()) return window.status();
  Result<WindowStatus> status = EvaluateWindow(*window, StageTimeZone(spec, stage), now_ms);
  if (!status.ok()) return status.status();
  return std::optional<WindowStatus>(*status);
}

bool IsValidRolloutId(std::string_view id) { return IsIdOf(id, 64, "._-"); }
bool IsValidTerminalId(std::string_view id) { return IsIdOf(id, 128, "._:-"); }

Status ValidateRolloutSpec(const RolloutSpec& spec) {
  if (!IsValidRolloutId(spec.id)) return Status::InvalidArgument(fmt::format("id: '{}' is not a valid rollout id", spec.id));
  if (!IsValidModelName(spec.model)) return Status::InvalidArgument(fmt::format("model: '{}' is not a valid model name", spec.model));
  if (!IsValidVersion(spec.target_version)) {
    return Status::InvalidArgument(fmt::format("target_version: '{}' is not a SemVer version", spec.target_version));
  }
  if (!spec.previous_version.empty() && !IsValidVersion(spec.previous_version)) {
    return Status::InvalidArgument(fmt::format("previous_version: '{}' is not a SemVer version", spec.previous_version));
  }
  if (spec.previous_version == spec.target_version) {
    return Status::InvalidArgument("previous_version: equals target_version, there is nothing to roll out");
  }
  if (!IsValidRegionOrProfile(spec.channel)) {
    return Status::InvalidArgument(fmt::format("channel: '{}' is not a valid channel name", spec.channel));
  }
  MERIDIAN_RETURN_IF_ERROR(ValidateIdList(spec.regions, "regions", kRolloutRegionsMax, IsValidRegionOrProfile));
  MERIDIAN_RETURN_IF_ERROR(ValidateIdList(spec.profiles, "profiles", kRolloutProfilesMax, IsValidRegionOrProfile));
  MERIDIAN_RETURN_IF_ERROR(ValidateIdList(spec.canaries, "canaries", kRolloutCanariesMax, IsValidTerminalId));
  if (spec.waves && spec.regions.empty()) {
    return Status::InvalidArgument("waves: name the regions in order (--regions)");
  }

  if (spec.stages_percent.empty()) return Status::InvalidArgument("stages_percent: at least one stage is needed");
  if (spec.stages_percent.size() > kRolloutStagesMax) {
    return Status::InvalidArgument(fmt::format("stages_percent: {} stages, at most {} allowed",
                                               spec.stages_percent.size(), kRolloutStagesMax));
  }
  for (size_t i = 0; i < spec.stages_percent.size(); ++i) {
    double p = spec.stages_percent[i];
    if (!(p > 0 && p <= 100)) {  // written so that NaN fails too
      return Status::InvalidArgument(fmt::format("stages_percent[{}]: {} is outside (0, 100]", i, p));
    }
    if (!HasTwoDecimalsAtMost(p)) {
      return Status::InvalidArgument(fmt::format("stages_percent[{}]: {} has more than two decimals", i, p));
    }
    if (i > 0 && BucketBound(p) <= BucketBound(spec.stages_percent[i - 1])) {
      return Status::InvalidArgument(fmt::format("stages_percent[{}]: {} is not greater than the stage before ({})", i,
                                                 p, spec.stages_percent[i - 1]));
    }
  }
  if (spec.min_reports > kRolloutMinReportsMax) {
    return Status::InvalidArgument(fmt::format("min_reports: {} is above {}", spec.min_reports, kRolloutMinReportsMax));
  }
  if (!(spec.max_failure_rate >= 0 && spec.max_failure_rate <= 1)) {
    return Status::InvalidArgument(fmt::format("max_failure_rate: {} is outside [0, 1]", spec.max_failure_rate));
  }
  if (spec.soak_ms < 0 || spec.soak_ms > kRolloutSoakMsMax) {
    return Status::InvalidArgument(fmt::format("soak_ms: {} is outside [0, {}]", spec.soak_ms, kRolloutSoakMsMax));
  }
  if (Result<std::vector<HealthRule>> rules = ParseHealthRules(spec.health_rules); !rules.ok()) {
    return Status::InvalidArgument("health_rules: " + rules.status().message());
  }
  if (spec.health_min_terminals < 1 || spec.health_min_terminals > kHealthMinTerminalsMax) {
    return Status::InvalidArgument(
        fmt::format("health_min_terminals: {} is outside [1, {}]", spec.health_min_terminals, kHealthMinTerminalsMax));
  }
  return ValidateWindow(spec);
}

namespace {

// Bytes [at, at + 8) of SHA-256(text), big-endian.
uint64_t HashWord(const Digest& d, size_t at) {
  uint64_t word = 0;
  for (size_t i = at; i < at + 8; ++i) word = (word << 8) | d.bytes()[i];
  return word;
}

}  // namespace

uint16_t CohortPosition(std::string_view terminal_id) {
  return static_cast<uint16_t>(HashWord(Digest::Of(terminal_id), 0) % kBuckets);
}

CohortSalt CohortSaltOf(std::string_view rollout_id) {
  Digest d = Digest::Of(rollout_id);
  uint64_t a = HashWord(d, 0), b = HashWord(d, 8);
  // A unit mod 10000 = 2^4 × 5^4 (odd, not a multiple of 5), so the map is a bijection.
  uint32_t multiplier = static_cast<uint32_t>(a % kBuckets) | 1;
  if (multiplier % 5 == 0) multiplier = (multiplier + 2) % kBuckets;
  return {multiplier, static_cast<uint32_t>(b % kBuckets)};
}

uint32_t CohortBucket(const CohortSalt& salt, uint16_t position) {
  return static_cast<uint32_t>((uint64_t{salt.multiplier} * position + salt.offset) % kBuckets);
}

uint32_t CohortBucket(std::string_view rollout_id, std::string_view terminal_id) {
  return CohortBucket(CohortSaltOf(rollout_id), CohortPosition(terminal_id));
}

bool IsEligible(const RolloutSpec& spec, const TerminalInfo& terminal) {
  return (spec.regions.empty() || Contains(spec.regions, terminal.region)) &&
         (spec.profiles.empty() || Contains(spec.profiles, terminal.profile));
}

Status CheckCanariesEligible(const RolloutSpec& spec, std::span<const TerminalInfo> known) {
  for (const TerminalInfo& t : known) {
    if (!Contains(spec.canaries, t.id) || IsEligible(spec, t)) continue;
    std::vector<std::string> excluded_by;
    if (!spec.regions.empty() && !Contains(spec.regions, t.region)) {
      excluded_by.push_back(fmt::format("regions [{}] (it is in region '{}')", fmt::join(spec.regions, ","), t.region));
    }
    if (!spec.profiles.empty() && !Contains(spec.profiles, t.profile)) {
      excluded_by.push_back(
          fmt::format("profiles [{}] (it declares profile '{}')", fmt::join(spec.profiles, ","), t.profile));
    }
    return Status::InvalidArgument(fmt::format(
        "{}: canary '{}' is excluded by this rollout's {}, so it would never receive {}; "
        "remove it from canaries or widen the filter",
        kCanaryExcludedCode, t.id, fmt::join(excluded_by, " and "), spec.target_version));
  }
  return Status::Ok();
}

bool IsCanaryExcluded(const Status& status) {
  return status.code() == Status::Code::kInvalidArgument &&
         std::string_view(status.message()).starts_with(kCanaryExcludedCode);
}

size_t StageCount(const RolloutSpec& spec) {
  return spec.waves ? spec.regions.size() * spec.stages_percent.size() : spec.stages_percent.size();
}

std::string_view StageRegion(const RolloutSpec& spec, size_t stage) {
  if (!spec.waves || stage >= StageCount(spec)) return {};
  return spec.regions[stage / spec.stages_percent.size()];
}

double StagePercent(const RolloutSpec& spec, size_t stage) {
  if (stage >= StageCount(spec)) return 0;
  return spec.stages_percent[stage % spec.stages_percent.size()];
}

size_t FirstCohortStage(const RolloutSpec& spec, std::string_view region, uint32_t bucket, bool canary) {
  size_t n = spec.stages_percent.size();
  size_t first = 0;  // the first stage of the terminal's wave
  if (spec.waves) {
    auto it = std::find(spec.regions.begin(), spec.regions.end(), region);
    if (it == spec.regions.end()) return StageCount(spec);
    first = static_cast<size_t>(it - spec.regions.begin()) * n;
  }
  if (canary) return first;
  // A finished wave holds its last share, so the stages of the terminal's own
  // wave decide in every rollout shape.
  for (size_t s = 0; s < n; ++s) {
    if (bucket < BucketBound(spec.stages_percent[s])) return first + s;
  }
  return StageCount(spec);
}

bool InCohort(const RolloutSpec& spec, size_t stage, const TerminalInfo& terminal) {
  if (stage >= StageCount(spec) || !IsEligible(spec, terminal)) return false;
  bool canary = Contains(spec.canaries, terminal.id);
  return FirstCohortStage(spec, terminal.region, canary ? 0 : CohortBucket(spec.id, terminal.id), canary) <= stage;
}

std::string_view BreachActionName(BreachAction action) {
  switch (action) {
    case BreachAction::kPause: return "pause";
    case BreachAction::kRollback: return "rollback";
  }
  return "unknown";
}

std::string_view PhaseName(RolloutPhase phase) {
  switch (phase) {
    case RolloutPhase::kRunning: return "running";
    case RolloutPhase::kPaused: return "paused";
    case RolloutPhase::kCompleted: return "completed";
    case RolloutPhase::kAborted: return "aborted";
    case RolloutPhase::kRolledBack: return "rolled_back";
  }
  return "unknown";
}

std::string_view ActionName(RolloutAction action) {
  switch (action) {
    case RolloutAction::kStart: return "start";
    case RolloutAction::kPromote: return "promote";
    case RolloutAction::kPause: return "pause";
    case RolloutAction::kResume: return "resume";
    case RolloutAction::kAbort: return "abort";
    case RolloutAction::kRollback: return "rollback";
  }
  return "unknown";
}

Result<RolloutAction> ParseRolloutAction(std::string_view name) {
  for (RolloutAction a : {RolloutAction::kStart, RolloutAction::kPromote, RolloutAction::kPause,
                          RolloutAction::kResume, RolloutAction::kAbort, RolloutAction::kRollback}) {
    if (ActionName(a) == name) return a;
  }
  return Status::InvalidArgument(fmt::format("unknown rollout action '{}'", name));
}

std::string StateString(const RolloutState& state) {
  return fmt::format("{}({})", PhaseName(state.phase), state.stage);
}

// ---------------------------------------------------------------------------
// Reports

std::string_view ReportOutcomeName(ReportOutcome outcome) {
  switch (outcome) {
    case ReportOutcome::kSuccess: return "success";
    case ReportOutcome::kFailure: return "failure";
  }
  return "unknown";
}

Status ValidateReport(const TerminalReport& r) {
  if (!IsValidTerminalId(r.terminal_id)) {
    return Status::InvalidArgument(fmt::format("terminal_id: '{}' is not a valid terminal id", r.terminal_id));
  }
  if (!r.profile.empty() && !IsValidRegionOrProfile(r.profile)) {
    return Status::InvalidArgument(fmt::format("profile: '{}' is not a valid profile", r.profile));
  }
  if (!r.region.empty() && !IsValidRegionOrProfile(r.region)) {
    return Status::InvalidArgument(fmt::format("region: '{}' is not a valid region", r.region));
  }
  if (!r.version.empty() && !IsValidVersion(r.version)) {
    return Status::InvalidArgument(fmt::format("version: '{}' is not a SemVer version", r.version));
  }
  if (r.stage >= kRolloutStageIndexMax) {
    return Status::InvalidArgument(fmt::format("stage: {} is out of range", r.stage));
  }
  if (r.reason.size() > kRolloutReasonBytesMax) {
    return Status::InvalidArgument(fmt::format("reason: at most {} bytes", kRolloutReasonBytesMax));
  }
  if (r.health.size() > kReportHealthEntriesMax) {
    return Status::InvalidArgument(fmt::format("health: at most {} numbers", kReportHealthEntriesMax));
  }
  for (const auto& [key, value] : r.health) {
    if (key.empty() || key.size() > kReportHealthKeyBytesMax) {
      return Status::InvalidArgument(fmt::format("health: names must be 1 to {} bytes", kReportHealthKeyBytesMax));
    }
    if (!std::isfinite(value)) return Status::InvalidArgument(fmt::format("health: '{}' is not a finite number", key));
  }
  return Status::Ok();
}

namespace {

void Count(StageStats& s, ReportOutcome outcome, int delta) {
  auto add = [delta](uint64_t& n) { n = static_cast<uint64_t>(static_cast<int64_t>(n) + delta); };
  add(s.reported);
  add(outcome == ReportOutcome::kSuccess ? s.succeeded : s.failed);
  s.failure_rate = s.reported == 0 ? 0 : static_cast<double>(s.failed) / static_cast<double>(s.reported);
}

}  // namespace

void ReportTally::CountIn(const TerminalReport& report, int delta) {
  Count(all_[report.stage], report.outcome, delta);
  if (window_ && window_->stage == report.stage && report.received_ms >= window_->since_ms) {
    Count(window_->stats, report.outcome, delta);
  }
}

Status ReportTally::Add(const TerminalReport& report) {
  MERIDIAN_RETURN_IF_ERROR(ValidateReport(report));
  auto key = std::make_pair(report.stage, report.terminal_id);
  auto it = latest_.find(key);
  if (it != latest_.end()) {
    if (report.received_ms >= it->second.received_ms) {
      CountIn(it->second, -1);
      it->second = report;
      CountIn(report, 1);
    }
    return Status::Ok();
  }
  if (latest_.size() >= kReportTallyEntriesMax) {
    return Status::ResourceExhausted(fmt::format("report tally holds {} terminals already", kReportTallyEntriesMax));
  }
  latest_.emplace(std::move(key), report);
  CountIn(report, 1);
  return Status::Ok();
}

const TerminalReport* ReportTally::Latest(uint32_t stage, const std::string& terminal_id) const {
  auto it = latest_.find({stage, terminal_id});
  return it == latest_.end() ? nullptr : &it->second;
}

void ReportTally::ForEach(uint32_t stage, int64_t since_ms,
                          const std::function<void(const TerminalReport&)>& visit) const {
  if (stage >= kRolloutStageIndexMax) return;  // Add never stores one; also keeps stage + 1 from wrapping
  auto end = latest_.lower_bound({stage + 1, std::string()});
  for (auto it = latest_.lower_bound({stage, std::string()}); it != end; ++it) {
    if (it->second.received_ms >= since_ms) visit(it->second);
  }
}

StageStats ReportTally::Stats(uint32_t stage, int64_t since_ms) const {
  if (since_ms == INT64_MIN) {
    auto it = all_.find(stage);
    return it == all_.end() ? StageStats{} : it->second;
  }
  if (window_ && window_->stage == stage && window_->since_ms == since_ms) return window_->stats;
  StageStats s;
  ForEach(stage, since_ms, [&s](const TerminalReport& r) { Count(s, r.outcome, 1); });
  window_ = Window{stage, since_ms, s};
  return s;
}

// ---------------------------------------------------------------------------
// Gates

GateDecision EvaluateGates(const RolloutSpec& spec, const RolloutState& state, const StageStats& stats,
                           const GateContext& context) {
  if (state.phase != RolloutPhase::kRunning) return {GateVerdict::kNone, "gates run only while running"};
  if (context.health && context.health->breach) return {GateVerdict::kBreach, "health: " + context.health->reason};
  uint64_t required = spec.min_reports;
  std::string adds;  // how many terminals the stage adds, when known
  if (context.stage_terminals) {
    required = std::min<uint64_t>(required, *context.stage_terminals);
    adds = fmt::format("; the stage adds {} known terminals", *context.stage_terminals);
  }
  if (stats.reported < required) {
    return {GateVerdict::kNone, fmt::format("waiting for {} more reports ({} of {}{})", required - stats.reported,
                                            stats.reported, required, adds)};
  }
  if (stats.failure_rate > spec.max_failure_rate) {
    return {GateVerdict::kBreach, fmt::format("failure rate {:.4f} ({} of {} terminals) is above {:.4f}",
                                              stats.failure_rate, stats.failed, stats.reported,
                                              spec.max_failure_rate)};
  }
  if (!spec.auto_promote) {
    return {GateVerdict::kNone, fmt::format("gates pass ({} of {} reports, failure rate {:.4f}); waiting for a manual "
                                            "promote", stats.reported, required, stats.failure_rate)};
  }
  if (stats.succeeded < required) {
    return {GateVerdict::kNone, fmt::format("waiting for {} more successes ({} of {}{})", required - stats.succeeded,
                                            stats.succeeded, required, adds)};
  }
  int64_t soaked_ms = context.now_ms - state.gate_since_ms;
  if (soaked_ms < spec.soak_ms) {
    return {GateVerdict::kNone, fmt::format("soaking: {} of {} ms", soaked_ms, spec.soak_ms)};
  }
  if (!context.window_problem.empty()) {
    return {GateVerdict::kNone, "gates pass; the window cannot be evaluated: " + context.window_problem};
  }
  if (context.window && !context.window->open) {
    return {GateVerdict::kNone,
            fmt::format("gates pass; waiting for the window {} ({}), which opens at {}", spec.window,
                        StageTimeZone(spec, state.stage), FormatRfc3339(context.window->opens_ms))};
  }
  std::string figures = required == 0 ? std::string("the stage adds no known terminals")
                                      : fmt::format("{} successes of {} required, failure rate {:.4f} within {:.4f}",
                                                    stats.succeeded, required, stats.failure_rate,
                                                    spec.max_failure_rate);
  figures += fmt::format("; soaked {} ms", soaked_ms);
  if (context.health) figures += "; health: " + context.health->reason;
  if (context.window) figures += fmt::format("; inside the window {} ({})", spec.window, StageTimeZone(spec, state.stage));
  return {GateVerdict::kPromote, figures};
}

// ---------------------------------------------------------------------------
// The state machine

Result<Rollout> Rollout::Start(RolloutSpec spec, int64_t now_ms, std::string_view actor, std::string_view reason) {
  MERIDIAN_RETURN_IF_ERROR(ValidateRolloutSpec(spec));
  MERIDIAN_RETURN_IF_ERROR(ValidateActorAndReason(actor, reason));
  Rollout r;
  r.spec_ = std::move(spec);
  r.state_ = {RolloutPhase::kRunning, 0, now_ms, now_ms};
  r.events_.push_back({1, now_ms, std::string(actor), RolloutAction::kStart, std::string(reason), "",
                       StateString(r.state_)});
  return r;
}

Result<Rollout> Rollout::Restore(RolloutSpec spec, RolloutState state, std::vector<RolloutEvent> events) {
  MERIDIAN_RETURN_IF_ERROR(ValidateRolloutSpec(spec));
  if (state.stage >= StageCount(spec)) {
    return Status::InvalidArgument(fmt::format("state: stage {} of a rollout with {} stages", state.stage,
                                               StageCount(spec)));
  }
  if (state.phase == RolloutPhase::kCompleted && state.stage + 1 != StageCount(spec)) {
    return Status::InvalidArgument("state: completed before the last stage");
  }
  if (events.empty() || events.size() > kRolloutEventsMax + 1) {
    return Status::InvalidArgument(fmt::format("events: 1 to {} events expected", kRolloutEventsMax + 1));
  }
  for (size_t i = 0; i < events.size(); ++i) {
    const RolloutEvent& e = events[i];
    if (e.seq != i + 1) return Status::InvalidArgument(fmt::format("events: event {} has seq {}", i + 1, e.seq));
    if ((e.action == RolloutAction::kStart) != (i == 0)) {
      return Status::InvalidArgument("events: the log must begin with the one start event");
    }
    // The log is a chain: each event starts where the one before ended.
    if (e.before != (i == 0 ? std::string() : events[i - 1].after)) {
      return Status::InvalidArgument(fmt::format("events: event {} does not follow from event {}", i + 1, i));
    }
    MERIDIAN_RETURN_IF_ERROR(ValidateActorAndReason(e.actor, e.reason));
  }
  if (events.back().after != StateString(state)) {
    return Status::InvalidArgument("events: the last event does not end in the current state");
  }
  Rollout r;
  r.spec_ = std::move(spec);
  r.state_ = state;
  r.events_ = std::move(events);
  return r;
}

bool Rollout::active() const {
  return state_.phase == RolloutPhase::kRunning || state_.phase == RolloutPhase::kPaused;
}

Status Rollout::Apply(RolloutAction action, int64_t now_ms, std::string_view actor, std::string_view reason) {
  MERIDIAN_RETURN_IF_ERROR(ValidateActorAndReason(actor, reason));
  RolloutPhase phase = state_.phase;
  RolloutState after = state_;
  after.updated_ms = now_ms;
  bool legal = false;
  switch (action) {
    case RolloutAction::kStart:
      return Status::InvalidArgument("a rollout is started by Rollout::Start, not by an action");
    case RolloutAction::kPromote:
      legal = phase == RolloutPhase::kRunning;
      if (state_.stage + 1 < StageCount(spec_)) {
        ++after.stage;
        after.gate_since_ms = now_ms;
      } else {
        after.phase = RolloutPhase::kCompleted;
      }
      break;
    case RolloutAction::kPause:
      legal = phase == RolloutPhase::kRunning;
      after.phase = RolloutPhase::kPaused;
      break;
    case RolloutAction::kResume:
      legal = phase == RolloutPhase::kPaused;
      after.phase = RolloutPhase::kRunning;
      after.gate_since_ms = now_ms;
      break;
    case RolloutAction::kAbort:
      legal = phase == RolloutPhase::kRunning || phase == RolloutPhase::kPaused;
      after.phase = RolloutPhase::kAborted;
      break;
    case RolloutAction::kRollback:
      legal = phase == RolloutPhase::kRunning || phase == RolloutPhase::kPaused || phase == RolloutPhase::kCompleted;
      after.phase = RolloutPhase::kRolledBack;
      break;
  }
  if (!legal) {
    return Status::FailedPrecondition(fmt::format("cannot {} rollout '{}': it is {}", ActionName(action), spec_.id,
                                                  StateString(state_)));
  }
  bool ends = action == RolloutAction::kAbort || action == RolloutAction::kRollback;
  if (events_.size() >= kRolloutEventsMax && !ends) {
    return Status::ResourceExhausted(fmt::format("rollout '{}' has {} events; only abort or rollback remain",
                                                 spec_.id, events_.size()));
  }
  events_.push_back({events_.size() + 1, now_ms, std::string(actor), action, std::string(reason),
                     StateString(state_), StateString(after)});
  state_ = after;
  return Status::Ok();
}

bool Rollout::Admit(TerminalReport* report) const {
  if (!active() || report->version != spec_.target_version) return false;
  TerminalInfo t{report->terminal_id, report->profile, report->region, report->version};
  if (!InCohort(spec_, state_.stage, t)) return false;
  report->stage = state_.stage;
  return true;
}

bool Rollout::AdmitBaseline(TerminalReport* report) const {
  if (!active() || spec_.previous_version.empty() || report->version != spec_.previous_version) return false;
  TerminalInfo t{report->terminal_id, report->profile, report->region, report->version};
  if (!IsEligible(spec_, t)) return false;
  std::string_view wave = StageRegion(spec_, state_.stage);
  if (!wave.empty() && wave != report->region) return false;
  report->stage = state_.stage;
  return true;
}

HealthJudgement JudgeStageHealth(const RolloutSpec& spec, const RolloutState& state, const ReportTally& target,
                                 const ReportTally& baseline) {
  Result<std::vector<HealthRule>> rules = ParseHealthRules(spec.health_rules);
  if (!rules.ok() || rules->empty()) return {false, "no health rules", {}};
  // Latest health numbers per region: [0] the target's terminals, [1] the previous version's.
  std::map<std::string, std::array<std::vector<HealthSample>, 2>> regions;
  target.ForEach(state.stage, state.gate_since_ms,
                 [&](const TerminalReport& r) { regions[r.region][0].push_back(r.health); });
  baseline.ForEach(state.stage, state.gate_since_ms,
                   [&](const TerminalReport& r) { regions[r.region][1].push_back(r.health); });
  std::vector<std::string> passes;
  for (const auto& [region, sides] : regions) {
    HealthJudgement j = JudgeHealth(*rules, spec.health_min_terminals, sides[0], sides[1]);
    std::string name = region.empty() ? std::string("(no region)") : region;
    if (j.breach) {
      j.reason = fmt::format("region {}: {}", name, j.reason);
      return j;
    }
    passes.push_back(fmt::format("{}: {}", name, j.reason));
  }
  if (passes.empty()) return {false, "no health reports yet", {}};
  return {false, fmt::format("{}", fmt::join(passes, "; ")), {}};
}

Result<GateDecision> Rollout::Tick(const ReportTally& tally, const GateContext& context) {
  GateDecision d = EvaluateGates(spec_, state_, tally.Stats(state_.stage, state_.gate_since_ms), context);
  if (d.reason.size() > kRolloutReasonBytesMax) {  // many regions' health figures: the event keeps the start
    d.reason = std::string(Utf8Prefix(d.reason, kRolloutReasonBytesMax - 3)) + "...";
  }
  if (d.verdict == GateVerdict::kNone) return d;
  RolloutAction action = RolloutAction::kPromote;
  if (d.verdict == GateVerdict::kBreach) {
    action = spec_.on_breach == BreachAction::kRollback ? RolloutAction::kRollback : RolloutAction::kPause;
  }
  MERIDIAN_RETURN_IF_ERROR(Apply(action, context.now_ms, kGateActor, d.reason));
  return d;
}

// ---------------------------------------------------------------------------
// Target resolution

std::string_view TargetReasonName(TargetReason reason) {
  switch (reason) {
    case TargetReason::kNotEligible: return "not_eligible";
    case TargetReason::kInCohort: return "in_cohort";
    case TargetReason::kNotInCohort: return "not_in_cohort";
    case TargetReason::kHeld: return "held";
    case TargetReason::kRolledBack: return "rolled_back";
  }
  return "unknown";
}

TargetResolution ResolveTarget(const RolloutSpec& spec, const RolloutState& state, const TerminalInfo& terminal) {
  if (!IsEligible(spec, terminal)) return {spec.previous_version, TargetReason::kNotEligible};
  switch (state.phase) {
    case RolloutPhase::kRunning:
    case RolloutPhase::kCompleted:
      if (InCohort(spec, state.stage, terminal)) return {spec.target_version, TargetReason::kInCohort};
      return {spec.previous_version, TargetReason::kNotInCohort};
    case RolloutPhase::kPaused:
    case RolloutPhase::kAborted:
      return {terminal.current_version == spec.target_version ? spec.target_version : spec.previous_version,
              TargetReason::kHeld};
    case RolloutPhase::kRolledBack:
      return {spec.previous_version, TargetReason::kRolledBack};
  }
  return {spec.previous_version, TargetReason::kNotEligible};
}

// ---------------------------------------------------------------------------
// Conflicts

bool Overlaps(const RolloutSpec& a, const RolloutSpec& b) {
  if (a.model != b.model || a.channel != b.channel) return false;
  if (a.regions.empty() || b.regions.empty()) return true;
  for (const std::string& region : a.regions) {
    if (Contains(b.regions, region)) return true;
  }
  return false;
}

Status CheckNoConflict(std::span<const Rollout* const> existing, const RolloutSpec& candidate) {
  for (const Rollout* r : existing) {
    if (r == nullptr) continue;
    if (r->spec().id == candidate.id) {
      return Status::AlreadyExists(fmt::format("rollout id '{}' is already used", candidate.id));
    }
    if (r->active() && Overlaps(r->spec(), candidate)) {
      return Status::FailedPrecondition(fmt::format(
          "rollout '{}' is {} on model '{}' channel '{}' in {}; finish, abort or roll it back first", r->spec().id,
          PhaseName(r->state().phase), candidate.model, candidate.channel, RegionsText(r->spec().regions)));
    }
  }
  return Status::Ok();
}

}  // namespace meridian
