// The files of the agent's state directory that it reads back at start, after
// a clean stop as after a crash or a power loss (docs/agent.md, "State
// directory"): agent.json, credential.json and each model's staging/job.json.
// Pure text <-> value, so that what a damaged disk leaves is refused with an
// error and never crashes the agent; the agent reads and writes the files.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"

namespace meridian {

inline constexpr uint64_t kAgentStateBytesMax = 1u << 20;
inline constexpr uint64_t kDownloadJobBytesMax = 64u << 10;
inline constexpr uint64_t kStoredCredentialBytesMax = 64u << 10;

// What the agent remembers between runs (STATE/agent.json).
struct AgentState {
  std::map<std::string, uint64_t> state_versions;     // "<model>/<channel>" -> highest accepted
  std::map<std::string, std::vector<Digest>> failed;  // model -> artifacts that failed their health check
  std::string last_error;
  std::string last_error_at;
  std::string last_success_at;
  uint64_t downloaded_bytes = 0;                      // body bytes received for downloads, all time
  std::map<std::string, int64_t> health_checked_ms;   // model -> when its health check last ran (Unix ms, >= 0)
  bool operator==(const AgentState&) const = default;
};

std::string AgentStateToJson(const AgentState& state);
// Unknown fields are ignored: a newer agent may have written the file before
// a downgrade. Corruption for anything else AgentStateToJson would not write
// (health_checked_ms may be absent: an older agent's file).
Result<AgentState> ParseAgentState(std::string_view text);

// A download in progress (STATE/models/<name>/staging/job.json): what is
// being fetched and what it must hash to, so a restart resumes it with Range
// only when it is still the same thing.
struct DownloadJob {
  std::string path;   // URL path on the server
  Digest digest;      // of the complete body
  uint64_t size = 0;  // signed size of the body: never a byte more
  bool operator==(const DownloadJob&) const = default;
};

std::string DownloadJobToJson(const DownloadJob& job);
// Corruption when malformed (the download then starts over).
Result<DownloadJob> ParseDownloadJob(std::string_view text);

// The terminal's credential as the agent keeps it (STATE/credential.json).
struct StoredCredential {
  std::string credential;  // trust/terminal_credential.h: "mtc1.<base64>.<base64>", sent as a bearer token
  int64_t expires_ms = 0;
  int64_t renew_ms = 0;    // half its life: asked for again from then on
  bool operator==(const StoredCredential&) const = default;
};

std::string StoredCredentialToJson(const StoredCredential& credential);
// Whether `credential` is shaped like one (its prefix, at most
// kCredentialBytesMax, base64 and dots only): it goes into a request header,
// so one a server hands over is checked before it is used or kept.
bool IsWellFormedCredential(std::string_view credential);
// Corruption when malformed, or when the credential is not well formed. A
// damaged file costs one request for a new credential, nothing more.
Result<StoredCredential> ParseStoredCredential(std::string_view text);

}  // namespace meridian
