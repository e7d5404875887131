// keygen, publish, models, versions and pull.
#include "cli/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <cstring>
#include <functional>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/json.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/env.h"
#include "base/file.h"
#include "cli/chunk_file.h"
#include "cli/control.h"
#include "cli/cosign.h"
#include "cli/output.h"
#include "client/api.h"
#include "client/delta_files.h"
#include "client/http_client.h"
#include "delta/chunker.h"
#include "delta/delta.h"
#include "delta/delta_info.h"
#include "manifest/chunk_batch.h"
#include "manifest/chunk_pages.h"
#include "manifest/manifest.h"
#include "signing/signing.h"
#include "trust/trust.h"

namespace meridian::cli {

namespace {

constexpr size_t kReadBufferBytes = 8 << 20;
constexpr size_t kMissingQueryDigestsMax = 50'000;  // per POST /v1/chunks/missing (server allows 100,000)
// Chunks are asked about and sent a batch of at least this many bytes at a
// time, while the file is still being read.
constexpr uint64_t kUploadBatchBytes = 16u << 20;

// A chunk to upload: its first occurrence in the file.
struct ChunkToSend {
  Digest digest;
  uint64_t size = 0;
  uint64_t offset = 0;             // in the file
  const Bytes* bytes = nullptr;    // or in memory: an index page
};

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// `g.parallel` connections to `g.server` with `options`, for ForEachParallel.
std::vector<std::unique_ptr<HttpClient>> Connections(const GlobalOptions& g, const HttpClientOptions& options) {
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < std::max(1, g.parallel); ++i) clients.push_back(std::make_unique<HttpClient>(g.server, options));
  return clients;
}

// Runs work(client, i) for i in [0, count), each of `clients` on a thread of
// its own. Stops handing out work after the first failure, returns it.
Status ForEachParallel(std::span<const std::unique_ptr<HttpClient>> clients, size_t count,
                       const std::function<Status(HttpClient&, size_t)>& work) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first_error;
  auto run = [&](HttpClient& client) {
    for (size_t i; !failed && (i = next++) < count;) {
      Status st = work(client, i);
      if (!st.ok()) {
        std::lock_guard lock(mu);
        if (!failed.exchange(true)) first_error = st;
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t w = 1; w < std::min(clients.size(), count); ++w) threads.emplace_back(run, std::ref(*clients[w]));
  if (count > 0) run(*clients[0]);
  for (auto& t : threads) t.join();
  return first_error;
}

Status FromReply(std::string_view what, const Result<HttpReply>& r, long want_status) {
  if (!r.ok()) return r.status();
  if (r->status != want_status) return ReplyError(*r, what);
  return Status::Ok();
}

}  // namespace

int Keygen(const GlobalOptions& g, const std::string& file) {
  if (Env::Default().Exists(file)) return Fail(file + " exists; not overwriting a key");
  SecretKey key = SecretKey::Generate();
  if (Status st = WriteSecretKeyFile(file, key); !st.ok()) return Fail(st);
  if (Status st = WritePublicKeyFile(file + ".pub", key.public_key()); !st.ok()) return Fail(st);
  if (g.json) {
    PrintJson({{"keyid", key.KeyId()}, {"secret", file}, {"public", file + ".pub"}});
  } else {
    fmt::print("key id {}\nsecret key: {} (keep it private)\npublic key: {}.pub\n", key.KeyId(), file, file);
  }
  return 0;
}

int Publish(const GlobalOptions& g, const PublishOptions& o) {
  if (!IsValidModelName(o.model)) return Fail("invalid model name '" + o.model + "' (want [a-z0-9][a-z0-9._-]{0,63})");
  if (!IsValidVersion(o.version)) return Fail("invalid version '" + o.version + "' (want SemVer, e.g. 1.2.0)");
  if (g.token.empty()) return Fail("publishing needs a publisher token (--token, --token-file or MERIDIAN_TOKEN)");
  Result<std::vector<SecretKey>> keys = ReadReleaseKeys(o.key_files);
  if (!keys.ok()) return Fail(keys.status());

  // The release's metadata is checked before a byte is sent: here with an
  // empty file, its size, digest and chunks filled in once the file is read.
  Manifest m;
  m.name = o.model;
  m.version = o.version;
  m.media_type = o.media_type;
  m.profiles = o.profiles;
  m.regions = o.regions;
  m.annotations = o.annotations;
  m.is_public = o.is_public;
  m.created = FormatRfc3339(SystemClock::Get().NowUnixMillis());
  m.digest = Digest::Of(ByteSpan());
  if (Result<Manifest> check = ParseManifest(ManifestToJson(m)); !check.ok()) return Fail(check.status());

  // The chunks go to --store-at when given (a daemon in the model's region),
  // the manifest to --server either way.
  GlobalOptions store = g;
  if (!o.store_at.empty()) {
    if (o.store_token.empty()) {
      return Fail("--store-at needs --store-token-file: the publisher.token of the daemon at " + o.store_at);
    }
    store.server = o.store_at;
    store.token = o.store_token;
  }
  const std::vector<std::unique_ptr<HttpClient>> store_clients = Connections(store, store.ClientOptions());
  Fd file(::open(o.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) return Fail(ErrnoStatus("open " + o.path, errno));
  // Uploads those of `chunks` (first occurrences of their digests) that the
  // store lacks: while the file is read, a batch at a time; again when the
  // commit finds stored chunks damaged (the daemon drops them, so they are
  // missing then).
  uint64_t uploaded_chunks = 0;
  uint64_t uploaded_bytes = 0;
  // Kept from one call of upload_missing to the next: the size of the next
  // chunk batch (guarded by the call's plan_mu; calls do not overlap), and
  // whether the daemon or a front end refused batches.
  uint64_t batch_bytes_limit = kChunkBatchBytesFirst;
  std::atomic<bool> batches_refused{false};
  auto upload_missing = [&](std::span<const ChunkToSend> chunks) -> Status {
    std::map<Digest, const ChunkToSend*> asked;
    for (const ChunkToSend& c : chunks) asked.emplace(c.digest, &c);
    std::vector<const ChunkToSend*> to_upload;
    for (size_t begin = 0; begin < chunks.size(); begin += kMissingQueryDigestsMax) {
      // The model's residency: a daemon that may not hold its bytes refuses before any is sent.
      nlohmann::json q = {{"digests", nlohmann::json::array()}};
      if (!m.regions.empty()) q["regions"] = m.regions;
      for (size_t i = begin; i < std::min(chunks.size(), begin + kMissingQueryDigestsMax); ++i) {
        q["digests"].push_back(chunks[i].digest.ToString());
      }
      Result<HttpReply> r = store_clients[0]->Post(MissingChunksPath(), q.dump(), kJsonReplyBytesMax);
      MERIDIAN_RETURN_IF_ERROR(FromReply("query missing chunks at " + store.server, r, 200));
      Result<nlohmann::json> answer = ParseJson(r->body, r->body.size());  // the client bounded the reply
      if (!answer.ok() || !answer->is_object() || !answer->contains("missing") || !(*answer)["missing"].is_array()) {
        return Status::InvalidArgument("malformed answer to missing-chunk query");
      }
      const nlohmann::json& a = *answer;
      for (const auto& d : a["missing"]) {
        Result<Digest> digest = d.is_string() ? Digest::Parse(d.get<std::string>()) : Status::InvalidArgument("");
        if (!digest.ok() || asked.count(*digest) == 0) {
          return Status::InvalidArgument("server named a chunk that was not asked for");
        }
        to_upload.push_back(asked[*digest]);
      }
    }
    // A chunk's bytes: from memory (an index page) or read from the file into
    // the sending thread's buffer, kept from one chunk to the next.
    auto bytes_of = [&](const ChunkToSend& chunk) -> Result<ByteSpan> {
      if (chunk.bytes != nullptr) return ByteSpan(*chunk.bytes);
      thread_local Bytes read_buffer;
      read_buffer.resize(chunk.size);
      MERIDIAN_RETURN_IF_ERROR(PreadExact(file.fd, chunk.offset, read_buffer, o.path));
      return ByteSpan(read_buffer);
    };
    auto changed = [&] { return Status::FailedPrecondition(o.path + " changed while publishing"); };
    // One chunk a request: a daemon from before chunk batches, or a front end
    // that takes smaller bodies.
    auto put_one = [&](HttpClient& c, const ChunkToSend& chunk) -> Status {
      Result<ByteSpan> data = bytes_of(chunk);
      if (!data.ok()) return data.status();
      // Not hashed again here: the daemon hashes every chunk it takes.
      Result<HttpReply> r = c.Put(ChunkPath(chunk.digest), *data, kShortReplyBytesMax);
      if (!r.ok()) return r.status();
      if (r->status == 422 && ErrorCodeOf(*r) == "digest_mismatch") return changed();
      if (r->status != 200 && r->status != 201) return ReplyError(*r, "upload chunk");
      return Status::Ok();
    };
    // Batches, a request each: a round trip per batch, not per chunk. Each
    // takes the next chunks up to the size the last batch's rate says
    // (NextChunkBatchBytes), so batches grow to kChunkBatchBytesMax on a fast
    // link and stay small on a slow one.
    std::mutex plan_mu;
    size_t next_chunk = 0;  // the first chunk no batch has taken; guarded by plan_mu
    auto take_batch = [&](size_t* begin, size_t* end, uint64_t* limit) {
      std::lock_guard lock(plan_mu);
      *begin = *end = next_chunk;
      *limit = batch_bytes_limit;
      for (uint64_t body = 0; *end < to_upload.size(); ++*end) {
        const uint64_t record = kChunkPageEntryBytes + to_upload[*end]->size;
        if (*end > *begin && body + record > *limit) break;
        body += record;
      }
      next_chunk = *end;
      return *end > *begin;
    };
    // As many tasks as chunks at most; those that find none left end at once.
    Status st = ForEachParallel(store_clients, to_upload.size(), [&](HttpClient& c, size_t) -> Status {
      size_t begin, end;
      uint64_t limit;
      if (!take_batch(&begin, &end, &limit)) return Status::Ok();
      if (!batches_refused) {
        thread_local Bytes body;
        body.clear();
        for (size_t i = begin; i < end; ++i) {
          Result<ByteSpan> data = bytes_of(*to_upload[i]);
          if (!data.ok()) return data.status();
          AppendBatchedChunk(body, to_upload[i]->digest, *data);
        }
        const auto sending = std::chrono::steady_clock::now();
        Result<HttpReply> r = c.Post(ChunkBatchPath(), AsString(body), kShortReplyBytesMax, "application/octet-stream");
        if (!r.ok()) return r.status();
        if (r->status == 422 && ErrorCodeOf(*r) == "digest_mismatch") return changed();
        if (r->status == 200) {
          const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - sending).count();
          std::lock_guard lock(plan_mu);
          batch_bytes_limit = NextChunkBatchBytes(limit, body.size(), seconds);
          return Status::Ok();
        }
        if (r->status != 404 && r->status != 405 && r->status != 413) return ReplyError(*r, "upload chunks");
        batches_refused = true;  // this batch and the rest go a chunk a request
      }
      for (size_t i = begin; i < end; ++i) MERIDIAN_RETURN_IF_ERROR(put_one(c, *to_upload[i]));
      return Status::Ok();
    });
    uploaded_chunks += to_upload.size();
    for (const ChunkToSend* c : to_upload) uploaded_bytes += c->size;
    return st;
  };

  // Appends to `out` those of `chunks` (at `offsets`) whose digests came
  // first in the file; the bytes appended.
  std::set<Digest> seen;
  auto first_occurrences = [&seen](std::span<const ChunkRef> chunks, std::span<const uint64_t> offsets,
                                   std::vector<ChunkToSend>& out) {
    uint64_t bytes = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      if (!seen.insert(chunks[i].digest).second) continue;
      out.push_back({chunks[i].digest, chunks[i].size, offsets[i]});
      bytes += chunks[i].size;
    }
    return bytes;
  };

