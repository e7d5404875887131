// Releases waiting for co-signers, kept in the store's state space.
#include "daemon/pending_releases.h"

#include <optional>

#include <nlohmann/json.hpp>

#include "daemon/state_record.h"

namespace meridian {
namespace {

constexpr std::string_view kPendingReleaseKeyPrefix = "pending-release/";

}  // namespace

std::string PendingReleases::StateKey(const Key& key) {
  return std::string(kPendingReleaseKeyPrefix) + key.first + "/" + key.second;
}

Result<std::unique_ptr<PendingReleases>> PendingReleases::Open(Store& store, const Root& root, size_t pending_max) {
  std::unique_ptr<PendingReleases> p(new PendingReleases(store, pending_max));
  Result<StateRecords> records = store.ScanState(kPendingReleaseKeyPrefix);
  if (!records.ok()) return records.status();
  StateOps dropped;
  for (const auto& [key, value] : *records) {
    nlohmann::json j = ParseStateRecord(value);
    auto envelope = j.is_object() ? j.find("envelope") : j.end();
    auto received = j.is_object() ? j.find("received_ms") : j.end();
    Result<CoSignedManifest> release = Status::Corruption("damaged record");
    if (j.is_object() && envelope != j.end() && envelope->is_string() && received != j.end() &&
        received->is_number_integer()) {
      release = VerifyCoSignedManifest(root, envelope->get_ref<const std::string&>());
    }
    const Key k = release.ok() ? Key{release->manifest.name, release->manifest.version} : Key{};
    if (!release.ok() || StateKey(k) != key || p->pending_.size() >= pending_max) {
      dropped.emplace_back(key, std::nullopt);
      continue;
    }
    p->pending_.emplace(k, PendingRelease{std::move(*release), received->get<int64_t>()});
  }
  if (!dropped.empty()) MERIDIAN_RETURN_IF_ERROR(store.WriteState(dropped));
  return p;
}

Result<CoSignedManifest> PendingReleases::Add(const Root& root, const CoSignedManifest& signed_release,
                                              int64_t now_ms) {
  const Key key{signed_release.manifest.name, signed_release.manifest.version};
  std::lock_guard lock(mu_);
  auto it = pending_.find(key);
  PendingRelease next{signed_release, now_ms};
  if (it != pending_.end()) {
    Result<Envelope> merged = MergeSignatures(root, "release", it->second.release.envelope, signed_release.envelope);
    if (!merged.ok()) {
      return Status::InvalidArgument(key.first + " " + key.second +
                                     " is waiting for signatures on another manifest; sign that one, or publish "
                                     "another version");
    }
    next.release.envelope = std::move(*merged);
    next.release.signers = ValidSigners(root, "release", next.release.envelope);
    next.received_ms = it->second.received_ms;
    if (next.release.signers == it->second.release.signers) return next.release;  // nothing new to keep
  } else if (pending_.size() >= pending_max_) {
    return Status::ResourceExhausted(std::to_string(pending_max_) +
                                     " versions are waiting for signatures already; have them signed first");
  }
  nlohmann::json record = {{"envelope", EnvelopeToJson(next.release.envelope)}, {"received_ms", next.received_ms}};
  MERIDIAN_RETURN_IF_ERROR(store_.WriteState({{StateKey(key), record.dump()}}));
  pending_.insert_or_assign(key, next);
  return next.release;
}

Status PendingReleases::Remove(const std::string& model, const std::string& version) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(Key{model, version});
  if (it == pending_.end()) return Status::Ok();
  MERIDIAN_RETURN_IF_ERROR(store_.WriteState({{StateKey(it->first), std::nullopt}}));
  pending_.erase(it);
  return Status::Ok();
}

Result<std::string> PendingReleases::EnvelopeJson(const std::string& model, const std::string& version) const {
  std::lock_guard lock(mu_);
  auto it = pending_.find(Key{model, version});
  if (it == pending_.end()) return Status::NotFound(model + " " + version + " is not waiting for signatures");
  return EnvelopeToJson(it->second.release.envelope);
}

std::vector<PendingRelease> PendingReleases::List() const {
  std::lock_guard lock(mu_);
  std::vector<PendingRelease> out;
  for (const auto& [key, p] : pending_) out.push_back(p);
  return out;
}

}  // namespace meridian
