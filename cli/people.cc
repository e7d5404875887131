// `meridian tokens …` (named credentials for people) and `meridian audit …`
// (the origin's hash-chained audit log: list, and verify it unedited), over
// the daemon's control API with an operator token.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "audit/audit.h"
#include "base/clock.h"
#include "base/encoding.h"
#include "base/json.h"
#include "cli/commands.h"
#include "cli/control.h"
#include "cli/output.h"
#include "client/api.h"

namespace meridian::cli {

namespace {

// Events per page fetched (the daemon's page limit).
constexpr uint64_t kAuditPageEvents = 1000;

// One page of GET /v1/audit: its events' stored bytes, the seq to read after
// next, and the daemon's head.
struct AuditPage {
  std::vector<std::string> events;
  uint64_t last_seq = 0;
  std::string head;
};

Result<AuditPage> FetchAuditPage(const GlobalOptions& g, uint64_t after, uint64_t limit) {
  Result<nlohmann::json> j = Call(g, "GET", AuditPath(after, limit), "", 200, "read the audit log");
  if (!j.ok()) return j.status();
  AuditPage page;
  JsonFields f(*j, "audit page", UnknownFields::kIgnore);
  std::vector<std::string> encoded;
  f.Strings("events", &encoded, true);
  f.Uint("last_seq", &page.last_seq, true);
  f.String("head", &page.head, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  for (const std::string& e : encoded) {
    Result<Bytes> raw = Base64Decode(e);
    if (!raw.ok()) return Status::Corruption("audit page: an event is not base64");
    page.events.emplace_back(raw->begin(), raw->end());
  }
  if (!page.events.empty() && page.last_seq <= after) return Status::Corruption("audit page: last_seq does not advance");
  return page;
}

}  // namespace

int TokensCreate(const GlobalOptions& g, const std::string& role, const std::string& name) {
  nlohmann::json body = {{"name", name}, {"role", role}};
  return CallAndShow(g, "POST", TokensPath(), DumpJson(body), 201, "create token", [](const nlohmann::json& j) {
    fmt::print(stderr, "created {} credential '{}'; its token is shown this once, keep it secret:\n",
               j.at("role").get<std::string>(), j.at("name").get<std::string>());
    fmt::print("{}\n", j.at("token").get<std::string>());
  });
}

int TokensList(const GlobalOptions& g) {
  return CallAndShow(g, "GET", TokensPath(), "", 200, "list tokens", [](const nlohmann::json& j) {
    fmt::print("{:<24} {:<10} {:<24} {:<16} {}\n", "NAME", "ROLE", "CREATED", "CREATED BY", "STATE");
    for (const auto& t : j.at("tokens")) {
      bool built_in = t.at("built_in").get<bool>();
      std::string state = built_in ? "built-in (DATA/" + t.at("name").get<std::string>() + ".token)"
                          : t.at("revoked").get<bool>() ? "revoked " + t.at("revoked_at").get<std::string>()
                                                        : "valid";
      fmt::print("{:<24} {:<10} {:<24} {:<16} {}\n", t.at("name").get<std::string>(), t.at("role").get<std::string>(),
                 built_in ? "-" : t.at("created").get<std::string>(),
                 built_in ? "-" : t.at("created_by").get<std::string>(), state);
    }
  });
}

int TokensRevoke(const GlobalOptions& g, const std::string& name) {
  return CallAndShow(g, "POST", TokenRevokePath(name), "", 200, "revoke token " + name, [](const nlohmann::json& j) {
    fmt::print("revoked '{}': its token is refused from now on\n", j.at("name").get<std::string>());
  });
}

int AuditList(const GlobalOptions& g, uint64_t after, uint64_t limit) {
  Result<AuditPage> page = FetchAuditPage(g, after, limit);
  if (!page.ok()) return Fail(page.status());
  nlohmann::json events = nlohmann::json::array();
  if (!g.json) fmt::print("{:>6}  {:<24} {:<16} {:<16} {:<24} {}\n", "SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "DETAIL");
  for (const std::string& stored : page->events) {
    Result<AuditEvent> e = ParseAuditEvent(stored);
    if (!e.ok()) {
      if (g.json) events.push_back({{"damaged", e.status().message()}});
      else fmt::print("{:>6}  (damaged: {})\n", "?", e.status().message());
      continue;
    }
    if (g.json) {
      events.push_back({{"seq", e->seq}, {"time_ms", e->time_ms}, {"actor", e->actor}, {"action", e->action},
                        {"subject", e->subject}, {"detail", e->detail}, {"previous", e->previous.ToString()},
                        {"digest", AuditEventDigest(stored).ToString()}});
    } else {
      fmt::print("{:>6}  {:<24} {:<16} {:<16} {:<24} {}\n", e->seq, FormatRfc3339(e->time_ms), e->actor, e->action,
                 e->subject, e->detail);
    }
  }
  if (g.json) {
    PrintJson({{"events", events}, {"last_seq", page->last_seq}, {"head", page->head}});
  } else if (page->events.size() == limit) {
    fmt::print("(more: add --after {})\n", page->last_seq);
  }
  return 0;
}

int AuditVerify(const GlobalOptions& g, const std::string& expect_head) {
  std::vector<AuditHead> expect;
  if (!expect_head.empty()) {
    Result<AuditHead> h = AuditHead::Parse(expect_head);
    if (!h.ok()) return Fail("--expect-head: " + h.status().message());
    expect.push_back(*h);
  }
  // The daemon's own head, read before the first page, must be in the chain
  // too: that catches a damaged or removed last event.
  Result<AuditPage> page = FetchAuditPage(g, 0, kAuditPageEvents);
  if (!page.ok()) return Fail(page.status());
  Result<AuditHead> daemon_head = AuditHead::Parse(page->head);
  if (!daemon_head.ok()) return Fail("the daemon's audit head: " + daemon_head.status().message());
  expect.push_back(*daemon_head);
  AuditChainVerifier verifier(std::move(expect));
  while (!page->events.empty()) {
    for (const std::string& stored : page->events) verifier.Add(stored);
    if (verifier.fault()) break;
    page = FetchAuditPage(g, page->last_seq, kAuditPageEvents);
    if (!page.ok()) return Fail(page.status());
  }
  verifier.Finish();
  const AuditHead& head = verifier.head();
  if (const std::optional<AuditFault>& fault = verifier.fault()) {
    if (g.json) PrintJson({{"intact", false}, {"seq", fault->seq}, {"problem", fault->problem}});
    return Fail(fmt::format("the audit log is not intact: event {} {}", fault->seq, fault->problem));
  }
  if (g.json) {
    PrintJson({{"intact", true}, {"events", head.seq}, {"head", head.ToString()}});
  } else {
    fmt::print("audit log intact: {} events, head {}\n", head.seq, head.ToString());
    fmt::print("(keep this head elsewhere; a later `meridian audit verify --expect-head {}` proves the log "
               "up to it unchanged)\n", head.ToString());
  }
  return 0;
}

}  // namespace meridian::cli
