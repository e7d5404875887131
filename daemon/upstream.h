// A region's connection to its upstream daemons (the origin, or another
// region): the URLs in order of preference and the mirror token. A call goes
// to the upstream that answered last; a transport failure or a 5xx moves on to
// the next one, so one dead upstream costs one failed attempt, not an outage.
// One UpstreamClient per thread (it holds one keep-alive connection per URL).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "client/http_client.h"

namespace meridian {

struct UpstreamOptions {
  std::vector<std::string> urls;  // at least one
  std::string mirror_token;       // the upstream's DIR/mirror.token
  // Whole request: a delta of a large model over a slow link takes long, so
  // this is generous; silence is what stall_timeout_ms catches.
  long timeout_ms = 3'600'000;
  // An upstream that sends nothing for this long (a request answered, then no
  // more bytes on an open connection) is left for the next one. 0: no limit.
  // A long poll is silent while held, so its hold must stay well under this.
  long stall_timeout_ms = 60'000;
  const std::atomic<bool>* cancel = nullptr;  // see HttpClientOptions::cancel
  TlsClientOptions tls = {};                  // CA file, client certificate (upstream_* settings)
};

class UpstreamClient {
 public:
  explicit UpstreamClient(UpstreamOptions options);

  // Unavailable when no upstream answered with a status below 500 (the last
  // failure's message); any answer below 500 is the caller's to interpret.
  // At most `response_bytes_max` of a reply is read (HttpClient: a longer one
  // is ResourceExhausted, and the next upstream is tried).
  Result<HttpReply> Get(const std::string& path, uint64_t response_bytes_max);
  Result<HttpReply> Post(const std::string& path, std::string_view json_body, uint64_t response_bytes_max);

  // Runs `call` against each upstream in turn until one answers below 500 (as
  // Get does); `call` starts afresh on each, e.g. a streamed download. A
  // failure of this side's own that `call` returns (its disk's: IOError,
  // InsufficientStorage, which HttpClient never gives) comes back at once:
  // no other upstream would make it good.
  Result<HttpReply> Call(const std::function<Result<HttpReply>(HttpClient&)>& call);

  // The URL of the upstream that answered (or is tried) first.
  const std::string& current() const { return options_.urls[current_]; }

 private:

  UpstreamOptions options_;
  std::vector<std::unique_ptr<HttpClient>> clients_;  // one per URL
  size_t current_ = 0;
};

}  // namespace meridian
