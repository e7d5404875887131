// The terminals' and the operators' routes: targets, reports and rollouts.
#include "daemon/api.h"

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/json.h"
#include "daemon/api_shared.h"

namespace meridian {

namespace {

nlohmann::json RolloutSummaryJson(const Rollout& r) {
  const RolloutSpec& s = r.spec();
  return {{"id", s.id},
          {"model", s.model},
          {"channel", s.channel},
          {"target_version", s.target_version},
          {"previous_version", s.previous_version},
          {"regions", s.regions},
          {"stages_percent", s.stages_percent},
          {"phase", PhaseName(r.state().phase)},
          {"stage", r.state().stage},
          {"updated_ms", r.state().updated_ms}};
}

bool ValidOptionalName(const std::optional<std::string>& v) { return !v || v->empty() || IsValidRegionOrProfile(*v); }

}  // namespace

HttpResponse Api::TerminalTarget(const HttpRequest& req, const std::string& terminal_id) {
  const std::string& query = req.query;
  std::optional<std::string> model = QueryParam(query, "model"), channel = QueryParam(query, "channel"),
                             current = QueryParam(query, "current"), profile = QueryParam(query, "profile"),
                             region = QueryParam(query, "region"), wait = QueryParam(query, "wait"),
                             known = QueryParam(query, "known");
  if (!IsValidTerminalId(terminal_id)) return JsonError(400, "invalid_argument", "invalid terminal id");
  if (!model || !IsValidModelName(*model)) return JsonError(400, "invalid_argument", "model=NAME is required");
  if (!ValidOptionalName(channel) || !ValidOptionalName(profile) || !ValidOptionalName(region)) {
    return JsonError(400, "invalid_argument", "invalid channel, profile or region");
  }
  if (current && !current->empty() && !IsValidVersion(*current)) {
    return JsonError(400, "invalid_argument", "current must be a SemVer version");
  }
  uint64_t wait_s = 0, known_version = 0;
  if (wait && (!ParseQueryNumber(*wait, &wait_s) || wait_s > limits_.target_wait_seconds_max)) {
    return JsonError(400, "invalid_argument",
                     fmt::format("wait must be whole seconds in [0, {}]", limits_.target_wait_seconds_max));
  }
  if (known && !ParseQueryNumber(*known, &known_version)) {
    return JsonError(400, "invalid_argument", "known must be a state version");
  }
  std::string channel_name = channel && !channel->empty() ? *channel : "stable";
  if (!region_.empty()) {
    // A region's daemon serves the terminals of its region, and decides
    // which region they are in.
    if (region && !region->empty() && *region != region_) {
      return JsonError(400, "wrong_region",
                       fmt::format("this daemon serves region '{}'; the terminal says '{}'", region_, *region));
    }
    region = region_;
  }
  TerminalInfo info{terminal_id, profile.value_or(""), region.value_or(""), current.value_or("")};
  ApplyCredential(req, &info.profile, &info.region);
  // Read before looking at the state, so that a change right after the look still wakes this request.
  uint64_t generation = rollouts_.notifier().generation();
  Result<TargetAnswer> a = rollouts_.Target(*model, channel_name, info);
  if (!a.ok()) return ErrorFor(a.status());
  if (wait_s > 0 && known && a->state_version <= known_version && !req.wait_expired) {
    HttpResponse r;
    r.defer = HttpDeferral{&rollouts_.notifier(), generation, std::chrono::seconds(wait_s)};
    return r;
  }
  nlohmann::json j = {{"terminal", terminal_id},
                      {"model", *model},
                      {"channel", channel_name},
                      {"state_version", a->state_version},
                      {"version", a->target.version},
                      {"manifest_digest", a->target.ref.manifest_digest.ToString()},
                      {"digest", a->target.ref.digest.ToString()},
                      {"size", a->target.ref.size},
                      {"rollout", a->target.rollout},
                      {"reason", a->target.reason}};
  // The signed state goes in verbatim (it is JSON already): no re-encoding per request.
  std::string body = j.dump();
  body.pop_back();
  body += ",\"state\":" + a->envelope_json + "}";
  HttpResponse r;
  r.body = std::move(body);
  r.Set("Content-Type", "application/json");
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::TerminalReport(const HttpRequest& req, const std::string& terminal_id) {
  Result<nlohmann::json> parsed = ParseJson(req.body, limits_.json_body_bytes_max);
  if (!parsed.ok()) return ErrorFor(parsed.status());
  Result<AgentReport> a = ParseAgentReport(terminal_id, *parsed);
  if (!a.ok()) return ErrorFor(a.status());
  ApplyCredential(req, &a->report.profile, &a->report.region);
  bool counted = false;
  if (a->verdict) {
    Result<bool> c = rollouts_.Report(a->rollout, a->model, a->channel, std::move(a->report), a->periodic);
    if (!c.ok()) return ErrorFor(c.status());
    counted = *c;
  }
  return JsonOk(202, {{"counted", counted}});
}

HttpResponse Api::ForwardTerminalReport(const HttpRequest& req, const std::string& terminal_id) {
  Result<nlohmann::json> parsed = ParseJson(req.body, limits_.json_body_bytes_max);
  if (!parsed.ok()) return ErrorFor(parsed.status());
  nlohmann::json& j = *parsed;
  Result<AgentReport> a = ParseAgentReport(terminal_id, j);
  if (!a.ok()) return ErrorFor(a.status());
  ApplyCredential(req, &a->report.profile, &a->report.region);
  if (!a->report.region.empty() && a->report.region != region_) {
    return JsonError(400, "wrong_region",
                     fmt::format("this daemon serves region '{}'; the report says '{}'", region_, a->report.region));
  }
  if (!a->verdict) return JsonOk(202, {{"counted", false}});  // progress stays here
  j["region"] = region_;
  j["profile"] = a->report.profile;
  // Whatever the upstream would refuse is refused here, before it is queued:
  // a batch the upstream refuses is dropped, other terminals' reports with it.
  // (The body is at most 8 KiB, but numbers like 1e9 grow when written again.)
  if (DumpJson(j).size() > kForwardedReportBytesMax) {
    return JsonError(413, "report_too_large",
                     fmt::format("the report is over {} bytes as forwarded upstream", kForwardedReportBytesMax));
  }
  Result<bool> queued = outbox_->Enqueue({"", terminal_id, std::move(j)});
  if (!queued.ok()) return OutboxError(queued.status());
  return JsonOk(202, {{"counted", false}, {"forwarded", true}});
}

HttpResponse Api::StartRollout(const HttpRequest& req) {
  Result<RolloutSpec> spec = ParseRolloutSpecJson(req.body);
  if (!spec.ok()) return ErrorFor(spec.status());
  std::shared_lock versions_held = retention_.HoldVersions();  // not deleted while the rollout comes to name it
  Result<Rollout> r = rollouts_.Start(std::move(*spec), req.caller, "");
  versions_held.unlock();
  if (!r.ok() && IsCanaryExcluded(r.status())) return JsonError(400, kCanaryExcludedCode, r.status().message());
  if (!r.ok()) return ErrorFor(r.status());
  const RolloutSpec& started = r->spec();
  if (std::optional<HttpResponse> unaudited =
          Audit(req, "rollout.start", started.id,
                fmt::format("{} channel {} -> {}; {}", started.model, started.channel, started.target_version,
                            DescribeRolloutEvent(r->events().back())))) {
    return std::move(*unaudited);
  }
  return GetRollout(r->spec().id, 201);
}

HttpResponse Api::PlanRollout(const HttpRequest& req) {
  Result<RolloutSpec> spec = ParseRolloutSpecJson(req.body);
  if (!spec.ok()) return ErrorFor(spec.status());
  // A terminal on a version with a computed, worthwhile delta to the target
  // downloads that delta; any other downloads the artifact. Missing deltas are
  // queued, so a second plan shows them.
  const std::string model = spec->model;
  Result<std::shared_ptr<const Manifest>> target = store_.GetManifest(model, spec->target_version);
  auto download_bytes = [&](const std::string& current_version) -> uint64_t {
    if (!target.ok()) return 0;
    const Manifest& to = **target;
    if (current_version.empty()) return to.size;
    Result<std::shared_ptr<const Manifest>> from = store_.GetManifest(model, current_version);
    if (!from.ok()) return to.size;
    Result<DeltaRecord> d = deltas_.FindOrQueue((*from)->digest, to.digest);
    return d.ok() && d->info.worthwhile ? d->info.size : to.size;
  };
  Result<RolloutPlan> plan = rollouts_.Plan(std::move(*spec), download_bytes);
  if (!plan.ok() && IsCanaryExcluded(plan.status())) return JsonError(400, kCanaryExcludedCode, plan.status().message());
  if (!plan.ok()) return ErrorFor(plan.status());
  nlohmann::json stages = nlohmann::json::array();
  for (size_t k = 0; k < plan->eligible.size(); ++k) {
    stages.push_back({{"stage", k},
                      {"percent", StagePercent(plan->spec, k)},
                      {"region", StageRegion(plan->spec, k)},
                      {"eligible", plan->eligible[k]},
                      {"full_download_bytes", plan->full_download_bytes[k]},
                      {"delta_download_bytes", plan->delta_download_bytes[k]}});
  }
  nlohmann::json regions = nlohmann::json::array();
  for (const RolloutPlan::Region& r : plan->regions) {
    regions.push_back({{"region", r.region},
                       {"terminals", r.terminals},
                       {"full_download_bytes", r.full_download_bytes},
                       {"delta_download_bytes", r.delta_download_bytes}});
  }
  return JsonOk(200, {{"spec", nlohmann::json::parse(RolloutSpecToJson(plan->spec))},
                      {"regions", regions},
                      {"target_bytes", plan->target_bytes},
                      {"stages", stages}});
}

HttpResponse Api::ListRollouts() {
  nlohmann::json list = nlohmann::json::array();
  for (const Rollout& r : rollouts_.List()) list.push_back(RolloutSummaryJson(r));
  return JsonOk(200, {{"rollouts", list}});
}

HttpResponse Api::GetRollout(const std::string& id, int status) {
  Result<Rollout> r = rollouts_.Get(id);
  if (!r.ok()) return ErrorFor(r.status());
  Result<std::vector<StageRow>> rows = rollouts_.Stages(id);
  if (!rows.ok()) return ErrorFor(rows.status());
  nlohmann::json stages = nlohmann::json::array();
  for (size_t k = 0; k < rows->size(); ++k) {
    const StageRow& row = (*rows)[k];
    stages.push_back({{"stage", k},
                      {"percent", row.percent},
                      {"eligible", row.eligible},
                      {"updated", row.updated},
                      {"downloading", row.downloading},
                      {"failed", row.failed},
                      {"healthy", row.healthy},
                      {"gate", row.gate},
                      {"region", row.region}});
  }
  Result<std::vector<RegionRow>> region_rows = rollouts_.Regions(id);
  if (!region_rows.ok()) return ErrorFor(region_rows.status());
  nlohmann::json regions = nlohmann::json::array();
  for (const RegionRow& row : *region_rows) {
    regions.push_back({{"region", row.region},
                       {"terminals", row.terminals},
                       {"updated", row.updated},
                       {"failed", row.failed},
                       {"wave", row.wave}});
  }
  return JsonOk(status, {{"id", id},
                         {"spec", nlohmann::json::parse(RolloutSpecToJson(r->spec()))},
                         {"state", nlohmann::json::parse(RolloutStateToJson(r->state()))},
                         {"stages", stages},
                         {"regions", regions}});
}

HttpResponse Api::ActOnRollout(const HttpRequest& req, const std::string& id, const std::string& action_name) {
  Result<RolloutAction> action = ParseRolloutAction(action_name);
  if (!action.ok() || *action == RolloutAction::kStart) return JsonError(404, "not_found", "no such rollout action");
  Result<std::string> reason = ReasonOf(req);
  if (!reason.ok()) return ErrorFor(reason.status());
  Result<Rollout> r = rollouts_.Act(id, *action, req.caller, *reason);
  if (!r.ok()) return ErrorFor(r.status());
  if (std::optional<HttpResponse> unaudited =
          Audit(req, fmt::format("rollout.{}", ActionName(*action)), id, DescribeRolloutEvent(r->events().back()))) {
    return std::move(*unaudited);
  }
  return GetRollout(id);
}

HttpResponse Api::RolloutEvents(const std::string& id) {
  Result<Rollout> r = rollouts_.Get(id);
  if (!r.ok()) return ErrorFor(r.status());
  nlohmann::json events = nlohmann::json::array();
  for (const RolloutEvent& e : r->events()) events.push_back(nlohmann::json::parse(RolloutEventToJson(e)));
  return JsonOk(200, {{"id", id}, {"events", events}});
}

HttpResponse Api::ListFleetVersions() {
  FleetVersions fleet = rollouts_.KnownVersions(limits_.fleet_versions_max);
  nlohmann::json channels = nlohmann::json::array();
  auto rows = [](const std::map<std::string, uint64_t>& by_version) {
    nlohmann::json versions = nlohmann::json::array();
    for (const auto& [version, terminals] : by_version) {
      versions.push_back({{"version", version}, {"terminals", terminals}});
    }
    return versions;
  };
  for (const ChannelVersions& c : fleet.channels) {
    nlohmann::json regions = nlohmann::json::array();
    for (const auto& [region, by_version] : c.by_region) {
      regions.push_back({{"region", region}, {"versions", rows(by_version)}});
    }
    channels.push_back({{"model", c.model}, {"channel", c.channel}, {"versions", rows(c.terminals_by_version)},
                        {"regions", regions}});
  }
  return JsonOk(200, {{"channels", channels}, {"truncated", fleet.truncated}});
}

HttpResponse Api::ListFleetTerminals(const HttpRequest& req) {
  const std::string& query = req.query;
  FleetQuery q;
  std::optional<std::string> model = QueryParam(query, "model");
  if (!model || !IsValidModelName(*model)) return JsonError(400, "invalid_argument", "model=NAME is required");
  q.model = *model;
  q.channel = QueryParam(query, "channel").value_or("stable");
  q.version = QueryParam(query, "version").value_or("");
  q.region = QueryParam(query, "region").value_or("");
  q.after = QueryParam(query, "after").value_or("");
  if (!IsValidRegionOrProfile(q.channel) || (!q.region.empty() && !IsValidRegionOrProfile(q.region)) ||
      (!q.version.empty() && !IsValidVersion(q.version)) || (!q.after.empty() && !IsValidTerminalId(q.after))) {
    return JsonError(400, "invalid_argument", "invalid channel, region, version or after");
  }
  std::string state = QueryParam(query, "state").value_or("");
  if (state == "ok") q.state = FleetQuery::State::kOk;
  else if (state == "failed") q.state = FleetQuery::State::kFailed;
  else if (!state.empty()) return JsonError(400, "invalid_argument", "state must be ok or failed");
  uint64_t limit = 100;
  if (std::optional<std::string> text = QueryParam(query, "limit");
      text && (!ParseQueryNumber(*text, &limit) || limit == 0 || limit > limits_.fleet_page_max)) {
    return JsonError(400, "invalid_argument", fmt::format("limit must be in [1, {}]", limits_.fleet_page_max));
  }
  q.limit = limit;
  FleetPage page = rollouts_.KnownTerminalPage(q);
  nlohmann::json terminals = nlohmann::json::array();
  for (const KnownTerminal& t : page.terminals) {
    nlohmann::json row = {{"id", t.info.id},
                          {"region", t.info.region},
                          {"profile", t.info.profile},
                          {"version", t.info.current_version},
                          {"previous_version", t.previous_version},
                          {"failed_version", t.failed_version},
                          {"last_seen", FormatRfc3339(t.last_seen_ms)},
                          {"failures", t.failures}};
    if (t.last_report) {
      row["last_report"] = {{"outcome", ReportOutcomeName(*t.last_report)}, {"time", FormatRfc3339(t.last_report_ms)}};
    }
    terminals.push_back(std::move(row));
  }
  nlohmann::json body = {{"model", q.model}, {"channel", q.channel}, {"terminals", terminals}};
  if (!page.next.empty()) body["next"] = page.next;
  return JsonOk(200, body);
}

}  // namespace meridian
