// The daemon's counters, and a builder of metric families in the Prometheus
// text exposition format (version 0.0.4) for /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meridian {

// A label value as the text format writes it between double quotes:
// backslash, double quote and newline escaped.
std::string EscapeLabelValue(std::string_view value);

// One metric family: its name, type, help line and samples, rendered with
// exactly one HELP and one TYPE line followed by all its samples (promtool
// refuses a family split up or described twice). A family without samples
// renders nothing.
class MetricFamily {
 public:
  enum class Type { kCounter, kGauge };
  using Labels = std::vector<std::pair<std::string, std::string>>;  // (name, unescaped value), in order

  // `name` is [a-z_:][a-z0-9_:]*; a counter's ends in "_total".
  MetricFamily(std::string name, Type type, std::string help);

  MetricFamily& Add(double value, Labels labels = {});
  void AppendTo(std::string& out) const;

 private:
  std::string name_;
  Type type_;
  std::string help_;
  std::vector<std::pair<Labels, double>> samples_;
};

// Counters of what the daemon served and refused since it started.
class Metrics {
 public:
  // Counts one request of `route` (a pattern such as "GET /v1/chunks/{digest}")
  // answered with `status`, and the body bytes sent.
  void CountRequest(const std::string& route, int status, uint64_t body_bytes);
  // Body bytes sent of content of `kind` ("delta", "artifact" or "chunk").
  void CountServed(std::string_view kind, uint64_t body_bytes);
  // A request refused for its credential, for a route of `role`: `reason`
  // "missing_bearer" or "bad_credential" (401: absent, malformed or expired),
  // "wrong_token", "wrong_certificate", "wrong_terminal" (a credential for
  // another terminal) or "not_enrolled" (revoked or unknown) (403).
  void CountAuthFailure(std::string_view reason, std::string_view role);
  void CountChunkStored() { ++chunks_stored_; }
  // A report a region forwarded that was not counted: its terminal was
  // revoked since the region took it (`reason` "revoked_terminal").
  void CountDroppedReport(std::string_view reason);

  // The counters' families, then `more` (the caller's gauges and counters).
  std::string Render(const std::vector<MetricFamily>& more) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;                // guarded by mu_
  // guarded by mu_: by kind, each shown from the start so that its rate starts at 0
  std::map<std::string, uint64_t, std::less<>> served_bytes_ = {{"artifact", 0}, {"chunk", 0}, {"delta", 0}};
  std::map<std::pair<std::string, std::string>, uint64_t> auth_failures_;  // guarded by mu_: (reason, role)
  std::map<std::string, uint64_t, std::less<>> dropped_reports_ = {{"revoked_terminal", 0}};  // guarded by mu_
  std::atomic<uint64_t> bytes_served_{0};
  std::atomic<uint64_t> chunks_stored_{0};
};

}  // namespace meridian
