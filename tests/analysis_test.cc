// Tests of rollout/analysis.h: rule text (good, bad, round trip), the
// statistics on known data, and judgements of a new version against the old.
#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "rollout/analysis.h"
#include "rollout/rollout.h"

using namespace meridian;

namespace {

HealthRule RuleOf(std::string_view text) {
  Result<HealthRule> r = ParseHealthRule(text);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

std::string ErrorOf(std::string_view text) {
  Result<HealthRule> r = ParseHealthRule(text);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Status::Code::kInvalidArgument);
  return r.status().message();
}

// One sample per value, each holding only `metric`.
std::vector<HealthSample> Samples(const std::string& metric, const std::vector<double>& values) {
  std::vector<HealthSample> out;
  for (double v : values) out.push_back({{metric, v}});
  return out;
}

HealthJudgement Judge(const std::vector<std::string_view>& texts, uint32_t min_terminals,
                      const std::vector<HealthSample>& fresh, const std::vector<HealthSample>& old) {
  std::vector<HealthRule> rules;
  for (std::string_view t : texts) rules.push_back(RuleOf(t));
  return JudgeHealth(rules, min_terminals, fresh, old);
}

// Old-version latencies around 12 ms; the new version's are twice as long.
const std::vector<double> kOldLatency = {10, 11, 12, 13, 14, 10.5, 11.5, 12.5, 13.5};

std::vector<double> Scaled(const std::vector<double>& values, double factor) {
  std::vector<double> out;
  for (double v : values) out.push_back(v * factor);
  return out;
}

}  // namespace

TEST_CASE("rules: the operator's forms parse to what they say") {
  HealthRule latency = RuleOf("latency_ms p95 +20%");
  CHECK(latency.metric == "latency_ms");
  CHECK(latency.stat == Statistic::kP95);
  REQUIRE(latency.change.has_value());
  CHECK(latency.change->worse == ChangeLimit::Worse::kHigher);
  CHECK(latency.change->unit == ChangeLimit::Unit::kPercent);
  CHECK(latency.change->amount == 20);
  CHECK(!latency.max);
  CHECK(!latency.min);

  HealthRule errors = RuleOf("error_rate mean +0.01 max 0.05");
  CHECK(errors.stat == Statistic::kMean);
  REQUIRE(errors.change.has_value());
  CHECK(errors.change->unit == ChangeLimit::Unit::kAbsolute);
  CHECK(errors.change->amount == 0.01);
  CHECK(errors.max == 0.05);

  HealthRule cap = RuleOf("error_rate mean max 0.05");
  CHECK(!cap.change);
  CHECK(cap.max == 0.05);

  HealthRule accuracy = RuleOf("accuracy mean -2%");
  REQUIRE(accuracy.change.has_value());
  CHECK(accuracy.change->worse == ChangeLimit::Worse::kLower);
  CHECK(accuracy.change->amount == 2);

  HealthRule floor = RuleOf("accuracy p50 min 0.9");
  CHECK(floor.stat == Statistic::kP50);
  CHECK(floor.min == 0.9);

  // Order of the limits is free, tabs and extra spaces separate words too.
  CHECK(RuleOf("  error_rate\tmean  max 0.05 +0.01 ") == errors);
  CHECK(RuleOf("temp_c max min -10 max 80").min == -10);
  for (const char* stat : {"p50", "p90", "p95", "p99", "mean", "max"}) {
    CHECK(StatisticName(RuleOf(std::string("m ") + stat + " +1").stat) == stat);
  }
}

