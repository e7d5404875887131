// Counting a rollout's cohorts over a large fleet without hashing each
// terminal: known terminals are grouped by what a rollout looks at (region,
// profile, running and failed version) and each group counts its terminals by
// cohort position (rollout/rollout.h, "Cohorts"). A rollout's salt maps a
// position to a bucket, so a count costs the distinct positions of each group
// — at most 10,000 — whatever the number of terminals. Pure.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <string>
#include <vector>

#include "rollout/rollout.h"

namespace meridian {

// Terminals per cohort position. A sorted list while a group holds few
// positions; an array of all 10,000 once it holds many, so that counting a
// large group reads 40 KB in order and a terminal joining it costs O(1).
class PositionCounts {
 public:
  // Adds `delta` terminals at `position` (a count never goes below zero:
  // remove only what was added).
  void Add(uint16_t position, int64_t delta);
  // Calls f(position, terminals) for each position holding terminals, in order.
  template <typename F>
  void ForEach(F f) const {
    if (dense_.empty()) {
      for (const auto& [position, terminals] : sparse_) f(position, terminals);
      return;
    }
    for (uint32_t p = 0; p < dense_.size(); ++p) {
      if (dense_[p] != 0) f(static_cast<uint16_t>(p), dense_[p]);
    }
  }

 private:
  static constexpr size_t kDenseFrom = 512;  // sorted entries before the array (4 KB of list vs 40 KB of array)
  std::vector<std::pair<uint16_t, uint32_t>> sparse_;
  std::vector<uint32_t> dense_;
};

// Known terminals of one model channel that declare the same things.
struct TerminalGroup {
  std::string region;
  std::string profile;
  std::string current_version;   // what they run; empty when none
  std::string previous_version;  // what they ran before it (the fleet view; not counted here)
  std::string failed_version;    // the version whose install they last reported failed; empty when none
  uint64_t terminals = 0;
  PositionCounts positions;  // by cohort position; sums to `terminals`
};

// One stage's cohort among the known terminals. Cumulative: a stage's cohort
// holds every earlier one's.
struct StageCohort {
  uint64_t terminals = 0;  // eligible known terminals in the cohort
  uint64_t updated = 0;    // of those, running the target
  uint64_t failed = 0;     // of those, not running the target, whose last install of it failed
  std::map<std::string, uint64_t> moving;  // of those not running the target: by the version they run
};

class CohortCounter {
 public:
  explicit CohortCounter(const RolloutSpec& spec);

  // Counts a group's eligible terminals at their positions' first stages.
  void Add(const TerminalGroup& group);
  // A canary of the spec that Add already counted at its position as a
  // member of `group`: moves it to a canary's first stage. Call it after the
  // Add of its group, once per canary.
  void AddCanary(const TerminalGroup& group, std::string_view terminal_id);

  // Per stage index, StageCount(spec) entries.
  std::vector<StageCohort> Stages() const;
  // The same per region the counted terminals declare.
  std::map<std::string, std::vector<StageCohort>> StagesByRegion() const;

 private:
  // Adds `terminals` (negative: removes) of `group` whose first stage is
  // `stage` (StageCount: never in a cohort).
  void Count(const TerminalGroup& group, size_t stage, int64_t terminals);

  const RolloutSpec& spec_;
  CohortSalt salt_;
  // Position -> the first stage of its wave that holds it (stages_percent.size(): none).
  std::vector<uint16_t> stage_in_wave_;
  // Per region, by first stage; one more entry for "never".
  std::map<std::string, std::vector<StageCohort>, std::less<>> first_;
};

}  // namespace meridian
