// The /v1 routes of meridiand: reading a model needs a credential unless the
// model is public, publishing needs the publisher token, rollouts the
// operator token, terminal targets and reports the terminal token. Bytes of
// a model whose residency excludes this daemon are never stored here and
// answered 451. Every name is validated before anything looks it up.
// This file: the route table, admission, and the routes that publish and
// read models; api_rollouts.cc holds the terminals' and operators' routes,
// api_regions.cc those of regions.
#include "daemon/api.h"

#include <openssl/crypto.h>

#include <charconv>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/json.h"
#include "daemon/api_shared.h"
#include "daemon/chunk_cursor.h"
#include "daemon/ui.h"
#include "manifest/chunk_batch.h"
#include "manifest/manifest.h"
#include "trust/trust.h"

namespace meridian {

namespace {

// Verified terminal credentials remembered (CredentialOf): one per terminal
// talking to this daemon within a credential's lifetime, for the busiest.
constexpr size_t kCredentialsCachedMax = 100'000;

std::string Quoted(const Digest& d) { return "\"" + d.ToString() + "\""; }

// Immutable, content-addressed representation headers shared by 200/206/304.
// Bytes of a private model are "private": a shared cache must not hand them
// to whoever asks (the shipped nginx config caches them all the same, after
// asking meridiand about each request: docs/caching-proxy.md).
void SetCacheHeaders(HttpResponse& r, const Digest& digest, bool is_public) {
  r.Set("ETag", Quoted(digest));
  r.Set("Cache-Control", is_public ? "public, max-age=31536000, immutable" : "private, max-age=31536000, immutable");
  r.Set("Accept-Ranges", "bytes");
}

// Decides between 304, 416, 206 and 200 for a content-addressed object of
// `size` bytes. Returns the response to send without a body, and sets
// *first/*length to the byte range to send when a body is due.
HttpResponse PlanRepresentation(const HttpRequest& req, const Digest& digest, bool is_public, uint64_t size,
                                uint64_t* first, uint64_t* length) {
  HttpResponse r;
  SetCacheHeaders(r, digest, is_public);
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

Api::Api(Store& store, Catalog& catalog, RootChain& roots, PendingReleases& pending, ApiTokens tokens,
         Credentials& credentials, AuditLog& audit, Enrolment& enrolment, Metrics& metrics, Rollouts& rollouts,
         DeltaService& deltas, Retention& retention, const Clock& clock, ApiLimits limits)
    : store_(store),
      catalog_(catalog),
      roots_(roots),
      pending_(pending),
      tokens_(std::move(tokens)),
      credentials_(credentials),
      audit_(audit),
      enrolment_(enrolment),
      metrics_(metrics),
      rollouts_(rollouts),
      deltas_(deltas),
      retention_(retention),
      clock_(clock),
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
                 std::function<HttpResponse(const HttpRequest&)> handler, const char* served_kind = "") -> Route& {
    return t.Add(Route{method, pattern, role, body_bytes_max, std::move(handler), summary, served_kind, {}});
  };
  // Model reads: a credential of any role, or none when `is_public` says so.
  auto read = [&](const char* pattern, const char* summary, std::function<HttpResponse(const HttpRequest&)> handler,
                  std::function<bool(const HttpRequest&)> is_public, const char* served_kind = "") {
    t.Add(Route{"GET", pattern, CallerRole::kReader, 0, std::move(handler), summary, served_kind, std::move(is_public)});
  };
  // Releases and rollouts are made at the origin; a region only replicates
  // them, and refuses these routes on the head.
  auto origin_only = [&](const char* method, const char* pattern, CallerRole role, uint64_t body_bytes_max,
                         const char* summary, std::function<HttpResponse(const HttpRequest&)> handler) -> Route& {
    if (origin) return add(method, pattern, role, body_bytes_max, summary, std::move(handler));
    return add(method, pattern, CallerRole::kNobody, 0, summary, [this](const HttpRequest&) {
      return JsonError(403, "region_read_only",
                       fmt::format("this daemon is region '{}': publish, control rollouts and enrol terminals at "
                                   "the origin",
                                   region_));
    });
  };
  const CallerRole anyone = CallerRole::kAnyone, publisher = CallerRole::kPublisher, op = CallerRole::kOperator, terminal = CallerRole::kTerminal,
             mirror = CallerRole::kMirror;

