// libFuzzer target for the TOML configuration files, over the same bytes:
// meridian-agent's (agent/config.h ParseAgentConfig) and meridiand's --config
// (daemon/config.h ApplyConfigText, then ServerTls and SplitHostPort on what
// it set). Each must answer a value or an error, never crash or throw; a
// configuration that parses must survive its own round trip: written back as
// TOML with every key (toml++'s writer) it parses to the same settings.
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "agent/config.h"
#include "daemon/config.h"

using namespace meridian;

namespace {

template <typename List>
toml::array TomlArray(const List& items) {
  toml::array out;
  for (const auto& item : items) out.push_back(item);
  return out;
}

std::string TomlText(const toml::table& t) {
  std::ostringstream out;
  out << t;
  return out.str();
}

// Every key of docs/agent.md, so that parsing it back sets every field.
std::string AgentConfigToml(const AgentConfig& c) {
  toml::table t;
  for (auto [key, value] : {std::pair{"id", &c.id}, {"profile", &c.profile}, {"region", &c.region}, {"root", &c.root},
                            {"state", &c.state}, {"key_file", &c.key_file}, {"ca_file", &c.tls.ca_file},
                            {"client_certificate", &c.tls.client_certificate}, {"client_key", &c.tls.client_key}}) {
    t.insert(key, *value);
  }
  t.insert("allow_insecure_http", c.tls.allow_insecure_http);
  t.insert("servers", TomlArray(c.servers));
  t.insert("credential_servers", TomlArray(c.credential_servers));
  for (auto [key, value] : {std::pair{"bandwidth_limit_bytes_per_s", c.bandwidth_limit_bytes_per_s},
                            {"poll_wait_s", c.poll_wait_s}, {"backoff_initial_ms", c.backoff_initial_ms},
                            {"backoff_max_ms", c.backoff_max_ms}, {"connect_timeout_ms", c.connect_timeout_ms},
                            {"request_timeout_ms", c.request_timeout_ms}, {"stall_timeout_ms", c.stall_timeout_ms},
                            {"health_check_timeout_ms", c.health_check_timeout_ms},
                            {"health_interval_ms", c.health_interval_ms}}) {
    t.insert(key, value);
  }
  toml::array models;
  for (const ModelConfig& m : c.models) {
    models.push_back(toml::table{{"name", m.name}, {"channel", m.channel}, {"health_check", m.health_check}});
  }
  t.insert("model", std::move(models));
  return TomlText(t);
}

// Every key of kConfigKeys, so that parsing it back sets every setting
// (delta_literal_level only with zstd literals: unset means LZMA).
std::string ServeConfigToml(const ServeOptions& o) {
  toml::table t;
  for (auto [key, value] : {std::pair{"data", &o.data}, {"listen", &o.listen}, {"role", &o.role}, {"region", &o.region},
                            {"jurisdiction", &o.jurisdiction}, {"upstream_token_file", &o.upstream_token_file}}) {
    t.insert(key, *value);
  }
  for (const TlsSetting& s : kTlsSettings) t.insert(s.key, o.*s.field);
  t.insert("upstream", TomlArray(o.upstream));
  t.insert("upstream_allow_insecure_http", o.upstream_allow_insecure_http);
  t.insert("threads", o.threads);
  for (auto [key, value] : {std::pair{"head_timeout_ms", o.head_timeout_ms}, {"body_timeout_ms", o.body_timeout_ms},
                            {"state_expiry_ms", o.state_expiry_ms}, {"state_refresh_ms", o.state_refresh_ms},
                            {"credential_lifetime_ms", o.credential_lifetime_ms},
                            {"keep_versions", static_cast<int64_t>(o.retention.keep_versions)},
                            {"collect_interval_ms", o.retention.interval_ms},
                            {"unreferenced_grace_ms", o.unreferenced_grace_ms},
                            {"report_ids_ms", o.retention.report_ids_ms},
                            {"delta_artifact_bytes_max", static_cast<int64_t>(o.deltas.artifact_bytes_max)},
                            {"delta_memory_bytes_max", static_cast<int64_t>(o.deltas.encoder.memory_bytes_max)}}) {
    t.insert(key, value);
  }
  t.insert("delta_previous_versions", o.deltas.previous_versions);
  t.insert("delta_threads", o.deltas.encoder.threads);
  if (o.deltas.encoder.literal_codec == LiteralCodec::kZstd) {
    t.insert("delta_literal_level", o.deltas.encoder.literal_level);
  }
  toml::table zones;
  for (const auto& [region, zone] : o.time_zones) zones.insert(region, zone);
  t.insert("time_zones", std::move(zones));
  return TomlText(t);
}

bool NoFlags(std::string_view) { return false; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (Result<AgentConfig> c = ParseAgentConfig(text); c.ok()) {
    const std::string written = AgentConfigToml(*c);
    Result<AgentConfig> again = ParseAgentConfig(written);
    if (!again.ok() || AgentConfigToml(*again) != written) std::abort();
  }
  ServeOptions o;
  if (ApplyConfigText(o, text, "meridiand.toml", NoFlags).ok()) {
    (void)ServerTls(o);
    std::string host;
    uint16_t port = 0;
    (void)SplitHostPort(o.listen, &host, &port);
    const std::string written = ServeConfigToml(o);
    ServeOptions again;
    if (!ApplyConfigText(again, written, "meridiand.toml", NoFlags).ok() || ServeConfigToml(again) != written) {
      std::abort();
    }
  }
  return 0;
}
