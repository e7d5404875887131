// Enrolled terminals: who may hold a terminal credential (trust/
// terminal_credential.h). The origin keeps every enrolled terminal — its id,
// public key, the profile and region it was enrolled with, and whether it is
// pending (asked to join, awaiting an operator), accepted or revoked — issues
// credentials to accepted terminals that prove they hold their key, and
// admits a credential only while its terminal is accepted. A region holds no
// records: it admits any credential the root's online key signed, except
// those of terminals the origin revoked (the revocations come with the sync
// document, so a revocation reaches every region within one long poll).
//
// Stored keys (Store::WriteState):
//   enrolled/<id>   "<state> <base64 key> <changed_ms> <profile or -> <region or ->"
//                   state: pending | accepted | revoked. A text line, not JSON,
//                   so that a million records load in about a second.
//   enrolment/revocations   the number of revocations ever made (decimal): part
//                   of the sync version, so that regions learn of each one
//   revoked-terminals       a region's adopted revocations:
//                   daemon/sync_document.h RegionRevocationsToJson
// Operator changes (add, accept, revoke) are synced before they are answered;
// a pending request is not (it is an unauthenticated terminal's, and the
// terminal asks again).
//
// Thread-safe: one mutex, held for map work and across the store write of an
// operator change (they are rare), never across a signature check.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/clock.h"
#include "base/status.h"
#include "daemon/sync_document.h"
#include "signing/signing.h"
#include "store/store.h"
#include "trust/terminal_credential.h"

namespace meridian {

struct EnrolmentOptions {
  size_t enrolled_max = 2'000'000;    // records of every state
  size_t pending_max = 10'000;        // requests awaiting an operator: what unauthenticated terminals can add
  int64_t credential_lifetime_ms = 6ll * 3600 * 1000;
  // A credential request's time must be within this of the daemon's clock
  // (and newer than the last one accepted from the terminal): a replayed
  // request is refused.
  int64_t request_window_ms = 5 * 60 * 1000;
};

enum class EnrolmentState : uint8_t { kPending, kAccepted, kRevoked };
std::string_view EnrolmentStateName(EnrolmentState state);  // "pending", "accepted", "revoked"
std::optional<EnrolmentState> ParseEnrolmentState(std::string_view name);

struct EnrolledTerminal {
  std::string id;
  PublicKey key;
  std::string profile;  // may be empty
  std::string region;   // may be empty
  EnrolmentState state = EnrolmentState::kAccepted;
  int64_t changed_ms = 0;  // when it was added, asked, accepted or revoked
  bool operator==(const EnrolledTerminal&) const = default;
};

// InvalidArgument naming the bad field.
Status ValidateEnrolledTerminal(const EnrolledTerminal& terminal);

// A credential request's outcome: the credential, or "pending" (asked to
// join; the terminal asks again until an operator accepts it).
struct CredentialGrant {
  std::string credential;  // empty while pending
  int64_t expires_ms = 0;
};

class Enrolment {
 public:
  // The origin's: loads the records. `online` signs the credentials it issues.
  static Result<std::unique_ptr<Enrolment>> OpenOrigin(Store& store, const Clock& clock, SecretKey online,
                                                       EnrolmentOptions options = {});
  // A region's: loads the revocations it adopted last.
  static Result<std::unique_ptr<Enrolment>> OpenRegion(Store& store, const Clock& clock);
  ~Enrolment();

  // --- the origin ---
  // Adds (or replaces) terminals as accepted, in one synced write: factory
  // provisioning. InvalidArgument for a bad record (naming it), ResourceExhausted
  // past enrolled_max.
  Status Add(std::vector<EnrolledTerminal> terminals);
  // Pending -> accepted (or a revoked terminal back to accepted). NotFound.
  Status Accept(std::string_view id);
  // -> revoked, at once on this daemon; regions learn of it with the next sync
  // document. A terminal not enrolled (one with a client certificate) gets a
  // revoked record without a key.
  Status Revoke(std::string_view id);
  // A credential request for `id` with its Authorization header. The
  // signature is checked before anything is looked up or kept. An unknown
  // terminal becomes pending (while fewer than pending_max are).
  // PermissionDenied for a revoked terminal, another key than the enrolled
  // one, or a stale or replayed request; ResourceExhausted when the pending
  // queue is full; InvalidArgument for a malformed request.
  Result<CredentialGrant> RequestCredential(std::string_view id, std::string_view authorization);
  // Up to `limit` records after id `after`, in id order, of one state or all.
  std::vector<EnrolledTerminal> List(std::string_view after, size_t limit,
                                     std::optional<EnrolmentState> state = std::nullopt) const;
  // Records per state.
  std::map<EnrolmentState, uint64_t> Counts() const;
  // --- a region ---
  // Replaces the revocations held by those of the upstream's sync document
  // (and the number the origin made); synced when they changed. Ignored when
  // the upstream counts fewer made than were adopted: it is behind.
  Status AdoptRevocations(std::vector<Revocation> revocations, uint64_t made);

  // --- both ---
  // For the sync document: the revocations made within a credential's
  // lifetime (older ones matter to no unexpired credential), and how many
  // the origin ever made; a region relays those it adopted.
  std::vector<Revocation> RecentRevocations() const;
  uint64_t revocations_made() const;

  // OK when terminal `id` may speak now with a credential (verified already)
  // issued at `issued_ms`: at the origin, it is accepted; in a region, the
  // origin did not revoke it since. PermissionDenied otherwise.
  Status Admit(std::string_view id, int64_t issued_ms) const;
  // The same for a terminal its client certificate identifies (the CA that
  // issued it vouches for it, so it needs no enrolment): OK unless revoked.
  // Also for reports a region forwards, whose credential the region checked.
  Status AdmitCertified(std::string_view id) const;

 private:
  struct Impl;
  explicit Enrolment(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meridian
