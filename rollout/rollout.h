// Staged rollouts: which terminals run a model's new version when, the gates
// that promote or stop a rollout from terminal reports, and the audit log of
// every state change. Pure: no I/O and no clock reads — every time is passed in
// as Unix milliseconds (callers read a meridian::Clock), so tests drive soak
// times with FakeClock. Nothing here throws; bad input comes back as a Status.
//
// Sections: identifiers and limits · the spec · cohorts · state and events ·
// reports and stage statistics · gates · the Rollout state machine · target
// resolution · conflicts · JSON.
//
// Persisting (the daemon's side): a Rollout is spec + state + event log. Every
// successful Apply/Tick appends exactly one event and changes the state, so
// write RolloutToJson (or the state and the new last event) after each change
// and rebuild with RolloutFromJson / Rollout::Restore. Reports live apart from
// the rollout (one record per report, see ReportToJson) and are folded into a
// ReportTally on restart.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "rollout/analysis.h"
#include "rollout/window.h"

namespace meridian {

// ---------------------------------------------------------------------------
// Identifiers and limits

// Rollout ids go into URLs (/v1/rollouts/{id}): [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
// They never contain ':', which keeps "rollout id:terminal id" unambiguous.
bool IsValidRolloutId(std::string_view id);
// Terminal ids go into URLs too: [A-Za-z0-9][A-Za-z0-9._:-]{0,127}.
bool IsValidTerminalId(std::string_view id);

inline constexpr size_t kRolloutStagesMax = 100;
inline constexpr size_t kRolloutRegionsMax = 64;
// Stage indexes (with waves, regions × stages; see StageCount) are below this.
inline constexpr size_t kRolloutStageIndexMax = kRolloutStagesMax * kRolloutRegionsMax;
inline constexpr size_t kRolloutProfilesMax = 64;
inline constexpr size_t kRolloutCanariesMax = 10'000;
inline constexpr uint32_t kRolloutMinReportsMax = 10'000'000;
inline constexpr int64_t kRolloutSoakMsMax = 30ll * 24 * 3600 * 1000;  // 30 days
inline constexpr size_t kRolloutEventsMax = 10'000;  // pause/resume cycles cannot grow the log forever
inline constexpr size_t kRolloutActorBytesMax = 128;
inline constexpr size_t kRolloutReasonBytesMax = 1024;
inline constexpr size_t kReportHealthEntriesMax = 16;
inline constexpr size_t kReportHealthKeyBytesMax = 64;
inline constexpr size_t kReportTallyEntriesMax = 1'000'000;  // bounds the memory of one tally
inline constexpr size_t kRolloutJsonBytesMax = 16u << 20;    // any JSON document parsed here

// ---------------------------------------------------------------------------
// The spec: what an operator asks for. Immutable once the rollout started.

enum class BreachAction { kPause, kRollback };
// "pause", "rollback".
std::string_view BreachActionName(BreachAction action);

struct RolloutSpec {
  std::string id;                // see IsValidRolloutId; also salts the cohort hash
  std::string model;             // see IsValidModelName (manifest/manifest.h)
  std::string target_version;    // SemVer; what terminals in the cohort move to
  std::string previous_version;  // SemVer, or empty when the channel had no version;
                                 // what everyone else runs and what rollback returns to
  std::string channel = "stable";        // see IsValidRegionOrProfile
  std::vector<std::string> regions;      // regions covered; empty = all. With waves: in wave order
  std::vector<std::string> profiles;     // device profiles covered; empty = all
  std::vector<std::string> canaries;     // terminal ids that are in every stage
  // Cumulative percent of eligible terminals per stage, strictly increasing,
  // each in (0, 100] with at most two decimals (0.01 % is one bucket). The last
  // may be below 100: the rollout then completes holding that share.
  std::vector<double> stages_percent = {1, 10, 50, 100};
  // Gates, evaluated on the current stage only (see EvaluateGates).
  uint32_t min_reports = 1;        // reports needed before the gates decide anything
  double max_failure_rate = 0.05;  // in [0, 1]; failures / reports above this is a breach
  int64_t soak_ms = 0;             // time the stage must run before an automatic promote
  bool auto_promote = false;       // false: only an operator promotes
  BreachAction on_breach = BreachAction::kPause;
  // Waves: the regions go one after another, in the order listed. Each region
  // runs every stage of stages_percent; only when its last stage is promoted
  // (gates green) does the next region start at the first stage. A breach
  // stops the wave where it is: later regions never move. See StageCount.
  bool waves = false;
  // Automatic promotes happen only while this window is open (rollout/window.h,
  // e.g. "Mon-Sat 02:00-05:00") in the time zone of the region the stage
  // moves; breaches act at any time. Empty: no window.
  std::string window;
  // IANA time zone per region; "*" for any region not listed. With a window,
  // each stage needs exactly one zone: a wave its region's, a stage without
  // waves the one zone all its regions share ("*" when it names none).
  std::map<std::string, std::string> time_zones;
  // Health rules (rollout/analysis.h), judged per region on the current
  // stage: the terminals reporting the target against those reporting the
  // previous version. A breach acts as a failure-rate breach does.
  std::vector<std::string> health_rules = {kDefaultHealthRules.begin(), kDefaultHealthRules.end()};
  uint32_t health_min_terminals = 5;  // per side and region before a rule judges

