// Health analysis: rule text, nearest-rank statistics and the judgement of a
// new version against the old one (see analysis.h).
#include "rollout/analysis.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "rollout/rollout.h"

namespace meridian {
namespace {

constexpr std::array<std::pair<Statistic, std::string_view>, 6> kStatistics = {{
    {Statistic::kP50, "p50"},
    {Statistic::kP90, "p90"},
    {Statistic::kP95, "p95"},
    {Statistic::kP99, "p99"},
    {Statistic::kMean, "mean"},
    {Statistic::kMax, "max"},
}};

bool IsMetricName(std::string_view name) {
  if (name.empty() || name.size() > kReportHealthKeyBytesMax) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ' || text[i] == '\t') {
      ++i;
      continue;
    }
    size_t end = text.find_first_of(" \t", i);
    if (end == std::string_view::npos) end = text.size();
    words.push_back(text.substr(i, end - i));
    i = end;
  }
  return words;
}

// A finite decimal number, without a leading '+' (from_chars takes none).
// "inf" and "nan" parse as numbers there, but are not limits anyone means.
std::optional<double> ParseNumber(std::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// The shortest text that parses back to exactly `v`: canonical rule text.
std::string ExactNumber(double v) {
  std::array<char, 32> buf;
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return ec == std::errc() ? std::string(buf.data(), end) : fmt::format("{}", v);
}

// A measured figure for people: four significant digits, whole numbers
// without an exponent up to 15 digits (latencies in µs), and never longer
// than about a dozen characters, which keeps reasons within their limit.
std::string Figure(double v) {
  double a = std::fabs(v);
  return a >= 1e4 && a < 1e15 ? fmt::format("{:.0f}", v) : fmt::format("{:.4g}", v);
}

std::string ChangeText(const ChangeLimit& c) {
  return fmt::format("{}{}{}", c.worse == ChangeLimit::Worse::kHigher ? '+' : '-', ExactNumber(c.amount),
                     c.unit == ChangeLimit::Unit::kPercent ? "%" : "");
}

// The problem with `text` as a rule, or nullopt with *rule filled in.
std::optional<std::string> ParseRule(std::string_view text, HealthRule* rule) {
  if (text.size() > kHealthRuleTextBytesMax) {
    return fmt::format("{} bytes, at most {}", text.size(), kHealthRuleTextBytesMax);
  }
  std::vector<std::string_view> words = Words(text);
  if (words.size() < 3) return "expected '<metric> <statistic> <limits>', for example 'latency_ms p95 +20%'";
  HealthRule r;
  if (!IsMetricName(words[0])) return fmt::format("metric '{}' is not [a-z0-9_]{{1,64}}", words[0]);
  r.metric = std::string(words[0]);
  auto stat = std::find_if(kStatistics.begin(), kStatistics.end(), [&](const auto& s) { return s.second == words[1]; });
  if (stat == kStatistics.end()) return fmt::format("unknown statistic '{}' (p50, p90, p95, p99, mean or max)", words[1]);
  r.stat = stat->first;
  for (size_t i = 2; i < words.size(); ++i) {
    std::string_view w = words[i];
    if (w == "max" || w == "min") {
      std::optional<double>& bound = w == "max" ? r.max : r.min;
      if (bound) return fmt::format("'{}' given twice", w);
      if (i + 1 == words.size()) return fmt::format("'{}' needs a number", w);
      bound = ParseNumber(words[++i]);
      if (!bound) return fmt::format("'{} {}': not a finite number", w, words[i]);
    } else if (w.starts_with('+') || w.starts_with('-')) {
      if (r.change) return "more than one change limit";
      ChangeLimit c;
      c.worse = w[0] == '+' ? ChangeLimit::Worse::kHigher : ChangeLimit::Worse::kLower;
      std::string_view amount = w.substr(1);
      if (amount.ends_with('%')) {
        c.unit = ChangeLimit::Unit::kPercent;
        amount.remove_suffix(1);
      } else {
        c.unit = ChangeLimit::Unit::kAbsolute;
      }
      // The sign says the direction; the amount itself is a size.
      std::optional<double> v = amount.starts_with('-') ? std::nullopt : ParseNumber(amount);
      if (!v) return fmt::format("change '{}': expected +N, +N%, -N or -N% with N a finite number >= 0", w);
      c.amount = *v;
      r.change = c;
    } else {
      return fmt::format("unexpected '{}' (expected +N, +N%, -N, -N%, max N or min N)", w);
    }
  }
  if (r.min && r.max && *r.min > *r.max) return "min is above max";
  *rule = std::move(r);
  return std::nullopt;
}

struct Side {
  std::vector<double> values;
  double stat = 0;
  double median = 0;
};

Side Collect(const HealthRule& rule, std::span<const HealthSample> samples) {
  Side side;
  for (const HealthSample& s : samples) {
    auto it = s.find(rule.metric);
    if (it != s.end() && std::isfinite(it->second)) side.values.push_back(it->second);
  }
  side.stat = ComputeStatistic(rule.stat, side.values);
  side.median = ComputeStatistic(Statistic::kP50, side.values);
  return side;
}

// Figures that should be equal may differ in their last bits (14 × 1.2 - 14
// is a hair above 14 × 20 / 100, exactly the limit): a figure must pass its
// limit by more than a billionth of the figures compared to breach.
bool Beyond(double excess, double a, double b) { return excess > 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

// Why `rule` breaches on these figures, or nullopt. `judge_change` and
// `judge_bounds` say which limits have enough samples.
std::optional<std::string> BreachOf(const HealthRule& rule, const Side& fresh, const Side& old, bool judge_change,
                                    bool judge_bounds) {
  std::string detail;
  if (judge_change && rule.change) {
    const ChangeLimit& c = *rule.change;
    bool higher_worse = c.worse == ChangeLimit::Worse::kHigher;
    double worse_by = higher_worse ? fresh.stat - old.stat : old.stat - fresh.stat;
    double allowed = c.unit == ChangeLimit::Unit::kAbsolute ? c.amount : std::fabs(old.stat) * c.amount / 100;
    if (Beyond(worse_by - allowed, fresh.stat, old.stat)) {
      std::string moved;
      if (c.unit == ChangeLimit::Unit::kAbsolute) {
        moved = fmt::format("{}{}", fresh.stat >= old.stat ? "+" : "", Figure(fresh.stat - old.stat));
      } else if (old.stat == 0) {
        moved = higher_worse ? "up from 0" : "down from 0";
      } else {
        double percent = (fresh.stat - old.stat) / std::fabs(old.stat) * 100;
        moved = fmt::format("{}{} %", percent >= 0 ? "+" : "", Figure(percent));
      }
      std::string limit = ChangeText(c);
      if (c.unit == ChangeLimit::Unit::kPercent) limit.insert(limit.size() - 1, " ");
      detail = fmt::format("{}, limit {}", moved, limit);
    }
  }
  if (detail.empty() && judge_bounds) {
    if (rule.max && Beyond(fresh.stat - *rule.max, fresh.stat, *rule.max)) {
      detail = "above the max " + ExactNumber(*rule.max);
    }
    if (rule.min && Beyond(*rule.min - fresh.stat, fresh.stat, *rule.min)) {
      detail = "below the min " + ExactNumber(*rule.min);
    }
  }
  if (detail.empty()) return std::nullopt;
  bool have_old = !old.values.empty();
  return fmt::format("{} {} {} on the new version vs {} on the old ({}); medians {} vs {}; {} and {} terminals",
                     rule.metric, StatisticName(rule.stat), Figure(fresh.stat),
                     have_old ? Figure(old.stat) : "none", detail, Figure(fresh.median),
                     have_old ? Figure(old.median) : "none", fresh.values.size(), old.values.size());
}

}  // namespace

std::string_view StatisticName(Statistic stat) {
  for (const auto& [s, name] : kStatistics) {
    if (s == stat) return name;
  }
  return "unknown";
}

Result<HealthRule> ParseHealthRule(std::string_view text) {
  HealthRule rule;
  if (std::optional<std::string> problem = ParseRule(text, &rule)) {
    return Status::InvalidArgument(fmt::format("health rule '{}': {}", text.substr(0, kHealthRuleTextBytesMax), *problem));
  }
  return rule;
}

Result<std::vector<HealthRule>> ParseHealthRules(std::span<const std::string> texts) {
  if (texts.size() > kHealthRulesMax) {
    return Status::InvalidArgument(fmt::format("{} health rules, at most {}", texts.size(), kHealthRulesMax));
  }
  std::vector<HealthRule> rules;
  std::set<std::pair<std::string, Statistic>> seen;
  for (size_t i = 0; i < texts.size(); ++i) {
    HealthRule rule;
    std::optional<std::string> problem = ParseRule(texts[i], &rule);
    if (!problem && !seen.emplace(rule.metric, rule.stat).second) {
      problem = fmt::format("a second rule on {} {}", rule.metric, StatisticName(rule.stat));
    }
    if (problem) {
      return Status::InvalidArgument(fmt::format("health rule {} '{}': {}", i + 1,
                                                 std::string_view(texts[i]).substr(0, kHealthRuleTextBytesMax), *problem));
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

std::string HealthRuleText(const HealthRule& rule) {
  std::string text = fmt::format("{} {}", rule.metric, StatisticName(rule.stat));
  if (rule.change) text += " " + ChangeText(*rule.change);
  if (rule.max) text += " max " + ExactNumber(*rule.max);
  if (rule.min) text += " min " + ExactNumber(*rule.min);
  return text;
}

double ComputeStatistic(Statistic stat, std::span<const double> values) {
  if (values.empty()) return 0;
  size_t percent = 0;
  switch (stat) {
    case Statistic::kMean: return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
    case Statistic::kMax: return *std::max_element(values.begin(), values.end());
    case Statistic::kP50: percent = 50; break;
    case Statistic::kP90: percent = 90; break;
    case Statistic::kP95: percent = 95; break;
    case Statistic::kP99: percent = 99; break;
  }
  // Nearest rank in integers: ceil(percent × n / 100), 1-based.
  size_t rank = (percent * values.size() + 99) / 100;
  std::vector<double> sorted(values.begin(), values.end());
  auto nth = sorted.begin() + static_cast<std::ptrdiff_t>(rank - 1);
  std::nth_element(sorted.begin(), nth, sorted.end());
  return *nth;
}

HealthJudgement JudgeHealth(std::span<const HealthRule> rules, uint32_t min_terminals,
                            std::span<const HealthSample> new_version, std::span<const HealthSample> old_version) {
  const size_t needed = std::max<uint32_t>(min_terminals, 1);
  HealthJudgement j;
  size_t passed = 0;
  std::vector<std::string> waiting;
  for (const HealthRule& rule : rules.first(std::min(rules.size(), kHealthRulesMax))) {
    Side fresh = Collect(rule, new_version);
    Side old = Collect(rule, old_version);
    bool judge_bounds = (rule.max || rule.min) && fresh.values.size() >= needed;
    bool judge_change = rule.change && fresh.values.size() >= needed && old.values.size() >= needed;
    bool waits = (rule.change && !judge_change) || ((rule.max || rule.min) && !judge_bounds);
    RuleJudgement r{.verdict = RuleVerdict::kPass,
                    .new_terminals = fresh.values.size(),
                    .old_terminals = old.values.size(),
                    .new_value = fresh.stat,
                    .old_value = old.stat,
                    .new_median = fresh.median,
                    .old_median = old.median};
    if (std::optional<std::string> breach = BreachOf(rule, fresh, old, judge_change, judge_bounds)) {
      r.verdict = RuleVerdict::kBreach;
      if (!j.breach) {
        j.breach = true;
        j.reason = std::move(*breach);
      }
    } else if (waits) {
      r.verdict = RuleVerdict::kWaiting;
      waiting.push_back(fmt::format("{} {} ({} new, {} old)", rule.metric, StatisticName(rule.stat), r.new_terminals,
                                    r.old_terminals));
    } else {
      ++passed;
    }
    j.rules.push_back(r);
  }
  if (!j.breach) {
    // Names of at most three waiting rules keep the summary well inside an event's reason.
    constexpr size_t kNamedMax = 3;
    j.reason = fmt::format("{} of {} health rules pass", passed, j.rules.size());
    if (!waiting.empty()) {
      size_t named = std::min(waiting.size(), kNamedMax);
      j.reason += fmt::format("; waiting for {} terminals with the metric: {}{}", needed,
                              fmt::join(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(named), ", "),
                              waiting.size() > named ? fmt::format(" and {} more", waiting.size() - named) : "");
    }
  }
  return j;
}

}  // namespace meridian
