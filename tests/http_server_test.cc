// The real HTTP server (Beast, on a loopback ephemeral port) with handlers of
// the tests' own.
//
// Differential framing test: request framings sent raw, each followed on the
// same connection by a second request. A framing RFC 9112 allows must deliver
// exactly the body it frames and then answer the second request; any other
// must be refused with the status the table names and the connection closed,
// so that nothing after it is ever taken for a request (no smuggling).
//
// A request that may block does not hold up the other connections served by
// its thread, nor other such requests.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <catch2/catch.hpp>
#include <stdexcept>

#include "daemon/http_server.h"
#include "tests/loopback.h"
#include "tests/server_on_loopback.h"

using namespace meridian;

namespace {

constexpr uint64_t kEchoBodyBytesMax = 1u << 20;

// POST /echo answers with the body it was given; GET /next with "next".
class EchoHandler final : public HttpHandler {
 public:
  HttpAdmission Admit(HttpRequest& head) override {
    if (head.method == "POST" && head.target == "/echo") return {std::nullopt, kEchoBodyBytesMax};
    if (head.method == "GET" && head.target == "/next") return {};
    return {JsonError(404, "not_found", "no such route")};
  }
  HttpResponse Handle(const HttpRequest& request) override {
    HttpResponse r;
    r.body = request.target == "/echo" ? "echo:" + request.body : "next";
    return r;
  }
  void Completed(const HttpRequest&, int, uint64_t) override {}
};

struct Reply {
  int status = 0;
  std::string body;
};

// Splits what the server sent into responses (Content-Length framed, as the
// server always frames them).
std::vector<Reply> ParseReplies(std::string raw) {
  std::vector<Reply> out;
  while (raw.starts_with("HTTP/1.1 ")) {
    size_t head_end = raw.find("\r\n\r\n");
    if (head_end == std::string::npos) break;
    Reply r;
    r.status = std::stoi(raw.substr(9, 3));
    std::string head = raw.substr(0, head_end);
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t length = 0;
    if (size_t cl = head.find("\r\ncontent-length: "); cl != std::string::npos) {
      length = std::stoul(head.substr(cl + 18));
    }
    r.body = raw.substr(head_end + 4, length);
    raw.erase(0, head_end + 4 + length);
    out.push_back(std::move(r));
  }
  return out;
}

// The request on a new connection, its sending side closed after it (no more is coming).
std::vector<Reply> Exchange(uint16_t port, const std::string& request) {
  return ParseReplies(meridian::testing::ExchangeLoopback(port, request, /*then_close_send=*/true));
}

struct Case {
  std::string name;
  std::string head;   // request line and header fields, without the blank line
  std::string body;   // bytes after the blank line
  int status;         // 200: framed; anything else: refused with it
  std::string framed = {};  // with 200, the body the server must have been given
};

const std::string kPost = "POST /echo HTTP/1.1\r\nHost: t\r\n";
const std::string kChunked = "Transfer-Encoding: chunked\r\n";
const std::string kHello = "5\r\nhello\r\n0\r\n\r\n";

std::vector<Case> Cases() {
  return {
      // Content-Length
      {"CL", kPost + "Content-Length: 5\r\n", "hello", 200, "hello"},
      {"CL 0", kPost + "Content-Length: 0\r\n", "", 200, ""},
      {"no CL, no TE", kPost, "", 200, ""},
      {"CL leading zeros", kPost + "Content-Length: 005\r\n", "hello", 200, "hello"},
      {"CL no space after colon", kPost + "Content-Length:5\r\n", "hello", 200, "hello"},
      {"CL tab before value", kPost + "Content-Length:\t5\r\n", "hello", 200, "hello"},
      {"CL trailing space", kPost + "Content-Length: 5 \r\n", "hello", 200, "hello"},
      {"CL lower-case name", kPost + "content-length: 5\r\n", "hello", 200, "hello"},
      {"CL upper-case name", kPost + "CONTENT-LENGTH: 5\r\n", "hello", 200, "hello"},
      {"CL list of equal values", kPost + "Content-Length: 5, 5\r\n", "hello", 400},
      {"CL list of different values", kPost + "Content-Length: 5, 6\r\n", "hello!", 400},
      {"CL twice, equal", kPost + "Content-Length: 5\r\nContent-Length: 5\r\n", "hello", 400},
      {"CL twice, different", kPost + "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!", 400},
      {"CL negative", kPost + "Content-Length: -1\r\n", "hello", 400},
      {"CL plus sign", kPost + "Content-Length: +5\r\n", "hello", 400},
      {"CL hex", kPost + "Content-Length: 0x5\r\n", "hello", 400},
      {"CL trailing letters", kPost + "Content-Length: 5a\r\n", "hello", 400},
      {"CL empty", kPost + "Content-Length: \r\n", "hello", 400},
      {"CL overflows 64 bits", kPost + "Content-Length: 99999999999999999999999\r\n", "hello", 400},
      {"CL over the route's limit", kPost + "Content-Length: 2000000\r\n", "hello", 413},
      {"CL space before colon", kPost + "Content-Length : 5\r\n", "hello", 400},
      {"CL obs-fold", kPost + "Content-Length: 5\r\n 5\r\n", "hello", 400},
      // Transfer-Encoding
      {"TE chunked", kPost + kChunked, kHello, 200, "hello"},
      {"TE Chunked", kPost + "Transfer-Encoding: Chunked\r\n", kHello, 200, "hello"},
      {"TE CHUNKED", kPost + "Transfer-Encoding: CHUNKED\r\n", kHello, 200, "hello"},
      {"TE padded", kPost + "Transfer-Encoding:  chunked \r\n", kHello, 200, "hello"},
      {"TE chunked, gzip", kPost + "Transfer-Encoding: chunked, gzip\r\n", kHello, 400},
      {"TE gzip", kPost + "Transfer-Encoding: gzip\r\n", kHello, 400},
      {"TE identity", kPost + "Transfer-Encoding: identity\r\n", kHello, 400},
      {"TE empty", kPost + "Transfer-Encoding: \r\n", kHello, 400},
      {"TE gzip, chunked", kPost + "Transfer-Encoding: gzip, chunked\r\n", kHello, 501},
      {"TE chunked, chunked", kPost + "Transfer-Encoding: chunked, chunked\r\n", kHello, 400},
      {"TE twice: chunked, chunked", kPost + kChunked + kChunked, kHello, 400},
      {"TE twice: gzip then chunked", kPost + "Transfer-Encoding: gzip\r\n" + kChunked, kHello, 501},
      {"TE twice: chunked then gzip", kPost + kChunked + "Transfer-Encoding: gzip\r\n", kHello, 400},
      {"TE then CL", kPost + kChunked + "Content-Length: 5\r\n", kHello, 400},
      {"CL then TE", kPost + "Content-Length: 5\r\n" + kChunked, kHello, 400},
      {"TE gzip then CL", kPost + "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", "hello", 400},
      {"CL then TE gzip", kPost + "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n", "hello", 400},
      {"TE chunked with CL 0", kPost + kChunked + "Content-Length: 0\r\n", kHello, 400},
      {"TE space before colon", kPost + "Transfer-Encoding : chunked\r\n", kHello, 400},
      // obs-fold is replaced by a space before the value is read (RFC 9112 §5.2 allows that or 400).
      {"TE obs-fold: gzip, chunked", kPost + "Transfer-Encoding: gzip,\r\n chunked\r\n", kHello, 501},
      {"TE obs-fold: chunked, gzip", kPost + "Transfer-Encoding: chunked,\r\n gzip\r\n", kHello, 400},
      {"TE in HTTP/1.0", "POST /echo HTTP/1.0\r\nHost: t\r\n" + kChunked, kHello, 400},
      // Chunked bodies
      {"chunk extension", kPost + kChunked, "5;ext=1\r\nhello\r\n0\r\n\r\n", 200, "hello"},
      {"chunk extension, quoted", kPost + kChunked, "5;ext=\"a b\"\r\nhello\r\n0\r\n\r\n", 200, "hello"},
      {"chunk size upper-case hex", kPost + kChunked, "A\r\n0123456789\r\n0\r\n\r\n", 200, "0123456789"},
      {"chunk size leading zeros", kPost + kChunked, "0005\r\nhello\r\n0\r\n\r\n", 200, "hello"},
      {"several chunks", kPost + kChunked, "2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", 200, "hello"},
      {"trailer field", kPost + kChunked, "5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", 200, "hello"},
      {"chunk size not hex", kPost + kChunked, "5g\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk size negative", kPost + kChunked, "-5\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk size 0x prefix", kPost + kChunked, "0x5\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk size overflows 64 bits", kPost + kChunked, "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk size empty", kPost + kChunked, "\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk data longer than its size", kPost + kChunked, "5\r\nhelloX\r\n0\r\n\r\n", 400},
      {"chunk data shorter than its size", kPost + kChunked, "5\r\nhel\r\n0\r\n\r\n", 400},
      // Beast bounds neither of these itself: the server's read buffer does.
      {"chunk extension of 1 MiB", kPost + kChunked, "5;x=" + std::string(1u << 20, 'a') + "\r\nhello\r\n0\r\n\r\n", 400},
      {"trailer of 1 MiB", kPost + kChunked, "5\r\nhello\r\n0\r\nX-T: " + std::string(1u << 20, 'a') + "\r\n\r\n", 400},
      {"chunked body over the route's limit", kPost + kChunked,
       "200000\r\n" + std::string(0x200000, 'a') + "\r\n0\r\n\r\n", 413},
      // The head itself
      {"HTTP/1.0 with CL", "POST /echo HTTP/1.0\r\nContent-Length: 5\r\n", "hello", 200, "hello"},
      {"no Host in HTTP/1.1", "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n", "hello", 400},
      {"Host twice", kPost + "Host: u\r\nContent-Length: 5\r\n", "hello", 400},
      {"space inside a field name", kPost + "Content Length: 5\r\n", "hello", 400},
      {"NUL in a field value", kPost + "X-A: a" + std::string(1, '\0') + "b\r\nContent-Length: 5\r\n", "hello", 400},
      {"two spaces in the request line", "POST  /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n", "hello", 400},
      {"unknown HTTP version", "POST /echo HTTP/2.0\r\nHost: t\r\nContent-Length: 5\r\n", "hello", 400},
  };
}

}  // namespace