  bool operator==(const RolloutSpec&) const = default;
};

// OK, or InvalidArgument whose message names the field and says what is wrong
// (ids and versions malformed, target == previous, stages empty / not strictly
// increasing / outside (0, 100] / finer than 0.01, failure rate outside [0, 1],
// soak negative or above the limit, duplicates, limits exceeded, waves
// without regions).
Status ValidateRolloutSpec(const RolloutSpec& spec);

inline constexpr std::string_view kAnyRegionZone = "*";  // the time_zones key for regions not listed
inline constexpr uint32_t kHealthMinTerminalsMax = 1'000'000;

// Stages: a rollout walks stage indexes 0 .. StageCount - 1 (RolloutState::stage,
// TerminalReport::stage and the per-stage tally all use this global index).
// Without waves a stage index is an index into stages_percent. With waves,
// stage k is stage k % n of region regions[k / n] (n = stages_percent.size()):
// regions {sg, ae} with stages {10, 100} walk sg 10 %, sg 100 %, ae 10 %, ae 100 %.

// waves ? regions.size() × stages_percent.size() : stages_percent.size().
// At most kRolloutStageIndexMax for a valid spec.
size_t StageCount(const RolloutSpec& spec);
// With waves, the region stage `stage` moves (regions[stage / n]); without, ""
// (every region of the spec moves together). "" too for a stage past the last.
// A view into spec.regions: valid while the spec is.
std::string_view StageRegion(const RolloutSpec& spec, size_t stage);
// The cumulative percent of stage `stage` within its region (with waves) or
// overall: stages_percent[stage % n]. 0 for a stage past the last.
double StagePercent(const RolloutSpec& spec, size_t stage);
// The time zone a stage's window is read in (see RolloutSpec::time_zones);
// empty when the spec has no window or no zone for it (ValidateRolloutSpec
// refuses such a spec).
std::string StageTimeZone(const RolloutSpec& spec, size_t stage);

// ---------------------------------------------------------------------------
// Cohorts: deterministic and monotone.
//
// A terminal's position is fixed: the first 8 bytes of SHA-256(terminal id),
// read as a big-endian uint64, mod 10000. Each rollout maps positions to
// buckets with its own bijection of [0, 10000):
//   bucket = (multiplier × position + offset) mod 10000
// where offset is bytes 8..15 of SHA-256(rollout id) mod 10000 and multiplier
// is bytes 0..7 of it mod 10000, made odd, plus 2 when a multiple of 5 (a unit
// mod 10000). A terminal is in stage k when it is eligible and (it is a canary
// or bucket < round(stages_percent[k] × 100)). Buckets do not depend on the
// stage, so a terminal in one stage stays in every later one; the salt gives
// each rollout a different first 1 %. Because the salt acts on positions, not
// on ids, a daemon counts any rollout's cohorts from how many terminals hold
// each position (rollout/cohort_count.h) instead of hashing every terminal.
// Eligibility (region and profile filters) comes first: a canary outside the
// filters is not in the rollout at all — its region's daemon does not serve it.
//
// With waves, stage k (n = stages_percent.size(), wave w = k / n, s = k % n)
// decides per region: a region before regions[w] finished its wave and holds
// the last stage's share (canary or bucket < round(stages_percent.back() × 100));
// regions[w] itself is at stages_percent[s] as above; a region after it has not
// started, so none of its terminals is in the cohort, not even a canary. The
// same bucket decides in every wave, so cohorts stay monotone.

struct TerminalInfo {
  std::string id;
  std::string profile;          // device profile the terminal declares
  std::string region;           // region whose daemon serves it
  std::string current_version;  // what it runs now; empty when none
};

inline constexpr uint32_t kCohortPositions = 10'000;

struct CohortSalt {
  uint32_t multiplier = 1;  // a unit mod kCohortPositions
  uint32_t offset = 0;
};

// In [0, 10000).
uint16_t CohortPosition(std::string_view terminal_id);
CohortSalt CohortSaltOf(std::string_view rollout_id);
// In [0, 10000).
uint32_t CohortBucket(const CohortSalt& salt, uint16_t position);
uint32_t CohortBucket(std::string_view rollout_id, std::string_view terminal_id);
// The first stage index whose cohort holds an eligible terminal of `region`
// with `bucket` (a canary's bucket is not looked at); StageCount(spec) when
// none does. InCohort(spec, k, t) is IsEligible(spec, t) and this ≤ k.
size_t FirstCohortStage(const RolloutSpec& spec, std::string_view region, uint32_t bucket, bool canary);
// Whether the terminal passes the spec's region and profile filters.
bool IsEligible(const RolloutSpec& spec, const TerminalInfo& terminal);
// Whether the terminal is in the cohort of global stage index `stage` (false
// for a stage index at or past StageCount).
bool InCohort(const RolloutSpec& spec, size_t stage, const TerminalInfo& terminal);

// The error code the daemon answers (400) for a canary its own rollout's
// filters exclude, and the start of that error's message.
inline constexpr std::string_view kCanaryExcludedCode = "canary_excluded";
// Refuses canaries the spec's own region or profile filter excludes: such a
// canary would never move (eligibility comes first), and an operator who
// listed it expects it to. `known` holds what terminals last declared (the
// daemon's known terminals; a canary absent from it is not judged: nothing
// says it is excluded). OK, or InvalidArgument whose message starts with
// "canary_excluded: " and names the first excluded canary, what it declared
// and the filter that excludes it (see IsCanaryExcluded).
Status CheckCanariesEligible(const RolloutSpec& spec, std::span<const TerminalInfo> known);
// Whether `status` is CheckCanariesEligible's refusal.
bool IsCanaryExcluded(const Status& status);

// ---------------------------------------------------------------------------
// State, events and the state machine.
//
//   running(k) --promote--> running(k+1), or completed after the last stage
//                           (k + 1 == StageCount; with waves, promoting a region's
//                           last stage starts the next region's first stage)
//   running    --pause----> paused            paused --resume--> running (same stage)
//   running | paused --abort--> aborted
//   running | paused | completed --rollback--> rolled_back
// Everything else — promote a completed rollout, resume a running one, any
// action on an aborted or rolled-back one — is FailedPrecondition.

enum class RolloutPhase { kRunning, kPaused, kCompleted, kAborted, kRolledBack };
enum class RolloutAction { kStart, kPromote, kPause, kResume, kAbort, kRollback };

// Names used in JSON and messages. Like every *Name function here, they
// answer "unknown" for a value outside the enum.
// "running", "paused", "completed", "aborted", "rolled_back".
std::string_view PhaseName(RolloutPhase phase);
// "start", "promote", "pause", "resume", "abort", "rollback".
std::string_view ActionName(RolloutAction action);
// The inverse of ActionName; InvalidArgument for anything else. "start" is
// parsed too, but Rollout::Apply refuses it (Rollout::Start starts).
Result<RolloutAction> ParseRolloutAction(std::string_view name);

struct RolloutState {
  RolloutPhase phase = RolloutPhase::kRunning;
  uint32_t stage = 0;         // current stage index in [0, StageCount(spec)); for completed/aborted/rolled_back
                              // the last one reached
  int64_t gate_since_ms = 0;  // when the gates began watching this stage: set by start, promote and
                              // resume. Soak counts from here and only reports received from here count,
                              // so a resumed rollout is judged afresh, not re-tripped by the old failures.
  int64_t updated_ms = 0;     // time of the last transition

