// The /v1 routes of meridiand: reads are open, publishing needs the publisher
// token, rollouts the operator token, terminal targets and reports the
// terminal token. Every name is validated before anything looks it up.
#include "daemon/api.h"

#include <openssl/crypto.h>

#include <charconv>
#include <set>

#include <fmt/format.h>
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

Api::Api(Store& store, const Root& root, ApiTokens tokens, Metrics& metrics, Rollouts& rollouts, DeltaService& deltas,
         ApiLimits limits)
    : store_(store),
      root_(root),
      tokens_(std::move(tokens)),
      metrics_(metrics),
      rollouts_(rollouts),
      deltas_(deltas),
      limits_(limits) {}

uint64_t Api::BodyBytesMax(const HttpRequest& head) const {
  if (head.method == "PUT" && head.target.starts_with("/v1/chunks/")) return kChunkBytesMax;
  if (head.method == "POST" && head.target.starts_with("/v1/models/")) return kParseEnvelopeBytesMax;
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
  if (IsHeadOrGet(m) && is({"v1", "deltas", "{", "{"})) return "GET /v1/deltas/{from}/{to}";
  if (IsHeadOrGet(m) && is({"v1", "deltas", "{", "{", "info"})) return "GET /v1/deltas/{from}/{to}/info";
  if (IsHeadOrGet(m) && is({"v1", "terminals", "{", "target"})) return "GET /v1/terminals/{id}/target";
  if (m == "POST" && is({"v1", "terminals", "{", "reports"})) return "POST /v1/terminals/{id}/reports";
  if (IsHeadOrGet(m) && is({"v1", "rollouts"})) return "GET /v1/rollouts";
  if (m == "POST" && is({"v1", "rollouts"})) return "POST /v1/rollouts";
  if (m == "POST" && is({"v1", "rollout-plans"})) return "POST /v1/rollout-plans";
  if (IsHeadOrGet(m) && is({"v1", "rollouts", "{"})) return "GET /v1/rollouts/{id}";
  if (IsHeadOrGet(m) && is({"v1", "rollouts", "{", "events"})) return "GET /v1/rollouts/{id}/events";
  if (m == "POST" && is({"v1", "rollouts", "{", "{"})) return "POST /v1/rollouts/{id}/{action}";
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
  if (p == "GET /v1/deltas/{from}/{to}") return GetDelta(req, s[2], s[3], /*info=*/false);
  if (p == "GET /v1/deltas/{from}/{to}/info") return GetDelta(req, s[2], s[3], /*info=*/true);
  if (p.starts_with("GET /v1/terminals/") || p.starts_with("POST /v1/terminals/")) {
    if (auto denied = CheckBearer(req, tokens_.terminal, "terminal")) return *denied;
    if (p == "GET /v1/terminals/{id}/target") return TerminalTarget(req, s[2]);
    return TerminalReport(req, s[2]);
  }
  if (p.find(" /v1/rollout") != std::string::npos) {
    if (auto denied = CheckBearer(req, tokens_.operator_token, "operator")) return *denied;
    if (p == "GET /v1/rollouts") return ListRollouts();
    if (p == "POST /v1/rollouts") return StartRollout(req);
    if (p == "POST /v1/rollout-plans") return PlanRollout(req);
    if (p == "GET /v1/rollouts/{id}") return GetRollout(s[2]);
    if (p == "GET /v1/rollouts/{id}/events") return RolloutEvents(s[2]);
    return ActOnRollout(req, s[2], s[3]);
  }
  if (auto denied = CheckBearer(req, tokens_.publisher, "publisher")) return *denied;
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

std::optional<HttpResponse> Api::CheckBearer(const HttpRequest& req, const std::string& want,
                                             std::string_view role) const {
  std::string_view auth = req.Header("authorization");
  if (!auth.starts_with("Bearer ")) {
    HttpResponse r = JsonError(401, "unauthenticated", fmt::format("this route needs 'Authorization: Bearer <{} token>'", role));
    r.Set("WWW-Authenticate", "Bearer");
    return r;
  }
  std::string_view token = auth.substr(7);
  bool match = !want.empty() && token.size() == want.size() && CRYPTO_memcmp(token.data(), want.data(), token.size()) == 0;
  if (!match) return JsonError(403, "permission_denied", fmt::format("the token is not a {} token", role));
  return std::nullopt;
}

HttpResponse Api::RenderMetrics() {
  StoreStats st = store_.Stats();
  HttpResponse r;
  r.body = metrics_.Render({{"meridian_store_chunks", st.chunks},
                            {"meridian_store_versions", st.versions},
                            {"meridian_store_disk_bytes", st.disk_bytes},
                            {"meridian_target_waiting", rollouts_.notifier().waiting()}});
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
  return StreamChunks(req, *digest, std::move(m->chunks), m->size);
}

HttpResponse Api::StreamChunks(const HttpRequest& req, const Digest& digest, std::vector<ChunkRef> chunks,
                               uint64_t size) {
  uint64_t first, length;
  HttpResponse r = PlanRepresentation(req, digest, size, &first, &length);
  if (r.status != 200 && r.status != 206) return r;

  // Stream chunk by chunk from the one holding `first`: never the whole file in memory.
  struct Cursor {
    std::vector<ChunkRef> chunks;
    size_t index = 0;
    uint64_t skip = 0;       // bytes to drop from the front of chunks[index]
    uint64_t remaining = 0;  // bytes still to send
  };
  auto cur = std::make_shared<Cursor>();
  cur->chunks = std::move(chunks);
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

// The delta between two artifacts: its signed descriptor (`info`) or its
// bytes. Not computed yet: 409 delta_pending (queued; retry, or download the
// artifact). Not worth it: the descriptor says so and the bytes are 404.
HttpResponse Api::GetDelta(const HttpRequest& req, const std::string& from_text, const std::string& to_text,
                           bool info) {
  Result<Digest> from = Digest::Parse(from_text);
  Result<Digest> to = Digest::Parse(to_text);
  if (!from.ok() || !to.ok()) return JsonError(400, "invalid_argument", "digests must be sha256:<64 hex>");
  Result<DeltaRecord> record = deltas_.FindOrQueue(*from, *to);
  if (!record.ok()) {
    if (record.status().code() == Status::Code::kFailedPrecondition) {
      HttpResponse r = JsonError(409, "delta_pending", record.status().message());
      r.Set("Retry-After", "2");
      return r;
    }
    if (record.status().code() == Status::Code::kResourceExhausted) {
      HttpResponse r = JsonError(503, "delta_queue_full", record.status().message());
      r.Set("Retry-After", "10");
      return r;
    }
    return ErrorFor(record.status());
  }
  if (info) {
    HttpResponse r;
    r.body = deltas_.SignedInfo(record->info);
    r.Set("Content-Type", "application/json");
    return r;
  }
  if (!record->info.worthwhile) return JsonError(404, "delta_not_worthwhile", record->info.reason);
  return StreamChunks(req, record->info.digest, std::move(record->chunks), record->info.size);
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
  deltas_.QueueForNewVersion(*m);
  return JsonOk(201, {{"model", m->name}, {"version", m->version}, {"digest", m->digest.ToString()}, {"size", m->size}});
}

}  // namespace meridian

// ---------------------------------------------------------------------------
// Terminals and rollouts

namespace meridian {

namespace {

nlohmann::json RolloutSummaryJson(const Rollout& r) {
  const RolloutSpec& s = r.spec();
  return {{"id", s.id},
          {"model", s.model},
          {"channel", s.channel},
          {"target_version", s.target_version},
          {"previous_version", s.previous_version},
          {"regions", s.regions},
          {"stages_percent", s.stages_percent},
          {"phase", PhaseName(r.state().phase)},
          {"stage", r.state().stage},
          {"updated_ms", r.state().updated_ms}};
}

// Who acts: the X-Meridian-Actor header (the CLI sends the user name), or
// "operator". The operator token is shared, so this is a label, not a proof.
std::string ActorOf(const HttpRequest& req) {
  std::string_view a = req.Header("x-meridian-actor");
  if (a.empty()) return "operator";
  return std::string(a.substr(0, kRolloutActorBytesMax));
}

bool ValidOptionalName(const std::optional<std::string>& v) { return !v || v->empty() || IsValidRegionOrProfile(*v); }

}  // namespace

HttpResponse Api::TerminalTarget(const HttpRequest& req, const std::string& terminal_id) {
  std::string query = ParseTarget(req.target)->query;
  std::optional<std::string> model = QueryParam(query, "model"), channel = QueryParam(query, "channel"),
                             current = QueryParam(query, "current"), profile = QueryParam(query, "profile"),
                             region = QueryParam(query, "region"), wait = QueryParam(query, "wait"),
                             known = QueryParam(query, "known");
  if (!IsValidTerminalId(terminal_id)) return JsonError(400, "invalid_argument", "invalid terminal id");
  if (!model || !IsValidModelName(*model)) return JsonError(400, "invalid_argument", "model=NAME is required");
  if (!ValidOptionalName(channel) || !ValidOptionalName(profile) || !ValidOptionalName(region)) {
    return JsonError(400, "invalid_argument", "invalid channel, profile or region");
  }
  if (current && !current->empty() && !IsValidVersion(*current)) {
    return JsonError(400, "invalid_argument", "current must be a SemVer version");
  }
  uint64_t wait_s = 0, known_version = 0;
  auto parse_u64 = [](const std::string& text, uint64_t* out) {
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return ec == std::errc() && p == text.data() + text.size();
  };
  if (wait && (!parse_u64(*wait, &wait_s) || wait_s > limits_.target_wait_seconds_max)) {
    return JsonError(400, "invalid_argument",
                     fmt::format("wait must be whole seconds in [0, {}]", limits_.target_wait_seconds_max));
  }
  if (known && !parse_u64(*known, &known_version)) {
    return JsonError(400, "invalid_argument", "known must be a state version");
  }
  std::string channel_name = channel && !channel->empty() ? *channel : "stable";
  TerminalInfo info{terminal_id, profile.value_or(""), region.value_or(""), current.value_or("")};
  // Read before looking at the state, so that a change right after the look still wakes this request.
  uint64_t generation = rollouts_.notifier().generation();
  Result<TargetAnswer> a = rollouts_.Target(*model, channel_name, info);
  if (!a.ok()) return ErrorFor(a.status());
  if (wait_s > 0 && known && a->state_version <= known_version && !req.wait_expired) {
    HttpResponse r;
    r.defer = HttpDeferral{&rollouts_.notifier(), generation, std::chrono::seconds(wait_s)};
    return r;
  }
  nlohmann::json j = {{"terminal", terminal_id},
                      {"model", *model},
                      {"channel", channel_name},
                      {"state_version", a->state_version},
                      {"version", a->target.version},
                      {"manifest_digest", a->target.ref.manifest_digest},
                      {"digest", a->target.ref.digest},
                      {"size", a->target.ref.size},
                      {"rollout", a->target.rollout},
                      {"reason", a->target.reason}};
  // The signed state goes in verbatim (it is JSON already): no re-encoding per request.
  std::string body = j.dump();
  body.pop_back();
  body += ",\"state\":" + a->envelope_json + "}";
  HttpResponse r;
  r.body = std::move(body);
  r.Set("Content-Type", "application/json");
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::TerminalReport(const HttpRequest& req, const std::string& terminal_id) {
  if (!IsValidTerminalId(terminal_id)) return JsonError(400, "invalid_argument", "invalid terminal id");
  nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return JsonError(400, "invalid_argument", "body must be a JSON object");
  static const std::set<std::string> kFields = {"model", "version", "channel", "rollout", "stage", "event",
                                                "reason", "health", "profile", "region"};
  for (const auto& item : j.items()) {
    if (!kFields.count(item.key())) return JsonError(400, "invalid_argument", "unknown field '" + item.key() + "'");
  }
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto it = j.find(key);
    if (it == j.end()) return std::string();
    if (!it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  std::optional<std::string> model = str("model"), version = str("version"), channel = str("channel"),
                             rollout = str("rollout"), event = str("event"), reason = str("reason"),
                             profile = str("profile"), region = str("region");
  if (!model || !version || !channel || !rollout || !event || !reason || !profile || !region) {
    return JsonError(400, "invalid_argument", "model, version, channel, rollout, event, reason, profile and region must be strings");
  }
  if (!IsValidModelName(*model)) return JsonError(400, "invalid_argument", "model is required");
  if (!rollout->empty() && !IsValidRolloutId(*rollout)) return JsonError(400, "invalid_argument", "invalid rollout id");
  if (!ValidOptionalName(*channel)) return JsonError(400, "invalid_argument", "invalid channel");
  meridian::TerminalReport r;
  r.terminal_id = terminal_id;
  r.profile = *profile;
  r.region = *region;
  r.version = *version;
  r.reason = *reason;
  bool pass = true;
  if (auto h = j.find("health"); h != j.end()) {
    if (!h->is_object()) return JsonError(400, "invalid_argument", "health must be an object");
    for (const auto& item : h->items()) {
      if (item.key() == "pass") {
        if (!item.value().is_boolean()) return JsonError(400, "invalid_argument", "health.pass must be true or false");
        pass = item.value().get<bool>();
      } else if (item.value().is_number() && r.health.size() < kReportHealthEntriesMax) {
        r.health[item.key()] = item.value().get<double>();
      } else {
        return JsonError(400, "invalid_argument",
                         fmt::format("health.{} must be a number (at most {})", item.key(), kReportHealthEntriesMax));
      }
    }
  }
  // Only an install result judges a version; download and verify steps are progress.
  bool verdict = *event == "installed" || *event == "failed";
  if (!verdict && *event != "downloaded" && *event != "verified") {
    return JsonError(400, "invalid_argument", "event must be downloaded, verified, installed or failed");
  }
  r.outcome = *event == "failed" || !pass ? ReportOutcome::kFailure : ReportOutcome::kSuccess;
  if (Status st = ValidateReport(r); !st.ok()) return ErrorFor(st);
  bool counted = false;
  if (verdict) {
    Result<bool> c = rollouts_.Report(*rollout, *model, channel->empty() ? "stable" : *channel, std::move(r));
    if (!c.ok()) return ErrorFor(c.status());
    counted = *c;
  }
  return JsonOk(202, {{"counted", counted}});
}

HttpResponse Api::StartRollout(const HttpRequest& req) {
  Result<RolloutSpec> spec = ParseRolloutSpecJson(req.body);
  if (!spec.ok()) return ErrorFor(spec.status());
  Result<Rollout> r = rollouts_.Start(std::move(*spec), ActorOf(req), "");
  if (!r.ok()) return ErrorFor(r.status());
  return GetRollout(r->spec().id, 201);
}

HttpResponse Api::PlanRollout(const HttpRequest& req) {
  Result<RolloutSpec> spec = ParseRolloutSpecJson(req.body);
  if (!spec.ok()) return ErrorFor(spec.status());
  // A terminal on a version with a computed, worthwhile delta to the target
  // downloads that delta; any other downloads the artifact. Missing deltas are
  // queued, so a second plan shows them.
  const std::string model = spec->model;
  Result<Manifest> target = store_.GetManifest(model, spec->target_version);
  auto download_bytes = [&](const std::string& current_version) -> uint64_t {
    if (!target.ok()) return 0;
    Result<Manifest> from = current_version.empty() ? Result<Manifest>(Status::NotFound(""))
                                                    : store_.GetManifest(model, current_version);
    if (!from.ok()) return target->size;
    Result<DeltaRecord> d = deltas_.FindOrQueue(from->digest, target->digest);
    return d.ok() && d->info.worthwhile ? d->info.size : target->size;
  };
  Result<RolloutPlan> plan = rollouts_.Plan(std::move(*spec), download_bytes);
  if (!plan.ok()) return ErrorFor(plan.status());
  nlohmann::json stages = nlohmann::json::array();
  for (size_t k = 0; k < plan->eligible.size(); ++k) {
    stages.push_back({{"stage", k},
                      {"percent", plan->spec.stages_percent[k]},
                      {"eligible", plan->eligible[k]},
                      {"full_download_bytes", plan->full_download_bytes[k]},
                      {"delta_download_bytes", plan->delta_download_bytes[k]}});
  }
  return JsonOk(200, {{"spec", nlohmann::json::parse(RolloutSpecToJson(plan->spec))},
                      {"target_bytes", plan->target_bytes},
                      {"stages", stages}});
}

HttpResponse Api::ListRollouts() {
  nlohmann::json list = nlohmann::json::array();
  for (const Rollout& r : rollouts_.List()) list.push_back(RolloutSummaryJson(r));
  return JsonOk(200, {{"rollouts", list}});
}

HttpResponse Api::GetRollout(const std::string& id, int status) {
  Result<Rollout> r = rollouts_.Get(id);
  if (!r.ok()) return ErrorFor(r.status());
  Result<std::vector<StageRow>> rows = rollouts_.Stages(id);
  if (!rows.ok()) return ErrorFor(rows.status());
  nlohmann::json stages = nlohmann::json::array();
  for (size_t k = 0; k < rows->size(); ++k) {
    const StageRow& row = (*rows)[k];
    stages.push_back({{"stage", k},
                      {"percent", row.percent},
                      {"eligible", row.eligible},
                      {"updated", row.updated},
                      {"failed", row.failed},
                      {"healthy", row.healthy},
                      {"gate", row.gate}});
  }
  return JsonOk(status, {{"id", id},
                         {"spec", nlohmann::json::parse(RolloutSpecToJson(r->spec()))},
                         {"state", nlohmann::json::parse(RolloutStateToJson(r->state()))},
                         {"stages", stages}});
}

HttpResponse Api::ActOnRollout(const HttpRequest& req, const std::string& id, const std::string& action_name) {
  Result<RolloutAction> action = ParseRolloutAction(action_name);
  if (!action.ok() || *action == RolloutAction::kStart) return JsonError(404, "not_found", "no such rollout action");
  std::string reason;
  if (!req.body.empty()) {
    nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || (j.contains("reason") && !j["reason"].is_string()) ||
        j.size() > (j.contains("reason") ? 1u : 0u)) {
      return JsonError(400, "invalid_argument", "body must be {\"reason\":\"…\"} or empty");
    }
    reason = j.value("reason", "");
  }
  Result<Rollout> r = rollouts_.Act(id, *action, ActorOf(req), reason);
  if (!r.ok()) return ErrorFor(r.status());
  return GetRollout(id);
}

HttpResponse Api::RolloutEvents(const std::string& id) {
  Result<Rollout> r = rollouts_.Get(id);
  if (!r.ok()) return ErrorFor(r.status());
  nlohmann::json events = nlohmann::json::array();
  for (const RolloutEvent& e : r->events()) events.push_back(nlohmann::json::parse(RolloutEventToJson(e)));
  return JsonOk(200, {{"id", id}, {"events", events}});
}

}  // namespace meridian