TEST_CASE("rules: bad text is refused with the problem named") {
  CHECK_THAT(ErrorOf("latency_ms p96 +20%"), Catch::Contains("unknown statistic 'p96'"));
  CHECK_THAT(ErrorOf("Latency p95 +20%"), Catch::Contains("metric 'Latency'"));
  CHECK_THAT(ErrorOf(std::string(65, 'a') + " p95 +20%"), Catch::Contains("metric"));
  CHECK_THAT(ErrorOf("latency_ms p95"), Catch::Contains("expected '<metric> <statistic> <limits>'"));
  CHECK_THAT(ErrorOf(""), Catch::Contains("expected"));
  CHECK_THAT(ErrorOf("latency_ms p95 20%"), Catch::Contains("unexpected '20%'"));
  CHECK_THAT(ErrorOf("latency_ms p95 +20%%"), Catch::Contains("change '+20%%'"));
  CHECK_THAT(ErrorOf("latency_ms p95 +-20%"), Catch::Contains("change '+-20%'"));
  CHECK_THAT(ErrorOf("latency_ms p95 +"), Catch::Contains("change '+'"));
  CHECK_THAT(ErrorOf("latency_ms p95 +inf"), Catch::Contains("change '+inf'"));
  CHECK_THAT(ErrorOf("latency_ms p95 +nan%"), Catch::Contains("change '+nan%'"));
  CHECK_THAT(ErrorOf("latency_ms p95 +1e999"), Catch::Contains("change"));
  CHECK_THAT(ErrorOf("latency_ms p95 +20% -5%"), Catch::Contains("more than one change limit"));
  CHECK_THAT(ErrorOf("error_rate mean max"), Catch::Contains("'max' needs a number"));
  CHECK_THAT(ErrorOf("error_rate mean max 0.05 max 0.06"), Catch::Contains("'max' given twice"));
  CHECK_THAT(ErrorOf("error_rate mean max five"), Catch::Contains("'max five': not a finite number"));
  CHECK_THAT(ErrorOf("error_rate mean max +0.05"), Catch::Contains("not a finite number"));
  CHECK_THAT(ErrorOf("error_rate mean min 0.5 max 0.1"), Catch::Contains("min is above max"));
  CHECK_THAT(ErrorOf("latency_ms p95 +20% " + std::string(120, ' ')), Catch::Contains("at most 128"));
  // The message quotes the rule.
  CHECK_THAT(ErrorOf("latency_ms p96 +20%"), Catch::StartsWith("health rule 'latency_ms p96 +20%': "));
}

TEST_CASE("rules: canonical text parses back equal") {
  for (std::string_view canonical : {"latency_ms p95 +20%", "error_rate mean +0.01 max 0.05", "error_rate mean max 0.05",
                                     "accuracy mean -2%", "accuracy p50 min 0.9", "temp_c max max 80 min -10",
                                     "x p99 -0", "x p90 +0%", "x mean +1e-07", "x mean +12345.678%"}) {
    CHECK(HealthRuleText(RuleOf(canonical)) == canonical);
  }
  CHECK(HealthRuleText(RuleOf("error_rate  mean max 0.050 +1.0e-2")) == "error_rate mean +0.01 max 0.05");
  // Numbers that have no short decimal form survive the trip exactly.
  HealthRule odd;
  odd.metric = "m";
  odd.stat = Statistic::kP99;
  odd.change = ChangeLimit{ChangeLimit::Worse::kLower, ChangeLimit::Unit::kPercent, 0.1 + 0.2};
  odd.max = 1.0 / 3;
  odd.min = -1e-300;
  CHECK(RuleOf(HealthRuleText(odd)) == odd);
  // "+0" and "-0" are opposite directions, not the same rule.
  CHECK(RuleOf("x mean +0") != RuleOf("x mean -0"));
}

TEST_CASE("rules: a set is bounded and names its bad rule") {
  std::vector<std::string> texts = {"latency_ms p95 +20%", "error_rate mean +0.01 max 0.05"};
  Result<std::vector<HealthRule>> set = ParseHealthRules(texts);
  REQUIRE(set.ok());
  CHECK(set->size() == 2);
  texts.push_back("error_rate mean max 0.1");
  CHECK_THAT(ParseHealthRules(texts).status().message(),
             Catch::StartsWith("health rule 3 'error_rate mean max 0.1': a second rule on error_rate mean"));
  texts.back() = "error_rate p96 max 0.1";
  CHECK_THAT(ParseHealthRules(texts).status().message(), Catch::Contains("health rule 3 "));
  std::vector<std::string> many;
  for (int i = 0; i < 17; ++i) many.push_back("m" + std::to_string(i) + " mean +1");
  CHECK_THAT(ParseHealthRules(many).status().message(), Catch::Contains("17 health rules, at most 16"));
  many.pop_back();
  CHECK(ParseHealthRules(many).ok());
}

TEST_CASE("rules: the defaults parse, in canonical form") {
  std::vector<std::string> texts(kDefaultHealthRules.begin(), kDefaultHealthRules.end());
  Result<std::vector<HealthRule>> rules = ParseHealthRules(texts);
  REQUIRE(rules.ok());
  for (size_t i = 0; i < texts.size(); ++i) CHECK(HealthRuleText((*rules)[i]) == texts[i]);
}

