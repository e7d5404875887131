// Integration: named credentials and the audit log on a real meridiand with
// the real CLI — people act under their own names, a revoked token is refused
// at once and across a kill -9, the log names every actor (never a header;
// the gates as "gate"), and `meridian audit verify` finds one edited byte in
// the stored log and names the event.
#include <cctype>
#include <regex>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "client/api.h"
#include "client/http_client.h"
#include "store/store.h"
#include "tests/harness.h"
#include "tests/loopback.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

std::string Trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// `meridian tokens create` as `by`; the new token.
std::string CreateToken(DaemonFixture& d, const std::string& by, const std::string& role, const std::string& name) {
  CommandResult r = d.Cli({"--token", by, "tokens", "create", "--role", role, "--name", name});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(Trimmed(r.out).size() == 64);
  return Trimmed(r.out);
}

// The audit log's events, parsed (`meridian audit list --output json`).
nlohmann::json AuditEvents(DaemonFixture& d) {
  CommandResult r = d.Cli({"--token", d.operator_token(), "--output", "json", "audit", "list", "--limit", "1000"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out).at("events");
}

// The key of the stored audit event `seq` (daemon/audit_log.h).
std::string EventKey(int seq) { return fmt::format("audit/{:020}", seq); }

// Changes one byte of stored event `seq` (the daemon must be stopped).
void EditStoredEvent(DaemonFixture& d, int seq, const std::string& from, const std::string& to) {
  Result<std::unique_ptr<Store>> store = Store::Open(d.data() + "/store", StoreOptions{.create_if_missing = false});
  REQUIRE(store.ok());
  std::string value = (*store)->GetState(EventKey(seq)).value();
  size_t at = value.find(from);
  REQUIRE(at != std::string::npos);
  REQUIRE(from.size() == to.size());
  value.replace(at, from.size(), to);
  REQUIRE((*store)->WriteState({{EventKey(seq), value}}).ok());
}

}  // namespace