  // The file is read, chunked and hashed on all cores while the chunks read
  // so far are sent, one batch at a time.
  std::vector<ChunkToSend> batch;
  uint64_t batch_bytes = 0;
  std::future<Status> sending;  // the batch in flight
  auto send_batch = [&]() -> Status {
    if (sending.valid()) MERIDIAN_RETURN_IF_ERROR(sending.get());
    if (batch.empty()) return Status::Ok();
    sending = std::async(std::launch::async, [&upload_missing, chunks = std::move(batch)] { return upload_missing(chunks); });
    batch.clear();
    batch_bytes = 0;
    return Status::Ok();
  };
  Result<ChunkedFile> chunked = [&] {
    std::error_code unknown_size;
    const uintmax_t size = std::filesystem::file_size(o.path, unknown_size);
    Progress progress("publishing", unknown_size ? 0 : size, !g.json);
    return ChunkFile(o.path, [&](uint64_t bytes) { progress.Add(bytes); },
                     [&](std::span<const ChunkRef> chunks, std::span<const uint64_t> offsets) -> Status {
                       batch_bytes += first_occurrences(chunks, offsets, batch);
                       return batch_bytes >= kUploadBatchBytes ? send_batch() : Status::Ok();
                     });
  }();
  Status sent = chunked.ok() ? send_batch() : chunked.status();
  if (sending.valid()) {
    Status last = sending.get();
    if (sent.ok()) sent = last;
  }
  if (!sent.ok()) return Fail(sent);
  m.size = chunked->manifest.size;
  m.digest = chunked->manifest.digest;
  m.chunks = std::move(chunked->manifest.chunks);
  // A chunk list longer than a page is signed as index pages (a v2
  // manifest), which go where the chunks went.
  const std::vector<ChunkPage> pages =
      m.chunks.size() > o.chunks_per_page ? MakeChunkPages(m.chunks, o.chunks_per_page) : std::vector<ChunkPage>();
  std::vector<ChunkToSend> pages_to_send;
  for (const ChunkPage& p : pages) {
    m.chunk_pages.push_back(p.ref);
    pages_to_send.push_back({p.ref.digest, p.bytes.size(), 0, &p.bytes});
  }
  if (Status st = upload_missing(pages_to_send); !st.ok()) return Fail(st);
  std::string manifest_json = ManifestToJson(m);
  if (Result<Manifest> check = ParseManifest(manifest_json); !check.ok()) return Fail(check.status());

