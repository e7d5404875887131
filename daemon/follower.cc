// A region following its upstream: sync document, versions, deltas, states.
#include "daemon/follower.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "client/api.h"
#include "base/json.h"
#include "delta/delta_info.h"
#include "manifest/manifest.h"
#include "target/target.h"
#include "trust/trust.h"

namespace meridian {

namespace {

using Json = nlohmann::json;

// Deltas and chunks asked for between two rounds, at most.
constexpr size_t kWantedMax = 10'000;
// Stored once the first round completed: the sync version it reached.
constexpr std::string_view kSyncedOnceKey = "follower/synced-once";

}  // namespace

std::optional<int64_t> EarliestStateExpiry(const std::vector<SignedChannel>& channels) {
  std::optional<int64_t> earliest;
  for (const SignedChannel& c : channels) earliest = std::min(earliest.value_or(c.state.expires_ms), c.state.expires_ms);
  return earliest;
}

Follower::Follower(Store& store, Catalog& catalog, Enrolment& enrolment, RootChain& roots, Rollouts& rollouts,
                   DeltaService& deltas, const Clock& clock, UpstreamOptions upstream, FollowerOptions options)
    : store_(store),
      catalog_(catalog),
      enrolment_(enrolment),
      roots_(roots),
      rollouts_(rollouts),
      deltas_(deltas),
      clock_(clock),
      upstream_(std::move(upstream)),
      options_(std::move(options)) {
  upstream_.cancel = &cancel_;
  status_.upstream = upstream_.urls.empty() ? "" : upstream_.urls.front();
  // A data directory from before the key was kept: one that adopted a
  // channel state had completed rounds.
  synced_once_ = store_.GetState(kSyncedOnceKey).ok() || !rollouts_.Channels().empty();
  status_.synced_once = synced_once_;
}

Follower::~Follower() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (repair_thread_.joinable()) repair_thread_.join();
}

void Follower::Start() {
  thread_ = std::thread([this] { Run(); });
  repair_thread_ = std::thread([this] { Repair(); });
}

FollowerStatus Follower::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void Follower::WantDelta(const Digest& from, const Digest& to) {
  std::lock_guard lock(mu_);
  if (wanted_.size() < kWantedMax) wanted_.insert({from, to});
}

void Follower::WantChunk(const Digest& digest) {
  {
    std::lock_guard lock(mu_);
    if (wanted_chunks_.size() >= kWantedMax) return;
    wanted_chunks_.insert(digest);
  }
  cv_.notify_all();
}

void Follower::Repair() {
  UpstreamClient up(upstream_);
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !wanted_chunks_.empty(); });
    if (stopping_) return;
    std::set<Digest> chunks;
    chunks.swap(wanted_chunks_);
    lock.unlock();
    bool failed = false;
    for (const Digest& d : chunks) {
      Status st = CatchExceptions("a repair", [&] { return FetchChunk(up, d); });
      if (st.ok()) {
        std::fprintf(stderr, "meridiand: chunk %s fetched again from %s\n", d.ToString().c_str(), up.current().c_str());
      } else if (st.code() != Status::Code::kNotFound && !cancel_) {  // one the upstream lacks is given up
        std::fprintf(stderr, "meridiand: fetching damaged chunk %s again: %s\n", d.ToString().c_str(),
                     st.ToString().c_str());
        WantChunk(d);
        failed = true;
      }
    }
    lock.lock();
    if (failed) cv_.wait_for(lock, std::chrono::milliseconds(options_.retry_ms_max), [&] { return stopping_; });
  }
}

std::string Follower::PollPath(uint64_t known, int64_t wait_s) {
  StoreStats st = store_.Stats();
  std::string last_error;
  {
    std::lock_guard lock(mu_);
    last_error = Utf8Prefix(status_.last_error, kRegionErrorBytesMax);
  }
  return SyncPath({.region = options_.region,
                   .known = known,
                   .wait_s = wait_s,
                   .stored_bytes = st.disk_bytes,
                   .terminals = rollouts_.KnownTerminals(),
                   .state_expires_ms = EarliestStateExpiry(rollouts_.Channels()).value_or(0),
                   .last_error = std::move(last_error)});
}

