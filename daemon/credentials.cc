// Named credentials over the store (see credentials.h).
#include "daemon/credentials.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "daemon/data_dir.h"
#include "daemon/state_record.h"

namespace meridian {

namespace {

constexpr std::string_view kCredentialKeyPrefix = "credential/";
constexpr size_t kNameBytesMax = 64;

bool IsNameByte(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (!first && (c == '.' || c == '_' || c == '@' || c == '-'));
}

std::string RecordOf(const Credential& c, const Digest& token_sha256) {
  nlohmann::json j = {{"role", RoleName(c.role)},
                      {"token_sha256", token_sha256.ToString()},
                      {"created_ms", c.created_ms},
                      {"created_by", c.created_by}};
  if (c.revoked_ms) j["revoked_ms"] = *c.revoked_ms;
  return j.dump();
}

}  // namespace

bool IsValidCredentialName(std::string_view name) {
  static constexpr std::array<std::string_view, 5> kReserved = {"publisher", "operator", "terminal", "mirror", "gate"};
  if (name.empty() || name.size() > kNameBytesMax) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameByte(name[i], i == 0)) return false;
  }
  return std::find(kReserved.begin(), kReserved.end(), name) == kReserved.end();
}

Result<std::unique_ptr<Credentials>> Credentials::Open(Store& store, const Clock& clock, CredentialsOptions options) {
  std::unique_ptr<Credentials> c(new Credentials(store, clock, options));
  MERIDIAN_RETURN_IF_ERROR(c->Load());
  return c;
}

Status Credentials::Load() {
  Result<StateRecords> kv = store_.ScanState(kCredentialKeyPrefix);
  if (!kv.ok()) return kv.status();
  std::lock_guard lock(mu_);
  for (const auto& [key, value] : *kv) {
    Entry e;
    e.credential.name = key.substr(kCredentialKeyPrefix.size());
    nlohmann::json j = ParseStateRecord(value);
    if (!j.is_object() || !IsValidCredentialName(e.credential.name)) return Status::Corruption(key + ": malformed credential");
    JsonFields f(j, key, UnknownFields::kIgnore);
    std::string role;
    f.String("role", &role, true);
    f.Digest("token_sha256", &e.token_sha256, true);
    f.Int64("created_ms", &e.credential.created_ms);
    f.String("created_by", &e.credential.created_by);
    if (f.Find("revoked_ms") != nullptr) f.Int64("revoked_ms", &e.credential.revoked_ms.emplace());
    if (Status st = f.Finish(); !st.ok()) return Status::Corruption(st.message());
    if (role != RoleName(CallerRole::kPublisher) && role != RoleName(CallerRole::kOperator)) {
      return Status::Corruption(key + ": role must be publisher or operator");
    }
    e.credential.role = role == RoleName(CallerRole::kPublisher) ? CallerRole::kPublisher : CallerRole::kOperator;
    by_token_[e.token_sha256] = e.credential.name;
    by_name_[e.credential.name] = std::move(e);
  }
  return Status::Ok();
}

Result<std::string> Credentials::Create(std::string_view name, CallerRole role, std::string_view created_by) {
  if (!IsValidCredentialName(name)) {
    return Status::InvalidArgument(
        "a credential's name is 1 to 64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit, and not "
        "publisher, operator, terminal, mirror or gate");
  }
  if (role != CallerRole::kPublisher && role != CallerRole::kOperator) {
    return Status::InvalidArgument("a named credential's role is publisher or operator");
  }
  std::lock_guard write(write_mu_);
  {
    std::lock_guard lock(mu_);
    if (by_name_.contains(name)) {
      return Status::AlreadyExists(fmt::format("credential '{}' exists or existed: names are not reused", name));
    }
    if (by_name_.size() >= o_.credentials_max) {
      return Status::ResourceExhausted(fmt::format("at most {} named credentials", o_.credentials_max));
    }
  }
  Result<std::string> token = NewToken();
  if (!token.ok()) return token.status();
  Entry e{Credential{std::string(name), role, clock_.NowUnixMillis(), std::string(created_by), std::nullopt},
          Digest::Of(*token)};
  MERIDIAN_RETURN_IF_ERROR(Write(e));
  std::lock_guard lock(mu_);
  by_token_[e.token_sha256] = e.credential.name;
  by_name_.emplace(e.credential.name, std::move(e));
  return token;
}

Status Credentials::Revoke(std::string_view name) {
  std::lock_guard write(write_mu_);
  Entry e;
  {
    std::lock_guard lock(mu_);
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return Status::NotFound(fmt::format("no credential named '{}'", name));
    if (it->second.credential.revoked_ms) return Status::Ok();
    e = it->second;
  }
  e.credential.revoked_ms = clock_.NowUnixMillis();
  MERIDIAN_RETURN_IF_ERROR(Write(e));
  std::lock_guard lock(mu_);
  by_name_.find(name)->second = std::move(e);
  return Status::Ok();
}

Status Credentials::Write(const Entry& e) {
  return store_.WriteState({{std::string(kCredentialKeyPrefix) + e.credential.name, RecordOf(e.credential, e.token_sha256)}});
}

std::optional<Credential> Credentials::Find(std::string_view token) const {
  Digest digest = Digest::Of(token);
  std::lock_guard lock(mu_);
  auto it = by_token_.find(digest);
  if (it == by_token_.end()) return std::nullopt;
  return by_name_.find(it->second)->second.credential;
}

std::vector<Credential> Credentials::List() const {
  std::lock_guard lock(mu_);
  std::vector<Credential> out;
  out.reserve(by_name_.size());
  for (const auto& [name, e] : by_name_) out.push_back(e.credential);
  return out;
}

}  // namespace meridian
