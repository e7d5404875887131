// The daemon's rollout service: runs rollout/'s state machine over the store's
// durable state space, tallies reports and ticks the gates, and has the
// channel signer (daemon/channel_signer.h) sign each channel's new state.
// It also stands in front of the signer and the known-terminal registry
// (daemon/terminal_registry.h) for the API and the follower, and wakes
// long-polling terminals when a channel changes.
//
// Stored keys (Store::WriteState, synced):
//   rollout/<id>                           {"seq":N,"rollout":{spec,state,events}}
//   report/<rollout>/<stage>/<terminal>    ReportToJson (the latest report of that terminal in that stage)
// and through the signer and the registry:
//   channel/<model>/<channel>              {"version":"<pointer>","state_version":N,"envelope":"<signed JSON>"}
//   terminal/<model>/<channel>/<terminal>  {"profile","region","current_version","last_seen_ms","failed_version"}
// A rollout change and its channel's newly signed state are one atomic write,
// so the state_version a terminal saw is never reused after a restart.
//
// Thread-safe. The engine's mutex guards the rollouts and their tallies only;
// the signer and the registry lock for themselves, and the engine never
// holds its mutex while it counts known terminals or asks `download_bytes`.
// Order when nested: the engine's, then the signer's. No call waits on the
// network.
//
// A region's service has no key: it holds no rollouts and signs nothing; its
// channel states are the origin's, adopted as its follower fetches them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "daemon/channel_signer.h"
#include "daemon/http.h"
#include "daemon/terminal_registry.h"
#include "rollout/rollout.h"
#include "signing/signing.h"
#include "store/store.h"
#include "target/target.h"

namespace meridian {

// The defaults are the signer's and the registry's; these fields are handed to them.
struct RolloutsOptions {
  int64_t state_expiry_ms = ChannelSignerOptions{}.state_expiry_ms;    // lifetime of a signed channel state
  int64_t state_refresh_ms = ChannelSignerOptions{}.state_refresh_ms;  // re-signed by Tick when less than this is left
  size_t rollouts_max = 10'000;                                        // kept in memory and store, all states
  size_t terminals_max = TerminalRegistryOptions{}.terminals_max;      // known (model, channel, terminal) records
  int64_t terminal_touch_ms = TerminalRegistryOptions{}.touch_ms;      // last_seen of an unchanged terminal is persisted at most this often
  size_t terminal_flush_ops_max = TerminalRegistryOptions{}.flush_ops_max;  // terminal records per write batch
  // IANA time zone per region ("*": any other), filled into a rollout with a
  // window for the regions its spec gives no zone.
  std::map<std::string, std::string> time_zones = {};
  // Called with each change a gate made on its own (actor kGateActor), once
  // it is durable, under the engine's mutex: the daemon appends it to its
  // audit log. The change stands whatever the hook does; it reports its own
  // failures. Operators' changes are the API's to audit.
  std::function<void(const RolloutSpec&, const RolloutEvent&)> on_gate_change = {};
};

// A rollout event as one line for the audit log: the states it moved
// between, and why.
std::string DescribeRolloutEvent(const RolloutEvent& e);

// The answer to GET /v1/terminals/{id}/target.
struct TargetAnswer {
  uint64_t state_version = 0;
  std::string envelope_json;  // the signed channel state
  ChannelTarget target;       // ResolveChannelTarget of that state for this terminal
};

// One row of a rollout's per-stage table.
struct StageRow {
  double percent = 0;
  uint64_t eligible = 0;  // known terminals in this stage's cohort
  uint64_t updated = 0;   // of those, running the target version now
  // … told the target and neither running it nor failed with it: the stage
  // was reached (every stage of a completed rollout; none once aborted or
  // rolled back) and the terminal last reported neither (docs/operator-guide.md, "Monitoring").
  uint64_t downloading = 0;
  uint64_t failed = 0;    // terminals whose latest report in this stage is a failure
  uint64_t healthy = 0;   // … is a success
  std::string gate;       // "passed", "pending", or the gate's reason for the current stage
  std::string region;     // the wave's region (waves), else empty: all the spec's regions
};

// One region of a rollout: its known terminals and, for waves, where it stands.
struct RegionRow {
  std::string region;
  uint64_t terminals = 0;  // known terminals of this region the rollout covers
  uint64_t updated = 0;    // of those, running the target
  uint64_t failed = 0;     // of those, whose last report says the target failed
  std::string wave;        // waves: "done", "waiting", or the rollout's phase for the region in progress;
                           // otherwise the rollout's phase
};

// A dry run of a spec against the known terminals.
struct RolloutPlan {
  RolloutSpec spec;                          // completed as Start would (previous version, id)
  std::vector<uint64_t> eligible;            // per stage: known terminals in its cohort (cumulative)
  std::vector<uint64_t> full_download_bytes; // per stage: those not on the target × the target's size
  std::vector<uint64_t> delta_download_bytes; // per stage: the same terminals, each fetching what
                                             // `download_bytes` says for its current version
  uint64_t target_bytes = 0;                 // size of the target artifact
  struct Region {
    std::string region;
    uint64_t terminals = 0;              // known terminals of the region in the last stage's cohort
    uint64_t full_download_bytes = 0;    // as above, for those terminals
    uint64_t delta_download_bytes = 0;
  };
  std::vector<Region> regions;               // regions with terminals in the rollout, in name order
};

class Rollouts {
 public:
  // Loads every stored rollout, report, channel and terminal. Corruption when
  // a stored record does not parse.
  // `online_key` empty: a region's (see above).
  static Result<std::unique_ptr<Rollouts>> Open(Store& store, std::optional<SecretKey> online_key, const Clock& clock,
                                                RolloutsOptions options = {});
  ~Rollouts();

