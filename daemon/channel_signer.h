// The channel signer: holds the signed state (target/ ChannelState) of every
// model channel terminals follow, signs a channel's next state with the
// online key when the rollout engine asks, and in a region adopts the
// origin's states, which it cannot sign itself.
//
// Stored keys (Store::WriteState, synced):
//   channel/<model>/<channel>  {"envelope":"<signed JSON>","state_version":N,"version":"<pointer>"}
// A state is written before it is served, in the same batch as the change
// that caused it (Publish's `ops`), so the state_version a terminal saw is
// never reused after a restart.
//
// Thread-safe. Two mutexes, taken in this order when both are:
//  - write_mu_ makes publishing and adopting one at a time, from reading the
//    held state_version to holding the written state, across the store write;
//  - mu_ guards the held states and is held only to look one up or swap one
//    in, so a terminal asking for its target never waits on a store write.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "signing/signing.h"
#include "store/store.h"
#include "target/target.h"

namespace meridian {

struct ChannelSignerOptions {
  int64_t state_expiry_ms = 24ll * 3600 * 1000;   // lifetime of a signed channel state
  int64_t state_refresh_ms = 12ll * 3600 * 1000;  // Expiring lists a state with less than this left
};

// A channel state and the DSSE envelope (JSON) it was signed into.
struct SignedChannel {
  ChannelState state;
  std::string envelope_json;
};

class ChannelSigner {
 public:
  using ModelChannel = std::pair<std::string, std::string>;
  using StateOps = meridian::StateOps;

  // Loads every stored channel state. Corruption when a stored record is not
  // a JSON object with an "envelope" string holding a well-formed channel
  // state; the store's error when it cannot be read. `online_key` empty: a
  // region's signer, which only adopts.
  static Result<std::unique_ptr<ChannelSigner>> Open(Store& store, std::optional<SecretKey> online_key,
                                                     const Clock& clock, ChannelSignerOptions options = {});

  // OK when this signer holds a key; FailedPrecondition in a region.
  Status CanSign() const;

  // Signs the next state of `content`'s model channel: its pointer
  // (version), rollouts and versions as given; state_version, issued_ms and
  // expires_ms are set here. Writes it together with `ops` in one synced
  // batch and serves it from then on. FailedPrecondition without a key; the
  // store's error when the write fails, and then nothing changed.
  Status Publish(ChannelState content, StateOps ops = {});

  // The state to hand a terminal of a model channel. NotFound when the
  // channel has none; Unavailable when it expired (a region cut off from its
  // upstream, or an origin that did not refresh it).
  Result<std::shared_ptr<const SignedChannel>> Current(std::string_view model, std::string_view channel) const;

  // The pointer of a model channel's held state; empty when it has none.
  std::string Pointer(std::string_view model, std::string_view channel) const;

  // Every held state, by model and channel.
  std::vector<SignedChannel> Channels() const;

  // The channels whose state expires within state_refresh_ms, to publish
  // again; none without a key.
  std::vector<ModelChannel> Expiring() const;

  // Region: holds `state` (verified by the caller against the root, target/
  // VerifyChannelState) with its envelope unless a state as new is held
  // already; durable on return. Returns whether it was newer; the store's
  // error when the write fails.
  Result<bool> Adopt(const ChannelState& state, std::string envelope_json);

 private:
  ChannelSigner(Store& store, std::optional<SecretKey> online_key, const Clock& clock, ChannelSignerOptions options);
  Status Load();
  uint64_t HeldStateVersion(const ModelChannel& mc) const;
  // Writes `signed_state` with `ops` in one synced batch, then holds it.
  Status Keep(SignedChannel signed_state, StateOps ops);

  Store& store_;
  const std::optional<SecretKey> key_;  // empty in a region
  const Clock& clock_;
  const ChannelSignerOptions o_;

  std::mutex write_mu_;
  mutable std::mutex mu_;  // guards channels_
  // Shared so that a terminal's answer is worked out from a state after mu_
  // is released; a held state is replaced, never changed.
  std::map<ModelChannel, std::shared_ptr<const SignedChannel>> channels_;
};

}  // namespace meridian