TEST_CASE("request framing: each variant framed as RFC 9112 says, or refused and the connection closed") {
  EchoHandler handler;
  meridian::testing::ServerOnLoopback server(handler, 2);
  const std::string next = "GET /next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  std::vector<Case> cases = Cases();
  CHECK(cases.size() >= 50);
  for (const Case& c : cases) {
    INFO("case: " << c.name);
    std::vector<Reply> replies = Exchange(server.port(), c.head + "\r\n" + c.body + next);
    REQUIRE(!replies.empty());
    CHECK(replies[0].status == c.status);
    if (c.status == 200) {
      CHECK(replies[0].body == "echo:" + c.framed);
      // HTTP/1.0 without keep-alive closes after the first answer.
      if (!c.head.starts_with("POST /echo HTTP/1.0")) {
        REQUIRE(replies.size() == 2);
        CHECK(replies[1].status == 200);
        CHECK(replies[1].body == "next");
      }
    } else {
      CHECK(replies.size() == 1);  // nothing after a refused framing is read as a request
    }
  }
}

namespace {

// GET /slow may block: its handler waits until the test releases it.
// GET /write may block too, but answers at once; GET /fast answers at once.
class SlowFastHandler final : public HttpHandler {
 public:
  HttpAdmission Admit(HttpRequest& head) override {
    HttpAdmission a;
    a.may_block = head.target == "/slow" || head.target == "/write";
    return a;
  }
  HttpResponse Handle(const HttpRequest& request) override {
    HttpResponse r;
    r.body = request.target.substr(1);
    if (request.target != "/slow") return r;
    std::unique_lock lock(mu_);
    ++slow_started_;
    cv_.notify_all();
    // Bounded: a server that blocks on this handler fails the test, not hangs it.
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return released_; });
    return r;
  }
  void Completed(const HttpRequest&, int, uint64_t) override {}

  // Waits until `n` requests for /slow are in the handler at once.
  bool WaitForSlow(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return slow_started_ >= n; });
  }
  bool released() {
    std::lock_guard lock(mu_);
    return released_;
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int slow_started_ = 0;
  bool released_ = false;
};