TEST_CASE("people act under their own credentials' names; revocation is immediate and durable") {
  DaemonFixture d;
  d.Start();
  const std::string alice = CreateToken(d, d.operator_token(), "operator", "alice");
  const std::string bob = CreateToken(d, alice, "publisher", "bob");

  TempDir work;
  WriteFile(work / "model.bin", RandomBytes(300'000, 1));
  CommandResult published =
      d.Cli({"--token", bob, "publish", "--key", d.release_key(), "--model", "fraud", "--version", "1.0.0", work / "model.bin"});
  INFO(published.err);
  REQUIRE(published.exit_code == 0);
  REQUIRE(d.Cli({"--token", alice, "rollout", "start", "fraud", "1.0.0", "--id", "r1", "--stages", "50,100"}).exit_code == 0);
  // A header claiming another actor changes nothing: the actor is the credential's name.
  const std::string body = R"({"reason":"look first"})";
  std::string paused = ExchangeLoopback(
      d.port(), fmt::format("POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Meridian-Actor: mallory\r\n"
                            "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                            RolloutActionPath("r1", "pause"), alice, body.size(), body));
  CHECK(paused.starts_with("HTTP/1.1 200"));
  nlohmann::json rollout_events = nlohmann::json::parse(d.GetRollout("r1", /*events=*/true)).at("events");
  CHECK(rollout_events.back().at("actor") == "alice");

  // Bad pages are 400; the credentials and the log are the origin's.
  HttpClient as_alice(d.url(), d.ClientOptions(alice));
  for (const char* query : {"limit=0", "limit=1001", "after=-1", "after=x"}) {
    INFO(query);
    Result<HttpReply> page = as_alice.Get(std::string("/v1/audit?") + query);
    REQUIRE(page.ok());
    CHECK(page->status == 400);
  }

  // A publisher credential is no operator's.
  CommandResult refused = d.Cli({"--token", bob, "tokens", "list"});
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.err, Catch::Contains("403"));
  // The list shows names, never tokens.
  CommandResult list = d.Cli({"--token", alice, "tokens", "list"});
  REQUIRE(list.exit_code == 0);
  CHECK_THAT(list.out, Catch::Contains("alice") && Catch::Contains("bob") && Catch::Contains("built-in"));
  CHECK(list.out.find(alice) == std::string::npos);
  CHECK(list.out.find(bob) == std::string::npos);
  // Names are never taken twice, nor the built-in ones.
  CHECK(d.Cli({"--token", alice, "tokens", "create", "--role", "operator", "--name", "bob"}).exit_code != 0);
  CHECK(d.Cli({"--token", alice, "tokens", "create", "--role", "operator", "--name", "operator"}).exit_code != 0);

  REQUIRE(d.Cli({"--token", alice, "tokens", "revoke", "bob"}).exit_code == 0);
  CommandResult revoked = d.Cli({"--token", bob, "publish", "--key", d.release_key(), "--model", "fraud", "--version",
                                 "1.0.1", work / "model.bin"});
  CHECK(revoked.exit_code != 0);
  CHECK_THAT(revoked.err, Catch::Contains("revoked"));

  nlohmann::json events = AuditEvents(d);
  std::vector<std::tuple<std::string, std::string, std::string>> seen;
  for (const auto& e : events) {
    seen.emplace_back(e.at("actor").get<std::string>(), e.at("action").get<std::string>(),
                      e.at("subject").get<std::string>());
  }
  using T = std::tuple<std::string, std::string, std::string>;
  CHECK(seen == std::vector<T>{T{"operator", "token.create", "alice"}, T{"alice", "token.create", "bob"},
                               T{"bob", "publish", "fraud/1.0.0"}, T{"alice", "rollout.start", "r1"},
                               T{"alice", "rollout.pause", "r1"}, T{"alice", "token.revoke", "bob"}});
  CHECK_THAT(events[2].at("detail").get<std::string>(), Catch::Contains("manifest sha256:"));
  CHECK_THAT(events[4].at("detail").get<std::string>(), Catch::Contains("look first"));

  // kill -9: what was answered is durable; alice still works, bob stays revoked.
  d.Kill9();
  d.Restart();
  CHECK(d.Cli({"--token", alice, "tokens", "list"}).exit_code == 0);
  CHECK(d.Cli({"--token", bob, "publish", "--key", d.release_key(), "--model", "fraud", "--version", "1.0.1",
               work / "model.bin"})
            .exit_code != 0);
  CommandResult verified = d.Cli({"--token", alice, "audit", "verify"});
  INFO(verified.err);
  CHECK(verified.exit_code == 0);
  CHECK_THAT(verified.out, Catch::Contains("intact: 6 events, head 6:sha256:"));
}

TEST_CASE("editing one byte of a stored audit event makes `meridian audit verify` fail and name it") {
  DaemonFixture d;
  d.Start();
  for (const char* name : {"ann", "ben", "cat", "dan"}) CreateToken(d, d.operator_token(), "operator", name);
  CommandResult good = d.Cli({"--token", d.operator_token(), "audit", "verify"});
  REQUIRE(good.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(good.out, m, std::regex("head (4:sha256:[0-9a-f]{64})")));
  const std::string recorded_head = m[1];

  SECTION("an event in the middle") {
    REQUIRE(d.Terminate() == 0);
    EditStoredEvent(d, 2, "\"ben\"", "\"bex\"");
    CommandResult fsck = d.Fsck();  // offline, the same check
    CHECK(fsck.exit_code == 1);
    CHECK_THAT(fsck.out, Catch::Contains("fault: audit log: event 2 was changed"));
    d.Restart();
    CommandResult bad = d.Cli({"--token", d.operator_token(), "audit", "verify"});
    CHECK(bad.exit_code != 0);
    CHECK_THAT(bad.err, Catch::Contains("event 2 was changed"));
  }
  SECTION("the last event: the daemon's head names it") {
    REQUIRE(d.Terminate() == 0);
    EditStoredEvent(d, 4, "\"dan\"", "\"dax\"");
    d.Restart();
    CommandResult bad = d.Cli({"--token", d.operator_token(), "audit", "verify"});
    CHECK(bad.exit_code != 0);
    CHECK_THAT(bad.err, Catch::Contains("event 4 differs from the expected head"));
  }
  SECTION("a tail rewritten with its head: only a head recorded earlier catches it") {
    REQUIRE(d.Terminate() == 0);
    {
      Result<std::unique_ptr<Store>> store = Store::Open(d.data() + "/store", StoreOptions{.create_if_missing = false});
      REQUIRE(store.ok());
      // Event 4 dropped, and the daemon's head moved back to event 3, as a careful forger would.
      std::string third = (*store)->GetState(EventKey(3)).value();
      REQUIRE((*store)->WriteState({{EventKey(4), std::nullopt}, {"audit-head", "3:" + Digest::Of(third).ToString()}}).ok());
    }
    d.Restart();
    CHECK(d.Cli({"--token", d.operator_token(), "audit", "verify"}).exit_code == 0);
    CommandResult bad = d.Cli({"--token", d.operator_token(), "audit", "verify", "--expect-head", recorded_head});
    CHECK(bad.exit_code != 0);
    CHECK_THAT(bad.err, Catch::Contains("event 4 is missing"));
  }
}

TEST_CASE("a gate's own decision is audited with the actor 'gate'") {
  DaemonFixture d;
  d.Start();
  TempDir work;
  WriteFile(work / "model.bin", RandomBytes(100'000, 2));
  REQUIRE(d.Publish("fraud", "1.0.0", work / "model.bin").exit_code == 0);
  // Enrolling the terminal is an operator's change too.
  HttpClient terminal(d.url(), d.ClientOptions(d.TerminalCredential("t1")));
  REQUIRE(d.Cli({"--token", d.operator_token(), "rollout", "start", "fraud", "1.0.0", "--id", "g", "--stages", "100",
                 "--min-reports", "1", "--auto-rollback"})
              .exit_code == 0);
  nlohmann::json report = {{"model", "fraud"}, {"version", "1.0.0"}, {"rollout", "g"}, {"event", "failed"},
                           {"reason", "health check failed"}};
  Result<HttpReply> r = terminal.Post(TerminalReportsPath("t1"), report.dump());
  REQUIRE(r.ok());
  CHECK(r->status == 202);

  nlohmann::json events = AuditEvents(d);
  REQUIRE(events.size() == 4);
  CHECK(events[0].at("actor") == "publisher");
  CHECK(events[0].at("action") == "publish");
  CHECK(events[1].at("actor") == "operator");
  CHECK(events[1].at("action") == "terminal.add");
  CHECK(events[1].at("subject") == "t1");
  CHECK(events[2].at("actor") == "operator");
  CHECK(events[2].at("action") == "rollout.start");
  CHECK(events[3].at("actor") == "gate");
  CHECK(events[3].at("action") == "rollout.rollback");
  CHECK(events[3].at("subject") == "g");
  CHECK_THAT(events[3].at("detail").get<std::string>(), Catch::Contains("running(0) -> rolled_back(0)"));
}
