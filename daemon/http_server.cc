// The Beast session loop: (TLS handshake with a deadline,) read a head with a
// deadline, check limits, read the body, hand the request to the handler
// (holding deferred ones — long polls — on a timer), write the response
// (streamed when it is large), keep alive or close. One coroutine per
// connection on its thread's io_context, generic over the stream (TCP or TLS over TCP), so
// plain HTTP and HTTPS share every line of it.
#include "daemon/http_server.h"

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <deque>
#include <limits>
#include <memory>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <list>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include "base/file.h"

namespace meridian {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);
constexpr std::chrono::seconds kLingerTimeout{2};
constexpr uint64_t kLingerBytesMax = 16u << 20;
constexpr int kClientClosedRequest = 499;  // for metrics, as nginx counts it: nothing is sent
// Beast reads a body in pieces as large as its buffer's free space (512 bytes
// at least, 64 KiB at most): a body is read through a buffer this large, or
// a 64 KiB chunk upload would take some 130 reads instead of one or two.
constexpr size_t kBodyReadBytes = 64u << 10;
// The fewest threads of the pool that runs requests that may block. A commit
// of a large artifact or a collection holds one for minutes, so a pool only
// as large as the server (two threads here) would leave reports and rollout
// actions queued behind two of them. A thread waiting for the disk costs
// only its stack, and more writers waiting at once let RocksDB sync them in
// one group.
constexpr int kBlockingThreadsMin = 16;

// Held long polls answering at once on one thread.
constexpr size_t kAnswersInFlightMax = 64;

// A state change wakes every long poll held, thousands per thread. Each
// builds its answer (a few KiB) and starts writing it, but the write's
// completion queues behind every other wake-up, so every answer of the
// thread was in memory at once: 19,600 polls took 74 MiB more to answer than
// to hold. With the gate, past kAnswersInFlightMax a woken poll waits, first
// come first served, for an answer before it to be written. One per context,
// which runs on one thread: no lock.
class AnswerGate : public net::execution_context::service {
 public:
  using key_type = AnswerGate;
  static inline net::execution_context::id id;
  explicit AnswerGate(net::execution_context& context) : service(context) {}

  // Returns once the caller may answer; it then calls Leave once.
  net::awaitable<void> Enter() {
    if (answering_ < kAnswersInFlightMax) {
      ++answering_;
      co_return;
    }
    auto executor = co_await net::this_coro::executor;
    auto turn = std::make_shared<net::steady_timer>(executor, net::steady_timer::time_point::max());
    waiting_.push_back(turn);
    co_await turn->async_wait(kTuple);  // cancelled by Leave, which hands its place over
  }

  void Leave() {
    while (!waiting_.empty() && !shut_down_) {
      std::shared_ptr<net::steady_timer> next = waiting_.front().lock();
      waiting_.pop_front();
      if (next != nullptr) {
        next->cancel();
        return;
      }
    }
    --answering_;
  }

 private:
  // The context is going: its coroutines are destroyed, not resumed.
  void shutdown() override {
    shut_down_ = true;
    waiting_.clear();
  }

  size_t answering_ = 0;
  std::deque<std::weak_ptr<net::steady_timer>> waiting_;  // a waiter gone (its session destroyed) is skipped
  bool shut_down_ = false;
};

// A place taken in a context's AnswerGate, given back on Release or at the
// end of its scope (after the answer is written).
class AnswerTurn {
 public:
  AnswerTurn() = default;
  AnswerTurn(const AnswerTurn&) = delete;
  AnswerTurn& operator=(const AnswerTurn&) = delete;
  ~AnswerTurn() { Release(); }

  net::awaitable<void> Take() {
    if (gate_ != nullptr) co_return;
    auto executor = co_await net::this_coro::executor;
    AnswerGate& gate = net::use_service<AnswerGate>(net::query(executor, net::execution::context));
    co_await gate.Enter();
    gate_ = &gate;
  }
  void Release() {
    if (gate_ != nullptr) std::exchange(gate_, nullptr)->Leave();
  }

 private:
  AnswerGate* gate_ = nullptr;
};

// The whole answer to a connection over the limit, made once.
static const std::string& TooManyConnectionsReply() {
  static const std::string reply = [] {
    const std::string body =
        R"({"error":{"code":"too_many_connections","message":"all connections are in use; retry later"}})";
    return fmt::format("HTTP/1.1 503 Service Unavailable\r\nServer: meridiand\r\nContent-Type: application/json\r\n"
                       "Retry-After: 5\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
                       body.size(), body);
  }();
  return reply;
}

