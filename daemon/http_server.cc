// The Beast session loop: read a head with a deadline, check limits, read the
// body, hand the request to the handler (holding deferred ones — long polls —
// on a timer), write the response (streamed when it is large), keep alive or
// close. One coroutine per connection on a strand.
#include "daemon/http_server.h"

#include <array>
#include <atomic>
#include <limits>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <list>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace meridian {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);
constexpr std::chrono::seconds kLingerTimeout{2};
constexpr uint64_t kLingerBytesMax = 16u << 20;
constexpr int kClientClosedRequest = 499;  // for metrics, as nginx counts it: nothing is sent

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
// written after it. Its timer runs on the session's strand; the handler holds
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

}  // namespace

struct HttpServer::Impl {
  HttpHandler& handler;
  HttpServerOptions options;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  net::signal_set signals{ioc, SIGINT, SIGTERM};
  std::atomic<bool> stopping{false};
  std::atomic<uint32_t> connections{0};

  // Idle sessions (waiting for a request head) can be closed at shutdown, and
  // held long polls woken to answer at once. Shared with the shutdown's posted
  // work, which may run after the session ended: touched only on the
  // session's strand, and `alive` says whether the pointers still hold.
  struct SessionRef {
    beast::tcp_stream* stream = nullptr;
    bool alive = true;
    bool idle = true;
    net::steady_timer* waiting = nullptr;  // the deferral timer while a request is held
  };
  std::mutex sessions_mu;
  std::list<std::shared_ptr<SessionRef>> sessions;

  Impl(HttpHandler& h, HttpServerOptions o) : handler(h), options(std::move(o)) {}

  net::awaitable<void> Accept() {
    for (;;) {
      auto strand = net::make_strand(ioc);  // named: no temporaries in co_await (see SendError)
      auto [ec, socket] = co_await acceptor.async_accept(strand, kTuple);
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
      auto executor = socket.get_executor();
      net::co_spawn(executor, Session(std::move(socket)), [this](std::exception_ptr) { --connections; });
    }
  }

  net::awaitable<bool> WriteSimple(beast::tcp_stream& stream, const HttpResponse& r, bool keep_alive,
                                   bool head_request) {
    http::response<http::string_body> res;
    ApplyHeaders(res, r, keep_alive);
    if (head_request || r.head_only) {
      res.content_length(r.BodyBytes());
      http::response_serializer<http::string_body> sr(res);
      stream.expires_after(options.write_timeout);
      auto [ec, n] = co_await http::async_write_header(stream, sr, kTuple);
      co_return !ec;
    }
    res.body() = r.body;
    res.prepare_payload();
    stream.expires_after(options.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, res, kTuple);
    co_return !ec;
  }

