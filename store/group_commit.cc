#include "store/group_commit.h"

#include <iterator>

namespace meridian {

GroupCommit::Ticket GroupCommit::Enqueue(StateOps ops) {
  auto pending = std::make_shared<Pending>();
  for (const auto& [key, value] : ops) pending->bytes += key.size() + (value ? value->size() : 0);
  pending->ops = std::move(ops);
  std::lock_guard lock(mu_);
  queue_.push_back(pending);
  last_ = pending;
  return pending;
}

Status GroupCommit::Wait(const Ticket& ticket) {
  std::unique_lock lock(mu_);
  while (!ticket->done) {
    if (writing_) {
      written_.wait(lock);
      continue;
    }
    // Not done and no batch under way: the ticket is still queued. Take the
    // front of the queue, in order, and write it as one batch.
    writing_ = true;
    size_t n = 0;
    uint64_t bytes = 0;
    for (; n < queue_.size() && (n == 0 || bytes + queue_[n]->bytes <= kBatchBytesMax); ++n) bytes += queue_[n]->bytes;
    const auto batch_end = queue_.begin() + static_cast<ptrdiff_t>(n);
    std::vector<Ticket> batch(std::make_move_iterator(queue_.begin()), std::make_move_iterator(batch_end));
    queue_.erase(queue_.begin(), batch_end);
    lock.unlock();
    StateOps ops = std::move(batch.front()->ops);  // a batch of one is written as it came
    for (size_t i = 1; i < batch.size(); ++i) {
      std::move(batch[i]->ops.begin(), batch[i]->ops.end(), std::back_inserter(ops));
    }
    Status status = write_(ops);
    lock.lock();
    for (const Ticket& t : batch) {
      t->ops.clear();
      t->status = status;
      t->done = true;
    }
    writing_ = false;
    written_.notify_all();
  }
  return ticket->status;
}

void GroupCommit::Flush() {
  Ticket last;
  {
    std::lock_guard lock(mu_);
    last = last_;
  }
  if (last) (void)Wait(last);
}

}  // namespace meridian
