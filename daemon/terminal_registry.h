// The known-terminal registry: which terminals follow which model channel and
// what each last declared (profile, region, running version, a failed
// install), bounded, written to the store in batches and loaded at start.
// Rollouts count their cohorts and check their canaries against it; the
// fleet view lists it. Terminals that declare the same things share one group
// (rollout/cohort_count.h), counted by cohort position as records change, so
// counting a cohort or the versions run never walks the terminals.
//
// Stored keys (Store::WriteState, batched by Flush, not synced per request):
//   terminal/<model>/<channel>/<terminal>
//       {"region","profile","current_version","previous_version","failed_version",
//        "last_seen_ms","last_report_ms","last_report","failures"}  (empty and zero fields left out)
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
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "rollout/cohort_count.h"
#include "rollout/rollout.h"
#include "store/store.h"

namespace meridian {

struct TerminalRegistryOptions {
  size_t terminals_max = 1'000'000;  // (model, channel, terminal) records held
  // Channels of one model kept: a terminal may name any channel, and a new
  // channel is a new record for each terminal that names it.
  size_t channels_per_model_max = 64;
  int64_t touch_ms = 60'000;         // last_seen of an unchanged terminal is written at most this often
  size_t flush_ops_max = 10'000;     // records per Flush (one write batch)
};

// What the registry holds of one terminal on one model channel: the fleet view's row.
struct KnownTerminal {
  TerminalInfo info;
  std::string previous_version;  // what it ran before info.current_version; empty when unknown
  std::string failed_version;    // the version whose install it last reported failed; cleared by a success
  int64_t last_seen_ms = 0;      // its last poll or report
  int64_t last_report_ms = 0;    // its last report; 0 when none
  std::optional<ReportOutcome> last_report;
  uint32_t failures = 0;         // failure reports received
};

// The versions the known terminals of one model channel run.
struct ChannelVersions {
  std::string model;
  std::string channel;
  std::map<std::string, uint64_t> terminals_by_version;  // "" counts those that run none yet
  std::map<std::string, std::map<std::string, uint64_t>> by_region;  // region -> version -> terminals
};

// ChannelVersions of every model channel, at most a given number of versions in all.
struct FleetVersions {
  std::vector<ChannelVersions> channels;  // in (model, channel) order
  bool truncated = false;                 // more versions are known than were asked for
};

// A page of the fleet view: known terminals of one model channel, in id order.
struct FleetQuery {
  std::string model;
  std::string channel = "stable";
  std::string version;  // running this; empty: any
  std::string region;   // empty: any
  enum class State { kAny, kOk, kFailed } state = State::kAny;  // failed: its last install failed
  std::string after;    // ids after this one (the previous page's `next`)
  size_t limit = 100;   // rows at most
};

struct FleetPage {
  std::vector<KnownTerminal> terminals;
  std::string next;  // pass as `after` for the next page; empty at the end
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
  // runs what it ran, and report.version is kept as its failed version.
  // Marked for the next Flush. A terminal new to a full registry is not kept,
  // as for a poll.
  void RecordReport(std::string_view model, std::string_view channel, const TerminalReport& report);

  // Calls `visit` for every group of known terminals of a model channel
  // (rollout/cohort_count.h) under the registry's mutex: `visit` must be
  // quick and must not call back into the registry. The cost is the groups'
  // distinct positions, not the terminals.
  void VisitGroups(std::string_view model, std::string_view channel,
                   const std::function<void(const TerminalGroup&)>& visit) const;
  // The cohorts of `spec`'s stages among the known terminals of its model
  // channel (CohortCounter over the groups and the spec's canaries), in all
  // and per region the terminals declare.
  struct CohortCounts {
    std::vector<StageCohort> all;
    std::map<std::string, std::vector<StageCohort>> by_region;
  };
  CohortCounts Cohorts(const RolloutSpec& spec) const;

  // What the terminals `ids` last declared on any channel (a terminal may
  // follow several): the most recently seen record of each, in id order.
  // Ids no channel knows are left out.
  std::vector<TerminalInfo> Latest(const std::vector<std::string>& ids) const;

  // How many known terminals run each version, per model channel and per
  // region, at most `versions_max` (channel, version) pairs. Costs the
  // groups, not the terminals.
  FleetVersions Versions(size_t versions_max) const;

  // A page of known terminals. Looks at no more than scan_max records per
  // call, so a selective filter over a large fleet answers a short page with
  // `next` set rather than holding the registry's mutex for long.
  FleetPage Terminals(const FleetQuery& query, size_t scan_max = 100'000) const;

  // Records held: a terminal that follows two channels counts twice.
  size_t size() const;

  // Writes the marked records, at most flush_ops_max of them, in one batch.
  // A failed write is not retried as such: each of its records is marked
  // again at the terminal's next change or touch.
  void Flush();

 private:
  using ChannelKey = std::pair<std::string, std::string>;  // model, channel
  // region, profile, current, previous and failed version: a TerminalGroup's key.
  using GroupKey = std::tuple<std::string, std::string, std::string, std::string, std::string>;
  // One terminal on one channel; what it declared is its group's key, so a
  // record is an id and a few numbers however long the names.
  struct Record {
    TerminalGroup* group = nullptr;
    int64_t last_seen_ms = 0;
    int64_t last_report_ms = 0;
    uint32_t failures = 0;
    uint16_t position = 0;  // CohortPosition of the id
    int8_t last_report = -1;  // -1 none, else a ReportOutcome
  };
  struct Channel {
    std::map<GroupKey, TerminalGroup> groups;
    std::map<std::string, Record, std::less<>> terminals;
  };

  TerminalRegistry(Store& store, const Clock& clock, TerminalRegistryOptions options);
  Status Load();
  // The records of a model channel, created when new; nullptr when the model
  // has channels_per_model_max channels already.
  Channel* ChannelLocked(std::string_view model, std::string_view channel);
  // The terminal's record with `key` as its group, created when new; nullptr
  // when it is new and the registry full. `changed`: whether the group moved.
  Record* RecordLocked(Channel& channel, std::string_view id, uint16_t position, const GroupKey& key, bool* changed);
  static KnownTerminal Known(const std::string& id, const Record& record);

  Store& store_;
  const Clock& clock_;
  const TerminalRegistryOptions o_;

  mutable std::mutex mu_;  // guards the three members below
  std::map<ChannelKey, Channel> channels_;
  size_t count_ = 0;
  std::set<std::tuple<std::string, std::string, std::string>> dirty_;  // model, channel, terminal

  // Held by Flush from taking its batch to writing it, so that an older batch
  // never lands after a newer one. Taken before mu_, never the other way.
  std::mutex flush_mu_;
};

}  // namespace meridian