  // Writes a response whose body comes piece by piece from r.stream.
  net::awaitable<uint64_t> WriteStreamed(beast::tcp_stream& stream, const HttpResponse& r, bool keep_alive,
                                         bool* ok) {
    *ok = false;
    http::response<http::buffer_body> res;
    ApplyHeaders(res, r, keep_alive);
    res.content_length(r.stream_bytes);
    res.body().data = nullptr;
    res.body().more = true;
    http::response_serializer<http::buffer_body> sr(res);
    stream.expires_after(options.write_timeout);
    if (auto [ec, n] = co_await http::async_write_header(stream, sr, kTuple); ec) co_return 0;
    uint64_t sent = 0;
    while (sent < r.stream_bytes) {
      Result<Bytes> piece = r.stream();
      if (!piece.ok() || piece->empty() || piece->size() > r.stream_bytes - sent) co_return sent;
      res.body().data = piece->data();
      res.body().size = piece->size();
      res.body().more = true;
      stream.expires_after(options.write_timeout);
      auto [ec, n] = co_await http::async_write(stream, sr, kTuple);
      if (ec && ec != http::error::need_buffer) co_return sent;
      sent += piece->size();
    }
    res.body().data = nullptr;
    res.body().more = false;
    stream.expires_after(options.write_timeout);
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
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
        ec == net::error::operation_aborted) {
      return std::nullopt;
    }
    return JsonError(400, "bad_request", "malformed request body: " + ec.message());
  }

  // Sends an error answer, then the caller closes the connection.
  // (No temporaries in co_await expressions here: GCC 12 destroys them twice.)
  net::awaitable<void> SendError(beast::tcp_stream& stream, const HttpRequest& req, const HttpResponse& r) {
    bool ok = co_await WriteSimple(stream, r, /*keep_alive=*/false, /*head_request=*/false);
    handler.Completed(req, r.status, ok ? r.body.size() : 0);
    if (ok) co_await LingeringClose(stream);
  }

  // After an early error answer the client may still be sending; closing at
  // once would reset the connection and lose the answer. Stop sending, then
  // read and discard for a bounded time and amount before closing.
  net::awaitable<void> LingeringClose(beast::tcp_stream& stream) {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    std::array<char, 64 * 1024> sink;
    uint64_t discarded = 0;
    stream.expires_after(kLingerTimeout);
    while (discarded < kLingerBytesMax) {
      auto [ec, n] = co_await stream.async_read_some(net::buffer(sink), kTuple);
      if (ec) break;
      discarded += n;
    }
  }

  // Holds a deferred request (a long poll) until its notifier fires or its
  // wait runs out, asking the handler again after each wake-up; the first
  // deferral's wait bounds the whole hold. The timer lives on the session's
  // strand: a notification posts its cancel there, so no thread blocks and a
  // notification that comes before the wait starts is not lost (the cancel
  // runs only once this coroutine is suspended in the wait).
  //
  // A client that hangs up while held frees its place at once rather than at
  // the end of the wait: the socket is watched for readability, and readable
  // with nothing to read is the peer's close (bytes would be a pipelined
  // request, left for the session loop). Returns false when the client left.
  net::awaitable<bool> HoldDeferred(beast::tcp_stream& stream, HttpRequest& req, HttpResponse& res, SessionRef& ref) {
    auto executor = co_await net::this_coro::executor;
    auto timer = std::make_shared<net::steady_timer>(executor);
    auto deadline = std::chrono::steady_clock::now() + res.defer->wait;
    struct Watch {
      bool holding = true;
      bool client_left = false;
    };
    auto watch = std::make_shared<Watch>();
    std::weak_ptr<net::steady_timer> weak = timer;
    stream.socket().async_wait(tcp::socket::wait_read, [watch, weak, &stream](const beast::error_code& ec) {
      if (!watch->holding || ec) return;  // the hold ended first: the stream may be gone
      beast::error_code ignored;
      if (stream.socket().available(ignored) > 0) return;
      watch->client_left = true;
      if (auto t = weak.lock()) t->cancel();
    });
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
      res = handler.Handle(req);
    }
    watch->holding = false;
    beast::error_code ignored;
    stream.socket().cancel(ignored);  // the readability wait, if still pending
    co_return !watch->client_left;
  }

  net::awaitable<void> Session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    auto ref = std::make_shared<SessionRef>();
    ref->stream = &stream;
    bool& idle = ref->idle;
    std::list<std::shared_ptr<SessionRef>>::iterator self;
    {
      std::lock_guard lock(sessions_mu);
      self = sessions.insert(sessions.end(), ref);
    }
    beast::flat_buffer buffer;
    ReadDeadline deadline(stream);
    for (;;) {
      if (stopping) break;
      http::request_parser<http::string_body> parser;
      parser.header_limit(options.head_bytes_max);
      // The body limit depends on the route, known only after the head: checked below.
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      HttpRequest req;
      std::optional<HttpResponse> error;    // an answer to send before closing
      std::optional<HttpResponse> refusal;  // an answer to a request without a body, keeping the connection
      idle = true;
      stream.expires_never();
      deadline.Arm(options.head_timeout);
      auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kTuple);
      if (deadline.Disarm() && ec) ec = beast::error::timeout;
      idle = false;
      if (ec) {
        error = HeadError(ec, parser.got_some() || buffer.size() > 0, parser.get().target());
      } else {
        req = ToRequest(parser);
        // Framing, who asks and how large a body may follow are all decided
        // on the head: a refused request never has its body read.
        HttpAdmission admission;
        error = RefuseHead(req, parser.get().version(), parser.chunked());
        if (!error) admission = handler.Admit(req);
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
      req.body = std::move(parser.get().body());
      bool head_request = req.method == "HEAD";

      HttpResponse res = refusal ? std::move(*refusal) : handler.Handle(req);
      if (res.defer) {
        bool client_stayed = co_await HoldDeferred(stream, req, res, *ref);
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
        ok = co_await WriteSimple(stream, res, keep_alive, head_request);
        if (ok && !head_request && !res.head_only) sent = res.body.size();
      }
      handler.Completed(req, res.status, sent);
      if (!ok || !keep_alive) break;
    }
    {
      std::lock_guard lock(sessions_mu);
      sessions.erase(self);
    }
    ref->alive = false;
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
  }

  void BeginStop() {
    if (stopping.exchange(true)) return;
    if (options.on_stopping) options.on_stopping();
    net::post(ioc, [this] {
      beast::error_code ignored;
      acceptor.close(ignored);
      signals.cancel(ignored);
      std::lock_guard lock(sessions_mu);
      for (const std::shared_ptr<SessionRef>& ref : sessions) {
        // Close waiting connections on their own strand; busy ones finish their
        // request first, and held long polls answer now.
        net::post(ref->stream->get_executor(), [ref] {
          if (!ref->alive) return;
          if (ref->idle) ref->stream->cancel();
          if (ref->waiting != nullptr) ref->waiting->cancel();
        });
      }
    });
    // Whatever has not drained by the deadline is cut.
    net::co_spawn(ioc, DrainThenStop(), net::detached);
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

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::Run() {
  Impl& s = *impl_;
  s.WaitForSignal();
  net::co_spawn(s.ioc, s.Accept(), net::detached);
  int threads = s.options.threads > 0 ? s.options.threads
                                      : std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&s] { s.ioc.run(); });
  s.ioc.run();
  for (auto& t : pool) t.join();
}

void HttpServer::Stop() { impl_->BeginStop(); }

}  // namespace meridian
