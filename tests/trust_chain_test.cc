// Unit tests of the daemon's trust services over a real store: releases
// waiting for co-signers (daemon/pending_releases.h) and the chain of roots
// (daemon/root_chain.h) — what they keep, merge, bound, refuse and reload.
#include <catch2/catch.hpp>

#include "base/clock.h"
#include "daemon/pending_releases.h"
#include "daemon/root_chain.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

SecretKey KeyFromByte(uint8_t b) { return SecretKey::FromSeed(Bytes(kSeedBytes, b)).value(); }

// A root of version `version` with `root_key` as its root key and `release` keys (2 of them needed when two).
Root MakeRoot(int64_t version, const SecretKey& root_key, const std::vector<const SecretKey*>& release,
              const std::string& expires = "2100-01-01T00:00:00.000Z") {
  Root root;
  root.version = version;
  root.expires = expires;
  root.keys[root_key.KeyId()] = root_key.public_key();
  root.roles["root"] = Role{{root_key.KeyId()}, 1};
  root.roles["online"] = Role{{root_key.KeyId()}, 1};
  Role rel{{}, static_cast<int>(release.size())};
  for (const SecretKey* k : release) {
    root.keys[k->KeyId()] = k->public_key();
    rel.keyids.push_back(k->KeyId());
  }
  root.roles["release"] = rel;
  return root;
}

std::string SignedRoot(const Root& root, const std::vector<const SecretKey*>& signers) {
  Envelope env{std::string(kRootPayloadType), ToBytes(RootToJson(root)), {}};
  for (const SecretKey* k : signers) SignEnvelope(env, *k);
  return EnvelopeToJson(env);
}

CoSignedManifest SignedRelease(const Root& root, const std::string& version, const SecretKey& key) {
  Manifest m;
  m.name = "fraud";
  m.version = version;
  m.size = 1;
  m.digest = Digest::Of(std::string_view(version));
  m.chunks = {{m.digest, 1}};
  m.created = "2026-11-30T00:00:00.000Z";
  Envelope env{std::string(kManifestPayloadType), ToBytes(ManifestToJson(m)), {}};
  SignEnvelope(env, key);
  return VerifyCoSignedManifest(root, EnvelopeToJson(env)).value();
}

}  // namespace

TEST_CASE("pending releases merge signatures, are bounded, survive a reopen and are re-verified") {
  TempDir dir;
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();
  SecretKey root_key = KeyFromByte(1), a = KeyFromByte(2), b = KeyFromByte(3);
  Root root = MakeRoot(1, root_key, {&a, &b});
  std::unique_ptr<PendingReleases> pending = PendingReleases::Open(*store, root, /*pending_max=*/2).value();

  CoSignedManifest first = pending->Add(root, SignedRelease(root, "1.0.0", a), 1000).value();
  CHECK_FALSE(first.complete());
  CHECK(pending->Add(root, SignedRelease(root, "1.0.0", a), 2000)->signers == std::vector<std::string>{a.KeyId()});
  REQUIRE(pending->Add(root, SignedRelease(root, "2.0.0", a), 3000).ok());
  CHECK(pending->Add(root, SignedRelease(root, "3.0.0", a), 4000).status().code() == Status::Code::kResourceExhausted);
  // Another manifest under a pending version is not merged.
  CoSignedManifest other = SignedRelease(root, "1.0.0", b);
  other.envelope.payload.push_back(' ');
  CHECK(pending->Add(root, other, 5000).status().code() == Status::Code::kInvalidArgument);

  CoSignedManifest both = pending->Add(root, SignedRelease(root, "1.0.0", b), 6000).value();
  CHECK(both.complete());
  CHECK(both.signers == std::vector<std::string>{a.KeyId(), b.KeyId()});
  CHECK(VerifyRole(root, "release", both.envelope).ok());
  CHECK(pending->EnvelopeJson("fraud", "1.0.0").value() == EnvelopeToJson(both.envelope));

  // Kept in the store; re-verified when loaded.
  pending.reset();
  pending = PendingReleases::Open(*store, root).value();
  std::vector<PendingRelease> listed = pending->List();
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].release.signers.size() == 2);
  CHECK(listed[0].received_ms == 1000);
  REQUIRE(pending->Remove("fraud", "1.0.0").ok());
  CHECK(pending->Remove("fraud", "1.0.0").ok());
  CHECK(pending->EnvelopeJson("fraud", "1.0.0").status().code() == Status::Code::kNotFound);
  // A root whose release keys signed none of them drops them.
  SecretKey c = KeyFromByte(4);
  pending.reset();
  pending = PendingReleases::Open(*store, MakeRoot(2, root_key, {&c})).value();
  CHECK(pending->List().empty());
  CHECK(store->ScanState("pending-release/").value().empty());
}

TEST_CASE("the chain of roots: next versions only, signed by both root key sets, fresh when pushed, kept") {
  TempDir dir;
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();
  SecretKey k1 = KeyFromByte(1), k2 = KeyFromByte(2), k3 = KeyFromByte(3), release = KeyFromByte(9);
  const Root root1 = MakeRoot(1, k1, {&release});
  const std::string env1 = SignedRoot(root1, {&k1});
  std::unique_ptr<RootChain> chain = RootChain::Open(*store, env1).value();
  CHECK(chain->latest_version() == 1);
  CHECK(chain->EnvelopeJson(1).value() == env1);
  CHECK(chain->EnvelopeJson(2).status().code() == Status::Code::kNotFound);

  const int64_t now = ParseRfc3339("2026-11-30T00:00:00.000Z").value();
  const std::string env2 = SignedRoot(MakeRoot(2, k2, {&release}), {&k1, &k2});
  CHECK(chain->Add(SignedRoot(MakeRoot(2, k2, {&release}), {&k2}), now).code() == Status::Code::kPermissionDenied);
  CHECK(chain->Add(SignedRoot(MakeRoot(2, k2, {&release}), {&k1}), now).code() == Status::Code::kPermissionDenied);
  CHECK(chain->Add(SignedRoot(MakeRoot(3, k2, {&release}), {&k1, &k2}), now).code() ==
        Status::Code::kFailedPrecondition);
  CHECK(chain->Add(SignedRoot(MakeRoot(2, k2, {&release}, "2026-01-01T00:00:00Z"), {&k1, &k2}), now).code() ==
        Status::Code::kFailedPrecondition);  // expired: an operator may not push it
  CHECK(chain->Add("not an envelope", now).code() == Status::Code::kInvalidArgument);
  CHECK(chain->latest_version() == 1);
  REQUIRE(chain->Add(env2, now).ok());
  CHECK(chain->Current()->roles.at("root").keyids == std::vector<std::string>{k2.KeyId()});
  CHECK(chain->Add(env2, now).code() == Status::Code::kFailedPrecondition);  // replayed
  // A follower passes through a root that expired since.
  const std::string env3 = SignedRoot(MakeRoot(3, k3, {&release}, "2026-01-01T00:00:00Z"), {&k2, &k3});
  REQUIRE(chain->Add(env3, std::nullopt).ok());

  chain.reset();
  chain = RootChain::Open(*store, env1).value();
  CHECK(chain->latest_version() == 3);
  CHECK(chain->EnvelopeJson(2).value() == env2);
  CHECK(chain->EnvelopeJson(3).value() == env3);
  // A kept rotation that no longer verifies is a corrupt store, not a silent downgrade.
  REQUIRE(store->WriteState({{"root/00000000000000000002", SignedRoot(MakeRoot(2, k2, {&release}), {&k2})}}).ok());
  CHECK(RootChain::Open(*store, env1).status().code() == Status::Code::kCorruption);
}
