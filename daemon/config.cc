// meridiand's --config file (TOML) read into ServeOptions (see config.h).
#include "daemon/config.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "rollout/window.h"

namespace meridian {

std::string FlagOf(std::string_view key) {
  std::string flag = "--" + std::string(key);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

Status ApplyConfigText(ServeOptions& o, std::string_view toml_text, std::string_view source_name,
                       const std::function<bool(std::string_view flag)>& flag_given) {
  const std::string source(source_name);
  auto unset = [&flag_given](std::string_view flag) { return !flag_given(flag); };
  toml::table t;
  try {
    t = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", source, e.description()));
  }
  for (const auto& [key, value] : t) {
    if (std::find(kConfigKeys.begin(), kConfigKeys.end(), key.str()) == kConfigKeys.end()) {
      return Status::InvalidArgument(fmt::format("{}: unknown setting '{}'", source, key.str()));
    }
  }
  if (unset("--data")) o.data = t["data"].value_or(o.data);
  if (unset("--listen")) o.listen = t["listen"].value_or(o.listen);
  if (unset("--threads")) o.threads = t["threads"].value_or(o.threads);
  if (unset("--role")) o.role = t["role"].value_or(o.role);
  if (unset("--region")) o.region = t["region"].value_or(o.region);
  if (unset("--jurisdiction")) o.jurisdiction = t["jurisdiction"].value_or(o.jurisdiction);
  if (unset("--upstream-token-file")) o.upstream_token_file = t["upstream_token_file"].value_or(o.upstream_token_file);
  for (const TlsSetting& s : kTlsSettings) {
    if (unset(FlagOf(s.key))) o.*s.field = t[s.key].value_or(o.*s.field);
  }
  if (unset("--upstream-allow-insecure-http")) {
    o.upstream_allow_insecure_http = t["upstream_allow_insecure_http"].value_or(o.upstream_allow_insecure_http);
  }
  if (unset("--upstream")) {
    if (const toml::array* list = t["upstream"].as_array()) {
      for (const auto& url : *list) {
        if (!url.is_string()) return Status::InvalidArgument(source + ": upstream must be a list of URLs");
        o.upstream.push_back(*url.value<std::string>());
      }
    } else if (std::optional<std::string> url = t["upstream"].value<std::string>()) {
      o.upstream.push_back(*url);
    }
  }
  o.head_timeout_ms = t["head_timeout_ms"].value_or(o.head_timeout_ms);
  o.body_timeout_ms = t["body_timeout_ms"].value_or(o.body_timeout_ms);
  if (o.head_timeout_ms < 1 || o.body_timeout_ms < 1) {
    return Status::InvalidArgument(source + ": timeouts must be at least 1 ms");
  }
  if (const toml::node* zones = t.get("time_zones")) {
    const toml::table* table = zones->as_table();
    if (table == nullptr) return Status::InvalidArgument(source + ": time_zones must be a table of region = \"Zone\"");
    for (const auto& [region, zone] : *table) {
      std::optional<std::string> name = zone.value<std::string>();
      if (!name) return Status::InvalidArgument(source + ": time_zones." + std::string(region.str()) + " must be a zone name");
      if (Status st = CheckTimeZone(*name); !st.ok()) return Status::InvalidArgument(source + ": time_zones: " + st.message());
      o.time_zones[std::string(region.str())] = *name;
    }
  }
  o.state_expiry_ms = t["state_expiry_ms"].value_or(o.state_expiry_ms);
  o.state_refresh_ms = t["state_refresh_ms"].value_or(o.state_refresh_ms);
  if (o.state_expiry_ms < 1000 || o.state_refresh_ms < 1 || o.state_refresh_ms >= o.state_expiry_ms) {
    return Status::InvalidArgument(source + ": state_expiry_ms must be at least 1000 and above state_refresh_ms (at least 1)");
  }
  o.credential_lifetime_ms = t["credential_lifetime_ms"].value_or(o.credential_lifetime_ms);
  if (o.credential_lifetime_ms < 10'000 || o.credential_lifetime_ms > 30ll * 24 * 3600 * 1000) {
    return Status::InvalidArgument(source + ": credential_lifetime_ms must be 10000 (10 s) to 30 days");
  }
  DeltaServiceOptions& d = o.deltas;
  d.previous_versions = t["delta_previous_versions"].value_or(d.previous_versions);
  d.encoder.threads = t["delta_threads"].value_or(d.encoder.threads);
  const int64_t artifact_max = t["delta_artifact_bytes_max"].value_or(static_cast<int64_t>(d.artifact_bytes_max));
  if (d.previous_versions < 0 || d.previous_versions > 100) {
    return Status::InvalidArgument(source + ": delta_previous_versions must be 0 to 100");
  }
  if (d.encoder.threads < 1 || d.encoder.threads > 64) {
    return Status::InvalidArgument(source + ": delta_threads must be 1 to 64");
  }
  if (artifact_max < 0 || artifact_max > (int64_t{1} << 40)) {
    return Status::InvalidArgument(source + ": delta_artifact_bytes_max must be 0 to 1 TiB");
  }
  d.artifact_bytes_max = static_cast<uint64_t>(artifact_max);
  // Unset: LZMA literals (smallest). A level: zstd literals, faster to make and apply.
  if (std::optional<int> level = t["delta_literal_level"].value<int>()) {
    if (*level < 1 || *level > 22) return Status::InvalidArgument(source + ": delta_literal_level must be 1 to 22");
    d.encoder.literal_codec = LiteralCodec::kZstd;
    d.encoder.literal_level = *level;
  } else if (t.contains("delta_literal_level")) {
    return Status::InvalidArgument(source + ": delta_literal_level must be an integer");
  }
  return Status::Ok();
}

Result<TlsServerOptions> ServerTls(const ServeOptions& o) {
  TlsServerOptions tls{o.tls_certificate, o.tls_key, o.tls_client_ca, ClientCertificates::kNone};
  if (o.tls_certificate.empty()) {
    if (!o.tls_key.empty() || !o.tls_client_ca.empty() || !o.tls_client_certificates.empty()) {
      return Status::InvalidArgument("the TLS settings need tls_certificate (--tls-certificate)");
    }
    return tls;
  }
  if (o.tls_key.empty()) return Status::InvalidArgument("tls_certificate needs tls_key (--tls-key), its private key");
  const std::string& mode = o.tls_client_certificates;
  if (mode == "optional" || (mode.empty() && !o.tls_client_ca.empty())) {
    tls.client_certificates = ClientCertificates::kOptional;
  } else if (mode == "required") {
    tls.client_certificates = ClientCertificates::kRequired;
  } else if (!mode.empty() && mode != "none") {
    return Status::InvalidArgument("tls_client_certificates must be none, optional or required, got '" + mode + "'");
  }
  if (tls.client_certificates != ClientCertificates::kNone && o.tls_client_ca.empty()) {
    return Status::InvalidArgument("tls_client_certificates = " + mode + " needs tls_client_ca (--tls-client-ca)");
  }
  return tls;
}

bool SplitHostPort(const std::string& listen, std::string* host, uint16_t* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  try {
    int p = std::stoi(listen.substr(colon + 1));
    if (p < 0 || p > 65535 || host->empty()) return false;
    *port = static_cast<uint16_t>(p);
  } catch (...) {
    return false;
  }
  return true;
}

}  // namespace meridian
