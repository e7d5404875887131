// Making, storing and describing deltas on a background thread.
#include "daemon/deltas.h"

#include <zstd.h>

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/encoding.h"
#include "base/json.h"
#include "delta/chunker.h"
#include "delta/delta.h"
#include "delta/delta_info.h"

namespace meridian {

namespace {

std::string StateKey(const Digest& from, const Digest& to) { return "delta/" + from.Hex() + "/" + to.Hex(); }

// A stored artifact read through its manifest's chunks, one chunk held at a
// time (the encoder reads windows in order).
class ArtifactReader final : public SourceReader {
 public:
  ArtifactReader(Store& store, const Manifest& manifest) : store_(store), manifest_(manifest) {
    uint64_t offset = 0;
    for (const ChunkRef& c : manifest_.chunks) {
      starts_.push_back(offset);
      offset += c.size;
    }
  }
  uint64_t size() const override { return manifest_.size; }
  Status Read(uint64_t offset, std::span<uint8_t> out) override {
    if (offset > manifest_.size || out.size() > manifest_.size - offset) {
      return Status::InvalidArgument("artifact read out of range");
    }
    auto i = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin());
    for (--i; !out.empty(); ++i) {
      if (held_index_ != i) {
        Result<Bytes> chunk = store_.GetChunk(manifest_.chunks[i].digest);
        if (!chunk.ok()) return chunk.status();
        if (chunk->size() != manifest_.chunks[i].size) {
          return Status::Corruption("chunk " + manifest_.chunks[i].digest.ToString() + " has another size than listed");
        }
        held_ = std::move(*chunk);
        held_index_ = i;
      }
      const uint64_t within = offset - starts_[i];
      const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), held_.size() - within));
      std::memcpy(out.data(), held_.data() + within, n);
      out = out.subspan(n);
      offset += n;
    }
    return Status::Ok();
  }

 private:
  Store& store_;
  const Manifest& manifest_;
  std::vector<uint64_t> starts_;  // of each chunk in the artifact
  size_t held_index_ = SIZE_MAX;
  Bytes held_;
};

// What a full download costs at best: the artifact zstd-compressed (level 3,
// as the store keeps chunks), read a piece at a time.
Result<uint64_t> CompressedSize(SourceReader& artifact) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (cctx == nullptr) return Status::ResourceExhausted("no memory for a zstd context");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 3);
  Bytes piece(ZSTD_CStreamInSize()), out(ZSTD_CStreamOutSize());
  uint64_t total = 0;
  for (uint64_t offset = 0;;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(piece.size(), artifact.size() - offset));
    MERIDIAN_RETURN_IF_ERROR(artifact.Read(offset, std::span(piece.data(), n)));
    offset += n;
    const ZSTD_EndDirective mode = offset == artifact.size() ? ZSTD_e_end : ZSTD_e_continue;
    ZSTD_inBuffer in{piece.data(), n, 0};
    size_t left;
    do {
      ZSTD_outBuffer o{out.data(), out.size(), 0};
      left = ZSTD_compressStream2(cctx.get(), &o, &in, mode);
      if (ZSTD_isError(left)) return Status::IOError(std::string("zstd: ") + ZSTD_getErrorName(left));
      total += o.pos;
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
    if (mode == ZSTD_e_end) return total;
  }
}

}  // namespace

std::string DeltaRecordToJson(const DeltaRecord& r) {
  nlohmann::ordered_json chunks = nlohmann::ordered_json::array();
  for (const ChunkRef& c : r.chunks) chunks.push_back({{"digest", c.digest.ToString()}, {"size", c.size}});
  nlohmann::ordered_json j;
  j["info"] = nlohmann::ordered_json::parse(DeltaInfoToJson(r.info));
  j["chunks"] = std::move(chunks);
  if (!r.signed_info.empty()) j["signed_info"] = r.signed_info;
  return j.dump();
}

