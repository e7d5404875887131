// `meridian rollout …`: start, plan, list, status (--watch), promote, pause,
// resume, abort, rollback and events, `meridian regions`, `fleet`,
// `residency` and `terminals …`, over the daemon's control API.
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <chrono>
#include <functional>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/clock.h"
#include "cli/commands.h"
#include "cli/control.h"
#include "cli/output.h"
#include "client/api.h"
#include "client/http_client.h"
#include "rollout/rollout.h"

namespace meridian::cli {

namespace {

constexpr std::chrono::seconds kWatchInterval{2};
constexpr std::chrono::hours kWatchMax{24};  // a forgotten --watch ends on its own

// "90s", "5m", "2h", "250ms" or a bare number of seconds, to milliseconds.
Result<int64_t> ParseDurationMs(const std::string& text) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  std::string_view unit(p, static_cast<size_t>(text.data() + text.size() - p));
  int64_t scale = unit == "ms" ? 1 : unit == "s" || unit.empty() ? 1000 : unit == "m" ? 60'000 : unit == "h" ? 3'600'000 : 0;
  if (ec != std::errc() || n < 0 || scale == 0 || n > kRolloutSoakMsMax / scale) {
    return Status::InvalidArgument(fmt::format("--soak: '{}' is not a duration such as 30s, 5m or 2h", text));
  }
  return n * scale;
}

Result<std::string> SpecJson(const RolloutOptions& o) {
  Result<int64_t> soak_ms = ParseDurationMs(o.soak);
  if (!soak_ms.ok()) return soak_ms.status();
  RolloutSpec spec;
  spec.id = o.id;
  spec.model = o.model;
  spec.target_version = o.version;
  spec.channel = o.channel;
  spec.regions = o.regions;
  spec.profiles = o.profiles;
  spec.canaries = o.canaries;
  spec.stages_percent = o.stages;
  spec.min_reports = o.min_reports;
  spec.max_failure_rate = o.max_failure_rate;
  spec.soak_ms = *soak_ms;
  spec.auto_promote = o.auto_promote;
  spec.on_breach = o.auto_rollback ? BreachAction::kRollback : BreachAction::kPause;
  spec.waves = o.waves;
  spec.window = o.window;
  for (const std::string& z : o.time_zones) {
    size_t eq = z.find('=');
    if (eq == 0 || eq == z.size() - 1) return Status::InvalidArgument("--time-zone wants REGION=ZONE or ZONE, got '" + z + "'");
    if (eq == std::string::npos) spec.time_zones[std::string(kAnyRegionZone)] = z;
    else spec.time_zones[z.substr(0, eq)] = z.substr(eq + 1);
  }
  if (o.health_rules) spec.health_rules = *o.health_rules;
  if (o.no_health_rules) spec.health_rules.clear();
  spec.health_min_terminals = o.health_min_terminals;
  return RolloutSpecToJson(spec);
}

// A field of a JSON object as text for a table cell: strings as they are, other
// values as JSON, absent (an older daemon) or null as `absent`.
std::string Cell(const nlohmann::json& object, const char* key, std::string_view absent = "-") {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string(absent);
  if (it->is_string()) return it->get<std::string>().empty() ? std::string(absent) : it->get<std::string>();
  return it->dump();
}

// The per-region table a daemon adds for rollouts with waves; nothing when absent.
void PrintRegionsText(const nlohmann::json& j) {
  auto regions = j.find("regions");
  if (regions == j.end() || !regions->is_array() || regions->empty()) return;
  fmt::print("{:<12} {:>9} {:>8} {:>7}  {}\n", "REGION", "TERMINALS", "UPDATED", "FAILED", "WAVE");
  for (const auto& r : *regions) {
    if (!r.is_object()) continue;
    fmt::print("{:<12} {:>9} {:>8} {:>7}  {}\n", Cell(r, "region"), Cell(r, "terminals"), Cell(r, "updated"),
               Cell(r, "failed"), Cell(r, "wave"));
  }
}

void PrintStatusText(const nlohmann::json& j) {
  const auto& spec = j.at("spec");
  const auto& state = j.at("state");
  std::string prev = spec.at("previous_version").get<std::string>();
  fmt::print("rollout {}: {} channel {}  {} -> {}  {}({})\n", j.at("id").get<std::string>(),
             spec.at("model").get<std::string>(), spec.at("channel").get<std::string>(), prev.empty() ? "(none)" : prev,
             spec.at("target_version").get<std::string>(), state.at("phase").get<std::string>(),
             state.at("stage").get<uint32_t>());
  fmt::print("{:<6} {:<12} {:>8} {:>9} {:>11} {:>8} {:>7} {:>8}  {}\n", "STAGE", "REGION", "PERCENT", "ELIGIBLE",
             "DOWNLOADING", "UPDATED", "FAILED", "HEALTHY", "GATE");
  for (const auto& s : j.at("stages")) {
    // "region" is per stage with waves; absent or "" (older daemons, no waves) is every region.
    fmt::print("{:<6} {:<12} {:>8} {:>9} {:>11} {:>8} {:>7} {:>8}  {}\n", s.at("stage").get<int>(),
               Cell(s, "region", "all"), s.at("percent").get<double>(), s.at("eligible").get<uint64_t>(),
               Cell(s, "downloading"), s.at("updated").get<uint64_t>(),
               s.at("failed").get<uint64_t>(), s.at("healthy").get<uint64_t>(), s.at("gate").get<std::string>());
  }
  PrintRegionsText(j);
}


void PrintPlanText(const nlohmann::json& j) {
  const auto& spec = j.at("spec");
  std::string prev = spec.at("previous_version").get<std::string>();
  fmt::print("plan: {} channel {}  {} -> {}  (target {})\n", spec.at("model").get<std::string>(),
             spec.at("channel").get<std::string>(), prev.empty() ? "(none)" : prev,
             spec.at("target_version").get<std::string>(), HumanBytes(j.at("target_bytes").get<uint64_t>()));
  fmt::print("{:<6} {:<12} {:>8} {:>9} {:>14} {:>14}\n", "STAGE", "REGION", "PERCENT", "TERMINALS", "FULL DOWNLOAD",
             "WITH DELTAS");
  for (const auto& s : j.at("stages")) {
    fmt::print("{:<6} {:<12} {:>8} {:>9} {:>14} {:>14}\n", s.at("stage").get<int>(), Cell(s, "region", "all"),
               s.at("percent").get<double>(), s.at("eligible").get<uint64_t>(),
               HumanBytes(s.at("full_download_bytes").get<uint64_t>()),
               HumanBytes(s.at("delta_download_bytes").get<uint64_t>()));
  }
  const nlohmann::json regions = j.value("regions", nlohmann::json::array());
  if (regions.empty()) return;
  fmt::print("\n{:<12} {:>9} {:>14} {:>14}\n", "REGION", "TERMINALS", "FULL DOWNLOAD", "WITH DELTAS");
  for (const auto& r : regions) {
    const std::string& region = r.at("region").get_ref<const std::string&>();
    fmt::print("{:<12} {:>9} {:>14} {:>14}\n", region.empty() ? "(none)" : region, r.at("terminals").get<uint64_t>(),
               HumanBytes(r.at("full_download_bytes").get<uint64_t>()),
               HumanBytes(r.at("delta_download_bytes").get<uint64_t>()));
  }
}

void PrintListText(const nlohmann::json& j) {
  fmt::print("{:<16} {:<20} {:<10} {:<12} {:<12} {}\n", "ID", "MODEL", "CHANNEL", "FROM", "TO", "STATE");
  for (const auto& r : j.at("rollouts")) {
    std::string prev = r.at("previous_version").get<std::string>();
    fmt::print("{:<16} {:<20} {:<10} {:<12} {:<12} {}({})\n", r.at("id").get<std::string>(),
               r.at("model").get<std::string>(), r.at("channel").get<std::string>(), prev.empty() ? "-" : prev,
               r.at("target_version").get<std::string>(), r.at("phase").get<std::string>(), r.at("stage").get<uint32_t>());
  }
}

// `meridian regions`: at a region, its upstream first; then a row per region.
void PrintRegionListText(const nlohmann::json& j) {
  int64_t now = SystemClock::Get().NowUnixMillis();
  if (j.contains("upstream")) {
    const auto& u = j.at("upstream");
    fmt::print("region {} following {}: {}, {} reports waiting{}\n", j.at("region").get<std::string>(),
               u.at("url").get<std::string>(), u.at("reachable").get<bool>() ? "reachable" : "UNREACHABLE",
               u.at("reports_pending").get<uint64_t>(),
               u.at("last_error").get<std::string>().empty() ? "" : " (" + u.at("last_error").get<std::string>() + ")");
  }
  fmt::print("{:<10} {:<10} {:<7} {:>12} {:>7} {:>9} {:>10} {:>10} {:>9} {:>8}\n", "REGION", "REACHABLE", "HEALTH",
             "STATE", "BEHIND", "LAG", "LAST SEEN", "STORED", "TERMINALS", "REPORTS");
  auto seconds = [](int64_t ms) { return fmt::format("{}s", ms / 1000); };
  std::string faults;
  for (const auto& r : j.at("regions")) {
    int64_t seen = r.at("last_seen_ms").get<int64_t>();
    const std::string& error = r.at("last_error").get_ref<const std::string&>();
    fmt::print("{:<10} {:<10} {:<7} {:>12} {:>7} {:>9} {:>10} {:>10} {:>9} {:>8}\n", r.at("region").get<std::string>(),
               r.at("reachable").get<bool>() ? "yes" : "NO", error.empty() ? "ok" : "FAULT", r.at("sync_version").get<uint64_t>(),
               r.at("behind").get<uint64_t>(), r.at("lag_ms").is_null() ? "-" : seconds(r.at("lag_ms").get<int64_t>()),
               seen == 0 ? "never" : seconds(now - seen) + " ago", HumanBytes(r.at("stored_bytes").get<uint64_t>()),
               r.at("terminals").get<uint64_t>(), r.at("reports_received").get<uint64_t>());
    if (!error.empty()) faults += fmt::format("  {}: {}\n", r.at("region").get<std::string>(), error);
  }
  if (!faults.empty()) fmt::print("faults the regions report:\n{}", faults);
}

// `meridian residency`: a row per (model, daemon) — the view an auditor asks for.
void PrintResidencyText(const nlohmann::json& j) {
  int64_t now = SystemClock::Get().NowUnixMillis();
  fmt::print("{:<24} {:<12} {:<10} {:<12} {:>8} {:>6} {:>12} {:>10}\n", "MODEL", "RESIDENCY", "DAEMON", "JURISDICTION",
             "VERSIONS", "HELD", "BYTES", "AS OF");
  for (const auto& m : j.at("models")) {
    std::vector<std::string> residency = m.at("residency").get<std::vector<std::string>>();
    std::string where = residency.empty() ? "anywhere" : fmt::format("{}", fmt::join(residency, ","));
    for (const auto& d : m.at("daemons")) {
      int64_t as_of = d.at("as_of_ms").get<int64_t>();
      const std::string& jurisdiction = d.at("jurisdiction").get_ref<const std::string&>();
      fmt::print("{:<24} {:<12} {:<10} {:<12} {:>8} {:>6} {:>12} {:>10}\n", m.at("model").get<std::string>(), where,
                 d.at("daemon").get<std::string>(), jurisdiction.empty() ? "-" : jurisdiction,
                 d.at("versions").get<uint64_t>(), d.at("versions_held").get<uint64_t>(), d.at("bytes").get<uint64_t>(),
                 as_of == 0 ? "never" : fmt::format("{}s ago", (now - as_of) / 1000));
    }
  }
}

// `meridian fleet`: a row per (model, channel, version).
void PrintFleetText(const nlohmann::json& j) {
  fmt::print("{:<24} {:<12} {:<16} {:>9}\n", "MODEL", "CHANNEL", "VERSION", "TERMINALS");
  for (const auto& c : j.at("channels")) {
    for (const auto& v : c.at("versions")) {
      const std::string& version = v.at("version").get_ref<const std::string&>();
      fmt::print("{:<24} {:<12} {:<16} {:>9}\n", c.at("model").get<std::string>(), c.at("channel").get<std::string>(),
                 version.empty() ? "(none)" : version, v.at("terminals").get<uint64_t>());
    }
  }
  if (j.at("truncated").get<bool>()) fmt::print("(truncated: the daemon lists at most 10,000 rows)\n");
  bool header = false;
  for (const auto& c : j.at("channels")) {
    for (const auto& r : c.value("regions", nlohmann::json::array())) {
      for (const auto& v : r.at("versions")) {
        if (!header) fmt::print("\n{:<24} {:<12} {:<10} {:<16} {:>9}\n", "MODEL", "CHANNEL", "REGION", "VERSION", "TERMINALS");
        header = true;
        const std::string& version = v.at("version").get_ref<const std::string&>();
        const std::string& region = r.at("region").get_ref<const std::string&>();
        fmt::print("{:<24} {:<12} {:<10} {:<16} {:>9}\n", c.at("model").get<std::string>(),
                   c.at("channel").get<std::string>(), region.empty() ? "(none)" : region,
                   version.empty() ? "(none)" : version, v.at("terminals").get<uint64_t>());
      }
    }
  }
}

// `meridian fleet terminals`: a row per terminal, and how to ask for the next page.
void PrintFleetTerminalsText(const nlohmann::json& j) {
  fmt::print("{:<28} {:<8} {:<12} {:<12} {:<12} {:<24} {:<8} {:>8}\n", "TERMINAL", "REGION", "PROFILE", "VERSION",
             "PREVIOUS", "LAST SEEN", "REPORT", "FAILURES");
  auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  for (const auto& t : j.at("terminals")) {
    std::string report = "-";
    if (auto r = t.find("last_report"); r != t.end()) report = r->at("outcome").get<std::string>();
    fmt::print("{:<28} {:<8} {:<12} {:<12} {:<12} {:<24} {:<8} {:>8}\n", t.at("id").get<std::string>(),
               or_dash(t.at("region").get<std::string>()), or_dash(t.at("profile").get<std::string>()),
               or_dash(t.at("version").get<std::string>()), or_dash(t.at("previous_version").get<std::string>()),
               t.at("last_seen").get<std::string>(), report, t.at("failures").get<uint64_t>());
  }
  if (auto next = j.find("next"); next != j.end()) {
    fmt::print("(more: add --after {})\n", next->get<std::string>());
  }
}

void PrintEventsText(const nlohmann::json& j) {
  for (const auto& e : j.at("events")) {
    fmt::print("{:>3}  {}  {:<8} {:<9} {} -> {}  {}\n", e.at("seq").get<uint64_t>(),
               FormatRfc3339(e.at("time_ms").get<int64_t>()), e.at("actor").get<std::string>(),
               e.at("action").get<std::string>(), e.at("before").get<std::string>().empty() ? "-" : e.at("before").get<std::string>(),
               e.at("after").get<std::string>(), e.at("reason").get<std::string>());
  }
}

}  // namespace

