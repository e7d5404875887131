// The /v1 HTTP API of meridiand over the store: routing, validation,
// authorisation, caching headers and Range, as a plain HttpHandler.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "daemon/audit_log.h"
#include "daemon/catalog.h"
#include "daemon/credentials.h"
#include "daemon/deltas.h"
#include "daemon/enrolment.h"
#include "daemon/follower.h"
#include "daemon/http.h"
#include "daemon/metrics.h"
#include "daemon/outbox.h"
#include "daemon/pending_releases.h"
#include "daemon/root_chain.h"
#include "daemon/retention.h"
#include "daemon/routes.h"
#include "daemon/rollouts.h"
#include "signing/signing.h"
#include "store/store.h"

namespace meridian {

class ChunkCursor;

// The built-in bearer token of each role: publishing, control (rollouts),
// reading models (`terminal`: it reads, but speaks for no terminal: a
// terminal's own routes take its credential or client certificate), and
// regions downstream (mirror). A token of one role never opens another
// role's routes (403). People have named publisher and operator credentials
// besides (daemon/credentials.h); the built-in ones act as "publisher" and
// "operator", the mirror token as "mirror".
struct ApiTokens {
  std::string publisher;
  std::string operator_token;
  std::string terminal;
  std::string mirror;
};

struct ApiLimits {
  uint64_t json_body_bytes_max = 8ull << 20;         // JSON requests (missing-chunk queries, …)
  uint64_t missing_query_digests_max = 100'000;      // digests in one POST /v1/chunks/missing
  uint64_t target_wait_seconds_max = 60;             // long-poll hold of GET /v1/terminals/{id}/target and /v1/sync
  size_t forwarded_reports_max = 1000;               // reports per POST /v1/reports
  // A terminal's report: its known fields take under 3 KiB. A region sends
  // them upstream 500 to a request (OutboxOptions::batch_max), which must
  // stay under the upstream's json_body_bytes_max, or the batch is refused
  // (413) and every report behind it waits forever.
  uint64_t report_body_bytes_max = 8u << 10;
  size_t regions_max = 1000;                         // regions downstream tracked in GET /v1/regions
  size_t fleet_versions_max = 10'000;                 // (model, channel, version) rows in GET /v1/fleet
  size_t fleet_page_max = 1'000;                      // terminals in one GET /v1/fleet/terminals
};
// A region adds its region and profile to what a terminal reported (a few
// hundred bytes at most) before relaying it.
static_assert(ApiLimits{}.report_body_bytes_max + 1024 <= kForwardedReportBytesMax);

class Api final : public HttpHandler {
 public:
  // The newest root of `roots` decides which keys may sign manifests and
  // terminal credentials; `pending` keeps releases waiting for co-signers;
  // `tokens` and `credentials` guard the publishing and control routes, and
  // reads of private models; `enrolment` decides which terminals may speak
  // (their credentials); `catalog` decides residency (451) and public
  // access; `audit` records who did what. All references must outlive the Api.
  Api(Store& store, Catalog& catalog, RootChain& roots, PendingReleases& pending, ApiTokens tokens,
      Credentials& credentials, AuditLog& audit, Enrolment& enrolment, Metrics& metrics, Rollouts& rollouts,
      DeltaService& deltas, Retention& retention, const Clock& clock, ApiLimits limits = {});

  // Matches the route, checks the caller's role on the headers (and names
  // the caller in head.caller) and sets the route's body limit. Handle takes
  // only requests Admit admitted.
  HttpAdmission Admit(HttpRequest& head) override;
  HttpResponse Handle(const HttpRequest& request) override;
  void Completed(const HttpRequest& request, int status, uint64_t body_bytes_sent) override;

  // Flips /readyz to 503 (at shutdown).
  void SetReady(bool ready) { ready_ = ready; }
  // A store fault that stops writes (Store::Health), or "" once it cleared:
  // /readyz answers 503 with it meanwhile.
  void SetStoreFault(std::string reason);

  // Serves as region `region` (call before serving): terminals' reports go to
  // `outbox`, publishing and rollout control are refused (403), and a terminal
  // that names another region is refused (400).
  void ServeAsRegion(std::string region, ReportOutbox& outbox, Follower& follower);

  // The routes served in the present role (origin, or region after ServeAsRegion).
  const RouteTable& routes() const { return routes_; }

