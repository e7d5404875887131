// The origin's audit log over the store (see audit_log.h).
#include "daemon/audit_log.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace meridian {

namespace {

constexpr std::string_view kEventPrefix = "audit/";
constexpr std::string_view kHeadKey = "audit-head";

// Zero-padded so that byte order is seq order.
std::string EventKey(uint64_t seq) { return fmt::format("{}{:020}", kEventPrefix, seq); }

}  // namespace

Result<std::unique_ptr<AuditLog>> AuditLog::Open(Store& store, const Clock& clock) {
  AuditHead head;
  Result<std::string> stored = store.GetState(kHeadKey);
  if (stored.ok()) {
    Result<AuditHead> parsed = AuditHead::Parse(*stored);
    if (!parsed.ok()) return Status::Corruption(std::string(kHeadKey) + ": " + parsed.status().message());
    head = *parsed;
  } else if (stored.status().code() != Status::Code::kNotFound) {
    return stored.status();
  }
  return std::unique_ptr<AuditLog>(new AuditLog(store, clock, head));
}

Status AuditLog::Append(std::string_view actor, std::string_view action, std::string_view subject,
                        std::string_view detail) {
  std::lock_guard lock(mu_);
  AuditEvent e{head_.seq + 1,        clock_.NowUnixMillis(), std::string(actor), std::string(action),
               std::string(subject), std::string(detail),    head_.digest};
  Result<std::string> bytes = EncodeAuditEvent(e);
  if (!bytes.ok()) return bytes.status();
  AuditHead next{e.seq, AuditEventDigest(*bytes)};
  MERIDIAN_RETURN_IF_ERROR(store_.WriteState({{EventKey(e.seq), *bytes}, {std::string(kHeadKey), next.ToString()}}));
  head_ = next;
  return Status::Ok();
}

Result<AuditLog::Page> AuditLog::Read(uint64_t after_seq, size_t limit) {
  Result<StateRecords> kv =
      store_.ScanStatePage(kEventPrefix, after_seq == 0 ? std::string() : EventKey(after_seq),
                           std::min(limit, kPageEventsMax));
  if (!kv.ok()) return kv.status();
  Page page;
  page.last_seq = after_seq;
  for (auto& [key, value] : *kv) {
    std::string_view digits = std::string_view(key).substr(kEventPrefix.size());
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), page.last_seq);
    if (ec != std::errc() || end != digits.data() + digits.size()) return Status::Corruption(key + ": not an audit event's key");
    page.events.push_back(std::move(value));
  }
  return page;
}

AuditHead AuditLog::head() const {
  std::lock_guard lock(mu_);
  return head_;
}

Result<AuditVerdict> AuditLog::Verify() {
  AuditChainVerifier verifier({head()});
  for (uint64_t after = 0;;) {
    Result<Page> page = Read(after, kPageEventsMax);
    if (!page.ok()) return page.status();
    if (page->events.empty()) break;
    for (const std::string& e : page->events) verifier.Add(e);
    after = page->last_seq;
  }
  verifier.Finish();
  return AuditVerdict{verifier.head(), verifier.fault()};
}

}  // namespace meridian
