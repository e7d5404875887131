// The channel signer: signs, stores and serves the channel states terminals
// follow (see channel_signer.h).
#include "daemon/channel_signer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "daemon/state_record.h"

namespace meridian {

ChannelSigner::ChannelSigner(Store& store, std::optional<SecretKey> online_key, const Clock& clock,
                             ChannelSignerOptions options)
    : store_(store), key_(std::move(online_key)), clock_(clock), o_(options) {}

Result<std::unique_ptr<ChannelSigner>> ChannelSigner::Open(Store& store, std::optional<SecretKey> online_key,
                                                           const Clock& clock, ChannelSignerOptions options) {
  std::unique_ptr<ChannelSigner> s(new ChannelSigner(store, std::move(online_key), clock, options));
  MERIDIAN_RETURN_IF_ERROR(s->Load());
  return s;
}

Status ChannelSigner::Load() {
  Result<StateRecords> kv = store_.ScanState("channel/");
  if (!kv.ok()) return kv.status();
  std::lock_guard lock(mu_);
  for (const auto& [k, v] : *kv) {
    std::vector<std::string> parts = SplitStateKey(k, 3);
    nlohmann::json j = ParseStateRecord(v);
    if (parts.size() != 3 || !j.is_object() || !j.value("envelope", nlohmann::json()).is_string()) {
      return Status::Corruption(k + ": malformed channel record");
    }
    std::string envelope = j["envelope"].get<std::string>();
    Result<Envelope> env = ParseEnvelope(envelope);
    Result<ChannelState> s = env.ok() ? ChannelStateFromJson(AsString(env->payload)) : Result<ChannelState>(env.status());
    if (!s.ok()) return Status::Corruption(k + ": " + s.status().message());
    channels_[{parts[1], parts[2]}] =
        std::make_shared<const SignedChannel>(SignedChannel{std::move(*s), std::move(envelope)});
  }
  return Status::Ok();
}

Status ChannelSigner::CanSign() const {
  if (!key_) return Status::FailedPrecondition("a region signs no channel state; act at the origin");
  return Status::Ok();
}

uint64_t ChannelSigner::HeldStateVersion(const ModelChannel& mc) const {
  std::lock_guard lock(mu_);
  auto it = channels_.find(mc);
  return it == channels_.end() ? 0 : it->second->state.state_version;
}

Status ChannelSigner::Keep(SignedChannel signed_state, StateOps ops) {
  const ChannelState& s = signed_state.state;
  nlohmann::json j = {{"version", s.version}, {"state_version", s.state_version}, {"envelope", signed_state.envelope_json}};
  ops.emplace_back(fmt::format("channel/{}/{}", s.model, s.channel), j.dump());
  MERIDIAN_RETURN_IF_ERROR(store_.WriteState(ops));
  ModelChannel mc{s.model, s.channel};
  auto held = std::make_shared<const SignedChannel>(std::move(signed_state));
  std::lock_guard lock(mu_);
  channels_[mc] = std::move(held);
  return Status::Ok();
}

Status ChannelSigner::Publish(ChannelState content, StateOps ops) {
  MERIDIAN_RETURN_IF_ERROR(CanSign());
  std::lock_guard write(write_mu_);
  content.state_version = HeldStateVersion({content.model, content.channel}) + 1;
  content.issued_ms = clock_.NowUnixMillis();
  content.expires_ms = content.issued_ms + o_.state_expiry_ms;
  std::string envelope = SignChannelState(content, *key_);
  return Keep(SignedChannel{std::move(content), std::move(envelope)}, std::move(ops));
}

Result<bool> ChannelSigner::Adopt(const ChannelState& state, std::string envelope_json) {
  std::lock_guard write(write_mu_);
  if (HeldStateVersion({state.model, state.channel}) >= state.state_version) return false;
  MERIDIAN_RETURN_IF_ERROR(Keep(SignedChannel{state, std::move(envelope_json)}, {}));
  return true;
}

Result<std::shared_ptr<const SignedChannel>> ChannelSigner::Current(std::string_view model,
                                                                    std::string_view channel) const {
  std::shared_ptr<const SignedChannel> held;
  {
    std::lock_guard lock(mu_);
    auto it = channels_.find({std::string(model), std::string(channel)});
    if (it != channels_.end()) held = it->second;
  }
  if (held == nullptr) {
    return Status::NotFound(fmt::format("model '{}' channel '{}' has no version yet", model, channel));
  }
  if (held->state.expires_ms <= clock_.NowUnixMillis()) {
    return Status::Unavailable(fmt::format("the signed state of model '{}' channel '{}' expired at {}; "
                                           "this daemon has not reached its upstream since",
                                           model, channel, FormatRfc3339(held->state.expires_ms)));
  }
  return held;
}

std::string ChannelSigner::Pointer(std::string_view model, std::string_view channel) const {
  std::lock_guard lock(mu_);
  auto it = channels_.find({std::string(model), std::string(channel)});
  return it == channels_.end() ? std::string() : it->second->state.version;
}

std::vector<SignedChannel> ChannelSigner::Channels() const {
  std::lock_guard lock(mu_);
  std::vector<SignedChannel> out;
  for (const auto& [mc, held] : channels_) out.push_back(*held);
  return out;
}

std::vector<ChannelSigner::ModelChannel> ChannelSigner::Expiring() const {
  std::vector<ModelChannel> out;
  if (!key_) return out;
  int64_t now = clock_.NowUnixMillis();
  std::lock_guard lock(mu_);
  for (const auto& [mc, held] : channels_) {
    if (held->state.expires_ms - now < o_.state_refresh_ms) out.push_back(mc);
  }
  return out;
}

}  // namespace meridian
