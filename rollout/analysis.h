// Health analysis: judges a stage's new version against the old one on the
// numbers terminals report with their health checks (TerminalReport::health),
// in the manner of Argo Rollouts' analysis and Kayenta's canary judgement: the
// terminals on the new version are compared with the terminals still on the
// old version in the same stage and region, so a fleet-wide slowdown (a busy
// Saturday) is not blamed on the new model. Pure: no I/O, no clock, nothing
// throws.
//
// Sections: rules (text form) · statistics · judging · defaults.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace meridian {

inline constexpr size_t kHealthRulesMax = 16;
inline constexpr size_t kHealthRuleTextBytesMax = 128;

// ---------------------------------------------------------------------------
// Rules, as an operator writes them:
//
//   <metric> <statistic> [<change>] [max <number>] [min <number>]
//
//   latency_ms p95 +20%              new p95 at most 20 % above the old p95
//   error_rate mean +0.01 max 0.05   at most 0.01 above the old mean, and never above 0.05
//   accuracy mean -2%                lower is worse: at most 2 % below the old mean
//   accuracy p50 min 0.9             an absolute floor; needs no old version
//
// metric: [a-z0-9_]{1,64}, as agents print them (docs/agent.md). statistic:
// p50, p90, p95, p99, mean or max. <change> is a sign, a non-negative number
// and an optional '%': '+' when higher is worse, '-' when lower is worse;
// with '%' it is relative to the old version's statistic, without it is in
// the metric's unit. At least one of change, max and min; each at most once,
// in any order; min <= max. Words are separated by spaces or tabs; numbers
// are decimal (an exponent is allowed), finite.

enum class Statistic { kP50, kP90, kP95, kP99, kMean, kMax };
// "p50", "p90", "p95", "p99", "mean", "max"; "unknown" outside the enum.
std::string_view StatisticName(Statistic stat);

// How far the new version's statistic may move from the old one's, in the
// direction that is worse for the metric.
struct ChangeLimit {
  enum class Worse { kHigher, kLower };  // '+': an increase is the regression; '-': a decrease is
  enum class Unit { kPercent, kAbsolute };
  Worse worse = Worse::kHigher;
  Unit unit = Unit::kPercent;
  double amount = 0;  // >= 0, finite: percent of |old statistic| (20 = 20 %), or the metric's unit

  bool operator==(const ChangeLimit&) const = default;
};

struct HealthRule {
  std::string metric;
  Statistic stat = Statistic::kMean;
  std::optional<ChangeLimit> change;  // against the old version
  std::optional<double> max;          // cap on the new version's statistic
  std::optional<double> min;          // floor under the new version's statistic

  bool operator==(const HealthRule&) const = default;
};

// One rule. InvalidArgument naming the problem and quoting the text (unknown
// statistic, bad metric name, a number that is not one, a repeated or missing
// limit, min above max, more than kHealthRuleTextBytesMax bytes).
Result<HealthRule> ParseHealthRule(std::string_view text);
// A rule set: at most kHealthRulesMax rules, each parsed as above, no rule
// twice (same metric and statistic: two rules on one figure are a typo).
// InvalidArgument naming the first bad rule ("health rule 2: …").
Result<std::vector<HealthRule>> ParseHealthRules(std::span<const std::string> texts);
// Canonical text: "<metric> <stat>[ <change>][ max <n>][ min <n>]", numbers
// in their shortest exact form, so ParseHealthRule gives back an equal rule.
std::string HealthRuleText(const HealthRule& rule);

// ---------------------------------------------------------------------------
// Statistics.
//
// Percentiles are nearest-rank: pN of n values is the ceil(N/100 × n)-th
// smallest, always a value some terminal reported (with 10 terminals p95 and
// p99 are the worst one). The median is p50, so with an even count it is the
// lower of the two middle values. mean is the arithmetic mean, max the largest.

// The statistic of `values`; 0 when empty. Order does not matter.
double ComputeStatistic(Statistic stat, std::span<const double> values);

// ---------------------------------------------------------------------------
// Judging.
//
// A rule is judged on the samples that hold its metric (a finite number);
// others are left out. The change limit needs at least min_terminals such
// samples on each side; max and min need them on the new side only. A limit
// without enough samples waits: it never breaches. A rule breaches when any
// of its limits does:
//   change, worse = higher:  new - old > allowed
//   change, worse = lower:   old - new > allowed
//     allowed = amount (absolute) or |old| × amount / 100 (percent). With the
//     old statistic at 0 a percent allows no move at all in the worse
//     direction, as 20 % of nothing is nothing: give metrics that sit at 0
//     (error rates) an absolute change instead.
//   max:  new > max          min:  new < min
// where ">" means by more than a billionth of the larger figure compared:
// 14 ms × 1.2 against "+20 %" of 14 ms is on the limit, not a hair past it.

// One terminal's latest health numbers (TerminalReport::health).
using HealthSample = std::map<std::string, double>;

enum class RuleVerdict { kPass, kBreach, kWaiting };

// One rule's figures. Old-side figures are 0 when the old side has no sample.
struct RuleJudgement {
  RuleVerdict verdict = RuleVerdict::kWaiting;  // kWaiting: a limit lacked samples, none breached
  size_t new_terminals = 0;  // samples holding the metric
  size_t old_terminals = 0;
  double new_value = 0;  // the rule's statistic
  double old_value = 0;
  double new_median = 0;
  double old_median = 0;
};

struct HealthJudgement {
  bool breach = false;
  // Breach: the first breaching rule's figures, e.g. "latency_ms p95 25.1 on
  // the new version vs 12.3 on the old (+104 %, limit +20 %); medians 24 vs
  // 12; 8 and 9 terminals". Otherwise a short summary of how many rules pass
  // and which wait for samples. At most kRolloutReasonBytesMax bytes
  // (rollout.h), so it can be an event's reason as it is.
  std::string reason;
  std::vector<RuleJudgement> rules;  // one per judged rule, in order
};

// Judges `rules` (the first kHealthRulesMax; a set from ParseHealthRules has
// no more) on the latest samples of the terminals on the new version and of
// those on the old one. min_terminals below 1 counts as 1.
HealthJudgement JudgeHealth(std::span<const HealthRule> rules, uint32_t min_terminals,
                            std::span<const HealthSample> new_version, std::span<const HealthSample> old_version);

// ---------------------------------------------------------------------------
// Defaults: what a rollout judges when its operator names no rules. Latency
// may grow by a fifth at the tail; the error rate by one point, and never
// past 5 %.
inline constexpr std::array<std::string_view, 2> kDefaultHealthRules = {
    "latency_ms p95 +20%",
    "error_rate mean +0.01 max 0.05",
};

}  // namespace meridian
