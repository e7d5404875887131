// An HTTP/1.1 server (Boost.Beast, C++20 coroutines on an io_context thread
// pool) that hands requests to an HttpHandler. Everything is bounded: request
// head size, body size (per request, from the handler), read and write
// deadlines, number of connections, TLS handshake time. HTTPS (OpenSSL) or
// plain HTTP, one request loop for both. Beast stays inside http_server.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "daemon/http.h"

namespace meridian {

// Whether a TLS server asks clients for a certificate (verified against
// TlsServerOptions::client_ca_file), and whether it refuses those without.
enum class ClientCertificates { kNone, kOptional, kRequired };

// HTTPS settings; plain HTTP when certificate_chain_file is empty. TLS 1.2 and
// 1.3 only, Mozilla's "intermediate" ciphers for 1.2 (forward secret AEAD),
// no renegotiation, no compression.
struct TlsServerOptions {
  std::string certificate_chain_file;  // PEM: the server's certificate, then its intermediates
  std::string private_key_file;        // PEM, unencrypted
  std::string client_ca_file;          // PEM: CAs that sign client certificates (mTLS); empty: none asked
  ClientCertificates client_certificates = ClientCertificates::kNone;  // needs client_ca_file unless kNone
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7400;                                   // 0 = pick a free port
  int threads = 0;                                        // 0 = one per core (at least 2)
  uint32_t head_bytes_max = 16 * 1024;                    // request line + headers
  std::chrono::milliseconds head_timeout{30'000};         // to receive a whole request head (also idle keep-alive)
  std::chrono::milliseconds body_timeout{300'000};        // to receive a body
  std::chrono::milliseconds write_timeout{60'000};        // for each write to the client
  std::chrono::milliseconds drain_timeout{10'000};        // for in-flight requests at shutdown
  uint32_t connections_max = 65'536;                      // further connections are closed at once (TLS handshakes count)
  TlsServerOptions tls = {};                              // head_timeout bounds a TLS handshake too
  // Called once when a stop begins (Stop(), SIGINT or SIGTERM), before draining.
  std::function<void()> on_stopping = {};
  // When set, each SIGHUP calls it on a server thread and serving goes on;
  // unset, SIGHUP keeps its default action (the process ends).
  std::function<void()> on_hangup = {};
};

class HttpServer {
 public:
  HttpServer(HttpHandler& handler, HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the TLS files when there are some (InvalidArgument naming the file
  // and what is wrong with it: unreadable, not PEM, a key that is not the
  // certificate's), then binds and listens. After OK, port() is the bound port.
  Status Listen();
  // Reads the TLS files again. When they load, new handshakes use them while
  // connections already up keep what they negotiated; when they do not, the
  // old ones stay in use and the error says why. Thread-safe.
  // FailedPrecondition for a plain HTTP server.
  Status ReloadTls();
  // Whether it serves HTTPS.
  bool tls() const;
  // What TLS serves now, for the log: "certificate FILE: subject …, serial …,
  // valid until …[; client certificates …]". Empty for plain HTTP.
  std::string TlsDescription() const;
  uint16_t port() const;
  // Serves until Stop() or SIGINT/SIGTERM (SIGHUP: see on_hangup); returns after in-flight requests
  // drained (or drain_timeout passed) and every thread joined.
  void Run();
  // Stops accepting, lets in-flight requests finish. Thread-safe.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meridian
