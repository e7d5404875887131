// The chain of roots a daemon trusts and serves.
#include "daemon/root_chain.h"

#include <fmt/format.h>

namespace meridian {
namespace {

constexpr std::string_view kRootKeyPrefix = "root/";

std::string StateKey(int64_t version) { return fmt::format("{}{:020}", kRootKeyPrefix, version); }

}  // namespace

Result<std::unique_ptr<RootChain>> RootChain::Open(Store& store, std::string initial_envelope_json) {
  Result<Root> initial = LoadTrustedRoot(initial_envelope_json);
  if (!initial.ok()) return initial.status();
  std::unique_ptr<RootChain> chain(new RootChain(store));
  chain->first_version_ = initial->version;
  chain->envelopes_.emplace(initial->version, std::move(initial_envelope_json));
  chain->current_ = std::make_shared<const Root>(std::move(*initial));
  Result<StateRecords> kept = store.ScanState(kRootKeyPrefix);
  if (!kept.ok()) return kept.status();
  std::lock_guard lock(chain->mu_);
  // In version order (the keys sort so); those the initial root already covers are skipped.
  for (const auto& [key, envelope] : *kept) {
    if (key <= StateKey(chain->first_version_)) continue;
    Result<Root> next = chain->VerifyNext(envelope);
    if (!next.ok()) return Status::Corruption(fmt::format("kept root {}: {}", key, next.status().message()));
    chain->Adopt(envelope, std::move(*next));
  }
  return chain;
}

std::shared_ptr<const Root> RootChain::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

int64_t RootChain::latest_version() const {
  std::lock_guard lock(mu_);
  return current_->version;
}

Result<std::string> RootChain::EnvelopeJson(int64_t version) const {
  std::lock_guard lock(mu_);
  auto it = envelopes_.find(version);
  if (it == envelopes_.end()) {
    return Status::NotFound(fmt::format("no root version {} here (versions {} to {})", version, first_version_,
                                        current_->version));
  }
  return it->second;
}

Result<Root> RootChain::VerifyNext(const std::string& envelope_json) const {
  Result<Envelope> env = ParseEnvelope(envelope_json);
  if (!env.ok()) return Status::InvalidArgument("not a DSSE envelope: " + env.status().message());
  return VerifyRootUpdate(*current_, *env);
}

void RootChain::Adopt(const std::string& envelope_json, Root next) {
  envelopes_.emplace(next.version, envelope_json);
  current_ = std::make_shared<const Root>(std::move(next));
}

Status RootChain::Add(const std::string& envelope_json, std::optional<int64_t> fresh_at_unix_ms) {
  std::lock_guard lock(mu_);
  if (envelopes_.size() > kRootChainLengthMax) {
    return Status::ResourceExhausted(fmt::format("the chain holds {} roots already", kRootChainLengthMax));
  }
  Result<Root> next = VerifyNext(envelope_json);
  if (!next.ok()) return next.status();
  if (fresh_at_unix_ms) MERIDIAN_RETURN_IF_ERROR(CheckRootFresh(*next, *fresh_at_unix_ms));
  MERIDIAN_RETURN_IF_ERROR(store_.WriteState({{StateKey(next->version), envelope_json}}));
  Adopt(envelope_json, std::move(*next));
  return Status::Ok();
}

}  // namespace meridian
