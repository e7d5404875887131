// The /v1 routes of meridiand: reads are open, publishing needs the publisher
// token, rollouts the operator token, terminal targets and reports the
// terminal token. Every name is validated before anything looks it up.
#include "daemon/api.h"

#include <openssl/crypto.h>

#include <charconv>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/json.h"
#include "manifest/manifest.h"
#include "trust/trust.h"

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

}  // namespace

Api::Api(Store& store, const Root& root, ApiTokens tokens, Metrics& metrics, Rollouts& rollouts, DeltaService& deltas,
         ApiLimits limits)
    : store_(store),
      root_(root),
      tokens_(std::move(tokens)),
      metrics_(metrics),
      rollouts_(rollouts),
      deltas_(deltas),
      limits_(limits) {
  routes_ = BuildRoutes();
  LoadRegionsSeen();
}

void Api::ServeAsRegion(std::string region, ReportOutbox& outbox, Follower& follower) {
  region_ = std::move(region);
  outbox_ = &outbox;
  follower_ = &follower;
  routes_ = BuildRoutes();
}

RouteTable Api::BuildRoutes() {
  RouteTable t;
  const bool origin = region_.empty();
  const uint64_t json = limits_.json_body_bytes_max;
  auto add = [&](const char* method, const char* pattern, CallerRole role, uint64_t body_bytes_max, const char* summary,
                 std::function<HttpResponse(const HttpRequest&)> handler) {
    t.Add(Route{method, pattern, role, body_bytes_max, std::move(handler), summary});
  };
  // Releases and rollouts are made at the origin; a region only replicates
  // them, and refuses these routes on the head.
  auto origin_only = [&](const char* method, const char* pattern, CallerRole role, uint64_t body_bytes_max,
                         const char* summary, std::function<HttpResponse(const HttpRequest&)> handler) {
    if (origin) return add(method, pattern, role, body_bytes_max, summary, std::move(handler));
    add(method, pattern, CallerRole::kNobody, 0, summary, [this](const HttpRequest&) {
      return JsonError(403, "region_read_only",
                       fmt::format("this daemon is region '{}': publish and control rollouts at the origin", region_));
    });
  };
  const CallerRole anyone = CallerRole::kAnyone, publisher = CallerRole::kPublisher, op = CallerRole::kOperator, terminal = CallerRole::kTerminal,
             mirror = CallerRole::kMirror;

  add("GET", "/healthz", anyone, 0, "200 while the process serves", [](const HttpRequest&) {
    return JsonOk(200, {{"status", "ok"}});
  });
  add("GET", "/readyz", anyone, 0, "200 when ready; 503 while shutting down or while the store cannot write",
      [this](const HttpRequest&) {
        if (!ready_) return JsonError(503, "unavailable", "shutting down");
        std::lock_guard lock(store_fault_mu_);
        if (!store_fault_.empty()) return JsonError(503, "store_unavailable", store_fault_);
        return JsonOk(200, {{"status", "ready"}});
      });
  add("GET", "/metrics", anyone, 0, "Prometheus text", [this](const HttpRequest&) { return RenderMetrics(); });
  add("GET", "/v1/models", anyone, 0, "model names", [this](const HttpRequest&) { return ListModels(); });
  add("GET", "/v1/models/{model}/versions", anyone, 0, "a model's versions in SemVer order",
      [this](const HttpRequest& r) { return ListVersions(r.params[0]); });
  add("GET", "/v1/models/{model}/versions/{version}", anyone, 0, "the signed manifest envelope",
      [this](const HttpRequest& r) { return GetVersion(r.params[0], r.params[1]); });
  origin_only("POST", "/v1/models/{model}/versions", publisher, kParseEnvelopeBytesMax,
              "commit a signed manifest whose chunks are stored",
              [this](const HttpRequest& r) { return CommitVersion(r, r.params[0]); });
  origin_only("POST", "/v1/chunks/missing", publisher, json, "which of these chunks are not stored",
              [this](const HttpRequest& r) { return MissingChunks(r); });
  add("GET", "/v1/chunks/{digest}", anyone, 0, "a chunk's bytes",
      [this](const HttpRequest& r) { return GetChunk(r, r.params[0]); });
  origin_only("PUT", "/v1/chunks/{digest}", publisher, kChunkBytesMax, "upload a chunk",
              [this](const HttpRequest& r) { return PutChunk(r, r.params[0]); });
  add("GET", "/v1/artifacts/{digest}", anyone, 0, "a whole artifact, streamed",
      [this](const HttpRequest& r) { return GetArtifact(r, r.params[0]); });
  add("GET", "/v1/deltas/{from}/{to}", anyone, 0, "a delta's bytes, streamed",
      [this](const HttpRequest& r) { return GetDelta(r, r.params[0], r.params[1], /*info=*/false); });
  add("GET", "/v1/deltas/{from}/{to}/info", anyone, 0, "a delta's signed descriptor",
      [this](const HttpRequest& r) { return GetDelta(r, r.params[0], r.params[1], /*info=*/true); });
  add("GET", "/v1/terminals/{id}/target", terminal, 0, "what a terminal should run (long poll)",
      [this](const HttpRequest& r) { return TerminalTarget(r, r.params[0]); });
  // The origin counts reports; a region forwards them to its upstream.
  add("POST", "/v1/terminals/{id}/reports", terminal, json, "a terminal's install or health report",
      [this, origin](const HttpRequest& r) {
        return origin ? TerminalReport(r, r.params[0]) : ForwardTerminalReport(r, r.params[0]);
      });
  origin_only("GET", "/v1/rollouts", op, 0, "rollouts, oldest first", [this](const HttpRequest&) { return ListRollouts(); });
  origin_only("POST", "/v1/rollouts", op, json, "start a rollout", [this](const HttpRequest& r) { return StartRollout(r); });
  origin_only("POST", "/v1/rollout-plans", op, json, "what a rollout would do, per stage",
              [this](const HttpRequest& r) { return PlanRollout(r); });
  origin_only("GET", "/v1/rollouts/{id}", op, 0, "a rollout with its stages and regions",
              [this](const HttpRequest& r) { return GetRollout(r.params[0]); });
  origin_only("GET", "/v1/rollouts/{id}/events", op, 0, "a rollout's audit events",
              [this](const HttpRequest& r) { return RolloutEvents(r.params[0]); });
  origin_only("POST", "/v1/rollouts/{id}/{action}", op, json, "promote, pause, resume, abort or rollback",
              [this](const HttpRequest& r) { return ActOnRollout(r, r.params[0], r.params[1]); });
  add("GET", "/v1/sync", mirror, 0, "what a region downstream should hold (long poll)",
      [this](const HttpRequest& r) { return Sync(r); });
  add("POST", "/v1/reports", mirror, json, "reports forwarded by a region downstream",
      [this, origin](const HttpRequest& r) { return origin ? ForwardedReports(r) : RelayForwardedReports(r); });
  add("GET", "/v1/regions", op, 0, "the regions following this daemon", [this](const HttpRequest&) { return ListRegions(); });
  return t;
}

