// Tests of base/: digests, encodings, status, clock, atomic files, periodic threads.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <stdexcept>

#include "base/clock.h"
#include "base/digest.h"
#include "base/encoding.h"
#include "base/env.h"
#include "base/file.h"
#include "base/json.h"
#include "base/periodic.h"
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

TEST_CASE("Utf8Prefix cuts before a character the limit would split; DumpJson writes U+FFFD for bytes not UTF-8") {
  const std::string e_acute = "\xC3\xA9", euro = "\xE2\x82\xAC", smile = "\xF0\x9F\x98\x80";
  CHECK(Utf8Prefix("abc", 3) == "abc");
  CHECK(Utf8Prefix("abc", 2) == "ab");
  CHECK(Utf8Prefix("a" + e_acute, 2) == "a");
  CHECK(Utf8Prefix("a" + e_acute, 3) == "a" + e_acute);
  CHECK(Utf8Prefix(euro + euro, 4) == euro);
  CHECK(Utf8Prefix(euro + euro, 5) == euro);
  for (size_t cut = 0; cut < 4; ++cut) CHECK(Utf8Prefix(smile + "x", cut).empty());
  CHECK(Utf8Prefix(smile + "x", 4) == smile);
  CHECK(Utf8Prefix(std::string(8, '\x80'), 5).size() == 5);  // not UTF-8: cut where asked
  // A long reason cut at every length is still valid JSON text.
  std::string reason;
  for (int i = 0; i < 100; ++i) reason += "x" + e_acute + euro + smile;
  for (size_t cut = 0; cut <= reason.size(); ++cut) {
    std::string_view prefix = Utf8Prefix(reason, cut);
    REQUIRE(prefix.size() <= cut);
    REQUIRE(prefix.size() + 3 >= cut);
    REQUIRE_NOTHROW(nlohmann::json(prefix).dump());
  }

  CHECK(IsUtf8(reason));
  CHECK_FALSE(IsUtf8(smile.substr(0, 3)));

  nlohmann::json cut = std::string("a") + smile.substr(0, 2);
  CHECK_THROWS(cut.dump());
  CHECK(DumpJson(cut) == "\"a\xEF\xBF\xBD\"");
  nlohmann::ordered_json ordered = {{"b", 1}, {"a", std::string("\xFF")}};
  CHECK(DumpJson(ordered) == "{\"b\":1,\"a\":\"\xEF\xBF\xBD\"}");
}

