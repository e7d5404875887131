// The agent's state files, text <-> value (see state_files.h).
#include "agent/state_files.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/json.h"
#include "trust/terminal_credential.h"

namespace meridian {
namespace {

using Json = nlohmann::json;

bool IsCredentialChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
         c == '=' || c == '.';
}

}  // namespace

std::string AgentStateToJson(const AgentState& s) {
  Json failed_json = Json::object();
  for (const auto& [model, digests] : s.failed) {
    Json& list = failed_json[model] = Json::array();
    for (const Digest& d : digests) list.push_back(d.ToString());
  }
  // last_error holds what a server or a proxy said, in whatever bytes it chose.
  return DumpJson(Json{{"state_versions", s.state_versions}, {"failed", failed_json}, {"last_error", s.last_error},
                       {"last_error_at", s.last_error_at}, {"last_success_at", s.last_success_at},
                       {"downloaded_bytes", s.downloaded_bytes}, {"health_checked_ms", s.health_checked_ms}},
                  1);
}

Result<AgentState> ParseAgentState(std::string_view text) {
  Result<Json> parsed = ParseJsonObject(text, kAgentStateBytesMax, "agent.json");
  if (!parsed.ok()) return Status::Corruption(parsed.status().message());
  AgentState p;
  JsonFields f(*parsed, "agent.json", UnknownFields::kIgnore);
  const Json* versions = f.Object("state_versions", true);
  const Json* failed = f.Object("failed", true);
  const Json* checked = f.Object("health_checked_ms");  // absent in an older agent's file
  f.String("last_error", &p.last_error, true);
  f.String("last_error_at", &p.last_error_at, true);
  f.String("last_success_at", &p.last_success_at, true);
  f.Uint("downloaded_bytes", &p.downloaded_bytes, true);
  if (Status st = f.Finish(); !st.ok()) return Status::Corruption(st.message());
  JsonFields vf(*versions, "agent.json state_versions", UnknownFields::kIgnore);
  for (const auto& item : versions->items()) vf.Uint(item.key(), &p.state_versions[item.key()]);
  JsonFields ff(*failed, "agent.json failed", UnknownFields::kIgnore);
  std::map<std::string, std::vector<std::string>> failed_text;
  for (const auto& item : failed->items()) ff.Strings(item.key(), &failed_text[item.key()]);
  static const Json kNone = Json::object();
  const Json& checked_json = checked != nullptr ? *checked : kNone;
  JsonFields hf(checked_json, "agent.json health_checked_ms", UnknownFields::kIgnore);
  for (const auto& item : checked_json.items()) {
    // Not negative: the schedule subtracts times, which must not overflow.
    uint64_t ms = 0;
    hf.Uint(item.key(), &ms, false, INT64_MAX);
    p.health_checked_ms[item.key()] = static_cast<int64_t>(ms);
  }
  for (const JsonFields* m : {&vf, &ff, &hf}) {
    if (Status st = m->Finish(); !st.ok()) return Status::Corruption(st.message());
  }
  for (const auto& [model, digests] : failed_text) {
    for (const std::string& digest : digests) {
      Result<Digest> d = Digest::Parse(digest);
      if (!d.ok()) return Status::Corruption("agent.json: failed " + model + ": " + d.status().message());
      p.failed[model].push_back(*d);
    }
  }
  return p;
}

std::string DownloadJobToJson(const DownloadJob& job) {
  return Json{{"path", job.path}, {"digest", job.digest.ToString()}, {"size", job.size}}.dump();
}

Result<DownloadJob> ParseDownloadJob(std::string_view text) {
  Result<Json> parsed = ParseJsonObject(text, kDownloadJobBytesMax, "job.json");
  if (!parsed.ok()) return Status::Corruption(parsed.status().message());
  DownloadJob job;
  JsonFields f(*parsed, "job.json", UnknownFields::kIgnore);
  f.String("path", &job.path, true);
  f.Digest("digest", &job.digest, true);
  f.Uint("size", &job.size, true);
  if (Status st = f.Finish(); !st.ok()) return Status::Corruption(st.message());
  return job;
}

std::string StoredCredentialToJson(const StoredCredential& c) {
  return Json{{"credential", c.credential}, {"expires_ms", c.expires_ms}, {"renew_ms", c.renew_ms}}.dump();
}

Result<StoredCredential> ParseStoredCredential(std::string_view text) {
  Result<Json> parsed = ParseJsonObject(text, kStoredCredentialBytesMax, "credential.json");
  if (!parsed.ok()) return Status::Corruption(parsed.status().message());
  StoredCredential c;
  JsonFields f(*parsed, "credential.json", UnknownFields::kIgnore);
  f.String("credential", &c.credential, true);
  f.Int64("expires_ms", &c.expires_ms, true);
  f.Int64("renew_ms", &c.renew_ms, true);
  if (Status st = f.Finish(); !st.ok()) return Status::Corruption(st.message());
  if (!IsWellFormedCredential(c.credential)) return Status::Corruption("credential.json: the credential is malformed");
  return c;
}

bool IsWellFormedCredential(std::string_view credential) {
  return LooksLikeCredential(credential) && credential.size() <= kCredentialBytesMax &&
         std::all_of(credential.begin(), credential.end(), IsCredentialChar);
}

}  // namespace meridian
