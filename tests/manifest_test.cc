// Tests of manifest/: names, SemVer, JSON round trip and validation.
#include <catch2/catch.hpp>

#include "manifest/manifest.h"

using namespace meridian;

TEST_CASE("model names follow [a-z0-9][a-z0-9._-]{0,63}") {
  for (const char* ok : {"a", "fraud-detector", "m0.v_1", "9"}) CHECK(IsValidModelName(ok));
  for (std::string bad : {std::string(""), std::string(".."), std::string("a/b"), std::string("A"),
                          std::string("-a"), std::string("a\0b", 3), std::string(65, 'a'),
                          std::string("%2e%2e"), std::string("a b")}) {
    CHECK_FALSE(IsValidModelName(bad));
  }
  CHECK(IsValidModelName(std::string(64, 'a')));
}

TEST_CASE("versions are SemVer 2.0.0 and compare by precedence") {
  for (const char* ok : {"1.0.0", "0.0.1", "1.2.3-rc.1", "1.2.3+build.5", "10.20.30-alpha-1.0+x"}) {
    CHECK(IsValidVersion(ok));
  }
  for (const char* bad : {"1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "v1.0.0", "1.0.0/..",
                          "1..0", ""}) {
    CHECK_FALSE(IsValidVersion(bad));
  }
  CHECK(CompareVersions("1.0.0", "1.0.1") < 0);
  CHECK(CompareVersions("1.10.0", "1.9.0") > 0);
  CHECK(CompareVersions("1.0.0-rc.1", "1.0.0") < 0);
  CHECK(CompareVersions("1.0.0-alpha", "1.0.0-alpha.1") < 0);
  CHECK(CompareVersions("1.0.0-alpha.2", "1.0.0-alpha.10") < 0);
  CHECK(CompareVersions("1.0.0-1", "1.0.0-alpha") < 0);
  CHECK(CompareVersions("1.0.0+a", "1.0.0+b") == 0);
}

static Manifest Sample() {
  Manifest m;
  m.name = "fraud-detector";
  m.version = "1.2.0";
  m.chunks = {{Digest::Of("a"), 10}, {Digest::Of("b"), 20}};
  m.size = 30;
  m.digest = Digest::Of("ab");
  m.profiles = {"pos-arm64"};
  m.regions = {"sg", "br"};
  m.annotations = {{"trained", "2026-11-01"}};
  m.created = "2026-11-24T00:00:00.000Z";
  return m;
}

TEST_CASE("manifest JSON round-trips") {
  Manifest m = Sample();
  Result<Manifest> back = ParseManifest(ManifestToJson(m));
  REQUIRE(back.ok());
  CHECK(*back == m);
}

TEST_CASE("manifest parse rejects inconsistent or malformed input") {
  Manifest m = Sample();
  m.size = 31;
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  m = Sample();
  m.name = "../etc";
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  m = Sample();
  m.regions = {"SG"};
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  m = Sample();
  m.chunks[0].size = 0;
  m.size = 20;
  CHECK_FALSE(ParseManifest(ManifestToJson(m)).ok());
  for (const char* bad : {"", "{", "[]", "null", "{\"name\":\"a\"}"}) CHECK_FALSE(ParseManifest(bad).ok());
  std::string json = ManifestToJson(Sample());
  json.replace(json.find("\"size\":30"), 9, "\"size\":-30");
  CHECK_FALSE(ParseManifest(json).ok());
}

TEST_CASE("a manifest naming a key twice is refused, wherever the repeat is") {
  const std::string json = ManifestToJson(Sample());
  REQUIRE(ParseManifest(json).ok());
  std::string top = json;
  top.insert(1, "\"version\":\"9.9.9\",");
  std::string nested = json;
  nested.insert(nested.find("\"digest\":\"sha256:", nested.find("\"chunks\"")), "\"size\":1,");
  for (const std::string& bad : {top, nested}) {
    Result<Manifest> m = ParseManifest(bad);
    CHECK(m.status().code() == Status::Code::kInvalidArgument);
    CHECK_THAT(m.status().message(), Catch::Contains("repeats a key"));
  }
}