TEST_CASE("statistics: nearest rank on known data, in any order") {
  std::vector<double> v;
  for (int i = 1; i <= 20; ++i) v.push_back(i);
  std::shuffle(v.begin(), v.end(), std::mt19937(7));
  CHECK(ComputeStatistic(Statistic::kP50, v) == 10);  // rank ceil(0.5 × 20) = 10
  CHECK(ComputeStatistic(Statistic::kP90, v) == 18);
  CHECK(ComputeStatistic(Statistic::kP95, v) == 19);
  CHECK(ComputeStatistic(Statistic::kP99, v) == 20);  // rank ceil(19.8) = 20
  CHECK(ComputeStatistic(Statistic::kMean, v) == 10.5);
  CHECK(ComputeStatistic(Statistic::kMax, v) == 20);

  std::vector<double> ten = {7, 3, 9, 1, 5, 2, 8, 4, 10, 6};
  CHECK(ComputeStatistic(Statistic::kP50, ten) == 5);    // the lower middle value
  CHECK(ComputeStatistic(Statistic::kP90, ten) == 9);
  CHECK(ComputeStatistic(Statistic::kP95, ten) == 10);   // the worst one
  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i * 0.5);
  CHECK(ComputeStatistic(Statistic::kP99, hundred) == 49.5);
  CHECK(ComputeStatistic(Statistic::kP90, hundred) == 45);

  std::vector<double> one = {-4.5};
  for (Statistic s : {Statistic::kP50, Statistic::kP99, Statistic::kMean, Statistic::kMax}) {
    CHECK(ComputeStatistic(s, one) == -4.5);
  }
  CHECK(ComputeStatistic(Statistic::kMean, {}) == 0);
}

TEST_CASE("judge: twice the latency breaches, and the reason carries both medians") {
  auto fresh = Samples("latency_ms", Scaled(kOldLatency, 2));
  auto old = Samples("latency_ms", kOldLatency);
  HealthJudgement j = Judge({"latency_ms p95 +20%"}, 5, fresh, old);
  CHECK(j.breach);
  CHECK(j.reason ==
        "latency_ms p95 28 on the new version vs 14 on the old (+100 %, limit +20 %); medians 24 vs 12; "
        "9 and 9 terminals");
  REQUIRE(j.rules.size() == 1);
  CHECK(j.rules[0].verdict == RuleVerdict::kBreach);
  CHECK(j.rules[0].new_value == 28);
  CHECK(j.rules[0].old_value == 14);
  CHECK(j.rules[0].new_median == 24);
  CHECK(j.rules[0].old_median == 12);
  CHECK(j.rules[0].new_terminals == 9);
  CHECK(j.rules[0].old_terminals == 9);

  // Within the limit: 15 % slower passes, exactly 20 % passes, a bit more does not.
  CHECK(!Judge({"latency_ms p95 +20%"}, 5, Samples("latency_ms", Scaled(kOldLatency, 1.15)), old).breach);
  CHECK(!Judge({"latency_ms p95 +20%"}, 5, Samples("latency_ms", Scaled(kOldLatency, 1.2)), old).breach);
  CHECK(Judge({"latency_ms p95 +20%"}, 5, Samples("latency_ms", Scaled(kOldLatency, 1.21)), old).breach);
}

TEST_CASE("judge: equal distributions pass every rule") {
  std::vector<HealthSample> fresh, old;
  for (int i = 0; i < 12; ++i) {
    HealthSample s = {{"latency_ms", 10.0 + i}, {"error_rate", 0.001 * i}};
    fresh.push_back(s);
    old.push_back(s);
  }
  std::reverse(old.begin(), old.end());
  HealthJudgement j = Judge({"latency_ms p95 +20%", "error_rate mean +0.01 max 0.05"}, 5, fresh, old);
  CHECK(!j.breach);
  CHECK(j.reason == "2 of 2 health rules pass");
  REQUIRE(j.rules.size() == 2);
  CHECK(j.rules[0].verdict == RuleVerdict::kPass);
  CHECK(j.rules[1].verdict == RuleVerdict::kPass);
  CHECK(Judge({}, 5, fresh, old).reason == "0 of 0 health rules pass");
}