void Follower::Run() {
  UpstreamClient up(upstream_);
  // A held sync poll is silent: it must end well within the stall limit, or
  // every quiet round would be cut off and retried on the next upstream.
  const int64_t hold_s = upstream_.stall_timeout_ms > 0
                             ? std::min<int64_t>(options_.poll_wait_s, std::max(1L, upstream_.stall_timeout_ms / 2000))
                             : options_.poll_wait_s;
  uint64_t known = 0;
  int64_t wait_s = 0;  // the first round asks at once
  int64_t backoff_ms = 0;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    Result<HttpReply> r = up.Get(PollPath(known, wait_s), kSyncDocumentBytesMax);
    Result<SyncDocument> doc = !r.ok()              ? Result<SyncDocument>(r.status())
                               : r->status != 200 ? ReplyError(*r, "sync")
                                                  : ParseSyncDocument(r->body);
    bool complete = false;
    std::string problem;
    Status st = doc.ok() ? CatchExceptions("a sync round", [&] { return Apply(up, *doc, &complete, &problem); })
                         : doc.status();
    if (st.ok() && complete) SendHoldings(up, doc->sync_version);
    // Kept (synced) before it is told: a restarted region serves what it
    // holds even while its upstream is away.
    if (st.ok() && complete && !synced_once_) {
      synced_once_ = store_.WriteState({{std::string(kSyncedOnceKey), std::to_string(doc->sync_version)}}).ok();
    }
    {
      std::unique_lock lock(mu_);
      status_.upstream = up.current();
      status_.upstream_ok = doc.ok();
      status_.last_error = st.ok() ? problem : st.ToString();
      if (st.ok() && complete) {
        known = doc->sync_version;
        status_.sync_version = known;
        status_.last_sync_ms = clock_.NowUnixMillis();
        status_.synced_once = synced_once_;
      }
      if (!st.ok() && !cancel_) {
        std::fprintf(stderr, "meridiand: following %s: %s\n", up.current().c_str(), status_.last_error.c_str());
      }
      // Wait long when in step; come back soon when something is left to
      // retry; back off while no upstream answers.
      int64_t pause_ms = 0;
      if (!doc.ok()) {
        backoff_ms = std::min(options_.retry_ms_max, std::max<int64_t>(250, backoff_ms * 2));
        pause_ms = backoff_ms;
      } else {
        backoff_ms = 0;
        // Soon, not at once: a region not in step is answered at once (its
        // `known` is behind), so without a pause the rounds would follow each
        // other as fast as the upstream answers, and a delta it is still
        // computing would run out of its attempts in a moment.
        if (!st.ok() || !complete) pause_ms = options_.retry_pause_ms;
      }
      wait_s = st.ok() && complete && wanted_.empty() ? hold_s : 1;
      if (pause_ms > 0) cv_.wait_for(lock, std::chrono::milliseconds(pause_ms), [&] { return stopping_; });
    }
  }
}

void Follower::SendHoldings(UpstreamClient& up, uint64_t sync_version) {
  if (holdings_sent_at_ == sync_version) return;
  Result<std::map<std::string, ModelHolding>> holdings = Catalog::Holdings(store_);
  if (!holdings.ok()) return;  // counted again next round
  Result<HttpReply> r = up.Post(HoldingsPath(), HoldingsToJson(options_.region, *holdings), kShortReplyBytesMax);
  if (r.ok() && r->status == 200) {
    holdings_sent_at_ = sync_version;
  } else if (!cancel_) {
    std::fprintf(stderr, "meridiand: telling %s what this region holds: %s\n", up.current().c_str(),
                 r.ok() ? ErrorMessageOf(*r).c_str() : r.status().ToString().c_str());
  }
}