std::string GetRequest(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
}

// The body of the one reply to `raw` when its status is 200, else "".
std::string OkBody(const std::string& raw) {
  std::vector<Reply> replies = ParseReplies(raw);
  return replies.size() == 1 && replies[0].status == 200 ? replies[0].body : "";
}

// Asks for `target` on a connection of its own; OkBody of the reply.
std::string GetOnce(uint16_t port, const std::string& target) {
  return OkBody(meridian::testing::ExchangeLoopback(port, GetRequest(target)));
}

// `n` requests for /slow, each on a connection (and a thread) of its own,
// held in the handler until Finish releases them; released and joined at
// destruction too, so that a failed check leaves no thread running.
class HeldSlowRequests {
 public:
  HeldSlowRequests(SlowFastHandler& handler, uint16_t port, int n) : handler_(handler), replies_(static_cast<size_t>(n)) {
    for (std::string& reply : replies_) {
      threads_.emplace_back([&reply, port] { reply = meridian::testing::ExchangeLoopback(port, GetRequest("/slow")); });
    }
  }
  ~HeldSlowRequests() { Finish(); }
  HeldSlowRequests(const HeldSlowRequests&) = delete;
  HeldSlowRequests& operator=(const HeldSlowRequests&) = delete;

  // Releases them and returns their raw replies.
  const std::vector<std::string>& Finish() {
    handler_.Release();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    return replies_;
  }

