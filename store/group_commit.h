// Synced state writes from many threads, several to one WAL sync, in the
// order they were queued (LevelDB's writer queue, for Store::WriteState).
//
// Why: a module that keeps its state under a mutex writes while holding it,
// so that what is stored follows the order of its changes; every synced
// write then waits for the disk alone, one sync after another. Queued
// instead under that mutex (no I/O) and waited for after it is released,
// the writes of every thread that queued meanwhile go to the store as one
// batch: one sync for all of them, and still in the mutex's order.
//
//   GroupCommit::Ticket t;
//   { std::lock_guard lock(mu); …change memory…; t = commit.Enqueue(ops); }
//   MERIDIAN_RETURN_IF_ERROR(commit.Wait(t));  // durable: now answer
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace meridian {

class GroupCommit {
 public:
  // One store write of a whole batch (Store::WriteState in the daemon).
  using Writer = std::function<Status(const StateOps&)>;
  // A batch stops growing past this many bytes of keys and values (it
  // holds at least one write).
  static constexpr uint64_t kBatchBytesMax = 4u << 20;

  explicit GroupCommit(Writer write) : write_(std::move(write)) {}
  explicit GroupCommit(Store& store) : GroupCommit([&store](const StateOps& ops) { return store.WriteState(ops); }) {}

  struct Pending;
  using Ticket = std::shared_ptr<Pending>;

  // Queues `ops` behind every write queued before it. No I/O: a caller may
  // hold its own lock, which then decides the order.
  Ticket Enqueue(StateOps ops);
  // Returns once the write of `ticket` is durable, or with the store's
  // error when its batch failed (then none of the batch is stored). The
  // first waiter finding no batch under way writes every queued one.
  Status Wait(const Ticket& ticket);
  // Returns once every write queued so far is done (durable, or failed:
  // their waiters have the error), so that what the caller writes next
  // directly lands after them.
  void Flush();

 private:
  Writer write_;
  std::mutex mu_;
  std::condition_variable written_;
  std::vector<Ticket> queue_;  // guarded by mu_
  bool writing_ = false;       // a batch is being written; guarded by mu_
  Ticket last_;                // the last queued; guarded by mu_
};

struct GroupCommit::Pending {
  StateOps ops;
  uint64_t bytes = 0;
  bool done = false;  // guarded by GroupCommit::mu_
  Status status;
};

}  // namespace meridian
