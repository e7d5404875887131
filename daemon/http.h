// Plain HTTP request and response values, and the handler interface the
// server calls. No Beast here: request handling is a plain function from a
// request to a response, testable without a socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

struct Route;  // daemon/routes.h

struct HttpRequest {
  std::string method;                         // "GET", "PUT", …
  std::string target;                         // raw request-target, "/v1/chunks/…?x=y"
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  // The subject CN of the client certificate the TLS handshake verified
  // against the server's client CAs; empty without one (and over plain HTTP).
  std::string client_certificate_cn;
  // Set by the server when it calls Handle again because a deferral's wait
  // ran out (see HttpDeferral): the handler must answer now, not defer again.
  bool wait_expired = false;
  // Set by HttpHandler::Admit for the handler's own use, so that the target
  // is parsed once: the route matched, its placeholders' decoded values in
  // pattern order, and the raw query string.
  const Route* route = nullptr;
  std::vector<std::string> params;
  std::string query;
  // Who the request's credential names, set by Admit once it is checked: a
  // named credential's name, a terminal's id; empty for an anonymous caller.
  // The actor of audit events, never taken from a header.
  std::string caller;

  // The header's value, or "" when absent.
  std::string_view Header(std::string_view lowercase_name) const;
};

// A piece of a streamed body: `bytes`, kept alive by `owner` (a cached chunk
// is sent from the cache, uncopied).
struct BodyPiece {
  std::shared_ptr<const void> owner;
  ByteSpan bytes;
};
// Produces a streamed body piece by piece: each call returns the next
// non-empty piece; an error aborts the connection (the length was promised).
using BodyStream = std::function<Result<BodyPiece>()>;

// Wakes deferred requests (long polls) when something they wait for changed.
// Generation-counted so that no change is lost between a handler's look at
// the state and the server's subscription: a handler reads generation()
// BEFORE it looks, and Subscribe fires at once when the generation moved on
// since. Thread-safe; callbacks run on the notifying thread and must only
// post work elsewhere.
class ChangeNotifier {
 public:
  using Callback = std::function<void()>;
  uint64_t generation() const;
  // Calls `callback` once at the next NotifyAll, or at once when the
  // generation is no longer `seen_generation`. Returns an id for Unsubscribe.
  uint64_t Subscribe(uint64_t seen_generation, Callback callback);
  // Drops a subscription that has not fired (a wait that timed out).
  void Unsubscribe(uint64_t id);
  // Subscriptions waiting now: the held long polls, for /metrics.
  size_t waiting() const;
  // Moves to the next generation and fires every subscription. Call after
  // the change is visible to handlers.
  void NotifyAll();

 private:
  mutable std::mutex mu_;
  uint64_t generation_ = 0;    // guarded by mu_
  uint64_t next_id_ = 1;       // guarded by mu_
  std::map<uint64_t, Callback> subscribers_;  // guarded by mu_
};

// A response a handler cannot give yet: the server holds the connection
// without blocking a thread until `notifier` fires or `wait` passes, then
// calls Handle again with the same request (wait_expired set once the
// request's first deferral's wait ran out in total).
struct HttpDeferral {
  ChangeNotifier* notifier = nullptr;  // outlives the server
  uint64_t seen_generation = 0;        // notifier->generation() read before the handler looked
  std::chrono::milliseconds wait{0};
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;         // used when `stream` is empty
  BodyStream stream;        // when set, the body is `stream_bytes` bytes from it
  uint64_t stream_bytes = 0;
  bool head_only = false;   // answer to HEAD: headers (with Content-Length) but no body
  std::optional<HttpDeferral> defer;  // when set, nothing else here is sent (see HttpDeferral)

  HttpResponse& Set(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  uint64_t BodyBytes() const { return stream ? stream_bytes : body.size(); }
};

// What a handler decides from a request head, before any body byte is read.
struct HttpAdmission {
  std::optional<HttpResponse> refusal;  // when set: sent at once, the body is never read
  uint64_t body_bytes_max = 0;          // otherwise the largest body accepted (larger: 413 unread)
  // Handle may block its thread for long: it writes (a synced write waits
  // for the disk, and any write may wait for RocksDB to flush its memtables)
  // or works for seconds (a commit reads its whole artifact). It then runs
  // off the thread that serves the connection and others.
  bool may_block = false;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Decides on the head (method, target, headers; body empty): who may ask
  // and how large a body may follow. May fill the head's route fields.
  virtual HttpAdmission Admit(HttpRequest& head) = 0;
  // Handles a complete request that Admit admitted. Called on a server thread; may block briefly
  // on a read of local storage (or longer when Admit said may_block), never on a wait: it returns a deferral instead.
  virtual HttpResponse Handle(const HttpRequest& request) = 0;
  // Called once per request after the response was written or failed, for
  // metrics: the status sent and the body bytes written.
  virtual void Completed(const HttpRequest& request, int status, uint64_t body_bytes_sent) = 0;
};

// {"error":{"code":"…","message":"…"}} with the given status.
HttpResponse JsonError(int status, std::string_view code, std::string_view message);

// The answer to a request head that must not be served (RFC 9112), or
// nullopt when its body may be read. Bodies are framed one way only:
// Transfer-Encoding with Content-Length, in HTTP/1.0, or other than one
// "chunked" is 400 — except another coding before a final "chunked", 501 —
// and so is a Content-Length that is not one number, or a Transfer-Encoding
// the HTTP parser did not frame as chunked (`parser_chunked`), so that this
// check and the parser never disagree. An HTTP/1.1 request needs exactly one
// Host (400). `http_version` is 10 or 11.
std::optional<HttpResponse> RefuseHead(const HttpRequest& head, unsigned http_version, bool parser_chunked);

}  // namespace meridian

namespace meridian {

// A Range header interpreted against a representation of `size` bytes
// (RFC 9110 §14): one range is served as 206; a malformed or multi-range
// header is ignored (the whole representation is served, as the RFC allows).
struct RangeRequest {
  enum class Kind { kWhole, kPartial, kUnsatisfiable };
  Kind kind = Kind::kWhole;
  uint64_t first = 0;   // with kPartial
  uint64_t length = 0;  // with kPartial
};
RangeRequest InterpretRange(std::string_view range_header, uint64_t size);

// True when an If-None-Match header value matches the strong `etag` ("*" or
// a listed tag, compared weakly as RFC 9110 asks for If-None-Match).
bool IfNoneMatchHits(std::string_view if_none_match, std::string_view etag);

// Splits "/a/b%2Fc?x=1" into percent-decoded path segments and the raw query.
// Fails on a malformed escape (not '%' and two hex digits), in the path or the
// query; decoded segments may contain any byte, so callers validate them.
struct ParsedTarget {
  std::vector<std::string> segments;
  std::string query;
};
Result<ParsedTarget> ParseTarget(std::string_view target);

// The decoded value of `name` in a query string ("a=1&b=2"), or nullopt.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name);

}  // namespace meridian