int RolloutStart(const GlobalOptions& g, const RolloutOptions& o) {
  Result<std::string> body = SpecJson(o);
  if (!body.ok()) return Fail(body.status());
  return CallAndShow(g, "POST", RolloutsPath(), *body, 201, "start rollout", PrintStatusText);
}

int RolloutPlan(const GlobalOptions& g, const RolloutOptions& o) {
  Result<std::string> body = SpecJson(o);
  if (!body.ok()) return Fail(body.status());
  return CallAndShow(g, "POST", RolloutPlansPath(), *body, 200, "plan rollout", PrintPlanText);
}

int RolloutList(const GlobalOptions& g) {
  return CallAndShow(g, "GET", RolloutsPath(), "", 200, "list rollouts", PrintListText);
}

int RegionList(const GlobalOptions& g) {
  return CallAndShow(g, "GET", RegionsPath(), "", 200, "list regions", PrintRegionListText);
}

int Residency(const GlobalOptions& g) {
  return CallAndShow(g, "GET", ResidencyPath(), "", 200, "residency", PrintResidencyText);
}

int FleetList(const GlobalOptions& g) {
  return CallAndShow(g, "GET", FleetPath(), "", 200, "fleet", PrintFleetText);
}

int FleetTerminals(const GlobalOptions& g, const FleetTerminalsQuery& q) {
  return CallAndShow(g, "GET", FleetTerminalsPath(q), "", 200, "fleet terminals", PrintFleetTerminalsText);
}

