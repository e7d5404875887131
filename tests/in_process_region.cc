// The in-process region and served origin of tests/in_process_region.h.
#include "tests/in_process_region.h"

#include <algorithm>

#include <catch2/catch.hpp>

#include <rocksdb/env.h>

namespace meridian::testing {

namespace {

template <typename T>
std::unique_ptr<T> OrDie(Result<std::unique_ptr<T>> r, const char* what) {
  INFO(what << ": " << r.status().ToString());
  REQUIRE(r.ok());
  return std::move(*r);
}

// The root the origin started with (its chain's first), as a region is given it at init.
std::string InitialRoot(const RootChain& roots) {
  for (int64_t v = 1; v <= roots.latest_version(); ++v) {
    if (Result<std::string> json = roots.EnvelopeJson(v); json.ok()) return *json;
  }
  FAIL("the origin has no root");
  return "";
}

}  // namespace

uint64_t HeldStateVersion(const Rollouts& rollouts) {
  uint64_t newest = 0;
  for (const Rollouts::ChannelSnapshot& c : rollouts.Channels()) newest = std::max(newest, c.state.state_version);
  return newest;
}

// ---- ServedOrigin

ServedOrigin::ServedOrigin(InProcessDaemon& origin) : origin_(origin) { Start(); }

ServedOrigin::~ServedOrigin() { Stop(); }

void ServedOrigin::Start() {
  if (server_ != nullptr) return;
  // Two threads: a held long poll must not keep the follower's other requests waiting.
  auto server = std::make_unique<HttpServer>(
      *origin_.api, HttpServerOptions{.host = "127.0.0.1", .port = port_, .threads = 2,
                                      .drain_timeout = std::chrono::milliseconds(2'000)});
  Status st = server->Listen();
  INFO("serving the origin on 127.0.0.1:" << port_ << ": " << st.ToString());
  REQUIRE(st.ok());
  port_ = server->port();
  server_ = std::move(server);
  thread_ = std::thread([s = server_.get()] { s->Run(); });
}

void ServedOrigin::Stop() {
  if (server_ == nullptr) return;
  server_->Stop();
  thread_.join();
  server_.reset();
}

std::string ServedOrigin::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

// ---- InProcessRegion

InProcessRegion::InProcessRegion(const InProcessDaemon& origin, std::vector<std::string> upstream_urls,
                                 InProcessRegionOptions o)
    : options(std::move(o)),
      root_json_(InitialRoot(*origin.roots)),
      upstream_{.urls = std::move(upstream_urls),
                .mirror_token = origin.tokens.mirror,
                .timeout_ms = 60'000,
                .stall_timeout_ms = options.stall_timeout_ms} {
  if (options.env == nullptr) memory_env.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  Open(nullptr, options.follow);
}

InProcessRegion::~InProcessRegion() { Close(); }

void InProcessRegion::Open(rocksdb::Env* env, bool follow) {
  REQUIRE_FALSE(open());
  if (env == nullptr) env = options.env != nullptr ? options.env : memory_env.get();
  // In the order of daemon/main.cc.
  store = OrDie(Store::Open(dir / "store", StoreOptions{.sync_writes = options.sync_writes,
                                                        .clock = &clock,
                                                        .env = env}),
                "opening the region's store");
  audit = OrDie(AuditLog::Open(*store, clock), "opening the audit log");
  rollouts = OrDie(Rollouts::Open(*store, std::nullopt, clock, {}), "loading the rollouts");
  deltas = std::make_unique<DeltaService>(*store, std::nullopt);
  enrolment = OrDie(Enrolment::OpenRegion(*store, clock), "loading the enrolment");
  roots = OrDie(RootChain::Open(*store, root_json_), "loading the roots");
  pending = OrDie(PendingReleases::Open(*store, *roots->Current()), "loading the pending releases");
  catalog = std::make_unique<Catalog>(options.region);
  Status loaded = catalog->Load(*store);
  INFO(loaded.ToString());
  REQUIRE(loaded.ok());
  metrics = std::make_unique<Metrics>();
  credentials = OrDie(Credentials::Open(*store, clock), "loading the credentials");
  retention = std::make_unique<Retention>(*store, *catalog, *rollouts, *deltas, *audit, clock,
                                          RetentionOptions{.interval_ms = 0});
  api = std::make_unique<Api>(*store, *catalog, *roots, *pending, tokens, *credentials, *audit, *enrolment, *metrics,
                              *rollouts, *deltas, *retention, clock);
  FollowerOptions follower_options = options.follower;
  follower_options.region = options.region;
  follower = std::make_unique<Follower>(*store, *catalog, *enrolment, *roots, *rollouts, *deltas, clock, upstream_,
                                        follower_options);
  outbox = OrDie(ReportOutbox::Open(*store, options.region, upstream_, options.outbox), "opening the outbox");
  deltas->SetMissHandler([f = follower.get()](const Digest& from, const Digest& to) { f->WantDelta(from, to); });
  api->ServeAsRegion(options.region, *outbox, *follower);
  if (follow) Follow();
}

void InProcessRegion::Close() {
  if (!open()) return;
  // Those that write on threads of their own first, then the rest, newest first.
  outbox.reset();
  follower.reset();
  api.reset();
  retention.reset();
  credentials.reset();
  metrics.reset();
  catalog.reset();
  pending.reset();
  roots.reset();
  enrolment.reset();
  deltas.reset();
  rollouts.reset();
  audit.reset();
  store.reset();
}

}  // namespace meridian::testing
