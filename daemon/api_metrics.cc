// GET /metrics: the Metrics counters, then gauges read from the store, the
// rollouts, the channel states and the regions (docs/operator-guide.md,
// "Monitoring", lists every family).
#include <algorithm>

#include "base/clock.h"
#include "daemon/api.h"

namespace meridian {

namespace {

using Type = MetricFamily::Type;

// Ended rollouts shown beside the active ones, newest first: enough for a
// dashboard to show how the last few finished, while a store holding
// thousands of rollouts does not make thousands of series.
constexpr size_t kEndedRolloutsShown = 5;

// Store fault codes shown from the start, at 0, so that their rates are
// defined before the first fault.
constexpr const char* kStoreFaultCodesShown[] = {"corruption", "insufficient_storage", "io_error", "resource_exhausted",
                                                 "unavailable"};

constexpr RolloutPhase kPhases[] = {RolloutPhase::kRunning, RolloutPhase::kPaused, RolloutPhase::kCompleted,
                                    RolloutPhase::kAborted, RolloutPhase::kRolledBack};

double Seconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

// The rollouts whose funnel /metrics shows: every active one and the newest
// kEndedRolloutsShown ended ones, oldest first (`all` is oldest first).
std::vector<Rollout> RolloutsShown(const std::vector<Rollout>& all) {
  std::vector<Rollout> shown;
  size_t ended = 0;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->active() || ended++ < kEndedRolloutsShown) shown.push_back(*it);
  }
  std::reverse(shown.begin(), shown.end());
  return shown;
}

}  // namespace

HttpResponse Api::RenderMetrics() {
  std::vector<MetricFamily> families = StoreFamilies();
  for (const std::vector<MetricFamily>& part : {RolloutFamilies(), RegionFamilies()}) {
    families.insert(families.end(), part.begin(), part.end());
  }
  families.push_back(MetricFamily("meridian_long_polls_held", Type::kGauge,
                                  "Long polls held now: terminals' target requests and regions' sync requests.")
                         .Add(static_cast<double>(rollouts_.notifier().waiting())));
  families.push_back(MetricFamily("meridian_delta_jobs", Type::kGauge, "Delta pairs queued or being computed.")
                         .Add(static_cast<double>(deltas_.jobs())));
  MetricFamily enrolled("meridian_terminals_enrolled", Type::kGauge,
                        "Terminals enrolled at the origin, by state: pending (asked to join), accepted, revoked "
                        "(a region counts none).");
  for (const auto& [state, n] : enrolment_.Counts()) {
    enrolled.Add(static_cast<double>(n), {{"state", std::string(EnrolmentStateName(state))}});
  }
  families.push_back(std::move(enrolled));
  HttpResponse r;
  r.body = metrics_.Render(families);
  r.Set("Content-Type", "text/plain; version=0.0.4");
  return r;
}