  Envelope env;
  env.payload_type = std::string(kManifestPayloadType);
  env.payload = ToBytes(manifest_json);
  for (const SecretKey& key : *keys) SignEnvelope(env, key);
  HttpClient client(g.server, g.ClientOptions(CommitTimeoutMs(m.size)));
  Result<HttpReply> r = Status::Unavailable("not sent");
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (attempt > 0) {
      std::vector<ChunkToSend> all;
      seen.clear();
      first_occurrences(m.chunks, chunked->offsets, all);
      all.insert(all.end(), pages_to_send.begin(), pages_to_send.end());
      if (Status st = upload_missing(all); !st.ok()) return Fail(st);
    }
    r = client.Post(VersionsPath(o.model), EnvelopeToJson(env), kJsonReplyBytesMax);
    if (!r.ok()) return Fail(r.status());
    if (r->status != 422 || ErrorCodeOf(*r) != "missing_chunks") break;
  }
  if (r->status == 409) {
    // version_exists, or pending_differs: the version waits for signatures on another manifest.
    const bool waiting = ErrorCodeOf(*r) == "pending_differs";
    return Fail(fmt::format("{} {} is {} with other bytes or metadata; publish a new version instead ({})", m.name,
                            m.version, waiting ? "waiting for signatures" : "already published", ErrorMessageOf(*r)));
  }
  // 200: the same release was published before (a retried job): nothing changed.
  // 202: signed by fewer release keys than the root asks: it waits for co-signers.
  const bool already = r->status == 200;
  if (r->status != 201 && r->status != 202 && !already) return FailReply("commit version", *r);
  Result<CommitAnswer> answer = ParseCommitAnswer(*r);
  if (!answer.ok()) return Fail(answer.status());

  if (g.json) {
    PrintJson({{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()}, {"size", m.size},
               {"chunks", m.chunks.size()}, {"uploaded_chunks", uploaded_chunks}, {"uploaded_bytes", uploaded_bytes},
               {"already_published", already}, {"pending", answer->pending}, {"signers", answer->signers},
               {"threshold", answer->threshold}});
  } else {
    fmt::print("{} {} {} ({}, {})\n",
               answer->pending ? "waiting for signatures:" : already ? "already published (same release):" : "published",
               m.name, m.version, HumanBytes(m.size), m.digest.ToString());
    PrintCommitAnswer(m.name, m.version, *answer);
    fmt::print("uploaded {} of {} chunks, {} bytes ({:.1f}% of the file)\n", uploaded_chunks, m.chunks.size(),
               uploaded_bytes, m.size == 0 ? 0.0 : 100.0 * static_cast<double>(uploaded_bytes) / static_cast<double>(m.size));
  }
  return 0;
}

