// The origin's audit log: one append-only chain of events (audit/audit.h)
// kept in the store, of who published, changed credentials, acted on
// rollouts or terminals. The actor is always the checked credential's name
// (HttpRequest::caller), never something a request says about itself.
//
// Stored keys (Store::WriteState, synced):
//   audit/<seq, 20 digits>   the event's canonical bytes (EncodeAuditEvent)
//   audit-head               "SEQ:sha256:<hex>" of the last event, written in
//                            the same batch, so opening reads one key, and the
//                            next event chains to the digest recorded here, not
//                            to whatever the last event's bytes are now
//
// Thread-safe: appends are serialised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit.h"
#include "base/clock.h"
#include "base/status.h"
#include "store/store.h"

namespace meridian {

class AuditLog {
 public:
  // Events in one Read at most.
  static constexpr size_t kPageEventsMax = 1000;

  // Opens the log in `store` (empty when it holds none). Corruption when the
  // stored head does not parse. Both references must outlive the log.
  static Result<std::unique_ptr<AuditLog>> Open(Store& store, const Clock& clock);

  // Appends one event, now, and returns once it is synced: call it before
  // answering success for what it records. InvalidArgument for a field over
  // its limit (audit/audit.h) or an empty actor or action; the store's error
  // otherwise (nothing is appended then).
  Status Append(std::string_view actor, std::string_view action, std::string_view subject,
                std::string_view detail = {});

  // Up to `limit` (at most kPageEventsMax) stored events after seq
  // `after_seq`, in seq order, as stored: their bytes are not checked here,
  // so a reader sees what the store holds, damage included.
  struct Page {
    std::vector<std::string> events;
    uint64_t last_seq = 0;  // the seq of the last key read (pass as after_seq); after_seq when none
  };
  Result<Page> Read(uint64_t after_seq, size_t limit);

  // The last event appended (seq 0 when none).
  AuditHead head() const;

  // Reads every stored event, a page at a time, and checks the chain and
  // that it reaches head() with its digest (AuditChainVerifier): what
  // `meridiand fsck` runs on a stopped daemon's store. The store's error
  // when it cannot be read.
  Result<AuditVerdict> Verify();

 private:
  AuditLog(Store& store, const Clock& clock, AuditHead head) : store_(store), clock_(clock), head_(head) {}

  Store& store_;
  const Clock& clock_;
  mutable std::mutex mu_;
  AuditHead head_;  // guarded by mu_
};

}  // namespace meridian