int RolloutStatus(const GlobalOptions& g, const std::string& id, bool watch) {
  auto until = std::chrono::steady_clock::now() + kWatchMax;
  // On a terminal each refresh replaces the last; piped, they follow each other.
  const bool redraw = watch && !g.json && ::isatty(STDOUT_FILENO) != 0;
  for (;;) {
    Result<nlohmann::json> j = Call(g, "GET", RolloutPath(id), "", 200, "rollout status");
    if (!j.ok()) return Fail(j.status());
    if (redraw) {
      fmt::print("\x1b[H\x1b[J{}  (every {} s; Ctrl-C stops watching)\n", FormatRfc3339(SystemClock::Get().NowUnixMillis()),
                 kWatchInterval.count());
    }
    if (Status shown = Show(g, *j, "rollout status", PrintStatusText); !shown.ok()) return Fail(shown);
    const nlohmann::json* phase = j->contains("state") ? &(*j)["state"] : nullptr;
    phase = phase != nullptr && phase->is_object() && phase->contains("phase") ? &(*phase)["phase"] : nullptr;
    bool settled = phase == nullptr || !phase->is_string() || (*phase != "running" && *phase != "paused");
    if (!watch || settled || std::chrono::steady_clock::now() > until) return 0;
    std::fflush(stdout);
    std::this_thread::sleep_for(kWatchInterval);
    if (!g.json && !redraw) fmt::print("\n");
  }
}

