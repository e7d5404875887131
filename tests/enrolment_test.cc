// Terminal identity: credential requests and credentials (trust/
// terminal_credential.h), and enrolment over a real store (daemon/enrolment.h).
#include "daemon/enrolment.h"

#include <chrono>

#include <catch2/catch.hpp>

#include "base/encoding.h"
#include "tests/harness.h"
#include "trust/terminal_credential.h"

using namespace meridian;
using namespace meridian::testing;
using namespace std::chrono_literals;

namespace {

// A root whose online role holds `online`.
Root RootWithOnline(const SecretKey& online) {
  Root root;
  root.keys[online.KeyId()] = online.public_key();
  root.roles["online"] = Role{{online.KeyId()}, 1};
  return root;
}

// The origin's online key, the same at every open (a restart).
SecretKey OnlineKey() { return SecretKey::FromSeed(AsBytes(std::string(32, 's'))).value(); }

struct Origin {
  TempDir dir;
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();
  FakeClock clock;
  Root root = RootWithOnline(OnlineKey());
  std::unique_ptr<Enrolment> enrolment = Open();

  std::unique_ptr<Enrolment> Open() {
    return Enrolment::OpenOrigin(*store, clock, OnlineKey(), EnrolmentOptions{.pending_max = 2}).value();
  }
  Result<CredentialGrant> Ask(const std::string& id, const SecretKey& key, int64_t at_ms) {
    return enrolment->RequestCredential(id, SignCredentialRequest(key, id, at_ms));
  }
};

}  // namespace

TEST_CASE("credential request: names the terminal; another id, key or time does not verify") {
  SecretKey key = SecretKey::Generate();
  std::string header = SignCredentialRequest(key, "pos-1", 1234);
  Result<CredentialRequest> r = VerifyCredentialRequest(header, "pos-1");
  REQUIRE(r.ok());
  CHECK(r->key == key.public_key());
  CHECK(r->time_ms == 1234);
  CHECK(VerifyCredentialRequest(header, "pos-2").status().code() == Status::Code::kPermissionDenied);
  std::string later = header;
  later.replace(later.find(".1234.") + 1, 4, "1235");
  CHECK(VerifyCredentialRequest(later, "pos-1").status().code() == Status::Code::kPermissionDenied);
  for (std::string bad : std::vector<std::string>{"", "Bearer x", "Meridian-Terminal ", "Meridian-Terminal a.b", "Meridian-Terminal a.1.c.d",
                          "Meridian-Terminal !!.1.AAAA", "Meridian-Terminal " + std::string(3000, 'A')}) {
    CHECK(VerifyCredentialRequest(bad, "pos-1").status().code() == Status::Code::kInvalidArgument);
  }
}

