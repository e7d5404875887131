// /metrics of real meridiand processes (an origin and a region following it)
// after a publish, a rollout with reports, refused credentials and downloads:
// concrete values, and `promtool check metrics` on the text. Also the
// deploy/prometheus/ alert rules (`promtool check rules`, `promtool test
// rules`) and the Grafana dashboard, whose queries must name metrics the
// daemons export. promtool missing fails the test: it is a dependency.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "client/api.h"
#include "client/http_client.h"
#include "daemon/metrics.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

constexpr const char* kPromtool = "/usr/bin/promtool";
constexpr size_t kVersionBytes = 3'000'000;

std::string SourceRoot() {
  const char* root = std::getenv("MERIDIAN_SOURCE_ROOT");
  REQUIRE(root != nullptr);
  return root;
}

void RequirePromtool() {
  INFO("promtool is needed at " << kPromtool << " (Debian package prometheus; scripts/setup.sh installs it)");
  REQUIRE(std::filesystem::exists(kPromtool));
}

// promtool with `args`, and stdin from `stdin_path` when given; its output
// (stdout and stderr) must be empty or only `ok_lines` (its "SUCCESS" lines),
// and its exit code 0.
void RequirePromtoolClean(const std::vector<std::string>& args, const std::string& stdin_path = "") {
  std::string command = kPromtool;
  for (const std::string& a : args) command += " '" + a + "'";
  if (!stdin_path.empty()) command += " < '" + stdin_path + "'";
  CommandResult r = Run({"/bin/sh", "-c", command + " 2>&1"});
  INFO(command << "\n" << r.out);
  CHECK(r.exit_code == 0);
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    bool fine = line.empty() || line.find("SUCCESS") != std::string::npos || line.starts_with("Checking ") ||
                line.starts_with("Unit Testing: ");
    INFO("promtool said: " << line);
    CHECK(fine);
  }
}

std::string Scrape(const std::string& url) {
  HttpClient c(url);
  Result<HttpReply> r = c.Get("/metrics");
  REQUIRE(r.ok());
  REQUIRE(r->status == 200);
  return r->body;
}

// The value of the sample written exactly `series` (name and labels, as
// rendered) in `text`; nullopt when absent.
std::optional<double> Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(text.substr(at + series.size() + 2));
}

double Value(const std::string& text, const std::string& series) {
  std::optional<double> v = Sample(text, series);
  INFO(series << " in\n" << text);
  REQUIRE(v.has_value());
  return *v;
}

std::set<std::string> MetricNames(const std::string& text) {
  std::set<std::string> names;
  std::regex type_line("^# TYPE ([a-z_:][a-z0-9_:]*) ");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (std::smatch m; std::regex_search(line, m, type_line)) names.insert(m[1]);
  }
  return names;
}

// Every meridian_* name in `query` is one of `exported`.
void CheckNamesExported(const std::string& query, const std::set<std::string>& exported) {
  std::regex name("meridian_[a-z0-9_]+");
  for (auto it = std::sregex_iterator(query.begin(), query.end(), name); it != std::sregex_iterator(); ++it) {
    INFO("query: " << query);
    CHECK(exported.count(it->str()) == 1);
  }
}

std::string TerminalTarget(const std::string& terminal, const std::string& current) {
  return TargetPath(terminal, {.model = "m", .channel = "stable", .current = current, .profile = "pos", .region = "sg"});
}

std::string ReportBody(const std::string& version, const std::string& event, bool pass) {
  return Json{{"model", "m"},   {"version", version}, {"rollout", "r1"}, {"event", event},
              {"health", {{"pass", pass}}}, {"profile", "pos"},  {"region", "sg"}}
      .dump();
}

}  // namespace