TEST_CASE("judge: too few samples wait instead of breaching") {
  auto old = Samples("latency_ms", kOldLatency);
  auto fresh = Samples("latency_ms", {30, 40, 50, 60});  // far worse, but only 4 terminals
  HealthJudgement j = Judge({"latency_ms p95 +20%"}, 5, fresh, old);
  CHECK(!j.breach);
  REQUIRE(j.rules.size() == 1);
  CHECK(j.rules[0].verdict == RuleVerdict::kWaiting);
  CHECK(j.reason == "0 of 1 health rules pass; waiting for 5 terminals with the metric: latency_ms p95 (4 new, 9 old)");
  // The old side counts too: the same four on both sides are not enough.
  CHECK(Judge({"latency_ms p95 +20%"}, 5, Samples("latency_ms", Scaled(kOldLatency, 3)), fresh).rules[0].verdict ==
        RuleVerdict::kWaiting);
  // One more terminal and it breaches.
  fresh.push_back({{"latency_ms", 70}});
  CHECK(Judge({"latency_ms p95 +20%"}, 5, fresh, old).breach);
  // min_terminals 0 counts as 1: no sample at all still waits.
  CHECK(Judge({"latency_ms p95 +20%"}, 0, {}, old).rules[0].verdict == RuleVerdict::kWaiting);
  CHECK(Judge({"latency_ms p95 +20%"}, 0, Samples("latency_ms", {99}), old).breach);
}

TEST_CASE("judge: caps need no old version; changes and caps together") {
  auto bad = Samples("error_rate", {0.07, 0.08, 0.09});
  HealthJudgement j = Judge({"error_rate mean max 0.05"}, 3, bad, {});
  CHECK(j.breach);
  CHECK(j.reason == "error_rate mean 0.08 on the new version vs none on the old (above the max 0.05); "
                    "medians 0.08 vs none; 3 and 0 terminals");
  CHECK(!Judge({"error_rate mean max 0.05"}, 3, Samples("error_rate", {0.01, 0.02, 0.03}), {}).breach);
  CHECK(Judge({"error_rate mean max 0.05"}, 4, bad, {}).rules[0].verdict == RuleVerdict::kWaiting);

  auto old = Samples("error_rate", {0.001, 0.001, 0.001});
  // Within the cap but more than one point above the old version.
  HealthJudgement change = Judge({"error_rate mean +0.01 max 0.05"}, 3, Samples("error_rate", {0.02, 0.02, 0.02}), old);
  CHECK(change.breach);
  CHECK_THAT(change.reason, Catch::Contains("(+0.019, limit +0.01)"));
  CHECK_THAT(change.reason, Catch::Contains("medians 0.02 vs 0.001"));
  // Above the cap though close to the old version, which is bad as well.
  HealthJudgement capped =
      Judge({"error_rate mean +0.01 max 0.05"}, 3, Samples("error_rate", {0.06, 0.06, 0.06}), Samples("error_rate", {0.055, 0.055, 0.055}));
  CHECK(capped.breach);
  CHECK_THAT(capped.reason, Catch::Contains("(above the max 0.05)"));
  // Without an old version the cap still judges; the change waits.
  HealthJudgement half = Judge({"error_rate mean +0.01 max 0.05"}, 3, Samples("error_rate", {0.02, 0.02, 0.02}), {});
  CHECK(!half.breach);
  CHECK(half.rules[0].verdict == RuleVerdict::kWaiting);
  CHECK(Judge({"error_rate mean +0.01 max 0.05"}, 3, bad, {}).breach);
}

TEST_CASE("judge: lower-is-worse metrics, and a baseline of 0") {
  auto old = Samples("accuracy", {0.9, 0.9, 0.9, 0.9});
  HealthJudgement drop = Judge({"accuracy mean -2%"}, 3, Samples("accuracy", {0.85, 0.85, 0.85}), old);
  CHECK(drop.breach);
  CHECK_THAT(drop.reason, Catch::Contains("accuracy mean 0.85 on the new version vs 0.9 on the old (-5.556 %, limit -2 %)"));
  CHECK(!Judge({"accuracy mean -2%"}, 3, Samples("accuracy", {0.89, 0.89, 0.89}), old).breach);
  CHECK(!Judge({"accuracy mean -2%"}, 3, Samples("accuracy", {0.99, 0.99, 0.99}), old).breach);  // better
  CHECK(Judge({"accuracy mean -0.01"}, 3, Samples("accuracy", {0.88, 0.88, 0.88}), old).breach);
  // A higher-is-worse rule does not mind a drop.
  CHECK(!Judge({"accuracy mean +2%"}, 3, Samples("accuracy", {0.5, 0.5, 0.5}), old).breach);

  HealthJudgement floor = Judge({"accuracy p50 min 0.9"}, 3, Samples("accuracy", {0.8, 0.85, 0.95}), {});
  CHECK(floor.breach);
  CHECK_THAT(floor.reason, Catch::Contains("(below the min 0.9)"));
  CHECK(!Judge({"accuracy p50 min 0.9"}, 3, Samples("accuracy", {0.8, 0.9, 0.95}), {}).breach);

  // 20 % of nothing is nothing: from an old value of 0 any increase breaches.
  auto zero = Samples("error_rate", {0, 0, 0});
  HealthJudgement from_zero = Judge({"error_rate mean +20%"}, 3, Samples("error_rate", {0, 0, 0.003}), zero);
  CHECK(from_zero.breach);
  CHECK_THAT(from_zero.reason, Catch::Contains("(up from 0, limit +20 %)"));
  CHECK(!Judge({"error_rate mean +20%"}, 3, zero, zero).breach);
  CHECK(!Judge({"error_rate mean +0.01"}, 3, Samples("error_rate", {0, 0, 0.003}), zero).breach);
  // A negative baseline: the allowance is a share of its size.
  auto negative = Samples("drift", {-10, -10, -10});
  CHECK(!Judge({"drift mean +20%"}, 3, Samples("drift", {-8, -8, -8}), negative).breach);
  CHECK(Judge({"drift mean +20%"}, 3, Samples("drift", {-7.9, -7.9, -7.9}), negative).breach);
}

