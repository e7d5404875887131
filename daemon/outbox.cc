// Durable forwarding of terminal reports from a region to its upstream.
#include "daemon/outbox.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <set>

#include <fmt/format.h>

#include "base/encoding.h"
#include "base/json.h"
#include "client/api.h"

namespace meridian {

namespace {

using Json = nlohmann::json;

constexpr std::string_view kMetaKey = "outbox-meta";

std::string EntryKey(uint64_t seq) { return fmt::format("outbox/{:020}", seq); }

}  // namespace

ReportOutbox::ReportOutbox(Store& store, std::string region, UpstreamOptions upstream, OutboxOptions options)
    : store_(store), region_(std::move(region)), upstream_(std::move(upstream)), options_(options), writes_(store) {}

Result<std::unique_ptr<ReportOutbox>> ReportOutbox::Open(Store& store, std::string region, UpstreamOptions upstream,
                                                         OutboxOptions options) {
  std::unique_ptr<ReportOutbox> o(new ReportOutbox(store, std::move(region), std::move(upstream), options));
  MERIDIAN_RETURN_IF_ERROR(o->Load());
  o->upstream_.cancel = &o->cancel_;
  o->thread_ = std::thread([p = o.get()] { p->Run(); });
  return o;
}

Status ReportOutbox::Load() {
  Result<std::string> meta = store_.GetState(kMetaKey);
  if (meta.ok()) {
    Result<Json> parsed = ParseJsonObject(*meta, meta->size(), kMetaKey);
    if (!parsed.ok()) return Status::Corruption(parsed.status().message());
    JsonFields f(*parsed, kMetaKey, UnknownFields::kIgnore);
    f.String("nonce", &nonce_, true);
    f.Uint("next", &next_, true);
    if (Status st = f.Finish(); !st.ok()) return Status::Corruption(st.message());
  } else if (meta.status().code() == Status::Code::kNotFound) {
    Bytes raw(6);
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) return Status::IOError("no randomness");
    nonce_ = HexEncode(raw);
    MERIDIAN_RETURN_IF_ERROR(store_.WriteState({{std::string(kMetaKey), Json{{"nonce", nonce_}, {"next", next_}}.dump()}}));
  } else {
    return meta.status();
  }
  // A page at a time: every report stored was acknowledged, so all are
  // loaded, however many a daemon with larger limits left.
  std::lock_guard lock(mu_);
  return ForEachStatePage(store_, "outbox/", kStatePageRecords, [&](const StateRecords& page) {
    for (const auto& entry : page) AddPending(entry);
    return Status::Ok();
  });
}

ReportOutbox::~ReportOutbox() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  thread_.join();
}

Result<bool> ReportOutbox::Enqueue(ForwardedReport r) {
  if (!r.id.empty()) {
    std::vector<ForwardedReport> one;
    one.push_back(std::move(r));
    Result<size_t> relayed = EnqueueRelayed(std::move(one));
    if (!relayed.ok()) return relayed.status();
    return *relayed == 1;
  }
  std::string key, entry;
  {
    std::unique_lock lock(mu_);
    if (IsFull()) return Full();
    r.id = fmt::format("{}.{}.{}", region_, nonce_, next_);
    key = EntryKey(next_);
    entry = ForwardedReportToJson(r);
    // The id is taken whether or not the write succeeds: a failed one leaves a gap, never a reuse.
    ++next_;
    GroupCommit::Ticket stored = writes_.Enqueue({{key, entry}, MetaOp()});
    // Waited for with the lock released: reports arriving together share one synced write.
    lock.unlock();
    MERIDIAN_RETURN_IF_ERROR(writes_.Wait(stored));
    lock.lock();
    AddPending({std::move(key), std::move(entry)});
  }
  cv_.notify_all();
  return true;
}

