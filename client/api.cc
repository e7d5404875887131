#include "client/api.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "base/file.h"

#include "base/encoding.h"

namespace meridian {

std::string ModelsPath() { return "/v1/models"; }
std::string VersionsPath(std::string_view model) { return "/v1/models/" + PercentEncode(model) + "/versions"; }
std::string VersionPath(std::string_view model, std::string_view version) {
  return VersionsPath(model) + "/" + PercentEncode(version);
}
std::string MissingChunksPath() { return "/v1/chunks/missing"; }
std::string ChunkBatchPath() { return "/v1/chunks"; }
std::string ChunkPath(const Digest& chunk) { return "/v1/chunks/" + chunk.ToString(); }
std::string ArtifactPath(const Digest& artifact) { return "/v1/artifacts/" + artifact.ToString(); }
std::string DeltaPath(const Digest& from, const Digest& to) {
  return "/v1/deltas/" + from.ToString() + "/" + to.ToString();
}
std::string DeltaInfoPath(const Digest& from, const Digest& to) { return DeltaPath(from, to) + "/info"; }
std::string PendingPath() { return "/v1/pending"; }
std::string PendingVersionPath(std::string_view model, std::string_view version) {
  return "/v1/models/" + PercentEncode(model) + "/pending/" + PercentEncode(version);
}

std::string RootsPath() { return "/v1/roots"; }
std::string RootPath(int64_t version) { return RootsPath() + "/" + std::to_string(version); }

std::string TargetPath(std::string_view terminal, const TargetQuery& q) {
  return fmt::format("/v1/terminals/{}/target?model={}&channel={}&current={}&profile={}&region={}&wait={}&known={}",
                     PercentEncode(terminal), PercentEncode(q.model), PercentEncode(q.channel),
                     PercentEncode(q.current), PercentEncode(q.profile), PercentEncode(q.region), q.wait_s,
                     q.known_state_version);
}
std::string TerminalReportsPath(std::string_view terminal) {
  return "/v1/terminals/" + PercentEncode(terminal) + "/reports";
}

std::string TerminalCredentialPath(std::string_view terminal) {
  return "/v1/terminals/" + PercentEncode(terminal) + "/credential";
}

std::string TerminalsPath(std::string_view state, std::string_view after, size_t limit) {
  std::string query;
  auto add = [&](std::string_view name, std::string_view value) {
    if (value.empty()) return;
    query += query.empty() ? "?" : "&";
    query += std::string(name) + "=" + PercentEncode(value);
  };
  add("state", state);
  add("after", after);
  add("limit", limit == 0 ? "" : std::to_string(limit));
  return "/v1/terminals" + query;
}

std::string TerminalActionPath(std::string_view terminal, std::string_view action) {
  return "/v1/terminals/" + PercentEncode(terminal) + "/" + std::string(action);
}

std::string ReportsPath() { return "/v1/reports"; }
std::string SyncPath(const SyncQuery& q) {
  return fmt::format("/v1/sync?region={}&known={}&wait={}&stored_bytes={}&terminals={}&state_expires_ms={}&last_error={}",
                     PercentEncode(q.region), q.known, q.wait_s, q.stored_bytes, q.terminals, q.state_expires_ms,
                     PercentEncode(q.last_error));
}
std::string HoldingsPath() { return "/v1/holdings"; }
std::string ResidencyPath() { return "/v1/residency"; }

std::string RegionsPath() { return "/v1/regions"; }
std::string FleetPath() { return "/v1/fleet"; }
std::string FleetTerminalsPath(const FleetTerminalsQuery& q) {
  return fmt::format("/v1/fleet/terminals?model={}&channel={}&version={}&region={}&state={}&after={}&limit={}",
                     PercentEncode(q.model), PercentEncode(q.channel), PercentEncode(q.version),
                     PercentEncode(q.region), PercentEncode(q.state), PercentEncode(q.after), q.limit);
}

std::string RolloutsPath() { return "/v1/rollouts"; }
std::string RolloutPlansPath() { return "/v1/rollout-plans"; }
std::string RolloutPath(std::string_view id) { return RolloutsPath() + "/" + PercentEncode(id); }
std::string RolloutEventsPath(std::string_view id) { return RolloutPath(id) + "/events"; }
std::string CollectPath() { return "/v1/collect"; }

std::string RolloutActionPath(std::string_view id, std::string_view action) {
  return RolloutPath(id) + "/" + PercentEncode(action);
}

std::string TokensPath() { return "/v1/tokens"; }
std::string TokenRevokePath(std::string_view name) { return TokensPath() + "/" + PercentEncode(name) + "/revoke"; }
std::string AuditPath(uint64_t after_seq, uint64_t limit) {
  return fmt::format("/v1/audit?after={}&limit={}", after_seq, limit);
}

Status ReplyError(const HttpReply& reply, std::string_view what) {
  std::string msg = fmt::format("{}: HTTP {}: {}", what, reply.status, ErrorMessageOf(reply));
  // Still Unavailable (the server's condition, which passes), but said plainly.
  if (reply.status == 507) {
    return Status::Unavailable(fmt::format("{}: the server's disk is full (HTTP 507 insufficient_storage); nothing "
                                           "was stored, retry once space is freed there: {}",
                                           what, ErrorMessageOf(reply)));
  }
  if (reply.status >= 500) return Status::Unavailable(std::move(msg));
  if (reply.status == 404) return Status::NotFound(std::move(msg));
  if (reply.status == 401 || reply.status == 403) return Status::PermissionDenied(std::move(msg));
  if (reply.status == 409) return Status::FailedPrecondition(std::move(msg));
  return Status::InvalidArgument(std::move(msg));
}

Result<VerifiedManifest> ManifestFromReply(const Root& root, Result<HttpReply> reply, std::string_view model,
                                           std::string_view version) {
  if (!reply.ok()) return reply.status();
  if (reply->status != 200) return ReplyError(*reply, "manifest");
  Result<VerifiedManifest> verified = VerifySignedManifest(root, std::move(reply->body));
  if (!verified.ok()) return verified.status().WithContext("manifest rejected");
  MERIDIAN_RETURN_IF_ERROR(verified->CheckNames(model, version).WithContext("manifest rejected"));
  return verified;
}

Result<DeltaInfo> DeltaInfoFromReply(const Root& root, const Result<HttpReply>& reply, const Digest& from,
                                     const Digest& to) {
  if (!reply.ok()) return reply.status();
  if (reply->status == 409) return Status::FailedPrecondition("pending");
  if (reply->status != 200) return ReplyError(*reply, "delta descriptor");
  Result<DeltaInfo> info = VerifyDeltaInfo(root, reply->body, from, to);
  if (!info.ok()) return info.status().WithContext("delta descriptor rejected");
  return info;
}

Result<HttpReply> GetVerified(HttpClient& client, const std::string& path, const Digest& digest, uint64_t size,
                              const std::function<Status(ByteSpan)>& sink) {
  Sha256 hasher;
  uint64_t received = 0;
  Result<HttpReply> reply = client.GetStreaming(path, [&](ByteSpan piece) {
    hasher.Update(piece);
    received += piece.size();
    return sink(piece);
  }, size);
  if (!reply.ok()) {
    if (reply.status().code() != Status::Code::kResourceExhausted) return reply.status();
    return Status::Corruption(fmt::format("{}: more than the {} signed bytes ({})", path, size, reply.status().message()));
  }
  if (reply->status != 200) return reply;
  if (received != size || hasher.Finish() != digest) {
    return Status::Corruption(fmt::format("{}: {} bytes that do not match their signed digest", path, received));
  }
  return reply;
}

Result<HttpReply> GetChunkRun(HttpClient& client, const Manifest& m, const ChunkRun& run, size_t* next,
                              const std::function<Status(size_t chunk, ByteSpan bytes)>& take) {
  uint64_t begin = run.begin;  // where chunk *next starts in the artifact
  for (size_t i = run.first; i < *next; ++i) begin += m.chunks[i].size;
  if (*next >= run.end) return HttpReply{.status = 206, .body = {}, .headers = {}};
  const std::string path = ArtifactPath(m.digest);
  bool started = false;
  bool range_ignored = false;
  Bytes chunk;  // the bytes of chunk *next received so far
  auto sink = [&](const HttpReply& head, ByteSpan data) -> Status {
    if (!started) {
      started = true;
      // A server may answer a range that is the whole artifact with all of it (200).
      const bool whole = head.status == 200 && begin == 0 && run.end_byte == m.size;
      if (!whole && head.status == 200) {
        range_ignored = true;
        return Status::Unavailable(path + ": the range was ignored");  // stops the transfer
      }
      if (!whole && (head.status != 206 || !head.Header("content-range").starts_with(fmt::format("bytes {}-", begin)))) {
        return Status::Corruption(fmt::format("{}: asked for bytes {}-{}, got HTTP {} ({})", path, begin,
                                              run.end_byte - 1, head.status, head.Header("content-range")));
      }
    }
    while (!data.empty()) {
      if (*next == run.end) return Status::Corruption(path + ": more bytes than asked for");
      const uint64_t size = m.chunks[*next].size;
      const size_t take_bytes = static_cast<size_t>(std::min<uint64_t>(data.size(), size - chunk.size()));
      chunk.insert(chunk.end(), data.begin(), data.begin() + static_cast<ptrdiff_t>(take_bytes));
      data = data.subspan(take_bytes);
      if (chunk.size() < size) break;
      MERIDIAN_RETURN_IF_ERROR(take(*next, chunk));
      ++*next;
      chunk.clear();
    }
    return Status::Ok();
  };
  // Bounded by the artifact's size, not the range's: a reply to a range that
  // holds more is refused by the sink, and the head of one that ignores the
  // range must reach it.
  Result<HttpReply> reply = client.GetStreamingWithHead(path, sink, m.size,
                                                        {fmt::format("Range: bytes={}-{}", begin, run.end_byte - 1)});
  if (range_ignored) {
    // A front end that does not pass ranges on (a cache answering a miss with
    // the whole artifact): the chunks one request each instead.
    for (; *next < run.end; ++*next) {
      const ChunkRef& c = m.chunks[*next];
      reply = client.Get(ChunkPath(c.digest), c.size);
      if (!reply.ok() || reply->status != 200) return reply;
      MERIDIAN_RETURN_IF_ERROR(take(*next, AsBytes(reply->body)));
    }
    return reply;
  }
  if (!reply.ok() || reply->status / 100 != 2) return reply;
  if (*next != run.end) {
    return Status::Unavailable(fmt::format("{}: the reply ended at chunk {} of the {} asked for", path,
                                           *next - run.first, run.end - run.first));
  }
  return reply;
}

Result<HttpReply> GetSpooled(HttpClient& client, const std::string& path, uint64_t bytes_max,
                             const std::string& spool_dir, const std::optional<Digest>& digest) {
  std::string name = spool_dir + "/.spool-XXXXXX";
  int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("create a spool file in " + spool_dir, errno);
  ::unlink(name.c_str());  // gone with the descriptor, whatever happens
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  Sha256 hasher;
  uint64_t received = 0;
  Result<HttpReply> reply = client.GetStreaming(path, [&](ByteSpan piece) -> Status {
    hasher.Update(piece);
    MERIDIAN_RETURN_IF_ERROR(PwriteAll(fd, received, piece, "the spool file of " + path));
    received += piece.size();
    return Status::Ok();
  }, bytes_max);
  if (!reply.ok() || reply->status != 200) return reply;
  if (digest && hasher.Finish() != *digest) {
    return Status::Corruption(fmt::format("{}: {} bytes that do not match their signed digest", path, received));
  }
  reply->body.resize(static_cast<size_t>(received));
  MERIDIAN_RETURN_IF_ERROR(PreadExact(fd, 0, std::span(reinterpret_cast<uint8_t*>(reply->body.data()), reply->body.size()),
                                      "the spool file of " + path));
  return reply;
}

}  // namespace meridian