namespace {

// GETs `path`, whose answer is {"<key>":["…",…]}, and prints the names one a
// line (or the answer, with --output json).
int PrintNameList(const GlobalOptions& g, const std::string& path, const char* key, std::string_view what) {
  HttpClient client(g.server, g.ClientOptions());
  Result<HttpReply> r = client.Get(path, kJsonReplyBytesMax);
  if (!r.ok()) return Fail(r.status());
  if (r->status != 200) return FailReply(what, *r);
  // A daemon (maybe a newer one) wrote it: fields this CLI does not know are read past.
  Result<nlohmann::json> answer = ParseJsonObject(r->body, r->body.size(), "the daemon's answer");  // the client bounded the reply
  if (!answer.ok()) return Fail(answer.status());
  std::vector<std::string> names;
  JsonFields f(*answer, "the daemon's answer", UnknownFields::kIgnore);
  f.Strings(key, &names, true);
  if (Status st = f.Finish(); !st.ok()) return Fail(st);
  if (g.json) {
    PrintJson(*answer);
  } else {
    for (const std::string& name : names) fmt::print("{}\n", name);
  }
  return 0;
}

}  // namespace

int ListModels(const GlobalOptions& g) { return PrintNameList(g, ModelsPath(), "models", "list models"); }

namespace {

// The versions of `model` waiting for signatures, from GET /v1/pending; none
// when the caller's token may not see them (only a publisher's may).
std::vector<nlohmann::json> PendingVersions(HttpClient& client, const std::string& model) {
  std::vector<nlohmann::json> out;
  Result<HttpReply> r = client.Get(PendingPath(), kJsonReplyBytesMax);
  if (!r.ok() || r->status != 200) return out;
  Result<nlohmann::json> answer = ParseJsonObject(r->body, r->body.size(), "the daemon's answer");
  if (!answer.ok()) return out;
  auto list = answer->find("pending");
  if (list == answer->end() || !list->is_array()) return out;
  for (const nlohmann::json& p : *list) {
    if (p.is_object() && p.contains("model") && p.at("model") == model) out.push_back(p);
  }
  return out;
}

}  // namespace