  add("GET", "/healthz", anyone, 0, "200 while the process serves", [](const HttpRequest&) {
    return JsonOk(200, {{"status", "ok"}});
  });
  add("GET", "/readyz", anyone, 0,
      "200 when ready; 503 while shutting down, while the store cannot write, or (a region) before its first complete "
      "sync",
      [this](const HttpRequest&) {
        if (!ready_) return JsonError(503, "unavailable", "shutting down");
        if (follower_ != nullptr && !follower_->status().synced_once) {
          return JsonError(503, "not_synced", "no complete sync with an upstream yet");
        }
        std::lock_guard lock(store_fault_mu_);
        if (!store_fault_.empty()) return JsonError(503, "store_unavailable", store_fault_);
        return JsonOk(200, {{"status", "ready"}});
      });
  add("GET", "/metrics", anyone, 0, "Prometheus text", [this](const HttpRequest&) { return RenderMetrics(); });
  add("GET", "/v1/access", anyone, 0,
      "204 when the request in X-Original-URI, with these headers, may be served; else its 401/403 (nginx auth_request)",
      [this](const HttpRequest& r) { return Access(r); });
  // Anonymous listings show public models and versions only.
  read("/v1/models", "model names", [this](const HttpRequest& r) { return ListModels(r); },
       [](const HttpRequest&) { return true; });
  read("/v1/models/{model}/versions", "a model's versions in SemVer order",
       [this](const HttpRequest& r) { return ListVersions(r, r.params[0]); }, [](const HttpRequest&) { return true; });
  read("/v1/models/{model}/versions/{version}", "the signed manifest envelope",
       [this](const HttpRequest& r) { return GetVersion(r.params[0], r.params[1]); },
       [this](const HttpRequest& r) { return IsPublicVersion(r); });
  origin_only("POST", "/v1/models/{model}/versions", publisher, kParseEnvelopeBytesMax,
              "commit a signed manifest whose chunks are stored (only the manifest, for a model resident elsewhere); "
              "below the release threshold, keep its signatures pending (202)",
              [this](const HttpRequest& r) { return CommitVersion(r, r.params[0]); });
  origin_only("DELETE", "/v1/models/{model}/versions/{version}", publisher, json,
              "delete a version no channel or active rollout names (its bytes go at the next collection)",
              [this](const HttpRequest& r) { return DeleteVersion(r, r.params[0], r.params[1]); });
  add("POST", "/v1/collect", op, 0,
      "apply the retention policy and collect what nothing refers to, now",
      [this](const HttpRequest& r) { return Collect(r); });
  origin_only("GET", "/v1/pending", publisher, 0, "versions waiting for release signatures, with their signers",
              [this](const HttpRequest&) { return ListPending(); });
  origin_only("GET", "/v1/models/{model}/pending/{version}", publisher, 0,
              "the manifest envelope of a version waiting for release signatures",
              [this](const HttpRequest& r) { return GetPending(r.params[0], r.params[1]); });
  add("GET", "/v1/roots", anyone, 0, "the versions of the chain of roots served here",
      [this](const HttpRequest&) { return ListRoots(); });
  add("GET", "/v1/roots/{version}", anyone, 0, "root VERSION (or latest), its envelope as signed",
      [this](const HttpRequest& r) { return GetRoot(r.params[0]); });
  origin_only("POST", "/v1/roots", op, kRootEnvelopeBytesMax,
              "install the next root (signed by a threshold of the current and of its own root keys)",
              [this](const HttpRequest& r) { return PushRoot(r); });
  // Regions take chunks too: those of models resident in their region, which
  // the origin may not hold (meridian publish --store-at).
  add("POST", "/v1/chunks/missing", publisher, json, "which of these chunks are not stored",
      [this](const HttpRequest& r) { return MissingChunks(r); });
  read("/v1/chunks/{digest}", "a chunk's bytes", [this](const HttpRequest& r) { return GetChunk(r, r.params[0]); },
       [this](const HttpRequest& r) { return IsPublicChunk(r); }, "chunk");
  add("PUT", "/v1/chunks/{digest}", publisher, kChunkBytesMax, "upload a chunk",
      [this](const HttpRequest& r) { return PutChunk(r, r.params[0]); })
      .brief_write = true;  // a memtable write, no WAL: the pool made a 1 GiB publish 6 % slower
  add("POST", "/v1/chunks", publisher, kChunkBatchBytesMax,
      "upload many chunks in one request (a chunk batch, formats/manifest.md)",
      [this](const HttpRequest& r) { return PutChunks(r); });
  read("/v1/artifacts/{digest}", "a whole artifact, streamed",
       [this](const HttpRequest& r) { return GetArtifact(r, r.params[0]); },
       [this](const HttpRequest& r) { return IsPublicArtifact(r); }, "artifact");
  read("/v1/deltas/{from}/{to}", "a delta's bytes, streamed",
       [this](const HttpRequest& r) { return GetDelta(r, r.params[0], r.params[1], /*info=*/false); },
       [this](const HttpRequest& r) { return IsPublicDelta(r); }, "delta");
  read("/v1/deltas/{from}/{to}/info", "a delta's signed descriptor",
       [this](const HttpRequest& r) { return GetDelta(r, r.params[0], r.params[1], /*info=*/true); },
       [this](const HttpRequest& r) { return IsPublicDelta(r); });
  // A terminal's key proves who it is; the head carries the proof, so
  // nothing else is read before it is checked.
  origin_only("POST", "/v1/terminals/{id}/credential", anyone, 0,
              "a terminal's short-lived credential, for a request signed with its key (Authorization: "
              "Meridian-Terminal)",
              [this](const HttpRequest& r) { return IssueCredential(r, r.params[0]); })
      .brief_write = true;  // a signature checked, one signed: the pool cost 7-18 % of credentials/s
  origin_only("GET", "/v1/terminals", op, 0, "enrolled terminals, a page at a time",
              [this](const HttpRequest& r) { return ListTerminals(r); });
  origin_only("POST", "/v1/terminals", op, 16u << 20, "enrol terminals with their public keys (accepted)",
              [this](const HttpRequest& r) { return AddTerminals(r); });
  origin_only("POST", "/v1/terminals/{id}/accept", op, 0, "accept a terminal that asked to join",
              [this](const HttpRequest& r) { return ChangeTerminal(r, r.params[0], EnrolmentState::kAccepted); });
  origin_only("POST", "/v1/terminals/{id}/revoke", op, 0, "revoke a terminal: its credentials stop working",
              [this](const HttpRequest& r) { return ChangeTerminal(r, r.params[0], EnrolmentState::kRevoked); });
  add("GET", "/v1/terminals/{id}/target", terminal, 0, "what a terminal should run (long poll)",
      [this](const HttpRequest& r) { return TerminalTarget(r, r.params[0]); });
  // The origin counts reports; a region forwards them to its upstream.
  add("POST", "/v1/terminals/{id}/reports", terminal, limits_.report_body_bytes_max, "a terminal's install or health report",
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
  // People's credentials and the audit log are the origin's, where releases
  // and rollouts are made; a region keeps its built-in tokens.
  origin_only("POST", "/v1/tokens", op, json, "create a named publisher or operator credential (its token is shown once)",
              [this](const HttpRequest& r) { return CreateToken(r); });
  origin_only("GET", "/v1/tokens", op, 0, "the named credentials, never their tokens",
              [this](const HttpRequest&) { return ListTokens(); });
  origin_only("POST", "/v1/tokens/{name}/revoke", op, 0, "revoke a named credential, at once",
              [this](const HttpRequest& r) { return RevokeToken(r, r.params[0]); });
  origin_only("GET", "/v1/audit", op, 0, "a page of the hash-chained audit log, events as stored",
              [this](const HttpRequest& r) { return ReadAudit(r); });
  add("GET", "/v1/regions", op, 0, "the regions following this daemon", [this](const HttpRequest&) { return ListRegions(); });
  add("POST", "/v1/holdings", mirror, json, "what a region downstream holds of each model",
      [this](const HttpRequest& r) { return RegionHoldings(r); });
  add("GET", "/v1/residency", op, 0, "per model, the bytes this daemon and each region downstream hold",
      [this](const HttpRequest&) { return Residency(); });
  add("GET", "/v1/fleet", op, 0, "known terminals per model channel, counted by the version they run",
      [this](const HttpRequest&) { return ListFleetVersions(); });
  add("GET", "/v1/fleet/terminals", op, 0, "known terminals of a model channel, a page at a time, filtered",
      [this](const HttpRequest& r) { return ListFleetTerminals(r); });
  // The web console: open to all, since the page holds no data (it reads the
  // API above with the operator token its user types in).
  add("GET", "/", anyone, 0, "302 to the web console", [](const HttpRequest&) { return RedirectToUi(); });
  add("GET", "/ui", anyone, 0, "302 to the web console", [](const HttpRequest&) { return RedirectToUi(); });
  add("GET", "/ui/", anyone, 0, "the web console (HTML)",
      [](const HttpRequest& r) { return ServeUiFile(r, "index.html"); });
  add("GET", "/ui/{file}", anyone, 0, "the web console's scripts and styles",
      [](const HttpRequest& r) { return ServeUiFile(r, r.params[0]); });
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
  // Reads are brief. Writes may not be: a synced write waits for the disk (a
  // report), and some work for seconds (a commit, a collection, an enrolment
  // of 100,000 terminals). They run off the connection's thread, which
  // serves others meanwhile, but for the brief ones that come by the
  // thousand (chunk uploads, credentials).
  const bool may_block = (*route)->method != "GET" && !(*route)->brief_write;
  return {std::nullopt, (*route)->body_bytes_max, may_block};
}

HttpResponse Api::Handle(const HttpRequest& req) {
  HttpResponse r = req.route->handler(req);
  if (req.method == "HEAD") r.head_only = true;
  return r;
}

void Api::Completed(const HttpRequest& req, int status, uint64_t body_bytes_sent) {
  metrics_.CountRequest(req.route != nullptr ? req.route->Label() : "other", status, body_bytes_sent);
  if (req.route != nullptr && !req.route->served_kind.empty()) metrics_.CountServed(req.route->served_kind, body_bytes_sent);
}

const std::string& Api::TokenOf(CallerRole role) const {
  static const std::string kNone;
  switch (role) {
    case CallerRole::kPublisher: return tokens_.publisher;
    case CallerRole::kOperator: return tokens_.operator_token;
    case CallerRole::kTerminal: return tokens_.terminal;
    case CallerRole::kMirror: return tokens_.mirror;
    case CallerRole::kAnyone:
    case CallerRole::kReader:  // any of the above: CheckBearer
    case CallerRole::kNobody: break;
  }
  return kNone;
}

namespace {

// In constant time; a role without a token is never matched.
bool TokenMatches(std::string_view token, const std::string& want) {
  return !want.empty() && token.size() == want.size() && CRYPTO_memcmp(token.data(), want.data(), token.size()) == 0;
}

}  // namespace

std::optional<Result<TerminalCredential>> Api::CredentialOf(const HttpRequest& req) const {
  std::string_view auth = req.Header("authorization");
  if (!auth.starts_with("Bearer ") || !LooksLikeCredential(auth.substr(7))) return std::nullopt;
  std::string text(auth.substr(7));
  const int64_t now = clock_.NowUnixMillis();
  {
    std::lock_guard lock(verified_mu_);
    auto it = verified_credentials_.find(text);
    if (it != verified_credentials_.end() && it->second.expires_ms > now) return it->second;
  }
  Result<TerminalCredential> c = VerifyCredential(*roots_.Current(), text, now);
  if (c.ok()) {
    std::lock_guard lock(verified_mu_);
    if (verified_credentials_.size() >= kCredentialsCachedMax) verified_credentials_.clear();
    verified_credentials_.emplace(std::move(text), *c);
  }
  return c;
}

void Api::ApplyCredential(const HttpRequest& req, std::string* profile, std::string* region) const {
  std::optional<Result<TerminalCredential>> c = CredentialOf(req);
  if (!c || !c->ok()) return;
  if (!(*c)->profile.empty()) *profile = (*c)->profile;
  // A region's daemon decides the region of the terminals it serves: a
  // terminal that roams is where it is, whatever it was enrolled with.
  if (!(*c)->region.empty() && region_.empty()) *region = (*c)->region;
}

std::optional<HttpResponse> Api::CheckTerminal(HttpRequest& req) const {
  const std::string& id = req.params[0];
  auto refuse = [&](int status, const char* reason, std::string message) {
    metrics_.CountAuthFailure(reason, RoleName(CallerRole::kTerminal));
    HttpResponse r = JsonError(status, status == 401 ? "unauthenticated" : "permission_denied", std::move(message));
    if (status == 401) r.Set("WWW-Authenticate", "Bearer");
    return r;
  };
  // A verified client certificate is a terminal's own identity (mTLS): it
  // admits the terminal its CN names, and no other.
  const std::string& cn = req.client_certificate_cn;
  std::optional<Result<TerminalCredential>> credential = CredentialOf(req);
  std::string_view speaker;
  int64_t issued_ms = 0;
  if (credential) {
    if (!credential->ok()) return refuse(401, "bad_credential", credential->status().message());
    speaker = (*credential)->terminal_id;
    issued_ms = (*credential)->issued_ms;
  } else if (!cn.empty()) {
    speaker = cn;  // a shared token beside it adds nothing
  } else if (req.Header("authorization").starts_with("Bearer ")) {
    return refuse(403, "wrong_token",
                  "a terminal's routes take its own credential (meridian-agent gets one with its key) or its "
                  "client certificate; a shared token speaks for no terminal");
  } else {
    return refuse(401, "missing_bearer", "this route needs 'Authorization: Bearer <terminal credential>'");
  }
  if (speaker != id) {
    return refuse(403, credential ? "wrong_terminal" : "wrong_certificate",
                  fmt::format("the {} is terminal '{}''s; it cannot speak for '{}'",
                              credential ? "credential" : "client certificate", speaker, id));
  }
  Status admitted = credential ? enrolment_.Admit(id, issued_ms) : enrolment_.AdmitCertified(id);
  if (!admitted.ok()) return refuse(403, "not_enrolled", admitted.message());
  req.caller = id;
  return std::nullopt;
}

std::optional<Api::Caller> Api::Identify(std::string_view token) const {
  for (CallerRole r : {CallerRole::kTerminal, CallerRole::kMirror, CallerRole::kPublisher, CallerRole::kOperator}) {
    if (TokenMatches(token, TokenOf(r))) return Caller{r, r == CallerRole::kTerminal ? "" : std::string(RoleName(r))};
  }
  if (std::optional<Credential> c = credentials_.Find(token)) return Caller{c->role, c->name, c->revoked_ms.has_value()};
  return std::nullopt;
}

std::optional<HttpResponse> Api::CheckBearer(HttpRequest& req, CallerRole role) const {
  if (role == CallerRole::kAnyone) return std::nullopt;
  if (role == CallerRole::kTerminal) return CheckTerminal(req);
  const std::string& cn = req.client_certificate_cn;
  std::string_view auth = req.Header("authorization");
  if (role == CallerRole::kReader) {
    // A terminal's verified certificate or credential reads models as a token
    // would, unless the terminal was revoked: that holds for public models too,
    // as it does for a credential.
    if (auth.empty() && !cn.empty()) {
      Status admitted = enrolment_.AdmitCertified(cn);
      if (admitted.ok()) return std::nullopt;
      metrics_.CountAuthFailure("not_enrolled", RoleName(role));
      return JsonError(403, "permission_denied", admitted.message());
    }
    if (auth.empty() && req.route->is_public(req)) return std::nullopt;
    if (std::optional<Result<TerminalCredential>> c = CredentialOf(req)) {
      if (c->ok() && enrolment_.Admit((*c)->terminal_id, (*c)->issued_ms).ok()) return std::nullopt;
      metrics_.CountAuthFailure(c->ok() ? "not_enrolled" : "bad_credential", RoleName(role));
      return JsonError(c->ok() ? 403 : 401, c->ok() ? "permission_denied" : "unauthenticated",
                       c->ok() ? fmt::format("terminal '{}' is not enrolled or was revoked", (*c)->terminal_id)
                               : c->status().message());
    }
    if (auth.starts_with("Bearer ")) {
      if (std::optional<Caller> c = Identify(auth.substr(7)); c && !c->revoked) {
        req.caller = std::move(c->name);
        return std::nullopt;
      }
      metrics_.CountAuthFailure("wrong_token", RoleName(role));
      return JsonError(403, "permission_denied", "reading a model needs a terminal credential or a reader, mirror, "
                                                 "publisher or operator token; the one given is none of them");
    }
  }
  if (!auth.starts_with("Bearer ")) {
    metrics_.CountAuthFailure("missing_bearer", RoleName(role));
    HttpResponse r = JsonError(
        401, "unauthenticated",
        role == CallerRole::kReader
            ? "not public: reading it needs 'Authorization: Bearer <token>' (terminal credential, reader, mirror, "
              "publisher or operator)"
            : fmt::format("this route needs 'Authorization: Bearer <{} token>'", RoleName(role)));
    r.Set("WWW-Authenticate", "Bearer");
    return r;
  }
  std::optional<Caller> c = Identify(auth.substr(7));
  if (!c || c->role != role) {
    metrics_.CountAuthFailure("wrong_token", RoleName(role));
    return JsonError(403, "permission_denied", fmt::format("this route needs the {} token; the one given is not", RoleName(role)));
  }
  if (c->revoked) {
    metrics_.CountAuthFailure("revoked", RoleName(role));
    return JsonError(403, "permission_denied", fmt::format("credential '{}' was revoked", c->name));
  }
  req.caller = std::move(c->name);
  return std::nullopt;
}

namespace {

// A caller with no credential (one that sent a wrong one was refused at admission).
bool Anonymous(const HttpRequest& req) {
  return req.Header("authorization").empty() && req.client_certificate_cn.empty();
}

}  // namespace

bool Api::IsPublicChunk(const HttpRequest& req) const {
  Result<Digest> digest = Digest::Parse(req.params[0]);
  return digest.ok() && catalog_.IsPublicChunk(*digest);
}

bool Api::IsPublicArtifact(const HttpRequest& req) const {
  Result<Digest> digest = Digest::Parse(req.params[0]);
  return digest.ok() && catalog_.IsPublicArtifact(*digest);
}

bool Api::IsPublicVersion(const HttpRequest& req) const { return catalog_.IsPublicVersion(req.params[0], req.params[1]); }

// A delta is public when both its ends are: its bytes tell of the version it
// starts from, and whether an anonymous caller gets 404 or 409 tells whether
// that version exists.
bool Api::IsPublicDelta(const HttpRequest& req) const {
  Result<Digest> from = Digest::Parse(req.params[0]);
  Result<Digest> to = Digest::Parse(req.params[1]);
  return from.ok() && to.ok() && catalog_.IsPublicArtifact(*from) && catalog_.IsPublicArtifact(*to);
}

HttpResponse Api::NotHere(std::string_view what) const {
  return JsonError(451, "not_resident", fmt::format("{} belongs to a model whose residency excludes this daemon ({})",
                                                    what, catalog_.DescribeJurisdiction()));
}

HttpResponse Api::Access(const HttpRequest& req) {
  HttpRequest original;
  original.method = std::string(req.Header("x-original-method"));
  if (original.method.empty()) original.method = "GET";
  original.target = std::string(req.Header("x-original-uri"));
  if (original.target.empty()) return JsonError(400, "invalid_argument", "X-Original-URI is required");
  original.headers = req.headers;
  original.client_certificate_cn = req.client_certificate_cn;
  HttpAdmission admitted = Admit(original);
  if (admitted.refusal && (admitted.refusal->status == 401 || admitted.refusal->status == 403)) {
    return std::move(*admitted.refusal);
  }
  // Fails closed on a path that names no route here (400, 404, 405): the
  // proxy caches by its own normalised path (slashes merged, dot segments
  // resolved), so `//v1/chunks/D` or `/v1/chunks/x/../D` would otherwise be
  // let through here and served a private D from its cache. A route's other
  // refusals (451, …) are left to the request itself, which meets them again.
  if (admitted.refusal && original.route == nullptr) {
    return JsonError(403, "permission_denied",
                     fmt::format("{} {} names no route of this daemon: not admitted", original.method, original.target));
  }
  HttpResponse r;
  r.status = 204;
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::ListModels(const HttpRequest& req) {
  Result<std::vector<std::string>> models = store_.ListModels();
  if (!models.ok()) return ErrorFor(models.status());
  if (!Anonymous(req)) return JsonOk(200, {{"models", *models}});
  std::vector<std::string> shown;
  for (const std::string& model : *models) {
    Result<std::vector<std::string>> versions = store_.ListVersions(model);
    if (versions.ok() && !catalog_.PublicVersions(model, *versions).empty()) shown.push_back(model);
  }
  return JsonOk(200, {{"models", shown}});
}

HttpResponse Api::ListVersions(const HttpRequest& req, const std::string& model) {
  if (!IsValidModelName(model)) return JsonError(400, "invalid_argument", "invalid model name");
  Result<std::vector<std::string>> versions = store_.ListVersions(model);
  if (!versions.ok()) return ErrorFor(versions.status());
  if (Anonymous(req)) {
    std::vector<std::string> shown = catalog_.PublicVersions(model, *versions);
    if (shown.empty()) return JsonError(404, "not_found", "no public version of " + model);
    return JsonOk(200, {{"model", model}, {"versions", shown}});
  }
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

HttpResponse Api::DeleteVersion(const HttpRequest& req, const std::string& model, const std::string& version) {
  Result<std::string> reason = ReasonOf(req);
  if (!reason.ok()) return ErrorFor(reason.status());
  Status st = retention_.DeleteVersion(model, version, req.caller, *reason);
  if (st.code() == Status::Code::kFailedPrecondition) return JsonError(409, "version_in_use", st.message());
  if (!st.ok()) return ErrorFor(st);
  return JsonOk(200, {{"model", model}, {"version", version}, {"deleted", true}});
}

HttpResponse Api::Collect(const HttpRequest& req) {
  Result<RetentionReport> r = retention_.Collect(req.caller);
  if (!r.ok()) return ErrorFor(r.status());
  const StoreStats stats = store_.Stats();
  return JsonOk(200, {{"versions_deleted", r->versions_deleted},
                      {"deltas_dropped", r->deltas_dropped},
                      {"report_ids_dropped", r->report_ids_dropped},
                      {"chunks_deleted", r->chunks.chunks_deleted},
                      {"bytes_deleted", r->chunks.bytes_deleted},
                      {"chunks_referenced", r->chunks.chunks_referenced},
                      {"chunks_young", r->chunks.chunks_young},
                      {"blobs_rewritten", r->chunks.blobs_rewritten},
                      {"disk_bytes", stats.disk_bytes}});
}

Result<std::string> Api::ReasonOf(const HttpRequest& req) const {
  std::string reason;
  if (req.body.empty()) return reason;
  Result<nlohmann::json> j = ParseJsonObject(req.body, limits_.json_body_bytes_max, "body");
  if (!j.ok()) return j.status();
  JsonFields f(*j, "body", UnknownFields::kRefuse);
  f.String("reason", &reason);
  MERIDIAN_RETURN_IF_ERROR(f.Finish());
  return reason;
}

HttpResponse Api::GetChunk(const HttpRequest& req, const std::string& digest_text) {
  Result<Digest> digest = Digest::Parse(digest_text);
  if (!digest.ok()) return JsonError(400, "invalid_argument", digest.status().message());
  Result<std::shared_ptr<const Bytes>> chunk = store_.ServeChunk(*digest);
  if (chunk.status().code() == Status::Code::kNotFound && catalog_.IsElsewhereChunk(*digest)) {
    return NotHere("chunk " + digest->ToString());
  }
  if (!chunk.ok()) return ErrorFor(chunk.status());
  uint64_t first, length;
  HttpResponse r = PlanRepresentation(req, *digest, catalog_.IsPublicChunk(*digest), (*chunk)->size(), &first, &length);
  if ((r.status == 200 || r.status == 206) && length > 0) {
    // One piece, sent from the (cached) chunk itself.
    r.stream_bytes = length;
    r.stream = [piece = BodyPiece{*chunk, ByteSpan(**chunk).subspan(first, length)}, given = false]() mutable
        -> Result<BodyPiece> {
      if (std::exchange(given, true)) return Status::InvalidArgument("stream finished");
      return piece;
    };
  }
  return r;
}

HttpResponse Api::GetArtifact(const HttpRequest& req, const std::string& digest_text) {
  Result<Digest> digest = Digest::Parse(digest_text);
  if (!digest.ok()) return JsonError(400, "invalid_argument", digest.status().message());
  if (catalog_.IsElsewhereArtifact(*digest)) return NotHere("artifact " + digest->ToString());
  // As signed: a paged manifest's chunk list is read a page at a time as the
  // download goes, whatever the model's size; a v1 manifest's is shared with
  // the cached manifest (a Range request copies nothing).
  Result<std::shared_ptr<const Manifest>> m = store_.FindArtifactAsSigned(*digest);
  if (!m.ok()) return ErrorFor(m.status());
  return StreamChunks(req, *digest, (*m)->is_public, std::make_shared<ChunkCursor>(store_, *m), (*m)->size);
}

HttpResponse Api::StreamChunks(const HttpRequest& req, const Digest& digest, bool is_public,
                               std::shared_ptr<ChunkCursor> chunks, uint64_t size) {
  uint64_t first, length;
  HttpResponse r = PlanRepresentation(req, digest, is_public, size, &first, &length);
  if (r.status != 200 && r.status != 206) return r;
  if (length == 0) return r;

  // Stream chunk by chunk from the one holding `first`: never the whole file in memory.
  Result<uint64_t> skip = chunks->Seek(first);
  if (!skip.ok()) return ErrorFor(skip.status());
  struct Stream {
    std::shared_ptr<ChunkCursor> chunks;
    uint64_t skip = 0;       // bytes to drop from the front of the next chunk
    uint64_t remaining = 0;  // bytes still to send
  };
  auto cur = std::make_shared<Stream>(Stream{std::move(chunks), *skip, length});
  r.stream_bytes = length;
  r.stream = [this, cur]() -> Result<BodyPiece> {
    Result<std::optional<ChunkRef>> next = cur->remaining == 0 ? std::optional<ChunkRef>() : cur->chunks->Next();
    if (!next.ok()) return next.status();
    if (!*next) return Status::InvalidArgument("stream finished");
    Result<std::shared_ptr<const Bytes>> chunk = store_.ServeChunk((*next)->digest);
    if (!chunk.ok()) return chunk.status();
    ByteSpan piece = ByteSpan(**chunk).subspan(std::min<uint64_t>(cur->skip, (*chunk)->size()));
    cur->skip = 0;
    piece = piece.first(std::min<uint64_t>(piece.size(), cur->remaining));
    cur->remaining -= piece.size();
    return BodyPiece{*chunk, piece};
  };
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
  for (const Digest& end : {*from, *to}) {
    if (catalog_.IsElsewhereArtifact(end)) return NotHere("artifact " + end.ToString());
  }
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
  return StreamChunks(req, record->info.digest, IsPublicDelta(req),
                      std::make_shared<ChunkCursor>(
                          std::make_shared<const std::vector<ChunkRef>>(std::move(record->chunks))),
                      record->info.size);
}

Result<bool> Api::TakeChunk(const Digest& digest, ByteSpan bytes) {
  Result<bool> had = store_.HasChunk(digest);
  if (!had.ok()) return had.status();
  MERIDIAN_RETURN_IF_ERROR(store_.PutChunk(digest, bytes));
  if (!*had) metrics_.CountChunkStored();
  return !*had;
}

HttpResponse Api::PutChunk(const HttpRequest& req, const std::string& digest_text) {
  Result<Digest> digest = Digest::Parse(digest_text);
  if (!digest.ok()) return JsonError(400, "invalid_argument", digest.status().message());
  if (req.body.empty()) return JsonError(400, "invalid_argument", "empty chunk");
  Result<bool> added = TakeChunk(*digest, AsBytes(req.body));
  if (added.status().code() == Status::Code::kCorruption) {
    return JsonError(422, "digest_mismatch", "chunk bytes do not hash to " + digest->ToString());
  }
  if (!added.ok()) return ErrorFor(added.status());
  return JsonOk(*added ? 201 : 200, {{"digest", digest->ToString()}, {"size", req.body.size()}});
}

HttpResponse Api::PutChunks(const HttpRequest& req) {
  Result<std::vector<BatchedChunk>> batch = ParseChunkBatch(AsBytes(req.body));
  if (!batch.ok()) return JsonError(400, "invalid_argument", batch.status().message());
  uint64_t added_chunks = 0;
  for (const BatchedChunk& c : *batch) {
    // Those before it stay stored: a batch sent again finds them present.
    Result<bool> added = TakeChunk(c.digest, c.bytes);
    if (added.status().code() == Status::Code::kCorruption) {
      return JsonError(422, "digest_mismatch", "chunk bytes do not hash to " + c.digest.ToString());
    }
    if (!added.ok()) return ErrorFor(added.status());
    added_chunks += *added ? 1 : 0;
  }
  return JsonOk(200, {{"chunks", batch->size()}, {"added", added_chunks}});
}

HttpResponse Api::MissingChunks(const HttpRequest& req) {
  Result<nlohmann::json> parsed = ParseJson(req.body, limits_.json_body_bytes_max);
  if (!parsed.ok()) return ErrorFor(parsed.status());
  const nlohmann::json& j = *parsed;
  if (!j.is_object() || !j.contains("digests") || !j["digests"].is_array()) {
    return JsonError(400, "invalid_argument", "expected {\"digests\": [\"sha256:…\", …]}");
  }
  // The residency of the model the chunks are for, when the publisher says
  // (meridian publish does): a daemon that may not hold them says so before
  // any byte is sent.
  if (auto it = j.find("regions"); it != j.end()) {
    std::vector<std::string> regions;
    if (!it->is_array() || it->size() > kManifestListMax) {
      return JsonError(400, "invalid_argument", "regions must be a list of region names");
    }
    for (const auto& r : *it) {
      if (!r.is_string() || !IsValidRegionOrProfile(r.get_ref<const std::string&>())) {
        return JsonError(400, "invalid_argument", "regions must be a list of region names");
      }
      regions.push_back(r.get<std::string>());
    }
    if (!catalog_.MayHold(regions)) {
      return JsonError(451, "not_resident",
                       fmt::format("this daemon may not hold bytes of a model resident in {} ({}); upload its chunks "
                                   "to a daemon in one of those regions (meridian publish --store-at URL)",
                                   fmt::join(regions, ", "), catalog_.DescribeJurisdiction()));
    }
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
  std::shared_ptr<const Root> root = roots_.Current();
  Result<VerifiedManifest> verified = VerifySignedManifest(*root, req.body);
  const Status& trust = verified.status();
  if (trust.code() == Status::Code::kInvalidArgument) return JsonError(400, "invalid_argument", trust.message());
  if (trust.code() == Status::Code::kPermissionDenied) return CoSignVersion(req, model, *root);
  if (!trust.ok()) return JsonError(422, "invalid_manifest", trust.message());
  if (Status named = verified->CheckNames(model); !named.ok()) return JsonError(400, "invalid_argument", named.message());
  return CommitVerified(req, *verified);
}

HttpResponse Api::CommitVerified(const HttpRequest& req, const VerifiedManifest& verified) {
  const Manifest& m = verified.manifest();
  // A model resident elsewhere: only its manifest is kept here (rollouts and
  // the audit stay at the origin); its chunks went to a daemon in its region.
  const bool bytes_here = catalog_.MayHold(m);
  Result<bool> made_visible =
      store_.CommitVersion(verified, bytes_here ? Store::Holding::kBytes : Store::Holding::kManifestOnly);
  const Status& st = made_visible.status();
  if (st.code() == Status::Code::kFailedPrecondition) return JsonError(422, "missing_chunks", st.message());
  if (st.code() == Status::Code::kInvalidArgument) return JsonError(422, "manifest_mismatch", st.message());
  if (st.code() == Status::Code::kAlreadyExists) return JsonError(409, "version_exists", st.message());
  if (!st.ok()) return ErrorFor(st);
  // Visible now (or before): whatever signatures waited for it are spent.
  if (Status dropped = pending_.Remove(m.name, m.version); !dropped.ok()) return ErrorFor(dropped);
  nlohmann::json answer = {{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()},
                           {"size", m.size}, {"already_published", !*made_visible}, {"bytes_here", bytes_here}};
  if (!*made_visible) return JsonOk(200, answer);  // a retried publish: the first one stands
  // As committed (from the store's cache): a paged manifest with its chunk
  // list read from its index pages, which the catalog's sets need.
  Result<std::shared_ptr<const Manifest>> committed = store_.GetManifest(m.name, m.version);
  if (!committed.ok()) return ErrorFor(committed.status());
  catalog_.Learn(**committed);
  if (bytes_here) deltas_.QueueForNewVersion(**committed);
  rollouts_.notifier().NotifyAll();  // regions long-poll for new versions
  if (std::optional<HttpResponse> unaudited =
          Audit(req, "publish", m.name + "/" + m.version,
                fmt::format("manifest {} artifact {} size {}", Digest::Of(verified.envelope()).ToString(),
                            m.digest.ToString(), m.size))) {
    return std::move(*unaudited);
  }
  return JsonOk(201, answer);
}

}  // namespace meridian
