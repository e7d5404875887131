// Fail-over between a region's upstreams.
#include "daemon/upstream.h"

#include <cstdio>

#include <fmt/format.h>

namespace meridian {
namespace {

bool IsLocalFailure(const Status& st) {
  return st.code() == Status::Code::kIOError || st.code() == Status::Code::kInsufficientStorage;
}

}  // namespace

UpstreamClient::UpstreamClient(UpstreamOptions options) : options_(std::move(options)) {
  for (const std::string& url : options_.urls) {
    clients_.push_back(std::make_unique<HttpClient>(
        url, HttpClientOptions{.timeout_ms = options_.timeout_ms,
                               .stall_timeout_ms = options_.stall_timeout_ms,
                               .bearer_token = options_.mirror_token,
                               .cancel = options_.cancel,
                               .tls = options_.tls}));
  }
}

Result<HttpReply> UpstreamClient::Call(const std::function<Result<HttpReply>(HttpClient&)>& call) {
  Status last = Status::Unavailable("no upstream configured");
  for (size_t tried = 0; tried < clients_.size(); ++tried) {
    size_t i = (current_ + tried) % clients_.size();
    Result<HttpReply> r = call(*clients_[i]);
    if (r.ok() && r->status < 500) {
      current_ = i;
      return r;
    }
    if (!r.ok() && IsLocalFailure(r.status())) return r.status();
    last = r.ok() ? Status::Unavailable(fmt::format("{}: HTTP {}: {}", options_.urls[i], r->status, ErrorMessageOf(*r)))
                  : r.status();
    if (options_.cancel != nullptr && options_.cancel->load()) break;
    // The caller reports the last failure; the ones the next upstream made
    // good would go unseen (a sick upstream behind a healthy one).
    if (tried + 1 < clients_.size()) {
      std::fprintf(stderr, "meridiand: %s; trying %s\n", last.ToString().c_str(),
                   options_.urls[(i + 1) % clients_.size()].c_str());
    }
  }
  current_ = (current_ + 1) % clients_.size();  // start with the next one next time
  return Status::Unavailable(last.message());
}

Result<HttpReply> UpstreamClient::Get(const std::string& path, uint64_t response_bytes_max) {
  return Call([&](HttpClient& c) { return c.Get(path, response_bytes_max); });
}

Result<HttpReply> UpstreamClient::Post(const std::string& path, std::string_view json_body,
                                       uint64_t response_bytes_max) {
  return Call([&](HttpClient& c) { return c.Post(path, json_body, response_bytes_max); });
}

}  // namespace meridian