Status Follower::Apply(UpstreamClient& up, const SyncDocument& doc, bool* complete, std::string* problem) {
  *complete = true;
  auto note = [&](std::string what) {
    std::fprintf(stderr, "meridiand: %s\n", what.c_str());
    if (problem->empty()) *problem = std::move(what);
  };
  // Revocations first: they take effect before anything slow in this round.
  if (Status st = enrolment_.AdoptRevocations(doc.revoked, doc.revocations); !st.ok()) {
    note("terminal revocations not adopted: " + st.ToString());
    *complete = false;
  }
  // 0. Roots first: what follows may be signed by keys only a newer root names.
  if (doc.root_version > roots_.latest_version()) {
    if (Status st = FetchRoots(up, doc.root_version); !st.ok()) {
      if (cancel_) return st;
      *complete = false;
      note("following the chain of roots: " + st.ToString());
    }
  }
  std::shared_ptr<const Root> root = roots_.Current();
  // Channel states newer than those held, verified now: only a signed state
  // may name versions to fetch beyond the newest few.
  const int64_t now = clock_.NowUnixMillis();
  std::map<std::pair<std::string, std::string>, uint64_t> held_states;
  std::set<std::pair<std::string, std::string>> named;  // by the states held here (verified when adopted) or newer ones
  for (const Rollouts::ChannelSnapshot& s : rollouts_.Channels()) {
    held_states[{s.state.model, s.state.channel}] = s.state.state_version;
    for (const auto& [v, ref] : s.state.versions) named.emplace(s.state.model, v);
  }
  std::vector<std::pair<ChannelState, const SyncChannel*>> states;
  for (const SyncChannel& c : doc.channels) {
    uint64_t held = held_states[{c.model, c.channel}];
    if (c.state_version <= held) continue;
    Result<ChannelState> s = VerifyChannelState(*root, c.envelope, c.model, c.channel, held, now);
    if (!s.ok()) {
      note(fmt::format("channel state {}/{} refused: {}", c.model, c.channel, s.status().ToString()));
      continue;
    }
    for (const auto& [v, ref] : s->versions) named.emplace(s->model, v);
    states.emplace_back(std::move(*s), &c);
  }
  // 1. Versions: per model, the newest few, and any a channel names (kept in step).
  std::set<std::pair<std::string, std::string>> in_step;

  std::map<std::string, std::vector<const SyncVersion*>> by_model;
  for (const SyncVersion& v : doc.versions) by_model[v.model].push_back(&v);
  for (auto& [model, list] : by_model) {
    std::sort(list.begin(), list.end(),
              [](const SyncVersion* a, const SyncVersion* b) { return CompareVersions(a->version, b->version) > 0; });
    for (size_t i = 0; i < list.size(); ++i) {
      const SyncVersion& v = *list[i];
      if (i >= options_.versions_per_model && !named.count({v.model, v.version})) continue;
      in_step.emplace(v.model, v.version);
      if (store_.GetEnvelope(v.model, v.version).ok()) {
        // Once per start: chunks of a held version dropped meanwhile (fsck
        // --repair) are fetched again; a version whose index pages were
        // dropped no longer reads here, so all of it comes from upstream.
        // Its signed manifest says whether its bytes may be here; the
        // listing's `regions` is the upstream's word only.
        Result<std::shared_ptr<const Manifest>> m = store_.GetManifest(v.model, v.version);
        if (!held_checked_ && (!m.ok() || catalog_.MayHold(**m))) {
          if (Status st = m.ok() ? FetchMissingChunks(up, **m) : FetchVersion(up, v); !st.ok()) {
            if (cancel_) return st;
            *complete = false;
            note(fmt::format("restoring chunks of {} {}: {}", v.model, v.version, st.ToString()));
          }
        }
        continue;
      }
      if (Status st = FetchVersion(up, v); !st.ok()) {
        if (cancel_) return st;
        *complete = false;
        note(fmt::format("fetching {} {}: {}", v.model, v.version, st.ToString()));
      }
    }
  }
  if (*complete) held_checked_ = true;
  // 2. Deltas into the versions kept in step, from the few before each, and
  //    those terminals asked for.
  std::set<std::pair<Digest, Digest>> pairs;
  {
    std::lock_guard lock(mu_);
    pairs.swap(wanted_);
  }
  for (const auto& [model, list] : by_model) {
    std::vector<Digest> held;  // newest first: the versions kept in step whose bytes are here
    for (const SyncVersion* v : list) {
      if (!in_step.count({v->model, v->version})) continue;
      if (auto m = store_.GetManifest(v->model, v->version); m.ok() && store_.FindArtifact((*m)->digest).ok()) {
        held.push_back((*m)->digest);
      }
    }
    for (size_t i = 0; i < held.size() && i < options_.versions_per_model; ++i) {
      for (size_t k = i + 1; k < held.size() && k <= i + static_cast<size_t>(options_.previous_versions); ++k) {
        if (held[k] != held[i]) pairs.emplace(held[k], held[i]);
      }
    }
  }
  for (const auto& [from, to] : pairs) {
    if (deltas_.Find(from, to).ok()) continue;
    int& tries = attempts_[{from, to}];
    if (tries >= options_.delta_attempts_max) continue;
    Status st = FetchDelta(up, from, to);
    if (st.ok()) {
      attempts_.erase({from, to});
    } else if (st.code() == Status::Code::kPermissionDenied) {
      tries = options_.delta_attempts_max;  // the upstream may not hold these bytes: it never will have the delta
    } else {
      if (cancel_) return st;
      ++tries;
      if (tries < options_.delta_attempts_max) *complete = false;
      if (st.code() != Status::Code::kFailedPrecondition) {
        note(fmt::format("delta {} -> {}: {}", from.ToString(), to.ToString(), st.ToString()));
      }
    }
  }
  // 3. Channel states, once every version they name is here (its bytes, or
  //    its manifest alone where the signed manifest excludes this region).
  for (const auto& [s, c] : states) {
    bool ready = std::all_of(s.versions.begin(), s.versions.end(), [&](const auto& kv) {
      Result<std::shared_ptr<const Manifest>> m = store_.GetManifest(s.model, kv.first);
      return m.ok() && (!catalog_.MayHold(**m) || store_.FindArtifact((*m)->digest).ok());
    });
    if (!ready) {
      *complete = false;
      continue;
    }
    Result<bool> adopted = rollouts_.Adopt(s, c->envelope);
    if (!adopted.ok()) return adopted.status();
  }
  return Status::Ok();
}

