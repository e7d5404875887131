// The routes of people's named credentials and of the audit log, and the
// one way every other route appends to that log (Api::Audit).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/json.h"
#include "daemon/api.h"
#include "daemon/api_shared.h"

namespace meridian {

std::optional<HttpResponse> Api::Audit(const HttpRequest& req, std::string_view action, std::string_view subject,
                                       std::string_view detail) {
  Status st = audit_.Append(req.caller, action, subject, detail);
  if (st.ok()) return std::nullopt;
  return JsonError(500, "not_audited",
                   fmt::format("{} {} was done, but the audit log could not record it: {}", action, subject, st.message()));
}

HttpResponse Api::CreateToken(const HttpRequest& req) {
  // An operator's words: an unknown field is a typo, refused.
  Result<nlohmann::json> j = ParseJsonObject(req.body, limits_.json_body_bytes_max, "body");
  if (!j.ok()) return ErrorFor(j.status());
  std::string name, role_name;
  JsonFields f(*j, "body", UnknownFields::kRefuse);
  f.String("name", &name, /*required=*/true);
  f.String("role", &role_name, true);
  if (Status st = f.Finish(); !st.ok()) return ErrorFor(st);
  CallerRole role = role_name == RoleName(CallerRole::kPublisher) ? CallerRole::kPublisher
                    : role_name == RoleName(CallerRole::kOperator) ? CallerRole::kOperator
                                                                   : CallerRole::kNobody;
  Result<std::string> token = credentials_.Create(name, role, req.caller);
  if (!token.ok()) return ErrorFor(token.status());
  if (std::optional<HttpResponse> unaudited = Audit(req, "token.create", name, "role " + role_name)) {
    return std::move(*unaudited);
  }
  return JsonOk(201, {{"name", name}, {"role", role_name}, {"token", *token}, {"created_by", req.caller}});
}

HttpResponse Api::ListTokens() {
  nlohmann::json rows = nlohmann::json::array();
  for (CallerRole role : {CallerRole::kPublisher, CallerRole::kOperator}) {
    rows.push_back({{"name", RoleName(role)}, {"role", RoleName(role)}, {"built_in", true}, {"revoked", false}});
  }
  for (const Credential& c : credentials_.List()) {
    nlohmann::json row = {{"name", c.name},
                          {"role", RoleName(c.role)},
                          {"built_in", false},
                          {"created", FormatRfc3339(c.created_ms)},
                          {"created_by", c.created_by},
                          {"revoked", c.revoked_ms.has_value()}};
    if (c.revoked_ms) row["revoked_at"] = FormatRfc3339(*c.revoked_ms);
    rows.push_back(std::move(row));
  }
  return JsonOk(200, {{"tokens", rows}});
}

HttpResponse Api::RevokeToken(const HttpRequest& req, const std::string& name) {
  if (name == RoleName(CallerRole::kPublisher) || name == RoleName(CallerRole::kOperator)) {
    return JsonError(400, "built_in", fmt::format("'{}' is a built-in token: replace DATA/{}.token and restart", name, name));
  }
  if (!IsValidCredentialName(name)) return JsonError(400, "invalid_argument", "invalid credential name");
  if (Status st = credentials_.Revoke(name); !st.ok()) return ErrorFor(st);
  if (std::optional<HttpResponse> unaudited = Audit(req, "token.revoke", name)) return std::move(*unaudited);
  return JsonOk(200, {{"name", name}, {"revoked", true}});
}

HttpResponse Api::ReadAudit(const HttpRequest& req) {
  uint64_t after = 0, limit = 100;
  if (std::optional<std::string> text = QueryParam(req.query, "after"); text && !ParseQueryNumber(*text, &after)) {
    return JsonError(400, "invalid_argument", "after must be an event's seq");
  }
  if (std::optional<std::string> text = QueryParam(req.query, "limit");
      text && (!ParseQueryNumber(*text, &limit) || limit == 0 || limit > AuditLog::kPageEventsMax)) {
    return JsonError(400, "invalid_argument", fmt::format("limit must be in [1, {}]", AuditLog::kPageEventsMax));
  }
  AuditHead head = audit_.head();  // before the page: a page may hold events appended since, never fewer
  Result<AuditLog::Page> page = audit_.Read(after, limit);
  if (!page.ok()) return ErrorFor(page.status());
  // Base64: the stored bytes exactly, also when they were damaged into something that is not text.
  nlohmann::json events = nlohmann::json::array();
  for (const std::string& e : page->events) events.push_back(Base64Encode(AsBytes(e)));
  return JsonOk(200, {{"events", events}, {"last_seq", page->last_seq}, {"head", head.ToString()}});
}

}  // namespace meridian