void Api::SetStoreFault(std::string reason) {
  std::lock_guard lock(store_fault_mu_);
  store_fault_ = std::move(reason);
}

HttpAdmission Api::Admit(HttpRequest& head) {
  Result<ParsedTarget> target = ParseTarget(head.target);
  if (!target.ok()) return {JsonError(400, "bad_request", target.status().message())};
  Result<const Route*> route = routes_.Find(head.method, target->segments, &head.params);
  if (!route.ok()) {
    if (route.status().code() == Status::Code::kFailedPrecondition) {
      return {JsonError(405, "method_not_allowed", route.status().message())};
    }
    return {JsonError(404, "not_found", route.status().message())};
  }
  head.route = *route;
  head.query = std::move(target->query);
  if ((*route)->role == CallerRole::kNobody) return {(*route)->handler(head)};
  if (std::optional<HttpResponse> denied = CheckBearer(head, (*route)->role)) return {std::move(denied)};
  return {std::nullopt, (*route)->body_bytes_max};
}

HttpResponse Api::Handle(const HttpRequest& req) {
  HttpResponse r = req.route->handler(req);
  if (req.method == "HEAD") r.head_only = true;
  return r;
}

void Api::Completed(const HttpRequest& req, int status, uint64_t body_bytes_sent) {
  metrics_.CountRequest(req.route != nullptr ? req.route->Label() : "other", status, body_bytes_sent);
}

const std::string& Api::TokenOf(CallerRole role) const {
  static const std::string kNone;
  switch (role) {
    case CallerRole::kPublisher: return tokens_.publisher;
    case CallerRole::kOperator: return tokens_.operator_token;
    case CallerRole::kTerminal: return tokens_.terminal;
    case CallerRole::kMirror: return tokens_.mirror;
    case CallerRole::kAnyone:
    case CallerRole::kNobody: break;
  }
  return kNone;
}

