// A small blocking HTTP client over libcurl, shared by the CLI, the agent and
// the tests. One HttpClient is one connection (keep-alive); use one per thread.
// Every call is bounded: connect and total timeouts, and a cap on the body
// bytes it reads (each call's own; the transfer stops there, see below).
// https:// URLs are verified (certificate chain against a CA file, host name;
// TLS 1.2 or later), and no credential leaves over plain HTTP for another
// machine unless that is asked for.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

// TLS settings of a client (docs/operator-guide.md, "TLS and certificates").
struct TlsClientOptions {
  // PEM file of the CAs that sign the servers' certificates. Empty: the file
  // named by the environment variable CURL_CA_BUNDLE, else SSL_CERT_FILE, else
  // the system's store (/etc/ssl/certs/ca-certificates.crt).
  std::string ca_file = {};
  // A client certificate (PEM, with its chain) and its private key, for
  // daemons that ask for one (mTLS). Both or neither.
  std::string client_certificate = {};
  std::string client_key = {};
  // Lets a credential (a bearer token or a client certificate) go over plain
  // http:// to a host that is not loopback; refused otherwise (anyone on the
  // path could read the token).
  bool allow_insecure_http = false;
};

struct HttpClientOptions {
  long connect_timeout_ms = 5'000;
  long timeout_ms = 300'000;                   // whole request; 0: none (a download bounded by stall_timeout_ms)
  // A request that receives nothing for this long fails (DeadlineExceeded)
  // however long timeout_ms would let it run: a server or a middlebox that
  // stopped sending. Whole seconds (libcurl's low-speed check); 0: none.
  // A long poll is silent until it answers: none for it, or one well
  // beyond its hold.
  long stall_timeout_ms = 0;
  // The most body bytes a call that names no limit of its own keeps in memory
  // (tests, tools). The programs pass each call the limit of what it expects
  // (client/api.h).
  uint64_t response_bytes_max = 256ull << 20;
  std::string bearer_token = {};               // sent as Authorization: Bearer …
  int64_t recv_bytes_per_s_max = 0;            // download speed cap (CURLOPT_MAX_RECV_SPEED_LARGE); 0 = none
  // When set, a call in progress gives up (Cancelled as Unavailable) within
  // about a second of *cancel becoming true: a daemon stopping its long polls.
  const std::atomic<bool>* cancel = nullptr;
  TlsClientOptions tls = {};
};

// Whether a client with `options` may talk to `base_url` at all, decided
// without a connection: FailedPrecondition naming the URL and the setting to
// change when a credential would travel over plain http:// to a host other
// than loopback (127.0.0.0/8, ::1, localhost) without allow_insecure_http, or
// when only one of client certificate and key is set; InvalidArgument for a
// URL that is not http:// or https://. Every request checks it; programs call
// it at start too, to refuse a bad configuration before serving.
Status CheckTransport(const std::string& base_url, const HttpClientOptions& options);

// The first bytes of a reply that is not 2xx, kept for its message: the
// transfer stops there and the reply comes back with its status and this
// much of its body (a daemon's error body is a short JSON object).
inline constexpr uint64_t kErrorBodyBytesMax = 64u << 10;

struct HttpReply {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lowercased; last value wins
  std::string Header(const std::string& lowercase_name) const {
    auto it = headers.find(lowercase_name);
    return it == headers.end() ? "" : it->second;
  }
};

class HttpClient {
 public:
  // `base_url` such as "http://127.0.0.1:7400" (no trailing slash needed).
  explicit HttpClient(std::string base_url, HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // A transport failure (no answer) is Unavailable/DeadlineExceeded; any HTTP
  // status is a successful reply for the caller to interpret. A TLS failure
  // is Unavailable too (no answer came), its message naming the cause: a
  // certificate not trusted by the CA file, expired, for another host name;
  // a client certificate the server wants or refuses. Retrying those cannot
  // help until the configuration changes, so callers must back off from them
  // as from any unreachable server. CheckTransport's refusals come back
  // before any connection is made.
  //
  // A 2xx body is kept in memory up to `response_bytes_max`: one whose
  // Content-Length says more is refused before a byte of it is read, one of
  // unknown length (chunked) as soon as the running total passes the limit;
  // either way ResourceExhausted naming the limit and the URL, and the
  // connection is closed. Memory never holds more than the limit (room for a
  // body is reserved once, from its Content-Length or, past 1 MiB of unknown
  // length, the limit: growing never copies it). A body that is not 2xx is
  // kept up to kErrorBodyBytesMax, then the transfer stops and the reply is
  // returned as it is. The forms without a limit use the client's
  // response_bytes_max.
  Result<HttpReply> Get(const std::string& path, uint64_t response_bytes_max,
                        const std::vector<std::string>& headers = {});
  Result<HttpReply> Get(const std::string& path, const std::vector<std::string>& headers = {});
  Result<HttpReply> Post(const std::string& path, std::string_view body, uint64_t response_bytes_max,
                         const std::string& content_type = "application/json",
                         const std::vector<std::string>& headers = {});
  Result<HttpReply> Post(const std::string& path, std::string_view body,
                         const std::string& content_type = "application/json",
                         const std::vector<std::string>& headers = {});
  Result<HttpReply> Delete(const std::string& path, std::string_view body, uint64_t response_bytes_max);
  Result<HttpReply> Put(const std::string& path, ByteSpan body, uint64_t response_bytes_max,
                        const std::string& content_type = "application/octet-stream");
  Result<HttpReply> Put(const std::string& path, ByteSpan body,
                        const std::string& content_type = "application/octet-stream");
  // GET whose 2xx body goes to `sink` as it arrives instead of memory; the
  // transfer is aborted (ResourceExhausted) past `body_bytes_max` (before the
  // body when its Content-Length says so) or when the sink fails (its status
  // is returned). Non-2xx bodies are kept in the reply as above.
  Result<HttpReply> GetStreaming(const std::string& path, const std::function<Status(ByteSpan)>& sink,
                                 uint64_t body_bytes_max, const std::vector<std::string>& headers = {});

  // GetStreaming whose sink also sees the reply's status and headers (known
  // before the first body byte): a caller resuming with Range tells a 206
  // continuing where it stopped from a 200 that starts over.
  Result<HttpReply> GetStreamingWithHead(const std::string& path,
                                         const std::function<Status(const HttpReply& head, ByteSpan)>& sink,
                                         uint64_t body_bytes_max, const std::vector<std::string>& headers = {});

  const std::string& base_url() const { return base_url_; }

 private:
  struct Impl;
  std::string base_url_;
  std::unique_ptr<Impl> impl_;
};

// The "message" of a JSON error body {"error":{"message":…}}, or the start of
// the body when it is not one: for one-line error reports.
std::string ErrorMessageOf(const HttpReply& reply);
// The "code" of a JSON error body {"error":{"code":…}}, or "" when it is not one.
std::string ErrorCodeOf(const HttpReply& reply);

}  // namespace meridian
