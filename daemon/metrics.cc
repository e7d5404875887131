// Prometheus text rendering of the daemon's counters.
#include "daemon/metrics.h"

#include <fmt/format.h>

namespace meridian {

void Metrics::CountRequest(const std::string& route, int status, uint64_t body_bytes) {
  bytes_served_ += body_bytes;
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

std::string Metrics::Render(const std::map<std::string, uint64_t>& gauges) const {
  std::string out;
  out += "# HELP meridian_http_requests_total HTTP requests by route and status.\n";
  out += "# TYPE meridian_http_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, count] : requests_) {
      out += fmt::format("meridian_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first,
                         key.second, count);
    }
  }
  out += "# HELP meridian_http_response_bytes_total Response body bytes sent.\n";
  out += "# TYPE meridian_http_response_bytes_total counter\n";
  out += fmt::format("meridian_http_response_bytes_total {}\n", bytes_served_.load());
  out += "# HELP meridian_chunks_uploaded_total Chunks stored by uploads since start.\n";
  out += "# TYPE meridian_chunks_uploaded_total counter\n";
  out += fmt::format("meridian_chunks_uploaded_total {}\n", chunks_stored_.load());
  for (const auto& [name, value] : gauges) {
    out += fmt::format("# TYPE {} gauge\n{} {}\n", name, name, value);
  }
  return out;
}

}  // namespace meridian
