// The /v1 routes of meridiand: reads are open, publishing needs the publisher
// token. Every name is validated before anything looks it up.
#include "daemon/api.h"

#include <openssl/crypto.h>

#include <nlohmann/json.hpp>

#include "manifest/manifest.h"

namespace meridian {

namespace {

constexpr std::string_view kImmutable = "public, max-age=31536000, immutable";

std::string Quoted(const Digest& d) { return "\"" + d.ToString() + "\""; }

HttpResponse JsonOk(int status, const nlohmann::json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  r.Set("Content-Type", "application/json");
  return r;
}

int HttpStatusFor(const Status& st) {
  switch (st.code()) {
    case Status::Code::kOk: return 200;
    case Status::Code::kNotFound: return 404;
    case Status::Code::kInvalidArgument: return 400;
    case Status::Code::kPermissionDenied: return 403;
    case Status::Code::kAlreadyExists:
    case Status::Code::kFailedPrecondition: return 409;
    case Status::Code::kResourceExhausted: return 413;
    case Status::Code::kDeadlineExceeded: return 408;
    case Status::Code::kUnavailable: return 503;
    case Status::Code::kCorruption:
    case Status::Code::kIOError: return 500;
  }
  return 500;
}

HttpResponse ErrorFor(const Status& st) {
  return JsonError(HttpStatusFor(st), Status::CodeName(st.code()), st.message());
}

// Immutable, content-addressed representation headers shared by 200/206/304.
void SetCacheHeaders(HttpResponse& r, const Digest& digest) {
  r.Set("ETag", Quoted(digest));
  r.Set("Cache-Control", std::string(kImmutable));
  r.Set("Accept-Ranges", "bytes");
}

// Decides between 304, 416, 206 and 200 for a content-addressed object of
// `size` bytes. Returns the response to send without a body, and sets
// *first/*length to the byte range to send when a body is due.
HttpResponse PlanRepresentation(const HttpRequest& req, const Digest& digest, uint64_t size, uint64_t* first,
                                uint64_t* length) {
  HttpResponse r;
  SetCacheHeaders(r, digest);
  *first = 0;
  *length = size;
  if (std::string_view inm = req.Header("if-none-match"); !inm.empty() && IfNoneMatchHits(inm, Quoted(digest))) {
    r.status = 304;
    *length = 0;
    return r;
  }
  std::string_view range = req.Header("range");
  std::string_view if_range = req.Header("if-range");
  if (!range.empty() && (if_range.empty() || if_range == Quoted(digest))) {
    RangeRequest rr = InterpretRange(range, size);
    if (rr.kind == RangeRequest::Kind::kUnsatisfiable) {
      r = JsonError(416, "range_not_satisfiable", "range is outside the " + std::to_string(size) + " bytes");
      r.Set("Content-Range", "bytes */" + std::to_string(size));
      *length = 0;
      return r;
    }
    if (rr.kind == RangeRequest::Kind::kPartial) {
      r.status = 206;
      *first = rr.first;
      *length = rr.length;
      r.Set("Content-Range", "bytes " + std::to_string(rr.first) + "-" + std::to_string(rr.first + rr.length - 1) +
                                 "/" + std::to_string(size));
    }
  }
  r.Set("Content-Type", "application/octet-stream");
  return r;
}

bool IsHeadOrGet(const std::string& m) { return m == "GET" || m == "HEAD"; }

}  // namespace

struct Api::Route {
  std::string pattern;  // for metrics: "GET /v1/chunks/{digest}"
  std::vector<std::string> params;
};

Api::Api(Store& store, const Root& root, std::string publisher_token, Metrics& metrics, ApiLimits limits)
    : store_(store), root_(root), publisher_token_(std::move(publisher_token)), metrics_(metrics), limits_(limits) {}

uint64_t Api::BodyBytesMax(const HttpRequest& head) const {
  if (head.method == "PUT" && head.target.starts_with("/v1/chunks/")) return kChunkBytesMax;
  if (head.method == "POST" && head.target.starts_with("/v1/models/")) return kManifestJsonBytesMax * 2;
  if (head.method == "POST") return limits_.json_body_bytes_max;
  return 0;
}

// Maps a request to its route pattern; unknown paths get an empty pattern.
static std::string RoutePattern(const HttpRequest& req, const std::vector<std::string>& s) {
  const std::string& m = req.method;
  auto is = [&](std::initializer_list<const char*> want) {
    if (s.size() != want.size()) return false;
    size_t i = 0;
    for (const char* w : want) {
      if (*w != '{' && s[i] != w) return false;
      ++i;
    }
    return true;
  };
  std::string verb = m == "HEAD" ? "GET" : m;
  if (IsHeadOrGet(m) && is({"healthz"})) return "GET /healthz";
  if (IsHeadOrGet(m) && is({"readyz"})) return "GET /readyz";
  if (IsHeadOrGet(m) && is({"metrics"})) return "GET /metrics";
  if (IsHeadOrGet(m) && is({"v1", "models"})) return "GET /v1/models";
  if (IsHeadOrGet(m) && is({"v1", "models", "{", "versions"})) return "GET /v1/models/{model}/versions";
  if (IsHeadOrGet(m) && is({"v1", "models", "{", "versions", "{"})) return "GET /v1/models/{model}/versions/{version}";
  if (m == "POST" && is({"v1", "models", "{", "versions"})) return "POST /v1/models/{model}/versions";
  if (m == "POST" && is({"v1", "chunks", "missing"})) return "POST /v1/chunks/missing";
  if (IsHeadOrGet(m) && is({"v1", "chunks", "{"})) return "GET /v1/chunks/{digest}";
  if (m == "PUT" && is({"v1", "chunks", "{"})) return "PUT /v1/chunks/{digest}";
  if (IsHeadOrGet(m) && is({"v1", "artifacts", "{"})) return "GET /v1/artifacts/{digest}";
  return "";
}

HttpResponse Api::Handle(const HttpRequest& req) {
  Result<ParsedTarget> target = ParseTarget(req.target);
  if (!target.ok()) return JsonError(400, "bad_request", target.status().message());
  const std::vector<std::string>& s = target->segments;
  Route route{RoutePattern(req, s), {}};
  if (route.pattern.empty()) {
    // Tell a wrong method from an unknown path.
    HttpRequest get = req;
    get.method = "GET";
    for (const char* m : {"GET", "POST", "PUT"}) {
      get.method = m;
      if (!RoutePattern(get, s).empty()) return JsonError(405, "method_not_allowed", req.method + " is not allowed here");
    }
    return JsonError(404, "not_found", "no such route");
  }
  route.params = s;
  HttpResponse r = Dispatch(req, route);
  if (req.method == "HEAD") r.head_only = true;
  return r;
}

HttpResponse Api::Dispatch(const HttpRequest& req, const Route& route) {
  const std::string& p = route.pattern;
  const auto& s = route.params;
  if (p == "GET /healthz") return JsonOk(200, {{"status", "ok"}});
  if (p == "GET /readyz") {
    return ready_ ? JsonOk(200, {{"status", "ready"}}) : JsonError(503, "unavailable", "shutting down");
  }
  if (p == "GET /metrics") return RenderMetrics();
  if (p == "GET /v1/models") return ListModels();
  if (p == "GET /v1/models/{model}/versions") return ListVersions(s[2]);
  if (p == "GET /v1/models/{model}/versions/{version}") return GetVersion(s[2], s[4]);
  if (p == "GET /v1/chunks/{digest}") return GetChunk(req, s[2]);
  if (p == "GET /v1/artifacts/{digest}") return GetArtifact(req, s[2]);
  if (auto denied = CheckPublisher(req)) return *denied;
  if (p == "POST /v1/models/{model}/versions") return CommitVersion(req, s[2]);
  if (p == "POST /v1/chunks/missing") return MissingChunks(req);
  if (p == "PUT /v1/chunks/{digest}") return PutChunk(req, s[2]);
  return JsonError(404, "not_found", "no such route");
}

void Api::Completed(const HttpRequest& req, int status, uint64_t body_bytes_sent) {
  std::string pattern;
  if (Result<ParsedTarget> t = ParseTarget(req.target); t.ok()) pattern = RoutePattern(req, t->segments);
  metrics_.CountRequest(pattern.empty() ? "other" : pattern, status, body_bytes_sent);
}

std::optional<HttpResponse> Api::CheckPublisher(const HttpRequest& req) const {
  std::string_view auth = req.Header("authorization");
  if (!auth.starts_with("Bearer ")) {
    HttpResponse r = JsonError(401, "unauthenticated", "publishing needs 'Authorization: Bearer <publisher token>'");
    r.Set("WWW-Authenticate", "Bearer");
    return r;
  }
  std::string_view token = auth.substr(7);
  bool match = token.size() == publisher_token_.size() &&
               CRYPTO_memcmp(token.data(), publisher_token_.data(), token.size()) == 0;
  if (!match) return JsonError(403, "permission_denied", "the token is not a publisher token");
  return std::nullopt;
}

HttpResponse Api::RenderMetrics() {
  StoreStats st = store_.Stats();
  HttpResponse r;
  r.body = metrics_.Render({{"meridian_store_chunks", st.chunks},
                            {"meridian_store_versions", st.versions},
                            {"meridian_store_disk_bytes", st.disk_bytes}});
  r.Set("Content-Type", "text/plain; version=0.0.4");
  return r;
}

HttpResponse Api::ListModels() {
  Result<std::vector<std::string>> models = store_.ListModels();
  if (!models.ok()) return ErrorFor(models.status());
  return JsonOk(200, {{"models", *models}});
}

HttpResponse Api::ListVersions(const std::string& model) {
  if (!IsValidModelName(model)) return JsonError(400, "invalid_argument", "invalid model name");
  Result<std::vector<std::string>> versions = store_.ListVersions(model);
  if (!versions.ok()) return ErrorFor(versions.status());
  return JsonOk(200, {{"model", model}, {"versions", *versions}});
}

HttpResponse Api::GetVersion(const std::string& model, const std::string& version) {
  if (!IsValidModelName(model)) return JsonError(400, "invalid_argument", "invalid model name");
  if (!IsValidVersion(version)) return JsonError(400, "invalid_argument", "invalid version (SemVer expected)");
  Result<std::string> env = store_.GetEnvelope(model, version);
  if (!env.ok()) return ErrorFor(env.status());
  HttpResponse r;
  r.body = std::move(*env);
  r.Set("Content-Type", "application/json");
  return r;
}

HttpResponse Api::GetChunk(const HttpRequest& req, const std::string& digest_text) {
  Result<Digest> digest = Digest::Parse(digest_text);
  if (!digest.ok()) return JsonError(400, "invalid_argument", digest.status().message());
  Result<Bytes> chunk = store_.GetChunk(*digest);
  if (!chunk.ok()) return ErrorFor(chunk.status());
  uint64_t first, length;
  HttpResponse r = PlanRepresentation(req, *digest, chunk->size(), &first, &length);
  if (r.status == 200 || r.status == 206) {
    r.body.assign(reinterpret_cast<const char*>(chunk->data()) + first, length);
  }
  return r;
}

HttpResponse Api::GetArtifact(const HttpRequest& req, const std::string& digest_text) {
  Result<Digest> digest = Digest::Parse(digest_text);
  if (!digest.ok()) return JsonError(400, "invalid_argument", digest.status().message());
  Result<Manifest> m = store_.FindArtifact(*digest);
  if (!m.ok()) return ErrorFor(m.status());
  uint64_t first, length;
  HttpResponse r = PlanRepresentation(req, *digest, m->size, &first, &length);
  if (r.status != 200 && r.status != 206) return r;

  // Stream chunk by chunk from the one holding `first`: never the whole file in memory.
  struct Cursor {
    std::vector<ChunkRef> chunks;
    size_t index = 0;
    uint64_t skip = 0;       // bytes to drop from the front of chunks[index]
    uint64_t remaining = 0;  // bytes still to send
  };
  auto cur = std::make_shared<Cursor>();
  cur->chunks = std::move(m->chunks);
  cur->remaining = length;
  uint64_t offset = 0;
  while (cur->index < cur->chunks.size() && offset + cur->chunks[cur->index].size <= first) {
    offset += cur->chunks[cur->index].size;
    ++cur->index;
  }
  cur->skip = first - offset;
  r.stream_bytes = length;
  r.stream = [this, cur]() -> Result<Bytes> {
    if (cur->remaining == 0 || cur->index >= cur->chunks.size()) return Status::InvalidArgument("stream finished");
    Result<Bytes> chunk = store_.GetChunk(cur->chunks[cur->index].digest);
    if (!chunk.ok()) return chunk.status();
    ++cur->index;
    Bytes piece(chunk->begin() + static_cast<ptrdiff_t>(cur->skip), chunk->end());
    cur->skip = 0;
    if (piece.size() > cur->remaining) piece.resize(cur->remaining);
    cur->remaining -= piece.size();
    return piece;
  };
  if (length == 0) r.stream = nullptr;
  return r;
}

HttpResponse Api::PutChunk(const HttpRequest& req, const std::string& digest_text) {
  Result<Digest> digest = Digest::Parse(digest_text);
  if (!digest.ok()) return JsonError(400, "invalid_argument", digest.status().message());
  if (req.body.empty()) return JsonError(400, "invalid_argument", "empty chunk");
  Result<bool> had = store_.HasChunk(*digest);
  if (!had.ok()) return ErrorFor(had.status());
  Status st = store_.PutChunk(*digest, AsBytes(req.body));
  if (st.code() == Status::Code::kCorruption) {
    return JsonError(422, "digest_mismatch", "chunk bytes do not hash to " + digest->ToString());
  }
  if (!st.ok()) return ErrorFor(st);
  if (!*had) metrics_.CountChunkStored();
  return JsonOk(*had ? 200 : 201, {{"digest", digest->ToString()}, {"size", req.body.size()}});
}

HttpResponse Api::MissingChunks(const HttpRequest& req) {
  nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("digests") || !j["digests"].is_array()) {
    return JsonError(400, "invalid_argument", "expected {\"digests\": [\"sha256:…\", …]}");
  }
  const auto& list = j["digests"];
  if (list.size() > limits_.missing_query_digests_max) {
    return JsonError(413, "too_many_digests",
                     "at most " + std::to_string(limits_.missing_query_digests_max) + " digests per query");
  }
  std::vector<Digest> digests;
  digests.reserve(list.size());
  for (const auto& d : list) {
    Result<Digest> parsed = d.is_string() ? Digest::Parse(d.get<std::string>()) : Status::InvalidArgument("");
    if (!parsed.ok()) return JsonError(400, "invalid_argument", "digests must be sha256:<64 hex> strings");
    digests.push_back(*parsed);
  }
  Result<std::vector<Digest>> missing = store_.MissingChunks(digests);
  if (!missing.ok()) return ErrorFor(missing.status());
  nlohmann::json out = nlohmann::json::array();
  for (const Digest& d : *missing) out.push_back(d.ToString());
  return JsonOk(200, {{"missing", out}});
}