Status Follower::FetchRoots(UpstreamClient& up, int64_t version) {
  for (int64_t next = roots_.latest_version() + 1; next <= version; ++next) {
    Result<HttpReply> r = up.Get(RootPath(next), kRootReplyBytesMax);
    if (!r.ok()) return r.status();
    if (r->status != 200) return ReplyError(*r, "root " + std::to_string(next));
    // Expiry is the newest root's business (TUF): an expired root on the way still leads on.
    MERIDIAN_RETURN_IF_ERROR(roots_.Add(r->body, std::nullopt).WithContext("root " + std::to_string(next)));
    std::fprintf(stderr, "meridiand: now trusting root version %lld\n", static_cast<long long>(next));
    rollouts_.notifier().NotifyAll();  // regions downstream long-poll this one
  }
  return Status::Ok();
}

Status Follower::FetchVersion(UpstreamClient& up, const SyncVersion& v) {
  Result<VerifiedManifest> verified = ManifestFromReply(
      *roots_.Current(), up.Get(VersionPath(v.model, v.version), kManifestReplyBytesMax), v.model, v.version);
  if (!verified.ok()) return verified.status();
  const Manifest& m = verified->manifest();
  // The signed manifest decides residency, whatever the listing said.
  if (!catalog_.MayHold(m)) {
    Result<bool> kept = store_.CommitVersion(*verified, Store::Holding::kManifestOnly);
    if (kept.status().code() == Status::Code::kAlreadyExists) return Status::Ok();
    MERIDIAN_RETURN_IF_ERROR(kept.status());
    catalog_.Learn(m);
    return Status::Ok();
  }
  // A paged manifest's index pages: those stored here, else upstream's (kept).
  MERIDIAN_RETURN_IF_ERROR(verified->ResolveChunkPages([&](const ChunkPageRef& p) -> Result<Bytes> {
    if (Result<Bytes> here = store_.GetChunk(p.digest); here.ok()) return here;
    if (Status fetched = FetchChunk(up, p.digest); !fetched.ok()) return fetched;
    return store_.GetChunk(p.digest);
  }));
  MERIDIAN_RETURN_IF_ERROR(FetchMissingChunks(up, m));
  Result<bool> made_visible = store_.CommitVersion(*verified);
  if (made_visible.status().code() == Status::Code::kAlreadyExists) return Status::Ok();
  MERIDIAN_RETURN_IF_ERROR(made_visible.status());
  catalog_.Learn(m);
  if (*made_visible) rollouts_.notifier().NotifyAll();  // regions downstream long-poll this one
  return Status::Ok();
}

