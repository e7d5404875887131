// Tests of rollout/: cohorts, spec validation, the state machine and its audit
// log, report counting, gates on a fake clock, target resolution, conflicts, JSON.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "rollout/cohort_count.h"
#include "rollout/rollout.h"

using namespace meridian;
using namespace std::chrono_literals;

namespace {

RolloutSpec SampleSpec() {
  RolloutSpec s;
  s.id = "r-2026-11-24";
  s.model = "fraud-detector";
  s.target_version = "1.3.0";
  s.previous_version = "1.2.0";
  s.stages_percent = {1, 10, 50, 100};
  s.min_reports = 5;
  s.max_failure_rate = 0.2;
  s.soak_ms = 3'600'000;
  s.auto_promote = true;
  return s;
}

Rollout StartOrDie(const RolloutSpec& spec, int64_t now_ms) {
  Result<Rollout> r = Rollout::Start(spec, now_ms, "alice", "weekly model refresh");
  REQUIRE(r.ok());
  return std::move(r).value();
}

TerminalInfo Terminal(std::string id, std::string current = "1.2.0") {
  return {std::move(id), "pos-arm64", "sg", std::move(current)};
}

TerminalReport Report(std::string id, ReportOutcome outcome, int64_t received_ms, uint32_t stage = 0) {
  TerminalReport r;
  r.terminal_id = std::move(id);
  r.version = "1.3.0";
  r.stage = stage;
  r.outcome = outcome;
  r.received_ms = received_ms;
  return r;
}

// The first terminal id "t-<n>" whose bucket in `rollout_id` satisfies `pred`.
template <typename Pred>
std::string FindTerminal(std::string_view rollout_id, Pred pred) {
  for (int n = 0;; ++n) {
    std::string id = fmt::format("t-{}", n);
    if (pred(CohortBucket(rollout_id, id))) return id;
  }
}

}  // namespace

TEST_CASE("cohort buckets follow the documented hash rule") {
  // Known answers from Python (docs/formats/target.md):
  //   w = lambda d, at: int.from_bytes(d[at:at + 8], "big")
  //   s = sha256(b"r1").digest(); m = w(s, 0) % 10000 | 1; m = m + 2 if m % 5 == 0 else m
  //   (m * (w(sha256(b"t1").digest(), 0) % 10000) + w(s, 8) % 10000) % 10000
  CHECK(CohortBucket("r1", "t1") == 4896);
  CHECK(CohortBucket("rollout-a", "terminal-0001") == 2835);
}

TEST_CASE("over 100,000 random terminals each stage holds its percent and contains the one before") {
  RolloutSpec spec = SampleSpec();
  std::mt19937_64 rng(20261124);
  constexpr int kTerminals = 100'000;
  std::vector<int> counts(spec.stages_percent.size(), 0);
  for (int i = 0; i < kTerminals; ++i) {
    TerminalInfo t = Terminal(fmt::format("term-{:016x}", rng()));
    bool in_before = false;
    for (size_t k = 0; k < spec.stages_percent.size(); ++k) {
      bool in = InCohort(spec, k, t);
      if (in_before) REQUIRE(in);  // monotone: nobody leaves a later stage
      counts[k] += in ? 1 : 0;
      in_before = in;
    }
  }
  for (size_t k = 0; k < counts.size(); ++k) {
    double percent = 100.0 * counts[k] / kTerminals;
    INFO("stage " << k << " holds " << percent << "%");
    CHECK(std::fabs(percent - spec.stages_percent[k]) <= 0.5);
  }
  CHECK(counts.back() == kTerminals);
}

TEST_CASE("the rollout id salts cohorts, so each rollout picks a different first stage") {
  RolloutSpec a = SampleSpec(), b = SampleSpec();
  b.id = "r-other";
  int in_a = 0, in_both = 0;
  for (int i = 0; i < 20'000; ++i) {
    TerminalInfo t = Terminal(fmt::format("t-{}", i));
    bool ia = InCohort(a, 1, t), ib = InCohort(b, 1, t);
    in_a += ia;
    in_both += ia && ib;
  }
  CHECK(in_a > 1500);
  CHECK(in_both < in_a / 4);  // independent 10 % samples share about 1 %, not 10 %
}

TEST_CASE("fractional percents bound whole buckets") {
  RolloutSpec spec = SampleSpec();
  spec.stages_percent = {0.07, 0.08, 0.5, 100};
  REQUIRE(ValidateRolloutSpec(spec).ok());
  // 0.07 × 100 is 7.000000000000001 in floating point; bucket 7 must still be out.
  TerminalInfo seven = Terminal(FindTerminal(spec.id, [](uint32_t b) { return b == 7; }));
  CHECK_FALSE(InCohort(spec, 0, seven));
  CHECK(InCohort(spec, 1, seven));
  TerminalInfo six = Terminal(FindTerminal(spec.id, [](uint32_t b) { return b == 6; }));
  CHECK(InCohort(spec, 0, six));
}

TEST_CASE("canaries are in every stage; filters decide who is eligible at all") {
  RolloutSpec spec = SampleSpec();
  std::string late = FindTerminal(spec.id, [](uint32_t b) { return b >= 9000; });
  spec.canaries = {late};
  spec.stages_percent = {1, 10, 50};
  for (size_t k = 0; k < spec.stages_percent.size(); ++k) CHECK(InCohort(spec, k, Terminal(late)));
  CHECK_FALSE(InCohort(spec, 3, Terminal(late)));  // past the last stage

  std::string early = FindTerminal(spec.id, [](uint32_t b) { return b < 100; });
  spec.regions = {"sg", "ae"};
  spec.profiles = {"pos-arm64"};
  CHECK(InCohort(spec, 0, Terminal(early)));
  TerminalInfo elsewhere = Terminal(early);
  elsewhere.region = "br";
  CHECK_FALSE(IsEligible(spec, elsewhere));
  CHECK_FALSE(InCohort(spec, 2, elsewhere));
  TerminalInfo kiosk = Terminal(early);
  kiosk.profile = "kiosk-x86";
  CHECK_FALSE(InCohort(spec, 0, kiosk));
  TerminalInfo canary_elsewhere = Terminal(late);
  canary_elsewhere.region = "br";
  CHECK_FALSE(InCohort(spec, 0, canary_elsewhere));
}

TEST_CASE("a canary its own filters exclude is refused, naming it and the filter") {
  RolloutSpec spec = SampleSpec();
  spec.canaries = {"pos-1", "kiosk-1", "never-seen"};
  TerminalInfo pos = Terminal("pos-1"), kiosk = Terminal("kiosk-1"), other = Terminal("not-a-canary");
  kiosk.profile = "kiosk-x86";
  other.profile = "kiosk-x86";
  std::vector<TerminalInfo> known = {pos, kiosk, other};
  // No filters: everyone is eligible.
  CHECK(CheckCanariesEligible(spec, known).ok());

  spec.profiles = {"pos-arm64"};
  Status st = CheckCanariesEligible(spec, known);
  CHECK(st.code() == Status::Code::kInvalidArgument);
  CHECK(IsCanaryExcluded(st));
  CHECK_THAT(st.message(), Catch::StartsWith("canary_excluded: canary 'kiosk-1'") &&
                               Catch::Contains("profiles [pos-arm64]") && Catch::Contains("'kiosk-x86'"));
  CHECK_FALSE(IsCanaryExcluded(ValidateRolloutSpec(RolloutSpec{})));

  // A region list excludes as well; both filters are named when both exclude.
  spec.profiles = {};
  spec.regions = {"ae"};
  st = CheckCanariesEligible(spec, known);
  CHECK_THAT(st.message(), Catch::Contains("regions [ae] (it is in region 'sg')"));
  spec.profiles = {"pos-arm64"};
  CHECK_THAT(CheckCanariesEligible(spec, {&kiosk, 1}).message(), Catch::Contains("regions [ae]") &&
                                                                     Catch::Contains(" and profiles [pos-arm64]"));

  // Eligible canaries, terminals that are not canaries, and canaries nobody
  // has heard of pass.
  spec.regions = {"sg"};
  CHECK(CheckCanariesEligible(spec, std::vector<TerminalInfo>{pos, other}).ok());
  CHECK(CheckCanariesEligible(spec, {}).ok());
}