int DeleteVersion(const GlobalOptions& g, const std::string& model, const std::string& version,
                  const std::string& reason) {
  if (!IsValidModelName(model)) return Fail("invalid model name '" + model + "'");
  if (!IsValidVersion(version)) return Fail("invalid version '" + version + "' (SemVer expected)");
  const std::string what = fmt::format("delete {}@{}", model, version);
  return CallAndShow(g, "DELETE", VersionPath(model, version), DumpJson(nlohmann::json{{"reason", reason}}), 200, what,
                     [&](const nlohmann::json&) {
                       fmt::print("deleted {}@{}; its bytes go at the next collection (meridian collect)\n", model,
                                  version);
                     });
}

int Collect(const GlobalOptions& g) {
  // A collection walks the whole store: give it longer than a control call.
  constexpr int64_t kCollectTimeoutMs = 30 * 60 * 1000;
  return CallAndShow(
      g, "POST", CollectPath(), "", 200, "collect",
      [](const nlohmann::json& j) {
        const auto& deleted = j.at("versions_deleted");
        fmt::print("versions deleted by the retention policy: {}\n",
                   deleted.empty() ? std::string("none") : fmt::format("{}", fmt::join(deleted.get<std::vector<std::string>>(), ", ")));
        fmt::print("chunks deleted: {} ({} bytes); kept: {} referenced, {} young\n", j.at("chunks_deleted").get<uint64_t>(),
                   j.at("bytes_deleted").get<uint64_t>(), j.at("chunks_referenced").get<uint64_t>(),
                   j.at("chunks_young").get<uint64_t>());
        fmt::print("stale deltas dropped: {}; report ids forgotten: {}\n", j.at("deltas_dropped").get<uint64_t>(),
                   j.at("report_ids_dropped").get<uint64_t>());
        fmt::print("store on disk: {} bytes\n", j.at("disk_bytes").get<uint64_t>());
      },
      kCollectTimeoutMs);
}

