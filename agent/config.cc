// TOML configuration parsing for meridian-agent (keys: docs/agent.md).
#include "agent/config.h"

#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "base/file.h"
#include "manifest/manifest.h"
#include "rollout/rollout.h"

namespace meridian {
namespace {

Status CheckKeys(const toml::table& t, const std::set<std::string>& allowed, std::string_view where) {
  for (const auto& [key, value] : t) {
    if (!allowed.count(std::string(key.str()))) {
      return Status::InvalidArgument(fmt::format("{}unknown key '{}' (allowed: {})", where, key.str(),
                                                 fmt::join(allowed, ", ")));
    }
  }
  return Status::Ok();
}

Status GetString(const toml::table& t, const char* key, std::string* out, std::string_view where) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return Status::Ok();
  if (!n->is_string()) return Status::InvalidArgument(fmt::format("{}'{}' must be a string", where, key));
  *out = n->as_string()->get();
  return Status::Ok();
}

Status GetBool(const toml::table& t, const char* key, bool* out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return Status::Ok();
  if (!n->is_boolean()) return Status::InvalidArgument(fmt::format("'{}' must be true or false", key));
  *out = n->as_boolean()->get();
  return Status::Ok();
}

Status GetInt(const toml::table& t, const char* key, int64_t min, int64_t max, int64_t* out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return Status::Ok();
  if (!n->is_integer()) return Status::InvalidArgument(fmt::format("'{}' must be an integer", key));
  int64_t v = n->as_integer()->get();
  if (v < min || v > max) return Status::InvalidArgument(fmt::format("'{}' must be in [{}, {}]", key, min, max));
  *out = v;
  return Status::Ok();
}

Status Require(bool present, const char* key) {
  return present ? Status::Ok() : Status::InvalidArgument(fmt::format("'{}' is required", key));
}

}  // namespace

Result<AgentConfig> ParseAgentConfig(std::string_view toml_text) {
  toml::table t;
  try {
    t = toml::parse(toml_text);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(fmt::format("config line {}: {}", e.source().begin.line, e.description()));
  }
  static const std::set<std::string> kTop = {"id", "profile", "region", "servers", "root", "state", "key_file", "model",
                                             "bandwidth_limit_bytes_per_s", "poll_wait_s", "backoff_initial_ms",
                                             "backoff_max_ms", "connect_timeout_ms", "request_timeout_ms",
                                             "stall_timeout_ms", "health_check_timeout_ms", "health_interval_ms",
                                             "ca_file", "client_certificate", "client_key", "allow_insecure_http",
                                             "credential_servers"};
  if (t.contains("token")) {
    return Status::InvalidArgument(
        "'token': a shared terminal token speaks for no terminal any more; each agent has its own key (key_file, "
        "made at first start) and is enrolled: see docs/agent.md");
  }
  MERIDIAN_RETURN_IF_ERROR(CheckKeys(t, kTop, ""));
  AgentConfig c;
  for (auto [key, out] : {std::pair{"id", &c.id}, {"profile", &c.profile}, {"region", &c.region},
                          {"root", &c.root}, {"state", &c.state}, {"key_file", &c.key_file},
                          {"ca_file", &c.tls.ca_file}, {"client_certificate", &c.tls.client_certificate},
                          {"client_key", &c.tls.client_key}}) {
    MERIDIAN_RETURN_IF_ERROR(GetString(t, key, out, ""));
  }
  MERIDIAN_RETURN_IF_ERROR(GetBool(t, "allow_insecure_http", &c.tls.allow_insecure_http));
  for (auto [key, out] : {std::pair{"servers", &c.servers}, {"credential_servers", &c.credential_servers}}) {
    const toml::node* list = t.get(key);
    if (list == nullptr) continue;
    if (!list->is_array()) return Status::InvalidArgument(fmt::format("'{}' must be an array of URLs", key));
    for (const toml::node& s : *list->as_array()) {
      if (!s.is_string()) return Status::InvalidArgument(fmt::format("'{}' must be an array of URLs", key));
      out->push_back(s.as_string()->get());
    }
  }

  const toml::node* models = t.get("model");
  MERIDIAN_RETURN_IF_ERROR(Require(models != nullptr, "[[model]]"));
  if (!models->is_array_of_tables()) return Status::InvalidArgument("'model' must be [[model]] tables");
  static const std::set<std::string> kModel = {"name", "channel", "health_check"};
  for (const toml::node& n : *models->as_array()) {
    const toml::table& m = *n.as_table();
    MERIDIAN_RETURN_IF_ERROR(CheckKeys(m, kModel, "[[model]]: "));
    ModelConfig mc;
    MERIDIAN_RETURN_IF_ERROR(GetString(m, "name", &mc.name, "[[model]]: "));
    MERIDIAN_RETURN_IF_ERROR(GetString(m, "channel", &mc.channel, "[[model]]: "));
    MERIDIAN_RETURN_IF_ERROR(GetString(m, "health_check", &mc.health_check, "[[model]]: "));
    if (!IsValidModelName(mc.name)) return Status::InvalidArgument("[[model]]: 'name' is missing or invalid");
    if (!IsValidRegionOrProfile(mc.channel)) return Status::InvalidArgument("[[model]]: 'channel' is invalid");
    for (const ModelConfig& other : c.models) {
      if (other.name == mc.name) return Status::InvalidArgument(fmt::format("model '{}' is listed twice", mc.name));
    }
    c.models.push_back(std::move(mc));
  }
  if (c.models.empty() || c.models.size() > kAgentModelsMax) {
    return Status::InvalidArgument(fmt::format("list 1 to {} [[model]] tables", kAgentModelsMax));
  }
  constexpr int64_t kHourMs = 3'600'000;
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "bandwidth_limit_bytes_per_s", 0, INT64_MAX, &c.bandwidth_limit_bytes_per_s));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "poll_wait_s", 0, kAgentPollWaitSecondsMax, &c.poll_wait_s));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "backoff_initial_ms", 1, kHourMs, &c.backoff_initial_ms));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "backoff_max_ms", 1, 24 * kHourMs, &c.backoff_max_ms));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "connect_timeout_ms", 1, kHourMs, &c.connect_timeout_ms));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "request_timeout_ms", 1, 24 * kHourMs, &c.request_timeout_ms));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "stall_timeout_ms", 1000, kHourMs, &c.stall_timeout_ms));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "health_check_timeout_ms", 1, kHourMs, &c.health_check_timeout_ms));
  MERIDIAN_RETURN_IF_ERROR(GetInt(t, "health_interval_ms", 0, kAgentHealthIntervalMsMax, &c.health_interval_ms));
  if (c.health_interval_ms != 0 && c.health_interval_ms < kAgentHealthIntervalMsMin) {
    return Status::InvalidArgument(
        fmt::format("'health_interval_ms' must be 0 (off) or at least {}", kAgentHealthIntervalMsMin));
  }
  MERIDIAN_RETURN_IF_ERROR(ValidateAgentConfig(c));
  if (c.backoff_max_ms < c.backoff_initial_ms) {
    return Status::InvalidArgument("'backoff_max_ms' must be at least 'backoff_initial_ms'");
  }
  // A long poll must end before the request timeout cuts it.
  if (c.poll_wait_s * 1000 >= c.request_timeout_ms) {
    return Status::InvalidArgument("'poll_wait_s' must be shorter than 'request_timeout_ms'");
  }
  return c;
}

