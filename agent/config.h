// The agent's configuration: a TOML file (keys documented in docs/agent.md)
// parsed into AgentConfig, with every unknown key refused so that a typo never
// silently falls back to a default.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "client/http_client.h"

namespace meridian {

inline constexpr size_t kAgentModelsMax = 64;
inline constexpr size_t kAgentServersMax = 16;
inline constexpr uint64_t kAgentConfigBytesMax = 1u << 20;
inline constexpr int64_t kAgentPollWaitSecondsMax = 3600;
// Periodic health checks: 0 (off) or within these bounds. More often than a
// second would make the check the terminal's main work.
inline constexpr int64_t kAgentHealthIntervalMsMin = 1'000;
inline constexpr int64_t kAgentHealthIntervalMsMax = 7ll * 24 * 3'600'000;

struct ModelConfig {
  std::string name;          // model name (manifest/ IsValidModelName)
  std::string channel = "stable";
  std::string health_check;  // shell command; "{path}" becomes the installed file's path; empty = none
};

struct AgentConfig {
  std::string id;                    // terminal id (rollout/ IsValidTerminalId)
  std::string profile;               // device profile; may be empty
  std::string region;                // region; may be empty
  std::vector<std::string> servers;  // base URLs, tried in order
  std::string root;                  // initial trusted root envelope (used until the state dir holds one)
  std::string state;                 // state directory
  // The terminal's own Ed25519 key (signing/ key file, 0600), made at first
  // start when missing; empty: STATE/terminal.key. With it the agent gets its
  // credential; with a client certificate instead, it needs none.
  std::string key_file;
  // Where credentials are asked for (the origin issues them); empty: servers.
  std::vector<std::string> credential_servers;
  TlsClientOptions tls;              // ca_file, client_certificate, client_key, allow_insecure_http
  std::vector<ModelConfig> models;
  int64_t bandwidth_limit_bytes_per_s = 0;  // 0 = unlimited
  int64_t poll_wait_s = 60;                 // long-poll wait asked of the server
  int64_t backoff_initial_ms = 1'000;       // first retry delay after an error
  int64_t backoff_max_ms = 300'000;         // retry delays never exceed this
  int64_t connect_timeout_ms = 5'000;
  int64_t request_timeout_ms = 3'600'000;   // a whole download at the bandwidth limit must fit
  // A request (a download) that receives nothing for this long fails, and
  // the next server is tried: a server that stopped sending would otherwise
  // hold the agent for request_timeout_ms. Long polls are exempt.
  int64_t stall_timeout_ms = 60'000;
  int64_t health_check_timeout_ms = 60'000;
  // How often the health check of the version each model runs is repeated and
  // reported, so the terminals still on a rollout's old version report too
  // (the daemon compares the two); 0 = only after a switch.
  int64_t health_interval_ms = 900'000;
};

// Parses TOML text. InvalidArgument naming the key for a syntax error, an
// unknown key, a wrong type, a missing required key (id, servers, root, state,
// at least one [[model]] with a name) or an out-of-range value.
Result<AgentConfig> ParseAgentConfig(std::string_view toml_text);
// The checks ParseAgentConfig runs on the top-level values, for a
// configuration changed by command-line flags after parsing.
Status ValidateAgentConfig(const AgentConfig& config);
// Reads and parses a file (at most kAgentConfigBytesMax).
Result<AgentConfig> LoadAgentConfig(const std::string& path);

}  // namespace meridian
