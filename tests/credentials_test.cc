// Unit tests of named credentials (daemon/credentials.h) over a real store:
// create, find by token, revoke at once, names never reused, the bound, and
// that all of it survives reopening.
#include "daemon/credentials.h"

#include <catch2/catch.hpp>

#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

struct Fixture {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();

  std::unique_ptr<Credentials> Open(CredentialsOptions options = {}) {
    Result<std::unique_ptr<Credentials>> c = Credentials::Open(*store, clock, options);
    REQUIRE(c.ok());
    return std::move(*c);
  }
};

}  // namespace

TEST_CASE("a named credential is found by its token until it is revoked, also after reopening") {
  Fixture f;
  std::unique_ptr<Credentials> creds = f.Open();
  Result<std::string> alice = creds->Create("alice", CallerRole::kOperator, "operator");
  REQUIRE(alice.ok());
  Result<std::string> bob = creds->Create("bob@example.com", CallerRole::kPublisher, "alice");
  REQUIRE(bob.ok());
  CHECK(*alice != *bob);

  std::optional<Credential> found = creds->Find(*alice);
  REQUIRE(found);
  CHECK(found->name == "alice");
  CHECK(found->role == CallerRole::kOperator);
  CHECK(found->created_by == "operator");
  CHECK(found->created_ms == f.clock.NowUnixMillis());
  CHECK(!found->revoked_ms);
  CHECK(creds->Find(*bob)->role == CallerRole::kPublisher);
  CHECK(!creds->Find("not a token"));

  // Only the token's digest is stored.
  StateRecords stored = f.store->ScanState("credential/").value();
  REQUIRE(stored.size() == 2);
  for (const auto& [key, value] : stored) {
    CHECK(value.find(*alice) == std::string::npos);
    CHECK(value.find(*bob) == std::string::npos);
  }

  f.clock.Advance(std::chrono::seconds(5));
  REQUIRE(creds->Revoke("alice").ok());
  CHECK(creds->Find(*alice)->revoked_ms == f.clock.NowUnixMillis());
  CHECK(creds->Revoke("alice").ok());  // again: no change
  CHECK(creds->Revoke("carol").code() == Status::Code::kNotFound);

  creds.reset();
  creds = f.Open();
  CHECK(creds->Find(*alice)->revoked_ms);
  CHECK(!creds->Find(*bob)->revoked_ms);
  std::vector<Credential> list = creds->List();
  REQUIRE(list.size() == 2);
  CHECK(list[0].name == "alice");
  CHECK(list[1].name == "bob@example.com");
}

TEST_CASE("credential names are checked, never reused, and bounded in number") {
  Fixture f;
  std::unique_ptr<Credentials> creds = f.Open(CredentialsOptions{.credentials_max = 2});
  for (const char* bad : {"", "-alice", "al ice", "al/ice", "operator", "publisher", "mirror", "terminal", "gate",
                          "é"}) {
    INFO(bad);
    CHECK(creds->Create(bad, CallerRole::kOperator, "operator").status().code() == Status::Code::kInvalidArgument);
  }
  CHECK(!IsValidCredentialName(std::string(65, 'a')));
  CHECK(IsValidCredentialName(std::string(64, 'a')));
  CHECK(creds->Create("alice", CallerRole::kTerminal, "operator").status().code() == Status::Code::kInvalidArgument);
  REQUIRE(creds->Create("alice", CallerRole::kOperator, "operator").ok());
  REQUIRE(creds->Revoke("alice").ok());
  CHECK(creds->Create("alice", CallerRole::kOperator, "operator").status().code() == Status::Code::kAlreadyExists);
  REQUIRE(creds->Create("bob", CallerRole::kOperator, "operator").ok());
  CHECK(creds->Create("carol", CallerRole::kOperator, "operator").status().code() ==
        Status::Code::kResourceExhausted);
}

TEST_CASE("a damaged credential record stops the load") {
  Fixture f;
  REQUIRE(f.store->WriteState({{"credential/alice", "{\"role\":\"terminal\",\"token_sha256\":\"x\"}"}}).ok());
  CHECK(Credentials::Open(*f.store, f.clock).status().code() == Status::Code::kCorruption);
}