TEST_CASE("judge: only samples holding the metric count") {
  std::vector<HealthSample> old = Samples("latency_ms", kOldLatency);
  std::vector<HealthSample> fresh = {
      {{"latency_ms", 30}, {"error_rate", 0}},
      {{"latency_ms", 31}},
      {{"error_rate", 0.001}},  // an agent whose check prints no latency
      {},                       // a check that printed nothing
      {{"latency_ms", std::numeric_limits<double>::quiet_NaN()}},
  };
  HealthJudgement j = Judge({"latency_ms p95 +20%"}, 3, fresh, old);
  CHECK(!j.breach);
  CHECK(j.rules[0].verdict == RuleVerdict::kWaiting);
  CHECK(j.rules[0].new_terminals == 2);
  fresh.push_back({{"latency_ms", 29}});
  j = Judge({"latency_ms p95 +20%"}, 3, fresh, old);
  CHECK(j.breach);
  CHECK_THAT(j.reason, Catch::EndsWith("medians 30 vs 12; 3 and 9 terminals"));
  // A metric nobody reports waits for ever: it never breaches.
  CHECK(Judge({"gpu_temp_c max max 90"}, 1, fresh, old).rules[0].verdict == RuleVerdict::kWaiting);
}

TEST_CASE("judge: the first breaching rule decides; every rule has its figures") {
  std::vector<HealthSample> old, fresh;
  for (int i = 0; i < 5; ++i) {
    old.push_back({{"latency_ms", 10}, {"error_rate", 0.001}});
    fresh.push_back({{"latency_ms", 30}, {"error_rate", 0.2}});
  }
  HealthJudgement j = Judge({"latency_ms mean +1", "error_rate mean +0.01", "latency_ms p99 +20%"}, 5, fresh, old);
  CHECK(j.breach);
  CHECK_THAT(j.reason, Catch::StartsWith("latency_ms mean 30 "));
  REQUIRE(j.rules.size() == 3);
  for (const RuleJudgement& r : j.rules) CHECK(r.verdict == RuleVerdict::kBreach);
  CHECK(j.rules[1].new_value == 0.2);
  j = Judge({"latency_ms mean +100", "error_rate mean +0.01"}, 5, fresh, old);
  CHECK_THAT(j.reason, Catch::StartsWith("error_rate mean 0.2 "));
  CHECK(j.rules[0].verdict == RuleVerdict::kPass);
}

TEST_CASE("judge: reasons stay within an event's reason limit") {
  std::string metric(64, 'm');
  std::vector<HealthSample> fresh = Samples(metric, {-1.7e308, 1.7e308, 1.234567890123e14});
  std::vector<HealthSample> old = Samples(metric, {-1e-300, 3, 1e300});
  HealthJudgement j = Judge({metric + " p99 -12345.678901234%"}, 1, fresh, old);
  HealthJudgement k = Judge({metric + " mean +0 max -1.2345678901234567e-300"}, 1, fresh, old);
  CHECK(k.breach);
  for (const HealthJudgement& h : {j, k}) {
    INFO(h.reason);
    CHECK(h.reason.size() <= kRolloutReasonBytesMax);
  }
  // Many waiting rules are summarised, not listed in full.
  std::vector<HealthRule> rules;
  for (int i = 0; i < 16; ++i) rules.push_back(RuleOf(std::string(60, 'a') + std::to_string(10 + i) + " p99 +1%"));
  HealthJudgement waiting = JudgeHealth(rules, 5, {}, {});
  CHECK_THAT(waiting.reason, Catch::EndsWith("and 13 more"));
  CHECK(waiting.reason.size() <= kRolloutReasonBytesMax);
}