int ListVersions(const GlobalOptions& g, const std::string& model) {
  if (!IsValidModelName(model)) return Fail("invalid model name '" + model + "'");
  HttpClient client(g.server, g.ClientOptions());
  std::vector<nlohmann::json> pending = g.token.empty() ? std::vector<nlohmann::json>() : PendingVersions(client, model);
  Result<HttpReply> r = client.Get(VersionsPath(model), kJsonReplyBytesMax);
  if (!r.ok()) return Fail(r.status());
  std::vector<std::string> versions;
  // 404: no version visible yet; some may be waiting for signatures.
  if (r->status != 200 && !(r->status == 404 && !pending.empty())) return FailReply("list versions", *r);
  if (r->status == 200) {
    Result<nlohmann::json> answer = ParseJsonObject(r->body, r->body.size(), "the daemon's answer");
    if (!answer.ok()) return Fail(answer.status());
    JsonFields f(*answer, "the daemon's answer", UnknownFields::kIgnore);
    f.Strings("versions", &versions, true);
    if (Status st = f.Finish(); !st.ok()) return Fail(st);
  }
  if (g.json) {
    PrintJson({{"model", model}, {"versions", versions}, {"pending", pending}});
    return 0;
  }
  for (const std::string& v : versions) fmt::print("{}\n", v);
  for (const nlohmann::json& p : pending) {
    JsonFields f(p, "a pending version", UnknownFields::kIgnore);
    std::string version;
    std::vector<std::string> signers;
    uint64_t threshold = 0;
    f.String("version", &version, true);
    f.Strings("signers", &signers, true);
    f.Uint("threshold", &threshold, true);
    if (Status st = f.Finish(); !st.ok()) return Fail(st);
    fmt::print("{} (pending: {} of {} signatures, by {})\n", version, signers.size(), threshold, fmt::join(signers, ", "));
  }
  return 0;
}

