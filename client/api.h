// The daemon's HTTP API as its clients see it. Every "/v1/…" path the CLI,
// the agent and a region's follower send is built here, once per route, with
// its parameters percent-encoded (daemon/api.cc registers the same patterns;
// docs/api.md lists them). Replies that carry signed documents are read here
// too, through the trust layer, so each client checks them the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/status.h"
#include "client/http_client.h"
#include "manifest/manifest.h"
#include "trust/trust.h"

namespace meridian {

// --- publishing and reading versions
std::string ModelsPath();
std::string VersionsPath(std::string_view model);
std::string VersionPath(std::string_view model, std::string_view version);
std::string MissingChunksPath();
std::string ChunkBatchPath();  // POST: a chunk batch (manifest/chunk_batch.h)
std::string ChunkPath(const Digest& chunk);
std::string ArtifactPath(const Digest& artifact);
std::string DeltaPath(const Digest& from, const Digest& to);
std::string DeltaInfoPath(const Digest& from, const Digest& to);
// Releases waiting for co-signers (publisher token).
std::string PendingPath();
std::string PendingVersionPath(std::string_view model, std::string_view version);

// --- the chain of roots
std::string RootsPath();                 // GET: the latest version; POST: the next root
std::string RootPath(int64_t version);

// --- terminals
struct TargetQuery {
  std::string model;
  std::string channel;
  std::string current;  // the version the terminal runs; empty for none
  std::string profile;
  std::string region;
  int64_t wait_s = 0;               // long poll up to this long for a state newer than `known`
  uint64_t known_state_version = 0;
};
std::string TargetPath(std::string_view terminal, const TargetQuery& q);
std::string TerminalReportsPath(std::string_view terminal);
std::string TerminalCredentialPath(std::string_view terminal);  // POST, signed with the terminal's key
// Enrolment (operator): GET lists a page (state "" for all), POST adds.
std::string TerminalsPath(std::string_view state = "", std::string_view after = "", size_t limit = 0);
std::string TerminalActionPath(std::string_view terminal, std::string_view action);  // "accept", "revoke"

// --- regions
std::string ReportsPath();  // a region forwarding its terminals' reports upstream
struct SyncQuery {
  std::string region;
  uint64_t known = 0;
  int64_t wait_s = 0;
  uint64_t stored_bytes = 0;
  uint64_t terminals = 0;
  int64_t state_expires_ms = 0;  // the earliest expiry of the channel states the region holds (0: none)
  std::string last_error;
};
std::string SyncPath(const SyncQuery& q);
std::string RegionsPath();
std::string HoldingsPath();   // a region telling its upstream what it holds
std::string ResidencyPath();
std::string FleetPath();
struct FleetTerminalsQuery {
  std::string model;
  std::string channel = "stable";
  std::string version;  // empty: any
  std::string region;   // empty: any
  std::string state;    // "ok", "failed", or empty: any
  std::string after;    // the previous page's "next"
  uint64_t limit = 100;
};
std::string FleetTerminalsPath(const FleetTerminalsQuery& q);

// --- rollouts
std::string RolloutsPath();
std::string RolloutPlansPath();
std::string RolloutPath(std::string_view id);
std::string RolloutEventsPath(std::string_view id);
std::string RolloutActionPath(std::string_view id, std::string_view action);  // promote, pause, …

// --- retention
std::string CollectPath();  // POST: the retention policy and a collection, now

// --- people's credentials and the audit log
std::string TokensPath();  // GET: list; POST: create
std::string TokenRevokePath(std::string_view name);
std::string AuditPath(uint64_t after_seq, uint64_t limit);  // events after seq `after_seq`

// --- how much of each reply a client reads
// Each call passes the limit of what its route answers (HttpClient's
// response_bytes_max argument); the transfer stops there, so a hostile or
// broken server costs a client at most this much memory per request.
// Payloads (artifacts, deltas, chunks) stream to their destination instead,
// at most their signed size (GetVerified).
//
// A short JSON answer: an acknowledgement, a terminal's credential, the
// number of the latest root.
inline constexpr uint64_t kShortReplyBytesMax = 64u << 10;
// A JSON answer to an operator's or publisher's request: lists, a rollout and
// its events, the fleet, the chunks missing of a publish (at most 50,000
// digests a query).
inline constexpr uint64_t kJsonReplyBytesMax = 16u << 20;
// A signed root (GET /v1/roots/{version}).
inline constexpr uint64_t kRootReplyBytesMax = kRootEnvelopeBytesMax;
// A signed manifest: as large as the daemon accepts one (about 86 MiB), so
// clients spool it to disk as it arrives (GetSpooled): memory holds it only
// once it is whole.
inline constexpr uint64_t kManifestReplyBytesMax = kParseEnvelopeBytesMax;
// A terminal's target: a signed channel state and a few fields.
inline constexpr uint64_t kTargetReplyBytesMax = 17u << 20;
// A target reply is a dozen fields and a signed envelope (about 200 values):
// more is refused as it is parsed, before it takes memory.
inline constexpr uint64_t kTargetReplyValuesMax = 8192;
// A signed delta descriptor: the envelope of a kDeltaInfoJsonBytesMax payload.
inline constexpr uint64_t kDeltaInfoReplyBytesMax = (kDeltaInfoJsonBytesMax + 2) / 3 * 4 + (64u << 10);

// --- how long a call may take
// A commit (POST VersionsPath, by publish and sign) is answered only once the
// daemon has read the whole artifact back from its store and hashed it: the
// HttpClient's default (5 minutes) and a second more per 50 MB, so that a
// large model (200 GiB: 77 minutes in all) is not given up on, nor a small
// one waited on for ever.
inline constexpr long CommitTimeoutMs(uint64_t artifact_bytes) {
  return 300'000 + static_cast<long>(artifact_bytes / 50'000);
}

