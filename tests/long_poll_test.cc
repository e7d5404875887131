// Unit tests of the long-poll notifier (daemon/http.h): no change between a
// handler's look at the state and the server's subscription is lost; and of
// the server holding long polls: a client that hangs up frees its hold at once.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <vector>
#include <thread>

#include <catch2/catch.hpp>

#include "daemon/http.h"
#include "daemon/http_server.h"
#include "tests/loopback.h"
#include "tests/server_on_loopback.h"

using namespace meridian;
using meridian::testing::ConnectLoopback;

TEST_CASE("a subscription fires once at the next change") {
  ChangeNotifier n;
  int fired = 0;
  n.Subscribe(n.generation(), [&] { ++fired; });
  CHECK(fired == 0);
  CHECK(n.waiting() == 1);
  n.NotifyAll();
  CHECK(fired == 1);
  CHECK(n.waiting() == 0);
  n.NotifyAll();
  CHECK(fired == 1);
}

TEST_CASE("a change between the look and the subscription fires at once") {
  ChangeNotifier n;
  uint64_t seen = n.generation();  // the handler looked at the state here…
  n.NotifyAll();                   // …the state changed before the server subscribed
  int fired = 0;
  n.Subscribe(seen, [&] { ++fired; });
  CHECK(fired == 1);
  CHECK(n.waiting() == 0);
}

TEST_CASE("an unsubscribed wait is not fired and not kept") {
  ChangeNotifier n;
  int fired = 0;
  uint64_t id = n.Subscribe(n.generation(), [&] { ++fired; });
  n.Unsubscribe(id);
  CHECK(n.waiting() == 0);
  n.NotifyAll();
  CHECK(fired == 0);
}

namespace {

// GET /poll is held until `changes` fires (30 s at most); GET /other answers at once.
// Counts the answers to polls made and not yet written, and their most at once.
class PollHandler final : public HttpHandler {
 public:
  ChangeNotifier changes;
  std::atomic<int> answering = 0, answering_most = 0;
  HttpAdmission Admit(HttpRequest&) override { return {}; }
  HttpResponse Handle(const HttpRequest& request) override {
    HttpResponse r;
    if (request.target == "/poll" && !request.wait_expired && changes.generation() == 0) {
      r.defer = HttpDeferral{&changes, 0, std::chrono::seconds(30)};
      return r;
    }
    if (request.target == "/poll") {
      const int now = ++answering;
      for (int most = answering_most; now > most && !answering_most.compare_exchange_weak(most, now);) {
      }
    }
    r.body = request.target == "/poll" ? "changed" : "other";
    return r;
  }
  void Completed(const HttpRequest& request, int, uint64_t) override {
    if (request.target == "/poll") --answering;
  }
};

bool Within(std::chrono::milliseconds limit, const std::function<bool()>& condition) {
  for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

}  // namespace

TEST_CASE("a held long poll whose client hangs up is dropped at once; a pipelined request is not a hang-up") {
  PollHandler handler;
  meridian::testing::ServerOnLoopback server(handler, 2);
  const std::string poll = "GET /poll HTTP/1.1\r\nHost: t\r\n\r\n";

  int gone = ConnectLoopback(server.port());
  REQUIRE(gone >= 0);
  ::send(gone, poll.data(), poll.size(), MSG_NOSIGNAL);
  REQUIRE(Within(std::chrono::seconds(30), [&] { return handler.changes.waiting() == 1; }));
  ::close(gone);
  CHECK(Within(std::chrono::seconds(1), [&] { return handler.changes.waiting() == 0; }));

  int stays = ConnectLoopback(server.port());
  REQUIRE(stays >= 0);
  const std::string two = poll + "GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  ::send(stays, two.data(), two.size(), MSG_NOSIGNAL);
  REQUIRE(Within(std::chrono::seconds(30), [&] { return handler.changes.waiting() == 1; }));
  handler.changes.NotifyAll();
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = ::recv(stays, buf, sizeof(buf), 0)) > 0;) reply.append(buf, static_cast<size_t>(n));
  ::close(stays);
  CHECK(reply.find("changed") != std::string::npos);  // held until the change, not taken for a hang-up
  CHECK(reply.find("other") != std::string::npos);
}

TEST_CASE("a change answers every held poll, a bounded number at a time per thread") {
  PollHandler handler;
  meridian::testing::ServerOnLoopback server(handler, 1);
  const std::string poll = "GET /poll HTTP/1.1\r\nHost: t\r\n\r\n";
  constexpr size_t kPolls = 300;  // well past the 64 a thread answers at once
  std::vector<int> clients;
  for (size_t i = 0; i < kPolls; ++i) {
    clients.push_back(ConnectLoopback(server.port()));
    REQUIRE(clients.back() >= 0);
    ::send(clients.back(), poll.data(), poll.size(), MSG_NOSIGNAL);
  }
  REQUIRE(Within(std::chrono::seconds(30), [&] { return handler.changes.waiting() == kPolls; }));
  handler.changes.NotifyAll();
  size_t answered = 0;
  for (int fd : clients) {
    std::string reply;
    char buf[4096];
    for (ssize_t n; reply.find("changed") == std::string::npos && (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) {
      reply.append(buf, static_cast<size_t>(n));
    }
    answered += reply.find("changed") != std::string::npos;
    ::close(fd);
  }
  CHECK(answered == kPolls);
  // Without the bound, every answer was made before the first was written (300 at once).
  CHECK(handler.answering_most <= 64);
  CHECK(handler.answering_most >= 1);
}
