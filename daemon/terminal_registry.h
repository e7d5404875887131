// The known-terminal registry: which terminals follow which model channel and
// what each last declared (profile, region, running version, a failed
// install), bounded, written to the store in batches and loaded at start.
// Rollouts count their cohorts and check their canaries against it.
//
// Stored keys (Store::WriteState, batched by Flush, not synced per request):
//   terminal/<model>/<channel>/<terminal>
//       {"current_version","failed_version","last_seen_ms","profile","region"}
// Known terminals are soft state: a record lost in a crash before the flush,
// or never kept because the registry was full, comes back at the terminal's
// next poll or report. That is why a poll costs no store write.
//
// Thread-safe. One mutex guards the records; it is held for map work only,
// never across a store write, so a flush does not hold up terminal polls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "rollout/rollout.h"
#include "store/store.h"

namespace meridian {

struct TerminalRegistryOptions {
  size_t terminals_max = 1'000'000;  // (model, channel, terminal) records held
  int64_t touch_ms = 60'000;         // last_seen of an unchanged terminal is written at most this often
  size_t flush_ops_max = 10'000;     // records per Flush (one write batch)
};

// A terminal that asked for a target of a model channel, or reported on one.
struct KnownTerminal {
  TerminalInfo info;
  int64_t last_seen_ms = 0;
  std::string failed_version;  // the version whose install it last reported failed; cleared by a success
};

// The versions the known terminals of one model channel run.
struct ChannelVersions {
  std::string model;
  std::string channel;
  std::map<std::string, uint64_t> terminals_by_version;  // "" counts those that run none yet
};

// ChannelVersions of every model channel, at most a given number of versions in all.
struct FleetVersions {
  std::vector<ChannelVersions> channels;  // in (model, channel) order
  bool truncated = false;                 // more versions are known than were asked for
};

class TerminalRegistry {
 public:
  // Loads the stored records, the first terminals_max of them in key order.
  // Corruption when a stored record's key does not have four parts or its
  // value is not a JSON object; the store's error when it cannot be read.
  static Result<std::unique_ptr<TerminalRegistry>> Open(Store& store, const Clock& clock,
                                                        TerminalRegistryOptions options = {});

  // A terminal asked for a target of a model channel: keeps what it declared,
  // seen now. Marked for the next Flush when that changed or touch_ms passed
  // since it was last seen. A terminal new to a full registry is not kept
  // (its targets are served all the same).
  void RecordPoll(std::string_view model, std::string_view channel, const TerminalInfo& terminal);

  // A terminal's (validated) report on a model channel. A terminal that
  // reports through a region never polls this daemon, so its reports make it
  // known here. On success it runs report.version now; on failure it still
  // runs what it ran, and report.version is kept as its failed version;
  // marked for the next Flush when the failed version changed, too.
  // A terminal new to a full registry is not kept, as for a poll.
  void RecordReport(std::string_view model, std::string_view channel, const TerminalReport& report);

  // Calls `visit` for every known terminal of a model channel, in id order,
  // under the registry's mutex: `visit` must be quick and must not call back
  // into the registry. Nothing is visited for a channel no terminal follows.
  void Visit(std::string_view model, std::string_view channel,
             const std::function<void(const KnownTerminal&)>& visit) const;

  // What the terminals `ids` last declared on any channel (a terminal may
  // follow several): the most recently seen record of each, in id order.
  // Ids no channel knows are left out.
  std::vector<TerminalInfo> Latest(const std::vector<std::string>& ids) const;

  // How many known terminals run each version, per model channel, at most
  // `versions_max` (channel, version) pairs. The counts are kept up to date
  // as records change, so this costs the pairs returned, not the terminals.
  FleetVersions Versions(size_t versions_max) const;

  // Records held: a terminal that follows two channels counts twice.
  size_t size() const;

  // Writes the marked records, at most flush_ops_max of them, in one batch.
  // A failed write is not retried as such: each of its records is marked
  // again at the terminal's next change or touch.
  void Flush();

 private:
  using ChannelKey = std::pair<std::string, std::string>;  // model, channel

  TerminalRegistry(Store& store, const Clock& clock, TerminalRegistryOptions options);
  Status Load();
  // The terminal's record, or nullptr when it is new and the registry full.
  KnownTerminal* RecordLocked(const ChannelKey& ck, const TerminalInfo& terminal);
  // A terminal of `ck` moved from version `from` to `to` in versions_.
  void MoveVersionLocked(const ChannelKey& ck, const std::string& from, const std::string& to);

  Store& store_;
  const Clock& clock_;
  const TerminalRegistryOptions o_;

  mutable std::mutex mu_;  // guards the four members below
  std::map<ChannelKey, std::map<std::string, KnownTerminal>> terminals_;
  std::map<ChannelKey, std::map<std::string, uint64_t>> versions_;  // terminals_ counted by current_version
  size_t count_ = 0;
  std::set<std::tuple<std::string, std::string, std::string>> dirty_;  // model, channel, terminal

  // Held by Flush from taking its batch to writing it, so that an older batch
  // never lands after a newer one. Taken before mu_, never the other way.
  std::mutex flush_mu_;
};

}  // namespace meridian