TEST_CASE("IsUtf8 takes well-formed UTF-8 only, as nlohmann's writer does") {
  for (const char* good : {"", "plain", "caf\xC3\xA9", "\xE2\x82\xAC", "\xED\x9F\xBF", "\xEE\x80\x80",
                           "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF"}) {
    CHECK(IsUtf8(good));
  }
  for (const char* bad : {"caf\xE9", "\x80", "\xC0\xAF", "\xC1\xBF", "\xE0\x9F\xBF", "\xED\xA0\x80",
                          "\xF0\x8F\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", "\xE2\x82",
                          "\xE2\x82x"}) {
    INFO(HexEncode(AsBytes(bad)));
    CHECK_FALSE(IsUtf8(bad));
  }
  CHECK_FALSE(IsUtf8(std::string_view("a\0\xC3", 3)));
  CHECK(IsUtf8(std::string_view("a\0b", 3)));
  // Against nlohmann's own check (dump() throws on what is not UTF-8), on
  // random text of mostly high bytes: short runs of valid and invalid sequences.
  std::mt19937 rng(7);
  int valid = 0;
  for (int i = 0; i < 200'000; ++i) {
    std::string s(rng() % 6, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? rng() % 0x80 : 0x80 + rng() % 0x80);
    bool throws = false;
    try {
      (void)nlohmann::json(s).dump();
    } catch (const nlohmann::json::exception&) {
      throws = true;
    }
    INFO(HexEncode(AsBytes(s)));
    REQUIRE(IsUtf8(s) == !throws);
    valid += throws ? 0 : 1;
  }
  CHECK(valid > 1000);  // the valid side was exercised too
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

TEST_CASE("ParseRfc3339 reads back what FormatRfc3339 writes, UTC only") {
  for (int64_t ms : {int64_t{0}, int64_t{1'700'000'000'123}, int64_t{951'782'400'000} /* 2000-02-29 */,
                     int64_t{4'102'444'799'999}}) {
    INFO(ms);
    CHECK(ParseRfc3339(FormatRfc3339(ms)).value() == ms);
  }
  CHECK(ParseRfc3339("2026-11-29T00:00:00Z").value() == ParseRfc3339("2026-11-29T00:00:00.000Z").value());
  CHECK(ParseRfc3339("2026-11-29t00:00:00.5z").value() == ParseRfc3339("2026-11-29T00:00:00.500Z").value());
  CHECK(ParseRfc3339("2026-11-29T00:00:00.123456789Z").value() == ParseRfc3339("2026-11-29T00:00:00.123Z").value());
  for (const char* bad : {"", "2026-11-29", "2026-11-29T00:00:00", "2026-11-29T00:00:00+00:00", "2026-13-01T00:00:00Z",
                          "2026-02-29T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-29T24:00:00Z", "2026-11-29T00:00:00.Z",
                          "2026-11-29T00:00:00Zjunk", "never", "2026-11-29 00:00:00Z"}) {
    INFO(bad);
    CHECK(ParseRfc3339(bad).status().code() == Status::Code::kInvalidArgument);
  }
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

TEST_CASE("appended zeros read back as zeros and, a block or more at a time, take no disk (holes)") {
  auto dir = std::filesystem::temp_directory_path() / ("meridian-base-z-" + std::to_string(::getpid()));
  REQUIRE(CreateDirectories(dir.string()).ok());
  const std::string path = (dir / "sparse").string();
  std::string expected;
  {
    Result<std::unique_ptr<WritableFile>> f = Env::Default().NewWritableFile(path, 0644);
    REQUIRE(f.ok());
    REQUIRE((*f)->Append(AsBytes("head")).ok());
    const Bytes zeros(16 << 10);  // as a download's pieces come
    for (int i = 0; i < 64; ++i) REQUIRE((*f)->Append(zeros).ok());
    REQUIRE((*f)->Append(Bytes(100)).ok());  // shorter than a block: written
    REQUIRE((*f)->Append(AsBytes("tail")).ok());
    expected = "head" + std::string(64 * zeros.size() + 100, '\0') + "tail";
    // A cut inside the zeros, then more bytes after it.
    REQUIRE((*f)->Truncate(expected.size() - 50).ok());
    expected.resize(expected.size() - 50);
    REQUIRE((*f)->Append(AsBytes("x")).ok());
    expected += "x";
    REQUIRE((*f)->Sync().ok());
    REQUIRE((*f)->Close().ok());
  }
  {
    // Resumed (O_APPEND), as a download is after a restart.
    Result<std::unique_ptr<WritableFile>> f = Env::Default().ReopenWritableFile(path, 0644);
    REQUIRE(f.ok());
    REQUIRE((*f)->Append(Bytes(256 << 10)).ok());
    REQUIRE((*f)->Append(AsBytes("end")).ok());
    expected += std::string(256 << 10, '\0') + "end";
    REQUIRE((*f)->Sync().ok());
  }
  Result<std::string> back = ReadFileToString(path, 4 << 20);
  REQUIRE(back.ok());
  CHECK(back->size() == expected.size());
  CHECK(*back == expected);
  struct stat sb{};
  REQUIRE(::stat(path.c_str(), &sb) == 0);
  // 1.25 MiB of zeros, written, would take at least that; as holes, a few blocks.
  CHECK(static_cast<uint64_t>(sb.st_blocks) * 512 < (256u << 10));
  std::filesystem::remove_all(dir);
}

TEST_CASE("PwriteAll writes at offsets, PreadExact reads exactly or names the file that ended") {
  auto dir = std::filesystem::temp_directory_path() / ("meridian-base-p-" + std::to_string(::getpid()));
  REQUIRE(CreateDirectories(dir.string()).ok());
  const std::string path = (dir / "f").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  Bytes big(3u << 20);  // more than one write(2) may take at once on some systems
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  REQUIRE(PwriteAll(fd, 5, big, path).ok());
  REQUIRE(PwriteAll(fd, 0, AsBytes(std::string_view("head!")), path).ok());
  Bytes back(big.size());
  REQUIRE(PreadExact(fd, 5, back, path).ok());
  CHECK(back == big);
  Bytes head(5);
  REQUIRE(PreadExact(fd, 0, head, path).ok());
  CHECK(AsString(head) == "head!");
  Bytes past(10);
  Status short_read = PreadExact(fd, big.size(), past, path);
  CHECK(short_read.code() == Status::Code::kIOError);
  CHECK(short_read.message().find(path) != std::string::npos);
  ::close(fd);
  CHECK(PwriteAll(-1, 0, head, path).code() == Status::Code::kIOError);
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
  // Linear in the document: 100,000 objects in one array (a paged
  // manifest's page list is such an array) parse at once; a parser that
  // rescans the array after each element would take hours.
  std::string many = "[";
  for (int i = 0; i < 100'000; ++i) many += "{\"a\":1},";
  many.back() = ']';
  Result<nlohmann::json> long_array = ParseJson(many, many.size());
  REQUIRE(long_array.ok());
  CHECK(long_array->size() == 100'000);
  // A key repeated in the last of them is still seen.
  many.replace(many.size() - 2, 1, ",\"a\":1}");
  CHECK_THAT(ParseJson(many, many.size()).status().message(), Catch::Contains("repeats a key"));
  // A values limit counts every value but keys, containers included, and
  // stops the parse at the first one over.
  const std::string doc = R"({"a":[1,"x",null,true,{}],"b":2.5})";  // 8 values
  CHECK(ParseJson(doc, 1000, 8).ok());
  Result<nlohmann::json> over = ParseJson(doc, 1000, 7);
  CHECK(over.status().code() == Status::Code::kResourceExhausted);
  CHECK_THAT(over.status().message(), Catch::Contains("more than 7 values"));
  CHECK(ParseJson(many, many.size(), 100).status().code() == Status::Code::kResourceExhausted);
}

TEST_CASE("ParseJsonObject names the document and wants an object") {
  CHECK(ParseJsonObject(R"({"a":1})", 100, "thing").ok());
  for (const char* bad : {"[]", "1", "{", R"({"a":1,"a":2})"}) {
    INFO(bad);
    Status st = ParseJsonObject(bad, 100, "thing").status();
    CHECK(st.code() == Status::Code::kInvalidArgument);
    CHECK_THAT(st.message(), Catch::StartsWith("thing: "));
  }
  CHECK(ParseJsonObject(R"({"a":1})", 6, "thing").status().code() == Status::Code::kInvalidArgument);
}

namespace {

enum class Colour { kRed, kBlue };
std::string_view ColourName(Colour c) {
  switch (c) {
    case Colour::kRed: return "red";
    case Colour::kBlue: return "blue";
  }
  return "unknown";
}

struct Read {
  std::string s = "default";
  std::vector<std::string> strings;
  std::vector<double> numbers;
  double number = 0;
  bool flag = false;
  int64_t i64 = 0;
  uint64_t u = 0;
  uint32_t u32 = 0;
  Colour colour = Colour::kRed;
};
// Reads every kind of field of `text` under `unknown` into `out`.
Status ReadAll(std::string_view text, UnknownFields unknown, Read* out) {
  nlohmann::json j = nlohmann::json::parse(text);
  JsonFields f(j, "doc", unknown);
  f.String("s", &out->s);
  f.Strings("strings", &out->strings);
  f.Numbers("numbers", &out->numbers);
  f.Number("number", &out->number);
  f.Bool("flag", &out->flag);
  f.Int64("i64", &out->i64);
  f.Uint("u", &out->u, false, 10);
  f.Uint32("u32", &out->u32);
  f.Choice("colour", ColourName, &out->colour);
  f.Object("object");
  f.Array("array", 2);
  f.Objects("objects", 1);
  return f.Finish();
}

}  // namespace

TEST_CASE("JsonFields reads typed fields, keeps defaults, and names the first problem") {
  Read r;
  REQUIRE(ReadAll(R"({"strings":["a","b"],"numbers":[1,2.5],"number":-1.5,"flag":true,"i64":-7,"u":10,
                      "u32":4294967295,"colour":"blue","object":{},"array":[1,2],"objects":[{}]})",
                  UnknownFields::kRefuse, &r).ok());
  CHECK(r.s == "default");  // absent: left as it was
  CHECK(r.strings == std::vector<std::string>{"a", "b"});
  CHECK(r.numbers == std::vector<double>{1, 2.5});
  CHECK(r.number == -1.5);
  CHECK(r.flag);
  CHECK(r.i64 == -7);
  CHECK(r.u == 10);
  CHECK(r.u32 == 4294967295u);
  CHECK(r.colour == Colour::kBlue);

  struct Case {
    const char* json;
    const char* message;
  };
  for (const Case& c : std::initializer_list<Case>{
           {R"({"s":1})", "doc: field 's' must be a string"},
           {R"({"strings":["a",1]})", "doc: field 'strings' must be an array of strings"},
           {R"({"numbers":"1"})", "doc: field 'numbers' must be an array of numbers"},
           {R"({"number":"1"})", "doc: field 'number' must be a number"},
           {R"({"flag":1})", "doc: field 'flag' must be true or false"},
           {R"({"i64":1.5})", "doc: field 'i64' must be an integer"},
           {R"({"i64":9223372036854775808})", "doc: field 'i64' is out of range"},
           {R"({"u":11})", "doc: field 'u' must be an integer in [0, 10]"},
           {R"({"u":-1})", "doc: field 'u' must be an integer in [0, 10]"},
           {R"({"u32":4294967296})", "doc: field 'u32' must be an integer in [0, 4294967295]"},
           {R"({"colour":"green"})", "doc: field 'colour' must be one of red, blue"},
           {R"({"object":[]})", "doc: field 'object' must be an object"},
           {R"({"array":[1,2,3]})", "doc: field 'array' must be an array of at most 2 elements"},
           {R"({"objects":[1]})", "doc: field 'objects' must be an array of at most 1 objects"},
           {R"({"objects":[{},{}]})", "doc: field 'objects' must be an array of at most 1 objects"},
           {R"({"s":1,"flag":1,"u":99})", "doc: field 's' must be a string"},  // the first problem wins
           {R"({"s":1,"colur":"red"})", "doc: field 's' must be a string"},    // over an unknown field too
       }) {
    INFO(c.json);
    for (UnknownFields unknown : {UnknownFields::kRefuse, UnknownFields::kIgnore}) {
      Read ignored;
      Status st = ReadAll(c.json, unknown, &ignored);
      CHECK(st.code() == Status::Code::kInvalidArgument);
      CHECK(st.message() == c.message);
    }
  }
}

TEST_CASE("JsonFields: unknown fields are refused or ignored as the caller says; required ones must be there") {
  Read r;
  Status refused = ReadAll(R"({"flag":true,"colur":"blue"})", UnknownFields::kRefuse, &r);
  CHECK(refused.code() == Status::Code::kInvalidArgument);
  CHECK(refused.message() == "doc: unknown field 'colur'");
  Read ignored;
  REQUIRE(ReadAll(R"({"flag":true,"colur":"blue","newer":{"x":[1]}})", UnknownFields::kIgnore, &ignored).ok());
  CHECK(ignored.flag);
  CHECK(ignored.colour == Colour::kRed);

  nlohmann::json j = nlohmann::json::parse(R"({"b":2})");
  JsonFields f(j, "doc", UnknownFields::kIgnore);
  std::string a = "kept";
  uint64_t b = 0;
  f.String("a", &a, /*required=*/true);
  f.Uint("b", &b, /*required=*/true);
  CHECK_FALSE(f.ok());
  CHECK(a == "kept");
  CHECK(b == 2);
  CHECK(f.Finish().message() == "doc: field 'a' is missing");
  CHECK(f.Find("b") != nullptr);
  CHECK(f.Find("c") == nullptr);
  f.Fail("c", "is later");
  CHECK(f.Finish().message() == "doc: field 'a' is missing");
}

TEST_CASE("an exception becomes a Status naming what threw it, never leaves CatchExceptions") {
  Status oom = CatchExceptions("making a delta", []() -> Status { throw std::bad_alloc(); });
  CHECK(oom.code() == Status::Code::kResourceExhausted);
  CHECK(oom.message() == "making a delta: out of memory");
  Result<int> thrown = CatchExceptions("parsing", []() -> Result<int> { throw std::runtime_error("bad token"); });
  CHECK(thrown.status().code() == Status::Code::kIOError);
  CHECK(thrown.status().message() == "parsing: bad token");
  CHECK(*CatchExceptions("nothing", []() -> Result<int> { return 7; }) == 7);
}

TEST_CASE("a periodic thread runs its task until stopped, a run that throws is not the last, and a run in progress "
          "finishes first") {
  std::mutex mu;
  std::condition_variable cv;
  int runs = 0;
  bool in_task = false;
  PeriodicThread periodic;
  periodic.Start("a test task", std::chrono::milliseconds(1), [&] {
    int run = 0;
    {
      std::lock_guard lock(mu);
      in_task = true;
      run = ++runs;
    }
    cv.notify_all();
    std::lock_guard lock(mu);
    in_task = false;
    if (run == 1) throw std::bad_alloc();  // logged; the thread goes on
  });
  {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return runs >= 3; }));
  }
  periodic.Stop();
  std::lock_guard lock(mu);
  CHECK_FALSE(in_task);
  const int stopped_at = runs;
  periodic.Stop();  // idempotent
  CHECK(runs == stopped_at);
  PeriodicThread never_started;
  never_started.Stop();
}