  // Long-polling terminals wait on this; it fires after every channel change.
  ChangeNotifier& notifier() { return notifier_; }

  // Starts a rollout from an operator's spec. The id is generated when empty;
  // previous_version is the version the channel holds for the spec's regions
  // (whatever the request said). NotFound: the target version is not
  // published. InvalidArgument: the spec (rollout/ ValidateRolloutSpec), a
  // canary that the spec's filters exclude by what it last declared as a known
  // terminal (rollout/ CheckCanariesEligible), or the target's manifest
  // restricts its regions and the spec names a region outside them (or none:
  // all regions).
  // FailedPrecondition: an active rollout overlaps; AlreadyExists: the id is
  // taken. ResourceExhausted: rollouts_max.
  Result<Rollout> Start(RolloutSpec spec, std::string_view actor, std::string_view reason);
  // An operator action. NotFound; FailedPrecondition for an illegal transition.
  Result<Rollout> Act(std::string_view id, RolloutAction action, std::string_view actor, std::string_view reason);
  Result<Rollout> Get(std::string_view id) const;
  // Every rollout, oldest first.
  std::vector<Rollout> List() const;
  Result<std::vector<StageRow>> Stages(std::string_view id) const;
  // Per region: the spec's regions, or those of the known terminals when it names none.
  Result<std::vector<RegionRow>> Regions(std::string_view id) const;
  // What Start would do with `spec`, without doing it (an empty id becomes "plan").
  // `download_bytes(current_version)`: what a terminal on that version
  // downloads to reach the target (a delta when one is known); asked once per
  // distinct version.
  Result<RolloutPlan> Plan(RolloutSpec spec,
                           const std::function<uint64_t(const std::string& current_version)>& download_bytes) const;

  // The signed state of a channel and this terminal's answer; records the
  // terminal as known. NotFound when no rollout ever set the channel;
  // Unavailable when its state expired (a region cut off from upstream).
  Result<TargetAnswer> Target(std::string_view model, std::string_view channel, const TerminalInfo& terminal);

  // A terminal's report. `rollout_id` empty: the newest active rollout of the
  // model channel the terminal is eligible for. Returns whether the report
  // counts for a gate (false: accepted and ignored — unknown rollout, not in
  // the current cohort, another version). Gates are evaluated at once.
  // `periodic`: the repeated health check of what the terminal runs: its
  // numbers feed the health rules at once, but it is written to the store
  // only when its outcome differs from the terminal's counted one in the
  // stage, so a fleet's periodic checks cost no synced write each.
  Result<bool> Report(std::string_view rollout_id, std::string_view model, std::string_view channel,
                      TerminalReport report, bool periodic = false);

  // Every channel's signed state, for regions downstream.
  using ChannelSnapshot = SignedChannel;
  std::vector<ChannelSnapshot> Channels() const;
  // Region: keeps a channel state verified against the root (target/
  // VerifyChannelState) unless one as new is held already; durable on return.
  // Returns whether it was newer.
  Result<bool> Adopt(const ChannelState& state, std::string envelope_json);
  // Known terminal records over all channels (TerminalRegistry::size).
  size_t KnownTerminals() const;
  // The versions known terminals run, per model channel (TerminalRegistry::Versions).
  FleetVersions KnownVersions(size_t versions_max) const;
  // A page of known terminals (TerminalRegistry::Terminals).
  FleetPage KnownTerminalPage(const FleetQuery& query) const;

  // Periodic work: gates whose soak time passed, re-signing channel states
  // that expire within state_refresh_ms, and persisting known terminals.
  void Tick();

 private:
  struct Impl;
  explicit Rollouts(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  ChangeNotifier notifier_;
};

}  // namespace meridian