namespace {

// Mozilla's "intermediate" TLS 1.2 ciphers (guidelines v5.7): ECDHE or DHE key
// exchange (forward secrecy, no RSA key exchange) with AES-GCM or
// ChaCha20-Poly1305 (no CBC, no SHA-1). TLS 1.3 keeps OpenSSL's suites, all AEAD.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
constexpr uint64_t kPemFileBytesMax = 1u << 20;
constexpr int kClientChainDepthMax = 4;  // client certificate, intermediates, CA

// What `print` writes to a memory BIO.
template <class Print>
std::string BioText(Print print) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "";
  print(bio);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<size_t>(std::max(n, 0L)));
  BIO_free(bio);
  return text;
}

// "subject CN = …, serial …, valid until …": what an operator checks after a renewal.
std::string DescribeCertificate(X509* cert) {
  std::string subject = BioText([&](BIO* b) {
    X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  });
  std::string until = BioText([&](BIO* b) { ASN1_TIME_print(b, X509_get0_notAfter(cert)); });
  std::string serial;
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    char* hex = BN_bn2hex(bn);
    if (hex != nullptr) serial = hex;
    OPENSSL_free(hex);
    BN_free(bn);
  }
  bool expired = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0;
  return fmt::format("subject {}, serial {}, valid until {}{}", subject, serial, until, expired ? " (EXPIRED)" : "");
}

// A server context from the files `o` names, or why not (naming the file).
// `*loaded` says what it serves.
Result<std::shared_ptr<ssl::context>> MakeTlsContext(const TlsServerOptions& o, std::string* loaded) {
  if (o.private_key_file.empty()) return Status::InvalidArgument("a TLS certificate needs its private key file");
  if (o.client_certificates != ClientCertificates::kNone && o.client_ca_file.empty()) {
    return Status::InvalidArgument("client certificates need the CA file that signs them");
  }
  Result<std::string> chain = ReadFileToString(o.certificate_chain_file, kPemFileBytesMax);
  if (!chain.ok()) return Status::InvalidArgument("TLS certificate: " + chain.status().message());
  Result<std::string> key = ReadFileToString(o.private_key_file, kPemFileBytesMax);
  if (!key.ok()) return Status::InvalidArgument("TLS private key: " + key.status().message());
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* h = ctx->native_handle();
  SSL_CTX_set_min_proto_version(h, TLS1_2_VERSION);
  SSL_CTX_set_options(h, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_cipher_list(h, kTls12Ciphers);
  SSL_CTX_set_dh_auto(h, 1);  // DHE parameters sized to the key, for the DHE ciphers above
  // An encrypted key fails to load instead of prompting on a terminal.
  ctx->set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });
  // The key first: a certificate loaded after a key that is not its own
  // drops the key, which the check below then reports by file name.
  beast::error_code ec;
  ctx->use_private_key(net::buffer(*key), ssl::context::pem, ec);
  OPENSSL_cleanse(key->data(), key->size());
  if (ec) {
    return Status::InvalidArgument(
        fmt::format("{}: not an unencrypted PEM private key ({})", o.private_key_file, ec.message()));
  }
  if (chain->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Status::InvalidArgument(o.certificate_chain_file + ": holds no PEM certificate");
  }
  ctx->use_certificate_chain(net::buffer(*chain), ec);
  if (ec) return Status::InvalidArgument(fmt::format("{}: not a PEM certificate chain ({})", o.certificate_chain_file, ec.message()));
  if (SSL_CTX_check_private_key(h) != 1) {
    return Status::InvalidArgument(fmt::format("the private key in {} is not the key of the certificate in {}",
                                               o.private_key_file, o.certificate_chain_file));
  }
  *loaded = fmt::format("certificate {}: {}", o.certificate_chain_file, DescribeCertificate(SSL_CTX_get0_certificate(h)));
  if (o.client_certificates == ClientCertificates::kNone) return ctx;
  Result<std::string> cas = ReadFileToString(o.client_ca_file, kPemFileBytesMax);
  if (!cas.ok()) return Status::InvalidArgument("TLS client CA: " + cas.status().message());
  ctx->add_certificate_authority(net::buffer(*cas), ec);
  if (ec) return Status::InvalidArgument(fmt::format("{}: not PEM CA certificates ({})", o.client_ca_file, ec.message()));
  // The CA names go in the certificate request, so clients holding several
  // certificates pick one these CAs signed.
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_ca_file.c_str())) SSL_CTX_set_client_CA_list(h, names);
  const bool required = o.client_certificates == ClientCertificates::kRequired;
  ctx->set_verify_mode(ssl::verify_peer | (required ? ssl::verify_fail_if_no_peer_cert : 0));
  ctx->set_verify_depth(kClientChainDepthMax);
  // Resumed sessions keep the client's verified certificate; OpenSSL refuses
  // to resume verified sessions without an id context.
  static constexpr unsigned char kSessionContext[] = "meridiand";
  SSL_CTX_set_session_id_context(h, kSessionContext, sizeof(kSessionContext) - 1);
  *loaded += fmt::format("; client certificates {} (CA file {})", required ? "required" : "optional", o.client_ca_file);
  return ctx;
}