int RolloutAct(const GlobalOptions& g, const std::string& action, const std::string& id, const std::string& reason) {
  nlohmann::json body = nlohmann::json::object();
  if (!reason.empty()) body["reason"] = reason;
  return CallAndShow(g, "POST", RolloutActionPath(id, action), DumpJson(body), 200, action, PrintStatusText);
}

int RolloutEvents(const GlobalOptions& g, const std::string& id) {
  return CallAndShow(g, "GET", RolloutEventsPath(id), "", 200, "rollout events", PrintEventsText);
}

namespace {

// Terminals per POST /v1/terminals: a provisioning file goes in pieces this big.
constexpr size_t kTerminalsPerRequest = 10'000;

void PrintTerminalsText(const nlohmann::json& j) {
  fmt::print("{:<32} {:<9} {:<10} {:<10} {:<24} {}\n", "TERMINAL", "STATE", "PROFILE", "REGION", "SINCE", "PUBLIC KEY");
  for (const auto& t : j.at("terminals")) {
    fmt::print("{:<32} {:<9} {:<10} {:<10} {:<24} {}\n", t.at("id").get<std::string>(), t.at("state").get<std::string>(),
               Cell(t, "profile"), Cell(t, "region"), FormatRfc3339(t.at("changed_ms").get<int64_t>()),
               t.at("public_key").get<std::string>());
  }
  std::vector<std::string> counts;
  for (const auto& [state, n] : j.at("counts").items()) counts.push_back(fmt::format("{} {}", n.get<uint64_t>(), state));
  fmt::print("({})\n", fmt::join(counts, ", "));
  const std::string& next = j.at("next").get_ref<const std::string&>();
  if (!next.empty()) fmt::print("more: --after {}\n", next);
}

// POSTs `terminals` in pieces; the number enrolled.
Result<uint64_t> PostTerminals(const GlobalOptions& g, const std::vector<nlohmann::json>& terminals) {
  uint64_t enrolled = 0;
  for (size_t i = 0; i < terminals.size(); i += kTerminalsPerRequest) {
    nlohmann::json piece = nlohmann::json::array();
    for (size_t k = i; k < std::min(terminals.size(), i + kTerminalsPerRequest); ++k) piece.push_back(terminals[k]);
    Result<nlohmann::json> j = Call(g, "POST", TerminalsPath(), DumpJson(nlohmann::json{{"terminals", piece}}), 200,
                                    fmt::format("enrol terminals {} to {}", i + 1, i + piece.size()));
    if (!j.ok()) return j.status();
    enrolled += piece.size();
  }
  return enrolled;
}

int ShowEnrolled(const GlobalOptions& g, Result<uint64_t> enrolled) {
  if (!enrolled.ok()) return Fail(enrolled.status());
  if (g.json) {
    PrintJson({{"enrolled", *enrolled}});
  } else {
    fmt::print("enrolled {} terminal{} (accepted)\n", *enrolled, *enrolled == 1 ? "" : "s");
  }
  return 0;
}

}  // namespace