namespace {

// One chunk (or index page) from the daemon, verified against its digest and size.
Result<Bytes> GetChunk(HttpClient& c, const ChunkRef& ref) {
  Bytes data;
  data.reserve(ref.size);
  Result<HttpReply> r = GetVerified(c, ChunkPath(ref.digest), ref.digest, ref.size, [&](ByteSpan piece) {
    data.insert(data.end(), piece.begin(), piece.end());
    return Status::Ok();
  });
  if (!r.ok()) return r.status();
  if (r->status != 200) return ReplyError(*r, "chunk " + ref.digest.ToString());
  return data;
}

// The most one ranged GET of the artifact asks for: longer runs are cut, so
// that the connections share a large file.
constexpr uint64_t kRangeBytesMax = 16u << 20;
// A range that fails in a way that may pass is asked for again (below): how
// many attempts in a row that bring no chunk it gets, and the pause before
// the second of those, doubling after each.
constexpr int kRangeAttemptsMax = 4;
constexpr std::chrono::milliseconds kRangeRetryPause{500};

// Whether a failed GET may go better asked again: the connection dropped or
// went silent, or the server (or a front end) failed (5xx). A reply that lies
// (Corruption) or refuses (4xx) would only say so again.
bool MayPass(const Result<HttpReply>& r) {
  if (r.ok()) return r->status >= 500;
  return r.status().code() == Status::Code::kUnavailable || r.status().code() == Status::Code::kDeadlineExceeded;
}

// GetChunkRun of `run`, asked again from its first chunk not yet taken while
// the failure MayPass: at once after an attempt that brought chunks, after a
// pause otherwise, until kRangeAttemptsMax attempts in a row bring none. So a
// connection dropped in the middle of a large pull costs the chunk it was
// in, not the pull.
Result<HttpReply> GetChunkRunRetrying(HttpClient& c, const Manifest& m, const ChunkRun& run,
                                      const std::function<Status(size_t chunk, ByteSpan bytes)>& take) {
  size_t next = run.first;
  auto pause = kRangeRetryPause;
  for (int fruitless = 0;;) {
    const size_t before = next;
    Result<HttpReply> r = GetChunkRun(c, m, run, &next, take);
    if ((r.ok() && r->status / 100 == 2) || !MayPass(r)) return r;
    if (next > before) {
      fruitless = 0;
      pause = kRangeRetryPause;
    } else if (++fruitless == kRangeAttemptsMax) {
      return r;
    } else {
      std::this_thread::sleep_for(pause);
      pause *= 2;
    }
    fmt::print(stderr, "meridian: {}; asking again from chunk {}\n",
               r.ok() ? fmt::format("HTTP {}: {}", r->status, ErrorMessageOf(*r)) : r.status().ToString(), next);
  }
}


// Downloads every chunk of `m` into the file open as `fd` (at its offset),
// verifying each, then verifies the whole file as written. Each distinct
// chunk comes once, in ranges of the artifact (a request per range, not per
// chunk: a round trip each); a repeated one is copied from its first
// occurrence. A paged manifest's chunk list is read from its index pages first.
Status DownloadChunks(const GlobalOptions& g, VerifiedManifest& verified, int fd, uint64_t* downloaded_bytes) {
  HttpClient pages(g.server, g.ClientOptions());
  MERIDIAN_RETURN_IF_ERROR(verified.ResolveChunkPages(
      [&](const ChunkPageRef& p) { return GetChunk(pages, {p.digest, p.page_bytes()}); }));
  const Manifest& m = verified.manifest();
  std::vector<uint64_t> offsets(m.chunks.size());
  for (size_t i = 1; i < offsets.size(); ++i) offsets[i] = offsets[i - 1] + m.chunks[i - 1].size;
  std::set<Digest> distinct;
  for (const ChunkRef& c : m.chunks) distinct.insert(c.digest);
  const std::vector<ChunkRun> ranges = FirstOccurrenceRuns(m.chunks, std::move(distinct), kRangeBytesMax);
  uint64_t distinct_bytes = 0;
  for (const ChunkRun& range : ranges) distinct_bytes += range.end_byte - range.begin;
  if (::ftruncate(fd, 0) != 0) return ErrnoStatus("truncate", errno);
  Progress progress("downloading", distinct_bytes, !g.json);
  std::atomic<uint64_t> downloaded{0};
  std::vector<uint8_t> zeros(m.chunks.size());  // by chunk, those of zeros: holes (each entry written by one thread)
  const std::vector<std::unique_ptr<HttpClient>> connections = Connections(g, g.DownloadOptions());
  MERIDIAN_RETURN_IF_ERROR(ForEachParallel(connections, ranges.size(), [&](HttpClient& c, size_t k) -> Status {
    Result<HttpReply> r = GetChunkRunRetrying(c, m, ranges[k], [&](size_t i, ByteSpan bytes) -> Status {
      if (Digest::Of(bytes) != m.chunks[i].digest) {
        return Status::Corruption(fmt::format("chunk {} ({}) does not match its digest", i, m.chunks[i].digest.ToString()));
      }
      downloaded += bytes.size();
      progress.Add(bytes.size());
      // A chunk of zeros is left a hole, which reads as zeros: a sparse file
      // (a preallocated tensor store) takes no more disk here than its data.
      zeros[i] = IsAllZeros(bytes);
      return zeros[i] ? Status::Ok() : PwriteAll(fd, offsets[i], bytes, "the output file");
    });
    if (!r.ok()) return r.status();
    if (r->status / 100 != 2) return ReplyError(*r, "artifact " + m.digest.ToString());
    return Status::Ok();
  }));
  std::map<Digest, size_t> first;
  Bytes repeated;
  for (size_t i = 0; i < m.chunks.size(); ++i) {
    auto [at, added] = first.emplace(m.chunks[i].digest, i);
    if (added || zeros[at->second]) continue;
    repeated.resize(m.chunks[i].size);
    MERIDIAN_RETURN_IF_ERROR(PreadExact(fd, offsets[at->second], repeated, "the output file"));
    MERIDIAN_RETURN_IF_ERROR(PwriteAll(fd, offsets[i], repeated, "the output file"));
  }
  if (::ftruncate(fd, static_cast<off_t>(m.size)) != 0) return ErrnoStatus("truncate", errno);  // a hole at the end too
  // Verify what is on disk, not what we meant to write.
  Sha256 whole;
  Bytes buf(kReadBufferBytes);
  for (uint64_t off = 0; off < m.size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), m.size - off));
    MERIDIAN_RETURN_IF_ERROR(PreadExact(fd, off, std::span(buf.data(), n), "the output file"));
    whole.Update(ByteSpan(buf.data(), n));
    off += n;
  }
  if (whole.Finish() != m.digest) return Status::Corruption("assembled file does not match the manifest digest");
  if (::fsync(fd) != 0) return ErrnoStatus("fsync", errno);
  *downloaded_bytes = downloaded;
  return Status::Ok();
}

