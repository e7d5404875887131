// JSON for rollout specs, states, events, whole rollouts and terminal reports:
// what the daemon persists and serves. Parsers never throw: nlohmann is used
// without exceptions and every value's type is checked before it is read.
#include "rollout/rollout.h"

#include <limits>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

namespace {

using Json = nlohmann::json;

std::string Dump(const Json& j) {
  // replace: a string that is not UTF-8 must not make dump() throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<Json> ParseObject(std::string_view text, std::string_view what) {
  if (text.size() > kRolloutJsonBytesMax) {
    return Status::InvalidArgument(fmt::format("{}: more than {} bytes of JSON", what, kRolloutJsonBytesMax));
  }
  Result<Json> j = ParseJson(text, kRolloutJsonBytesMax);
  if (!j.ok()) return Status::InvalidArgument(fmt::format("{}: {}", what, j.status().message()));
  if (!j->is_object()) return Status::InvalidArgument(fmt::format("{}: not a JSON object", what));
  return j;
}

// Reads the fields of one JSON object. The first problem is kept and named;
// fields that are absent keep the value already in the output (its default).
class FieldReader {
 public:
  FieldReader(const Json& object, std::string_view what) : object_(object), what_(what) {}

  const Json* Find(const char* key, bool required) {
    known_.insert(key);
    auto it = object_.find(key);
    if (it == object_.end()) {
      if (required) Fail(key, "is missing");
      return nullptr;
    }
    return &*it;
  }

  void String(const char* key, std::string* out, bool required = false) {
    if (const Json* v = Find(key, required)) {
      if (v->is_string()) *out = v->get<std::string>();
      else Fail(key, "must be a string");
    }
  }

  void Strings(const char* key, std::vector<std::string>* out) {
    const Json* v = Find(key, false);
    if (v == nullptr) return;
    if (!v->is_array()) return Fail(key, "must be an array of strings");
    out->clear();
    for (const Json& e : *v) {
      if (!e.is_string()) return Fail(key, "must be an array of strings");
      out->push_back(e.get<std::string>());
    }
  }

  void Numbers(const char* key, std::vector<double>* out) {
    const Json* v = Find(key, false);
    if (v == nullptr) return;
    if (!v->is_array()) return Fail(key, "must be an array of numbers");
    out->clear();
    for (const Json& e : *v) {
      if (!e.is_number()) return Fail(key, "must be an array of numbers");
      out->push_back(e.get<double>());
    }
  }

  void Number(const char* key, double* out) {
    if (const Json* v = Find(key, false)) {
      if (v->is_number()) *out = v->get<double>();
      else Fail(key, "must be a number");
    }
  }

  void Int64(const char* key, int64_t* out, bool required = false) {
    const Json* v = Find(key, required);
    if (v == nullptr) return;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Fail(key, "is out of range");
      *out = static_cast<int64_t>(u);
    } else if (v->is_number_integer()) {
      *out = v->get<int64_t>();
    } else {
      Fail(key, "must be an integer");
    }
  }

  void Uint(const char* key, uint64_t max, uint64_t* out, bool required = false) {
    const Json* v = Find(key, required);
    if (v == nullptr) return;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max) return Fail(key, fmt::format("must be an integer in [0, {}]", max));
    *out = v->get<uint64_t>();
  }

  void Uint32(const char* key, uint32_t* out, bool required = false) {
    uint64_t wide = *out;
    Uint(key, std::numeric_limits<uint32_t>::max(), &wide, required);
    *out = static_cast<uint32_t>(wide);
  }

  void Bool(const char* key, bool* out) {
    if (const Json* v = Find(key, false)) {
      if (v->is_boolean()) *out = v->get<bool>();
      else Fail(key, "must be true or false");
    }
  }

  // A string field naming an enumerator. `name` is the public name function,
  // which answers "unknown" past the last enumerator: that ends the search, so
  // a new enumerator needs no second list here.
  template <typename Enum>
  void Choice(const char* key, std::string_view (*name)(Enum), Enum* out, bool required = false) {
    const Json* v = Find(key, required);
    if (v == nullptr) return;
    std::vector<std::string_view> names;
    for (int i = 0; name(static_cast<Enum>(i)) != "unknown"; ++i) {
      names.push_back(name(static_cast<Enum>(i)));
      if (v->is_string() && v->get_ref<const std::string&>() == names.back()) {
        *out = static_cast<Enum>(i);
        return;
      }
    }
    Fail(key, fmt::format("must be one of {}", fmt::join(names, ", ")));
  }

  void Fail(std::string_view key, std::string_view problem) {
    if (error_.empty()) error_ = fmt::format("{}: field '{}' {}", what_, key, problem);
  }

  // The first problem, or an unknown field: a typo in an operator's request
  // must not silently become a default.
  Status Finish() const {
    if (!error_.empty()) return Status::InvalidArgument(error_);
    for (const auto& item : object_.items()) {
      if (!known_.count(item.key())) {
        return Status::InvalidArgument(fmt::format("{}: unknown field '{}'", what_, item.key()));
      }
    }
    return Status::Ok();
  }

 private:
  const Json& object_;
  std::string_view what_;
  std::set<std::string, std::less<>> known_;
  std::string error_;
};

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
  return j;
}