int TerminalsAdd(const GlobalOptions& g, const EnrolledTerminalOptions& t) {
  nlohmann::json j = {{"id", t.id}, {"public_key", t.public_key}};
  if (!t.profile.empty()) j["profile"] = t.profile;
  if (!t.region.empty()) j["region"] = t.region;
  return ShowEnrolled(g, PostTerminals(g, {j}));
}

int TerminalsImport(const GlobalOptions& g, const std::string& file) {
  Result<std::string> text = ReadFileToString(file, 1ull << 30);
  if (!text.ok()) return Fail(text.status());
  // One terminal per line: id,public_key[,profile[,region]]; '#' starts a comment.
  std::vector<nlohmann::json> terminals;
  size_t line_no = 0;
  std::string_view rest = *text;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    if (!IsUtf8(line)) return Fail(fmt::format("{}:{}: not UTF-8 text", file, line_no));
    std::vector<std::string> fields;
    for (size_t start = 0;;) {
      size_t comma = line.find(',', start);
      fields.emplace_back(line.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    if (fields.size() < 2 || fields.size() > 4) {
      return Fail(fmt::format("{}:{}: expected id,public_key[,profile[,region]]", file, line_no));
    }
    nlohmann::json j = {{"id", fields[0]}, {"public_key", fields[1]}};
    if (fields.size() > 2 && !fields[2].empty()) j["profile"] = fields[2];
    if (fields.size() > 3 && !fields[3].empty()) j["region"] = fields[3];
    terminals.push_back(std::move(j));
  }
  if (terminals.empty()) return Fail(file + ": no terminals");
  return ShowEnrolled(g, PostTerminals(g, terminals));
}

int TerminalsList(const GlobalOptions& g, const std::string& state, const std::string& after, size_t limit) {
  return CallAndShow(g, "GET", TerminalsPath(state, after, limit), "", 200, "list terminals", PrintTerminalsText);
}

int TerminalsChange(const GlobalOptions& g, const std::string& action, const std::string& id) {
  return CallAndShow(g, "POST", TerminalActionPath(id, action), "", 200, action + " terminal",
                     [](const nlohmann::json& j) {
                       fmt::print("{}: {}\n", j.at("terminal").get<std::string>(), j.at("state").get<std::string>());
                     });
}

}  // namespace meridian::cli