// The subject CN of the certificate the client presented when it verified
// against the client CAs; "" otherwise, and when the subject has no CN or
// several (ambiguous: who would it be?).
std::string VerifiedClientCn(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  X509_NAME* name = X509_get_subject_name(cert);
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0) return "";
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (n < 0) return "";
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return cn;
}

// The TCP layer under a stream: timeouts and the socket live there.
template <class Stream>
beast::tcp_stream& Tcp(Stream& stream) {
  return beast::get_lowest_layer(stream);
}

HttpRequest ToRequest(const http::request_parser<http::string_body>& parser) {
  const auto& msg = parser.get();
  HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  for (const auto& field : msg) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // Repeated headers are joined as RFC 9110 allows for list-valued fields.
    auto [it, inserted] = req.headers.emplace(name, std::string(field.value()));
    if (!inserted) it->second += ", " + std::string(field.value());
  }
  return req;
}

template <class Body>
void ApplyHeaders(http::response<Body>& res, const HttpResponse& r, bool keep_alive) {
  res.result(static_cast<unsigned>(r.status));
  res.set(http::field::server, "meridiand");
  for (const auto& [name, value] : r.headers) res.set(name, value);
  res.keep_alive(keep_alive);
}

// A read deadline that cancels the pending read instead of closing the socket
// (what beast::tcp_stream's own timeout does), so that a 408 can still be
// written after it. Its timer runs on the session's thread; the handler holds
// the state, not the session, and acts only for the read it was armed for.
class ReadDeadline {
 public:
  explicit ReadDeadline(beast::tcp_stream& stream) : state_(std::make_shared<State>(stream)) {}
  ~ReadDeadline() {
    state_->stream = nullptr;  // the session is gone: a late expiry touches nothing
    state_->timer.cancel();
  }
  ReadDeadline(const ReadDeadline&) = delete;
  ReadDeadline& operator=(const ReadDeadline&) = delete;

  void Arm(std::chrono::milliseconds timeout) {
    State& s = *state_;
    s.expired = false;
    uint64_t armed = ++s.generation;
    s.timer.expires_after(timeout);
    s.timer.async_wait([state = state_, armed](const beast::error_code& ec) {
      if (ec || state->generation != armed || state->stream == nullptr) return;
      state->expired = true;
      beast::error_code ignored;
      state->stream->socket().cancel(ignored);
    });
  }
  // Returns whether the deadline passed before the read ended.
  bool Disarm() {
    ++state_->generation;
    state_->timer.cancel();
    return state_->expired;
  }

 private:
  struct State {
    explicit State(beast::tcp_stream& s) : stream(&s), timer(s.get_executor()) {}
    beast::tcp_stream* stream;
    net::steady_timer timer;
    uint64_t generation = 0;
    bool expired = false;
  };
  std::shared_ptr<State> state_;
};

