// A small blocking HTTP client over libcurl, shared by the CLI, the agent and
// the tests. One HttpClient is one connection (keep-alive); use one per thread.
// Every call is bounded: connect and total timeouts, and a cap on body bytes.
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

struct HttpClientOptions {
  long connect_timeout_ms = 5'000;
  long timeout_ms = 300'000;                   // whole request
  uint64_t response_bytes_max = 256ull << 20;  // for bodies returned in memory
  std::string bearer_token;                    // sent as Authorization: Bearer …
  int64_t recv_bytes_per_s_max = 0;            // download speed cap (CURLOPT_MAX_RECV_SPEED_LARGE); 0 = none
  // When set, a call in progress gives up (Cancelled as Unavailable) within
  // about a second of *cancel becoming true: a daemon stopping its long polls.
  const std::atomic<bool>* cancel = nullptr;
};

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
  // status is a successful reply for the caller to interpret.
  Result<HttpReply> Get(const std::string& path, const std::vector<std::string>& headers = {});
  Result<HttpReply> Post(const std::string& path, std::string_view body,
                         const std::string& content_type = "application/json");
  Result<HttpReply> Put(const std::string& path, ByteSpan body,
                        const std::string& content_type = "application/octet-stream");
  // GET whose 2xx body goes to `sink` as it arrives instead of memory; the
  // transfer is aborted (ResourceExhausted) past `body_bytes_max` or when the
  // sink fails (its status is returned). Non-2xx bodies are kept in the reply.
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

}  // namespace meridian