  bool operator==(const RolloutState&) const = default;
};

// "<phase>(<stage index>)", for example "running(0)" or "rolled_back(2)": the
// before/after text of events.
std::string StateString(const RolloutState& state);

// One entry of the append-only audit log.
struct RolloutEvent {
  uint64_t seq = 0;      // 1-based position in the log
  int64_t time_ms = 0;
  std::string actor;     // who: an operator name, or "gate" for automatic decisions
  RolloutAction action = RolloutAction::kStart;
  std::string reason;    // why; may be empty
  std::string before;    // StateString before; empty for the start event
  std::string after;     // StateString after

  bool operator==(const RolloutEvent&) const = default;
};

// The actor of events caused by gates.
inline constexpr std::string_view kGateActor = "gate";

// ---------------------------------------------------------------------------
// Reports and stage statistics.

enum class ReportOutcome { kSuccess, kFailure };
// "success", "failure".
std::string_view ReportOutcomeName(ReportOutcome outcome);

// What a terminal said about installing and running a version.
struct TerminalReport {
  std::string terminal_id;
  std::string profile;   // as the terminal declares it; used by Rollout::Admit
  std::string region;
  std::string version;   // the version the report is about: installed, or attempted on failure
  uint32_t stage = 0;    // the stage it counts in; set by Rollout::Admit
  ReportOutcome outcome = ReportOutcome::kSuccess;
  std::string reason;                    // free text, ≤ kRolloutReasonBytesMax
  std::map<std::string, double> health;  // optional numbers, e.g. "latency_ms", "error_rate"; finite
  int64_t received_ms = 0;               // when the daemon received it