Status Follower::FetchMissingChunks(UpstreamClient& up, const Manifest& m) {
  // Every path that fetches a version's bytes comes here: residency is
  // decided once more on the signed manifest, whatever led to the call.
  if (!catalog_.MayHold(m)) {
    return Status::PermissionDenied(fmt::format("{} {} may not be held here ({})", m.name, m.version,
                                                catalog_.DescribeJurisdiction()));
  }
  std::vector<Digest> digests;
  for (size_t i = 0; i < m.piece_count(); ++i) digests.push_back(m.piece(i).digest);
  Result<std::vector<Digest>> missing = store_.MissingChunks(digests);
  if (!missing.ok()) return missing.status();
  std::set<Digest> lacking(missing->begin(), missing->end());
  for (const ChunkPageRef& page : m.chunk_pages) {
    if (lacking.erase(page.digest) != 0) MERIDIAN_RETURN_IF_ERROR(FetchChunk(up, page.digest));
  }
  for (const ChunkRun& run : FirstOccurrenceRuns(m.chunks, std::move(lacking))) {
    MERIDIAN_RETURN_IF_ERROR(FetchRun(up, m, run));
  }
  return Status::Ok();
}

Status Follower::FetchRun(UpstreamClient& up, const Manifest& m, const ChunkRun& run) {
  size_t next = run.first;  // the first chunk of the run not stored yet, whichever upstream sent the others
  Result<HttpReply> r = up.Call([&](HttpClient& c) {
    // Re-hashed: Corruption when the upstream lied, so the next one is asked;
    // this store's own failure (a full disk) ends the call.
    return GetChunkRun(c, m, run, &next,
                       [&](size_t i, ByteSpan bytes) { return store_.PutChunk(m.chunks[i].digest, bytes); });
  });
  if (!r.ok()) return r.status();
  if (r->status / 100 != 2) return ReplyError(*r, ArtifactPath(m.digest));
  return Status::Ok();
}

Status Follower::FetchChunk(UpstreamClient& up, const Digest& digest) {
  Result<HttpReply> chunk = up.Get(ChunkPath(digest), kChunkBytesMax);
  if (!chunk.ok()) return chunk.status();
  if (chunk->status != 200) return ReplyError(*chunk, "chunk " + digest.ToString());
  return store_.PutChunk(digest, AsBytes(chunk->body));  // re-hashed: a lying upstream fails here
}

Status Follower::FetchDelta(UpstreamClient& up, const Digest& from, const Digest& to) {
  // Only between artifacts whose bytes are here: a delta tells of both.
  if (!store_.FindArtifact(from).ok() || !store_.FindArtifact(to).ok()) {
    return Status::PermissionDenied("a delta between artifacts not held here");
  }
  Result<HttpReply> r = up.Get(DeltaInfoPath(from, to), kDeltaInfoReplyBytesMax);
  if (r.ok() && r->status == 451) return Status::PermissionDenied(ErrorMessageOf(*r));
  Result<DeltaInfo> info = DeltaInfoFromReply(*roots_.Current(), r, from, to);  // FailedPrecondition while upstream makes it
  if (!info.ok()) return info.status();
  DeltaRecord record{*info, {}, r->body};
  if (info->worthwhile) {
    // Streamed into the chunk store, at most the signed size; adopted only when
    // the bytes match the signed digest (chunks of a lying upstream stay unreferenced).
    Result<std::vector<ChunkRef>> chunks = Status::Unavailable("no upstream");
    Result<HttpReply> reply = up.Call([&](HttpClient& c) -> Result<HttpReply> {
      DeltaChunkWriter writer(store_);
      Result<HttpReply> got = GetVerified(c, DeltaPath(from, to), info->digest, info->size,
                                          [&](ByteSpan piece) { return writer.Append(piece); });
      if (!got.ok() || got->status != 200) return got;
      chunks = writer.Finish();
      return got;
    });
    if (!reply.ok()) return reply.status();
    if (reply->status != 200) return ReplyError(*reply, "delta");
    if (!chunks.ok()) return chunks.status();
    record.chunks = std::move(*chunks);
  }
  return deltas_.Adopt(record);
}

}  // namespace meridian