std::vector<MetricFamily> Api::StoreFamilies() {
  const StoreStats st = store_.Stats();
  auto gauge = [](const char* name, const char* help, uint64_t value) {
    return MetricFamily(name, Type::kGauge, help).Add(static_cast<double>(value));
  };
  std::vector<MetricFamily> out;
  out.push_back(gauge("meridian_store_chunks", "Chunks stored (RocksDB's estimate).", st.chunks));
  out.push_back(gauge("meridian_store_versions", "Model versions committed.", st.versions));
  out.push_back(gauge("meridian_store_disk_bytes",
                      "Bytes of the store's files on disk: table, blob and write-ahead log files.", st.disk_bytes));
  out.push_back(MetricFamily("meridian_store_bytes", Type::kGauge,
                             "The store's bytes by part: sst, blob and wal files on disk, memtables in memory "
                             "(what the WAL holds and is not flushed yet), and blob_garbage: of the blob bytes, "
                             "those of deleted chunks (returned by a collection's rewrite).")
                    .Add(static_cast<double>(st.sst_bytes), {{"part", "sst"}})
                    .Add(static_cast<double>(st.blob_bytes), {{"part", "blob"}})
                    .Add(static_cast<double>(st.wal_bytes), {{"part", "wal"}})
                    .Add(static_cast<double>(st.memtable_bytes), {{"part", "memtable"}})
                    .Add(static_cast<double>(st.blob_garbage_bytes), {{"part", "blob_garbage"}}));
  out.push_back(gauge("meridian_store_fs_avail_bytes",
                      "Bytes free to the daemon on the file system of the store directory.", st.fs_avail_bytes));
  MetricFamily errors("meridian_store_errors_total", Type::kCounter,
                      "Store faults since start by code: RocksDB failures, stored chunks that no longer verify.");
  std::map<std::string, uint64_t> by_code = st.errors;
  for (const char* code : kStoreFaultCodesShown) by_code.try_emplace(code, 0);
  for (const auto& [code, n] : by_code) errors.Add(static_cast<double>(n), {{"code", code}});
  out.push_back(std::move(errors));
  bool stopped;
  {
    std::lock_guard lock(store_fault_mu_);
    stopped = !store_fault_.empty();
  }
  out.push_back(gauge("meridian_store_writes_stopped",
                      "1 while a background fault stops the store's writes (/readyz answers 503), else 0.", stopped));
  out.push_back(MetricFamily("meridian_store_manifest_parses_total", Type::kCounter,
                             "Stored manifests parsed since start: misses of the parsed-manifest cache.")
                    .Add(static_cast<double>(st.manifest_parses)));
  out.push_back(gauge("meridian_store_manifest_cache_bytes", "Bytes charged to the parsed manifests cached now.",
                      st.manifest_cache_bytes));
  out.push_back(MetricFamily("meridian_store_chunk_cache_hits_total", Type::kCounter,
                             "Chunks served from the cache of verified chunks since start (no read, no hash).")
                    .Add(static_cast<double>(st.chunk_cache_hits)));
  out.push_back(gauge("meridian_store_chunk_cache_bytes", "Bytes charged to the verified chunks cached now.",
                      st.chunk_cache_bytes));
  return out;
}

std::vector<MetricFamily> Api::RolloutFamilies() {
  const std::vector<Rollout> all = rollouts_.List();
  std::map<RolloutPhase, uint64_t> by_phase;
  for (const Rollout& r : all) ++by_phase[r.state().phase];
  MetricFamily count("meridian_rollouts", Type::kGauge, "Rollouts held, by phase.");
  for (RolloutPhase p : kPhases) count.Add(static_cast<double>(by_phase[p]), {{"phase", std::string(PhaseName(p))}});

  MetricFamily phase("meridian_rollout_phase", Type::kGauge,
                     "1 for the phase a rollout is in, 0 for the others (active rollouts and the last few ended).");
  MetricFamily stage("meridian_rollout_stage", Type::kGauge, "The stage index a rollout is at (0 first).");
  MetricFamily funnel("meridian_rollout_terminals", Type::kGauge,
                      "Known terminals of a rollout stage's cohort (eligible), and of those: told the target and "
                      "neither running it nor failed (downloading), running it (installed), whose latest report "
                      "in the stage is a success (healthy) or a failure (failed).");
  for (const Rollout& r : RolloutsShown(all)) {
    const RolloutSpec& spec = r.spec();
    MetricFamily::Labels id = {{"rollout", spec.id}, {"model", spec.model}, {"channel", spec.channel}};
    for (RolloutPhase p : kPhases) {
      MetricFamily::Labels labels = id;
      labels.emplace_back("phase", std::string(PhaseName(p)));
      phase.Add(r.state().phase == p ? 1 : 0, std::move(labels));
    }
    stage.Add(r.state().stage, id);
    Result<std::vector<StageRow>> rows = rollouts_.Stages(spec.id);
    if (!rows.ok()) continue;  // dropped since List
    for (size_t k = 0; k < rows->size(); ++k) {
      const StageRow& row = (*rows)[k];
      const std::pair<const char*, uint64_t> states[] = {{"eligible", row.eligible},  {"downloading", row.downloading},
                                                          {"installed", row.updated}, {"healthy", row.healthy},
                                                          {"failed", row.failed}};
      for (const auto& [name, n] : states) {
        funnel.Add(static_cast<double>(n), {{"rollout", spec.id}, {"stage", std::to_string(k)}, {"state", name}});
      }
    }
  }
  std::vector<MetricFamily> out;
  out.push_back(std::move(count));
  out.push_back(std::move(phase));
  out.push_back(std::move(stage));
  out.push_back(std::move(funnel));
  return out;
}

