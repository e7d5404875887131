// Unit tests of the pure HTTP helpers: Range, If-None-Match, target parsing.
#include <catch2/catch.hpp>

#include "daemon/http.h"

using namespace meridian;
using Kind = RangeRequest::Kind;

TEST_CASE("Range headers") {
  RangeRequest r = InterpretRange("bytes=1000-1999", 5000);
  CHECK(r.kind == Kind::kPartial);
  CHECK(r.first == 1000);
  CHECK(r.length == 1000);
  r = InterpretRange("bytes=4000-", 5000);
  CHECK((r.kind == Kind::kPartial && r.first == 4000 && r.length == 1000));
  r = InterpretRange("bytes=-100", 5000);
  CHECK((r.kind == Kind::kPartial && r.first == 4900 && r.length == 100));
  r = InterpretRange("bytes=-99999", 5000);
  CHECK((r.kind == Kind::kPartial && r.first == 0 && r.length == 5000));
  r = InterpretRange("bytes=0-99999", 5000);
  CHECK((r.kind == Kind::kPartial && r.length == 5000));
  CHECK(InterpretRange("bytes=5000-", 5000).kind == Kind::kUnsatisfiable);
  CHECK(InterpretRange("bytes=-0", 5000).kind == Kind::kUnsatisfiable);
  CHECK(InterpretRange("bytes=0-", 0).kind == Kind::kUnsatisfiable);
  for (const char* ignored : {"", "bytes=5-1", "items=0-1", "bytes=0-1,3-4", "bytes=x-1", "bytes=1-x", "bytes=-"}) {
    CHECK(InterpretRange(ignored, 5000).kind == Kind::kWhole);
  }
}

TEST_CASE("If-None-Match") {
  CHECK(IfNoneMatchHits("\"a\"", "\"a\""));
  CHECK(IfNoneMatchHits("W/\"a\"", "\"a\""));
  CHECK(IfNoneMatchHits("\"b\", \"a\"", "\"a\""));
  CHECK(IfNoneMatchHits("*", "\"a\""));
  CHECK_FALSE(IfNoneMatchHits("\"b\"", "\"a\""));
  CHECK_FALSE(IfNoneMatchHits("a", "\"a\""));
}

TEST_CASE("request targets are split and percent-decoded") {
  Result<ParsedTarget> t = ParseTarget("/v1/models/a%2Fb/versions?wait=5&x=%41");
  REQUIRE(t.ok());
  CHECK(t->segments == std::vector<std::string>{"v1", "models", "a/b", "versions"});
  CHECK(QueryParam(t->query, "wait") == "5");
  CHECK(QueryParam(t->query, "x") == "A");
  CHECK_FALSE(QueryParam(t->query, "y").has_value());
  CHECK(ParseTarget("/")->segments.empty());
  CHECK(ParseTarget("/a%00")->segments[0] == std::string("a\0", 2));
  CHECK_FALSE(ParseTarget("/a%zz").ok());
  CHECK_FALSE(ParseTarget("/a%2").ok());
  CHECK_FALSE(ParseTarget("relative").ok());
  // An escape is exactly two hex digits: no sign, no space.
  CHECK_FALSE(ParseTarget("/a%-f").ok());
  CHECK_FALSE(ParseTarget("/a%+f").ok());
  CHECK_FALSE(ParseTarget("/a% f").ok());
  // A malformed escape in the query is refused with the path's, not read as an absent parameter.
  CHECK_FALSE(ParseTarget("/a?wait=%zz").ok());
  CHECK_FALSE(ParseTarget("/a?wait=5&x=%4").ok());
  CHECK_FALSE(ParseTarget("/a?x=%-1").ok());
}
