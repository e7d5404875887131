// meridiand's --config file (TOML) read into ServeOptions (see config.h).
#include "daemon/config.h"

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "manifest/manifest.h"
#include "rollout/window.h"

namespace meridian {

std::string FlagOf(std::string_view key) {
  std::string flag = "--" + std::string(key);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

namespace {

constexpr int kThreadsMax = 1024;
constexpr int64_t kTimeoutMsMax = 3'600'000;

// What a setting of type T must be, for an error message.
template <typename T>
constexpr const char* Kind() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  return "an integer";
}

// No setting is text for people (paths, URLs, names, an address): a control
// character in one is a mistake, such as a newline pasted into a path.
bool HasControlCharacter(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// Sets *out to `key`'s value when the table has it; InvalidArgument when it
// holds another type (or an integer out of T's range, or a string with a
// control character).
template <typename T>
Status ReadSetting(const toml::table& t, std::string_view key, const std::string& source, T* out) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return Status::Ok();
  // toml++ would read an integer as true or false, and a float as an integer.
  const bool right_kind = std::is_same_v<T, bool>          ? node->is_boolean()
                          : std::is_same_v<T, std::string> ? node->is_string()
                                                           : node->is_integer();
  std::optional<T> value = right_kind ? node->value<T>() : std::nullopt;
  if (!value) return Status::InvalidArgument(fmt::format("{}: {} must be {}", source, key, Kind<T>()));
  if constexpr (std::is_same_v<T, std::string>) {
    if (HasControlCharacter(*value)) {
      return Status::InvalidArgument(fmt::format("{}: {} holds a control character", source, key));
    }
  }
  *out = std::move(*value);
  return Status::Ok();
}

}  // namespace

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
  // Each setting read as the type it has: a value of another type is an
  // error, never silently the default. A flag given wins over the file (the
  // file's value is checked all the same).
  auto setting = [&](std::string_view key, auto& field, std::string_view flag = {}) -> Status {
    auto value = field;
    MERIDIAN_RETURN_IF_ERROR(ReadSetting(t, key, source, &value));
    if (flag.empty() || unset(flag)) field = std::move(value);
    return Status::Ok();
  };
  MERIDIAN_RETURN_IF_ERROR(setting("data", o.data, "--data"));
  MERIDIAN_RETURN_IF_ERROR(setting("listen", o.listen, "--listen"));
  MERIDIAN_RETURN_IF_ERROR(setting("threads", o.threads, "--threads"));
  MERIDIAN_RETURN_IF_ERROR(setting("role", o.role, "--role"));
  MERIDIAN_RETURN_IF_ERROR(setting("region", o.region, "--region"));
  MERIDIAN_RETURN_IF_ERROR(setting("jurisdiction", o.jurisdiction, "--jurisdiction"));
  MERIDIAN_RETURN_IF_ERROR(setting("upstream_token_file", o.upstream_token_file, "--upstream-token-file"));
  for (const TlsSetting& s : kTlsSettings) MERIDIAN_RETURN_IF_ERROR(setting(s.key, o.*s.field, FlagOf(s.key)));
  MERIDIAN_RETURN_IF_ERROR(
      setting("upstream_allow_insecure_http", o.upstream_allow_insecure_http, "--upstream-allow-insecure-http"));
  if (const toml::node* upstream = t.get("upstream")) {
    std::vector<std::string> urls;
    if (const toml::array* list = upstream->as_array()) {
      for (const auto& url : *list) {
        if (!url.is_string()) return Status::InvalidArgument(source + ": upstream must be a list of URLs");
        urls.push_back(*url.value<std::string>());
        if (HasControlCharacter(urls.back())) return Status::InvalidArgument(source + ": upstream holds a control character");
      }
    } else if (std::optional<std::string> url = upstream->value<std::string>()) {
      if (HasControlCharacter(*url)) return Status::InvalidArgument(source + ": upstream holds a control character");
      urls.push_back(*url);
    } else {
      return Status::InvalidArgument(source + ": upstream must be a URL or a list of URLs");
    }
    if (unset("--upstream")) o.upstream = std::move(urls);
  }
  if (o.threads < 0 || o.threads > kThreadsMax) {
    return Status::InvalidArgument(fmt::format("{}: threads must be 0 (one per core) to {}", source, kThreadsMax));
  }
  MERIDIAN_RETURN_IF_ERROR(setting("head_timeout_ms", o.head_timeout_ms));
  MERIDIAN_RETURN_IF_ERROR(setting("body_timeout_ms", o.body_timeout_ms));
  if (o.head_timeout_ms < 1 || o.body_timeout_ms < 1 || o.head_timeout_ms > kTimeoutMsMax ||
      o.body_timeout_ms > kTimeoutMsMax) {
    return Status::InvalidArgument(fmt::format("{}: timeouts must be 1 ms to {} ms (an hour)", source, kTimeoutMsMax));
  }
  MERIDIAN_RETURN_IF_ERROR(setting("connections_max", o.connections_max));
  if (o.connections_max < 1 || o.connections_max > kConnectionsMax) {
    return Status::InvalidArgument(fmt::format("{}: connections_max must be 1 to {}", source, kConnectionsMax));
  }
  if (const toml::node* zones = t.get("time_zones")) {
    const toml::table* table = zones->as_table();
    if (table == nullptr) return Status::InvalidArgument(source + ": time_zones must be a table of region = \"Zone\"");
    for (const auto& [region, zone] : *table) {
      if (region.str() != "*" && !IsValidRegionOrProfile(region.str())) {  // "*": the zone of every other region
        return Status::InvalidArgument(fmt::format("{}: time_zones: '{}' is not a region name (or *)", source, region.str()));
      }
      std::optional<std::string> name = zone.value<std::string>();
      if (!name) return Status::InvalidArgument(source + ": time_zones." + std::string(region.str()) + " must be a zone name");
      if (Status st = CheckTimeZone(*name); !st.ok()) return Status::InvalidArgument(source + ": time_zones: " + st.message());
      o.time_zones[std::string(region.str())] = *name;
    }
  }
  MERIDIAN_RETURN_IF_ERROR(setting("state_expiry_ms", o.state_expiry_ms));
  MERIDIAN_RETURN_IF_ERROR(setting("state_refresh_ms", o.state_refresh_ms));
  if (o.state_expiry_ms < 1000 || o.state_refresh_ms < 1 || o.state_refresh_ms >= o.state_expiry_ms) {
    return Status::InvalidArgument(source + ": state_expiry_ms must be at least 1000 and above state_refresh_ms (at least 1)");
  }
  MERIDIAN_RETURN_IF_ERROR(setting("credential_lifetime_ms", o.credential_lifetime_ms));
  if (o.credential_lifetime_ms < 10'000 || o.credential_lifetime_ms > 30ll * 24 * 3600 * 1000) {
    return Status::InvalidArgument(source + ": credential_lifetime_ms must be 10000 (10 s) to 30 days");
  }
  DeltaServiceOptions& d = o.deltas;
  MERIDIAN_RETURN_IF_ERROR(setting("delta_previous_versions", d.previous_versions));
  MERIDIAN_RETURN_IF_ERROR(setting("delta_threads", d.encoder.threads));
  auto artifact_max = static_cast<int64_t>(d.artifact_bytes_max);
  MERIDIAN_RETURN_IF_ERROR(setting("delta_artifact_bytes_max", artifact_max));
  auto memory_max = static_cast<int64_t>(d.encoder.memory_bytes_max);
  MERIDIAN_RETURN_IF_ERROR(setting("delta_memory_bytes_max", memory_max));
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
  if (memory_max < static_cast<int64_t>(kDeltaEncoderMemoryMin) || memory_max > (int64_t{1} << 40)) {
    return Status::InvalidArgument(source + ": delta_memory_bytes_max must be 16 MiB to 1 TiB");
  }
  d.encoder.memory_bytes_max = static_cast<uint64_t>(memory_max);
  RetentionOptions& r = o.retention;
  auto keep = static_cast<int64_t>(r.keep_versions);
  MERIDIAN_RETURN_IF_ERROR(setting("keep_versions", keep));
  MERIDIAN_RETURN_IF_ERROR(setting("collect_interval_ms", r.interval_ms));
  MERIDIAN_RETURN_IF_ERROR(setting("unreferenced_grace_ms", o.unreferenced_grace_ms));
  MERIDIAN_RETURN_IF_ERROR(setting("report_ids_ms", r.report_ids_ms));
  constexpr int64_t kDayMs = 24ll * 3600 * 1000;
  if (keep < 0 || keep > 1'000'000) return Status::InvalidArgument(source + ": keep_versions must be 0 (all) to 1000000");
  r.keep_versions = static_cast<size_t>(keep);
  if (r.interval_ms != 0 && (r.interval_ms < 1000 || r.interval_ms > 30 * kDayMs)) {
    return Status::InvalidArgument(source + ": collect_interval_ms must be 0 (on request only) or 1000 to 30 days");
  }
  if (o.unreferenced_grace_ms < 1000 || o.unreferenced_grace_ms > 30 * kDayMs) {
    return Status::InvalidArgument(source + ": unreferenced_grace_ms must be 1000 to 30 days");
  }
  if (r.report_ids_ms < 1000 || r.report_ids_ms > 3650 * kDayMs) {
    return Status::InvalidArgument(source + ": report_ids_ms must be 1000 to 3650 days");
  }
  MERIDIAN_RETURN_IF_ERROR(setting("chunk_cache_bytes", o.chunk_cache_bytes));
  if (o.chunk_cache_bytes < 0 || o.chunk_cache_bytes > (int64_t{1} << 40)) {
    return Status::InvalidArgument(source + ": chunk_cache_bytes must be 0 (no cache) to 1 TiB");
  }
  MERIDIAN_RETURN_IF_ERROR(setting("scrub_interval_ms", o.scrub_interval_ms));
  if (o.scrub_interval_ms != 0 && (o.scrub_interval_ms < 1000 || o.scrub_interval_ms > 365 * kDayMs)) {
    return Status::InvalidArgument(source + ": scrub_interval_ms must be 0 (never) or 1000 to 365 days");
  }
  // Unset: LZMA literals (smallest). A level: zstd literals, faster to make and apply.
  if (t.contains("delta_literal_level")) {
    int level = 0;
    MERIDIAN_RETURN_IF_ERROR(setting("delta_literal_level", level));
    if (level < 1 || level > 22) return Status::InvalidArgument(source + ": delta_literal_level must be 1 to 22");
    d.encoder.literal_codec = LiteralCodec::kZstd;
    d.encoder.literal_level = level;
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