TEST_CASE("spec validation names what is wrong") {
  CHECK(ValidateRolloutSpec(SampleSpec()).ok());
  RolloutSpec partial = SampleSpec();
  partial.stages_percent = {5, 25};  // a rollout may stop below 100 %
  partial.previous_version = "";     // the channel's first version
  CHECK(ValidateRolloutSpec(partial).ok());

  struct Case {
    const char* field;
    void (*mutate)(RolloutSpec&);
  };
  const Case cases[] = {
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {}; }},
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {1, 10, 10, 100}; }},
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {1, 50, 10}; }},
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {1, 10, 150}; }},
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {0, 10}; }},
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {-1, 10}; }},
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {std::nan(""), 10}; }},
      {"stages_percent", [](RolloutSpec& s) { s.stages_percent = {0.333, 10}; }},
      {"max_failure_rate", [](RolloutSpec& s) { s.max_failure_rate = 1.5; }},
      {"max_failure_rate", [](RolloutSpec& s) { s.max_failure_rate = -0.1; }},
      {"max_failure_rate", [](RolloutSpec& s) { s.max_failure_rate = std::nan(""); }},
      {"soak_ms", [](RolloutSpec& s) { s.soak_ms = -1; }},
      {"soak_ms", [](RolloutSpec& s) { s.soak_ms = kRolloutSoakMsMax + 1; }},
      {"id", [](RolloutSpec& s) { s.id = "a:b"; }},
      {"id", [](RolloutSpec& s) { s.id = "../x"; }},
      {"model", [](RolloutSpec& s) { s.model = "Fraud"; }},
      {"target_version", [](RolloutSpec& s) { s.target_version = "v2"; }},
      {"previous_version", [](RolloutSpec& s) { s.previous_version = "1.3.0"; }},
      {"channel", [](RolloutSpec& s) { s.channel = ""; }},
      {"regions", [](RolloutSpec& s) { s.regions = {"sg", "sg"}; }},
      {"regions", [](RolloutSpec& s) { s.regions = {"SG"}; }},
      {"profiles", [](RolloutSpec& s) { s.profiles = {"a b"}; }},
      {"canaries", [](RolloutSpec& s) { s.canaries = {"bad id"}; }},
      {"min_reports", [](RolloutSpec& s) { s.min_reports = kRolloutMinReportsMax + 1; }},
      {"waves", [](RolloutSpec& s) { s.waves = true; }},  // waves need the regions in order
  };
  for (const Case& c : cases) {
    RolloutSpec s = SampleSpec();
    c.mutate(s);
    Status st = ValidateRolloutSpec(s);
    INFO(c.field << ": " << st.ToString());
    CHECK(st.code() == Status::Code::kInvalidArgument);
    CHECK(st.message().find(c.field) != std::string::npos);
  }
}

