// Counting a rollout's cohorts over a large fleet without hashing each
// terminal: known terminals are grouped by what a rollout looks at (region,
// profile, running and failed version) and each group counts its terminals by
// cohort position (rollout/rollout.h, "Cohorts"). A rollout's salt maps a
// position to a bucket, so a count costs the distinct positions of each group
// — at most 10,000 — whatever the number of terminals. Pure.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rollout/rollout.h"

namespace meridian {

// Known terminals of one model channel that declare the same things.
struct TerminalGroup {
  std::string region;
  std::string profile;
  std::string current_version;   // what they run; empty when none
  std::string previous_version;  // what they ran before it (the fleet view; not counted here)
  std::string failed_version;    // the version whose install they last reported failed; empty when none
  uint64_t terminals = 0;
  std::map<uint16_t, uint32_t> positions;  // cohort position -> terminals; sums to `terminals`
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

 private:
  // Adds `terminals` (negative: removes) of `group` whose first stage is
  // `stage` (StageCount: never in a cohort).
  void Count(const TerminalGroup& group, size_t stage, int64_t terminals);

  const RolloutSpec& spec_;
  CohortSalt salt_;
  std::vector<StageCohort> first_;       // by first stage; one more entry for "never"
};

}  // namespace meridian
