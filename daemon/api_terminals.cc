// The enrolment routes of the /v1 API: terminal credentials, and the
// operator's view and changes of enrolled terminals (see daemon/enrolment.h).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/json.h"
#include "daemon/api.h"
#include "daemon/api_shared.h"

namespace meridian {
namespace {

constexpr size_t kTerminalsPageMax = 10'000;

nlohmann::json TerminalJson(const EnrolledTerminal& t) {
  return {{"id", t.id},
          {"public_key", Base64Encode(t.key.bytes)},
          {"profile", t.profile},
          {"region", t.region},
          {"state", EnrolmentStateName(t.state)},
          {"changed_ms", t.changed_ms}};
}

}  // namespace

HttpResponse Api::IssueCredential(const HttpRequest& req, const std::string& terminal_id) {
  std::string_view auth = req.Header("authorization");
  if (auth.empty()) {
    HttpResponse r = JsonError(401, "unauthenticated",
                               fmt::format("a credential request is signed with the terminal's key: 'Authorization: "
                                           "{} <base64 key>.<unix ms>.<base64 signature>'",
                                           kCredentialRequestScheme));
    r.Set("WWW-Authenticate", std::string(kCredentialRequestScheme));
    return r;
  }
  Result<CredentialGrant> grant = enrolment_.RequestCredential(terminal_id, auth);
  if (!grant.ok()) {
    if (grant.status().code() == Status::Code::kResourceExhausted) {
      HttpResponse r = JsonError(429, "too_many_pending", grant.status().message());
      r.Set("Retry-After", "600");
      return r;
    }
    if (grant.status().code() == Status::Code::kPermissionDenied) {
      metrics_.CountAuthFailure("bad_credential_request", "terminal");
    }
    return ErrorFor(grant.status());
  }
  if (grant->credential.empty()) {
    HttpResponse r = JsonOk(202, {{"terminal", terminal_id},
                                  {"state", "pending"},
                                  {"message", "asked to join: an operator accepts it with 'meridian terminals accept'"}});
    r.Set("Retry-After", "30");
    return r;
  }
  HttpResponse r = JsonOk(200, {{"terminal", terminal_id}, {"credential", grant->credential}, {"expires_ms", grant->expires_ms}});
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::AddTerminals(const HttpRequest& req) {
  Result<nlohmann::json> parsed = ParseJsonObject(req.body, req.route->body_bytes_max, "terminals");
  if (!parsed.ok()) return ErrorFor(parsed.status());
  JsonFields f(*parsed, "terminals", UnknownFields::kRefuse);
  const nlohmann::json* list = f.Objects("terminals", 100'000, true);
  if (Status st = f.Finish(); !st.ok()) return ErrorFor(st);
  if (list->empty()) return JsonError(400, "invalid_argument", "terminals: the list is empty");
  std::vector<EnrolledTerminal> terminals;
  terminals.reserve(list->size());
  for (const nlohmann::json& item : *list) {
    JsonFields tf(item, "terminal", UnknownFields::kRefuse);
    EnrolledTerminal t;
    std::string key;
    tf.String("id", &t.id, true);
    tf.String("public_key", &key, true);
    tf.String("profile", &t.profile);
    tf.String("region", &t.region);
    if (Status st = tf.Finish(); !st.ok()) return ErrorFor(st);
    Result<Bytes> raw = Base64Decode(key);
    Result<PublicKey> pk = raw.ok() ? PublicKey::FromBytes(*raw) : Result<PublicKey>(raw.status());
    if (!pk.ok()) {
      return JsonError(400, "invalid_argument",
                       fmt::format("terminal '{}': public_key must be the base64 of a 32-byte Ed25519 key", t.id));
    }
    t.key = *pk;
    terminals.push_back(std::move(t));
  }
  size_t n = terminals.size();
  std::string subject = n == 1 ? terminals[0].id : fmt::format("{} terminals ({} … {})", n, terminals.front().id,
                                                                terminals.back().id);
  if (Status st = enrolment_.Add(std::move(terminals)); !st.ok()) return ErrorFor(st);
  if (std::optional<HttpResponse> unaudited = Audit(req, "terminal.add", subject, "accepted")) return std::move(*unaudited);
  return JsonOk(200, {{"enrolled", n}});
}

HttpResponse Api::ListTerminals(const HttpRequest& req) {
  std::optional<std::string> state_text = QueryParam(req.query, "state"), after = QueryParam(req.query, "after"),
                             limit_text = QueryParam(req.query, "limit");
  std::optional<EnrolmentState> state;
  if (state_text && !state_text->empty()) {
    state = ParseEnrolmentState(*state_text);
    if (!state) return JsonError(400, "invalid_argument", "state is pending, accepted or revoked");
  }
  uint64_t limit = 1000;
  if (limit_text && (!ParseQueryNumber(*limit_text, &limit) || limit == 0 || limit > kTerminalsPageMax)) {
    return JsonError(400, "invalid_argument", fmt::format("limit is 1 to {}", kTerminalsPageMax));
  }
  std::vector<EnrolledTerminal> page = enrolment_.List(after.value_or(""), limit, state);
  nlohmann::json rows = nlohmann::json::array();
  for (const EnrolledTerminal& t : page) rows.push_back(TerminalJson(t));
  nlohmann::json counts = nlohmann::json::object();
  for (const auto& [s, n] : enrolment_.Counts()) counts[std::string(EnrolmentStateName(s))] = n;
  return JsonOk(200, {{"terminals", rows},
                      {"counts", counts},
                      {"next", page.size() == limit ? page.back().id : std::string()}});
}

HttpResponse Api::ChangeTerminal(const HttpRequest& req, const std::string& terminal_id, EnrolmentState state) {
  Status st = state == EnrolmentState::kRevoked ? enrolment_.Revoke(terminal_id) : enrolment_.Accept(terminal_id);
  if (!st.ok()) return ErrorFor(st);
  // Regions learn of a revocation with the next sync document: wake their long polls.
  if (state == EnrolmentState::kRevoked) rollouts_.notifier().NotifyAll();
  const char* action = state == EnrolmentState::kRevoked ? "terminal.revoke" : "terminal.accept";
  if (std::optional<HttpResponse> unaudited = Audit(req, action, terminal_id, "")) return std::move(*unaudited);
  return JsonOk(200, {{"terminal", terminal_id}, {"state", EnrolmentStateName(state)}});
}

}  // namespace meridian
