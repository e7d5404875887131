// Cohort counts over grouped terminals (see cohort_count.h).
#include "rollout/cohort_count.h"

namespace meridian {

CohortCounter::CohortCounter(const RolloutSpec& spec)
    : spec_(spec), salt_(CohortSaltOf(spec.id)), first_(StageCount(spec) + 1) {}

void CohortCounter::Count(const TerminalGroup& group, size_t stage, int64_t terminals) {
  StageCohort& c = first_[stage];
  auto add = [terminals](uint64_t& field) { field = static_cast<uint64_t>(static_cast<int64_t>(field) + terminals); };
  add(c.terminals);
  if (group.current_version == spec_.target_version) {
    add(c.updated);
    return;
  }
  if (group.failed_version == spec_.target_version) add(c.failed);
  uint64_t& moving = c.moving[group.current_version];
  add(moving);
  if (moving == 0) c.moving.erase(group.current_version);
}

void CohortCounter::Add(const TerminalGroup& group) {
  if (!IsEligible(spec_, {"", group.profile, group.region, group.current_version})) return;
  std::vector<int64_t> by_stage(first_.size(), 0);
  for (const auto& [position, terminals] : group.positions) {
    by_stage[FirstCohortStage(spec_, group.region, CohortBucket(salt_, position), false)] += terminals;
  }
  for (size_t k = 0; k < by_stage.size(); ++k) {
    if (by_stage[k] != 0) Count(group, k, by_stage[k]);
  }
}

void CohortCounter::AddCanary(const TerminalGroup& group, std::string_view terminal_id) {
  if (!IsEligible(spec_, {"", group.profile, group.region, group.current_version})) return;
  size_t counted = FirstCohortStage(spec_, group.region, CohortBucket(salt_, CohortPosition(terminal_id)), false);
  size_t canary = FirstCohortStage(spec_, group.region, 0, true);
  if (canary == counted) return;
  Count(group, counted, -1);
  Count(group, canary, 1);
}

std::vector<StageCohort> CohortCounter::Stages() const {
  std::vector<StageCohort> out;
  StageCohort sum;
  for (size_t k = 0; k + 1 < first_.size(); ++k) {
    const StageCohort& c = first_[k];
    sum.terminals += c.terminals;
    sum.updated += c.updated;
    sum.failed += c.failed;
    for (const auto& [version, n] : c.moving) sum.moving[version] += n;
    out.push_back(sum);
  }
  return out;
}

}  // namespace meridian
