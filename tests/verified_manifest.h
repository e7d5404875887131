// A manifest as the trust layer hands it to the store, for tests of what
// takes only verified manifests (the store, the catalog): signed by test
// release keys of a test root; and the artifacts such manifests describe,
// put in a store. Header-only: it needs Catch2, signing/ and store/.
#pragma once

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "manifest/chunk_pages.h"
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
  std::vector<Bytes> pages;  // a paged manifest's index pages
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

// `a` with a paged manifest: its chunk list in index pages of `per_page`
// chunks (the manifest resolved, as a publisher has it).
inline Artifact Paged(Artifact a, size_t per_page) {
  for (ChunkPage& p : MakeChunkPages(a.manifest.chunks, per_page)) {
    a.manifest.chunk_pages.push_back(p.ref);
    a.pages.push_back(std::move(p.bytes));
  }
  return a;
}

// Puts every chunk (and index page) of `a` into `store`.
inline void PutAll(Store& store, const Artifact& a) {
  for (const std::vector<Bytes>* list : {&a.chunks, &a.pages}) {
    for (const Bytes& c : *list) REQUIRE(store.PutChunk(Digest::Of(c), c).ok());
  }
}

}  // namespace meridian::testing
