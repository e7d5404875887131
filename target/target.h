// What terminals follow: the signed "channel state" document the daemon's
// online key signs once per state change, and the checks a terminal runs on it
// (signature, rollback, freeze) before it evaluates its own target with the
// cohort rule of rollout/. Pure: no I/O, times passed in as Unix milliseconds.
//
// The daemon signs one document per model channel and state change, not one
// per terminal and request: a promote that wakes thousands of long-polling
// terminals costs one signature, and the signed bytes are the same for every
// terminal (cacheable). Each terminal recomputes its answer from the document
// with ResolveChannelTarget — the same function the daemon uses for the
// convenience answer it sends next to the document. Format: docs/formats/target.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "rollout/rollout.h"
#include "signing/signing.h"

namespace meridian {

// DSSE payloadType and "type" field of a channel state document.
inline constexpr std::string_view kTargetPayloadType = "application/vnd.meridian.target.v1+json";
inline constexpr std::string_view kTargetDocumentType = "meridian.target/v1";

// Rollouts one channel state carries: the newest per region/profile scope
// (older ones they cover are dropped, see the daemon), bounded all the same.
inline constexpr size_t kChannelRolloutsMax = 64;
// Versions named by those rollouts and the channel pointer.
inline constexpr size_t kChannelVersionsMax = 2 * kChannelRolloutsMax + 1;
inline constexpr size_t kChannelStateJsonBytesMax = 16u << 20;

// What a terminal needs to know about a version it may be told to run.
struct VersionRef {
  Digest manifest_digest;  // of the signed manifest envelope bytes the daemon serves
  Digest digest;           // of the whole artifact (from the manifest)
  uint64_t size = 0;       // bytes of the whole artifact
  bool operator==(const VersionRef&) const = default;
};

struct ChannelRollout {
  RolloutSpec spec;
  RolloutState state;
  bool operator==(const ChannelRollout&) const = default;
};

struct ChannelState {
  std::string model;
  std::string channel;
  uint64_t state_version = 0;  // grows with every signed document of this channel, never reused
  int64_t issued_ms = 0;
  int64_t expires_ms = 0;      // terminals refuse the document from then on (freeze attack)
  std::string version;         // the channel's own pointer: what terminals no rollout covers run; may be empty
  std::vector<ChannelRollout> rollouts;       // newest first
  std::map<std::string, VersionRef> versions;  // every version named above
  bool operator==(const ChannelState&) const = default;
};

std::string ChannelStateToJson(const ChannelState& state);
// Parses and checks the document is well formed (type, names, limits, every
// rollout of this model and channel, every named version listed).
// InvalidArgument naming the problem otherwise.
Result<ChannelState> ChannelStateFromJson(std::string_view json);

// Signs `state` with the online key into a DSSE envelope (JSON).
std::string SignChannelState(const ChannelState& state, const SecretKey& online_key);

// A terminal's checks on a channel state envelope, in this order:
//  - InvalidArgument: malformed envelope or document, wrong payload type,
//    another model or channel than asked for;
//  - PermissionDenied: not signed by a threshold of the root's "online" keys;
//  - FailedPrecondition: state_version below `last_seen_state_version`, the
//    highest this terminal accepted before (a replayed older document:
//    rollback attack). The same version again is accepted;
//  - DeadlineExceeded: expired at `now_ms` (a frozen, withheld state).
Result<ChannelState> VerifyChannelState(const Root& root, std::string_view envelope_json, std::string_view model,
                                        std::string_view channel, uint64_t last_seen_state_version, int64_t now_ms);

// Which version a terminal should run under a channel state: the newest
// rollout the terminal is eligible for decides (rollout/ ResolveTarget);
// a terminal no rollout covers runs the channel's own pointer.
struct ChannelTarget {
  std::string version;  // empty: the channel has no version for this terminal
  VersionRef ref;       // of `version`; empty when `version` is
  std::string rollout;  // id of the deciding rollout; empty for the channel pointer
  std::string reason;   // TargetReasonName, or "channel" for the pointer
};
ChannelTarget ResolveChannelTarget(const ChannelState& state, const TerminalInfo& terminal);

}  // namespace meridian
