// Request counters for /metrics, rendered in the Prometheus text format.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace meridian {

class Metrics {
 public:
  // Counts one request of `route` (a pattern such as "GET /v1/chunks/{digest}")
  // answered with `status`, and the body bytes sent.
  void CountRequest(const std::string& route, int status, uint64_t body_bytes);
  void CountChunkStored() { ++chunks_stored_; }

  // Prometheus text exposition of the counters, followed by `gauges`
  // (name -> value, already prefixed "meridian_").
  std::string Render(const std::map<std::string, uint64_t>& gauges) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // guarded by mu_
  std::atomic<uint64_t> bytes_served_{0};
  std::atomic<uint64_t> chunks_stored_{0};
};

}  // namespace meridian