Result<DeltaRecord> DeltaRecordFromJson(std::string_view json) {
  Result<nlohmann::json> parsed = ParseJsonObject(json, kStateScanBytesMax, "delta record");
  if (!parsed.ok()) return parsed.status();
  JsonFields f(*parsed, "delta record", UnknownFields::kIgnore);
  DeltaRecord r;
  const nlohmann::json* info = f.Object("info", true);
  const nlohmann::json* chunks = f.Objects("chunks", kStateScanBytesMax, true);  // bounded by the bytes
  f.String("signed_info", &r.signed_info);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  Result<DeltaInfo> parsed_info = ParseDeltaInfo(info->dump());
  if (!parsed_info.ok()) return parsed_info.status();
  r.info = *parsed_info;
  uint64_t total = 0;
  for (const nlohmann::json& c : *chunks) {
    ChunkRef chunk;
    JsonFields cf(c, "delta record chunk", UnknownFields::kIgnore);
    cf.Digest("digest", &chunk.digest, true);
    cf.Uint("size", &chunk.size, true);
    MERIDIAN_RETURN_IF_ERROR(cf.Finish());
    total += chunk.size;
    r.chunks.push_back(chunk);
  }
  if (total != (r.info.worthwhile ? r.info.size : 0)) {
    return Status::InvalidArgument("delta record: the chunk sizes do not add up to the delta's size");
  }
  return r;
}

Status DeltaChunkWriter::Put(ByteSpan chunk) {
  if (hold_first_chunk_ && chunks_.empty() && first_chunk_.empty()) {
    first_chunk_.assign(chunk.begin(), chunk.end());
    return Status::Ok();
  }
  ChunkRef ref{Digest::Of(chunk), chunk.size()};
  MERIDIAN_RETURN_IF_ERROR(store_.PutChunk(ref.digest, chunk));
  chunks_.push_back(ref);
  return Status::Ok();
}