  bool operator==(const TerminalReport&) const = default;
};

// OK, or InvalidArgument naming the bad field (terminal id, version, limits,
// non-finite health numbers).
Status ValidateReport(const TerminalReport& report);

struct StageStats {
  uint64_t reported = 0;   // distinct terminals
  uint64_t succeeded = 0;
  uint64_t failed = 0;
  double failure_rate = 0;  // failed / reported; 0 when nothing was reported

  bool operator==(const StageStats&) const = default;
};

// The latest report of each terminal in each stage. A terminal counts once per
// stage, by its LATEST report (greatest received_ms; on a tie, the one added
// last): a terminal that failed, was fixed and reinstalled counts by what it
// says now. Order-independent, so the daemon can rebuild a tally from stored
// reports in any order — or keep one record per (rollout, stage, terminal).
class ReportTally {
 public:
  // Records a report. InvalidArgument if ValidateReport fails;
  // ResourceExhausted when kReportTallyEntriesMax distinct (stage, terminal)
  // pairs are already held.
  Status Add(const TerminalReport& report);
  // Counts over the terminals of `stage` whose latest report was received at or
  // after since_ms (the default counts all of them). Zero counts for a stage
  // that holds no reports, including one at or past kRolloutStageIndexMax.
  // Kept as reports are added, for every stage over all reports and for the
  // last (stage, since_ms) asked, so the gates' question after each report
  // costs O(1), not the stage's reports; another since_ms counts once.
  // Not thread-safe (nor is Add): the caller locks.
  StageStats Stats(uint32_t stage, int64_t since_ms = INT64_MIN) const;
  size_t size() const { return latest_.size(); }
  // The latest report of `terminal_id` in `stage`, or nullptr.
  const TerminalReport* Latest(uint32_t stage, const std::string& terminal_id) const;
  // Calls `visit` with each report Stats(stage, since_ms) would count.
  void ForEach(uint32_t stage, int64_t since_ms, const std::function<void(const TerminalReport&)>& visit) const;

