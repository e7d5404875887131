// Terminal identity end to end, on real daemons and agents: a credential
// speaks for its own terminal only, client traffic cannot grow the registry,
// revocation reaches the origin and a region within seconds, and a terminal
// joins by asking (an operator accepts it) or by factory provisioning.
#include <chrono>
#include <filesystem>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "client/api.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using namespace std::chrono_literals;
using Json = nlohmann::json;

namespace {

std::string Target(const std::string& id) { return "/v1/terminals/" + id + "/target?model=fraud&region=sg"; }

std::string FailureReport(const std::string& rollout) {
  return Json{{"model", "fraud"}, {"version", "1.0.0"}, {"rollout", rollout}, {"event", "failed"},
              {"reason", "health check failed"}, {"region", "sg"}}
      .dump();
}

std::string Phase(DaemonFixture& d, const std::string& rollout) {
  return Json::parse(d.GetRollout(rollout))["state"]["phase"].get<std::string>();
}

// The known terminals of fraud/stable, as the fleet view lists them.
std::vector<std::string> KnownTerminals(const DaemonFixture& d) {
  HttpClient op(d.url(), d.ClientOptions(d.operator_token()));
  Result<HttpReply> r = op.Get("/v1/fleet/terminals?model=fraud&limit=1000");
  REQUIRE(r.ok());
  INFO(r->body);
  REQUIRE(r->status == 200);
  const Json page = Json::parse(r->body);
  std::vector<std::string> ids;
  for (const Json& t : page.at("terminals")) ids.push_back(t.at("id").get<std::string>());
  return ids;
}

long StatusOf(const Result<HttpReply>& r) { return r.ok() ? r->status : -1; }

}  // namespace

TEST_CASE("a credential speaks for its own terminal only: forged polls and reports are 403 and change nothing") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  WriteFile(t / "v1", RandomBytes(50'000, 1));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0", {{"on_breach", "rollback"}}));
  HttpClient t1(d.url(), d.ClientOptions(d.TerminalCredential("t1")));
  REQUIRE(StatusOf(t1.Get(Target("t1"))) == 200);

  // t1 reports a failure for t2 and for made-up ids: refused; the gate (one failure rolls back) does not move.
  for (const std::string other : {"t2", "pos-9999", "t1x"}) {
    Result<HttpReply> forged = t1.Post(TerminalReportsPath(other), FailureReport("r1"));
    REQUIRE(forged.ok());
    CHECK(forged->status == 403);
    CHECK_THAT(ErrorMessageOf(*forged), Catch::Contains("terminal 't1''s; it cannot speak for '" + other + "'"));
  }
  CHECK(Phase(d, "r1") == "running");
  // The shared token of old reads models but speaks for no terminal.
  HttpClient shared(d.url(), d.ClientOptions(d.terminal_token()));
  CHECK(StatusOf(shared.Post(TerminalReportsPath("t2"), FailureReport("r1"))) == 403);
  CHECK(StatusOf(shared.Get(Target("t2"))) == 403);
  CHECK(StatusOf(HttpClient(d.url()).Get(Target("t2"))) == 401);
  CHECK(Phase(d, "r1") == "running");
  // A credential that was tampered with is no credential (401: the agent asks for a new one).
  std::string credential = d.TerminalCredential("t1");
  credential[credential.size() / 2] = credential[credential.size() / 2] == 'A' ? 'B' : 'A';
  CHECK(StatusOf(HttpClient(d.url(), d.ClientOptions(credential)).Get(Target("t1"))) == 401);

  // Polls for 2,000 other ids with t1's credential: all refused, the registry unchanged.
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(StatusOf(t1.Get(Target(fmt::format("pos-{:06d}-{}", i, std::string(100, 'x'))))) == 403);
  }
  CHECK(KnownTerminals(d) == std::vector<std::string>{"t1"});
  CHECK(Metric(d.url(), "meridian_auth_failures_total{reason=\"wrong_terminal\",role=\"terminal\"}") == 2003);

  // Its own report counts: the gate acts on it.
  CHECK(StatusOf(t1.Post(TerminalReportsPath("t1"), FailureReport("r1"))) == 202);
  REQUIRE(WaitFor([&] { return Phase(d, "r1") == "rolled_back"; }, 10s));

  // Restarting reads nothing a client added: it is up at once.
  REQUIRE(d.Terminate() == 0);
  auto restarted = std::chrono::steady_clock::now();
  d.Restart();
  CHECK(std::chrono::steady_clock::now() - restarted < 5s);
  // Known terminals are soft state (t1 may have to poll again), and nothing else was ever kept.
  std::vector<std::string> known = KnownTerminals(d);
  CHECK(known.size() <= 1);
}

