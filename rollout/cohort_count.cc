// Cohort counts over grouped terminals (see cohort_count.h).
#include "rollout/cohort_count.h"

#include <algorithm>

namespace meridian {

void PositionCounts::Add(uint16_t position, int64_t delta) {
  auto apply = [delta](uint32_t& n) { n = static_cast<uint32_t>(static_cast<int64_t>(n) + delta); };
  if (!dense_.empty()) {
    apply(dense_[position]);
    return;
  }
  auto it = std::lower_bound(sparse_.begin(), sparse_.end(), std::make_pair(position, uint32_t{0}));
  if (it == sparse_.end() || it->first != position) it = sparse_.insert(it, {position, 0});
  apply(it->second);
  if (it->second == 0) sparse_.erase(it);
  if (sparse_.size() > kDenseFrom) {
    dense_.assign(kCohortPositions, 0);
    for (const auto& [p, n] : sparse_) dense_[p] = n;
    sparse_ = {};
  }
}

CohortCounter::CohortCounter(const RolloutSpec& spec)
    : spec_(spec), salt_(CohortSaltOf(spec.id)), stage_in_wave_(kCohortPositions) {
  // The stages of any wave decide alike (a finished wave holds its last
  // share), so the first region's answer is every region's, offset by its
  // wave's first stage; without waves there is one wave.
  std::string_view first_region = spec.waves ? std::string_view(spec.regions.front()) : std::string_view();
  size_t n = spec.stages_percent.size();
  for (uint32_t position = 0; position < kCohortPositions; ++position) {
    size_t stage = FirstCohortStage(spec, first_region, CohortBucket(salt_, static_cast<uint16_t>(position)), false);
    stage_in_wave_[position] = static_cast<uint16_t>(std::min(stage, n));
  }
}

void CohortCounter::Count(const TerminalGroup& group, size_t stage, int64_t terminals) {
  auto region = first_.find(group.region);
  if (region == first_.end()) region = first_.emplace(group.region, StageCount(spec_) + 1).first;
  StageCohort& c = region->second[stage];
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
  std::vector<int64_t> by_stage(StageCount(spec_) + 1, 0);
  size_t n = spec_.stages_percent.size();
  size_t wave_start = FirstCohortStage(spec_, group.region, 0, true);  // where a canary of the region starts
  group.positions.ForEach([&](uint16_t position, uint32_t terminals) {
    size_t in_wave = stage_in_wave_[position];
    by_stage[in_wave < n ? wave_start + in_wave : StageCount(spec_)] += terminals;
  });
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

namespace {

// Cumulative per stage from counts by first stage (the last entry, "never", is left out).
void AddCumulative(const std::vector<StageCohort>& by_first, std::vector<StageCohort>& out) {
  StageCohort sum;
  for (size_t k = 0; k + 1 < by_first.size(); ++k) {
    const StageCohort& c = by_first[k];
    sum.terminals += c.terminals;
    sum.updated += c.updated;
    sum.failed += c.failed;
    for (const auto& [version, n] : c.moving) sum.moving[version] += n;
    StageCohort& o = out[k];
    o.terminals += sum.terminals;
    o.updated += sum.updated;
    o.failed += sum.failed;
    for (const auto& [version, n] : sum.moving) o.moving[version] += n;
  }
}

}  // namespace

std::vector<StageCohort> CohortCounter::Stages() const {
  std::vector<StageCohort> out(StageCount(spec_));
  for (const auto& [region, by_first] : first_) AddCumulative(by_first, out);
  return out;
}

std::map<std::string, std::vector<StageCohort>> CohortCounter::StagesByRegion() const {
  std::map<std::string, std::vector<StageCohort>> out;
  for (const auto& [region, by_first] : first_) AddCumulative(by_first, out.emplace(region, StageCount(spec_)).first->second);
  return out;
}

}  // namespace meridian
