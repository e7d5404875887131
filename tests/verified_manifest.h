// A manifest as the trust layer hands it to the store, for tests of what
// takes only verified manifests (the store, the catalog): signed by test
// release keys of a test root; and the artifacts such manifests describe,
// put in a store. Header-only: it needs Catch2, signing/ and store/.
#pragma once

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "manifest/manifest.h"
#include "signing/signing.h"
#include "store/store.h"
#include "trust/trust.h"

namespace meridian::testing {

// Two release keys (for envelopes that differ in signatures only) in a root.
struct TestSigner {
  SecretKey first = SecretKey::FromSeed(Bytes(kSeedBytes, 1)).value();
  SecretKey second = SecretKey::FromSeed(Bytes(kSeedBytes, 2)).value();
  Root root;
  TestSigner() {
    for (const SecretKey* k : {&first, &second}) {
      root.keys[k->KeyId()] = k->public_key();
      root.roles["release"].keyids.push_back(k->KeyId());
    }
  }
};

// `m` signed by the first test key, and by the second too when `twice`.
inline VerifiedManifest Verified(const Manifest& m, bool twice = false) {
  static const TestSigner signer;
  Envelope env;
  env.payload_type = std::string(kManifestPayloadType);
  env.payload = ToBytes(ManifestToJson(m));
  SignEnvelope(env, signer.first);
  if (twice) SignEnvelope(env, signer.second);
  Result<VerifiedManifest> verified = VerifySignedManifest(signer.root, EnvelopeToJson(env));
  REQUIRE(verified.ok());
  return std::move(verified).value();
}

// A model version and its chunks' bytes, to put in a store before committing it.
struct Artifact {
  std::vector<Bytes> chunks;
  Manifest manifest;
};

// Model `name` at `version`, made of `chunks` in that order.
inline Artifact ArtifactOf(const std::string& name, const std::string& version, std::vector<Bytes> chunks) {
  Artifact a;
  a.manifest.name = name;
  a.manifest.version = version;
  a.manifest.created = "2026-11-24T00:00:00.000Z";
  a.chunks = std::move(chunks);
  Sha256 whole;
  for (const Bytes& c : a.chunks) {
    whole.Update(c);
    a.manifest.chunks.push_back({Digest::Of(c), c.size()});
    a.manifest.size += c.size();
  }
  a.manifest.digest = whole.Finish();
  return a;
}

// Puts every chunk of `a` into `store`.
inline void PutAll(Store& store, const Artifact& a) {
  for (const Bytes& c : a.chunks) REQUIRE(store.PutChunk(Digest::Of(c), c).ok());
}

}  // namespace meridian::testing