TEST_CASE("revoking a terminal stops it on the origin and on a region within seconds") {
  DaemonFixture origin;
  origin.Start();
  std::unique_ptr<DaemonFixture> sg = DaemonFixture::Region(origin.root_json());
  sg->StartRegion("sg", origin.url(), origin.mirror_token_file());
  TempDir t;
  WriteFile(t / "v1", RandomBytes(50'000, 2));
  REQUIRE(origin.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  origin.StartRollout(RolloutSpecJson("r1", "1.0.0"));
  const std::string credential = origin.TerminalCredential("pos-1");
  HttpClient at_origin(origin.url(), origin.ClientOptions(credential));
  HttpClient at_sg(sg->url(), sg->ClientOptions(credential));
  REQUIRE(WaitFor([&] { return StatusOf(at_sg.Get(Target("pos-1"))) == 200; }, 60s));
  REQUIRE(StatusOf(at_origin.Get(Target("pos-1"))) == 200);
  // Another terminal is not touched by pos-1's revocation.
  HttpClient other(sg->url(), sg->ClientOptions(origin.TerminalCredential("pos-2")));
  REQUIRE(StatusOf(other.Get(Target("pos-2"))) == 200);

  auto revoked = std::chrono::steady_clock::now();
  CommandResult cli = origin.Cli({"--token", origin.operator_token(), "terminals", "revoke", "pos-1"});
  INFO(cli.err);
  REQUIRE(cli.exit_code == 0);
  CHECK(StatusOf(at_origin.Get(Target("pos-1"))) == 403);
  REQUIRE(WaitFor([&] { return StatusOf(at_sg.Get(Target("pos-1"))) == 403; }, 10s));
  auto took = std::chrono::steady_clock::now() - revoked;
  CHECK(took < 2s);
  std::printf("revocation: refused at the region %lld ms after the command started\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  CHECK(StatusOf(other.Get(Target("pos-2"))) == 200);
  // A report of pos-1's that a region took before the revocation is not counted at the origin.
  HttpClient mirror(origin.url(), origin.ClientOptions(origin.mirror_token()));
  Json batch = {{"reports", {{{"id", "sg-late-1"}, {"terminal", "pos-1"}, {"report", Json::parse(FailureReport("r1"))}},
                             {{"id", "sg-late-2"}, {"terminal", "pos-2"}, {"report", Json::parse(FailureReport("r1"))}}}}};
  Result<HttpReply> forwarded = mirror.Post(ReportsPath(), batch.dump());
  REQUIRE(forwarded.ok());
  INFO(forwarded->body);
  REQUIRE(forwarded->status == 200);
  CHECK(Json::parse(forwarded->body)["rejected"] == 1);
  CHECK(Json::parse(forwarded->body)["accepted"] == 1);
  CHECK(Metric(origin.url(), "meridian_reports_dropped_total{reason=\"revoked_terminal\"}") == 1);
  // Reading models stops too; the region keeps the revocation across a restart.
  CHECK(StatusOf(at_sg.Get("/v1/models/fraud/versions")) == 403);
  REQUIRE(sg->Terminate() == 0);
  REQUIRE(origin.Terminate() == 0);
  sg->Restart({"--role", "region", "--region", "sg", "--upstream", origin.url(), "--upstream-token-file",
               origin.mirror_token_file()});
  CHECK(StatusOf(at_sg.Get(Target("pos-1"))) == 403);
  // The audit log says who did it.
  origin.Restart();
  CommandResult audit = origin.Cli({"--token", origin.operator_token(), "--output", "json", "audit", "list"});
  REQUIRE(audit.exit_code == 0);
  CHECK_THAT(audit.out, Catch::Contains("terminal.revoke"));
}

TEST_CASE("a terminal joins by asking and an operator's acceptance, or by factory provisioning") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  WriteFile(t / "v1", RandomBytes(50'000, 3));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "v1").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0"));
  auto config = [&](const std::string& id) {
    return WriteAgentConfig(t / (id + ".toml"),
                            {.id = id, .servers = {d.url()}, .root = d.root_json(), .state = t / (id + "-state"),
                             .model = "fraud"});
  };
  auto once = [](const std::string& c) { return Run({MeridianAgentPath(), "--config", c, "--once"}); };
  auto operator_cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--token", d.operator_token()});
    CommandResult r = d.Cli(args);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  };

  // Asking: the agent makes its key, asks, and waits for an operator.
  const std::string kiosk = config("kiosk-1");
  CommandResult asked = once(kiosk);
  CHECK(asked.exit_code != 0);
  CHECK_THAT(asked.err, Catch::Contains("awaits an operator: meridian terminals accept kiosk-1"));
  CommandResult key = Run({MeridianAgentPath(), "--config", kiosk, "public-key"});
  REQUIRE(key.exit_code == 0);
  Json pending = Json::parse(operator_cli({"--output", "json", "terminals", "list", "--state", "pending"}));
  REQUIRE(pending["terminals"].size() == 1);
  CHECK(pending["terminals"][0]["id"] == "kiosk-1");
  CHECK(pending["terminals"][0]["public_key"].get<std::string>() + "\n" == key.out);
  CHECK(InstalledVersion(t / "kiosk-1-state", "fraud").empty());
  operator_cli({"terminals", "accept", "kiosk-1"});
  CommandResult joined = once(kiosk);
  INFO(joined.err);
  REQUIRE(joined.exit_code == 0);
  CHECK(InstalledVersion(t / "kiosk-1-state", "fraud") == "1.0.0");

  // Factory provisioning: keys made on the terminals, their public halves imported at once.
  std::string file;
  std::vector<std::string> configs;
  for (int i = 0; i < 3; ++i) {
    std::string id = fmt::format("pos-{}", i);
    configs.push_back(config(id));
    CommandResult k = Run({MeridianAgentPath(), "--config", configs.back(), "public-key"});
    REQUIRE(k.exit_code == 0);
    file += fmt::format("{},{},pos-arm64,sg\n", id, k.out.substr(0, k.out.find('\n')));
  }
  file += "# a comment, and a blank line\n\n";
  WriteFile(t / "factory.csv", AsBytes(file));
  CHECK_THAT(operator_cli({"terminals", "import", t / "factory.csv"}), Catch::Contains("enrolled 3 terminals"));
  for (const std::string& c : configs) REQUIRE(once(c).exit_code == 0);
  CHECK(InstalledVersion(t / "pos-2-state", "fraud") == "1.0.0");
  // The profile and region enrolled are what the daemon goes by.
  Json listed = Json::parse(operator_cli({"--output", "json", "terminals", "list", "--state", "accepted"}));
  CHECK(listed["counts"]["accepted"] == 4);
  CHECK(Metric(d.url(), "meridian_terminals_enrolled{state=\"accepted\"}") == 4);
  CHECK(Metric(d.url(), "meridian_terminals_enrolled{state=\"pending\"}") == 0);
  // A bad provisioning line is refused, naming it, and nothing is enrolled.
  WriteFile(t / "bad.csv", AsBytes(std::string("pos-7,notbase64!\n")));
  CommandResult bad = d.Cli({"--token", d.operator_token(), "terminals", "import", t / "bad.csv"});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("pos-7"));
  // So is an empty list.
  HttpClient op(d.url(), d.ClientOptions(d.operator_token()));
  Result<HttpReply> empty = op.Post("/v1/terminals", R"({"terminals":[]})");
  REQUIRE(empty.ok());
  CHECK(empty->status == 400);
  CHECK_THAT(ErrorMessageOf(*empty), Catch::Contains("empty"));
  CHECK(Json::parse(operator_cli({"--output", "json", "terminals", "list"}))["counts"]["accepted"] == 4);
}