 private:
  RouteTable BuildRoutes();
  const std::string& TokenOf(CallerRole role) const;
  // Whether an anonymous read of the route's object is allowed: public, and
  // held here (else the credential check answers first, so an anonymous
  // caller learns nothing of private or absent objects).
  bool IsPublicChunk(const HttpRequest& req) const;
  bool IsPublicArtifact(const HttpRequest& req) const;
  bool IsPublicVersion(const HttpRequest& req) const;
  bool IsPublicDelta(const HttpRequest& req) const;
  // GET /v1/access: the credential check of the request a proxy is about to
  // serve (nginx auth_request), from X-Original-URI and its headers.
  HttpResponse Access(const HttpRequest& req);
  // The 451 for bytes of a model this daemon may not hold.
  HttpResponse NotHere(std::string_view what) const;
  HttpResponse GetChunk(const HttpRequest& req, const std::string& digest_text);
  HttpResponse GetArtifact(const HttpRequest& req, const std::string& digest_text);
  // A content-addressed object of `size` bytes stored as the chunks `chunks`
  // walks, with Range and caching headers.
  HttpResponse StreamChunks(const HttpRequest& req, const Digest& digest, bool is_public,
                            std::shared_ptr<ChunkCursor> chunks, uint64_t size);
  HttpResponse GetDelta(const HttpRequest& req, const std::string& from_text, const std::string& to_text, bool info);
  HttpResponse PutChunk(const HttpRequest& req, const std::string& digest_text);
  HttpResponse PutChunks(const HttpRequest& req);  // a chunk batch (manifest/chunk_batch.h)
  // Stores an uploaded chunk (the store re-hashes it: Corruption when it does
  // not match `digest`); whether it was new.
  Result<bool> TakeChunk(const Digest& digest, ByteSpan bytes);
  HttpResponse MissingChunks(const HttpRequest& req);
  HttpResponse CommitVersion(const HttpRequest& req, const std::string& model);
  // Makes a version signed by a threshold of release keys visible (a publish,
  // or the co-signature that completed one) and drops it from `pending_`.
  HttpResponse CommitVerified(const HttpRequest& req, const VerifiedManifest& verified);
  // A manifest with fewer release signatures than the threshold (api_signing.cc):
  // its signatures join those kept for the version; committed once they reach it.
  HttpResponse CoSignVersion(const HttpRequest& req, const std::string& model, const Root& root);
  HttpResponse ListPending();
  HttpResponse GetPending(const std::string& model, const std::string& version);
  // The chain of roots: GET /v1/roots, GET /v1/roots/{version}, POST /v1/roots.
  HttpResponse ListRoots();
  HttpResponse GetRoot(const std::string& version);
  HttpResponse PushRoot(const HttpRequest& req);
  HttpResponse ListModels(const HttpRequest& req);
  HttpResponse ListVersions(const HttpRequest& req, const std::string& model);
  HttpResponse GetVersion(const std::string& model, const std::string& version);
  HttpResponse DeleteVersion(const HttpRequest& req, const std::string& model, const std::string& version);
  // POST /v1/collect: the retention policy and a collection, now.
  HttpResponse Collect(const HttpRequest& req);
  // The optional {"reason": "…"} body of an operator's action; InvalidArgument
  // for anything else (an unknown field is a typo).
  Result<std::string> ReasonOf(const HttpRequest& req) const;
  // POST /v1/terminals/{id}/credential: a terminal's signed request (its head only).
  HttpResponse IssueCredential(const HttpRequest& req, const std::string& terminal_id);
  HttpResponse AddTerminals(const HttpRequest& req);
  HttpResponse ListTerminals(const HttpRequest& req);
  HttpResponse ChangeTerminal(const HttpRequest& req, const std::string& terminal_id, EnrolmentState state);
  // The terminal credential the request carries, verified (memoised: a
  // terminal sends the same one for hours); nullopt when it carries none.
  std::optional<Result<TerminalCredential>> CredentialOf(const HttpRequest& req) const;
  // What a terminal declared, with what its credential says in place of it
  // where the credential says anything: a terminal cannot claim a profile or
  // region it was not enrolled with (a region's daemon decides the region).
  void ApplyCredential(const HttpRequest& req, std::string* profile, std::string* region) const;
  HttpResponse TerminalTarget(const HttpRequest& req, const std::string& terminal_id);
  HttpResponse TerminalReport(const HttpRequest& req, const std::string& terminal_id);         // origin: counts it
  HttpResponse ForwardTerminalReport(const HttpRequest& req, const std::string& terminal_id);  // region: queues it upstream
  HttpResponse StartRollout(const HttpRequest& req);
  HttpResponse PlanRollout(const HttpRequest& req);
  HttpResponse ListRollouts();
  HttpResponse GetRollout(const std::string& id, int status = 200);
  HttpResponse ActOnRollout(const HttpRequest& req, const std::string& id, const std::string& action);
  HttpResponse RolloutEvents(const std::string& id);
  HttpResponse ListFleetVersions();
  HttpResponse ListFleetTerminals(const HttpRequest& req);
  HttpResponse Sync(const HttpRequest& req);
  HttpResponse ForwardedReports(const HttpRequest& req);       // origin: counts them once
  HttpResponse RelayForwardedReports(const HttpRequest& req);  // region: queues them upstream
  HttpResponse ListRegions();
  // Named credentials (POST/GET /v1/tokens, POST /v1/tokens/{name}/revoke), audited.
  HttpResponse CreateToken(const HttpRequest& req);
  HttpResponse ListTokens();
  HttpResponse RevokeToken(const HttpRequest& req, const std::string& name);
  // GET /v1/audit: a page of the audit log, events as stored.
  HttpResponse ReadAudit(const HttpRequest& req);
  // Appends to the audit log as the request's caller; the 500 to send when
  // that failed (what it records was done, and is not answered as success).
  std::optional<HttpResponse> Audit(const HttpRequest& req, std::string_view action, std::string_view subject,
                                    std::string_view detail = {});
  // GET /v1/residency: per model, the bytes this daemon and each region downstream hold.
  HttpResponse Residency();
  // POST /v1/holdings: a region downstream says what it holds of each model.
  HttpResponse RegionHoldings(const HttpRequest& req);
  // What this daemon knows of one region following it: a row of
  // GET /v1/regions and the meridian_region_* metrics.
  struct RegionView {
    std::string region;
    bool reachable = false;  // its next poll is due
    bool healthy = false;    // reachable, and its last round went without error
    std::string last_error;
    uint64_t sync_version = 0;
    uint64_t behind = 0;              // changes it has not applied
    std::optional<int64_t> lag_ms;    // since it last held the current state (0 in step); none when known only from its reports
    int64_t last_seen_ms = 0;
    int64_t state_expires_ms = 0;     // see RegionSeen
    uint64_t stored_bytes = 0;
    uint64_t terminals = 0;
    uint64_t reports_received = 0;    // distinct reports of its terminals (durable)
  };
  // Every region seen polling or known from its reports, by name; sets
  // *current_sync_version to this daemon's.
  std::vector<RegionView> RegionViews(uint64_t* current_sync_version);
  HttpResponse RenderMetrics();
  // The families of /metrics that Metrics does not count itself.
  std::vector<MetricFamily> StoreFamilies();
  std::vector<MetricFamily> RolloutFamilies();
  std::vector<MetricFamily> RegionFamilies();
  SyncDocument BuildSyncDocument();
  // Empty when the request carries a valid credential of `role` (or the
  // role is kAnyone, or a terminal's route is asked with a verified client
  // certificate whose CN is that terminal's id), with req.caller set to the
  // credential's name; else the 401/403 to send (counted in
  // meridian_auth_failures_total).
  std::optional<HttpResponse> CheckBearer(HttpRequest& req, CallerRole role) const;
  // Whose a bearer token is: a built-in token's role (named after it; a
  // terminal's stays unnamed), or a named credential, revoked or not.
  struct Caller {
    CallerRole role;
    std::string name;
    bool revoked = false;
  };
  std::optional<Caller> Identify(std::string_view token) const;
  // CheckBearer for a terminal's own routes: its credential, or its client
  // certificate; either for that terminal only, and only while enrolled.
  // req.caller is set to the terminal's id.
  std::optional<HttpResponse> CheckTerminal(HttpRequest& req) const;

