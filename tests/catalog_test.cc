// Unit tests of the catalog (daemon/catalog.h) over a real store: residency
// and public access per version, what Load rebuilds, what Holdings counts,
// and the holdings JSON a region sends.
#include "daemon/catalog.h"

#include <catch2/catch.hpp>

#include "tests/harness.h"
#include "tests/raw_db.h"
#include "tests/verified_manifest.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

// A manifest of one chunk of `data`.
Manifest OneChunk(const std::string& name, const Bytes& data, std::vector<std::string> regions, bool is_public) {
  Manifest m;
  m.name = name;
  m.version = "1.0.0";
  m.size = data.size();
  m.digest = Digest::Of(data);
  m.chunks = {{m.digest, data.size()}};
  m.regions = std::move(regions);
  m.is_public = is_public;
  m.created = "2026-11-30T00:00:00.000Z";
  return m;
}

}  // namespace

TEST_CASE("the catalog decides residency and public access; Load rebuilds it; Holdings counts stored bytes") {
  TempDir dir;
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();
  Bytes secret = RandomBytes(5000, 1), open = RandomBytes(4000, 2), plain = RandomBytes(3000, 3);
  Manifest br = OneChunk("secret", secret, {"br"}, false);
  Manifest pub = OneChunk("open", open, {}, true);
  Manifest priv = OneChunk("plain", plain, {"sg", "br"}, false);

  Catalog sg("sg");
  CHECK(sg.MayHold(priv));
  CHECK_FALSE(sg.MayHold(br));
  CHECK_FALSE(Catalog("").MayHold(priv));  // an origin that declares no jurisdiction
  CHECK(Catalog("").MayHold(pub));

  REQUIRE(store->CommitVersion(Verified(br), Store::Holding::kManifestOnly).ok());
  for (auto [m, data] : {std::pair{&pub, &open}, std::pair{&priv, &plain}}) {
    REQUIRE(store->PutChunk(m->digest, *data).ok());
    REQUIRE(store->CommitVersion(Verified(*m)).ok());
  }
  REQUIRE(sg.Load(*store).ok());
  CHECK(sg.IsElsewhereChunk(br.chunks[0].digest));
  CHECK(sg.IsElsewhereArtifact(br.digest));
  CHECK_FALSE(sg.IsElsewhereChunk(priv.chunks[0].digest));
  CHECK(sg.IsPublicChunk(pub.chunks[0].digest));
  CHECK_FALSE(sg.IsPublicChunk(priv.chunks[0].digest));
  CHECK_FALSE(sg.IsPublicChunk(br.chunks[0].digest));
  CHECK(sg.IsPublicArtifact(pub.digest));
  CHECK_FALSE(sg.IsPublicArtifact(priv.digest));
  CHECK(sg.IsPublicVersion("open", "1.0.0"));
  CHECK_FALSE(sg.IsPublicVersion("plain", "1.0.0"));
  CHECK(sg.PublicVersions("open", {"0.9.0", "1.0.0"}) == std::vector<std::string>{"1.0.0"});
  CHECK(sg.PublicVersions("plain", {"1.0.0"}).empty());
  // A catalog told of the same versions one by one agrees.
  Catalog learned("sg");
  for (const Manifest* m : {&br, &pub, &priv}) learned.Learn(*m);
  for (const Manifest* m : {&br, &pub, &priv}) {
    CHECK(learned.IsPublicChunk(m->chunks[0].digest) == sg.IsPublicChunk(m->chunks[0].digest));
    CHECK(learned.IsElsewhereChunk(m->chunks[0].digest) == sg.IsElsewhereChunk(m->chunks[0].digest));
  }

  std::map<std::string, ModelHolding> held = Catalog::Holdings(*store).value();
  CHECK(held.at("secret") == ModelHolding{.versions = 1, .versions_held = 0, .bytes = 0});
  CHECK(held.at("open") == ModelHolding{.versions = 1, .versions_held = 1, .bytes = open.size()});
  CHECK(held.at("plain") == ModelHolding{.versions = 1, .versions_held = 1, .bytes = plain.size()});
  // Bytes that should not be here are counted all the same: that is what an auditor needs to see.
  REQUIRE(store->PutChunk(br.digest, secret).ok());
  CHECK(Catalog::Holdings(*store).value().at("secret").bytes == secret.size());

  std::string region;
  Result<std::map<std::string, ModelHolding>> parsed = ParseHoldings(HoldingsToJson("br", held), &region);
  REQUIRE(parsed.ok());
  CHECK(*parsed == held);
  CHECK(region == "br");
  for (const char* bad : {R"({"region":"BR","models":{}})", R"({"region":"br"})",
                          R"({"region":"br","models":{"Bad Name":{"versions":1,"versions_held":1,"bytes":1}}})",
                          R"({"region":"br","models":{"m":{"versions":-1,"versions_held":1,"bytes":1}}})",
                          R"({"region":"br","models":{"m":{"versions":1}}})", "[]", "{"}) {
    INFO(bad);
    CHECK(ParseHoldings(bad, &region).status().code() == Status::Code::kInvalidArgument);
  }
}

TEST_CASE("a version that no longer reads (an index page lost) is left out of Load and counted not held, and the "
          "rest is unaffected") {
  TempDir dir;
  const Bytes open = RandomBytes(4000, 2);
  const Manifest pub = OneChunk("open", open, {}, true);
  std::vector<Bytes> chunks;
  for (uint32_t i = 0; i < 6; ++i) chunks.push_back(RandomBytes(700 + i, 10 + i));
  Artifact big = Paged(ArtifactOf("big", "1.0.0", std::move(chunks)), 2);
  big.manifest.is_public = true;
  {
    std::unique_ptr<Store> store = Store::Open(dir / "store").value();
    REQUIRE(store->PutChunk(pub.digest, open).ok());
    REQUIRE(store->CommitVersion(Verified(pub)).ok());
    PutAll(*store, big);
    REQUIRE(store->CommitVersion(Verified(big.manifest)).ok());
  }
  { RawDb(dir / "store").Lose(big.manifest.chunk_pages[1].digest); }
  std::unique_ptr<Store> store = Store::Open(dir / "store").value();
  REQUIRE(store->GetManifest("big", "1.0.0").status().code() == Status::Code::kCorruption);

  // The daemon still starts: nothing of the damaged version is served as
  // public, the other version is.
  Catalog sg("sg");
  REQUIRE(sg.Load(*store).ok());
  CHECK(sg.IsPublicArtifact(pub.digest));
  CHECK(sg.IsPublicChunk(pub.digest));
  CHECK_FALSE(sg.IsPublicArtifact(big.manifest.digest));
  CHECK_FALSE(sg.IsPublicChunk(big.manifest.chunks[0].digest));
  std::map<std::string, ModelHolding> held = Catalog::Holdings(*store).value();
  CHECK(held.at("big") == ModelHolding{.versions = 1, .versions_held = 0, .bytes = 0});
  CHECK(held.at("open") == ModelHolding{.versions = 1, .versions_held = 1, .bytes = open.size()});

  // The page put back (a publish or a region's sync): all of it again.
  REQUIRE(store->PutChunk(big.manifest.chunk_pages[1].digest, big.pages[1]).ok());
  REQUIRE(sg.Load(*store).ok());
  CHECK(sg.IsPublicArtifact(big.manifest.digest));
  CHECK(sg.IsPublicChunk(big.manifest.chunks[0].digest));
  CHECK(Catalog::Holdings(*store).value().at("big").versions_held == 1);
}