Status DeltaChunkWriter::Append(ByteSpan bytes) {
  const size_t max_bytes = ChunkerParams{}.max_bytes;
  while (!bytes.empty()) {
    if (tail_.empty()) {
      // Chunks complete in `bytes` are stored from there, uncopied.
      const size_t len = FindChunkEnd(bytes, /*final=*/false);
      if (len == 0) {
        tail_.assign(bytes.begin(), bytes.end());
        return Status::Ok();
      }
      MERIDIAN_RETURN_IF_ERROR(Put(bytes.first(len)));
      bytes = bytes.subspan(len);
      continue;
    }
    // The start of a chunk is pending: fill it up to a maximal chunk (where a
    // boundary is certain) from `bytes`, cut, and keep what follows the cut.
    const size_t take = std::min(bytes.size(), max_bytes - tail_.size());
    tail_.insert(tail_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    const size_t len = FindChunkEnd(tail_, /*final=*/false);
    if (len == 0) continue;  // `bytes` is used up: wait for more
    MERIDIAN_RETURN_IF_ERROR(Put(ByteSpan(tail_).first(len)));
    tail_.erase(tail_.begin(), tail_.begin() + static_cast<ptrdiff_t>(len));
  }
  return Status::Ok();
}

Result<std::vector<ChunkRef>> DeltaChunkWriter::Finish(
    const std::function<void(std::span<uint8_t>)>& amend_first_chunk) {
  ByteSpan rest = tail_;
  while (!rest.empty()) {
    const size_t len = FindChunkEnd(rest, /*final=*/true);
    MERIDIAN_RETURN_IF_ERROR(Put(rest.first(len)));
    rest = rest.subspan(len);
  }
  tail_.clear();
  if (!first_chunk_.empty()) {
    if (amend_first_chunk) amend_first_chunk(first_chunk_);
    ChunkRef ref{Digest::Of(first_chunk_), first_chunk_.size()};
    MERIDIAN_RETURN_IF_ERROR(store_.PutChunk(ref.digest, first_chunk_));
    chunks_.insert(chunks_.begin(), ref);
    Bytes().swap(first_chunk_);
  }
  return std::move(chunks_);
}

Result<std::vector<ChunkRef>> PutDeltaChunks(Store& store, ByteSpan delta) {
  DeltaChunkWriter writer(store);
  MERIDIAN_RETURN_IF_ERROR(writer.Append(delta));
  return writer.Finish();
}

DeltaService::DeltaService(Store& store, std::optional<SecretKey> online_key, DeltaServiceOptions options)
    : store_(store), online_key_(std::move(online_key)), options_(options) {
  if (online_key_) worker_ = std::thread([this] { Run(); });
}

DeltaService::~DeltaService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void DeltaService::SetMissHandler(std::function<void(const Digest&, const Digest&)> handler) {
  miss_handler_ = std::move(handler);
}

Status DeltaService::Adopt(const DeltaRecord& record) {
  return store_.WriteState({{StateKey(record.info.from, record.info.to), DeltaRecordToJson(record)}});
}

Result<DeltaRecord> DeltaService::Find(const Digest& from, const Digest& to) {
  Result<std::string> json = store_.GetState(StateKey(from, to));
  if (!json.ok()) return json.status();
  Result<DeltaRecord> r = DeltaRecordFromJson(*json);
  if (!r.ok()) return Status::Corruption("stored delta record " + StateKey(from, to) + " is malformed");
  return r;
}

Result<DeltaRecord> DeltaService::FindOrQueue(const Digest& from, const Digest& to) {
  Result<DeltaRecord> found = Find(from, to);
  if (found.ok() || found.status().code() != Status::Code::kNotFound) return found;
  // Only pairs this daemon would choose itself are ever worked on: two
  // different published versions of one model. Any other pair is refused
  // before anything is queued, so a request cannot make it diff arbitrary
  // artifacts.
  Result<std::shared_ptr<const Manifest>> source = store_.FindArtifact(from);
  if (!source.ok()) return source.status();
  Result<std::shared_ptr<const Manifest>> target = store_.FindArtifact(to);
  if (!target.ok()) return target.status();
  if (from == to || (*source)->name != (*target)->name) {
    return Status::NotFound("deltas are made only between two versions of one model");
  }
  if (!online_key_) {
    if (miss_handler_) miss_handler_(from, to);
    return Status::FailedPrecondition("delta is being fetched from upstream; retry later or download the artifact");
  }
  std::lock_guard lock(mu_);
  if (!queued_.contains({from, to})) {
    if (queue_.size() >= options_.queue_max) return Status::ResourceExhausted("delta queue is full");
    queue_.emplace_back(from, to);
    queued_.insert({from, to});
    cv_.notify_all();
  }
  return Status::FailedPrecondition("delta is being computed; retry later or download the artifact");
}

void DeltaService::QueueForNewVersion(const Manifest& published) {
  Result<std::vector<std::string>> versions = store_.ListVersions(published.name);
  if (!versions.ok()) return;
  std::vector<Digest> older;
  for (const std::string& v : *versions) {
    if (CompareVersions(v, published.version) >= 0) continue;
    Result<std::shared_ptr<const Manifest>> m = store_.GetManifest(published.name, v);
    if (m.ok() && (*m)->digest != published.digest) older.push_back((*m)->digest);
  }
  // The newest older versions: where terminals most likely are.
  size_t keep = static_cast<size_t>(std::max(0, options_.previous_versions));
  if (older.size() > keep) older.erase(older.begin(), older.end() - static_cast<ptrdiff_t>(keep));
  for (const Digest& from : older) {
    Result<DeltaRecord> r = FindOrQueue(from, published.digest);
    (void)r;  // pending, done, or the queue is full: a request will queue it later
  }
}

Result<uint64_t> DeltaService::DropStale(std::vector<Digest>& referenced) {
  constexpr size_t kPageRecords = 1000;
  uint64_t dropped = 0;
  Status st = ForEachStatePage(store_, "delta/", kPageRecords, [&](const StateRecords& page) -> Status {
    StateOps stale;
    for (const auto& [key, json] : page) {
      Result<DeltaRecord> r = DeltaRecordFromJson(json);
      bool keep = r.ok() && StateKey(r->info.from, r->info.to) == key;
      if (keep) {
        for (const Digest* artifact : {&r->info.from, &r->info.to}) {
          Result<std::shared_ptr<const Manifest>> m = store_.FindArtifact(*artifact);
          if (!m.ok() && m.status().code() != Status::Code::kNotFound) return m.status();
          keep = keep && m.ok();
        }
      }
      if (!keep) {
        stale.emplace_back(key, std::nullopt);
        continue;
      }
      for (const ChunkRef& c : r->chunks) referenced.push_back(c.digest);
    }
    MERIDIAN_RETURN_IF_ERROR(store_.WriteState(stale));
    dropped += stale.size();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return dropped;
}

uint64_t DeltaService::jobs() {
  std::lock_guard lock(mu_);
  return queue_.size() + (busy_ ? 1u : 0u);
}

void DeltaService::WaitIdle() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return (queue_.empty() && !busy_) || stopping_; });
}

void DeltaService::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    auto [from, to] = queue_.front();
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    // Making a delta allocates up to its memory budget: running out fails this pair, not the daemon.
    Result<DeltaRecord> r = CatchExceptions("making a delta", [&] { return Compute(from, to); });
    Status st = r.ok() ? store_.WriteState({{StateKey(from, to), DeltaRecordToJson(*r)}}) : r.status();
    if (!st.ok()) {
      // Not recorded: a later request queues the pair again.
      std::fprintf(stderr, "meridiand: delta %s -> %s failed: %s\n", from.ToString().c_str(), to.ToString().c_str(),
                   st.ToString().c_str());
    }
    lock.lock();
    queued_.erase({from, to});
    busy_ = false;
    cv_.notify_all();
  }
}