  Store& store_;
  Catalog& catalog_;
  RootChain& roots_;
  PendingReleases& pending_;
  ApiTokens tokens_;
  Credentials& credentials_;
  AuditLog& audit_;
  Enrolment& enrolment_;
  Metrics& metrics_;
  Rollouts& rollouts_;
  DeltaService& deltas_;
  Retention& retention_;
  const Clock& clock_;  // credential expiry, regions' last sight, pending releases, roots
  ApiLimits limits_;
  std::atomic<bool> ready_{true};
  mutable std::mutex verified_mu_;
  // Credentials verified already, by their text (cleared when full).
  mutable std::unordered_map<std::string, TerminalCredential> verified_credentials_;  // guarded by verified_mu_
  std::mutex store_fault_mu_;
  std::string store_fault_;  // guarded by store_fault_mu_
  RouteTable routes_;

  // Region role (empty region_: origin).
  std::string region_;
  ReportOutbox* outbox_ = nullptr;
  Follower* follower_ = nullptr;

  // What this daemon knows of the regions following it (from their polls).
  struct RegionSeen {
    uint64_t sync_version = 0;   // the upstream's sync version the region holds
    int64_t last_seen_ms = 0;
    int64_t expect_by_ms = 0;    // its next poll is due by then
    int64_t in_step_ms = 0;      // last time it held the current sync version
    uint64_t stored_bytes = 0;
    uint64_t terminals = 0;
    int64_t state_expires_ms = 0;  // the earliest expiry of the channel states it holds, as it last said (0: none)
    std::string last_error;      // the region's own word on its last round: verification failures and the like
    std::map<std::string, ModelHolding> holdings;  // per model, what it last said it holds (POST /v1/holdings)
    int64_t holdings_ms = 0;     // when it said so
    int64_t persisted_ms = 0;    // when this was last written to the store
  };
  // Region records survive restarts (state "region-seen/<region>"), so the
  // last-seen times stay known; loaded by the constructor.
  void LoadRegionsSeen();
  // The JSON record of `seen` to write, when its last write is old enough or it `changed`.
  static std::optional<std::string> RegionSeenRecordIfDue(std::string_view region, const RegionSeen& seen, bool changed);
  std::mutex forwarded_mu_;  // POST /v1/reports at the origin
  std::mutex regions_mu_;
  std::map<std::string, RegionSeen> regions_seen_;                       // guarded by regions_mu_
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> residency_;  // guarded by regions_mu_: (model, version) -> regions
};

}  // namespace meridian
