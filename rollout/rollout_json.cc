// JSON for rollout specs, states, events, whole rollouts and terminal reports:
// what the daemon persists and serves. Parsers never throw: nlohmann is used
// without exceptions and every value's type is checked before it is read.
#include "rollout/rollout.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

namespace {

using Json = nlohmann::json;

Json SpecJson(const RolloutSpec& s) {
  Json j = Json::object();
  j["id"] = s.id;
  j["model"] = s.model;
  j["target_version"] = s.target_version;
  j["previous_version"] = s.previous_version;
  j["channel"] = s.channel;
  j["regions"] = s.regions;
  j["profiles"] = s.profiles;
  j["canaries"] = s.canaries;
  j["stages_percent"] = s.stages_percent;
  j["min_reports"] = s.min_reports;
  j["max_failure_rate"] = s.max_failure_rate;
  j["soak_ms"] = s.soak_ms;
  j["auto_promote"] = s.auto_promote;
  j["on_breach"] = BreachActionName(s.on_breach);
  if (s.waves) j["waves"] = true;  // only when set: documents without waves stay readable by older agents
  if (!s.window.empty()) j["window"] = s.window;
  if (!s.time_zones.empty()) j["time_zones"] = s.time_zones;
  j["health_rules"] = s.health_rules;
  j["health_min_terminals"] = s.health_min_terminals;
  return j;
}

Result<RolloutSpec> SpecFromObject(const Json& j, UnknownFields unknown) {
  RolloutSpec s;
  JsonFields f(j, "rollout spec", unknown);
  f.String("id", &s.id);
  f.String("model", &s.model);
  f.String("target_version", &s.target_version);
  f.String("previous_version", &s.previous_version);
  f.String("channel", &s.channel);
  f.Strings("regions", &s.regions);
  f.Strings("profiles", &s.profiles);
  f.Strings("canaries", &s.canaries);
  f.Numbers("stages_percent", &s.stages_percent);
  f.Uint32("min_reports", &s.min_reports);
  f.Number("max_failure_rate", &s.max_failure_rate);
  f.Int64("soak_ms", &s.soak_ms);
  f.Bool("auto_promote", &s.auto_promote);
  f.Choice("on_breach", BreachActionName, &s.on_breach);
  f.Bool("waves", &s.waves);
  f.String("window", &s.window);
  if (const Json* zones = f.Object("time_zones")) {
    for (const auto& [region, zone] : zones->items()) {
      if (!zone.is_string()) {
        f.Fail("time_zones", "must map regions to zone names (strings)");
        break;
      }
      s.time_zones[region] = zone.get<std::string>();
    }
  }
  f.Strings("health_rules", &s.health_rules);
  f.Uint32("health_min_terminals", &s.health_min_terminals);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  return s;
}

Json StateJson(const RolloutState& s) {
  return {{"phase", PhaseName(s.phase)},
          {"stage", s.stage},
          {"gate_since_ms", s.gate_since_ms},
          {"updated_ms", s.updated_ms}};
}

Result<RolloutState> StateFromObject(const Json& j) {
  RolloutState s;
  JsonFields f(j, "rollout state", UnknownFields::kIgnore);
  f.Choice("phase", PhaseName, &s.phase, true);
  f.Uint32("stage", &s.stage, true);
  f.Int64("gate_since_ms", &s.gate_since_ms, true);
  f.Int64("updated_ms", &s.updated_ms, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  return s;
}

Json EventJson(const RolloutEvent& e) {
  return {{"seq", e.seq},       {"time_ms", e.time_ms}, {"actor", e.actor},
          {"action", ActionName(e.action)},
          {"reason", e.reason}, {"before", e.before},   {"after", e.after}};
}

Result<RolloutEvent> EventFromObject(const Json& j) {
  RolloutEvent e;
  JsonFields f(j, "rollout event", UnknownFields::kIgnore);
  f.Uint("seq", &e.seq, true);
  f.Int64("time_ms", &e.time_ms, true);
  f.String("actor", &e.actor, true);
  f.Choice("action", ActionName, &e.action, true);
  f.String("reason", &e.reason);
  f.String("before", &e.before, true);
  f.String("after", &e.after, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  return e;
}

}  // namespace

std::string RolloutSpecToJson(const RolloutSpec& spec) { return DumpJson(SpecJson(spec)); }

Result<RolloutSpec> ParseRolloutSpecJson(std::string_view json) {
  Result<Json> j = ParseJsonObject(json, kRolloutJsonBytesMax, "rollout spec");
  if (!j.ok()) return j.status();
  return SpecFromObject(*j, UnknownFields::kRefuse);
}

Result<RolloutSpec> RolloutSpecFromJson(std::string_view json) {
  Result<Json> j = ParseJsonObject(json, kRolloutJsonBytesMax, "rollout spec");
  if (!j.ok()) return j.status();
  Result<RolloutSpec> spec = SpecFromObject(*j, UnknownFields::kIgnore);
  if (!spec.ok()) return spec;
  MERIDIAN_RETURN_IF_ERROR(ValidateRolloutSpec(*spec));
  return spec;
}

std::string RolloutStateToJson(const RolloutState& state) { return DumpJson(StateJson(state)); }

Result<RolloutState> RolloutStateFromJson(std::string_view json) {
  Result<Json> j = ParseJsonObject(json, kRolloutJsonBytesMax, "rollout state");
  if (!j.ok()) return j.status();
  return StateFromObject(*j);
}

std::string RolloutEventToJson(const RolloutEvent& event) { return DumpJson(EventJson(event)); }

Result<RolloutEvent> RolloutEventFromJson(std::string_view json) {
  Result<Json> j = ParseJsonObject(json, kRolloutJsonBytesMax, "rollout event");
  if (!j.ok()) return j.status();
  return EventFromObject(*j);
}

std::string RolloutToJson(const Rollout& rollout) {
  Json events = Json::array();
  for (const RolloutEvent& e : rollout.events()) events.push_back(EventJson(e));
  return DumpJson(Json{{"spec", SpecJson(rollout.spec())}, {"state", StateJson(rollout.state())}, {"events", events}});
}

Result<Rollout> RolloutFromJson(std::string_view json) {
  Result<Json> j = ParseJsonObject(json, kRolloutJsonBytesMax, "rollout");
  if (!j.ok()) return j.status();
  JsonFields f(*j, "rollout", UnknownFields::kIgnore);
  const Json* spec_json = f.Object("spec", true);
  const Json* state_json = f.Object("state", true);
  const Json* events_json = f.Objects("events", kRolloutEventsMax + 1, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  Result<RolloutSpec> spec = SpecFromObject(*spec_json, UnknownFields::kIgnore);
  if (!spec.ok()) return spec.status();
  Result<RolloutState> state = StateFromObject(*state_json);
  if (!state.ok()) return state.status();
  std::vector<RolloutEvent> events;
  events.reserve(events_json->size());
  for (const Json& e : *events_json) {
    Result<RolloutEvent> event = EventFromObject(e);
    if (!event.ok()) return event.status();
    events.push_back(std::move(*event));
  }
  return Rollout::Restore(std::move(*spec), *state, std::move(events));
}

std::string ReportToJson(const TerminalReport& r) {
  return DumpJson(Json{{"terminal_id", r.terminal_id},
                       {"profile", r.profile},
                       {"region", r.region},
                       {"version", r.version},
                       {"stage", r.stage},
                       {"outcome", ReportOutcomeName(r.outcome)},
                       {"reason", r.reason},
                       {"health", r.health},
                       {"received_ms", r.received_ms}});
}

Result<TerminalReport> ReportFromJson(std::string_view json) {
  Result<Json> j = ParseJsonObject(json, kRolloutJsonBytesMax, "report");
  if (!j.ok()) return j.status();
  TerminalReport r;
  JsonFields f(*j, "report", UnknownFields::kIgnore);
  f.String("terminal_id", &r.terminal_id, true);
  f.String("profile", &r.profile);
  f.String("region", &r.region);
  f.String("version", &r.version);
  f.Uint32("stage", &r.stage);
  f.Choice("outcome", ReportOutcomeName, &r.outcome, true);
  f.String("reason", &r.reason);
  if (const Json* health = f.Find("health")) {
    if (!health->is_object() || health->size() > kReportHealthEntriesMax) {
      f.Fail("health", fmt::format("must be an object of at most {} numbers", kReportHealthEntriesMax));
    } else {
      for (const auto& item : health->items()) {
        if (!item.value().is_number()) {
          f.Fail("health", "must hold numbers only");
          break;
        }
        r.health[item.key()] = item.value().get<double>();
      }
    }
  }
  f.Int64("received_ms", &r.received_ms);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  MERIDIAN_RETURN_IF_ERROR(ValidateReport(r));
  return r;
}

}  // namespace meridian
