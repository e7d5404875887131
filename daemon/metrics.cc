// Prometheus text rendering of the daemon's counters and gauges.
#include "daemon/metrics.h"

#include <fmt/format.h>

namespace meridian {

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {

// HELP text escapes backslash and newline (not quotes).
std::string EscapeHelp(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

MetricFamily::MetricFamily(std::string name, Type type, std::string help)
    : name_(std::move(name)), type_(type), help_(std::move(help)) {}

MetricFamily& MetricFamily::Add(double value, Labels labels) {
  samples_.emplace_back(std::move(labels), value);
  return *this;
}

void MetricFamily::AppendTo(std::string& out) const {
  if (samples_.empty()) return;
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, EscapeHelp(help_), name_,
                     type_ == Type::kCounter ? "counter" : "gauge");
  for (const auto& [labels, value] : samples_) {
    out += name_;
    if (!labels.empty()) {
      out += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        out += fmt::format("{}{}=\"{}\"", i == 0 ? "" : ",", labels[i].first, EscapeLabelValue(labels[i].second));
      }
      out += '}';
    }
    out += fmt::format(" {}\n", value);
  }
}

void Metrics::CountRequest(const std::string& route, int status, uint64_t body_bytes) {
  bytes_served_ += body_bytes;
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

void Metrics::CountServed(std::string_view kind, uint64_t body_bytes) {
  std::lock_guard lock(mu_);
  auto it = served_bytes_.find(kind);
  if (it == served_bytes_.end()) it = served_bytes_.emplace(std::string(kind), 0).first;
  it->second += body_bytes;
}

void Metrics::CountAuthFailure(std::string_view reason, std::string_view role) {
  std::lock_guard lock(mu_);
  ++auth_failures_[{std::string(reason), std::string(role)}];
}

void Metrics::CountDroppedReport(std::string_view reason) {
  std::lock_guard lock(mu_);
  auto it = dropped_reports_.find(reason);
  if (it == dropped_reports_.end()) it = dropped_reports_.emplace(std::string(reason), 0).first;
  ++it->second;
}

std::string Metrics::Render(const std::vector<MetricFamily>& more) const {
  using Type = MetricFamily::Type;
  MetricFamily requests("meridian_http_requests_total", Type::kCounter, "HTTP requests by route and status.");
  MetricFamily served("meridian_served_bytes_total", Type::kCounter,
                      "Body bytes of content sent, by kind: delta, whole artifact, or chunk.");
  MetricFamily auth("meridian_auth_failures_total", Type::kCounter,
                    "Requests refused for their credential, by reason (missing_bearer, bad_credential: 401; "
                    "wrong_token, wrong_certificate, wrong_terminal: a terminal's certificate or credential for "
                    "another terminal, not_enrolled: revoked or unknown terminal: 403) and the role the route needs.");
  MetricFamily dropped("meridian_reports_dropped_total", Type::kCounter,
                       "Reports forwarded by regions and not counted, by reason (revoked_terminal: revoked "
                       "since the region took it).");
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, count] : requests_) {
      requests.Add(static_cast<double>(count), {{"route", key.first}, {"status", std::to_string(key.second)}});
    }
    for (const auto& [kind, bytes] : served_bytes_) served.Add(static_cast<double>(bytes), {{"kind", kind}});
    for (const auto& [key, count] : auth_failures_) {
      auth.Add(static_cast<double>(count), {{"reason", key.first}, {"role", key.second}});
    }
    for (const auto& [reason, count] : dropped_reports_) dropped.Add(static_cast<double>(count), {{"reason", reason}});
  }
  std::string out;
  requests.AppendTo(out);
  MetricFamily("meridian_http_response_bytes_total", Type::kCounter, "Response body bytes sent.")
      .Add(static_cast<double>(bytes_served_.load()))
      .AppendTo(out);
  served.AppendTo(out);
  auth.AppendTo(out);
  dropped.AppendTo(out);
  MetricFamily("meridian_chunks_uploaded_total", Type::kCounter, "Chunks stored by uploads since start.")
      .Add(static_cast<double>(chunks_stored_.load()))
      .AppendTo(out);
  for (const MetricFamily& f : more) f.AppendTo(out);
  return out;
}

}  // namespace meridian