TEST_CASE("label values and help text are escaped; a family renders once, with its samples together") {
  CHECK(EscapeLabelValue("plain") == "plain");
  CHECK(EscapeLabelValue("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  std::string out;
  MetricFamily f("meridian_x_total", MetricFamily::Type::kCounter, "Line one\nline two \\ done.");
  f.Add(1, {{"rollout", "r\"1"}, {"stage", "0"}}).Add(2.5, {{"rollout", "r2"}, {"stage", "1"}});
  f.AppendTo(out);
  MetricFamily("meridian_empty", MetricFamily::Type::kGauge, "Nothing.").AppendTo(out);
  CHECK(out ==
        "# HELP meridian_x_total Line one\\nline two \\\\ done.\n"
        "# TYPE meridian_x_total counter\n"
        "meridian_x_total{rollout=\"r\\\"1\",stage=\"0\"} 1\n"
        "meridian_x_total{rollout=\"r2\",stage=\"1\"} 2.5\n");
}

TEST_CASE("metrics of an origin and a region are right, and promtool finds nothing to say") {
  RequirePromtool();
  DaemonFixture origin;
  origin.Start();
  const std::string before = Scrape(origin.url());
  const double disk_before = Value(before, "meridian_store_disk_bytes");

  // Two versions of a few MB, the second close to the first (a delta pays):
  // far less than a memtable, so their chunks are flushed by the commits.
  Bytes v1 = RandomBytes(kVersionBytes, 1);
  Bytes v2 = v1;
  for (size_t i = 0; i < 30'000; ++i) v2[i * 97 % v2.size()] ^= 0x5a;
  std::map<std::string, Json> published;
  for (const auto& [version, bytes] : {std::pair{"1.0.0", &v1}, std::pair{"1.1.0", &v2}}) {
    WriteFile(origin.dir() / version, *bytes);
    CommandResult p = origin.Publish("m", version, origin.dir() / version);
    INFO(p.err);
    REQUIRE(p.exit_code == 0);
    published[version] = Json::parse(p.out);
  }
  const std::string published_text = Scrape(origin.url());
  const double disk_after = Value(published_text, "meridian_store_disk_bytes");
  UNSCOPED_INFO("meridian_store_disk_bytes: " << fmt::format("{:.0f}", disk_before) << " before, "
                                              << fmt::format("{:.0f}", disk_after) << " after publishing 2 x 3 MB");
  CHECK(disk_before >= 0);
  CHECK(disk_after >= disk_before + 5'000'000);  // most of 6 MB of random chunks, in blob files
  CHECK(Value(published_text, "meridian_store_bytes{part=\"blob\"}") >= 5'000'000);
  CHECK(Value(published_text, "meridian_store_bytes{part=\"wal\"}") < 1'000'000);  // chunks skip the WAL
  CHECK(Value(published_text, "meridian_store_fs_avail_bytes") > 0);
  CHECK(Value(published_text, "meridian_store_versions") == 2);

  // A region follows the origin.
  std::unique_ptr<DaemonFixture> region = DaemonFixture::Region(origin.root_json());
  region->StartRegion("sg", origin.url(), origin.mirror_token_file());

  // The channel on 1.0.0 for four terminals, then r1 to 1.1.0 in one stage.
  HttpClient op(origin.url(), HttpClientOptions{.bearer_token = origin.operator_token()});
  TerminalsClient term(origin);
  origin.StartRollout(RolloutSpecJson("base", "1.0.0", {{"model", "m"}}));
  REQUIRE(origin.RolloutAction("base", "promote", "base line") == 200);
  const std::vector<std::string> terminals = {"t0", "t1", "t2", "t3"};
  for (const std::string& t : terminals) REQUIRE(term.Get(TerminalTarget(t, "1.0.0"))->status == 200);
  origin.StartRollout(RolloutSpecJson("r1", "1.1.0", {{"model", "m"}, {"min_reports", 2}}));
  // t0 installs it; t1 fails it, which breaches the gate (1 of 2 > 5 %): paused.
  REQUIRE(term.Post(TerminalReportsPath("t0"), ReportBody("1.1.0", "installed", true))->status == 202);
  REQUIRE(term.Post(TerminalReportsPath("t1"), ReportBody("1.1.0", "failed", false))->status == 202);
  CHECK(Json::parse(origin.GetRollout("r1"))["state"]["phase"] == "paused");

  // Refused credentials: none, and a wrong one, on operator routes.
  HttpClient anonymous(origin.url());
  CHECK(anonymous.Get(RolloutsPath())->status == 401);
  HttpClient wrong(origin.url(), HttpClientOptions{.bearer_token = "not-the-token"});
  CHECK(wrong.Get(RolloutsPath())->status == 403);
  CHECK(wrong.Get(RolloutsPath())->status == 403);

  // The whole 1.1.0 artifact, and the delta 1.0.0 -> 1.1.0 once computed.
  Result<Digest> d1 = Digest::Parse(published["1.0.0"]["digest"].get<std::string>());
  Result<Digest> d2 = Digest::Parse(published["1.1.0"]["digest"].get<std::string>());
  REQUIRE(d1.ok());
  REQUIRE(d2.ok());
  // The region in step first: it fetched the chunks of both versions as
  // ranges of their artifacts, which count as artifact bytes too.
  REQUIRE(WaitFor([&] { return Value(Scrape(region->url()), "meridian_store_versions") == 2; },
                  std::chrono::seconds(60)));
  const double replicated = Value(Scrape(origin.url()), "meridian_served_bytes_total{kind=\"artifact\"}");
  CHECK(replicated >= 5'000'000);  // most of 6 MB of random chunks
  CHECK(replicated <= 2 * kVersionBytes);
  HttpClient reader(origin.url(), HttpClientOptions{.bearer_token = origin.terminal_token()});
  Result<HttpReply> artifact = reader.Get(ArtifactPath(*d2));
  REQUIRE(artifact->status == 200);
  CHECK(artifact->body.size() == kVersionBytes);
  REQUIRE(WaitFor([&] { return reader.Get(DeltaInfoPath(*d1, *d2))->status == 200; }, std::chrono::seconds(120)));
  Result<HttpReply> delta = reader.Get(DeltaPath(*d1, *d2));
  REQUIRE(delta->status == 200);
  CHECK(delta->body.size() > 0);
  CHECK(delta->body.size() < kVersionBytes / 2);

  // The region in step, and its state reported to the origin.
  REQUIRE(WaitFor(
      [&] {
        std::string text = Scrape(origin.url());
        return Sample(text, "meridian_region_versions_behind{region=\"sg\"}") == 0.0 &&
               Sample(text, "meridian_region_state_expiry_margin_seconds{region=\"sg\"}").has_value();
      },
      std::chrono::seconds(60)));

  // One terminal parks a long poll on the state it has.
  Json answer = Json::parse(term.Get(TerminalTarget("t2", "1.0.0"))->body);
  std::thread parked([&] {
    HttpClient poller(origin.url(), HttpClientOptions{.timeout_ms = 30'000, .bearer_token = origin.TerminalCredential("t2")});
    TargetQuery q{.model = "m", .channel = "stable", .current = "1.0.0", .profile = "pos", .region = "sg",
                  .wait_s = 10, .known_state_version = answer["state_version"].get<uint64_t>()};
    (void)poller.Get(TargetPath("t2", q));
  });
  // Held with it: the region's sync poll, between its rounds.
  REQUIRE(WaitFor([&] { return Metric(origin.url(), "meridian_long_polls_held") == 2; }, std::chrono::seconds(10)));
  const std::string text = Scrape(origin.url());
  parked.join();
  INFO(text);

  CHECK(Value(text, "meridian_long_polls_held") >= 1);  // t2's at least: the region's may be between rounds
  // The funnel of r1's only stage: t0 installed and healthy, t1 failed, t2 and t3 told but not there yet.
  auto funnel = [&](const char* state) {
    return Value(text, fmt::format("meridian_rollout_terminals{{rollout=\"r1\",stage=\"0\",state=\"{}\"}}", state));
  };
  CHECK(funnel("eligible") == 4);
  CHECK(funnel("downloading") == 2);
  CHECK(funnel("installed") == 1);
  CHECK(funnel("healthy") == 1);
  CHECK(funnel("failed") == 1);
  CHECK(Value(text, "meridian_rollout_phase{rollout=\"r1\",model=\"m\",channel=\"stable\",phase=\"paused\"}") == 1);
  CHECK(Value(text, "meridian_rollout_phase{rollout=\"r1\",model=\"m\",channel=\"stable\",phase=\"running\"}") == 0);
  CHECK(Value(text, "meridian_rollouts{phase=\"paused\"}") == 1);
  CHECK(Value(text, "meridian_rollouts{phase=\"completed\"}") == 1);
  CHECK(Value(text, "meridian_auth_failures_total{reason=\"missing_bearer\",role=\"operator\"}") == 1);
  CHECK(Value(text, "meridian_auth_failures_total{reason=\"wrong_token\",role=\"operator\"}") == 2);
  CHECK(Value(text, "meridian_served_bytes_total{kind=\"artifact\"}") == replicated + kVersionBytes);
  CHECK(Value(text, "meridian_served_bytes_total{kind=\"delta\"}") >= static_cast<double>(delta->body.size()));
  CHECK(Value(text, "meridian_store_errors_total{code=\"io_error\"}") == 0);
  CHECK(Value(text, "meridian_store_writes_stopped") == 0);
  const double margin = Value(text, "meridian_channel_state_expiry_margin_seconds{model=\"m\",channel=\"stable\"}");
  CHECK(margin > 60);
  CHECK(Value(text, "meridian_region_reachable{region=\"sg\"}") == 1);
  CHECK(Value(text, "meridian_region_lag_seconds{region=\"sg\"}") == 0);
  CHECK(Value(text, "meridian_region_state_expiry_margin_seconds{region=\"sg\"}") > 60);
  CHECK(Value(text, "meridian_region_stored_bytes{region=\"sg\"}") > 0);

  const std::string region_text = Scrape(region->url());
  CHECK(Value(region_text, "meridian_upstream_reachable") == 1);
  CHECK(Value(region_text, "meridian_channel_state_expiry_margin_seconds{model=\"m\",channel=\"stable\"}") > 60);
  CHECK(Value(region_text, "meridian_store_disk_bytes") >= 5'000'000);  // it fetched both versions

  // promtool on both texts.
  for (const auto& [name, body] : {std::pair{"origin", &text}, std::pair{"region", &region_text}}) {
    std::string path = origin.dir() / (std::string(name) + ".metrics");
    WriteFile(path, AsBytes(*body));
    RequirePromtoolClean({"check", "metrics"}, path);
  }

  // The alert rules and the dashboard name only metrics the daemons export.
  std::set<std::string> exported = MetricNames(text);
  for (const std::string& n : MetricNames(region_text)) exported.insert(n);
  const std::string deploy = SourceRoot() + "/deploy/prometheus/";
  Bytes rules = ReadFile(deploy + "meridian-alerts.yml");
  CheckNamesExported(std::string(rules.begin(), rules.end()), exported);
  Bytes dashboard_bytes = ReadFile(deploy + "grafana-dashboard.json");
  Json dashboard = Json::parse(dashboard_bytes.begin(), dashboard_bytes.end(), nullptr, false);
  REQUIRE_FALSE(dashboard.is_discarded());
  REQUIRE(dashboard["panels"].size() >= 5);
  for (const Json& panel : dashboard["panels"]) {
    for (const Json& target : panel.value("targets", Json::array())) CheckNamesExported(target["expr"], exported);
  }
}

TEST_CASE("the alert rules are valid and fire as their unit tests expect") {
  RequirePromtool();
  const std::string deploy = SourceRoot() + "/deploy/prometheus/";
  RequirePromtoolClean({"check", "rules", deploy + "meridian-alerts.yml"});
  RequirePromtoolClean({"test", "rules", deploy + "meridian-alerts.test.yml"});
}