// The server's threads: each runs an io_context of its own, serving the
// connections accepted onto it, as an nginx worker does; no other thread
// runs that context, so a connection's handlers need no strand. One context shared
// by all threads made every request pass through its scheduler's lock and
// hand work across threads: /healthz under wrk ran no faster on two threads
// than on one. The price is that a request blocking its thread holds up the
// thread's other connections, so requests that may block (writes but the
// brief ones, and work of seconds) run on a pool of their own
// (HttpAdmission::may_block).
int ServerThreads(const HttpServerOptions& o) {
  return o.threads > 0 ? o.threads : std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

struct HttpServer::Impl {
  HttpHandler& handler;
  HttpServerOptions options;
  const int threads = ServerThreads(options);
  // Idle sessions (waiting for a request head) can be closed at shutdown, and
  // held long polls woken to answer at once. Shared with the shutdown's posted
  // work, which may run after the session ended: touched only on the
  // session's thread, and `alive` says whether the pointers still hold.
  struct SessionRef {
    beast::tcp_stream* stream = nullptr;
    bool alive = true;
    bool idle = true;
    net::steady_timer* waiting = nullptr;  // the deferral timer while a request is held
  };
  std::mutex sessions_mu;
  std::list<std::shared_ptr<SessionRef>> sessions;

  // A session in `sessions` for as long as its stream lives, however it ends:
  // an exception out of a session once left its entry behind, and the
  // shutdown then reached for the freed stream. A session the stop cut short
  // (still suspended at the drain deadline) ends when its context is
  // destroyed: `sessions` is declared before the contexts so as to outlive them.
  class Registered {
   public:
    Registered(Impl& impl, std::shared_ptr<SessionRef> ref) : impl_(impl), ref_(std::move(ref)) {
      std::lock_guard lock(impl_.sessions_mu);
      self_ = impl_.sessions.insert(impl_.sessions.end(), ref_);
    }
    ~Registered() {
      {
        std::lock_guard lock(impl_.sessions_mu);
        impl_.sessions.erase(self_);
      }
      ref_->alive = false;
    }
    Registered(const Registered&) = delete;
    Registered& operator=(const Registered&) = delete;

   private:
    Impl& impl_;
    std::shared_ptr<SessionRef> ref_;
    std::list<std::shared_ptr<SessionRef>>::iterator self_;
  };

  // The other threads' contexts, kept running while idle until the server
  // stops. They outlive ioc: its pending accept holds a socket of one of them.
  std::vector<std::unique_ptr<net::io_context>> others;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> others_kept;
  // The first thread's context, which also accepts, waits for signals and stops the server.
  net::io_context ioc{1};
  size_t next_context = 0;  // where the next connection goes: 0 is ioc, k is others[k - 1]
  net::thread_pool blocking_pool{static_cast<size_t>(std::max(threads, kBlockingThreadsMin))};
  tcp::acceptor acceptor{ioc};
  net::signal_set signals{ioc, SIGINT, SIGTERM};
  std::atomic<bool> stopping{false};
  std::atomic<uint32_t> connections{0};
  mutable std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls_context;  // guarded by tls_mu; null: plain HTTP
  std::string tls_description;                // guarded by tls_mu; what tls_context serves

  Impl(HttpHandler& h, HttpServerOptions o) : handler(h), options(std::move(o)) {
    for (int i = 1; i < threads; ++i) {
      others.push_back(std::make_unique<net::io_context>(1));
      others_kept.push_back(net::make_work_guard(*others.back()));
    }
  }

  // The contexts take new connections in turn.
  net::io_context& NextContext() {
    net::io_context& c = next_context == 0 ? ioc : *others[next_context - 1];
    next_context = (next_context + 1) % (others.size() + 1);
    return c;
  }

  // The handler's answer. An exception out of it is a bug (handlers answer
  // errors, they do not throw them), but one request's bug must not cost more
  // than that request: it is answered 500 and logged, where it would have
  // ended the connection without a word.
  HttpResponse Handle(const HttpRequest& req) {
    try {
      return handler.Handle(req);
    } catch (const std::exception& e) {
      const std::string_view path = std::string_view(req.target).substr(0, req.target.find('?'));
      std::fprintf(stderr, "meridiand: %s %.*s failed: %s\n", req.method.c_str(), static_cast<int>(path.size()),
                   path.data(), e.what());
      return JsonError(500, "internal", "the server failed on this request; its log says why");
    }
  }

  // Handles a request that may block (a write waiting for the disk, a commit
  // reading its whole artifact) on the pool for such work, then resumes on
  // the connection's own thread, which serves its other connections meanwhile.
  net::awaitable<HttpResponse> HandleOnBlockingPool(const HttpRequest& req) {
    co_return co_await net::co_spawn(
        blocking_pool, [this, &req]() -> net::awaitable<HttpResponse> { co_return Handle(req); }, net::use_awaitable);
  }

  net::awaitable<void> Accept() {
    for (;;) {
      // No strand: one thread runs the context, so a connection's handlers
      // never run at once (a strand cost /healthz 5-23 % of its requests/s).
      auto executor = NextContext().get_executor();  // named: no temporaries in co_await (see SendError)
      auto [ec, socket] = co_await acceptor.async_accept(executor, kTuple);
      if (ec) {
        if (stopping || ec == net::error::operation_aborted) co_return;
        // EMFILE and friends: back off briefly instead of spinning.
        net::steady_timer t(ioc, std::chrono::milliseconds(50));
        co_await t.async_wait(kTuple);
        continue;
      }
      if (connections >= options.connections_max) {
        // Over the descriptor budget: a short 503 instead of a bare close,
        // written without waiting (best effort) so that no work piles up.
        beast::error_code ignored;
        socket.non_blocking(true, ignored);
        socket.write_some(net::buffer(TooManyConnectionsReply()), ignored);
        socket.shutdown(tcp::socket::shutdown_send, ignored);
        socket.close(ignored);
        continue;
      }
      ++connections;
      // A response goes out in several writes over TLS (a record per buffer:
      // head, then body); Nagle would hold each one after the first until
      // the client's delayed ACK, some 40 ms per request.
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      net::co_spawn(executor, Session(std::move(socket)), [this](std::exception_ptr) { --connections; });
    }
  }

  // Writes a response whose body is in memory. The body is moved out of `r`,
  // not copied: when a state change answers every held long poll at once,
  // each answer stays allocated until its write completes, so a copy would
  // double what that burst holds (20,000 answers of ~1.1 KB).
  template <class Stream>
  net::awaitable<bool> WriteSimple(Stream& stream, HttpResponse& r, bool keep_alive, bool head_request) {
    http::response<http::string_body> res;
    ApplyHeaders(res, r, keep_alive);
    if (head_request || r.head_only) {
      res.content_length(r.BodyBytes());
      http::response_serializer<http::string_body> sr(res);
      Tcp(stream).expires_after(options.write_timeout);
      auto [ec, n] = co_await http::async_write_header(stream, sr, kTuple);
      co_return !ec;
    }
    res.body() = std::move(r.body);
    res.prepare_payload();
    Tcp(stream).expires_after(options.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, res, kTuple);
    co_return !ec;
  }

  // Writes a response whose body comes piece by piece from r.stream. The
  // head goes out with the first piece, in one write: a small body (a chunk)
  // costs one system call, as a body in memory does.
  template <class Stream>
  net::awaitable<uint64_t> WriteStreamed(Stream& stream, const HttpResponse& r, bool keep_alive,
                                         bool* ok) {
    *ok = false;
    http::response<http::buffer_body> res;
    ApplyHeaders(res, r, keep_alive);
    res.content_length(r.stream_bytes);
    res.body().data = nullptr;
    res.body().more = true;
    http::response_serializer<http::buffer_body> sr(res);
    uint64_t sent = 0;
    while (sent < r.stream_bytes) {
      Result<BodyPiece> piece = r.stream();
      if (!piece.ok() || piece->bytes.empty() || piece->bytes.size() > r.stream_bytes - sent) co_return sent;
      res.body().data = const_cast<uint8_t*>(piece->bytes.data());  // buffer_body's pointer is not const; only read
      res.body().size = piece->bytes.size();
      res.body().more = true;
      Tcp(stream).expires_after(options.write_timeout);
      auto [ec, n] = co_await http::async_write(stream, sr, kTuple);
      if (ec && ec != http::error::need_buffer) co_return sent;
      sent += piece->bytes.size();
    }
    res.body().data = nullptr;
    res.body().more = false;
    Tcp(stream).expires_after(options.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, sr, kTuple);
    *ok = !ec;
    co_return sent;
  }

  // The answer to a request head that could not be read, or nullopt when
  // the connection just ended (closed, idle timeout, shutdown).
  std::optional<HttpResponse> HeadError(const beast::error_code& ec, bool got_some,
                                        std::string_view request_target) const {
    if (ec == http::error::header_limit) {
      // A request line that does not even end within the limit is a URI
      // problem; otherwise the header fields are too large.
      bool line_done = !request_target.empty();
      return JsonError(line_done ? 431 : 414, line_done ? "headers_too_large" : "uri_too_long",
                       fmt::format("request head exceeds {} bytes", options.head_bytes_max));
    }
    if (ec == beast::error::timeout) {
      if (!got_some) return std::nullopt;  // an idle keep-alive connection
      return JsonError(408, "request_timeout", "request head not received in time");
    }
    if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof) {
      return std::nullopt;
    }
    return JsonError(400, "bad_request", "malformed HTTP request: " + ec.message());
  }

  static std::optional<HttpResponse> BodyError(const beast::error_code& ec, uint64_t limit) {
    if (ec == http::error::body_limit) {
      return JsonError(413, "body_too_large", fmt::format("request body exceeds the {} byte limit", limit));
    }
    if (ec == beast::error::timeout) return JsonError(408, "request_timeout", "request body not received in time");
    if (ec == http::error::buffer_overflow) {
      return JsonError(400, "bad_request", "a chunk's size line or the trailer is too long");
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
        ec == net::error::operation_aborted) {
      return std::nullopt;
    }
    return JsonError(400, "bad_request", "malformed request body: " + ec.message());
  }

  // Sends an error answer, then the caller closes the connection.
  // (No temporaries in co_await expressions here: GCC 12 destroys them twice.)
  template <class Stream>
  net::awaitable<void> SendError(Stream& stream, const HttpRequest& req, HttpResponse& r) {
    const uint64_t body_bytes = r.body.size();
    bool ok = co_await WriteSimple(stream, r, /*keep_alive=*/false, /*head_request=*/false);
    handler.Completed(req, r.status, ok ? body_bytes : 0);
    if (ok) co_await LingeringClose(stream);
  }

  // After an early error answer the client may still be sending; closing at
  // once would reset the connection and lose the answer. Stop sending, then
  // read and discard for a bounded time and amount before closing.
  template <class Stream>
  net::awaitable<void> LingeringClose(Stream& stream) {
    beast::error_code ignored;
    Tcp(stream).socket().shutdown(tcp::socket::shutdown_send, ignored);
    std::array<char, 64 * 1024> sink;
    uint64_t discarded = 0;
    Tcp(stream).expires_after(kLingerTimeout);
    while (discarded < kLingerBytesMax) {
      auto [ec, n] = co_await stream.async_read_some(net::buffer(sink), kTuple);
      if (ec) break;
      discarded += n;
    }
  }

  struct HoldWatch {
    bool holding = true;
    bool client_left = false;
  };

  // Waits for a held connection to become readable: with nothing to read,
  // that is the peer's close, which cancels `timer`; bytes would be a
  // pipelined request, left for the session loop. The readiness can also be
  // stale — epoll is edge-triggered, and the request's own bytes may have
  // been read before their event was collected — so a non-blocking peek
  // tells a close (end of stream, or an error) from nothing yet, which waits
  // again: otherwise some held polls were dropped unanswered as if their
  // clients had left.
  static void WatchForClose(beast::tcp_stream& tcp_layer, std::shared_ptr<HoldWatch> watch,
                            std::weak_ptr<net::steady_timer> timer) {
    tcp_layer.socket().async_wait(tcp::socket::wait_read, [watch, timer, &tcp_layer](const beast::error_code& ec) {
      if (!watch->holding || ec) return;  // the hold ended first: the stream may be gone
      char byte;
      ssize_t n = ::recv(tcp_layer.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return WatchForClose(tcp_layer, watch, timer);
      }
      watch->client_left = true;
      if (auto t = timer.lock()) t->cancel();
    });
  }

  // Holds a deferred request (a long poll) until its notifier fires or its
  // wait runs out, asking the handler again after each wake-up; the first
  // deferral's wait bounds the whole hold. The timer lives on the session's
  // thread: a notification posts its cancel there, so no thread blocks and a
  // notification that comes before the wait starts is not lost (the cancel
  // runs only once this coroutine is suspended in the wait).
  //
  // A client that hangs up while held frees its place at once rather than at
  // the end of the wait: the socket is watched (WatchForClose). Returns false
  // when the client left.
  template <class Stream>
  net::awaitable<bool> HoldDeferred(Stream& stream, HttpRequest& req, HttpResponse& res, SessionRef& ref,
                                    AnswerTurn& turn) {
    beast::tcp_stream& tcp_layer = Tcp(stream);
    auto executor = co_await net::this_coro::executor;
    auto timer = std::make_shared<net::steady_timer>(executor);
    auto deadline = std::chrono::steady_clock::now() + res.defer->wait;
    auto watch = std::make_shared<HoldWatch>();
    std::weak_ptr<net::steady_timer> weak = timer;
    WatchForClose(tcp_layer, watch, weak);
    while (res.defer && !watch->client_left) {
      HttpDeferral d = *res.defer;
      timer->expires_at(std::min(deadline, std::chrono::steady_clock::now() + d.wait));
      uint64_t id = d.notifier->Subscribe(d.seen_generation, [weak, executor] {
        net::post(executor, [weak] {
          if (auto t = weak.lock()) t->cancel();
        });
      });
      ref.waiting = timer.get();
      if (!stopping) co_await timer->async_wait(kTuple);
      ref.waiting = nullptr;
      d.notifier->Unsubscribe(id);
      if (watch->client_left) break;
      req.wait_expired = stopping || std::chrono::steady_clock::now() >= deadline;
      co_await turn.Take();
      res = Handle(req);
      if (res.defer) turn.Release();
    }
    watch->holding = false;
    beast::error_code ignored;
    tcp_layer.socket().cancel(ignored);  // the readability wait, if still pending
    co_return !watch->client_left;
  }

  // Makes a context from the TLS files; new handshakes use it from now on.
  Status LoadTls() {
    std::string loaded;
    Result<std::shared_ptr<ssl::context>> ctx = MakeTlsContext(options.tls, &loaded);
    ERR_clear_error();  // a failure leaves its reasons in this thread's queue, for the next handshake to misreport
    if (!ctx.ok()) return ctx.status();
    std::lock_guard lock(tls_mu);
    tls_context = std::move(*ctx);
    tls_description = std::move(loaded);
    return Status::Ok();
  }

  // The context new TLS handshakes use; null for plain HTTP.
  std::shared_ptr<ssl::context> TlsContext() {
    std::lock_guard lock(tls_mu);
    return tls_context;
  }

  net::awaitable<void> Session(tcp::socket socket) {
    // The context stays alive with the connection that negotiated with it,
    // after a reload too.
    std::shared_ptr<ssl::context> tls = TlsContext();
    if (tls == nullptr) {
      beast::tcp_stream stream(std::move(socket));
      co_await Serve(stream);
    } else {
      TlsStream stream(std::move(socket), *tls);
      co_await Serve(stream);
    }
  }

  // A plain connection has nothing to negotiate.
  static net::awaitable<bool> Handshake(beast::tcp_stream&, std::string*) { co_return true; }

  // The TLS handshake, within head_timeout; then the CN of the client's
  // certificate when it sent one that verified.
  net::awaitable<bool> Handshake(TlsStream& stream, std::string* client_cn) {
    Tcp(stream).expires_after(options.head_timeout);
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, kTuple);
    Tcp(stream).expires_never();
    if (ec) co_return false;
    *client_cn = VerifiedClientCn(stream.native_handle());
    co_return true;
  }

  template <class Stream>
  net::awaitable<void> Serve(Stream& stream) {
    auto ref = std::make_shared<SessionRef>();
    ref->stream = &Tcp(stream);
    bool& idle = ref->idle;
    Registered registered(*this, ref);
    std::string client_cn;
    const bool handshaken = co_await Handshake(stream, &client_cn);
    // Capped: Beast limits a head's size, and a body's, but not a chunk's
    // size line with its extensions nor the trailer, which would otherwise
    // grow this buffer without bound (on /healthz too). A head and one read
    // of body fit; more is a 400 (buffer_overflow).
    beast::flat_buffer buffer(options.head_bytes_max + kBodyReadBytes);
    ReadDeadline deadline(Tcp(stream));
    for (;;) {
      if (stopping || !handshaken) break;
      http::request_parser<http::string_body> parser;
      parser.header_limit(options.head_bytes_max);
      // The body limit depends on the route, known only after the head: checked below.
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      HttpRequest req;
      std::optional<HttpResponse> error;    // an answer to send before closing
      std::optional<HttpResponse> refusal;  // an answer to a request without a body, keeping the connection
      bool may_block = false;
      idle = true;
      Tcp(stream).expires_never();
      deadline.Arm(options.head_timeout);
      auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kTuple);
      if (deadline.Disarm() && ec) ec = beast::error::timeout;
      idle = false;
      if (ec) {
        error = HeadError(ec, parser.got_some() || buffer.size() > 0, parser.get().target());
      } else {
        req = ToRequest(parser);
        req.client_certificate_cn = client_cn;
        // Framing, who asks and how large a body may follow are all decided
        // on the head: a refused request never has its body read.
        HttpAdmission admission;
        error = RefuseHead(req, parser.get().version(), parser.chunked());
        if (!error) admission = handler.Admit(req);
        may_block = admission.may_block;
        if (error) {
          // framing refused: the body's extent is unknown, so it is never read
        } else if (admission.refusal && parser.is_done()) {
          refusal = std::move(admission.refusal);  // no body follows: the connection is kept
        } else if (admission.refusal) {
          error = std::move(admission.refusal);
        } else if (parser.content_length() && *parser.content_length() > admission.body_bytes_max) {
          error = BodyError(http::error::body_limit, admission.body_bytes_max);
        } else if (!parser.is_done()) {
          parser.body_limit(admission.body_bytes_max);
          buffer.reserve(std::min<uint64_t>(parser.content_length().value_or(kBodyReadBytes), kBodyReadBytes));
          deadline.Arm(options.body_timeout);
          auto [bec, bn] = co_await http::async_read(stream, buffer, parser, kTuple);
          if (deadline.Disarm() && bec) bec = beast::error::timeout;
          if (bec) error = BodyError(bec, admission.body_bytes_max);
          ec = bec;
        }
      }
      if (error) co_await SendError(stream, req, *error);
      if (ec || error) break;
      bool keep_alive = parser.get().keep_alive() && !stopping;
      // The parser's copy of the head goes now (req has its own): a held
      // long poll would keep both for the whole wait.
      req.body = std::move(parser.release().body());
      // Nor is the read buffer kept between requests (64 KiB after a body,
      // ~1 KiB after a head: for the whole wait of a held long poll), unless
      // it holds a pipelined request's bytes.
      if (buffer.size() == 0) buffer.shrink_to_fit();
      bool head_request = req.method == "HEAD";

      HttpResponse res;  // (co_await in a conditional expression miscompiles in GCC 12)
      if (refusal) {
        res = std::move(*refusal);
      } else if (may_block) {
        res = co_await HandleOnBlockingPool(req);
      } else {
        res = Handle(req);
      }
      AnswerTurn turn;  // taken by a held request once woken, until its answer is written
      if (res.defer) {
        bool client_stayed = co_await HoldDeferred(stream, req, res, *ref, turn);
        if (!client_stayed) {
          handler.Completed(req, kClientClosedRequest, 0);
          break;
        }
        keep_alive = keep_alive && !stopping;
      }
      uint64_t sent = 0;
      bool ok;
      if (res.stream && !head_request && !res.head_only) {
        sent = co_await WriteStreamed(stream, res, keep_alive, &ok);
      } else {
        const uint64_t body_bytes = res.body.size();
        ok = co_await WriteSimple(stream, res, keep_alive, head_request);
        if (ok && !head_request && !res.head_only) sent = body_bytes;
      }
      handler.Completed(req, res.status, sent);
      if (!ok || !keep_alive) break;
    }
    beast::error_code ignored;
    Tcp(stream).socket().shutdown(tcp::socket::shutdown_send, ignored);
    Tcp(stream).close();
  }

  void BeginStop() {
    if (stopping.exchange(true)) return;
    if (options.on_stopping) options.on_stopping();
    net::post(ioc, [this] {
      // Whatever has not drained by the deadline is cut. Spawned first, on
      // ioc's own thread: the acceptor closed and the signals cancelled, ioc
      // may have no other work (its connections may all be gone) and would
      // return while the other threads' connections still drain.
      net::co_spawn(ioc, DrainThenStop(), net::detached);
      beast::error_code ignored;
      acceptor.close(ignored);
      signals.cancel(ignored);
      std::lock_guard lock(sessions_mu);
      for (const std::shared_ptr<SessionRef>& ref : sessions) {
        // Close waiting connections on their own thread; busy ones finish their
        // request first, and held long polls answer now.
        net::post(ref->stream->get_executor(), [ref] {
          if (!ref->alive) return;
          if (ref->idle) ref->stream->cancel();
          if (ref->waiting != nullptr) ref->waiting->cancel();
        });
      }
    });
  }

  void WaitForSignal() {
    signals.async_wait([this](const beast::error_code& ec, int signal) {
      if (ec) return;  // cancelled: stopping
      if (signal != SIGHUP) return BeginStop();
      options.on_hangup();
      WaitForSignal();
    });
  }

  net::awaitable<void> DrainThenStop() {
    auto deadline = std::chrono::steady_clock::now() + options.drain_timeout;
    net::steady_timer timer(ioc);
    while (connections > 0 && std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(std::chrono::milliseconds(10));
      co_await timer.async_wait(kTuple);
    }
    ioc.stop();
    for (auto& c : others) c->stop();
  }
};