std::vector<MetricFamily> Api::RegionFamilies() {
  const int64_t now = clock_.NowUnixMillis();
  std::vector<MetricFamily> out;
  // Every daemon's own channel states: a region's are what it adopted, and
  // its terminals refuse them once expired.
  MetricFamily expiry("meridian_channel_state_expiry_margin_seconds", Type::kGauge,
                      "Seconds until the signed state of a model channel held here expires (negative: expired).");
  for (const SignedChannel& c : rollouts_.Channels()) {
    expiry.Add(Seconds(c.state.expires_ms - now), {{"model", c.state.model}, {"channel", c.state.channel}});
  }
  out.push_back(std::move(expiry));

  // The regions following this daemon, as GET /v1/regions shows them.
  MetricFamily reachable("meridian_region_reachable", Type::kGauge, "1 while a region's next sync poll is due.");
  MetricFamily healthy("meridian_region_healthy", Type::kGauge,
                       "1 while a region is reachable and its last round went without error.");
  MetricFamily behind("meridian_region_versions_behind", Type::kGauge,
                      "Changes (versions stored, channel states signed) a region has not applied.");
  MetricFamily lag("meridian_region_lag_seconds", Type::kGauge,
                   "Seconds since a region last held the current state (0 when in step).");
  MetricFamily last_seen("meridian_region_last_seen_timestamp_seconds", Type::kGauge,
                         "Unix time of a region's last sync poll.");
  MetricFamily margin("meridian_region_state_expiry_margin_seconds", Type::kGauge,
                      "Seconds until the earliest channel state a region holds expires, as it last said.");
  MetricFamily stored("meridian_region_stored_bytes", Type::kGauge, "A region's own meridian_store_disk_bytes.");
  MetricFamily terminals("meridian_region_terminals", Type::kGauge, "Terminals a region knows.");
  MetricFamily reports("meridian_region_reports_received_total", Type::kCounter,
                       "Distinct terminal reports received from a region (durable).");
  uint64_t current = 0;
  for (const RegionView& v : RegionViews(&current)) {
    const MetricFamily::Labels region = {{"region", v.region}};
    reachable.Add(v.reachable, region);
    healthy.Add(v.healthy, region);
    behind.Add(static_cast<double>(v.behind), region);
    if (v.lag_ms) lag.Add(Seconds(*v.lag_ms), region);
    if (v.last_seen_ms > 0) last_seen.Add(Seconds(v.last_seen_ms), region);
    if (v.state_expires_ms > 0) margin.Add(Seconds(v.state_expires_ms - now), region);
    stored.Add(static_cast<double>(v.stored_bytes), region);
    terminals.Add(static_cast<double>(v.terminals), region);
    reports.Add(static_cast<double>(v.reports_received), region);
  }
  for (MetricFamily* f : {&reachable, &healthy, &behind, &lag, &last_seen, &margin, &stored, &terminals, &reports}) {
    out.push_back(std::move(*f));
  }

  if (follower_ != nullptr) {  // a region: its own upstream and outbox
    const FollowerStatus f = follower_->status();
    const ReportOutbox::Stats o = outbox_->stats();
    auto gauge = [](const char* name, const char* help, double value) {
      return MetricFamily(name, Type::kGauge, help).Add(value);
    };
    out.push_back(gauge("meridian_upstream_reachable", "1 when the last sync round reached an upstream.", f.upstream_ok));
    out.push_back(gauge("meridian_upstream_sync_version", "The upstream's sync version as of the last complete round.",
                        static_cast<double>(f.sync_version)));
    if (f.last_sync_ms > 0) {
      out.push_back(gauge("meridian_upstream_last_sync_timestamp_seconds", "Unix time the last complete sync round ended.",
                          Seconds(f.last_sync_ms)));
    }
    out.push_back(gauge("meridian_outbox_pending", "Terminal reports waiting to be forwarded upstream.",
                        static_cast<double>(o.pending)));
    out.push_back(MetricFamily("meridian_reports_forwarded_total", Type::kCounter,
                               "Terminal reports forwarded upstream since start.")
                      .Add(static_cast<double>(o.forwarded)));
  }
  return out;
}

}  // namespace meridian
