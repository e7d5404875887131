// The audit log's format and chain check (see audit.h).
#include "audit/audit.h"

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

namespace {

Status CheckFields(const AuditEvent& e) {
  if (e.seq == 0) return Status::InvalidArgument("audit event: seq must be 1 or more");
  if (e.actor.empty() || e.action.empty()) return Status::InvalidArgument("audit event: actor and action are required");
  for (const auto& [field, value, max] : {std::tuple{"actor", &e.actor, kAuditActorBytesMax},
                                          {"action", &e.action, kAuditActionBytesMax},
                                          {"subject", &e.subject, kAuditSubjectBytesMax},
                                          {"detail", &e.detail, kAuditDetailBytesMax}}) {
    if (value->size() > max) {
      return Status::InvalidArgument(fmt::format("audit event: {} is over {} bytes", field, max));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> EncodeAuditEvent(const AuditEvent& event) {
  MERIDIAN_RETURN_IF_ERROR(CheckFields(event));
  // nlohmann's objects keep their keys sorted, and compact dump() has one
  // spelling per value: the encoding is canonical.
  nlohmann::json j = {{"seq", event.seq},         {"time_ms", event.time_ms}, {"actor", event.actor},
                      {"action", event.action},   {"subject", event.subject}, {"detail", event.detail},
                      {"previous", event.previous.ToString()}};
  return DumpJson(j);
}

Result<AuditEvent> ParseAuditEvent(std::string_view stored) {
  Result<nlohmann::json> j = ParseJsonObject(stored, kAuditEventBytesMax, "audit event");
  if (!j.ok()) return j.status();
  AuditEvent e;
  JsonFields f(*j, "audit event", UnknownFields::kIgnore);
  f.Uint("seq", &e.seq, /*required=*/true);
  f.Int64("time_ms", &e.time_ms, true);
  f.String("actor", &e.actor, true);
  f.String("action", &e.action, true);
  f.String("subject", &e.subject, true);
  f.String("detail", &e.detail, true);
  f.Digest("previous", &e.previous, true);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  MERIDIAN_RETURN_IF_ERROR(CheckFields(e));
  return e;
}

std::string AuditHead::ToString() const { return fmt::format("{}:{}", seq, digest.ToString()); }

Result<AuditHead> AuditHead::Parse(std::string_view text) {
  AuditHead h;
  size_t colon = text.find(':');
  auto [end, ec] = std::from_chars(text.data(), text.data() + (colon == std::string_view::npos ? 0 : colon), h.seq);
  Result<Digest> digest = colon == std::string_view::npos ? Status::InvalidArgument("") : Digest::Parse(text.substr(colon + 1));
  if (colon == 0 || colon == std::string_view::npos || ec != std::errc() || end != text.data() + colon || !digest.ok()) {
    return Status::InvalidArgument(fmt::format("an audit head is SEQ:sha256:<64 hex>, not '{}'", text));
  }
  h.digest = *digest;
  return h;
}

void AuditChainVerifier::Fail(uint64_t seq, std::string problem) {
  if (!fault_) fault_ = AuditFault{seq, std::move(problem)};
}

void AuditChainVerifier::Add(std::string_view stored) {
  if (fault_) return;
  const uint64_t expected = head_.seq + 1;
  Result<AuditEvent> e = ParseAuditEvent(stored);
  if (!e.ok()) return Fail(expected, "is not an audit event: " + e.status().message());
  if (e->seq > expected) return Fail(expected, fmt::format("is missing: the next stored event is {}", e->seq));
  if (e->seq < expected) return Fail(e->seq, fmt::format("is out of order: it comes after event {}", head_.seq));
  if (e->previous != head_.digest) {
    if (expected == 1) {
      return Fail(1, fmt::format("chains to {}, not to the zero digest of a first event: events before it were removed",
                                 e->previous.ToString()));
    }
    return Fail(head_.seq, fmt::format("was changed: its bytes hash to {}, but event {} records {} as its previous "
                                       "(or event {}'s previous was changed)",
                                       head_.digest.ToString(), e->seq, e->previous.ToString(), e->seq));
  }
  head_ = AuditHead{e->seq, AuditEventDigest(stored)};
  for (const AuditHead& h : expect_) {
    if (h.seq == head_.seq && h.digest != head_.digest) {
      return Fail(head_.seq, fmt::format("differs from the expected head: it hashes to {}, the head says {}",
                                         head_.digest.ToString(), h.digest.ToString()));
    }
  }
}

void AuditChainVerifier::Finish() {
  for (const AuditHead& h : expect_) {
    if (h.seq > head_.seq) {
      return Fail(head_.seq + 1, fmt::format("is missing: the log ends at event {}, before the expected head {}",
                                             head_.seq, h.seq));
    }
  }
}

AuditVerdict VerifyAuditChain(std::span<const std::string> stored, std::vector<AuditHead> expect) {
  AuditChainVerifier v(std::move(expect));
  for (const std::string& e : stored) v.Add(e);
  v.Finish();
  return {v.head(), v.fault()};
}

}  // namespace meridian
