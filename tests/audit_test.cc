// Unit tests of the audit log's format and chain check (audit/audit.h):
// encoding round trips, limits, and that every edit, removal and reordering
// of a chain is found and named.
#include "audit/audit.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace meridian;

namespace {

// A chain of `n` events as the daemon would store them.
std::vector<std::string> Chain(size_t n) {
  std::vector<std::string> out;
  Digest previous;
  for (uint64_t seq = 1; seq <= n; ++seq) {
    AuditEvent e{seq, 1'700'000'000'000 + static_cast<int64_t>(seq), "alice", "rollout.pause", "r1", "why " + std::to_string(seq), previous};
    Result<std::string> bytes = EncodeAuditEvent(e);
    REQUIRE(bytes.ok());
    previous = AuditEventDigest(*bytes);
    out.push_back(*bytes);
  }
  return out;
}

AuditVerdict Verify(const std::vector<std::string>& chain, std::vector<AuditHead> expect = {}) {
  return VerifyAuditChain(chain, std::move(expect));
}

}  // namespace

TEST_CASE("an audit event encodes canonically and parses back") {
  AuditEvent e{7, 1'700'000'000'123, "alice@example.com", "publish", "fraud/1.2.0", "manifest sha256:…\n\"q\"",
               Digest::Of(std::string_view("x"))};
  Result<std::string> bytes = EncodeAuditEvent(e);
  REQUIRE(bytes.ok());
  CHECK(bytes->starts_with("{\"action\":\"publish\",\"actor\":"));  // keys in lexical order, compact
  Result<AuditEvent> back = ParseAuditEvent(*bytes);
  REQUIRE(back.ok());
  CHECK(*back == e);
  CHECK(EncodeAuditEvent(*back).value() == *bytes);
}

TEST_CASE("audit event fields are bounded and required") {
  AuditEvent e{1, 0, "alice", "publish", "m/1.0.0", "", Digest()};
  CHECK(EncodeAuditEvent(e).ok());
  AuditEvent bad = e;
  bad.seq = 0;
  CHECK(EncodeAuditEvent(bad).status().code() == Status::Code::kInvalidArgument);
  bad = e;
  bad.actor = "";
  CHECK(EncodeAuditEvent(bad).status().code() == Status::Code::kInvalidArgument);
  bad = e;
  bad.detail = std::string(kAuditDetailBytesMax + 1, 'x');
  CHECK(EncodeAuditEvent(bad).status().code() == Status::Code::kInvalidArgument);
  bad.detail = std::string(kAuditDetailBytesMax, '\x01');  // escaped sixfold, still under the event limit
  CHECK(ParseAuditEvent(EncodeAuditEvent(bad).value()).ok());
  CHECK(!ParseAuditEvent("{}").ok());
  CHECK(!ParseAuditEvent("not json").ok());
  CHECK(!ParseAuditEvent(std::string(kAuditEventBytesMax + 1, ' ')).ok());
}

TEST_CASE("bytes that are not UTF-8 are replaced, so the encoding stays text") {
  AuditEvent e{1, 0, "alice", "publish", "m/1.0.0", "bad \xff byte", Digest()};
  Result<std::string> bytes = EncodeAuditEvent(e);
  REQUIRE(bytes.ok());
  CHECK(ParseAuditEvent(*bytes).value().detail == "bad \xef\xbf\xbd byte");
}

TEST_CASE("an audit head reads back from its text") {
  AuditHead h{42, Digest::Of(std::string_view("h"))};
  CHECK(AuditHead::Parse(h.ToString()).value() == h);
  for (const char* bad : {"", "42", ":sha256:00", "x:" , "42:sha256:zz", "-1:sha256:" }) {
    INFO(bad);
    CHECK(!AuditHead::Parse(bad).ok());
  }
}

TEST_CASE("an intact chain verifies and gives its head") {
  std::vector<std::string> chain = Chain(5);
  AuditVerdict v = Verify(chain);
  CHECK(!v.fault);
  CHECK(v.head.seq == 5);
  CHECK(v.head.digest == AuditEventDigest(chain[4]));
  CHECK(!Verify({}).fault);
  CHECK(Verify({}).head == AuditHead{});
}

TEST_CASE("one changed byte of an event names that event") {
  std::vector<std::string> chain = Chain(5);
  size_t at = chain[2].find("why 3");
  REQUIRE(at != std::string::npos);
  chain[2][at] = 'W';
  AuditVerdict v = Verify(chain);
  REQUIRE(v.fault);
  CHECK(v.fault->seq == 3);
  CHECK_THAT(v.fault->problem, Catch::Contains("was changed"));

  // A byte that breaks the JSON is named at once.
  chain = Chain(5);
  chain[1][0] = '[';
  v = Verify(chain);
  REQUIRE(v.fault);
  CHECK(v.fault->seq == 2);
  CHECK_THAT(v.fault->problem, Catch::Contains("is not an audit event"));
}

TEST_CASE("removed, reordered and replaced events are found") {
  std::vector<std::string> chain = Chain(5);
  SECTION("one removed from the middle") {
    chain.erase(chain.begin() + 2);
    AuditVerdict v = Verify(chain);
    REQUIRE(v.fault);
    CHECK(v.fault->seq == 3);
    CHECK_THAT(v.fault->problem, Catch::Contains("is missing"));
  }
  SECTION("the first removed") {
    chain.erase(chain.begin());
    CHECK(Verify(chain).fault->seq == 1);
  }
  SECTION("two swapped") {
    std::swap(chain[1], chain[2]);
    AuditVerdict v = Verify(chain);
    REQUIRE(v.fault);
    CHECK(v.fault->seq == 2);
  }
  SECTION("a whole event rewritten with its seq kept, the chain not") {
    AuditEvent forged = ParseAuditEvent(chain[3]).value();
    forged.actor = "mallory";
    chain[3] = EncodeAuditEvent(forged).value();
    CHECK(Verify(chain).fault->seq == 4);
  }
  SECTION("the chain of a seq 1 that is not first") {
    std::vector<std::string> other = Chain(2);
    AuditEvent e = ParseAuditEvent(other[1]).value();
    e.seq = 1;
    CHECK_THAT(Verify({EncodeAuditEvent(e).value()}).fault->problem, Catch::Contains("zero digest"));
  }
}

TEST_CASE("a recorded head catches a rewritten or truncated tail") {
  std::vector<std::string> chain = Chain(5);
  AuditHead recorded{4, AuditEventDigest(chain[3])};
  CHECK(!Verify(chain, {recorded}).fault);  // grown since: fine

  // The tail rewritten consistently from event 4 on: the chain holds, the head does not.
  std::vector<std::string> rewritten(chain.begin(), chain.begin() + 3);
  Digest previous = AuditEventDigest(rewritten.back());
  for (uint64_t seq = 4; seq <= 5; ++seq) {
    AuditEvent e{seq, 0, "mallory", "nothing", "", "", previous};
    rewritten.push_back(EncodeAuditEvent(e).value());
    previous = AuditEventDigest(rewritten.back());
  }
  CHECK(!Verify(rewritten).fault);
  AuditVerdict v = Verify(rewritten, {recorded});
  REQUIRE(v.fault);
  CHECK(v.fault->seq == 4);
  CHECK_THAT(v.fault->problem, Catch::Contains("expected head"));

  // Truncated before the recorded head.
  chain.resize(3);
  v = Verify(chain, {recorded});
  REQUIRE(v.fault);
  CHECK(v.fault->seq == 4);
  CHECK_THAT(v.fault->problem, Catch::Contains("is missing"));
}
