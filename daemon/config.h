// meridiand's settings: the flags and the --config file (TOML) that give
// them, read into ServeOptions. Pure: the file is read by the caller, so that
// its text can be checked (and fuzzed) without a file or a command line.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "daemon/deltas.h"
#include "daemon/enrolment.h"
#include "daemon/http_server.h"
#include "daemon/retention.h"
#include "daemon/rollouts.h"
#include "store/store.h"

namespace meridian {

inline constexpr const char* kDefaultData = "./data";
inline constexpr const char* kDefaultListen = "127.0.0.1:7400";
// A --config file is a few settings; a larger one is refused unread.
inline constexpr uint64_t kServeConfigBytesMax = 1u << 20;
// The most a connections_max setting may say.
inline constexpr int64_t kConnectionsMax = 1 << 20;

struct ServeOptions {
  std::string data = kDefaultData;
  std::string listen = kDefaultListen;
  std::string config;
  std::string port_file;
  int threads = 0;
  int64_t head_timeout_ms = HttpServerOptions{}.head_timeout.count();
  int64_t body_timeout_ms = HttpServerOptions{}.body_timeout.count();
  int64_t connections_max = HttpServerOptions{}.connections_max;  // fewer when the open-file limit is lower
  int64_t state_expiry_ms = RolloutsOptions{}.state_expiry_ms;    // lifetime of a signed channel state
  int64_t state_refresh_ms = RolloutsOptions{}.state_refresh_ms;  // re-signed when less than this is left
  int64_t credential_lifetime_ms = EnrolmentOptions{}.credential_lifetime_ms;  // of a terminal credential
  std::map<std::string, std::string> time_zones;                  // region ("*": any other) -> IANA zone
  std::string role = "origin";
  std::string region;                  // role region: the region served
  std::string jurisdiction;            // role origin: the region whose resident models it may hold ("": none)
  std::vector<std::string> upstream;   // role region: upstream URLs, in order of preference
  std::string upstream_token_file;     // role region: the upstream's mirror.token
  DeltaServiceOptions deltas;          // the delta_* settings
  RetentionOptions retention;          // keep_versions, collect_interval_ms, report_ids_ms
  int64_t unreferenced_grace_ms = StoreOptions{}.unreferenced_grace_ms;
  int64_t chunk_cache_bytes = static_cast<int64_t>(StoreOptions{}.chunk_cache_bytes);
  int64_t scrub_interval_ms = 7ll * 24 * 3600 * 1000;  // between re-hashes of the whole store; 0: never
  // HTTPS: certificate chain and key (PEM); client certificates checked
  // against tls_client_ca, "none", "optional" (the default with a CA) or "required".
  std::string tls_certificate, tls_key, tls_client_ca, tls_client_certificates;
  // Role region: how the upstream is trusted, and the certificate shown to it.
  std::string upstream_ca_file, upstream_client_certificate, upstream_client_key;
  bool upstream_allow_insecure_http = false;
};

// The keys of --config, in the order --help lists them.
inline constexpr std::array<std::string_view, 34> kConfigKeys = {
    "data", "listen", "threads", "head_timeout_ms", "body_timeout_ms", "connections_max", "state_expiry_ms", "state_refresh_ms",
    "credential_lifetime_ms", "role",
    "region", "jurisdiction", "upstream", "upstream_token_file", "upstream_ca_file", "upstream_client_certificate",
    "upstream_client_key", "upstream_allow_insecure_http", "tls_certificate", "tls_key", "tls_client_ca",
    "tls_client_certificates", "delta_previous_versions", "delta_threads", "delta_literal_level",
    "delta_artifact_bytes_max", "delta_memory_bytes_max", "time_zones", "keep_versions", "collect_interval_ms", "unreferenced_grace_ms",
    "report_ids_ms", "chunk_cache_bytes", "scrub_interval_ms"};

// The TLS settings: a --config key and the flag of the same name
// (tls_key: --tls-key), which wins.
struct TlsSetting {
  const char* key;
  std::string ServeOptions::*field;
  const char* help;
};
inline constexpr TlsSetting kTlsSettings[] = {
    {"tls_certificate", &ServeOptions::tls_certificate, "HTTPS: certificate chain file (PEM), reloaded on SIGHUP"},
    {"tls_key", &ServeOptions::tls_key, "HTTPS: private key file (PEM) of the certificate"},
    {"tls_client_ca", &ServeOptions::tls_client_ca, "HTTPS: CA file (PEM) that signs client certificates (mTLS)"},
    {"tls_client_certificates", &ServeOptions::tls_client_certificates,
     "none, optional (default with --tls-client-ca) or required"},
    {"upstream_ca_file", &ServeOptions::upstream_ca_file, "role region: CA file (PEM) the upstream's certificate is checked against"},
    {"upstream_client_certificate", &ServeOptions::upstream_client_certificate,
     "role region: client certificate (PEM) shown to the upstream"},
    {"upstream_client_key", &ServeOptions::upstream_client_key, "role region: its private key (PEM)"},
};

// The flag of a --config key: tls_key -> --tls-key.
std::string FlagOf(std::string_view key);

// Applies the settings of a --config file's text (TOML) to `o`; `source`
// (the file's name) prefixes every error. A setting whose flag the command
// line gave (`flag_given("--listen")` true) keeps the value in `o`: flags
// win. InvalidArgument for a syntax error, an unknown key, a wrong type or an
// out-of-range value; `o` may then be partly changed.
Status ApplyConfigText(ServeOptions& o, std::string_view toml_text, std::string_view source,
                       const std::function<bool(std::string_view flag)>& flag_given);

// The server's TLS settings from the flags and keys; plain HTTP without a
// certificate. InvalidArgument for settings that do not fit together.
Result<TlsServerOptions> ServerTls(const ServeOptions& o);

// --listen HOST:PORT (HOST may be a bracketed IPv6 address); false when malformed.
bool SplitHostPort(const std::string& listen, std::string* host, uint16_t* port);

}  // namespace meridian