HttpResponse Api::CommitVersion(const HttpRequest& req, const std::string& model) {
  if (!IsValidModelName(model)) return JsonError(400, "invalid_argument", "invalid model name");
  Result<Envelope> env = ParseEnvelope(req.body);
  if (!env.ok()) return JsonError(400, "invalid_argument", "body is not a DSSE envelope: " + env.status().message());
  Result<std::string> payload = VerifyPayload(root_, "release", kManifestPayloadType, *env);
  if (!payload.ok()) {
    if (payload.status().code() == Status::Code::kPermissionDenied) {
      return JsonError(403, "not_signed", "manifest is not signed by enough release keys: " + payload.status().message());
    }
    return JsonError(422, "invalid_envelope", payload.status().message());
  }
  Result<Manifest> m = ParseManifest(*payload);
  if (!m.ok()) return JsonError(422, "invalid_manifest", m.status().message());
  if (m->name != model) return JsonError(400, "invalid_argument", "manifest names model '" + m->name + "', URL names '" + model + "'");
  Status st = store_.CommitVersion(*m, req.body);
  if (st.code() == Status::Code::kFailedPrecondition) return JsonError(409, "missing_chunks", st.message());
  if (st.code() == Status::Code::kAlreadyExists) return JsonError(409, "version_exists", st.message());
  if (!st.ok()) return ErrorFor(st);
  return JsonOk(201, {{"model", m->name}, {"version", m->version}, {"digest", m->digest.ToString()}, {"size", m->size}});
}

}  // namespace meridian
