// Plain HTTP request and response values, and the handler interface the
// server calls. No Beast here: request handling is a plain function from a
// request to a response, testable without a socket.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

struct HttpRequest {
  std::string method;                         // "GET", "PUT", …
  std::string target;                         // raw request-target, "/v1/chunks/…?x=y"
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  // The header's value, or "" when absent.
  std::string_view Header(std::string_view lowercase_name) const;
};

// Produces a streamed body piece by piece: each call returns the next
// non-empty piece; an error aborts the connection (the length was promised).
using BodyStream = std::function<Result<Bytes>()>;

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;         // used when `stream` is empty
  BodyStream stream;        // when set, the body is `stream_bytes` bytes from it
  uint64_t stream_bytes = 0;
  bool head_only = false;   // answer to HEAD: headers (with Content-Length) but no body

  HttpResponse& Set(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  uint64_t BodyBytes() const { return stream ? stream_bytes : body.size(); }
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // The largest body accepted for this request head (checked before the body
  // is read: larger requests get 413 without being read).
  virtual uint64_t BodyBytesMax(const HttpRequest& head) const = 0;
  // Handles a complete request. Called on a server thread; may block briefly
  // on local storage.
  virtual HttpResponse Handle(const HttpRequest& request) = 0;
  // Called once per request after the response was written or failed, for
  // metrics: the status sent and the body bytes written.
  virtual void Completed(const HttpRequest& request, int status, uint64_t body_bytes_sent) = 0;
};

// {"error":{"code":"…","message":"…"}} with the given status.
HttpResponse JsonError(int status, std::string_view code, std::string_view message);

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
// Fails on malformed escapes; decoded segments may contain any byte, so
// callers validate them.
struct ParsedTarget {
  std::vector<std::string> segments;
  std::string query;
};
Result<ParsedTarget> ParseTarget(std::string_view target);

// The decoded value of `name` in a query string ("a=1&b=2"), or nullopt.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name);

}  // namespace meridian