std::optional<HttpResponse> Api::CheckBearer(const HttpRequest& req, CallerRole role) const {
  if (role == CallerRole::kAnyone) return std::nullopt;
  std::string_view auth = req.Header("authorization");
  if (!auth.starts_with("Bearer ")) {
    HttpResponse r = JsonError(401, "unauthenticated",
                               fmt::format("this route needs 'Authorization: Bearer <{} token>'", RoleName(role)));
    r.Set("WWW-Authenticate", "Bearer");
    return r;
  }
  std::string_view token = auth.substr(7);
  const std::string& want = TokenOf(role);
  bool match = !want.empty() && token.size() == want.size() && CRYPTO_memcmp(token.data(), want.data(), token.size()) == 0;
  if (!match) return JsonError(403, "permission_denied", fmt::format("this route needs a {} token; the one given is not", RoleName(role)));
  return std::nullopt;
}

HttpResponse Api::RenderMetrics() {
  StoreStats st = store_.Stats();
  std::map<std::string, uint64_t> gauges = {{"meridian_store_chunks", st.chunks},
                                            {"meridian_store_versions", st.versions},
                                            {"meridian_store_disk_bytes", st.disk_bytes},
                                            {"meridian_store_manifest_parses", st.manifest_parses},
                                            {"meridian_store_manifest_cache_bytes", st.manifest_cache_bytes},
                                            {"meridian_target_waiting", rollouts_.notifier().waiting()},
                                            {"meridian_delta_jobs", deltas_.jobs()}};
  if (outbox_ != nullptr) {
    ReportOutbox::Stats o = outbox_->stats();
    gauges["meridian_outbox_pending"] = o.pending;
    gauges["meridian_reports_forwarded"] = o.forwarded;
    FollowerStatus f = follower_->status();
    gauges["meridian_upstream_reachable"] = f.upstream_ok ? 1 : 0;
    gauges["meridian_upstream_sync_version"] = f.sync_version;
  }
  HttpResponse r;
  r.body = metrics_.Render(gauges);
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
  Result<std::shared_ptr<const Manifest>> m = store_.FindArtifact(*digest);
  if (!m.ok()) return ErrorFor(m.status());
  // Shares the cached manifest's chunk list: a Range request copies nothing.
  return StreamChunks(req, *digest, std::shared_ptr<const std::vector<ChunkRef>>(*m, &(*m)->chunks), (*m)->size);
}

HttpResponse Api::StreamChunks(const HttpRequest& req, const Digest& digest,
                               std::shared_ptr<const std::vector<ChunkRef>> chunks, uint64_t size) {
  uint64_t first, length;
  HttpResponse r = PlanRepresentation(req, digest, size, &first, &length);
  if (r.status != 200 && r.status != 206) return r;

  // Stream chunk by chunk from the one holding `first`: never the whole file in memory.
  struct Cursor {
    std::shared_ptr<const std::vector<ChunkRef>> chunks;
    size_t index = 0;
    uint64_t skip = 0;       // bytes to drop from the front of chunks[index]
    uint64_t remaining = 0;  // bytes still to send
  };
  auto cur = std::make_shared<Cursor>();
  cur->chunks = std::move(chunks);
  cur->remaining = length;
  uint64_t offset = 0;
  const std::vector<ChunkRef>& list = *cur->chunks;
  while (cur->index < list.size() && offset + list[cur->index].size <= first) {
    offset += list[cur->index].size;
    ++cur->index;
  }
  cur->skip = first - offset;
  r.stream_bytes = length;
  r.stream = [this, cur]() -> Result<Bytes> {
    if (cur->remaining == 0 || cur->index >= cur->chunks->size()) return Status::InvalidArgument("stream finished");
    Result<Bytes> chunk = store_.GetChunk((*cur->chunks)[cur->index].digest);
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
    r.body = deltas_.SignedInfo(*record);
    r.Set("Content-Type", "application/json");
    return r;
  }
  if (!record->info.worthwhile) return JsonError(404, "delta_not_worthwhile", record->info.reason);
  return StreamChunks(req, record->info.digest, std::make_shared<const std::vector<ChunkRef>>(std::move(record->chunks)),
                      record->info.size);
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
  Result<nlohmann::json> parsed = ParseJson(req.body, limits_.json_body_bytes_max);
  if (!parsed.ok()) return ErrorFor(parsed.status());
  const nlohmann::json& j = *parsed;
  if (!j.is_object() || !j.contains("digests") || !j["digests"].is_array()) {
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
    Result<Digest> digest = d.is_string() ? Digest::Parse(d.get<std::string>()) : Status::InvalidArgument("");
    if (!digest.ok()) return JsonError(400, "invalid_argument", "digests must be sha256:<64 hex> strings");
    digests.push_back(*digest);
  }
  Result<std::vector<Digest>> missing = store_.MissingChunks(digests);
  if (!missing.ok()) return ErrorFor(missing.status());
  nlohmann::json out = nlohmann::json::array();
  for (const Digest& d : *missing) out.push_back(d.ToString());
  return JsonOk(200, {{"missing", out}});
}