TEST_CASE("the state machine walks the legal path and logs every change") {
  FakeClock clock;
  Rollout r = StartOrDie(SampleSpec(), clock.NowUnixMillis());
  REQUIRE(r.events().size() == 1);
  CHECK(r.events()[0].action == RolloutAction::kStart);
  CHECK(r.events()[0].before.empty());
  CHECK(r.events()[0].after == "running(0)");
  CHECK(r.active());

  clock.Advance(1min);
  REQUIRE(r.Apply(RolloutAction::kPromote, clock.NowUnixMillis(), "alice", "looks good").ok());
  CHECK(r.state().stage == 1);
  CHECK(r.state().gate_since_ms == clock.NowUnixMillis());
  REQUIRE(r.Apply(RolloutAction::kPause, clock.NowUnixMillis(), "bob", "weekend").ok());
  CHECK(r.state().phase == RolloutPhase::kPaused);
  clock.Advance(2min);
  REQUIRE(r.Apply(RolloutAction::kResume, clock.NowUnixMillis(), "bob", "").ok());
  CHECK(r.state().phase == RolloutPhase::kRunning);
  CHECK(r.state().stage == 1);
  CHECK(r.state().gate_since_ms == clock.NowUnixMillis());  // the gates judge the resumed stage afresh
  REQUIRE(r.Apply(RolloutAction::kPromote, clock.NowUnixMillis(), "alice", "").ok());
  REQUIRE(r.Apply(RolloutAction::kPromote, clock.NowUnixMillis(), "alice", "").ok());
  CHECK(r.state().stage == 3);
  REQUIRE(r.Apply(RolloutAction::kPromote, clock.NowUnixMillis(), "alice", "all good").ok());
  CHECK(r.state().phase == RolloutPhase::kCompleted);
  CHECK_FALSE(r.active());
  REQUIRE(r.Apply(RolloutAction::kRollback, clock.NowUnixMillis(), "carol", "latency regression").ok());
  CHECK(r.state().phase == RolloutPhase::kRolledBack);

  const std::vector<RolloutEvent>& ev = r.events();
  REQUIRE(ev.size() == 8);
  for (size_t i = 0; i < ev.size(); ++i) {
    CHECK(ev[i].seq == i + 1);
    if (i > 0) CHECK(ev[i].before == ev[i - 1].after);
  }
  CHECK(ev[1].action == RolloutAction::kPromote);
  CHECK(ev[1].actor == "alice");
  CHECK(ev[1].reason == "looks good");
  CHECK(ev[1].before == "running(0)");
  CHECK(ev[1].after == "running(1)");
  CHECK(ev[2].after == "paused(1)");
  CHECK(ev[2].time_ms == clock.NowUnixMillis() - 120'000);
  CHECK(ev[6].before == "running(3)");
  CHECK(ev[6].after == "completed(3)");
  CHECK(ev[7].action == RolloutAction::kRollback);
  CHECK(ev[7].after == "rolled_back(3)");
}

TEST_CASE("the state machine rejects illegal transitions and changes nothing") {
  FakeClock clock;
  auto expect_refused = [&](Rollout& r, RolloutAction a) {
    size_t events = r.events().size();
    RolloutState before = r.state();
    Status st = r.Apply(a, clock.NowUnixMillis(), "alice", "");
    INFO(ActionName(a) << " in " << StateString(before) << ": " << st.ToString());
    CHECK(st.code() == Status::Code::kFailedPrecondition);
    CHECK(st.message().find(PhaseName(before.phase)) != std::string::npos);
    CHECK(r.events().size() == events);
    CHECK(r.state() == before);
  };
  RolloutSpec one_stage = SampleSpec();
  one_stage.stages_percent = {100};

  Rollout running = StartOrDie(SampleSpec(), clock.NowUnixMillis());
  expect_refused(running, RolloutAction::kResume);
  CHECK(running.Apply(RolloutAction::kStart, clock.NowUnixMillis(), "alice", "").code() ==
        Status::Code::kInvalidArgument);
  CHECK(running.Apply(RolloutAction::kPause, clock.NowUnixMillis(), "", "").code() == Status::Code::kInvalidArgument);
  CHECK(running.Apply(RolloutAction::kPause, clock.NowUnixMillis(), "a",
                      std::string(kRolloutReasonBytesMax + 1, 'x')).code() == Status::Code::kInvalidArgument);

  Rollout paused = StartOrDie(SampleSpec(), clock.NowUnixMillis());
  REQUIRE(paused.Apply(RolloutAction::kPause, clock.NowUnixMillis(), "alice", "").ok());
  expect_refused(paused, RolloutAction::kPause);
  expect_refused(paused, RolloutAction::kPromote);

  Rollout completed = StartOrDie(one_stage, clock.NowUnixMillis());
  REQUIRE(completed.Apply(RolloutAction::kPromote, clock.NowUnixMillis(), "alice", "").ok());
  REQUIRE(completed.state().phase == RolloutPhase::kCompleted);
  for (RolloutAction a : {RolloutAction::kPromote, RolloutAction::kPause, RolloutAction::kResume,
                          RolloutAction::kAbort}) {
    expect_refused(completed, a);
  }

  Rollout aborted = StartOrDie(SampleSpec(), clock.NowUnixMillis());
  REQUIRE(aborted.Apply(RolloutAction::kAbort, clock.NowUnixMillis(), "alice", "").ok());
  Rollout rolled_back = StartOrDie(SampleSpec(), clock.NowUnixMillis());
  REQUIRE(rolled_back.Apply(RolloutAction::kRollback, clock.NowUnixMillis(), "alice", "").ok());
  for (Rollout* r : {&aborted, &rolled_back}) {
    for (RolloutAction a : {RolloutAction::kPromote, RolloutAction::kPause, RolloutAction::kResume,
                            RolloutAction::kAbort, RolloutAction::kRollback}) {
      expect_refused(*r, a);
    }
  }
}

TEST_CASE("action names parse back") {
  for (RolloutAction a : {RolloutAction::kStart, RolloutAction::kPromote, RolloutAction::kPause,
                          RolloutAction::kResume, RolloutAction::kAbort, RolloutAction::kRollback}) {
    Result<RolloutAction> back = ParseRolloutAction(ActionName(a));
    REQUIRE(back.ok());
    CHECK(*back == a);
  }
  CHECK(ParseRolloutAction("restart").status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("the event log is bounded, but abort and rollback stay possible") {
  Rollout r = StartOrDie(SampleSpec(), 0);
  int64_t t = 0;
  while (r.events().size() < kRolloutEventsMax) {
    RolloutAction a = r.state().phase == RolloutPhase::kRunning ? RolloutAction::kPause : RolloutAction::kResume;
    REQUIRE(r.Apply(a, ++t, "alice", "").ok());
  }
  RolloutAction next = r.state().phase == RolloutPhase::kRunning ? RolloutAction::kPause : RolloutAction::kResume;
  CHECK(r.Apply(next, ++t, "alice", "").code() == Status::Code::kResourceExhausted);
  CHECK(r.Apply(RolloutAction::kPromote, ++t, "alice", "").code() != Status::Code::kOk);
  REQUIRE(r.Apply(RolloutAction::kRollback, ++t, "alice", "enough").ok());
  CHECK(r.events().size() == kRolloutEventsMax + 1);
  Result<Rollout> back = RolloutFromJson(RolloutToJson(r));
  REQUIRE(back.ok());
  CHECK(back->events().size() == kRolloutEventsMax + 1);
}

TEST_CASE("a terminal counts once per stage, by its latest report") {
  ReportTally tally;
  for (int i = 0; i < 3; ++i) REQUIRE(tally.Add(Report("t-1", ReportOutcome::kFailure, 100 + i)).ok());
  CHECK(tally.Stats(0) == StageStats{1, 0, 1, 1.0});

  // Fixed and reinstalled: the later success replaces the failure.
  REQUIRE(tally.Add(Report("t-1", ReportOutcome::kSuccess, 200)).ok());
  CHECK(tally.Stats(0) == StageStats{1, 1, 0, 0.0});
  // An older report arriving late (a rebuild from storage in any order) does not win.
  REQUIRE(tally.Add(Report("t-1", ReportOutcome::kFailure, 150)).ok());
  CHECK(tally.Stats(0) == StageStats{1, 1, 0, 0.0});

  REQUIRE(tally.Add(Report("t-2", ReportOutcome::kFailure, 300)).ok());
  REQUIRE(tally.Add(Report("t-1", ReportOutcome::kFailure, 300, 1)).ok());  // a new stage counts anew
  CHECK(tally.Stats(0) == StageStats{2, 1, 1, 0.5});
  CHECK(tally.Stats(1) == StageStats{1, 0, 1, 1.0});
  CHECK(tally.Stats(2) == StageStats{});
  CHECK(tally.Stats(UINT32_MAX) == StageStats{});
  CHECK(tally.Stats(0, 250) == StageStats{1, 0, 1, 1.0});  // only reports since 250
  CHECK(tally.size() == 3);

  TerminalReport bad = Report("bad id", ReportOutcome::kSuccess, 0);
  CHECK(tally.Add(bad).code() == Status::Code::kInvalidArgument);
  bad = Report("t-3", ReportOutcome::kSuccess, 0);
  bad.health["latency_ms"] = std::numeric_limits<double>::infinity();
  CHECK(tally.Add(bad).code() == Status::Code::kInvalidArgument);
}

TEST_CASE("only reports about the target from the current cohort feed the gates") {
  RolloutSpec spec = SampleSpec();
  Rollout r = StartOrDie(spec, 0);
  std::string in = FindTerminal(spec.id, [](uint32_t b) { return b < 100; });
  std::string later = FindTerminal(spec.id, [](uint32_t b) { return b >= 100 && b < 1000; });

  TerminalReport rep = Report(in, ReportOutcome::kSuccess, 1, 7);
  rep.profile = "pos-arm64";
  rep.region = "sg";
  CHECK(r.Admit(&rep));
  CHECK(rep.stage == 0);
  TerminalReport old_version = rep;
  old_version.version = "1.2.0";
  CHECK_FALSE(r.Admit(&old_version));
  TerminalReport outside = Report(later, ReportOutcome::kFailure, 1);
  CHECK_FALSE(r.Admit(&outside));

  REQUIRE(r.Apply(RolloutAction::kPromote, 2, "alice", "").ok());
  CHECK(r.Admit(&outside));
  CHECK(outside.stage == 1);
  REQUIRE(r.Apply(RolloutAction::kAbort, 3, "alice", "").ok());
  CHECK_FALSE(r.Admit(&rep));
}

TEST_CASE("gates on a fake clock: soak, min_reports, breach") {
  FakeClock clock;
  RolloutSpec spec = SampleSpec();  // min_reports 5, max_failure_rate 0.2, soak 1 h, auto_promote
  auto fill = [&](ReportTally& tally, uint32_t stage, int successes, int failures) {
    for (int i = 0; i < successes + failures; ++i) {
      ReportOutcome o = i < successes ? ReportOutcome::kSuccess : ReportOutcome::kFailure;
      REQUIRE(tally.Add(Report(fmt::format("s{}-t{}", stage, i), o, clock.NowUnixMillis(), stage)).ok());
    }
  };

  SECTION("soak not reached: no promote; reached: promote by the gate") {
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    ReportTally tally;
    fill(tally, 0, 5, 0);
    clock.Advance(59min);
    Result<GateDecision> d = r.Tick(tally, GateContext::At(clock.NowUnixMillis()));
    REQUIRE(d.ok());
    CHECK(d->verdict == GateVerdict::kNone);
    CHECK(r.state().stage == 0);
    CHECK(r.events().size() == 1);

    clock.Advance(1min);
    d = r.Tick(tally, GateContext::At(clock.NowUnixMillis()));
    REQUIRE(d.ok());
    CHECK(d->verdict == GateVerdict::kPromote);
    CHECK(r.state().stage == 1);
    CHECK(r.events().back().actor == kGateActor);
    CHECK(r.events().back().action == RolloutAction::kPromote);
    CHECK(r.events().back().reason == d->reason);

    // The new stage needs its own reports: stage 0's successes do not carry over.
    clock.Advance(2h);
    CHECK(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kNone);
    CHECK(r.state().stage == 1);
    fill(tally, 1, 5, 0);
    CHECK(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kPromote);
    CHECK(r.state().stage == 2);
  }

  SECTION("manual rollouts are never promoted by the gate") {
    spec.auto_promote = false;
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    ReportTally tally;
    fill(tally, 0, 50, 0);
    clock.Advance(24h);
    CHECK(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kNone);
    CHECK(r.state().stage == 0);
  }

  SECTION("fewer than min_reports: no decision, even when all failed") {
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    ReportTally tally;
    fill(tally, 0, 0, 4);
    clock.Advance(2h);
    Result<GateDecision> d = r.Tick(tally, GateContext::At(clock.NowUnixMillis()));
    CHECK(d->verdict == GateVerdict::kNone);
    CHECK(r.state().phase == RolloutPhase::kRunning);
  }

  SECTION("failure rate over the threshold pauses, and resume judges afresh") {
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    ReportTally tally;
    fill(tally, 0, 3, 2);  // 0.4 > 0.2
    Result<GateDecision> d = r.Tick(tally, GateContext::At(clock.NowUnixMillis()));
    REQUIRE(d.ok());
    CHECK(d->verdict == GateVerdict::kBreach);
    CHECK(r.state().phase == RolloutPhase::kPaused);
    CHECK(r.events().back().actor == kGateActor);
    CHECK(r.events().back().action == RolloutAction::kPause);
    CHECK(r.events().back().after == "paused(0)");
    CHECK(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kNone);  // paused: no gates

    clock.Advance(10min);
    REQUIRE(r.Apply(RolloutAction::kResume, clock.NowUnixMillis(), "alice", "false alarm").ok());
    CHECK(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kNone);  // old failures ignored
    CHECK(r.state().phase == RolloutPhase::kRunning);
  }

  SECTION("failure rate at the threshold is not a breach") {
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    ReportTally tally;
    fill(tally, 0, 4, 1);  // 0.2, not above 0.2; 4 successes < min_reports 5: wait
    CHECK(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kNone);
    CHECK(r.state().phase == RolloutPhase::kRunning);
  }

  SECTION("failure rate over the threshold rolls back when so configured") {
    spec.on_breach = BreachAction::kRollback;
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    ReportTally tally;
    fill(tally, 0, 0, 5);
    Result<GateDecision> d = r.Tick(tally, GateContext::At(clock.NowUnixMillis()));
    REQUIRE(d.ok());
    CHECK(d->verdict == GateVerdict::kBreach);
    CHECK(r.state().phase == RolloutPhase::kRolledBack);
    CHECK(r.events().back().action == RolloutAction::kRollback);
    CHECK(r.events().back().actor == kGateActor);
    CHECK(ResolveTarget(r.spec(), r.state(), Terminal("any", "1.3.0")).version == "1.2.0");
  }

  SECTION("the last stage completes") {
    spec.stages_percent = {100};
    spec.soak_ms = 0;
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    ReportTally tally;
    fill(tally, 0, 5, 0);
    CHECK(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kPromote);
    CHECK(r.state().phase == RolloutPhase::kCompleted);
  }
}

TEST_CASE("EvaluateGates is a pure function of spec, state, stats and time") {
  RolloutSpec spec = SampleSpec();
  RolloutState state{RolloutPhase::kRunning, 0, 1000, 1000};
  CHECK(EvaluateGates(spec, state, {5, 5, 0, 0.0}, GateContext::At(1000 + spec.soak_ms)).verdict == GateVerdict::kPromote);
  CHECK(EvaluateGates(spec, state, {5, 5, 0, 0.0}, GateContext::At(999 + spec.soak_ms)).verdict == GateVerdict::kNone);
  CHECK(EvaluateGates(spec, state, {10, 7, 3, 0.3}, GateContext::At(0)).verdict == GateVerdict::kBreach);
  state.phase = RolloutPhase::kPaused;
  CHECK(EvaluateGates(spec, state, {10, 7, 3, 0.3}, GateContext::At(0)).verdict == GateVerdict::kNone);
}

TEST_CASE("target resolution follows the state") {
  RolloutSpec spec = SampleSpec();
  std::string in0 = FindTerminal(spec.id, [](uint32_t b) { return b < 100; });
  std::string in2 = FindTerminal(spec.id, [](uint32_t b) { return b >= 1000 && b < 5000; });
  std::string out = FindTerminal(spec.id, [](uint32_t b) { return b >= 5000; });
  RolloutState state{RolloutPhase::kRunning, 0, 0, 0};
  auto resolve = [&](const std::string& id, std::string current = "1.2.0") {
    return ResolveTarget(spec, state, Terminal(id, std::move(current)));
  };

  CHECK(resolve(in0).version == "1.3.0");
  CHECK(resolve(in0).reason == TargetReason::kInCohort);
  CHECK(resolve(in2).version == "1.2.0");
  CHECK(resolve(in2).reason == TargetReason::kNotInCohort);
  state.stage = 2;
  CHECK(resolve(in2).version == "1.3.0");
  CHECK(resolve(out).version == "1.2.0");

  // Paused and aborted freeze: who moved keeps the target, nobody new moves.
  for (RolloutPhase frozen : {RolloutPhase::kPaused, RolloutPhase::kAborted}) {
    state.phase = frozen;
    CHECK(resolve(in2, "1.3.0").version == "1.3.0");
    CHECK(resolve(in2, "1.2.0").version == "1.2.0");
    CHECK(resolve(in2, "1.2.0").reason == TargetReason::kHeld);
    CHECK(resolve(out, "1.1.0").version == "1.2.0");
  }

  state = {RolloutPhase::kCompleted, 3, 0, 0};
  CHECK(resolve(out).version == "1.3.0");
  state.phase = RolloutPhase::kRolledBack;
  CHECK(resolve(in0, "1.3.0").version == "1.2.0");
  CHECK(resolve(in0, "1.3.0").reason == TargetReason::kRolledBack);

  // A rollout whose last stage is 50 % completes holding that share.
  spec.stages_percent = {10, 50};
  state = {RolloutPhase::kCompleted, 1, 0, 0};
  CHECK(resolve(in2).version == "1.3.0");
  CHECK(resolve(out).version == "1.2.0");

  spec.regions = {"ae"};
  CHECK(resolve(in0).reason == TargetReason::kNotEligible);
  CHECK(resolve(in0).version == "1.2.0");
  CHECK(TargetReasonName(TargetReason::kNotEligible) == "not_eligible");
}

TEST_CASE("at most one active rollout per model channel and region") {
  FakeClock clock;
  RolloutSpec base = SampleSpec();
  base.regions = {"sg", "ae"};
  Rollout active = StartOrDie(base, clock.NowUnixMillis());
  std::vector<const Rollout*> existing = {&active, nullptr};

  RolloutSpec next = base;
  next.id = "r-next";
  next.regions = {"ae", "br"};
  Status st = CheckNoConflict(existing, next);
  CHECK(st.code() == Status::Code::kFailedPrecondition);
  CHECK(st.message().find(base.id) != std::string::npos);
  next.regions = {};  // all regions
  CHECK(CheckNoConflict(existing, next).code() == Status::Code::kFailedPrecondition);
  next.regions = {"br"};
  CHECK(CheckNoConflict(existing, next).ok());
  next.regions = {"sg"};
  next.channel = "beta";
  CHECK(CheckNoConflict(existing, next).ok());
  next.channel = "stable";
  next.model = "other-model";
  CHECK(CheckNoConflict(existing, next).ok());
  next.model = base.model;

  REQUIRE(active.Apply(RolloutAction::kPause, clock.NowUnixMillis(), "alice", "").ok());
  CHECK(CheckNoConflict(existing, next).code() == Status::Code::kFailedPrecondition);
  REQUIRE(active.Apply(RolloutAction::kAbort, clock.NowUnixMillis(), "alice", "").ok());
  CHECK(CheckNoConflict(existing, next).ok());

  next.id = base.id;
  CHECK(CheckNoConflict(existing, next).code() == Status::Code::kAlreadyExists);
}

TEST_CASE("JSON round-trips spec, state, events, rollouts and reports") {
  RolloutSpec spec = SampleSpec();
  spec.regions = {"sg", "ae"};
  spec.profiles = {"pos-arm64"};
  spec.canaries = {"t-canary-1", "site:42"};
  spec.stages_percent = {0.5, 5, 33.33, 100};
  spec.max_failure_rate = 0.05;
  spec.on_breach = BreachAction::kRollback;
  Result<RolloutSpec> spec_back = RolloutSpecFromJson(RolloutSpecToJson(spec));
  REQUIRE(spec_back.ok());
  CHECK(*spec_back == spec);

  FakeClock clock;
  Rollout r = StartOrDie(spec, clock.NowUnixMillis());
  clock.Advance(1h);
  REQUIRE(r.Apply(RolloutAction::kPromote, clock.NowUnixMillis(), "alice", "quote \" and ünïcode").ok());
  REQUIRE(r.Apply(RolloutAction::kPause, clock.NowUnixMillis(), "gate", "failure rate 0.4").ok());

  Result<RolloutState> state_back = RolloutStateFromJson(RolloutStateToJson(r.state()));
  REQUIRE(state_back.ok());
  CHECK(*state_back == r.state());
  Result<RolloutEvent> event_back = RolloutEventFromJson(RolloutEventToJson(r.events()[1]));
  REQUIRE(event_back.ok());
  CHECK(*event_back == r.events()[1]);

  Result<Rollout> back = RolloutFromJson(RolloutToJson(r));
  REQUIRE(back.ok());
  CHECK(back->spec() == r.spec());
  CHECK(back->state() == r.state());
  CHECK(back->events() == r.events());
  // The restored rollout carries on where the original stood.
  CHECK(back->Apply(RolloutAction::kResume, clock.NowUnixMillis(), "alice", "").ok());

  TerminalReport rep = Report("t-1", ReportOutcome::kFailure, 1'700'000'000'123, 2);
  rep.profile = "pos-arm64";
  rep.region = "sg";
  rep.reason = "health check failed";
  rep.health = {{"latency_ms", 12.5}, {"error_rate", 0.01}};
  Result<TerminalReport> rep_back = ReportFromJson(ReportToJson(rep));
  REQUIRE(rep_back.ok());
  CHECK(*rep_back == rep);
}

TEST_CASE("JSON parsers reject bad input without throwing") {
  auto invalid = [](const Status& st) { return st.code() == Status::Code::kInvalidArgument; };
  CHECK(invalid(RolloutSpecFromJson("").status()));
  CHECK(invalid(RolloutSpecFromJson("[1,2]").status()));
  CHECK(invalid(RolloutSpecFromJson("{\"id\":").status()));
  CHECK(invalid(RolloutSpecFromJson(std::string(kRolloutJsonBytesMax + 1, ' ')).status()));

  // The sample spec's JSON with one field set to `value` (JSON text).
  auto with = [](const char* key, const char* value) {
    nlohmann::json j = nlohmann::json::parse(RolloutSpecToJson(SampleSpec()));
    j[key] = nlohmann::json::parse(value);
    return j.dump();
  };
  // A typo in an operator's spec is refused; a field from a newer Meridian in
  // a spec it wrote (a channel state's) is read past.
  Status typo = ParseRolloutSpecJson(with("stages", R"([1,2])")).status();
  CHECK(invalid(typo));
  CHECK(typo.message() == "rollout spec: unknown field 'stages'");
  CHECK(RolloutSpecFromJson(with("stages", R"([1,2])")).ok());
  CHECK(invalid(RolloutSpecFromJson(with("min_reports", R"(-1)")).status()));
  CHECK(invalid(RolloutSpecFromJson(with("min_reports", R"(1.5)")).status()));
  CHECK(invalid(RolloutSpecFromJson(with("soak_ms", R"("1h")")).status()));
  CHECK(invalid(RolloutSpecFromJson(with("on_breach", R"("explode")")).status()));
  CHECK(invalid(RolloutSpecFromJson(with("stages_percent", R"([1,"10"])")).status()));
  CHECK(invalid(RolloutSpecFromJson(with("regions", R"("sg")")).status()));
  Status not_increasing = RolloutSpecFromJson(with("stages_percent", R"([10,5])")).status();
  CHECK(invalid(not_increasing));
  CHECK(not_increasing.message().find("stages_percent") != std::string::npos);
  CHECK(invalid(RolloutSpecFromJson(with("stages_percent", R"([1,10,101])")).status()));

  // Parse-only leaves room for the daemon to fill in the id and previous version.
  Result<RolloutSpec> request =
      ParseRolloutSpecJson(R"({"model":"fraud-detector","target_version":"2.0.0","stages_percent":[5,100]})");
  REQUIRE(request.ok());
  CHECK(request->channel == "stable");
  CHECK(invalid(ValidateRolloutSpec(*request)));
  request->id = "r-1";
  CHECK(ValidateRolloutSpec(*request).ok());

  // A persisted rollout whose log does not lead to its state is refused.
  FakeClock clock;
  Rollout r = StartOrDie(SampleSpec(), clock.NowUnixMillis());
  REQUIRE(r.Apply(RolloutAction::kPromote, clock.NowUnixMillis(), "alice", "").ok());
  std::string json = RolloutToJson(r);
  CHECK(RolloutFromJson(json).ok());
  std::string tampered = json;
  tampered.replace(tampered.find("\"stage\":1"), 9, "\"stage\":2");
  CHECK(invalid(RolloutFromJson(tampered).status()));
  CHECK(invalid(Rollout::Restore(r.spec(), r.state(), {}).status()));
  std::vector<RolloutEvent> gap = r.events();
  gap[1].seq = 5;
  CHECK(invalid(Rollout::Restore(r.spec(), r.state(), gap).status()));
  RolloutState completed_early = r.state();
  completed_early.phase = RolloutPhase::kCompleted;
  CHECK(invalid(Rollout::Restore(r.spec(), completed_early, r.events()).status()));

  CHECK(invalid(RolloutStateFromJson(R"({"phase":"sleeping","stage":0,"gate_since_ms":0,"updated_ms":0})").status()));
  CHECK(invalid(RolloutStateFromJson(R"({"phase":"running","stage":0})").status()));
  CHECK(invalid(RolloutEventFromJson(R"({"seq":1})").status()));
  CHECK(invalid(ReportFromJson(R"({"terminal_id":"t-1"})").status()));
  CHECK(invalid(ReportFromJson(R"({"terminal_id":"t-1","outcome":"success","health":{"x":"fast"}})").status()));
  CHECK(invalid(ReportFromJson(R"({"terminal_id":"../x","outcome":"success"})").status()));
  CHECK(ReportFromJson(R"({"terminal_id":"t-1","outcome":"success"})").ok());
  CHECK(ReportFromJson(R"({"terminal_id":"t-1","outcome":"success","newer":1})").ok());
  CHECK(RolloutStateFromJson(R"({"phase":"running","stage":0,"gate_since_ms":0,"updated_ms":0,"newer":1})").ok());

  // Text that is not UTF-8 is written with replacement characters instead of throwing.
  Rollout odd = StartOrDie(SampleSpec(), 0);
  REQUIRE(odd.Apply(RolloutAction::kPause, 1, "alice", std::string("bad \xff byte")).ok());
  Result<Rollout> odd_back = RolloutFromJson(RolloutToJson(odd));
  REQUIRE(odd_back.ok());
  CHECK(odd_back->events().back().reason == "bad \xEF\xBF\xBD byte");
}

// ---------------------------------------------------------------------------
// Waves: regions one after another.

namespace {

// Regions sg, ae, br in that order, two stages each (10 %, then 50 %): six
// stages in all. The canary is a high-bucket terminal, in br or elsewhere.
RolloutSpec WaveSpec() {
  RolloutSpec s = SampleSpec();
  s.regions = {"sg", "ae", "br"};
  s.stages_percent = {10, 50};
  s.waves = true;
  s.soak_ms = 0;
  s.canaries = {FindTerminal(s.id, [](uint32_t b) { return b >= 9000; })};
  return s;
}

TerminalInfo In(std::string region, std::string id, std::string current = "1.2.0") {
  TerminalInfo t = Terminal(std::move(id), std::move(current));
  t.region = std::move(region);
  return t;
}

// Terminals by bucket: low is in both stages, mid only in the 50 % one, high in none.
struct WaveTerminals {
  std::string low, mid, high, canary;
  explicit WaveTerminals(const RolloutSpec& s)
      : low(FindTerminal(s.id, [](uint32_t b) { return b < 1000; })),
        mid(FindTerminal(s.id, [](uint32_t b) { return b >= 1000 && b < 5000; })),
        high(FindTerminal(s.id, [](uint32_t b) { return b >= 5000 && b < 9000; })),
        canary(s.canaries.at(0)) {}
};

}  // namespace

TEST_CASE("waves: stage count, region and percent of each global stage") {
  RolloutSpec spec = WaveSpec();
  REQUIRE(ValidateRolloutSpec(spec).ok());
  CHECK(StageCount(spec) == 6);
  const char* regions[] = {"sg", "sg", "ae", "ae", "br", "br"};
  const double percents[] = {10, 50, 10, 50, 10, 50};
  for (size_t k = 0; k < 6; ++k) {
    CHECK(StageRegion(spec, k) == regions[k]);
    CHECK(StagePercent(spec, k) == percents[k]);
  }
  CHECK(StageRegion(spec, 6).empty());
  CHECK(StagePercent(spec, 6) == 0);

  spec.waves = false;  // the same regions together: one pass over the stages
  CHECK(StageCount(spec) == 2);
  CHECK(StageRegion(spec, 0).empty());
  CHECK(StageRegion(spec, 1).empty());
  CHECK(StagePercent(spec, 1) == 50);
  CHECK(StagePercent(spec, 2) == 0);
}

TEST_CASE("waves: a region's cohort grows only in its own wave and keeps the last share after") {
  RolloutSpec spec = WaveSpec();
  WaveTerminals t(spec);
  // expected[region][terminal] over stages 0..5: 1 = in the cohort.
  struct Row {
    const char* region;
    std::string id;
    const char* expected;
  };
  const Row rows[] = {
      {"sg", t.low, "111111"},    {"sg", t.mid, "011111"},    {"sg", t.high, "000000"},
      {"sg", t.canary, "111111"}, {"ae", t.low, "001111"},    {"ae", t.mid, "000111"},
      {"ae", t.high, "000000"},   {"ae", t.canary, "001111"}, {"br", t.low, "000011"},
      {"br", t.mid, "000001"},    {"br", t.high, "000000"},   {"br", t.canary, "000011"},
  };
  for (const Row& row : rows) {
    for (size_t k = 0; k < 6; ++k) {
      INFO(row.region << " terminal " << row.id << " stage " << k);
      CHECK(InCohort(spec, k, In(row.region, row.id)) == (row.expected[k] == '1'));
    }
    CHECK_FALSE(InCohort(spec, 6, In(row.region, row.id)));  // past the last stage
  }
  CHECK_FALSE(InCohort(spec, 5, In("us", t.canary)));  // not a listed region: not eligible

  // Monotone for everyone: nobody leaves the cohort as the waves move on.
  for (int i = 0; i < 3000; ++i) {
    TerminalInfo term = In(spec.regions[static_cast<size_t>(i) % 3], fmt::format("m-{}", i));
    bool before = false;
    for (size_t k = 0; k < StageCount(spec); ++k) {
      bool in = InCohort(spec, k, term);
      if (before) REQUIRE(in);
      before = in;
    }
  }
}

TEST_CASE("waves: promote walks sg's stages, then ae's, then br's, then completes") {
  RolloutSpec spec = WaveSpec();
  WaveTerminals t(spec);
  Rollout r = StartOrDie(spec, 0);
  std::vector<std::string> walked = {StateString(r.state())};
  for (int64_t now = 1; r.state().phase == RolloutPhase::kRunning; ++now) {
    REQUIRE(r.Apply(RolloutAction::kPromote, now, "alice", "").ok());
    walked.push_back(StateString(r.state()));
    if (r.state().phase == RolloutPhase::kRunning) CHECK(r.state().gate_since_ms == now);
  }
  CHECK(walked == std::vector<std::string>{"running(0)", "running(1)", "running(2)", "running(3)", "running(4)",
                                           "running(5)", "completed(5)"});
  CHECK(r.Apply(RolloutAction::kPromote, 99, "alice", "").code() == Status::Code::kFailedPrecondition);

  // Completed: every region holds the last stage's share; the rest stays on previous.
  for (const char* region : {"sg", "ae", "br"}) {
    INFO(region);
    CHECK(ResolveTarget(r.spec(), r.state(), In(region, t.mid)).version == "1.3.0");
    CHECK(ResolveTarget(r.spec(), r.state(), In(region, t.canary)).version == "1.3.0");
    CHECK(ResolveTarget(r.spec(), r.state(), In(region, t.high)).version == "1.2.0");
    CHECK(ResolveTarget(r.spec(), r.state(), In(region, t.high)).reason == TargetReason::kNotInCohort);
  }
}

TEST_CASE("waves: the gates promote across a region boundary on the global stage index") {
  RolloutSpec spec = WaveSpec();
  Rollout r = StartOrDie(spec, 0);
  ReportTally tally;
  auto fill = [&](uint32_t stage, int64_t now) {
    for (int i = 0; i < 5; ++i) {
      REQUIRE(tally.Add(Report(fmt::format("s{}-t{}", stage, i), ReportOutcome::kSuccess, now, stage)).ok());
    }
  };
  fill(0, 1);
  CHECK(r.Tick(tally, GateContext::At(1))->verdict == GateVerdict::kPromote);
  fill(1, 2);
  CHECK(r.Tick(tally, GateContext::At(2))->verdict == GateVerdict::kPromote);
  CHECK(r.state().stage == 2);
  CHECK(StageRegion(r.spec(), r.state().stage) == "ae");
  // ae's first stage needs its own reports: sg's do not carry over.
  CHECK(r.Tick(tally, GateContext::At(3))->verdict == GateVerdict::kNone);
  CHECK(r.state().stage == 2);
}

TEST_CASE("waves: a breach in ae stops the wave there and br never moves") {
  FakeClock clock;
  RolloutSpec spec = WaveSpec();
  WaveTerminals t(spec);
  auto run_to_ae_breach = [&](Rollout& r) {
    ReportTally tally;
    for (uint32_t stage = 0; stage < 2; ++stage) {
      for (int i = 0; i < 5; ++i) {
        REQUIRE(tally.Add(Report(fmt::format("sg-{}-{}", stage, i), ReportOutcome::kSuccess,
                                 clock.NowUnixMillis(), stage)).ok());
      }
      REQUIRE(r.Tick(tally, GateContext::At(clock.NowUnixMillis()))->verdict == GateVerdict::kPromote);
    }
    REQUIRE(r.state() == RolloutState{RolloutPhase::kRunning, 2, clock.NowUnixMillis(), clock.NowUnixMillis()});

    // An ae terminal's report counts in global stage 2; a br one, even the canary's, is not admitted.
    TerminalReport ae_report = Report(t.low, ReportOutcome::kFailure, clock.NowUnixMillis());
    ae_report.profile = "pos-arm64";
    ae_report.region = "ae";
    REQUIRE(r.Admit(&ae_report));
    CHECK(ae_report.stage == 2);
    TerminalReport br_report = ae_report;
    br_report.terminal_id = t.canary;
    br_report.region = "br";
    br_report.stage = 0;
    CHECK_FALSE(r.Admit(&br_report));

    clock.Advance(1min);
    for (int i = 0; i < 5; ++i) {
      REQUIRE(tally.Add(Report(fmt::format("ae-{}", i), ReportOutcome::kFailure, clock.NowUnixMillis(), 2)).ok());
    }
    Result<GateDecision> d = r.Tick(tally, GateContext::At(clock.NowUnixMillis()));
    REQUIRE(d.ok());
    CHECK(d->verdict == GateVerdict::kBreach);
  };

  SECTION("pause: who moved keeps the target, br's terminals stay on previous") {
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    run_to_ae_breach(r);
    CHECK(StateString(r.state()) == "paused(2)");
    CHECK(ResolveTarget(r.spec(), r.state(), In("sg", t.mid, "1.3.0")).version == "1.3.0");
    CHECK(ResolveTarget(r.spec(), r.state(), In("ae", t.low, "1.3.0")).version == "1.3.0");
    CHECK(ResolveTarget(r.spec(), r.state(), In("ae", t.mid)).version == "1.2.0");
    for (const std::string& id : {t.low, t.mid, t.canary}) {
      CHECK(ResolveTarget(r.spec(), r.state(), In("br", id)).version == "1.2.0");
      CHECK_FALSE(InCohort(r.spec(), r.state().stage, In("br", id)));
    }
    // Resumed, the wave carries on in ae; br is still untouched.
    REQUIRE(r.Apply(RolloutAction::kResume, clock.NowUnixMillis(), "alice", "fixed").ok());
    CHECK(ResolveTarget(r.spec(), r.state(), In("br", t.canary)).version == "1.2.0");
    CHECK(ResolveTarget(r.spec(), r.state(), In("ae", t.canary)).version == "1.3.0");
  }

  SECTION("rollback: everyone returns to previous, br never had the target") {
    spec.on_breach = BreachAction::kRollback;
    Rollout r = StartOrDie(spec, clock.NowUnixMillis());
    run_to_ae_breach(r);
    CHECK(StateString(r.state()) == "rolled_back(2)");
    for (const char* region : {"sg", "ae", "br"}) {
      CHECK(ResolveTarget(r.spec(), r.state(), In(region, t.low, "1.3.0")).version == "1.2.0");
      CHECK(ResolveTarget(r.spec(), r.state(), In(region, t.low, "1.3.0")).reason == TargetReason::kRolledBack);
    }
  }
}

TEST_CASE("waves: JSON round trip, default and restore checks use the stage count") {
  auto invalid = [](const Status& st) { return st.code() == Status::Code::kInvalidArgument; };
  RolloutSpec spec = WaveSpec();
  Result<RolloutSpec> back = RolloutSpecFromJson(RolloutSpecToJson(spec));
  REQUIRE(back.ok());
  CHECK(back->waves);
  CHECK(*back == spec);

  nlohmann::json plain = nlohmann::json::parse(RolloutSpecToJson(SampleSpec()));
  CHECK_FALSE(plain.contains("waves"));  // written only when set: older agents read the rest
  Result<RolloutSpec> absent = RolloutSpecFromJson(plain.dump());
  REQUIRE(absent.ok());
  CHECK_FALSE(absent->waves);
  plain["waves"] = "yes";
  Status bad_type = RolloutSpecFromJson(plain.dump()).status();
  CHECK(invalid(bad_type));
  CHECK(bad_type.message().find("waves") != std::string::npos);
  plain["waves"] = true;  // no regions
  Status no_regions = RolloutSpecFromJson(plain.dump()).status();
  CHECK(invalid(no_regions));
  CHECK(no_regions.message().find("--regions") != std::string::npos);

  // A rollout in br's wave: stage 4 is past stages_percent but within StageCount.
  Rollout r = StartOrDie(spec, 0);
  for (int64_t now = 1; now <= 4; ++now) REQUIRE(r.Apply(RolloutAction::kPromote, now, "alice", "").ok());
  Result<Rollout> restored = RolloutFromJson(RolloutToJson(r));
  REQUIRE(restored.ok());
  CHECK(restored->state() == r.state());
  CHECK(restored->spec().waves);

  RolloutState past = r.state();
  past.stage = 6;
  Status out_of_range = Rollout::Restore(spec, past, r.events()).status();
  CHECK(invalid(out_of_range));
  CHECK(out_of_range.message().find("6 stages") != std::string::npos);
  // Completing after sg's last stage is not completing the rollout.
  RolloutState early = {RolloutPhase::kCompleted, 1, 0, 0};
  std::vector<RolloutEvent> log = {{1, 0, "alice", RolloutAction::kStart, "", "", "running(0)"},
                                   {2, 1, "alice", RolloutAction::kPromote, "", "running(0)", "running(1)"},
                                   {3, 2, "alice", RolloutAction::kPromote, "", "running(1)", "completed(1)"}};
  CHECK(invalid(Rollout::Restore(spec, early, log).status()));
  spec.waves = false;
  CHECK(Rollout::Restore(spec, early, log).ok());

  // Reports and tallies accept every wave stage index.
  ReportTally tally;
  REQUIRE(tally.Add(Report("t-1", ReportOutcome::kSuccess, 1, static_cast<uint32_t>(kRolloutStagesMax + 5))).ok());
  CHECK(tally.Stats(static_cast<uint32_t>(kRolloutStagesMax + 5)).reported == 1);
  CHECK(invalid(tally.Add(Report("t-1", ReportOutcome::kSuccess, 1, static_cast<uint32_t>(kRolloutStageIndexMax)))));
}

// ---------------------------------------------------------------------------
// Cohort counts over groups (rollout/cohort_count.h) against InCohort, one
// terminal at a time.

namespace {

// Terminals spread over regions, profiles and versions, grouped the way the
// daemon's registry groups them; some of them failed the target.
struct Fleet {
  std::vector<TerminalInfo> terminals;
  std::set<std::string> failed;  // ids whose last install of the target failed
  std::map<std::tuple<std::string, std::string, std::string, bool>, TerminalGroup> groups;

  explicit Fleet(int n) {
    std::mt19937_64 rng(20261130);
    const char* regions[] = {"sg", "ae", "br", "us"};
    const char* profiles[] = {"pos-arm64", "kiosk"};
    const char* versions[] = {"1.2.0", "1.3.0", ""};
    for (int i = 0; i < n; ++i) {
      TerminalInfo t{fmt::format("t-{:x}", rng()), profiles[rng() % 2], regions[rng() % 4], versions[rng() % 3]};
      bool fail = t.current_version != "1.3.0" && rng() % 7 == 0;
      if (fail) failed.insert(t.id);
      TerminalGroup& g = groups[{t.region, t.profile, t.current_version, fail}];
      g.region = t.region;
      g.profile = t.profile;
      g.current_version = t.current_version;
      g.failed_version = fail ? "1.3.0" : "";
      ++g.terminals;
      g.positions.Add(CohortPosition(t.id), 1);
      terminals.push_back(std::move(t));
    }
  }

  std::vector<StageCohort> Count(const RolloutSpec& spec) const {
    CohortCounter counter(spec);
    for (const auto& [key, g] : groups) counter.Add(g);
    for (const std::string& id : spec.canaries) {
      for (const TerminalInfo& t : terminals) {
        if (t.id == id) counter.AddCanary(groups.at({t.region, t.profile, t.current_version, failed.contains(id)}), id);
      }
    }
    return counter.Stages();
  }

  std::map<std::string, std::vector<StageCohort>> CountByRegion(const RolloutSpec& spec) const {
    CohortCounter counter(spec);
    for (const auto& [key, g] : groups) counter.Add(g);
    return counter.StagesByRegion();
  }

  // The same, one terminal at a time with InCohort (of `region` only, when given).
  std::vector<StageCohort> BruteForce(const RolloutSpec& spec, std::string_view region = {}) const {
    std::vector<StageCohort> out(StageCount(spec));
    for (size_t k = 0; k < out.size(); ++k) {
      for (const TerminalInfo& t : terminals) {
        if (!InCohort(spec, k, t) || (!region.empty() && t.region != region)) continue;
        ++out[k].terminals;
        if (t.current_version == spec.target_version) {
          ++out[k].updated;
          continue;
        }
        if (failed.contains(t.id)) ++out[k].failed;
        ++out[k].moving[t.current_version];
      }
    }
    return out;
  }
};

void CheckSameCounts(const std::vector<StageCohort>& got, const std::vector<StageCohort>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t k = 0; k < got.size(); ++k) {
    INFO("stage " << k);
    CHECK(got[k].terminals == want[k].terminals);
    CHECK(got[k].updated == want[k].updated);
    CHECK(got[k].failed == want[k].failed);
    CHECK(got[k].moving == want[k].moving);
  }
}

}  // namespace

TEST_CASE("cohort counts over grouped positions equal InCohort terminal by terminal") {
  Fleet fleet(20'000);
  RolloutSpec spec = SampleSpec();
  spec.canaries = {fleet.terminals[3].id, fleet.terminals[7].id, "never-seen"};
  SECTION("all regions, every profile") { CheckSameCounts(fleet.Count(spec), fleet.BruteForce(spec)); }
  SECTION("filtered by region and profile, last stage below 100 %") {
    spec.regions = {"sg", "br"};
    spec.profiles = {"kiosk"};
    spec.stages_percent = {0.5, 5, 40};
    CheckSameCounts(fleet.Count(spec), fleet.BruteForce(spec));
  }
  SECTION("waves, and per region") {
    spec.canaries.clear();
    spec.regions = {"br", "sg", "ae"};
    spec.stages_percent = {2, 20, 100};
    spec.waves = true;
    CheckSameCounts(fleet.Count(spec), fleet.BruteForce(spec));
    std::map<std::string, std::vector<StageCohort>> by_region = fleet.CountByRegion(spec);
    REQUIRE(by_region.size() == 3);  // "us" is not eligible
    for (const char* region : {"br", "sg", "ae"}) {
      INFO(region);
      CheckSameCounts(by_region.at(region), fleet.BruteForce(spec, region));
    }
  }
  SECTION("another rollout id salts the same fleet differently") {
    RolloutSpec other = spec;
    other.id = "r-other";
    std::vector<StageCohort> a = fleet.Count(spec), b = fleet.Count(other);
    CheckSameCounts(b, fleet.BruteForce(other));
    CHECK(a[1].moving != b[1].moving);
  }
}

TEST_CASE("gates: a stage never waits for more reports than it has terminals") {
  FakeClock clock;
  RolloutSpec spec = SampleSpec();  // min_reports 5, soak one hour
  spec.canaries = {"lone-canary"};
  Rollout r = StartOrDie(spec, clock.NowUnixMillis());
  ReportTally tally;
  TerminalReport one = Report("lone-canary", ReportOutcome::kSuccess, clock.NowUnixMillis());
  REQUIRE(tally.Add(one).ok());
  GateContext context = GateContext::At(clock.NowUnixMillis() + spec.soak_ms);

  SECTION("uncounted, min_reports holds: the one canary cannot pass") {
    GateDecision d = r.Tick(tally, context).value();
    CHECK(d.verdict == GateVerdict::kNone);
    CHECK(d.reason == "waiting for 4 more reports (1 of 5)");
  }
  SECTION("the stage adds one known terminal: its report suffices") {
    context.stage_terminals = 1;
    GateDecision d = r.Tick(tally, context).value();
    CHECK(d.verdict == GateVerdict::kPromote);
    CHECK(d.reason.find("1 successes of 1 required") != std::string::npos);
    CHECK(r.state().stage == 1);
  }
  SECTION("three terminals, one report: waits and says for what") {
    context.stage_terminals = 3;
    CHECK(r.Tick(tally, context)->reason == "waiting for 2 more reports (1 of 3; the stage adds 3 known terminals)");
  }
}

TEST_CASE("gates: a stage that adds no terminals passes after its soak, and the event says so") {
  FakeClock clock;
  RolloutSpec spec = SampleSpec();
  Rollout r = StartOrDie(spec, clock.NowUnixMillis());
  ReportTally tally;
  GateContext context = GateContext::At(clock.NowUnixMillis() + spec.soak_ms - 1);
  context.stage_terminals = 0;
  GateDecision early = r.Tick(tally, context).value();
  CHECK(early.verdict == GateVerdict::kNone);
  CHECK(early.reason == fmt::format("soaking: {} of {} ms", spec.soak_ms - 1, spec.soak_ms));
  context.now_ms += 1;
  CHECK(r.Tick(tally, context)->verdict == GateVerdict::kPromote);
  CHECK(r.events().back().actor == kGateActor);
  CHECK(r.events().back().reason == fmt::format("the stage adds no known terminals; soaked {} ms", spec.soak_ms));
  SECTION("without auto promote the gate says it waits for an operator") {
    RolloutSpec manual = SampleSpec();
    manual.auto_promote = false;
    Rollout m = StartOrDie(manual, clock.NowUnixMillis());
    GateDecision d = m.Tick(tally, context).value();
    CHECK(d.verdict == GateVerdict::kNone);
    CHECK(d.reason.find("waiting for a manual promote") != std::string::npos);
  }
}

// ---------------------------------------------------------------------------
// Windows and health rules in the gates.

TEST_CASE("gates: a closed window holds a promote and says when it opens; a breach does not wait") {
  RolloutSpec spec = SampleSpec();
  spec.soak_ms = 0;
  spec.min_reports = 1;
  spec.window = "Mon-Sat 02:00-05:00";
  spec.time_zones = {{"*", "Asia/Singapore"}};
  REQUIRE(ValidateRolloutSpec(spec).ok());
  // Monday 2026-11-30 12:00 in Singapore (04:00Z): closed until Tuesday 02:00 (Monday 18:00Z).
  const int64_t noon = 1'796'011'200'000;
  RolloutState state{RolloutPhase::kRunning, 0, noon, noon};
  GateContext context = GateContext::At(noon);
  context.window = StageWindow(spec, 0, noon).value();
  REQUIRE(context.window.has_value());
  CHECK_FALSE(context.window->open);
  GateDecision held = EvaluateGates(spec, state, {1, 1, 0, 0.0}, context);
  CHECK(held.verdict == GateVerdict::kNone);
  CHECK(held.reason == "gates pass; waiting for the window Mon-Sat 02:00-05:00 (Asia/Singapore), which opens at "
                       "2026-11-30T18:00:00.000Z");
  CHECK(EvaluateGates(spec, state, {4, 1, 3, 0.75}, context).verdict == GateVerdict::kBreach);
  // Tuesday 03:00 in Singapore: open, and the promote says so.
  const int64_t three = 1'796'065'200'000;
  context = GateContext::At(three);
  context.window = StageWindow(spec, 0, three).value();
  GateDecision promote = EvaluateGates(spec, state, {1, 1, 0, 0.0}, context);
  CHECK(promote.verdict == GateVerdict::kPromote);
  CHECK(promote.reason.find("inside the window Mon-Sat 02:00-05:00 (Asia/Singapore)") != std::string::npos);
}

TEST_CASE("spec: a window needs one time zone per stage") {
  RolloutSpec spec = SampleSpec();
  spec.window = "daily 01:00-03:00";
  CHECK(ValidateRolloutSpec(spec).message().find("needs a time zone for region '*'") != std::string::npos);
  spec.regions = {"sg", "br"};
  spec.time_zones = {{"sg", "Asia/Singapore"}, {"br", "America/Sao_Paulo"}};
  CHECK(ValidateRolloutSpec(spec).message().find("use waves") != std::string::npos);
  spec.waves = true;
  CHECK(ValidateRolloutSpec(spec).ok());
  CHECK(StageTimeZone(spec, 0) == "Asia/Singapore");
  CHECK(StageTimeZone(spec, StageCount(spec) - 1) == "America/Sao_Paulo");
  spec.window = "Someday 01:00-03:00";
  CHECK(ValidateRolloutSpec(spec).message().starts_with("window: "));
  spec.window = "daily 01:00-03:00";
  spec.health_rules = {"latency_ms p95 +20%", "bogus"};
  CHECK(ValidateRolloutSpec(spec).message().starts_with("health_rules: "));
  // All of it survives JSON.
  spec.health_rules = {"latency_ms p50 +50%"};
  spec.health_min_terminals = 3;
  CHECK(RolloutSpecFromJson(RolloutSpecToJson(spec)).value() == spec);
}

TEST_CASE("health: the target's terminals at twice the old version's latency breach, with both medians") {
  FakeClock clock;
  RolloutSpec spec = SampleSpec();
  spec.on_breach = BreachAction::kRollback;
  spec.health_min_terminals = 5;
  for (int i = 0; i < 6; ++i) spec.canaries.push_back(fmt::format("new-{}", i));  // in the first stage
  Rollout r = StartOrDie(spec, clock.NowUnixMillis());
  ReportTally target, baseline;
  for (int i = 0; i < 6; ++i) {
    for (bool old_version : {false, true}) {
      TerminalReport rep = Report(fmt::format("{}-{}", old_version ? "old" : "new", i), ReportOutcome::kSuccess,
                                 clock.NowUnixMillis());
      rep.region = "sg";
      rep.version = old_version ? spec.previous_version : spec.target_version;
      rep.health = {{"latency_ms", (old_version ? 10.0 : 20.0) + i}};
      if (old_version) {
        REQUIRE(r.AdmitBaseline(&rep));
        REQUIRE(baseline.Add(rep).ok());
      } else {
        REQUIRE(r.Admit(&rep));
        REQUIRE(target.Add(rep).ok());
      }
    }
  }
  HealthJudgement h = JudgeStageHealth(r.spec(), r.state(), target, baseline);
  REQUIRE(h.breach);
  CHECK(h.reason.starts_with("region sg: latency_ms p95"));
  CHECK(h.reason.find("medians 22 vs 12") != std::string::npos);
  GateContext context = GateContext::At(clock.NowUnixMillis());
  context.health = h;
  GateDecision d = r.Tick(target, context).value();
  CHECK(d.verdict == GateVerdict::kBreach);
  CHECK(r.state().phase == RolloutPhase::kRolledBack);
  CHECK(r.events().back().reason == "health: " + h.reason);

  SECTION("the same latency on both versions passes") {
    ReportTally same;
    baseline.ForEach(0, INT64_MIN, [&](const TerminalReport& b) {
      TerminalReport t = b;
      t.terminal_id = "n" + b.terminal_id;
      t.version = spec.target_version;
      REQUIRE(same.Add(t).ok());
    });
    CHECK_FALSE(JudgeStageHealth(spec, {RolloutPhase::kRunning, 0, 0, 0}, same, baseline).breach);
  }
}

TEST_CASE("health: a baseline is a report on the previous version from the stage's region") {
  RolloutSpec spec = SampleSpec();
  spec.regions = {"sg", "ae"};
  spec.waves = true;
  Rollout r = StartOrDie(spec, 0);
  TerminalReport rep = Report("t", ReportOutcome::kSuccess, 0);
  rep.version = spec.previous_version;
  rep.region = "sg";
  CHECK(r.AdmitBaseline(&rep));
  rep.region = "ae";  // ae's wave has not started
  CHECK_FALSE(r.AdmitBaseline(&rep));
  rep.region = "sg";
  rep.version = "9.9.9";
  CHECK_FALSE(r.AdmitBaseline(&rep));
}

TEST_CASE("position counts keep every count across the change from a list to an array") {
  PositionCounts counts;
  std::map<uint16_t, uint32_t> want;
  std::mt19937 rng(7);
  for (int i = 0; i < 5'000; ++i) {
    auto p = static_cast<uint16_t>(rng() % kCohortPositions);
    bool remove = want.count(p) && rng() % 3 == 0;
    counts.Add(p, remove ? -1 : 1);
    if (remove && --want[p] == 0) want.erase(p);
    if (!remove) ++want[p];
  }
  std::map<uint16_t, uint32_t> got;
  counts.ForEach([&](uint16_t p, uint32_t n) { got[p] = n; });
  CHECK(got == want);
  CHECK(want.size() > 512);  // the array form was reached
  for (const auto& [p, n] : want) counts.Add(p, -static_cast<int64_t>(n));
  size_t left = 0;
  counts.ForEach([&](uint16_t, uint32_t) { ++left; });
  CHECK(left == 0);
}

TEST_CASE("gates: a window that cannot be evaluated holds a promote and says why") {
  RolloutSpec spec = SampleSpec();
  spec.soak_ms = 0;
  spec.min_reports = 1;
  RolloutState state{RolloutPhase::kRunning, 0, 0, 0};
  GateContext context = GateContext::At(1);
  context.window_problem = "unknown time zone 'Gone/Zone'";
  GateDecision d = EvaluateGates(spec, state, {1, 1, 0, 0.0}, context);
  CHECK(d.verdict == GateVerdict::kNone);
  CHECK(d.reason == "gates pass; the window cannot be evaluated: unknown time zone 'Gone/Zone'");
}

TEST_CASE("a tally's kept counts equal a recount after any sequence of reports and questions") {
  ReportTally tally;
  std::map<std::pair<uint32_t, std::string>, TerminalReport> latest;  // the rule, written plainly
  auto recount = [&](uint32_t stage, int64_t since) {
    StageStats s;
    for (const auto& [key, r] : latest) {
      if (key.first != stage || r.received_ms < since) continue;
      ++s.reported;
      ++(r.outcome == ReportOutcome::kSuccess ? s.succeeded : s.failed);
    }
    if (s.reported > 0) s.failure_rate = static_cast<double>(s.failed) / static_cast<double>(s.reported);
    return s;
  };
  std::mt19937 rng(11);
  for (int i = 0; i < 3'000; ++i) {
    TerminalReport r = Report(fmt::format("t{}", rng() % 50), rng() % 4 == 0 ? ReportOutcome::kFailure
                                                                             : ReportOutcome::kSuccess,
                              static_cast<int64_t>(rng() % 1000), rng() % 3);
    REQUIRE(tally.Add(r).ok());
    auto [it, fresh] = latest.try_emplace({r.stage, r.terminal_id}, r);
    if (!fresh && r.received_ms >= it->second.received_ms) it->second = r;
    uint32_t stage = rng() % 3;
    int64_t since = rng() % 4 == 0 ? INT64_MIN : static_cast<int64_t>(rng() % 3) * 300;
    INFO("report " << i << ", stage " << stage << ", since " << since);
    REQUIRE(tally.Stats(stage, since) == recount(stage, since));
  }
}
