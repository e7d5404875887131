// An origin meridiand in process: its store and every service the daemon
// builds, with the Api on top, called as the HTTP server calls it (Admit on
// the head, then Handle) but without a socket, over a real RocksDB in a
// in-memory file system (RocksDB's MemEnv) and a FakeClock. Time moves only when a test moves it,
// and Tick() is the daemon's periodic tick: soak times, expiries and
// refreshes are tested in milliseconds. A few end-to-end tests keep the
// process (tests/*_integration_test.cc); the rest of what takes time is here.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "daemon/api.h"
#include "signing/signing.h"
#include "tests/harness.h"

namespace meridian::testing {

// One request to `api` as the HTTP server makes it: Admit, then (unless
// refused) Handle and Completed. A body over the route's limit is refused 413
// as the server would. `authorization` is the header's whole value
// ("Bearer …"), empty for none.
HttpResponse CallApi(Api& api, const std::string& method, const std::string& target, const std::string& body = "",
                     const std::string& authorization = "");

class InProcessDaemon {
 public:
  // With `makes_deltas`, the delta service has the online key, as an
  // origin's: each publish queues deltas from the versions before it, made on
  // its thread (deltas->WaitIdle()); without, it has none and makes none.
  // `jurisdiction`: the origin's declared one (its Catalog's).
  explicit InProcessDaemon(RolloutsOptions rollouts_options = {}, bool makes_deltas = false,
                           std::string jurisdiction = "");
  ~InProcessDaemon();

  FakeClock clock;

  // One request to this daemon's Api (CallApi).
  HttpResponse Call(const std::string& method, const std::string& target, const std::string& body = "",
                    const std::string& authorization = "") {
    return CallApi(*api, method, target, body, authorization);
  }
  // Call with the operator's token; the JSON body of a 2xx answer (REQUIREd).
  nlohmann::json Operator(const std::string& method, const std::string& target, const nlohmann::json& body = nullptr);

  // Publishes `model`@`version` holding `bytes` through the API (one chunk,
  // the manifest signed by the root's release key); REQUIREs success.
  void Publish(const std::string& model, const std::string& version, const std::string& bytes);
  // The same with the artifact in `chunks`, in order (each PUT first); with
  // `chunks_per_page`, a paged manifest of index pages that long (PUT too);
  // resident in `regions` (empty: anywhere).
  void Publish(const std::string& model, const std::string& version, const std::vector<std::string>& chunks,
               size_t chunks_per_page = 0, const std::vector<std::string>& regions = {});
  // "Bearer <credential>" of terminal `id`, enrolled and issued through the
  // API on first use (with the clock's time).
  std::string TerminalAuthorization(const std::string& id);

  // The daemon's periodic work (gates, re-signing, terminal records).
  void Tick() { rollouts->Tick(); }

  // The one key of the root, in every role (root, release, online): made
  // again for each service that takes one, as keys are not copied.
  static SecretKey Key();

  // The daemon's parts, as meridiand wires them; open to tests that build
  // more on them (a region's Api over the same store, in routes_test).
  TempDir dir;  // the store's directory and LOG (its files are in memory)
  std::unique_ptr<rocksdb::Env> memory_env;
  std::unique_ptr<Store> store;
  std::unique_ptr<RootChain> roots;
  std::unique_ptr<PendingReleases> pending;
  Metrics metrics;
  std::unique_ptr<Rollouts> rollouts;
  std::unique_ptr<DeltaService> deltas;
  Catalog catalog{""};
  std::unique_ptr<Enrolment> enrolment;
  std::unique_ptr<Credentials> credentials;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<Retention> retention;
  ApiTokens tokens{"publisher-token", "operator-token", "terminal-token", "mirror-token"};
  std::unique_ptr<Api> api;

 private:
  std::map<std::string, SecretKey> terminal_keys_;
  std::map<std::string, std::string> terminal_credentials_;
};

}  // namespace meridian::testing