 private:
  // Adds (+1) or removes (-1) a report's outcome to the kept counts.
  void CountIn(const TerminalReport& report, int delta);

  std::map<std::pair<uint32_t, std::string>, TerminalReport> latest_;
  std::map<uint32_t, StageStats> all_;  // per stage, every terminal's latest report
  struct Window {
    uint32_t stage = 0;
    int64_t since_ms = 0;
    StageStats stats;
  };
  mutable std::optional<Window> window_;  // the last (stage, since_ms) Stats counted
};

// ---------------------------------------------------------------------------
// Gates.
//
// Only a running rollout has gates. On the current stage, with
// required = min(min_reports, the known terminals the stage adds) — a stage
// never waits for more reports than it has terminals to give them:
//   1. a health rule breaches               -> breach (pause or rollback per on_breach)
//   2. reported < required                  -> none (too few reports to judge)
//   3. failure_rate > max_failure_rate      -> breach
//   4. auto_promote, succeeded >= required, now - gate_since_ms >= soak_ms
//      and the stage's window (if any) is open
//                                           -> promote (completes after the last stage)
//   5. otherwise                            -> none
// A stage that adds no known terminals (required 0) thus passes after its
// soak, and its promote event says so. When the daemon has not counted the
// stage's terminals yet, required is min_reports. Breach waits for `required`
// reports even if every one failed: choose min_reports as the sample you
// trust. Promote counts successes, not reports. Every reason names the
// figures the decision used and, for none, what would make the gate pass.

enum class GateVerdict { kNone, kPromote, kBreach };

struct GateDecision {
  GateVerdict verdict = GateVerdict::kNone;
  std::string reason;  // human-readable: the numbers behind the verdict, or what the gate waits for
};

// What the gates know besides the reports.
struct GateContext {
  static GateContext At(int64_t now_ms) {
    GateContext c;
    c.now_ms = now_ms;
    return c;
  }

  int64_t now_ms = 0;
  // Known terminals in the current stage's cohort that the stage before did
  // not hold (all of stage 0's); nullopt when not counted.
  std::optional<uint64_t> stage_terminals;
  // The stage's window (StageWindow); nullopt: none.
  std::optional<WindowStatus> window;
  // Why the stage's window could not be evaluated (StageWindow's error):
  // automatic promotes wait, as for a closed window.
  std::string window_problem;
  // The health rules on the current stage (JudgeStageHealth); nullopt: not judged.
  std::optional<HealthJudgement> health;
};

// The spec's health rules on the current stage, region by region: the
// latest health numbers of the terminals whose reports on the target
// (`target`, this rollout's tally) and on the previous version (`baseline`,
// see Rollout::AdmitBaseline) arrived since gate_since_ms. The first region
// that breaches decides, its name leading the reason.
HealthJudgement JudgeStageHealth(const RolloutSpec& spec, const RolloutState& state, const ReportTally& target,
                                 const ReportTally& baseline);

// Where the window of `stage` stands at now_ms: nullopt without a window;
// EvaluateWindow's error for a zone the system does not know.
Result<std::optional<WindowStatus>> StageWindow(const RolloutSpec& spec, size_t stage, int64_t now_ms);

GateDecision EvaluateGates(const RolloutSpec& spec, const RolloutState& state, const StageStats& stats,
                           const GateContext& context);

// ---------------------------------------------------------------------------
// The rollout: spec, state and event log, changed only through Apply and Tick.

class Rollout {
 public:
  // Validates `spec` (see ValidateRolloutSpec) and the actor (1..128 bytes) and
  // reason (≤ 1024 bytes), and returns a rollout running stage 0 since now_ms
  // whose log holds one "start" event.
  static Result<Rollout> Start(RolloutSpec spec, int64_t now_ms, std::string_view actor,
                               std::string_view reason);
  // Rebuilds a persisted rollout. InvalidArgument unless the spec is valid, the
  // stage is in range, the events are numbered 1..n starting with "start", and
  // the last event's `after` equals StateString(state).
  static Result<Rollout> Restore(RolloutSpec spec, RolloutState state, std::vector<RolloutEvent> events);

