// Tests of base/: digests, encodings, status, clock, atomic files.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "base/clock.h"
#include "base/digest.h"
#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/status.h"

using namespace meridian;

TEST_CASE("digest of known inputs matches sha256sum") {
  CHECK(Digest::Of("").ToString() ==
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Digest::Of("abc").Hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.Update("a");
  h.Update("bc");
  CHECK(h.Finish() == Digest::Of("abc"));
  CHECK(h.Finish() == Digest::Of(""));  // Finish resets
}

TEST_CASE("digest parse round-trips and rejects everything else") {
  Digest d = Digest::Of("x");
  Result<Digest> back = Digest::Parse(d.ToString());
  REQUIRE(back.ok());
  CHECK(*back == d);
  std::string upper = d.ToString();
  upper[10] = 'A';
  for (std::string bad : {std::string(""), std::string("sha256:"), d.Hex(), "sha512:" + d.Hex(),
                          d.ToString() + "0", d.ToString().substr(0, 70), upper,
                          "sha256:" + std::string(63, '0') + "g"}) {
    CHECK_FALSE(Digest::Parse(bad).ok());
  }
}

TEST_CASE("hex and base64 round-trip and are strict") {
  Bytes data = {0x00, 0x01, 0xfe, 0xff, 0x10};
  CHECK(HexEncode(data) == "0001feff10");
  CHECK(*HexDecode("0001FEff10") == data);
  CHECK_FALSE(HexDecode("abc").ok());
  CHECK_FALSE(HexDecode("zz").ok());

  CHECK(Base64Encode(AsBytes("")) == "");
  CHECK(Base64Encode(AsBytes("f")) == "Zg==");
  CHECK(Base64Encode(AsBytes("fo")) == "Zm8=");
  CHECK(Base64Encode(AsBytes("foobar")) == "Zm9vYmFy");
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    Result<Bytes> back = Base64Decode(Base64Encode(AsBytes(s)));
    REQUIRE(back.ok());
    CHECK(AsString(*back) == s);
  }
  CHECK_FALSE(Base64Decode("Zg=").ok());
  CHECK_FALSE(Base64Decode("Z===").ok());
  CHECK_FALSE(Base64Decode("Zm9v\n").ok());
  CHECK_FALSE(Base64Decode("Zm=v").ok());
  CHECK_FALSE(Base64Decode("Zh==").ok());  // non-canonical trailing bits
}

TEST_CASE("status and result carry codes and values") {
  Status st = Status::NotFound("model x");
  CHECK_FALSE(st.ok());
  CHECK(st.ToString() == "not found: model x");
  CHECK(Status::CodeName(Status::Code::kFailedPrecondition) == "failed_precondition");
  Result<int> r = 7;
  CHECK(r.ok());
  CHECK(*r == 7);
  Result<int> e = Status::Corruption("bad");
  CHECK(e.status().code() == Status::Code::kCorruption);
}

TEST_CASE("clock formats RFC 3339 and the fake clock moves only when told") {
  CHECK(FormatRfc3339(0) == "1970-01-01T00:00:00.000Z");
  CHECK(FormatRfc3339(1'700'000'000'123) == "2023-11-14T22:13:20.123Z");
  FakeClock clock(1000);
  CHECK(clock.NowUnixMillis() == 1000);
  clock.Advance(std::chrono::seconds(2));
  CHECK(clock.NowUnixMillis() == 3000);
  CHECK(SystemClock::Get().NowUnixMillis() > 1'700'000'000'000);
}

TEST_CASE("atomic writes replace whole files with the asked mode") {
  auto dir = std::filesystem::temp_directory_path() / ("meridian-base-" + std::to_string(::getpid()));
  REQUIRE(CreateDirectories(dir.string()).ok());
  std::string path = (dir / "secret").string();
  REQUIRE(WriteFileAtomic(path, std::string_view("one"), 0600).ok());
  REQUIRE(WriteFileAtomic(path, std::string_view("two!"), 0600).ok());
  CHECK(*ReadFileToString(path, 100) == "two!");
  struct stat sb{};
  REQUIRE(::stat(path.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0600);
  CHECK(ReadFileToString(path, 3).status().code() == Status::Code::kResourceExhausted);
  CHECK(ReadFileToString((dir / "nope").string(), 3).status().code() == Status::Code::kNotFound);
  CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 1);  // no temporaries left
  Result<ReadOnlyFile> opened = OpenReadOnly(path);
  REQUIRE(opened.ok());
  CHECK(opened->size == 4);
  ::close(opened->fd);
  CHECK(OpenReadOnly((dir / "nope").string()).status().code() == Status::Code::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST_CASE("ParseJson refuses repeated keys at any depth, deep nesting and oversize input") {
  CHECK(ParseJson(R"({"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]})", 1000).ok());
  for (const char* twice : {R"({"a":1,"a":1})", R"({"a":1,"b":2,"a":3})", R"({"x":{"a":1,"a":2}})",
                            R"([{"a":1},{"b":1,"b":2}])", R"({"a":{},"a":{}})"}) {
    INFO(twice);
    Result<nlohmann::json> j = ParseJson(twice, 1000);
    CHECK(j.status().code() == Status::Code::kInvalidArgument);
    CHECK_THAT(j.status().message(), Catch::Contains("repeats a key"));
  }
  std::string deep(kJsonDepthMax, '[');
  deep += std::string(kJsonDepthMax, ']');
  CHECK(ParseJson(deep, 1000).ok());
  std::string deeper = "[" + deep + "]";
  CHECK_THAT(ParseJson(deeper, 1000).status().message(), Catch::Contains("nests deeper"));
  CHECK(ParseJson("{\"a\":1}", 6).status().code() == Status::Code::kResourceExhausted);
  for (const char* bad : {"", "{", "[1,]", "{\"a\":1}x", "nul"}) CHECK_FALSE(ParseJson(bad, 1000).ok());
}