HttpResponse Api::CommitVersion(const HttpRequest& req, const std::string& model) {
  if (!IsValidModelName(model)) return JsonError(400, "invalid_argument", "invalid model name");
  Result<VerifiedManifest> verified = VerifySignedManifest(root_, req.body);
  const Status& trust = verified.status();
  if (trust.code() == Status::Code::kInvalidArgument) return JsonError(400, "invalid_argument", trust.message());
  if (trust.code() == Status::Code::kPermissionDenied) {
    return JsonError(403, "not_signed", "manifest is not signed by enough release keys: " + trust.message());
  }
  if (!trust.ok()) return JsonError(422, "invalid_manifest", trust.message());
  const Manifest& m = verified->manifest();
  if (Status named = verified->CheckNames(model); !named.ok()) return JsonError(400, "invalid_argument", named.message());
  Result<bool> made_visible = store_.CommitVersion(*verified);
  const Status& st = made_visible.status();
  if (st.code() == Status::Code::kFailedPrecondition) return JsonError(422, "missing_chunks", st.message());
  if (st.code() == Status::Code::kInvalidArgument) return JsonError(422, "manifest_mismatch", st.message());
  if (st.code() == Status::Code::kAlreadyExists) return JsonError(409, "version_exists", st.message());
  if (!st.ok()) return ErrorFor(st);
  nlohmann::json answer = {{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()},
                           {"size", m.size}, {"already_published", !*made_visible}};
  if (!*made_visible) return JsonOk(200, answer);  // a retried publish: the first one stands
  deltas_.QueueForNewVersion(m);
  rollouts_.notifier().NotifyAll();  // regions long-poll for new versions
  return JsonOk(201, answer);
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
  const std::string& query = req.query;
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
  if (!region_.empty()) {
    // A region's daemon serves the terminals of its region, and decides
    // which region they are in.
    if (region && !region->empty() && *region != region_) {
      return JsonError(400, "wrong_region",
                       fmt::format("this daemon serves region '{}'; the terminal says '{}'", region_, *region));
    }
    region = region_;
  }
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
                      {"manifest_digest", a->target.ref.manifest_digest.ToString()},
                      {"digest", a->target.ref.digest.ToString()},
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

namespace {

// An agent's report (POST /v1/terminals/{id}/reports), checked: the same
// rules whether it arrives from the terminal or forwarded by a region.
struct AgentReport {
  std::string model;
  std::string channel;  // "stable" when the agent sent none
  std::string rollout;
  bool verdict = false;  // an install result (installed/failed), not progress (downloaded/verified)
  meridian::TerminalReport report;
};

Result<AgentReport> ParseAgentReport(const std::string& terminal_id, const nlohmann::json& j) {
  auto bad = [](std::string message) { return Status::InvalidArgument(std::move(message)); };
  if (!IsValidTerminalId(terminal_id)) return bad("invalid terminal id");
  if (!j.is_object()) return bad("body must be a JSON object");
  // An agent wrote it, maybe one newer than this daemon: what it adds is ignored.
  JsonFields f(j, "report", UnknownFields::kIgnore);
  AgentReport a;
  meridian::TerminalReport& r = a.report;
  std::string event;
  f.String("model", &a.model);
  f.String("version", &r.version);
  f.String("channel", &a.channel);
  f.String("rollout", &a.rollout);
  f.String("event", &event);
  f.String("reason", &r.reason);
  f.String("profile", &r.profile);
  f.String("region", &r.region);
  const nlohmann::json* health = f.Object("health");
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  if (!IsValidModelName(a.model)) return bad("model is required");
  if (!a.rollout.empty() && !IsValidRolloutId(a.rollout)) return bad("invalid rollout id");
  if (!ValidOptionalName(a.channel)) return bad("invalid channel");
  if (a.channel.empty()) a.channel = "stable";
  r.terminal_id = terminal_id;
  bool pass = true;
  if (health != nullptr) {
    for (const auto& item : health->items()) {
      if (item.key() == "pass") {
        if (!item.value().is_boolean()) return bad("health.pass must be true or false");
        pass = item.value().get<bool>();
      } else if (item.value().is_number() && r.health.size() < kReportHealthEntriesMax) {
        r.health[item.key()] = item.value().get<double>();
      } else {
        return bad(fmt::format("health.{} must be a number (at most {})", item.key(), kReportHealthEntriesMax));
      }
    }
  }
  // Only an install result judges a version; download and verify steps are progress.
  a.verdict = event == "installed" || event == "failed";
  if (!a.verdict && event != "downloaded" && event != "verified") {
    return bad("event must be downloaded, verified, installed or failed");
  }
  r.outcome = event == "failed" || !pass ? ReportOutcome::kFailure : ReportOutcome::kSuccess;
  MERIDIAN_RETURN_IF_ERROR(ValidateReport(r));
  return a;
}

}  // namespace

HttpResponse Api::TerminalReport(const HttpRequest& req, const std::string& terminal_id) {
  Result<nlohmann::json> parsed = ParseJson(req.body, limits_.json_body_bytes_max);
  if (!parsed.ok()) return ErrorFor(parsed.status());
  Result<AgentReport> a = ParseAgentReport(terminal_id, *parsed);
  if (!a.ok()) return ErrorFor(a.status());
  bool counted = false;
  if (a->verdict) {
    Result<bool> c = rollouts_.Report(a->rollout, a->model, a->channel, std::move(a->report));
    if (!c.ok()) return ErrorFor(c.status());
    counted = *c;
  }
  return JsonOk(202, {{"counted", counted}});
}

HttpResponse Api::ForwardTerminalReport(const HttpRequest& req, const std::string& terminal_id) {
  Result<nlohmann::json> parsed = ParseJson(req.body, limits_.json_body_bytes_max);
  if (!parsed.ok()) return ErrorFor(parsed.status());
  nlohmann::json& j = *parsed;
  Result<AgentReport> a = ParseAgentReport(terminal_id, j);
  if (!a.ok()) return ErrorFor(a.status());
  if (!a->report.region.empty() && a->report.region != region_) {
    return JsonError(400, "wrong_region",
                     fmt::format("this daemon serves region '{}'; the report says '{}'", region_, a->report.region));
  }
  if (!a->verdict) return JsonOk(202, {{"counted", false}});  // progress stays here
  j["region"] = region_;
  Result<bool> queued = outbox_->Enqueue({"", terminal_id, std::move(j)});
  if (queued.status().code() == Status::Code::kResourceExhausted) {
    HttpResponse r = JsonError(503, "outbox_full", queued.status().message());
    r.Set("Retry-After", "30");
    return r;
  }
  if (!queued.ok()) return ErrorFor(queued.status());
  return JsonOk(202, {{"counted", false}, {"forwarded", true}});
}

HttpResponse Api::StartRollout(const HttpRequest& req) {
  Result<RolloutSpec> spec = ParseRolloutSpecJson(req.body);
  if (!spec.ok()) return ErrorFor(spec.status());
  Result<Rollout> r = rollouts_.Start(std::move(*spec), ActorOf(req), "");
  if (!r.ok() && IsCanaryExcluded(r.status())) return JsonError(400, kCanaryExcludedCode, r.status().message());
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
  Result<std::shared_ptr<const Manifest>> target = store_.GetManifest(model, spec->target_version);
  auto download_bytes = [&](const std::string& current_version) -> uint64_t {
    if (!target.ok()) return 0;
    const Manifest& to = **target;
    if (current_version.empty()) return to.size;
    Result<std::shared_ptr<const Manifest>> from = store_.GetManifest(model, current_version);
    if (!from.ok()) return to.size;
    Result<DeltaRecord> d = deltas_.FindOrQueue((*from)->digest, to.digest);
    return d.ok() && d->info.worthwhile ? d->info.size : to.size;
  };
  Result<RolloutPlan> plan = rollouts_.Plan(std::move(*spec), download_bytes);
  if (!plan.ok() && IsCanaryExcluded(plan.status())) return JsonError(400, kCanaryExcludedCode, plan.status().message());
  if (!plan.ok()) return ErrorFor(plan.status());
  nlohmann::json stages = nlohmann::json::array();
  for (size_t k = 0; k < plan->eligible.size(); ++k) {
    stages.push_back({{"stage", k},
                      {"percent", StagePercent(plan->spec, k)},
                      {"region", StageRegion(plan->spec, k)},
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
                      {"gate", row.gate},
                      {"region", row.region}});
  }
  Result<std::vector<RegionRow>> region_rows = rollouts_.Regions(id);
  if (!region_rows.ok()) return ErrorFor(region_rows.status());
  nlohmann::json regions = nlohmann::json::array();
  for (const RegionRow& row : *region_rows) {
    regions.push_back({{"region", row.region},
                       {"terminals", row.terminals},
                       {"updated", row.updated},
                       {"failed", row.failed},
                       {"wave", row.wave}});
  }
  return JsonOk(status, {{"id", id},
                         {"spec", nlohmann::json::parse(RolloutSpecToJson(r->spec()))},
                         {"state", nlohmann::json::parse(RolloutStateToJson(r->state()))},
                         {"stages", stages},
                         {"regions", regions}});
}

HttpResponse Api::ActOnRollout(const HttpRequest& req, const std::string& id, const std::string& action_name) {
  Result<RolloutAction> action = ParseRolloutAction(action_name);
  if (!action.ok() || *action == RolloutAction::kStart) return JsonError(404, "not_found", "no such rollout action");
  std::string reason;
  if (!req.body.empty()) {
    // An operator's words: an unknown field is a typo, refused.
    Result<nlohmann::json> j = ParseJsonObject(req.body, limits_.json_body_bytes_max, "body");
    if (!j.ok()) return ErrorFor(j.status());
    JsonFields f(*j, "body", UnknownFields::kRefuse);
    f.String("reason", &reason);
    if (Status st = f.Finish(); !st.ok()) return ErrorFor(st);
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

// ---------------------------------------------------------------------------
// Regions: what regions downstream follow, and the reports they forward.

namespace meridian {

namespace {
constexpr std::string_view kRegionSeenPrefix = "region-seen/";
constexpr int64_t kRegionSeenPersistMs = 10'000;  // a poll's time is written at most this often, other changes at once
}  // namespace

SyncDocument Api::BuildSyncDocument(std::string_view for_region) {
  SyncDocument doc;
  Result<std::vector<std::string>> models = store_.ListModels();
  for (const std::string& model : models.ok() ? *models : std::vector<std::string>()) {
    Result<std::vector<std::string>> versions = store_.ListVersions(model);
    if (!versions.ok()) continue;
    for (const std::string& v : *versions) {
      ++doc.sync_version;
      std::vector<std::string> regions;
      {
        std::lock_guard lock(regions_mu_);
        auto it = residency_.find({model, v});
        if (it != residency_.end()) regions = it->second;
      }
      if (regions.empty()) {
        Result<std::shared_ptr<const Manifest>> m = store_.GetManifest(model, v);
        if (!m.ok()) continue;
        regions = (*m)->regions.empty() ? std::vector<std::string>{""} : (*m)->regions;  // "" marks "all" in the cache
        std::lock_guard lock(regions_mu_);
        residency_.emplace(std::make_pair(model, v), regions);  // versions are immutable
      }
      if (regions.size() == 1 && regions[0].empty()) regions.clear();
      // A region is not told of versions it may not hold.
      if (ResidencyAllows(regions, for_region)) doc.versions.push_back({model, v, std::move(regions)});
    }
  }
  for (Rollouts::ChannelSnapshot& c : rollouts_.Channels()) {
    doc.sync_version += c.state.state_version;
    doc.channels.push_back({c.state.model, c.state.channel, c.state.state_version, std::move(c.envelope_json)});
  }
  return doc;
}

HttpResponse Api::Sync(const HttpRequest& req) {
  const std::string& query = req.query;
  std::optional<std::string> region = QueryParam(query, "region");
  if (!region || !IsValidRegionOrProfile(*region)) return JsonError(400, "invalid_argument", "region=ID is required");
  auto number = [&](const char* name, uint64_t* out) {
    std::optional<std::string> text = QueryParam(query, name);
    if (!text) return true;
    auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), *out);
    return ec == std::errc() && p == text->data() + text->size();
  };
  uint64_t known = 0, wait_s = 0, stored_bytes = 0, terminals = 0;
  if (!number("known", &known) || !number("wait", &wait_s) || !number("stored_bytes", &stored_bytes) ||
      !number("terminals", &terminals) || wait_s > limits_.target_wait_seconds_max) {
    return JsonError(400, "invalid_argument",
                     fmt::format("known, stored_bytes and terminals are numbers; wait is whole seconds in [0, {}]",
                                 limits_.target_wait_seconds_max));
  }
  std::string last_error = QueryParam(query, "last_error").value_or("").substr(0, kRegionErrorBytesMax);
  // Read before building, so that a change right after still wakes this poll.
  uint64_t generation = rollouts_.notifier().generation();
  SyncDocument doc = BuildSyncDocument(*region);
  int64_t now = SystemClock::Get().NowUnixMillis();
  std::optional<std::string> record;  // the region's seen-record, when due to be written
  {
    std::lock_guard lock(regions_mu_);
    auto it = regions_seen_.find(*region);
    if (it == regions_seen_.end() && regions_seen_.size() < limits_.regions_max) {
      it = regions_seen_.emplace(*region, RegionSeen{}).first;
    }
    if (it != regions_seen_.end()) {
      RegionSeen& seen = it->second;
      if (known >= doc.sync_version || seen.in_step_ms == 0) seen.in_step_ms = now;
      seen.sync_version = known;
      seen.last_seen_ms = now;
      seen.expect_by_ms = now + static_cast<int64_t>(wait_s) * 1000 + 5000;
      seen.stored_bytes = stored_bytes;
      seen.terminals = terminals;
      const bool changed = seen.last_error != last_error;
      seen.last_error = std::move(last_error);
      record = RegionSeenRecordIfDue(seen, changed);
    }
  }
  // Written outside the lock (a synced write must not hold up other regions'
  // polls), and best effort: the record only tells operators when the region
  // was last seen.
  if (record && store_.WriteState({{std::string(kRegionSeenPrefix) + *region, *record}}).ok()) {
    std::lock_guard lock(regions_mu_);
    if (auto it = regions_seen_.find(*region); it != regions_seen_.end()) it->second.persisted_ms = now;
  }
  // Held only when the region is in step; one ahead of this daemon (whose
  // store was rebuilt) is answered at once and starts over from here.
  if (wait_s > 0 && known == doc.sync_version && !req.wait_expired) {
    HttpResponse r;
    r.defer = HttpDeferral{&rollouts_.notifier(), generation, std::chrono::seconds(wait_s)};
    return r;
  }
  HttpResponse r;
  r.body = SyncDocumentToJson(doc);
  r.Set("Content-Type", "application/json");
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::RelayForwardedReports(const HttpRequest& req) {
  Result<std::vector<ForwardedReport>> batch = ParseForwardedReports(req.body, limits_.forwarded_reports_max);
  if (!batch.ok()) return ErrorFor(batch.status());
  uint64_t accepted = 0, duplicates = 0;
  // Passed on upstream, under the same ids.
  for (ForwardedReport& f : *batch) {
    Result<bool> queued = outbox_->Enqueue(std::move(f));
    if (!queued.ok()) return ErrorFor(queued.status());
    ++(*queued ? accepted : duplicates);
  }
  return JsonOk(200, {{"accepted", accepted}, {"duplicates", duplicates}, {"rejected", 0}});
}

HttpResponse Api::ForwardedReports(const HttpRequest& req) {
  Result<std::vector<ForwardedReport>> batch = ParseForwardedReports(req.body, limits_.forwarded_reports_max);
  if (!batch.ok()) return ErrorFor(batch.status());
  uint64_t accepted = 0, duplicates = 0, rejected = 0;
  // Each report counts once: the batch's ids are recorded, with the counts,
  // in one write after its reports are processed. Reports processed but not
  // recorded (a crash in between) are processed again when the region sends
  // them again — harmless, as a gate counts each terminal's latest report —
  // and counted once.
  std::lock_guard lock(forwarded_mu_);  // batches one after another: ids and counts are read, then written
  std::map<std::string, uint64_t> per_region;
  std::set<std::string> in_batch;
  std::vector<std::pair<std::string, std::optional<std::string>>> ops;
  for (ForwardedReport& f : *batch) {
    std::string key = "reportid/" + f.id;
    Result<std::string> had = store_.GetState(key);
    if (had.ok() || !in_batch.insert(f.id).second) {
      ++duplicates;
      continue;
    }
    if (had.status().code() != Status::Code::kNotFound) return ErrorFor(had.status());
    ops.emplace_back(key, "");
    Result<AgentReport> a = ParseAgentReport(f.terminal, f.report);
    if (a.ok() && a->verdict) {
      std::string from = a->report.region;
      Result<bool> c = rollouts_.Report(a->rollout, a->model, a->channel, std::move(a->report));
      if (!c.ok() && c.status().code() != Status::Code::kInvalidArgument) return ErrorFor(c.status());
      ++per_region[from];
      ++accepted;
    } else {
      ++rejected;  // recorded all the same: resending it cannot make it valid
    }
  }
  for (const auto& [region, n] : per_region) {
    std::string key = "region-reports/" + region;
    Result<std::string> old = store_.GetState(key);
    uint64_t total = n + (old.ok() ? std::strtoull(old->c_str(), nullptr, 10) : 0);
    ops.emplace_back(key, std::to_string(total));
  }
  if (!ops.empty()) {
    if (Status st = store_.WriteState(ops); !st.ok()) return ErrorFor(st);
  }
  return JsonOk(200, {{"accepted", accepted}, {"duplicates", duplicates}, {"rejected", rejected}});
}

void Api::LoadRegionsSeen() {
  Result<std::vector<std::pair<std::string, std::string>>> records = store_.ScanState(kRegionSeenPrefix);
  if (!records.ok()) return;  // shown as never seen until they poll again
  std::lock_guard lock(regions_mu_);
  for (const auto& [key, value] : *records) {
    Result<nlohmann::json> j = ParseJsonObject(value, value.size(), key);
    if (!j.ok() || regions_seen_.size() >= limits_.regions_max) continue;
    RegionSeen seen;  // not reachable until it polls this daemon again
    JsonFields f(*j, key, UnknownFields::kIgnore);
    f.Uint("sync_version", &seen.sync_version);
    f.Int64("last_seen_ms", &seen.last_seen_ms);
    f.Uint("stored_bytes", &seen.stored_bytes);
    f.Uint("terminals", &seen.terminals);
    f.String("last_error", &seen.last_error);
    if (!f.Finish().ok()) continue;
    seen.persisted_ms = seen.last_seen_ms;
    regions_seen_.emplace(key.substr(kRegionSeenPrefix.size()), std::move(seen));
  }
}

std::optional<std::string> Api::RegionSeenRecordIfDue(const RegionSeen& seen, bool changed) {
  if (!changed && seen.last_seen_ms - seen.persisted_ms < kRegionSeenPersistMs) return std::nullopt;
  nlohmann::json j = {{"sync_version", seen.sync_version}, {"last_seen_ms", seen.last_seen_ms},
                      {"stored_bytes", seen.stored_bytes}, {"terminals", seen.terminals},
                      {"last_error", seen.last_error}};
  return j.dump();
}

HttpResponse Api::ListRegions() {
  uint64_t current = BuildSyncDocument("").sync_version;
  int64_t now = SystemClock::Get().NowUnixMillis();
  std::map<std::string, nlohmann::json> rows;
  {
    std::lock_guard lock(regions_mu_);
    for (const auto& [region, seen] : regions_seen_) {
      rows[region] = {{"region", region},
                      {"reachable", now <= seen.expect_by_ms},
                      {"healthy", now <= seen.expect_by_ms && seen.last_error.empty()},
                      {"last_error", seen.last_error},
                      {"sync_version", seen.sync_version},
                      {"behind", current > seen.sync_version ? current - seen.sync_version : 0},
                      {"lag_ms", seen.sync_version >= current ? 0 : now - seen.in_step_ms},
                      {"last_seen_ms", seen.last_seen_ms},
                      {"stored_bytes", seen.stored_bytes},
                      {"terminals", seen.terminals},
                      {"reports_received", 0}};
    }
  }
  Result<std::vector<std::pair<std::string, std::string>>> counts = store_.ScanState("region-reports/");
  for (const auto& [key, value] : counts.ok() ? *counts : std::vector<std::pair<std::string, std::string>>()) {
    std::string region = key.substr(std::string_view("region-reports/").size());
    nlohmann::json& row = rows[region];
    if (!row.contains("region")) {
      row = {{"region", region}, {"reachable", false}, {"healthy", false}, {"last_error", ""},
             {"sync_version", 0}, {"behind", current},
             {"lag_ms", nullptr}, {"last_seen_ms", 0}, {"stored_bytes", 0}, {"terminals", 0}};
    }
    row["reports_received"] = std::strtoull(value.c_str(), nullptr, 10);
  }
  nlohmann::json list = nlohmann::json::array();
  for (auto& [region, row] : rows) list.push_back(std::move(row));
  nlohmann::json out = {{"role", region_.empty() ? "origin" : "region"}, {"sync_version", current}, {"regions", list}};
  if (!region_.empty()) {
    FollowerStatus f = follower_->status();
    ReportOutbox::Stats o = outbox_->stats();
    out["region"] = region_;
    out["upstream"] = {{"url", f.upstream},
                       {"reachable", f.upstream_ok},
                       {"sync_version", f.sync_version},
                       {"last_sync_ms", f.last_sync_ms},
                       {"last_error", f.last_error},
                       {"reports_pending", o.pending},
                       {"reports_forwarded", o.forwarded}};
  }
  return JsonOk(200, out);
}

}  // namespace meridian