TEST_CASE("credential: verifies offline against the root's online keys, and expires") {
  SecretKey online = SecretKey::Generate(), other = SecretKey::Generate();
  Root root = RootWithOnline(online);
  TerminalCredential c{"pos-1", "sg", "pos-arm64", 1'000'000, 2'000'000};
  std::string text = IssueCredential(c, online);
  CHECK(LooksLikeCredential(text));
  Result<TerminalCredential> v = VerifyCredential(root, text, 1'500'000);
  REQUIRE(v.ok());
  CHECK(*v == c);
  CHECK(VerifyCredential(root, text, 2'000'000).status().code() == Status::Code::kPermissionDenied);  // expired
  CHECK(VerifyCredential(root, text, 950'000).ok());  // clocks differ a little
  CHECK(VerifyCredential(root, text, 100'000).status().code() == Status::Code::kPermissionDenied);  // from the future
  // Signed by a key the root does not name for the online role.
  CHECK(VerifyCredential(root, IssueCredential(c, other), 1'500'000).status().code() ==
        Status::Code::kPermissionDenied);
  // One changed byte of the payload (another terminal) breaks the signature.
  std::string forged = IssueCredential({"pos-2", "sg", "pos-arm64", 1'000'000, 2'000'000}, online);
  std::string spliced = forged.substr(0, forged.rfind('.')) + text.substr(text.rfind('.'));
  CHECK(VerifyCredential(root, spliced, 1'500'000).status().code() == Status::Code::kPermissionDenied);
  for (std::string bad : std::vector<std::string>{"", "mtc1.", "mtc1.x.y", "mtc1.AAAA", "operator-token", "mtc1." + std::string(4000, 'A')}) {
    CHECK(!VerifyCredential(root, bad, 1'500'000).ok());
  }
}

TEST_CASE("enrolment: a pre-authorised terminal gets a credential bound to its id, region and profile") {
  Origin o;
  SecretKey key = SecretKey::Generate();
  REQUIRE(o.enrolment->Add({{"pos-1", key.public_key(), "pos-arm64", "sg"}}).ok());
  int64_t now = o.clock.NowUnixMillis();
  Result<CredentialGrant> g = o.Ask("pos-1", key, now);
  REQUIRE(g.ok());
  REQUIRE(!g->credential.empty());
  Result<TerminalCredential> c = VerifyCredential(o.root, g->credential, now);
  REQUIRE(c.ok());
  CHECK(c->terminal_id == "pos-1");
  CHECK(c->region == "sg");
  CHECK(c->profile == "pos-arm64");
  CHECK(c->expires_ms == g->expires_ms);
  CHECK(o.enrolment->Admit("pos-1", c->issued_ms).ok());
  CHECK(!o.enrolment->Admit("pos-2", c->issued_ms).ok());

  // A replay of the same request, an older one, and one far from the clock are refused.
  CHECK(o.Ask("pos-1", key, now).status().code() == Status::Code::kPermissionDenied);
  CHECK(o.Ask("pos-1", key, now - 1).status().code() == Status::Code::kPermissionDenied);
  CHECK(o.Ask("pos-1", key, now + 10 * 60'000).status().code() == Status::Code::kPermissionDenied);
  CHECK(o.Ask("pos-1", key, now + 1).ok());
  // Another key for the same id is not this terminal.
  CHECK(o.Ask("pos-1", SecretKey::Generate(), now + 2).status().code() == Status::Code::kPermissionDenied);
}

TEST_CASE("enrolment: an unknown terminal waits for an operator; the queue is bounded") {
  Origin o;
  SecretKey a = SecretKey::Generate(), b = SecretKey::Generate(), c = SecretKey::Generate();
  int64_t now = o.clock.NowUnixMillis();
  Result<CredentialGrant> g = o.Ask("kiosk-a", a, now);
  REQUIRE(g.ok());
  CHECK(g->credential.empty());  // pending
  REQUIRE(o.Ask("kiosk-b", b, now).ok());
  CHECK(o.Ask("kiosk-c", c, now).status().code() == Status::Code::kResourceExhausted);  // pending_max = 2
  CHECK(o.enrolment->Counts()[EnrolmentState::kPending] == 2);
  CHECK(!o.enrolment->Admit("kiosk-a", now).ok());

  REQUIRE(o.enrolment->Accept("kiosk-a").ok());
  o.clock.Advance(1ms);
  g = o.Ask("kiosk-a", a, o.clock.NowUnixMillis());
  REQUIRE(g.ok());
  CHECK(!g->credential.empty());
  CHECK(o.enrolment->Accept("nobody").code() == Status::Code::kNotFound);
  std::vector<EnrolledTerminal> pending = o.enrolment->List("", 10, EnrolmentState::kPending);
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].id == "kiosk-b");
}

TEST_CASE("enrolment: revocation stops a terminal at once and survives a restart") {
  Origin o;
  SecretKey key = SecretKey::Generate();
  REQUIRE(o.enrolment->Add({{"pos-1", key.public_key(), "", ""}, {"pos-2", SecretKey::Generate().public_key(), "", ""}}).ok());
  REQUIRE(o.enrolment->Revoke("pos-1").ok());
  CHECK(!o.enrolment->Admit("pos-1", o.clock.NowUnixMillis()).ok());
  CHECK(o.Ask("pos-1", key, o.clock.NowUnixMillis()).status().code() == Status::Code::kPermissionDenied);
  CHECK(o.enrolment->revocations_made() == 1);
  REQUIRE(o.enrolment->RecentRevocations().size() == 1);

  o.enrolment = o.Open();  // restart
  CHECK(!o.enrolment->Admit("pos-1", o.clock.NowUnixMillis()).ok());
  CHECK(o.enrolment->Admit("pos-2", o.clock.NowUnixMillis()).ok());
  CHECK(o.enrolment->revocations_made() == 1);
  // Past a credential's lifetime no credential issued before it is alive: the sync document leaves it out.
  o.clock.Advance(std::chrono::milliseconds(EnrolmentOptions{}.credential_lifetime_ms) + 2min);
  CHECK(o.enrolment->RecentRevocations().empty());
  CHECK(o.enrolment->revocations_made() == 1);
}

TEST_CASE("enrolment: a region refuses credentials issued before a revocation it adopted, and keeps them") {
  TempDir dir;
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();
  FakeClock clock;
  std::unique_ptr<Enrolment> region = Enrolment::OpenRegion(*store, clock).value();
  CHECK(region->Admit("pos-1", 1000).ok());  // a region admits what the root's online key signed
  REQUIRE(region->AdoptRevocations({{"pos-1", 5000}}, 1).ok());
  CHECK(!region->Admit("pos-1", 4000).ok());
  CHECK(!region->Admit("pos-1", 0).ok());  // a client certificate
  CHECK(region->Admit("pos-1", 6000).ok());  // accepted again since, a new credential
  CHECK(region->Admit("pos-2", 4000).ok());
  region = Enrolment::OpenRegion(*store, clock).value();
  CHECK(!region->Admit("pos-1", 4000).ok());
  CHECK(region->revocations_made() == 1);
  CHECK(region->RecentRevocations() == std::vector<Revocation>{{"pos-1", 5000}});
  // An upstream behind this one (it counts fewer made: restored from a
  // backup, cut off from the origin) does not take the revocation back...
  REQUIRE(region->AdoptRevocations({}, 0).ok());
  CHECK(!region->Admit("pos-1", 4000).ok());
  CHECK(region->revocations_made() == 1);
  // ...while the origin's own list, which leaves out revocations older than a
  // credential's lifetime, and its newer ones are taken.
  REQUIRE(region->AdoptRevocations({}, 1).ok());
  CHECK(region->Admit("pos-1", 4000).ok());
  REQUIRE(region->AdoptRevocations({{"pos-3", 7000}}, 2).ok());
  CHECK(!region->Admit("pos-3", 6000).ok());
  CHECK(region->revocations_made() == 2);
}

TEST_CASE("enrolment: bad records are refused whole, naming the terminal") {
  Origin o;
  PublicKey k = SecretKey::Generate().public_key();
  Status st = o.enrolment->Add({{"pos-1", k, "", ""}, {"bad id!", k, "", ""}});
  CHECK(st.code() == Status::Code::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("bad id!"));
  CHECK(o.enrolment->List("", 10).empty());
  CHECK(o.enrolment->Add({{"pos-1", k, std::string(40, 'p'), ""}}).code() == Status::Code::kInvalidArgument);
}

