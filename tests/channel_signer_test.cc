// Unit tests of the channel signer (daemon/channel_signer.h) over a real
// store in a temporary directory and a fake clock: signed states verify,
// state versions grow and survive a reopen, expiry and refresh, and a
// region's signer that only adopts.
#include "daemon/channel_signer.h"

#include <catch2/catch.hpp>

#include "base/digest.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

constexpr int64_t kHourMs = 3600 * 1000;

// The online key from a fixed seed: a key is moved into each signer opened,
// and every one of them must sign with the same key.
SecretKey OnlineKey() {
  Result<SecretKey> key = SecretKey::FromSeed(Bytes(32, 7));
  REQUIRE(key.ok());
  return std::move(*key);
}

struct Fixture {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store;
  Root root;

  Fixture() {
    Result<std::unique_ptr<Store>> s = Store::Open(dir / "store");
    REQUIRE(s.ok());
    store = std::move(*s);
    SecretKey online = OnlineKey();
    root.keys[online.KeyId()] = online.public_key();
    root.roles["online"] = Role{{online.KeyId()}, 1};
  }

  // An origin's signer: 24 h states, refreshed when less than 12 h is left.
  std::unique_ptr<ChannelSigner> OpenOrigin() {
    Result<std::unique_ptr<ChannelSigner>> s =
        ChannelSigner::Open(*store, OnlineKey(), clock, {.state_expiry_ms = 24 * kHourMs, .state_refresh_ms = 12 * kHourMs});
    REQUIRE(s.ok());
    return std::move(*s);
  }
};

ChannelState Content(const std::string& pointer) {
  ChannelState s;
  s.model = "resnet";
  s.channel = "stable";
  s.version = pointer;
  s.versions[pointer] = {Digest::Of("manifest " + pointer), Digest::Of("artifact " + pointer), 1000};
  return s;
}

}  // namespace

TEST_CASE("channel signer: a published state verifies, is served, and its version grows across a reopen") {
  Fixture f;
  auto signer = f.OpenOrigin();
  CHECK(signer->CanSign().ok());
  CHECK(signer->Current("resnet", "stable").status().code() == Status::Code::kNotFound);
  CHECK(signer->Pointer("resnet", "stable").empty());

  REQUIRE(signer->Publish(Content("1.0.0"), {{"rollout/r1", "same batch"}}).ok());
  CHECK(*f.store->GetState("rollout/r1") == "same batch");
  Result<std::shared_ptr<const SignedChannel>> held = signer->Current("resnet", "stable");
  REQUIRE(held.ok());
  CHECK((*held)->state.state_version == 1);
  CHECK((*held)->state.issued_ms == f.clock.NowUnixMillis());
  CHECK((*held)->state.expires_ms == f.clock.NowUnixMillis() + 24 * kHourMs);
  Result<ChannelState> verified =
      VerifyChannelState(f.root, (*held)->envelope_json, "resnet", "stable", 0, f.clock.NowUnixMillis());
  REQUIRE(verified.ok());
  CHECK(*verified == (*held)->state);
  CHECK(signer->Pointer("resnet", "stable") == "1.0.0");

  REQUIRE(signer->Publish(Content("1.1.0")).ok());
  CHECK(signer->Channels().size() == 1);
  CHECK(signer->Channels()[0].state.state_version == 2);

  signer = f.OpenOrigin();  // a restart
  held = signer->Current("resnet", "stable");
  REQUIRE(held.ok());
  CHECK((*held)->state.state_version == 2);
  CHECK((*held)->state.version == "1.1.0");
  REQUIRE(signer->Publish(Content("1.1.0")).ok());
  CHECK(signer->Channels()[0].state.state_version == 3);  // never reused
}

TEST_CASE("channel signer: a state is listed for refresh before it expires, and not served after") {
  Fixture f;
  auto signer = f.OpenOrigin();
  REQUIRE(signer->Publish(Content("1.0.0")).ok());
  CHECK(signer->Expiring().empty());
  f.clock.Advance(std::chrono::hours(12) + std::chrono::milliseconds(1));
  REQUIRE(signer->Expiring().size() == 1);
  CHECK(signer->Expiring()[0] == ChannelSigner::ModelChannel{"resnet", "stable"});
  f.clock.Advance(std::chrono::hours(12));
  CHECK(signer->Current("resnet", "stable").status().code() == Status::Code::kUnavailable);
  REQUIRE(signer->Publish(Content("1.0.0")).ok());  // refreshed
  CHECK(signer->Current("resnet", "stable").ok());
}

TEST_CASE("channel signer: a region's signs nothing and adopts only newer states") {
  Fixture f;
  auto origin = f.OpenOrigin();
  REQUIRE(origin->Publish(Content("1.0.0")).ok());
  REQUIRE(origin->Publish(Content("1.1.0")).ok());
  SignedChannel newest = origin->Channels()[0];

  TempDir region_dir;
  Result<std::unique_ptr<Store>> region_store = Store::Open(region_dir / "store");
  REQUIRE(region_store.ok());
  Result<std::unique_ptr<ChannelSigner>> opened = ChannelSigner::Open(**region_store, std::nullopt, f.clock);
  REQUIRE(opened.ok());
  ChannelSigner& region = **opened;
  CHECK(region.CanSign().code() == Status::Code::kFailedPrecondition);
  CHECK(region.Publish(Content("1.0.0")).code() == Status::Code::kFailedPrecondition);

  Result<bool> adopted = region.Adopt(newest.state, newest.envelope_json);
  REQUIRE(adopted.ok());
  CHECK(*adopted);
  adopted = region.Adopt(newest.state, newest.envelope_json);
  REQUIRE(adopted.ok());
  CHECK_FALSE(*adopted);  // as new as the one held
  Result<std::shared_ptr<const SignedChannel>> held = region.Current("resnet", "stable");
  REQUIRE(held.ok());
  CHECK((*held)->envelope_json == newest.envelope_json);
  f.clock.Advance(std::chrono::hours(13));
  CHECK(region.Expiring().empty());  // a region cannot refresh: it waits for the origin's next state
}
