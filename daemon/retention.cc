// Deleting versions by hand and by policy, and collecting what nothing refers to.
#include "daemon/retention.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <fmt/format.h>

namespace meridian {

namespace {

// Forwarded reports' ids (daemon/outbox.h): each is stamped with the time a
// collection first saw it, and dropped once that is report_ids_ms past.
constexpr std::string_view kReportIdPrefix = "reportid/";
constexpr size_t kReportIdPage = 10'000;

}  // namespace

Retention::Retention(Store& store, Catalog& catalog, Rollouts& rollouts, DeltaService& deltas, AuditLog& audit,
                     const Clock& clock, RetentionOptions options)
    : store_(store),
      catalog_(catalog),
      rollouts_(rollouts),
      deltas_(deltas),
      audit_(audit),
      clock_(clock),
      options_(options) {}

Retention::~Retention() { collector_.Stop(); }

void Retention::Start() {
  if (options_.interval_ms <= 0) return;
  collector_.Start("a collection", std::chrono::milliseconds(options_.interval_ms), [this] {
    Result<RetentionReport> r = Collect(kRetentionActor);
    if (!r.ok()) std::fprintf(stderr, "meridiand: collection failed: %s\n", r.status().ToString().c_str());
  });
}

Retention::InUse Retention::VersionsInUse() const {
  InUse in_use;
  for (const Rollouts::ChannelSnapshot& c : rollouts_.Channels()) {
    for (const auto& [version, ref] : c.state.versions) {
      in_use[c.state.model].emplace(version, "channel " + c.state.channel);
    }
  }
  for (const Rollout& r : rollouts_.List()) {
    if (!r.active()) continue;
    for (const std::string& v : {r.spec().target_version, r.spec().previous_version}) {
      if (!v.empty()) in_use[r.spec().model].emplace(v, "rollout " + r.spec().id);
    }
  }
  return in_use;
}

Status Retention::DeleteVersion(std::string_view model, std::string_view version, std::string_view actor,
                                std::string_view reason) {
  std::unique_lock lock(versions_mu_);
  return DeleteUnused(model, version, actor, reason, VersionsInUse());
}

Status Retention::DeleteUnused(std::string_view model, std::string_view version, std::string_view actor,
                               std::string_view reason, const InUse& in_use) {
  if (!IsValidModelName(model) || !IsValidVersion(version)) return Status::InvalidArgument("invalid model name or version");
  const std::string what = fmt::format("{}@{}", model, version);
  if (auto m = in_use.find(std::string(model)); m != in_use.end()) {
    if (auto v = m->second.find(std::string(version)); v != m->second.end()) {
      return Status::FailedPrecondition(fmt::format("{} is in use by {}: not deleted", what, v->second));
    }
  }
  Result<std::shared_ptr<const Manifest>> manifest = store_.GetManifest(model, version);
  if (!manifest.ok()) return manifest.status();
  MERIDIAN_RETURN_IF_ERROR(store_.DeleteVersion(model, version));
  // The catalog keeps sets for public versions and those held elsewhere only.
  if ((*manifest)->is_public || !catalog_.MayHold(**manifest)) MERIDIAN_RETURN_IF_ERROR(catalog_.Load(store_));
  Status audited = audit_.Append(actor, "version.delete", fmt::format("{}/{}", model, version), reason);
  if (!audited.ok()) {
    return Status::IOError(fmt::format("{} was deleted, but the audit log could not record it: {}", what, audited.message()));
  }
  return Status::Ok();
}

Status Retention::ApplyPolicy(std::string_view actor, RetentionReport& report) {
  if (options_.keep_versions == 0) return Status::Ok();
  std::unique_lock lock(versions_mu_);
  const InUse in_use = VersionsInUse();
  Result<std::vector<std::string>> models = store_.ListModels();
  if (!models.ok()) return models.status();
  const std::string reason = fmt::format("retention: the newest {} versions are kept", options_.keep_versions);
  for (const std::string& model : *models) {
    Result<std::vector<std::string>> versions = store_.ListVersions(model);  // oldest first
    if (versions.status().code() == Status::Code::kNotFound) continue;
    if (!versions.ok()) return versions.status();
    if (versions->size() <= options_.keep_versions) continue;
    versions->resize(versions->size() - options_.keep_versions);
    for (const std::string& v : *versions) {
      Status st = DeleteUnused(model, v, actor, reason, in_use);
      if (st.code() == Status::Code::kFailedPrecondition || st.code() == Status::Code::kNotFound) continue;
      MERIDIAN_RETURN_IF_ERROR(st);
      report.versions_deleted.push_back(model + "@" + v);
    }
  }
  return Status::Ok();
}

Result<uint64_t> Retention::DropOldReportIds() {
  const int64_t now = clock_.NowUnixMillis();
  uint64_t dropped = 0;
  Status st = ForEachStatePage(store_, kReportIdPrefix, kReportIdPage, [&](const StateRecords& page) -> Status {
    StateOps ops;
    for (const auto& [key, value] : page) {
      // Written as "" when the report arrived; stamped here the first time.
      char* end = nullptr;
      const long long seen = value.empty() ? -1 : std::strtoll(value.c_str(), &end, 10);
      if (seen < 0 || end == nullptr || *end != '\0') {
        ops.emplace_back(key, std::to_string(now));
      } else if (now - seen > options_.report_ids_ms) {
        ops.emplace_back(key, std::nullopt);
        ++dropped;
      }
    }
    return store_.WriteState(ops);
  });
  if (!st.ok()) return st;
  return dropped;
}

Result<RetentionReport> Retention::Collect(std::string_view actor) {
  RetentionReport report;
  MERIDIAN_RETURN_IF_ERROR(ApplyPolicy(actor, report));
  Result<uint64_t> ids = DropOldReportIds();
  if (!ids.ok()) return ids.status();
  report.report_ids_dropped = *ids;
  Result<CollectReport> chunks = store_.CollectGarbage([&](std::vector<Digest>& referenced) -> Status {
    // Records are read after the collection began: one written later names
    // chunks stored (or touched) since, which the store keeps as young.
    Result<uint64_t> dropped = deltas_.DropStale(referenced);
    if (!dropped.ok()) return dropped.status();
    report.deltas_dropped = *dropped;
    return Status::Ok();
  });
  if (!chunks.ok()) return chunks.status();
  report.chunks = *chunks;
  return report;
}

}  // namespace meridian