Status ValidateAgentConfig(const AgentConfig& c) {
  MERIDIAN_RETURN_IF_ERROR(Require(!c.id.empty(), "id"));
  MERIDIAN_RETURN_IF_ERROR(Require(!c.root.empty(), "root"));
  MERIDIAN_RETURN_IF_ERROR(Require(!c.state.empty(), "state"));
  MERIDIAN_RETURN_IF_ERROR(Require(!c.servers.empty(), "servers"));
  if (!IsValidTerminalId(c.id)) return Status::InvalidArgument("'id' is not a valid terminal id");
  if (!c.profile.empty() && !IsValidRegionOrProfile(c.profile)) return Status::InvalidArgument("'profile' is invalid");
  if (!c.region.empty() && !IsValidRegionOrProfile(c.region)) return Status::InvalidArgument("'region' is invalid");
  if (c.servers.size() > kAgentServersMax || c.credential_servers.size() > kAgentServersMax) {
    return Status::InvalidArgument(fmt::format("'servers' and 'credential_servers' list 1 to {} URLs", kAgentServersMax));
  }
  for (const std::vector<std::string>* list : {&c.servers, &c.credential_servers}) {
    for (const std::string& url : *list) {
      if (!url.starts_with("http://") && !url.starts_with("https://")) {
        return Status::InvalidArgument(fmt::format("server '{}' must start with http:// or https://", url));
      }
      // The credential or certificate must not cross a network in clear text.
      MERIDIAN_RETURN_IF_ERROR(CheckTransport(url, HttpClientOptions{.bearer_token = "credential", .tls = c.tls}));
    }
  }
  if (c.bandwidth_limit_bytes_per_s < 0) return Status::InvalidArgument("'bandwidth_limit_bytes_per_s' must be >= 0");
  return Status::Ok();
}

Result<AgentConfig> LoadAgentConfig(const std::string& path) {
  Result<std::string> text = ReadFileToString(path, kAgentConfigBytesMax);
  if (!text.ok()) return text.status();
  Result<AgentConfig> c = ParseAgentConfig(*text);
  if (!c.ok()) return Status::InvalidArgument(path + ": " + c.status().message());
  return c;
}

}  // namespace meridian
