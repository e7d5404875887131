// A region daemon in process, following an in-process origin
// (tests/in_process_daemon.h) over real HTTP on loopback: the origin's Api
// served by an HttpServer on 127.0.0.1 (a free port), which a test stops and
// starts again on the same port ("origin away"); and the region's store with
// every service meridiand wires for a region (daemon/main.cc): its Catalog,
// Enrolment, RootChain, Rollouts, DeltaService, Retention, an Api serving as
// the region, its ReportOutbox, and a Follower pointed at the origin with the
// origin's mirror token. The region has a FakeClock of its own, so expiries
// are tested by moving it; the follower and the outbox talk HTTP on their own
// threads in real time, so a test awaits their progress with WaitFor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "daemon/api.h"
#include "daemon/follower.h"
#include "daemon/http_server.h"
#include "daemon/outbox.h"
#include "tests/in_process_daemon.h"

namespace rocksdb {
class Env;
}

namespace meridian::testing {

// The origin's Api over HTTP on 127.0.0.1, served on a thread of its own
// from construction until Stop() or destruction.
class ServedOrigin {
 public:
  explicit ServedOrigin(InProcessDaemon& origin);
  ~ServedOrigin();
  ServedOrigin(const ServedOrigin&) = delete;
  ServedOrigin& operator=(const ServedOrigin&) = delete;

  // Stops listening, answers held long polls and joins the server's threads:
  // the origin is away. Nothing when stopped already.
  void Stop();
  // Serves again on the port it had (REQUIREs that it could bind it).
  void Start();
  bool serving() const { return server_ != nullptr; }
  uint16_t port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:PORT"

 private:
  InProcessDaemon& origin_;
  uint16_t port_ = 0;  // 0 until first bound
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

struct InProcessRegionOptions {
  std::string region = "sg";
  // The store's Env: nullptr for an in-memory one of the region's own
  // (RocksDB's MemEnv); rocksdb::Env::Default() for the real file system.
  rocksdb::Env* env = nullptr;
  bool sync_writes = false;  // synced store writes: what a power-cut test needs
  // The follower's; its region is set from `region`. The backoff is real time
  // (the follower waits on a condition variable), hence short here.
  FollowerOptions follower = {.region = "sg", .poll_wait_s = 25, .retry_ms_max = 100};
  OutboxOptions outbox = {.linger_ms = 10, .retry_ms_max = 100};
  bool follow = true;  // whether the constructor's Open starts the follower (else Follow() does)
  long stall_timeout_ms = UpstreamOptions{}.stall_timeout_ms;  // the follower's and the outbox's
};

class InProcessRegion {
 public:
  // Opens at once (Open(nullptr, options.follow)), following `upstream_urls` (in that order of
  // preference) with the mirror token of `origin`, trusting the root `origin` started with.
  InProcessRegion(const InProcessDaemon& origin, std::vector<std::string> upstream_urls,
                  InProcessRegionOptions options = {});
  ~InProcessRegion();
  InProcessRegion(const InProcessRegion&) = delete;
  InProcessRegion& operator=(const InProcessRegion&) = delete;

  FakeClock clock;
  TempDir dir;  // the store's directory (in memory, on the real disk or on a test's Env)

  // Opens the store at dir/store on `env` (nullptr: options' env), loads every
  // service from it and starts the outbox and (with `follow`) the follower:
  // a daemon start. REQUIREs each step; call with the region closed.
  void Open(rocksdb::Env* env = nullptr, bool follow = true);
  // Starts the follower of a region opened without.
  void Follow() { follower->Start(); }
  // Stops the follower and the outbox, then closes every service and the
  // store, newest first: a daemon stop (or, with its file system's power off,
  // a crash). Nothing when closed already.
  void Close();
  bool open() const { return store != nullptr; }

  // One request to the region's Api (CallApi).
  HttpResponse Call(const std::string& method, const std::string& target, const std::string& body = "",
                    const std::string& authorization = "") {
    return CallApi(*api, method, target, body, authorization);
  }
  FollowerStatus follower_status() const { return follower->status(); }

  const InProcessRegionOptions options;

  // The region's parts while open, as meridiand wires them (null when closed).
  std::unique_ptr<rocksdb::Env> memory_env;  // options.env == nullptr: kept across Close and Open
  std::unique_ptr<Store> store;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<Rollouts> rollouts;
  std::unique_ptr<DeltaService> deltas;
  std::unique_ptr<Enrolment> enrolment;
  std::unique_ptr<RootChain> roots;
  std::unique_ptr<PendingReleases> pending;
  std::unique_ptr<Catalog> catalog;
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<Credentials> credentials;
  std::unique_ptr<Retention> retention;
  ApiTokens tokens{"region-publisher-token", "region-operator-token", "region-terminal-token", "region-mirror-token"};
  std::unique_ptr<Api> api;
  std::unique_ptr<Follower> follower;
  std::unique_ptr<ReportOutbox> outbox;

 private:
  const std::string root_json_;
  const UpstreamOptions upstream_;
};

// The newest state_version among the channel states `rollouts` holds (0:
// none): what a region adopted, or what an origin signed.
uint64_t HeldStateVersion(const Rollouts& rollouts);

}  // namespace meridian::testing
