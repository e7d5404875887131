// The audit log's format, pure: one event's canonical bytes, the chain that
// links each event to the one before, and the check of a whole chain. No I/O:
// the daemon stores events (daemon/audit_log.h), the CLI fetches and verifies
// them (`meridian audit verify`). Format: docs/formats/audit.md.
//
// An event is stored as the bytes EncodeAuditEvent gives (compact JSON with
// the keys in lexical order), and its digest is the SHA-256 of exactly those
// bytes, so a reader never re-encodes anything to check the chain. Each event
// carries `previous`: the digest of the event before it (the zero digest for
// the first, seq 1).
//
// What a chain proves: that no event of it was edited, removed or reordered
// without every later `previous` being rewritten too. Someone who can write
// the store can still rewrite the tail consistently, or drop the last events;
// that is caught only against a head recorded earlier (AuditHead, kept away
// from the daemon: `meridian audit verify --expect-head SEQ:DIGEST`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"

namespace meridian {

// Field limits, in bytes of the field's text.
inline constexpr size_t kAuditActorBytesMax = 128;     // a credential's name, a terminal's id, "gate"
inline constexpr size_t kAuditActionBytesMax = 64;     // "publish", "token.create", "rollout.pause", …
inline constexpr size_t kAuditSubjectBytesMax = 512;   // what was acted on: "model/1.2.0", a rollout id, …
inline constexpr size_t kAuditDetailBytesMax = 4096;   // free text: a reason, a digest, …
// One stored event: the fields above, JSON-escaped (control bytes grow
// sixfold), and the fixed fields.
inline constexpr size_t kAuditEventBytesMax = 64 << 10;

struct AuditEvent {
  uint64_t seq = 0;      // 1-based, no gaps
  int64_t time_ms = 0;   // Unix milliseconds, the daemon's clock
  std::string actor;     // who: the checked credential's name (never a request header)
  std::string action;    // what
  std::string subject;   // on what
  std::string detail;    // with what; may be empty
  Digest previous;       // AuditEventDigest of event seq-1; zero for seq 1

  bool operator==(const AuditEvent&) const = default;
};

// The canonical (stored) bytes of `event`. InvalidArgument for seq 0, an
// empty actor or action, or a field over its limit. Bytes that are not UTF-8
// are replaced by U+FFFD (JSON holds text only), so ParseAuditEvent of the
// result may differ from `event` there and nowhere else.
Result<std::string> EncodeAuditEvent(const AuditEvent& event);

// An event from its stored bytes. InvalidArgument when they are not an event
// (not JSON, a field missing or of the wrong type, over a limit, seq 0).
// Fields it does not know are ignored (a newer writer's).
Result<AuditEvent> ParseAuditEvent(std::string_view stored);

// The digest that the next event's `previous` carries: SHA-256 of the stored bytes.
inline Digest AuditEventDigest(std::string_view stored) { return Digest::Of(stored); }

// Where a chain stands: its last event's seq and digest (seq 0 and the zero
// digest for an empty log). Written "SEQ:sha256:<hex>".
struct AuditHead {
  uint64_t seq = 0;
  Digest digest;

  std::string ToString() const;
  // InvalidArgument unless `text` is "SEQ:sha256:<64 hex>".
  static Result<AuditHead> Parse(std::string_view text);
  bool operator==(const AuditHead&) const = default;
};

// The first thing wrong with a chain.
struct AuditFault {
  uint64_t seq = 0;     // the event at fault (for a removed one: its seq)
  std::string problem;  // what is wrong with it, in words
};

// Checks a chain fed one stored event at a time, in seq order, so a reader
// never holds the whole log. Each event must parse, have the next seq (1
// first) and carry the digest of the event before as `previous`. When an
// event's `previous` differs from its predecessor's digest, the fault names
// the predecessor: a changed byte in an event shows up there (unless the
// next event's `previous` was changed instead, which the problem says too).
class AuditChainVerifier {
 public:
  // `expect`: heads known from elsewhere (recorded earlier, or the one the
  // daemon holds) that this chain must still contain, each with the same
  // digest (the log may have grown since).
  explicit AuditChainVerifier(std::vector<AuditHead> expect = {}) : expect_(std::move(expect)) {}

  // Checks the next stored event. After the first fault, does nothing more.
  void Add(std::string_view stored);
  // Call after the last event: checks that the log reached the expected heads.
  void Finish();

  const std::optional<AuditFault>& fault() const { return fault_; }
  // The last good event's seq and digest.
  const AuditHead& head() const { return head_; }

 private:
  void Fail(uint64_t seq, std::string problem);

  std::vector<AuditHead> expect_;
  AuditHead head_;
  std::optional<AuditFault> fault_;
};

// AuditChainVerifier over events held in memory, in seq order: the head of
// the good chain, or the first fault.
struct AuditVerdict {
  AuditHead head;
  std::optional<AuditFault> fault;
};
AuditVerdict VerifyAuditChain(std::span<const std::string> stored, std::vector<AuditHead> expect = {});

}  // namespace meridian