  const RolloutSpec& spec() const { return spec_; }
  const RolloutState& state() const { return state_; }
  const std::vector<RolloutEvent>& events() const { return events_; }
  // Running or paused: the rollout still holds its model channel (see CheckNoConflict).
  bool active() const;

  // Applies one operator action (see the diagram above) at now_ms and appends
  // its event. OK; FailedPrecondition for an illegal transition (nothing
  // changes); InvalidArgument for kStart or a bad actor/reason;
  // ResourceExhausted when the log holds kRolloutEventsMax events — except for
  // abort and rollback, which stay possible so a full log never traps a
  // rollout (they end it, so the log stops one past the limit).
  Status Apply(RolloutAction action, int64_t now_ms, std::string_view actor, std::string_view reason);

  // Whether a report feeds this rollout's gates: the rollout is running or
  // paused, the report is about the target version and the terminal is in the
  // current stage's cohort. When it does, sets report->stage to the current
  // stage and returns true; otherwise returns false and leaves it alone (such a
  // report says nothing about the target here; keep it or drop it, but do not
  // add it to the tally).
  bool Admit(TerminalReport* report) const;
  // Whether a report is a baseline for the health rules: the rollout is
  // running or paused, the report is about previous_version (not empty) and
  // the terminal is eligible and in a region the current stage covers (with
  // waves, the wave's region). Sets report->stage as Admit does.
  bool AdmitBaseline(TerminalReport* report) const;

  // Evaluates the gates on the current stage's reports in `tally` (this
  // rollout's tally; only reports received since gate_since_ms count) and
  // applies the decision at context.now_ms with actor "gate": promote, or
  // pause / rollback per spec.on_breach. Returns the decision; kNone changes
  // nothing. Fails only with ResourceExhausted when the event log is full.
  Result<GateDecision> Tick(const ReportTally& tally, const GateContext& context);

 private:
  Rollout() = default;
  Status Append(RolloutAction action, const RolloutState& after, int64_t now_ms, std::string_view actor,
                std::string_view reason);