// A non-2xx reply as a Status whose message names `what`, the HTTP status and
// the server's error message: Unavailable for 5xx (another try, or another
// server, may do better; a 507 is said to be the server's full disk),
// NotFound for 404, PermissionDenied for 401 and 403, FailedPrecondition for
// 409 (the server's state forbids it now), InvalidArgument for any other.
Status ReplyError(const HttpReply& reply, std::string_view what);

// The reply to GET VersionPath(model, version), verified (trust/): a transport
// failure or an error reply as above, then VerifySignedManifest's errors, and
// Corruption for a manifest of another version (these "manifest rejected: …").
Result<VerifiedManifest> ManifestFromReply(const Root& root, Result<HttpReply> reply, std::string_view model,
                                           std::string_view version);

// The reply to GET DeltaInfoPath(from, to), verified (trust/ VerifyDeltaInfo);
// a 409 (the daemon is still making it) is FailedPrecondition "pending".
Result<DeltaInfo> DeltaInfoFromReply(const Root& root, const Result<HttpReply>& reply, const Digest& from,
                                     const Digest& to);

// GETs `path`, passing its 200 body to `sink` as it arrives, and checks that
// it is exactly `size` bytes hashing to `digest` (a signed descriptor's or
// manifest's): Corruption otherwise, also when the server sends more (the
// transfer stops one byte past `size`). Another status comes back as the
// reply, for the caller. The sink sees bytes before they are verified: it
// must make nothing of them visible until this returns a 200.
Result<HttpReply> GetVerified(HttpClient& client, const std::string& path, const Digest& digest, uint64_t size,
                              const std::function<Status(ByteSpan)>& sink);

// GETs chunks [*next, run.end) of `m`'s artifact (one Range request; `run`
// from FirstOccurrenceRuns), handing each to `take` whole, in order, as it
// arrives: a request per run of chunks, not per chunk. *next moves past each
// chunk `take` accepts, so a transfer cut short can go on from there (from
// another server). The bytes are the server's: `take` must check them
// against the chunk's digest before it keeps them. A server that ignores the
// range (200 with the whole artifact: a cache in front answering a miss) is
// asked for the chunks one GET /v1/chunks/{digest} each instead. Corruption
// when the reply is not the range asked for or holds more; Unavailable when
// it ends before the run does; a status other than 2xx comes back as the
// reply.
Result<HttpReply> GetChunkRun(HttpClient& client, const Manifest& m, const ChunkRun& run, size_t* next,
                              const std::function<Status(size_t chunk, ByteSpan bytes)>& take);

// GETs `path`, whose 200 body must be at most `bytes_max` and, when given,
// hash to `digest` (named by a signed document beforehand), into the reply's
// body. The body goes to an unlinked temporary file in `spool_dir` as it
// arrives and is read into memory only once it is whole (and matched), so
// whatever else a server sends costs disk up to `bytes_max`, never memory:
// Corruption when it does not match, ResourceExhausted past `bytes_max`,
// IOError for the spool file. Another status comes back as the reply, with
// its (bounded) error body, for the caller.
Result<HttpReply> GetSpooled(HttpClient& client, const std::string& path, uint64_t bytes_max,
                             const std::string& spool_dir, const std::optional<Digest>& digest = std::nullopt);

}  // namespace meridian