Result<RolloutSpec> SpecFromObject(const Json& j) {
  RolloutSpec s;
  FieldReader f(j, "rollout spec");
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
  FieldReader f(j, "rollout state");
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
  FieldReader f(j, "rollout event");
  f.Uint("seq", std::numeric_limits<uint64_t>::max(), &e.seq, true);
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

std::string RolloutSpecToJson(const RolloutSpec& spec) { return Dump(SpecJson(spec)); }

Result<RolloutSpec> ParseRolloutSpecJson(std::string_view json) {
  Result<Json> j = ParseObject(json, "rollout spec");
  if (!j.ok()) return j.status();
  return SpecFromObject(*j);
}

Result<RolloutSpec> RolloutSpecFromJson(std::string_view json) {
  Result<RolloutSpec> spec = ParseRolloutSpecJson(json);
  if (!spec.ok()) return spec;
  MERIDIAN_RETURN_IF_ERROR(ValidateRolloutSpec(*spec));
  return spec;
}

std::string RolloutStateToJson(const RolloutState& state) { return Dump(StateJson(state)); }

Result<RolloutState> RolloutStateFromJson(std::string_view json) {
  Result<Json> j = ParseObject(json, "rollout state");
  if (!j.ok()) return j.status();
  return StateFromObject(*j);
}

std::string RolloutEventToJson(const RolloutEvent& event) { return Dump(EventJson(event)); }

Result<RolloutEvent> RolloutEventFromJson(std::string_view json) {
  Result<Json> j = ParseObject(json, "rollout event");
  if (!j.ok()) return j.status();
  return EventFromObject(*j);
}

std::string RolloutToJson(const Rollout& rollout) {
  Json events = Json::array();
  for (const RolloutEvent& e : rollout.events()) events.push_back(EventJson(e));
  return Dump({{"spec", SpecJson(rollout.spec())}, {"state", StateJson(rollout.state())}, {"events", events}});
}

Result<Rollout> RolloutFromJson(std::string_view json) {
  Result<Json> j = ParseObject(json, "rollout");
  if (!j.ok()) return j.status();
  FieldReader f(*j, "rollout");
  const Json* spec_json = f.Find("spec", true);
  const Json* state_json = f.Find("state", true);
  const Json* events_json = f.Find("events", true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  if (!spec_json->is_object() || !state_json->is_object() || !events_json->is_array()) {
    return Status::InvalidArgument("rollout: spec and state must be objects, events an array");
  }
  if (events_json->size() > kRolloutEventsMax + 1) return Status::InvalidArgument("rollout: too many events");
  Result<RolloutSpec> spec = SpecFromObject(*spec_json);
  if (!spec.ok()) return spec.status();
  Result<RolloutState> state = StateFromObject(*state_json);
  if (!state.ok()) return state.status();
  std::vector<RolloutEvent> events;
  events.reserve(events_json->size());
  for (const Json& e : *events_json) {
    if (!e.is_object()) return Status::InvalidArgument("rollout: every event must be an object");
    Result<RolloutEvent> event = EventFromObject(e);
    if (!event.ok()) return event.status();
    events.push_back(std::move(*event));
  }
  return Rollout::Restore(std::move(*spec), *state, std::move(events));
}

std::string ReportToJson(const TerminalReport& r) {
  return Dump({{"terminal_id", r.terminal_id},
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
  Result<Json> j = ParseObject(json, "report");
  if (!j.ok()) return j.status();
  TerminalReport r;
  FieldReader f(*j, "report");
  f.String("terminal_id", &r.terminal_id, true);
  f.String("profile", &r.profile);
  f.String("region", &r.region);
  f.String("version", &r.version);
  f.Uint32("stage", &r.stage);
  f.Choice("outcome", ReportOutcomeName, &r.outcome, true);
  f.String("reason", &r.reason);
  if (const Json* health = f.Find("health", false)) {
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