  RolloutSpec spec_;
  RolloutState state_;
  std::vector<RolloutEvent> events_;
};

// ---------------------------------------------------------------------------
// Target resolution: which version a terminal should run.
//
//   not eligible (filters)      -> previous_version, kNotEligible
//   running                     -> target if InCohort(current stage) (kInCohort), else previous (kNotInCohort)
//   completed                   -> target if InCohort(last stage), else previous: a rollout whose last
//                                  stage is below 100 % completes holding that share (with waves, in
//                                  every region)
//   paused, aborted             -> frozen, kHeld: a terminal already on the target keeps it, every
//                                  other one gets previous — nobody new moves while an operator looks
//                                  (paused) or after the operator stopped it (aborted)
//   rolled_back                 -> previous_version for everyone, kRolledBack
// An empty version means "no version": previous_version was empty.
// For a daemon holding several rollouts of one channel: consult the newest one
// the terminal is eligible for, and fall back to its own channel pointer.

enum class TargetReason { kNotEligible, kInCohort, kNotInCohort, kHeld, kRolledBack };
// "not_eligible", "in_cohort", "not_in_cohort", "held", "rolled_back".
std::string_view TargetReasonName(TargetReason reason);

struct TargetResolution {
  std::string version;
  TargetReason reason = TargetReason::kNotEligible;
};

TargetResolution ResolveTarget(const RolloutSpec& spec, const RolloutState& state, const TerminalInfo& terminal);

// ---------------------------------------------------------------------------
// Conflicts: at most one active (running or paused) rollout per model channel
// and region. Two rollouts overlap when model and channel are equal and their
// region lists intersect, an empty list meaning all regions. Profiles do not
// split a channel.

bool Overlaps(const RolloutSpec& a, const RolloutSpec& b);
// OK when `candidate` may start next to `existing`. AlreadyExists when one of
// them has the same id (whatever its state); FailedPrecondition naming the
// active rollout it overlaps otherwise. Null pointers are skipped.
Status CheckNoConflict(std::span<const Rollout* const> existing, const RolloutSpec& candidate);

// ---------------------------------------------------------------------------
// JSON (compact; strings that are not UTF-8 are written with U+FFFD). Parsers
// reject input above kRolloutJsonBytesMax, wrong types and unknown fields, with
// InvalidArgument naming the field.
//
// Spec:   {"id","model","target_version","previous_version","channel","regions":[],
//          "profiles":[],"canaries":[],"stages_percent":[1,10,50,100],"min_reports",
//          "max_failure_rate","soak_ms","auto_promote","on_breach":"pause"|"rollback",
//          "waves":false,"window":"Mon-Sat 02:00-05:00","time_zones":{"sg":"Asia/Singapore","*":"UTC"},
//          "health_rules":["latency_ms p95 +20%"],"health_min_terminals":5}
//          (waves absent = false; window and time_zones absent = none; health fields absent = the defaults)
// State:  {"phase":"running","stage":0,"gate_since_ms":…,"updated_ms":…}
// Event:  {"seq":1,"time_ms":…,"actor","action":"start","reason","before","after"}
// Rollout:{"spec":{…},"state":{…},"events":[…]}
// Report: {"terminal_id","profile","region","version","stage","outcome":"success"|"failure",
//          "reason","health":{"latency_ms":12.5},"received_ms":…}

std::string RolloutSpecToJson(const RolloutSpec& spec);
// An operator's spec (a request body). Types only: absent optional fields
// keep their defaults and id, model and target_version may be absent, so the
// daemon can fill in what the operator leaves to it (id, previous_version)
// before ValidateRolloutSpec. An unknown field is refused (a typo).
Result<RolloutSpec> ParseRolloutSpecJson(std::string_view json);
// A spec Meridian wrote (in a channel state): unknown fields are ignored, as
// in every parser below (see base/json.h), then ValidateRolloutSpec.
Result<RolloutSpec> RolloutSpecFromJson(std::string_view json);

// The state and event parsers check types only; RolloutFromJson checks that
// spec, state and log fit together.
std::string RolloutStateToJson(const RolloutState& state);
Result<RolloutState> RolloutStateFromJson(std::string_view json);

std::string RolloutEventToJson(const RolloutEvent& event);
Result<RolloutEvent> RolloutEventFromJson(std::string_view json);

std::string RolloutToJson(const Rollout& rollout);
// Parses all three parts, then Rollout::Restore.
Result<Rollout> RolloutFromJson(std::string_view json);

// The stored form of a report, not the agents' wire format: the daemon maps
// what an agent sends (install steps, health check) to a TerminalReport.
std::string ReportToJson(const TerminalReport& report);
// Parses, then ValidateReport. received_ms and stage default to 0 when absent
// (the daemon sets them on receipt).
Result<TerminalReport> ReportFromJson(std::string_view json);

}  // namespace meridian
