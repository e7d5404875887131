// Unit tests of the audit log over a real store (daemon/audit_log.h):
// appends chain and survive reopening, pages, and limits.
#include "daemon/audit_log.h"

#include <catch2/catch.hpp>

#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

struct Fixture {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();

  std::unique_ptr<AuditLog> Open() {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(*store, clock);
    REQUIRE(log.ok());
    return std::move(*log);
  }
};

// Every stored event, through pages of `page` events.
std::vector<std::string> ReadAll(AuditLog& log, size_t page) {
  std::vector<std::string> out;
  uint64_t after = 0;
  while (true) {
    Result<AuditLog::Page> p = log.Read(after, page);
    REQUIRE(p.ok());
    if (p->events.empty()) return out;
    out.insert(out.end(), p->events.begin(), p->events.end());
    after = p->last_seq;
  }
}

}  // namespace

TEST_CASE("appended events chain, read back in pages and survive reopening") {
  Fixture f;
  std::unique_ptr<AuditLog> log = f.Open();
  CHECK(log->head() == AuditHead{});
  for (int i = 0; i < 7; ++i) {
    f.clock.Advance(std::chrono::milliseconds(10));
    REQUIRE(log->Append("alice", "publish", "m/1.0." + std::to_string(i), "detail").ok());
  }
  log.reset();
  log = f.Open();
  REQUIRE(log->Append("bob", "token.revoke", "alice").ok());
  CHECK(log->head().seq == 8);

  std::vector<std::string> events = ReadAll(*log, 3);
  REQUIRE(events.size() == 8);
  AuditVerdict v = VerifyAuditChain(events);
  CHECK(!v.fault);
  CHECK(v.head == log->head());
  Result<AuditVerdict> own = log->Verify();
  REQUIRE(own.ok());
  CHECK(!own->fault);
  CHECK(own->head == log->head());
  AuditEvent last = ParseAuditEvent(events.back()).value();
  CHECK(last.actor == "bob");
  CHECK(last.time_ms == f.clock.NowUnixMillis());
  CHECK(ParseAuditEvent(events[0]).value().subject == "m/1.0.0");

  Result<AuditLog::Page> tail = log->Read(8, 100);
  REQUIRE(tail.ok());
  CHECK(tail->events.empty());
  CHECK(tail->last_seq == 8);
  CHECK(log->Read(0, 100'000).value().events.size() == 8);  // capped at kPageEventsMax, which is more
}

TEST_CASE("an append over a limit is refused and appends nothing") {
  Fixture f;
  std::unique_ptr<AuditLog> log = f.Open();
  CHECK(log->Append("", "publish", "m").code() == Status::Code::kInvalidArgument);
  CHECK(log->Append("alice", "publish", "m", std::string(kAuditDetailBytesMax + 1, 'x')).code() ==
        Status::Code::kInvalidArgument);
  CHECK(log->head().seq == 0);
  CHECK(log->Read(0, 10).value().events.empty());
}

TEST_CASE("a next append chains to the recorded head, not to a tampered last event") {
  Fixture f;
  std::unique_ptr<AuditLog> log = f.Open();
  REQUIRE(log->Append("alice", "publish", "m/1").ok());
  REQUIRE(log->Append("alice", "publish", "m/2").ok());
  log.reset();
  std::string key = "audit/00000000000000000002";
  std::string stored = f.store->GetState(key).value();
  stored.replace(stored.find("m/2"), 3, "m/9");
  REQUIRE(f.store->WriteState({{key, stored}}).ok());
  log = f.Open();
  REQUIRE(log->Append("alice", "publish", "m/3").ok());
  AuditVerdict v = VerifyAuditChain(ReadAll(*log, 10));
  REQUIRE(v.fault);
  CHECK(v.fault->seq == 2);
  CHECK(log->Verify().value().fault->seq == 2);
}