// Turns `from_file` into the version `m` describes with a delta from the
// daemon, written to `staging` and verified: the descriptor must be signed by
// the root's online role, the delta bytes must match its digest and size, and
// the output the signed manifest's digest and size. Returns the delta bytes
// downloaded; any error means: fall back to the chunks.
Result<uint64_t> DownloadDelta(const GlobalOptions& g, const Root& root, const Manifest& m,
                               const std::string& from_file, const std::string& staging) {
  Result<Digest> from = Env::Default().DigestOfFile(from_file);
  if (!from.ok()) return from.status();
  HttpClient client(g.server, g.ClientOptions());
  Result<DeltaInfo> info =
      DeltaInfoFromReply(root, client.Get(DeltaInfoPath(*from, m.digest), kDeltaInfoReplyBytesMax), *from, m.digest);
  if (!info.ok()) return info.status();
  if (!info->worthwhile) return Status::FailedPrecondition("no delta worth downloading: " + info->reason);
  HttpClient download(g.server, g.DownloadOptions());

  Result<std::unique_ptr<FileSourceReader>> source = FileSourceReader::Open(from_file);
  if (!source.ok()) return source.status();
  Result<std::unique_ptr<FileTargetSink>> sink = FileTargetSink::Create(staging);
  if (!sink.ok()) return sink.status();
  ApplyOptions options;
  options.source_digest = *from;
  options.target_digest = m.digest;
  options.target_bytes_max = m.size;
  DeltaDecoder decoder(**source, **sink, options);
  Progress progress("downloading delta", info->size, !g.json);
  auto apply = [&](ByteSpan piece) {
    progress.Add(piece.size());
    return decoder.Append(piece);
  };
  Result<HttpReply> d = GetVerified(download, DeltaPath(*from, m.digest), info->digest, info->size, apply);
  if (!d.ok()) return d.status();
  if (d->status != 200) return ReplyError(*d, "delta");
  MERIDIAN_RETURN_IF_ERROR(decoder.Finish());
  MERIDIAN_RETURN_IF_ERROR((*sink)->Sync());
  return info->size;
}

}  // namespace

int Pull(const GlobalOptions& g, const PullOptions& o) {
  if (!IsValidModelName(o.model)) return Fail("invalid model name '" + o.model + "'");
  if (!IsValidVersion(o.version)) return Fail("invalid version '" + o.version + "'");
  Result<Root> root = LoadTrustedRootFile(o.root_file);
  if (!root.ok()) return Fail(root.status());
  if (Status fresh = CheckRootFresh(*root, SystemClock::Get().NowUnixMillis()); !fresh.ok()) {
    return Fail(o.root_file + ": " + fresh.message() + " (fetch the newest: GET /v1/roots/latest)");
  }

  HttpClient client(g.server, g.ClientOptions());
  Result<VerifiedManifest> verified =
      ManifestFromReply(*root, GetSpooled(client, VersionPath(o.model, o.version), kManifestReplyBytesMax, SpoolDir()),
                        o.model, o.version);
  if (!verified.ok()) return Fail(verified.status());
  const Manifest& m = verified->manifest();

  std::string tmp = o.out + ".partial." + std::to_string(::getpid());
  uint64_t downloaded = 0;
  std::string method = "chunks";
  Status st = Status::Unavailable("no delta asked for");
  if (!o.from_file.empty()) {
    Result<uint64_t> delta = DownloadDelta(g, *root, m, o.from_file, tmp);
    if (delta.ok()) {
      downloaded = *delta;
      method = "delta";
      st = Status::Ok();
    } else {
      fmt::print(stderr, "meridian: no delta from {} ({}); downloading the chunks\n", o.from_file,
                 delta.status().message());
    }
  }
  if (!st.ok()) {
    Fd f(::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    st = f.fd < 0 ? ErrnoStatus("create " + tmp, errno) : DownloadChunks(g, *verified, f.fd, &downloaded);
  }
  Env& env = Env::Default();
  if (!st.ok()) {
    env.RemoveFile(tmp);  // best effort: never left beside the output
    return Fail(st);
  }
  // Verified and fsynced above: renamed over the output, its directory synced.
  if (Status published = env.PublishFile(tmp, o.out); !published.ok()) return Fail(published);

  if (g.json) {
    PrintJson({{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()}, {"size", m.size},
               {"path", o.out}, {"method", method}, {"downloaded_bytes", downloaded}});
  } else {
    fmt::print("pulled {} {} to {} ({}, verified {})\n", m.name, m.version, o.out, HumanBytes(m.size),
               m.digest.ToString());
    fmt::print("downloaded {} bytes ({}) for a {} byte file ({:.2f}%)\n", downloaded, method, m.size,
               m.size == 0 ? 0.0 : 100.0 * static_cast<double>(downloaded) / static_cast<double>(m.size));
  }
  return 0;
}

}  // namespace meridian::cli