Result<DeltaRecord> DeltaService::Compute(const Digest& from, const Digest& to) {
  Result<std::shared_ptr<const Manifest>> found_source = store_.FindArtifact(from);
  if (!found_source.ok()) return found_source.status();
  Result<std::shared_ptr<const Manifest>> found_target = store_.FindArtifact(to);
  if (!found_target.ok()) return found_target.status();
  std::shared_ptr<const Manifest> source_m = *found_source;
  std::shared_ptr<const Manifest> target_m = *found_target;
  DeltaRecord r;
  DeltaInfo& info = r.info;
  info.from = from;
  info.to = to;
  info.artifact_size = target_m->size;
  if (source_m->size > options_.artifact_bytes_max || target_m->size > options_.artifact_bytes_max) {
    info.reason = "artifact larger than " + std::to_string(options_.artifact_bytes_max) + " bytes is not diffed";
    info.compressed_artifact_size = target_m->size;
    return r;
  }
  ArtifactReader source(store_, *source_m), target(store_, *target_m);
  Result<uint64_t> compressed = CompressedSize(target);
  if (!compressed.ok()) return compressed.status();
  info.compressed_artifact_size = *compressed;

  // A delta that saves less than a tenth of the compressed download is not
  // worth the device's time to apply it: the encoding stops as soon as it
  // reaches that size. The delta is held in memory up to an eighth of the
  // budget (the encoder gets the rest), and stored only once it is known to
  // be worthwhile; a larger one is stored as it is made, and if it still
  // reaches the limit, what was stored is left to the collector. Its first
  // chunk waits for the lowest format version to be set in the header.
  const uint64_t size_limit = info.compressed_artifact_size - info.compressed_artifact_size / 10;
  DeltaOptions encoder = options_.encoder;
  const uint64_t held_max =
      std::min(encoder.memory_bytes_max / 8, encoder.memory_bytes_max - kDeltaEncoderMemoryMin);
  encoder.memory_bytes_max -= held_max;
  DeltaChunkWriter writer(store_, /*hold_first_chunk=*/true);
  Bytes held;
  bool storing = false, too_large = false;
  uint64_t delta_size = 0;
  Result<uint16_t> version =
      EncodeDelta({source, source_m->digest}, {target, target_m->digest}, encoder, [&](ByteSpan bytes) -> Status {
        delta_size += bytes.size();
        if (delta_size >= size_limit) {
          too_large = true;
          return Status::FailedPrecondition("not worthwhile");
        }
        if (!storing && held.size() + bytes.size() <= held_max) {
          held.insert(held.end(), bytes.begin(), bytes.end());
          return Status::Ok();
        }
        if (!storing) {
          storing = true;
          MERIDIAN_RETURN_IF_ERROR(writer.Append(held));
          Bytes().swap(held);
        }
        return writer.Append(bytes);
      });
  if (too_large) {
    info.reason = "delta (at least " + std::to_string(delta_size) +
                  " bytes) saves less than 10% of the compressed artifact (" +
                  std::to_string(info.compressed_artifact_size) + " bytes)";
    return r;
  }
  if (!version.ok()) return version.status();
  MERIDIAN_RETURN_IF_ERROR(writer.Append(held));
  Result<std::vector<ChunkRef>> chunks =
      writer.Finish([&](std::span<uint8_t> first) { delta_format::SetFormatVersion(first, *version); });
  if (!chunks.ok()) return chunks.status();
  // The digest of the delta as stored, read back (a fraction of the artifacts' bytes).
  Sha256 delta_hash;
  for (const ChunkRef& c : *chunks) {
    Result<Bytes> chunk = store_.GetChunk(c.digest);
    if (!chunk.ok()) return chunk.status();
    delta_hash.Update(*chunk);
  }
  r.chunks = std::move(*chunks);
  info.worthwhile = true;
  info.digest = delta_hash.Finish();
  info.size = delta_size;
  return r;
}

std::string DeltaService::SignedInfo(const DeltaRecord& record) const {
  if (!record.signed_info.empty() || !online_key_) return record.signed_info;
  Envelope env;
  env.payload_type = std::string(kDeltaInfoPayloadType);
  env.payload = ToBytes(DeltaInfoToJson(record.info));
  SignEnvelope(env, *online_key_);
  return EnvelopeToJson(env);
}

}  // namespace meridian
