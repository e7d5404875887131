// Retention: what leaves the store, and when. Versions are deleted by hand
// (DELETE /v1/models/{model}/versions/{version}, `meridian versions delete`)
// or by the policy (the newest `keep_versions` of each model stay); never one
// that a channel's signed state or an active rollout names. A collection then
// removes what nothing refers to any more: delta records into or out of
// artifacts no longer stored, the chunks of deleted versions and stale deltas
// (Store::CollectGarbage, sparing chunks of publishes in flight), and ids of
// forwarded reports older than `report_ids_ms`. Every deletion is audited.
//
// Thread-safe. Collections run one at a time: on the daemon's own thread
// every `interval_ms`, or when an operator asks (POST /v1/collect).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/periodic.h"
#include "base/status.h"
#include "daemon/audit_log.h"
#include "daemon/catalog.h"
#include "daemon/deltas.h"
#include "daemon/rollouts.h"
#include "store/store.h"

namespace meridian {

struct RetentionOptions {
  size_t keep_versions = 0;                         // newest versions of each model the policy keeps; 0: no policy
  int64_t report_ids_ms = 30ll * 24 * 3600 * 1000;  // a forwarded report's id is remembered this long
  int64_t interval_ms = 3600 * 1000;                // between collections on the daemon's thread; 0: on request only
};

// The audit log's actor for what the policy and the periodic collection delete.
inline constexpr std::string_view kRetentionActor = "retention";

struct RetentionReport {
  std::vector<std::string> versions_deleted;  // "model@version", by the policy
  uint64_t deltas_dropped = 0;
  uint64_t report_ids_dropped = 0;
  CollectReport chunks;
};

class Retention {
 public:
  // All references must outlive this.
  Retention(Store& store, Catalog& catalog, Rollouts& rollouts, DeltaService& deltas, AuditLog& audit,
            const Clock& clock, RetentionOptions options);
  ~Retention();  // stops the thread (a collection in progress finishes first)
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  // Deletes a version and audits it. FailedPrecondition naming what refers
  // to it (a channel, a rollout); NotFound; InvalidArgument.
  Status DeleteVersion(std::string_view model, std::string_view version, std::string_view actor,
                       std::string_view reason);
  // The policy, then a collection; `actor` is audited for each version deleted.
  Result<RetentionReport> Collect(std::string_view actor);
  // Collects every interval_ms on a thread of its own, until destroyed.
  void Start();
  // Held while something comes to name a version (a rollout starting): no
  // deletion runs meanwhile, so one either sees the new name or deleted the
  // version first (and the start finds it gone).
  std::shared_lock<std::shared_mutex> HoldVersions() { return std::shared_lock(versions_mu_); }

 private:
  // model -> version -> what refers to it ("channel stable", "rollout r1").
  using InUse = std::map<std::string, std::map<std::string, std::string>>;
  InUse VersionsInUse() const;
  Status DeleteUnused(std::string_view model, std::string_view version, std::string_view actor, std::string_view reason,
                      const InUse& in_use);
  Status ApplyPolicy(std::string_view actor, RetentionReport& report);
  Result<uint64_t> DropOldReportIds();

  Store& store_;
  Catalog& catalog_;
  Rollouts& rollouts_;
  DeltaService& deltas_;
  AuditLog& audit_;
  const Clock& clock_;
  const RetentionOptions options_;
  // Held exclusively by a deletion or a policy pass, from reading what is in
  // use to deleting; shared by HoldVersions.
  std::shared_mutex versions_mu_;
  PeriodicThread collector_;
};

}  // namespace meridian
