// The real HTTP server (Beast) with a test's own handler, on a loopback
// ephemeral port, served on a thread of its own for the object's life.
#pragma once

#include <stdexcept>
#include <thread>

#include "daemon/http_server.h"

namespace meridian::testing {

class ServerOnLoopback {
 public:
  // Throws (a failed test, with no thread left running) when it cannot listen.
  ServerOnLoopback(HttpHandler& handler, int threads)
      : server_(handler, HttpServerOptions{.host = "127.0.0.1", .port = 0, .threads = threads}) {
    if (Status st = server_.Listen(); !st.ok()) throw std::runtime_error("listen: " + st.ToString());
    serving_ = std::thread([this] { server_.Run(); });
  }
  // Stopped and joined here, so that a failed REQUIRE does not leave the
  // server's thread running (std::terminate).
  ~ServerOnLoopback() {
    server_.Stop();
    serving_.join();
  }
  ServerOnLoopback(const ServerOnLoopback&) = delete;
  ServerOnLoopback& operator=(const ServerOnLoopback&) = delete;

  uint16_t port() const { return server_.port(); }

 private:
  HttpServer server_;
  std::thread serving_;
};

}  // namespace meridian::testing