HttpServer::HttpServer(HttpHandler& handler, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(handler, std::move(options))) {
  // From here on, not from Run(): a SIGHUP sent as soon as the caller reports
  // itself ready must not end the process. Signals that come before Run() wait.
  if (impl_->options.on_hangup) impl_->signals.add(SIGHUP);
}

HttpServer::~HttpServer() = default;

Status HttpServer::Listen() {
  if (tls()) MERIDIAN_RETURN_IF_ERROR(impl_->LoadTls());
  beast::error_code ec;
  auto address = net::ip::make_address(impl_->options.host, ec);
  if (ec) return Status::InvalidArgument("invalid listen address '" + impl_->options.host + "'");
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable(fmt::format("cannot listen on {}:{}: {}", impl_->options.host,
                                           impl_->options.port, ec.message()));
  }
  return Status::Ok();
}

bool HttpServer::tls() const { return !impl_->options.tls.certificate_chain_file.empty(); }

Status HttpServer::ReloadTls() {
  if (!tls()) return Status::FailedPrecondition("plain HTTP: no TLS files to reload");
  return impl_->LoadTls();
}

std::string HttpServer::TlsDescription() const {
  std::lock_guard lock(impl_->tls_mu);
  return impl_->tls_description;
}

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::Run() {
  Impl& s = *impl_;
  s.WaitForSignal();
  net::co_spawn(s.ioc, s.Accept(), net::detached);
  std::vector<std::thread> threads;
  for (auto& c : s.others) threads.emplace_back([&c] { c->run(); });
  s.ioc.run();
  for (auto& t : threads) t.join();
  // A long request under way finishes (its answer is not sent); one not begun is dropped.
  s.blocking_pool.stop();
  s.blocking_pool.join();
}

void HttpServer::Stop() { impl_->BeginStop(); }

}  // namespace meridian