Result<size_t> ReportOutbox::EnqueueRelayed(std::vector<ForwardedReport> batch) {
  size_t added = 0;
  {
    // Held while the batch is stored, so that a second copy of an id (a
    // batch sent again) waits, then finds it seen.
    std::lock_guard lock(mu_);
    if (IsFull()) return Full();
    StateOps ops;
    std::vector<std::pair<std::string, std::string>> entries;
    std::set<std::string, std::less<>> ids;
    for (const ForwardedReport& r : batch) {
      if (!ids.insert(r.id).second) continue;  // twice in this batch
      std::string seen = "reportid/" + r.id;
      Result<std::string> had = store_.GetState(seen);
      if (had.ok()) continue;
      if (had.status().code() != Status::Code::kNotFound) return had.status();
      ops.emplace_back(std::move(seen), "");
      entries.emplace_back(EntryKey(next_ + entries.size()), ForwardedReportToJson(r));
      ops.emplace_back(entries.back());
    }
    if (entries.empty()) return size_t{0};
    next_ += entries.size();
    ops.push_back(MetaOp());
    // One synced write for the whole batch.
    MERIDIAN_RETURN_IF_ERROR(writes_.Wait(writes_.Enqueue(std::move(ops))));
    added = entries.size();
    for (auto& e : entries) AddPending(std::move(e));
  }
  cv_.notify_all();
  return added;
}

bool ReportOutbox::IsFull() const {
  return pending_.size() >= options_.pending_max || pending_bytes_ >= options_.pending_bytes_max;
}

Status ReportOutbox::Full() const {
  return Status::ResourceExhausted(fmt::format("{} reports ({} bytes) wait for the upstream already; retry later",
                                               pending_.size(), pending_bytes_));
}

void ReportOutbox::AddPending(std::pair<std::string, std::string> entry) {
  pending_bytes_ += entry.second.size();
  pending_.push_back(std::move(entry));
}

void ReportOutbox::DropPending(size_t n) {
  for (size_t i = 0; i < n; ++i) pending_bytes_ -= pending_[i].second.size();
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(n));
}

std::pair<std::string, std::optional<std::string>> ReportOutbox::MetaOp() const {
  return {std::string(kMetaKey), Json{{"nonce", nonce_}, {"next", next_}}.dump()};
}

ReportOutbox::Stats ReportOutbox::stats() const {
  std::lock_guard lock(mu_);
  return {pending_.size(), forwarded_, upstream_ok_};
}

void ReportOutbox::Run() {
  UpstreamClient upstream(upstream_);
  int64_t backoff_ms = 0;
  // Halved by each 413: the upstream, or a proxy before it (nginx takes 1 MiB
  // by default), takes smaller bodies than a full batch. Kept for the run.
  size_t batch_max = options_.batch_max;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (stopping_) return;
    // Linger a moment so reports arriving together travel together.
    cv_.wait_for(lock, std::chrono::milliseconds(options_.linger_ms),
                 [&] { return stopping_ || pending_.size() >= batch_max; });
    if (stopping_) return;
    size_t n = std::min(pending_.size(), batch_max);
    std::string body = "{\"reports\":[";
    for (size_t i = 0; i < n; ++i) body += (i ? "," : "") + pending_[i].second;
    body += "]}";
    StateOps done;
    for (size_t i = 0; i < n; ++i) done.emplace_back(pending_[i].first, std::nullopt);
    lock.unlock();
    Result<HttpReply> r = upstream.Post(ReportsPath(), body, kShortReplyBytesMax);
    Status st = !r.ok()              ? r.status()
                : r->status != 200 ? ReplyError(*r, "forward reports")
                                     : store_.WriteState(done);
    lock.lock();
    upstream_ok_ = st.ok();
    if (st.ok()) {
      DropPending(n);
      forwarded_ += n;
      backoff_ms = 0;
      continue;
    }
    // 413 is a body too large, unless an older upstream says its own outbox
    // is full (resource_exhausted; 503 outbox_full now): that waits, as for any 503.
    const bool too_large = r.ok() && r->status == 413 && ErrorCodeOf(*r) != "resource_exhausted";
    if (too_large && n > 1) {
      batch_max = n / 2;
      std::fprintf(stderr, "meridiand: upstream refused %zu reports at once as too large; sending at most %zu\n", n,
                   batch_max);
      continue;
    }
    if (r.ok() && (r->status == 400 || too_large)) {
      // Refused as malformed, or one report too large: sending it again
      // cannot help, and it must not block the reports behind it. Dropped, loudly.
      std::fprintf(stderr, "meridiand: upstream refused %zu reports (%s); dropped\n", n, st.ToString().c_str());
      (void)store_.WriteState(done);
      DropPending(n);
      continue;
    }
    backoff_ms = std::min(options_.retry_ms_max, std::max<int64_t>(250, backoff_ms * 2));
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; });
  }
}

}  // namespace meridian