 private:
  SlowFastHandler& handler_;
  std::vector<std::string> replies_;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("a request that may block does not hold up the other connections of its thread") {
  SlowFastHandler handler;
  // One thread: every connection is served by it, the slow one's included.
  meridian::testing::ServerOnLoopback server(handler, 1);
  HeldSlowRequests slow(handler, server.port(), 1);
  CHECK(handler.WaitForSlow(1));
  // Answered while /slow is still in its handler (ExchangeLoopback gives up after 10 s of silence).
  CHECK(GetOnce(server.port(), "/fast") == "fast");
  CHECK(!handler.released());
  for (const std::string& reply : slow.Finish()) CHECK(OkBody(reply) == "slow");
}

TEST_CASE("requests that may block are not queued behind long ones: the pool has threads to spare") {
  SlowFastHandler handler;
  meridian::testing::ServerOnLoopback server(handler, 1);
  // Two long requests (a commit, a collection) hold two threads of the pool:
  // as many as the server has threads, and more.
  HeldSlowRequests slow(handler, server.port(), 2);
  CHECK(handler.WaitForSlow(2));
  // Another request that may block (a report) is answered meanwhile.
  CHECK(GetOnce(server.port(), "/write") == "write");
  CHECK(!handler.released());
  for (const std::string& reply : slow.Finish()) CHECK(OkBody(reply) == "slow");
}

namespace {

// GET /throw and /throw-blocking throw (the second on the blocking pool);
// anything else answers "fine", and Completed throws after /completed-throws.
class ThrowingHandler final : public HttpHandler {
 public:
  HttpAdmission Admit(HttpRequest& head) override {
    HttpAdmission a;
    a.may_block = head.target == "/throw-blocking";
    return a;
  }
  HttpResponse Handle(const HttpRequest& request) override {
    if (request.target.starts_with("/throw")) throw std::runtime_error("a handler's bug");
    HttpResponse r;
    r.body = "fine";
    return r;
  }
  void Completed(const HttpRequest& request, int, uint64_t) override {
    if (request.target == "/completed-throws") throw std::runtime_error("a bug after the answer");
  }
};

}  // namespace

TEST_CASE("a handler that throws gets its request a 500 with a JSON error; the connection and the server go on") {
  ThrowingHandler handler;
  meridian::testing::ServerOnLoopback server(handler, 1);
  for (const std::string target : {"/throw", "/throw-blocking"}) {
    INFO(target);
    // Two requests on one connection: the second is answered after the first's 500.
    std::vector<Reply> replies =
        Exchange(server.port(), "GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    REQUIRE(replies.size() == 2);
    CHECK(replies[0].status == 500);
    CHECK_THAT(replies[0].body, Catch::Contains("\"code\":\"internal\""));
    CHECK(replies[1].status == 200);
    CHECK(replies[1].body == "fine");
  }
  // An exception that ends a session (here after its answer) leaves the
  // server sound: other connections are served, and its stop (at the end of
  // this scope) does not reach for the session's freed stream, as it did
  // under ASan when the session stayed registered.
  std::vector<Reply> answered = Exchange(server.port(), "GET /completed-throws HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(answered.size() == 1);
  CHECK(answered[0].status == 200);
  CHECK(Exchange(server.port(), "GET /after HTTP/1.1\r\nHost: t\r\n\r\n").size() == 1);
}

namespace {

// POST /upload takes a body; Admit says when a head was read.
class AdmitSignalHandler final : public HttpHandler {
 public:
  HttpAdmission Admit(HttpRequest&) override {
    std::lock_guard lock(mu_);
    admitted_ = true;
    cv_.notify_all();
    return {std::nullopt, 1u << 20};
  }
  HttpResponse Handle(const HttpRequest&) override { return {}; }
  void Completed(const HttpRequest&, int, uint64_t) override {}
  bool WaitAdmitted() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return admitted_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool admitted_ = false;
};

}  // namespace

TEST_CASE("a session the stop cuts short (its body still coming at the drain deadline) is torn down cleanly") {
  AdmitSignalHandler handler;
  auto server = std::make_unique<HttpServer>(
      handler, HttpServerOptions{.host = "127.0.0.1", .port = 0, .threads = 1, .drain_timeout = std::chrono::milliseconds(50)});
  REQUIRE(server->Listen().ok());
  std::thread serving([&] { server->Run(); });
  int fd = meridian::testing::ConnectLoopback(server->port());
  const std::string partial = "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly some";
  REQUIRE(::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(partial.size()));
  REQUIRE(handler.WaitAdmitted());  // the session now waits for the rest of the body
  server->Stop();
  serving.join();  // after the drain deadline: the session is still suspended in its read
  // Its frame goes with its context, here: under ASan, a session that took
  // itself out of a list already destroyed would be a use-after-free.
  server.reset();
  ::close(fd);
}
