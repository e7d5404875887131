// Regions: what regions downstream follow, and the reports they forward.
#include "daemon/api.h"

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/json.h"
#include "daemon/api_shared.h"

namespace meridian {

namespace {
constexpr std::string_view kRegionSeenPrefix = "region-seen/";
constexpr int64_t kRegionSeenPersistMs = 10'000;  // a poll's time is written at most this often, other changes at once
}  // namespace

SyncDocument Api::BuildSyncDocument() {
  SyncDocument doc;
  Result<std::vector<std::string>> models = store_.ListModels();
  for (const std::string& model : models.ok() ? *models : std::vector<std::string>()) {
    Result<std::vector<std::string>> versions = store_.ListVersions(model);
    if (!versions.ok()) continue;
    for (const std::string& v : *versions) {
      ++doc.sync_version;
      std::vector<std::string> regions;
      {
        std::lock_guard lock(regions_mu_);
        auto it = residency_.find({model, v});
        if (it != residency_.end()) regions = it->second;
      }
      if (regions.empty()) {
        Result<std::shared_ptr<const Manifest>> m = store_.GetManifest(model, v);
        if (!m.ok()) continue;
        regions = (*m)->regions.empty() ? std::vector<std::string>{""} : (*m)->regions;  // "" marks "all" in the cache
        std::lock_guard lock(regions_mu_);
        residency_.emplace(std::make_pair(model, v), regions);  // versions are immutable
      }
      if (regions.size() == 1 && regions[0].empty()) regions.clear();
      // Every region is told of every version, those it may not hold too: it
      // keeps their manifests only, to answer 451 for their bytes.
      doc.versions.push_back({model, v, std::move(regions)});
    }
  }
  for (Rollouts::ChannelSnapshot& c : rollouts_.Channels()) {
    doc.sync_version += c.state.state_version;
    doc.channels.push_back({c.state.model, c.state.channel, c.state.state_version, std::move(c.envelope_json)});
  }
  doc.revoked = enrolment_.RecentRevocations();
  doc.revocations = enrolment_.revocations_made();
  doc.sync_version += doc.revocations;
  // Root versions only grow, so a rotation moves the sync version on too.
  doc.root_version = roots_.latest_version();
  doc.sync_version += static_cast<uint64_t>(doc.root_version);
  return doc;
}

HttpResponse Api::Sync(const HttpRequest& req) {
  const std::string& query = req.query;
  std::optional<std::string> region = QueryParam(query, "region");
  if (!region || !IsValidRegionOrProfile(*region)) return JsonError(400, "invalid_argument", "region=ID is required");
  auto number = [&](const char* name, uint64_t* out) {
    std::optional<std::string> text = QueryParam(query, name);
    return !text || ParseQueryNumber(*text, out);
  };
  uint64_t known = 0, wait_s = 0, stored_bytes = 0, terminals = 0, state_expires_ms = 0;
  if (!number("known", &known) || !number("wait", &wait_s) || !number("stored_bytes", &stored_bytes) ||
      !number("terminals", &terminals) || !number("state_expires_ms", &state_expires_ms) ||
      state_expires_ms > static_cast<uint64_t>(INT64_MAX) || wait_s > limits_.target_wait_seconds_max) {
    return JsonError(400, "invalid_argument",
                     fmt::format("known, stored_bytes, terminals and state_expires_ms are numbers; wait is whole "
                                 "seconds in [0, {}]",
                                 limits_.target_wait_seconds_max));
  }
  // Kept as JSON and shown to operators: cut at a character (bytes that are
  // not UTF-8 at all are written as U+FFFD: see RegionSeenRecordIfDue).
  std::string last_error(Utf8Prefix(QueryParam(query, "last_error").value_or(""), kRegionErrorBytesMax));
  // Read before building, so that a change right after still wakes this poll.
  uint64_t generation = rollouts_.notifier().generation();
  SyncDocument doc = BuildSyncDocument();
  int64_t now = clock_.NowUnixMillis();
  std::optional<std::string> record;  // the region's seen-record, when due to be written
  {
    std::lock_guard lock(regions_mu_);
    auto it = regions_seen_.find(*region);
    if (it == regions_seen_.end() && regions_seen_.size() < limits_.regions_max) {
      it = regions_seen_.emplace(*region, RegionSeen{}).first;
    }
    if (it != regions_seen_.end()) {
      RegionSeen& seen = it->second;
      if (known >= doc.sync_version || seen.in_step_ms == 0) seen.in_step_ms = now;
      seen.sync_version = known;
      seen.last_seen_ms = now;
      seen.expect_by_ms = now + static_cast<int64_t>(wait_s) * 1000 + 5000;
      seen.stored_bytes = stored_bytes;
      seen.terminals = terminals;
      seen.state_expires_ms = static_cast<int64_t>(state_expires_ms);
      const bool changed = seen.last_error != last_error;
      seen.last_error = std::move(last_error);
      record = RegionSeenRecordIfDue(*region, seen, changed);
    }
  }
  // Written outside the lock (a synced write must not hold up other regions'
  // polls), and best effort: the record only tells operators when the region
  // was last seen.
  if (record && store_.WriteState({{std::string(kRegionSeenPrefix) + *region, *record}}).ok()) {
    std::lock_guard lock(regions_mu_);
    if (auto it = regions_seen_.find(*region); it != regions_seen_.end()) it->second.persisted_ms = now;
  }
  // Held only when the region is in step; one ahead of this daemon (whose
  // store was rebuilt) is answered at once and starts over from here.
  if (wait_s > 0 && known == doc.sync_version && !req.wait_expired) {
    HttpResponse r;
    r.defer = HttpDeferral{&rollouts_.notifier(), generation, std::chrono::seconds(wait_s)};
    return r;
  }
  HttpResponse r;
  r.body = SyncDocumentToJson(doc);
  r.Set("Content-Type", "application/json");
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::RelayForwardedReports(const HttpRequest& req) {
  Result<std::vector<ForwardedReport>> batch = ParseForwardedReports(req.body, limits_.forwarded_reports_max);
  if (!batch.ok()) return ErrorFor(batch.status());
  const size_t received = batch->size();
  // Passed on upstream, under the same ids.
  Result<size_t> accepted = outbox_->EnqueueRelayed(std::move(*batch));
  if (!accepted.ok()) return OutboxError(accepted.status());
  return JsonOk(200, {{"accepted", *accepted}, {"duplicates", received - *accepted}, {"rejected", 0}});
}

HttpResponse Api::ForwardedReports(const HttpRequest& req) {
  Result<std::vector<ForwardedReport>> batch = ParseForwardedReports(req.body, limits_.forwarded_reports_max);
  if (!batch.ok()) return ErrorFor(batch.status());
  uint64_t accepted = 0, duplicates = 0, rejected = 0;
  // Each report counts once: the batch's ids are recorded, with the counts,
  // in one write after its reports are processed. Reports processed but not
  // recorded (a crash in between) are processed again when the region sends
  // them again — harmless, as a gate counts each terminal's latest report —
  // and counted once.
  std::lock_guard lock(forwarded_mu_);  // batches one after another: ids and counts are read, then written
  std::map<std::string, uint64_t> per_region;
  std::set<std::string> in_batch;
  StateOps ops;
  for (ForwardedReport& f : *batch) {
    std::string key = "reportid/" + f.id;
    Result<std::string> had = store_.GetState(key);
    if (had.ok() || !in_batch.insert(f.id).second) {
      ++duplicates;
      continue;
    }
    if (had.status().code() != Status::Code::kNotFound) return ErrorFor(had.status());
    ops.emplace_back(key, "");
    Result<AgentReport> a = ParseAgentReport(f.terminal, f.report);
    // The region checked the terminal's credential or certificate; it may
    // have been revoked since.
    if (a.ok() && !enrolment_.AdmitCertified(f.terminal).ok()) {
      metrics_.CountDroppedReport("revoked_terminal");
      ++rejected;
      continue;
    }
    if (a.ok() && a->verdict) {
      std::string from = a->report.region;
      Result<bool> c = rollouts_.Report(a->rollout, a->model, a->channel, std::move(a->report), a->periodic);
      if (!c.ok() && c.status().code() != Status::Code::kInvalidArgument) return ErrorFor(c.status());
      ++per_region[from];
      ++accepted;
    } else {
      ++rejected;  // recorded all the same: resending it cannot make it valid
    }
  }
  for (const auto& [region, n] : per_region) {
    std::string key = "region-reports/" + region;
    Result<std::string> old = store_.GetState(key);
    uint64_t total = n + (old.ok() ? std::strtoull(old->c_str(), nullptr, 10) : 0);
    ops.emplace_back(key, std::to_string(total));
  }
  if (!ops.empty()) {
    if (Status st = store_.WriteState(ops); !st.ok()) return ErrorFor(st);
  }
  return JsonOk(200, {{"accepted", accepted}, {"duplicates", duplicates}, {"rejected", rejected}});
}

void Api::LoadRegionsSeen() {
  Result<StateRecords> records = store_.ScanState(kRegionSeenPrefix);
  if (!records.ok()) return;  // shown as never seen until they poll again
  std::lock_guard lock(regions_mu_);
  for (const auto& [key, value] : *records) {
    Result<nlohmann::json> j = ParseJsonObject(value, value.size(), key);
    if (!j.ok() || regions_seen_.size() >= limits_.regions_max) continue;
    RegionSeen seen;  // not reachable until it polls this daemon again
    JsonFields f(*j, key, UnknownFields::kIgnore);
    f.Uint("sync_version", &seen.sync_version);
    f.Int64("last_seen_ms", &seen.last_seen_ms);
    f.Uint("stored_bytes", &seen.stored_bytes);
    f.Uint("terminals", &seen.terminals);
    f.Int64("state_expires_ms", &seen.state_expires_ms);
    f.String("last_error", &seen.last_error);
    f.Int64("holdings_ms", &seen.holdings_ms);
    if (!f.Finish().ok()) continue;
    if (const nlohmann::json* h = j->contains("holdings") ? &(*j)["holdings"] : nullptr) {
      std::string ignored;
      Result<std::map<std::string, ModelHolding>> holdings = ParseHoldings(h->dump(), &ignored);
      if (holdings.ok()) seen.holdings = std::move(*holdings);
    }
    seen.persisted_ms = seen.last_seen_ms;
    regions_seen_.emplace(key.substr(kRegionSeenPrefix.size()), std::move(seen));
  }
}

std::optional<std::string> Api::RegionSeenRecordIfDue(std::string_view region, const RegionSeen& seen, bool changed) {
  if (!changed && seen.last_seen_ms - seen.persisted_ms < kRegionSeenPersistMs) return std::nullopt;
  nlohmann::json j = {{"sync_version", seen.sync_version}, {"last_seen_ms", seen.last_seen_ms},
                      {"stored_bytes", seen.stored_bytes}, {"terminals", seen.terminals},
                      {"state_expires_ms", seen.state_expires_ms}, {"last_error", seen.last_error}};
  if (seen.holdings_ms != 0) {
    j["holdings_ms"] = seen.holdings_ms;
    j["holdings"] = nlohmann::json::parse(HoldingsToJson(region, seen.holdings));
  }
  return DumpJson(j);
}

std::vector<Api::RegionView> Api::RegionViews(uint64_t* current_sync_version) {
  const uint64_t current = BuildSyncDocument().sync_version;
  *current_sync_version = current;
  const int64_t now = clock_.NowUnixMillis();
  std::map<std::string, RegionView> views;
  {
    std::lock_guard lock(regions_mu_);
    for (const auto& [region, seen] : regions_seen_) {
      views[region] = {.region = region,
                       .reachable = now <= seen.expect_by_ms,
                       .healthy = now <= seen.expect_by_ms && seen.last_error.empty(),
                       .last_error = seen.last_error,
                       .sync_version = seen.sync_version,
                       .behind = current > seen.sync_version ? current - seen.sync_version : 0,
                       .lag_ms = seen.sync_version >= current ? 0 : now - seen.in_step_ms,
                       .last_seen_ms = seen.last_seen_ms,
                       .state_expires_ms = seen.state_expires_ms,
                       .stored_bytes = seen.stored_bytes,
                       .terminals = seen.terminals};
    }
  }
  Result<StateRecords> counts = store_.ScanState("region-reports/");
  for (const auto& [key, value] : counts.ok() ? *counts : StateRecords()) {
    std::string region = key.substr(std::string_view("region-reports/").size());
    RegionView& view = views[region];
    if (view.region.empty()) {  // known only from its reports
      view.region = region;
      view.behind = current;
      view.lag_ms = std::nullopt;
    }
    view.reports_received = std::strtoull(value.c_str(), nullptr, 10);
  }
  std::vector<RegionView> out;
  for (auto& [region, view] : views) out.push_back(std::move(view));
  return out;
}

HttpResponse Api::ListRegions() {
  uint64_t current = 0;
  nlohmann::json list = nlohmann::json::array();
  for (const RegionView& v : RegionViews(&current)) {
    list.push_back({{"region", v.region},
                    {"reachable", v.reachable},
                    {"healthy", v.healthy},
                    {"last_error", v.last_error},
                    {"sync_version", v.sync_version},
                    {"behind", v.behind},
                    {"lag_ms", v.lag_ms ? nlohmann::json(*v.lag_ms) : nlohmann::json(nullptr)},
                    {"last_seen_ms", v.last_seen_ms},
                    {"state_expires_ms", v.state_expires_ms},
                    {"stored_bytes", v.stored_bytes},
                    {"terminals", v.terminals},
                    {"reports_received", v.reports_received}});
  }
  nlohmann::json out = {{"role", region_.empty() ? "origin" : "region"}, {"sync_version", current}, {"regions", list}};
  if (!region_.empty()) {
    FollowerStatus f = follower_->status();
    ReportOutbox::Stats o = outbox_->stats();
    out["region"] = region_;
    out["upstream"] = {{"url", f.upstream},
                       {"reachable", f.upstream_ok},
                       {"sync_version", f.sync_version},
                       {"last_sync_ms", f.last_sync_ms},
                       {"last_error", f.last_error},
                       {"reports_pending", o.pending},
                       {"reports_forwarded", o.forwarded}};
  }
  return JsonOk(200, out);
}

HttpResponse Api::RegionHoldings(const HttpRequest& req) {
  std::string region;
  Result<std::map<std::string, ModelHolding>> holdings = ParseHoldings(req.body, &region);
  if (!holdings.ok()) return ErrorFor(holdings.status());
  const int64_t now = clock_.NowUnixMillis();
  std::optional<std::string> record;
  {
    std::lock_guard lock(regions_mu_);
    auto it = regions_seen_.find(region);
    if (it == regions_seen_.end()) {
      return JsonError(409, "unknown_region", "region '" + region + "' has not polled GET /v1/sync here yet");
    }
    it->second.holdings = std::move(*holdings);
    it->second.holdings_ms = now;
    record = RegionSeenRecordIfDue(region, it->second, /*changed=*/true);
  }
  if (Status st = store_.WriteState({{std::string(kRegionSeenPrefix) + region, *record}}); !st.ok()) {
    return ErrorFor(st);
  }
  return JsonOk(200, {{"region", region}, {"recorded_ms", now}});
}

HttpResponse Api::Residency() {
  Result<std::map<std::string, ModelHolding>> here = Catalog::Holdings(store_);
  if (!here.ok()) return ErrorFor(here.status());
  const int64_t now = clock_.NowUnixMillis();
  // model -> one row per daemon holding or listing it
  std::map<std::string, nlohmann::json> rows;
  auto add = [&](const std::string& daemon, const std::string& jurisdiction, int64_t as_of_ms,
                 const std::map<std::string, ModelHolding>& holdings) {
    for (const auto& [model, h] : holdings) {
      nlohmann::json& list = rows[model];
      if (list.is_null()) list = nlohmann::json::array();
      list.push_back({{"daemon", daemon}, {"jurisdiction", jurisdiction}, {"as_of_ms", as_of_ms},
                      {"versions", h.versions}, {"versions_held", h.versions_held}, {"bytes", h.bytes}});
    }
  };
  add(region_.empty() ? "origin" : region_, catalog_.jurisdiction(), now, *here);
  {
    std::lock_guard lock(regions_mu_);
    for (const auto& [region, seen] : regions_seen_) add(region, region, seen.holdings_ms, seen.holdings);
  }
  nlohmann::json models = nlohmann::json::array();
  for (auto& [model, daemons] : rows) {
    std::vector<std::string> residency;  // the newest version's
    if (Result<std::vector<std::string>> versions = store_.ListVersions(model); versions.ok() && !versions->empty()) {
      if (auto m = store_.GetManifest(model, versions->back()); m.ok()) residency = (*m)->regions;
    }
    models.push_back({{"model", model}, {"residency", residency}, {"daemons", std::move(daemons)}});
  }
  return JsonOk(200, {{"models", std::move(models)}});
}

}  // namespace meridian
