// meridiand: the daemon (serve), and its `init` and `fsck` subcommands.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/clock.h"
#include "base/file.h"
#include "base/periodic.h"
#include "base/service_notify.h"
#include "daemon/api.h"
#include "daemon/audit_log.h"
#include "daemon/config.h"
#include "daemon/credentials.h"
#include "daemon/data_dir.h"
#include "daemon/descriptors.h"
#include "daemon/follower.h"
#include "daemon/outbox.h"
#include "daemon/http_server.h"
#include "daemon/rollouts.h"
#include "manifest/manifest.h"
#include "store/store.h"
#include "trust/trust.h"

using namespace meridian;

namespace {

constexpr std::chrono::milliseconds kTickInterval{1000};

void Log(std::string_view message) {
  fmt::print(stderr, "{} meridiand: {}\n", FormatRfc3339(SystemClock::Get().NowUnixMillis()), message);
}

int Fail(std::string_view message) {
  fmt::print(stderr, "meridiand: {}\n", message);
  return 1;
}

// Settings from --config FILE (TOML); flags given on the command line win.
Status ApplyConfig(ServeOptions& o, const CLI::App& app) {
  if (o.config.empty()) return Status::Ok();
  Result<std::string> text = ReadFileToString(o.config, kServeConfigBytesMax);
  if (!text.ok()) return text.status();
  return ApplyConfigText(o, *text, o.config, [&app](std::string_view flag) { return app.count(std::string(flag)) != 0; });
}

// The chain of roots: DATA/root.json and the rotations the store keeps.
Result<std::unique_ptr<RootChain>> OpenRoots(const DataDir& d, Store& store) {
  Result<std::string> text = ReadFileToString(d.root(), kRootEnvelopeBytesMax);
  if (!text.ok()) return text.status();
  Result<std::unique_ptr<RootChain>> roots = RootChain::Open(store, std::move(*text));
  if (!roots.ok()) return roots.status().WithContext(d.root());
  return roots;
}

// glibc gives each thread that allocates an arena of its own, up to eight per
// core: the blocking pool's threads (16 at least), the server's and RocksDB's
// each grow and trim their own, and the kernel zeroes the same memory again
// for each. One arena per core, as no more threads run at once: a new 1 GiB
// publish took 4.9–6.1 s instead of 6.6–10.4 s, the daemon's peak RSS 215–252
// MiB instead of 371–451 MiB, and 10,000 long polls were held in 107 MiB
// instead of 125 MiB (bench/ingest/RESULTS.md). MALLOC_ARENA_MAX, when set, wins.
void LimitMallocArenas() {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return;
  ::mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
}

int Serve(ServeOptions o) {
  LimitMallocArenas();  // before any thread starts
  DataDir d{o.data};
  std::string host;
  uint16_t port = 0;
  if (!SplitHostPort(o.listen, &host, &port)) return Fail("--listen must be HOST:PORT, got '" + o.listen + "'");
  Result<Root> root = LoadTrustedRootFile(d.root());
  if (!root.ok()) {
    return Fail(fmt::format("{} (is {} initialised? run: meridiand init --data {} --release-key KEY.pub)",
                            root.status().message(), d.dir, d.dir));
  }
  const bool region = o.role == "region";
  if (!region && o.role != "origin") return Fail("--role must be origin or region, got '" + o.role + "'");
  if (region) {
    if (!IsValidRegionOrProfile(o.region)) return Fail("a region needs --region ID ([a-z0-9][a-z0-9-]{0,31})");
    if (o.upstream.empty()) return Fail("a region needs --upstream URL[,URL…] (the origin or another region)");
    if (o.upstream_token_file.empty()) return Fail("a region needs --upstream-token-file (the upstream's mirror.token)");
    if (!o.jurisdiction.empty() && o.jurisdiction != o.region) {
      return Fail("a region's jurisdiction is its --region; leave --jurisdiction out");
    }
    o.jurisdiction = o.region;
  } else if (!o.region.empty() || !o.upstream.empty()) {
    return Fail("--region and --upstream are for --role region");
  } else if (!o.jurisdiction.empty() && !IsValidRegionOrProfile(o.jurisdiction)) {
    return Fail("--jurisdiction must be a region name ([a-z0-9][a-z0-9-]{0,31}), got '" + o.jurisdiction + "'");
  }
  Result<TlsServerOptions> tls = ServerTls(o);
  if (!tls.ok()) return Fail(tls.status().message());
  // An origin signs with its online key and takes releases; a region holds
  // no key, and takes only the chunks of models resident in its region (its
  // publisher.token is made at its first start).
  Result<std::string> publisher = region ? ReadOrCreateTokenFile(d.publisher_token()) : ReadTokenFile(d.publisher_token());
  if (!publisher.ok()) return Fail(publisher.status().ToString());
  std::optional<SecretKey> online_key, delta_key, credential_key;
  if (!region) {
    for (std::optional<SecretKey>* k : {&online_key, &delta_key, &credential_key}) {
      Result<SecretKey> key = ReadSecretKeyFile(d.online_key());
      if (!key.ok()) return Fail(d.online_key() + ": " + key.status().message());
      *k = std::move(*key);
    }
  }
  Result<std::string> operator_token = ReadTokenFile(d.operator_token());
  if (!operator_token.ok()) return Fail(operator_token.status().ToString());
  Result<std::string> terminal_token = ReadOrCreateTokenFile(d.terminal_token());
  if (!terminal_token.ok()) return Fail(terminal_token.status().ToString());
  Result<std::string> mirror_token = ReadOrCreateTokenFile(d.mirror_token());
  if (!mirror_token.ok()) return Fail(mirror_token.status().ToString());
  std::string upstream_token;
  TlsClientOptions upstream_tls{o.upstream_ca_file, o.upstream_client_certificate, o.upstream_client_key,
                                o.upstream_allow_insecure_http};
  if (region) {
    Result<std::string> t = ReadTokenFile(o.upstream_token_file);
    if (!t.ok()) return Fail(t.status().ToString());
    upstream_token = *t;
    for (const std::string& url : o.upstream) {
      Status st = CheckTransport(url, HttpClientOptions{.bearer_token = upstream_token, .tls = upstream_tls});
      if (!st.ok()) return Fail("--upstream: " + st.message());
    }
  }
  Result<DescriptorBudget> fds = BudgetDescriptors(d.store(), static_cast<uint32_t>(o.connections_max));
  if (!fds.ok()) return Fail(fds.status().message());
  // A region's follower, once it exists, fetches chunks found damaged again from upstream.
  std::atomic<Follower*> repairer = nullptr;
  auto on_damaged_chunk = [&repairer](const Digest& digest, const Status& why) {
    Follower* f = repairer.load();
    Log(fmt::format("chunk {} was stored damaged and has been dropped ({}); {}", digest.ToString(), why.message(),
                    f != nullptr ? "fetching it again from upstream" : "publishing a version that holds it restores it"));
    if (f != nullptr) f->WantChunk(digest);
  };
  Result<std::unique_ptr<Store>> store =
      Store::Open(d.store(), StoreOptions{.create_if_missing = false,
                                          .max_open_files = fds->store_files_max,
                                          .chunk_cache_bytes = static_cast<uint64_t>(o.chunk_cache_bytes),
                                          .on_damaged_chunk = on_damaged_chunk,
                                          .unreferenced_grace_ms = o.unreferenced_grace_ms});
  if (!store.ok()) return Fail("cannot open store: " + store.status().ToString());
  Result<std::unique_ptr<AuditLog>> audit = AuditLog::Open(**store, SystemClock::Get());
  if (!audit.ok()) return Fail("cannot open the audit log: " + audit.status().ToString());
  // The gates' own decisions go to the audit log as the operators' do (the API appends those).
  auto audit_gate_change = [audit_log = audit->get()](const RolloutSpec& spec, const RolloutEvent& e) {
    std::string action = fmt::format("rollout.{}", ActionName(e.action));
    Status st = audit_log->Append(kGateActor, action, spec.id, DescribeRolloutEvent(e));
    if (!st.ok()) Log(fmt::format("the audit log could not record the gate's {} of {}: {}", action, spec.id, st.message()));
  };
  // The enrolled terminals load on a second thread while the rollouts load
  // their known terminals: with a fleet of millions, each is a scan of
  // millions of records, and a restart is ready that much sooner.
  std::future<Result<std::unique_ptr<Enrolment>>> enrolment_loaded = std::async(std::launch::async, [&] {
    return region ? Enrolment::OpenRegion(**store, SystemClock::Get())
                  : Enrolment::OpenOrigin(**store, SystemClock::Get(), std::move(*credential_key),
                                          EnrolmentOptions{.credential_lifetime_ms = o.credential_lifetime_ms});
  });
  Result<std::unique_ptr<Rollouts>> rollouts =
      Rollouts::Open(**store, std::move(online_key), SystemClock::Get(),
                     RolloutsOptions{.state_expiry_ms = o.state_expiry_ms, .state_refresh_ms = o.state_refresh_ms,
                                     .time_zones = o.time_zones, .on_gate_change = audit_gate_change});
  Result<std::unique_ptr<Enrolment>> enrolment = enrolment_loaded.get();
  if (!rollouts.ok()) return Fail("cannot load rollouts: " + rollouts.status().ToString());
  if (!enrolment.ok()) return Fail("cannot load the enrolled terminals: " + enrolment.status().ToString());
  DeltaService deltas(**store, std::move(delta_key), o.deltas);

  Result<std::unique_ptr<RootChain>> roots = OpenRoots(d, **store);
  if (!roots.ok()) return Fail("cannot load the chain of roots: " + roots.status().ToString());
  std::shared_ptr<const Root> newest = (*roots)->Current();
  // Still served, so that a rotation can replace it; agents refuse to act on it.
  if (Status fresh = CheckRootFresh(*newest, SystemClock::Get().NowUnixMillis()); !fresh.ok()) {
    Log("warning: " + fresh.message() + "; rotate it (meridian root rotate, meridian root push)");
  }
  Result<std::unique_ptr<PendingReleases>> pending = PendingReleases::Open(**store, *newest);
  if (!pending.ok()) return Fail("cannot load the releases waiting for signatures: " + pending.status().ToString());
  Catalog catalog(o.jurisdiction);
  if (Status st = catalog.Load(**store); !st.ok()) return Fail("cannot read the stored manifests: " + st.ToString());
  Metrics metrics;
  Result<std::unique_ptr<Credentials>> credentials = Credentials::Open(**store, SystemClock::Get());
  if (!credentials.ok()) return Fail("cannot load the named credentials: " + credentials.status().ToString());
  // A region's follower fetches the newest versions of each model again:
  // its policy keeps at least as many, or the two would undo each other.
  RetentionOptions retention_options = o.retention;
  if (region && retention_options.keep_versions > 0) {
    retention_options.keep_versions = std::max(retention_options.keep_versions, FollowerOptions{}.versions_per_model);
  }
  Retention retention(**store, catalog, **rollouts, deltas, **audit, SystemClock::Get(), retention_options);
  Api api(**store, catalog, **roots, **pending, ApiTokens{*publisher, *operator_token, *terminal_token, *mirror_token},
          **credentials, **audit, **enrolment, metrics, **rollouts, deltas, retention, SystemClock::Get());
  UpstreamOptions upstream{.urls = o.upstream, .mirror_token = upstream_token, .tls = upstream_tls};
  std::unique_ptr<Follower> follower;
  std::unique_ptr<ReportOutbox> outbox;
  if (region) {
    follower = std::make_unique<Follower>(**store, catalog, **enrolment, **roots, **rollouts, deltas, SystemClock::Get(), upstream,
                                          FollowerOptions{.region = o.region, .previous_versions = o.deltas.previous_versions});
    Result<std::unique_ptr<ReportOutbox>> opened = ReportOutbox::Open(**store, o.region, upstream);
    if (!opened.ok()) return Fail("cannot open the report outbox: " + opened.status().ToString());
    outbox = std::move(*opened);
    deltas.SetMissHandler([f = follower.get()](const Digest& from, const Digest& to) { f->WantDelta(from, to); });
    repairer = follower.get();
    api.ServeAsRegion(o.region, *outbox, *follower);
  }
  HttpServerOptions hso;
  hso.host = host;
  hso.port = port;
  hso.threads = o.threads;
  hso.head_timeout = std::chrono::milliseconds(o.head_timeout_ms);
  hso.body_timeout = std::chrono::milliseconds(o.body_timeout_ms);
  hso.connections_max = fds->connections_max;
  hso.tls = *tls;
  hso.on_stopping = [] {
    Log("stopping");
    NotifyStopping();
  };
  // SIGHUP (systemctl reload, a renewed certificate) re-reads the TLS files
  // only: certificates are renewed without dropping a connection, while every
  // other setting and token is bound at start into what serves with it, so a
  // change takes a restart.
  std::string serving;              // the status line, set once listening
  HttpServer* listening = nullptr;  // set once the server exists, before any signal is taken
  hso.on_hangup = [&serving, &listening] {
    NotifyReloading();
    const std::string others = "other settings and tokens are read at start; restart to change them";
    if (!listening->tls()) {
      Log("SIGHUP: nothing to reload (" + others + ")");
    } else if (Status st = listening->ReloadTls(); st.ok()) {
      Log("SIGHUP: reloaded TLS, new connections get " + listening->TlsDescription() + " (" + others + ")");
    } else {
      Log("SIGHUP: TLS not reloaded, still serving the previous certificate: " + st.message());
    }
    NotifyReady(serving);
  };
  HttpServer server(api, hso);
  listening = &server;
  if (Status st = server.Listen(); !st.ok()) return Fail(st.message());
  std::string bound = fmt::format("{}:{}", host.find(':') != std::string::npos ? "[" + host + "]" : host, server.port());
  if (!o.port_file.empty()) {
    if (Status st = WriteFileAtomic(o.port_file, std::to_string(server.port()) + "\n"); !st.ok()) return Fail(st.ToString());
  }
  if (follower) follower->Start();
  retention.Start();
  const char* scheme = server.tls() ? "https" : "http";
  serving = region ? fmt::format("region {} serving {} on {}://{}, following {}", o.region, d.dir, scheme, bound,
                                 fmt::join(o.upstream, ","))
                   : fmt::format("serving {} on {}://{}", d.dir, scheme, bound);
  Log(serving);
  if (server.tls()) Log("TLS: " + server.TlsDescription());
  Log(fmt::format("open-file limit {}: up to {} connections, {} store files", fds->limit, fds->connections_max,
                  fds->store_files_max));
  // Listening: connections wait in the backlog until Run() accepts them.
  NotifyReady(serving);
  // Gates with soak times and expiring signed states need time to pass, not
  // requests: tick once per kTickInterval until the server stops. Each tick
  // also looks at the store: a fault that stops its writes turns /readyz to
  // 503 (logged once) until the store resumes.
  PeriodicThread ticker;
  ticker.Start("the rollout tick", kTickInterval, [&, fault = std::string(), fault_code = Status::Code::kOk]() mutable {
    (*rollouts)->Tick();
    Status health = (*store)->Health();
    std::string now_fault = health.ok() ? "" : health.message();
    // Logged once per kind of fault: each retry on a full disk names another file.
    if (health.code() != fault_code) {
      Log(now_fault.empty() ? "store writes resumed" : "store " + now_fault);
      fault_code = health.code();
    }
    if (now_fault != fault) {
      fault = now_fault;
      api.SetStoreFault(fault);
    }
  });
  // Every chunk is re-hashed on a schedule, not only when it is read: a chunk
  // damaged on disk that nobody asks for is dropped (and logged) before a
  // terminal needs it, so a region fetches it again and a publish restores it.
  PeriodicThread scrubber;
  if (o.scrub_interval_ms > 0) {
    scrubber.Start("a scrub", std::chrono::milliseconds(o.scrub_interval_ms), [&] {
      CheckReport r = (*store)->Check(CheckMode::kRepair);
      Log(fmt::format("scrub: {} chunks and {} manifests checked, {} damaged chunks dropped{}", r.chunks_checked,
                      r.manifests_checked, r.chunks_dropped, r.clean() ? "" : ":"));
      for (const std::string& line : r.faults) Log("scrub: fault: " + line);
    });
  }
  server.Run();
  scrubber.Stop();
  ticker.Stop();
  api.SetReady(false);
  outbox.reset();
  repairer = nullptr;
  follower.reset();
  Log("stopped");
  return 0;
}

int Init(const InitOptions& o) {
  Result<std::vector<std::string>> lines = InitDataDir(o);
  if (!lines.ok()) return Fail(lines.status().message());
  fmt::print("initialised {}\n", o.data_dir);
  for (const std::string& line : *lines) fmt::print("  {}\n", line);
  return 0;
}

int Fsck(const std::string& data, bool repair) {
  DataDir d{data};
  // Read only unless repairing: nothing is written, so a store on a full
  // disk is checked as it is (its WAL replayed in memory). A store from an
  // older build lacks column families added since, which only a read-write
  // open adds.
  Result<std::unique_ptr<Store>> store =
      Store::Open(d.store(), StoreOptions{.create_if_missing = false, .read_only = !repair});
  if (!store.ok() && store.status().code() == Status::Code::kInvalidArgument &&
      store.status().message().find("Column family not found") != std::string::npos) {
    store = Store::Open(d.store(), StoreOptions{.create_if_missing = false});
  }
  if (!store.ok()) return Fail("cannot open store: " + store.status().ToString());
  CheckReport report = (*store)->Check(repair ? CheckMode::kRepair : CheckMode::kReport);
  // Signatures too: every stored manifest must verify against the newest root.
  Result<std::unique_ptr<RootChain>> roots = OpenRoots(d, **store);
  std::shared_ptr<const Root> root = roots.ok() ? (*roots)->Current() : nullptr;
  if (!roots.ok()) {
    report.faults.push_back("root: " + roots.status().message());
  } else if (Result<std::vector<std::string>> models = (*store)->ListModels(); models.ok()) {
    for (const std::string& model : *models) {
      Result<std::vector<std::string>> versions = (*store)->ListVersions(model);
      if (!versions.ok()) continue;
      for (const std::string& v : *versions) {
        Result<std::string> env_json = (*store)->GetEnvelope(model, v);
        Result<VerifiedManifest> verified =
            env_json.ok() ? VerifySignedManifest(*root, std::move(*env_json)) : Result<VerifiedManifest>(env_json.status());
        Status st = verified.ok() ? verified->CheckNames(model, v) : verified.status();
        if (!st.ok()) report.faults.push_back(fmt::format("manifest {} {}: {}", model, v, st.message()));
      }
    }
  }
  // And the audit log's chain, up to the head the daemon recorded.
  Result<std::unique_ptr<AuditLog>> audit = AuditLog::Open(**store, SystemClock::Get());
  Result<AuditVerdict> chain = audit.ok() ? (*audit)->Verify() : Result<AuditVerdict>(audit.status());
  if (!chain.ok()) {
    report.faults.push_back("audit log: " + chain.status().message());
  } else if (chain->fault) {
    report.faults.push_back(fmt::format("audit log: event {} {}", chain->fault->seq, chain->fault->problem));
  } else {
    fmt::print("audit log: {} events, head {}\n", chain->head.seq, chain->head.ToString());
  }
  for (const std::string& f : report.faults) fmt::print("fault: {}\n", f);
  fmt::print("{}: {} chunks, {} manifests checked, {} faults\n", report.clean() ? "clean" : "FAULTY",
             report.chunks_checked, report.manifests_checked, report.faults.size());
  if (repair) {
    fmt::print("repaired: {} damaged chunks dropped; publishing the versions they broke again (a region: its next "
               "sync) restores them\n",
               report.chunks_dropped);
  }
  return report.clean() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"meridiand: serves signed model artifacts and deltas to terminals"};
  app.require_subcommand(0, 1);
  ServeOptions serve;
  app.add_option("--data", serve.data, "data directory")->capture_default_str();
  app.add_option("--listen", serve.listen, "HOST:PORT to listen on (port 0 = any free port)")->capture_default_str();
  app.add_option("--config", serve.config, fmt::format("TOML file: {}", fmt::join(kConfigKeys, ", ")));
  app.add_option("--port-file", serve.port_file, "write the bound port to this file once listening");
  app.add_option("--threads", serve.threads, "server threads (0 = one per core)");
  app.add_option("--role", serve.role, "origin (releases and rollouts are made here) or region (follows an upstream)")
      ->capture_default_str();
  app.add_option("--region", serve.region, "role region: the region this daemon serves, e.g. sg");
  app.add_option("--jurisdiction", serve.jurisdiction,
                 "role origin: the region whose resident models this daemon may hold (default none: only models "
                 "published without --region)");
  app.add_option("--upstream", serve.upstream, "role region: upstream URL(s), the origin or another region")
      ->delimiter(',');
  app.add_option("--upstream-token-file", serve.upstream_token_file, "role region: the upstream's mirror.token");
  for (const TlsSetting& s : kTlsSettings) app.add_option(FlagOf(s.key), serve.*s.field, s.help);
  app.add_flag("--upstream-allow-insecure-http", serve.upstream_allow_insecure_http,
               "role region: send the mirror token over plain http:// to an upstream that is not loopback");

  InitOptions init;
  init.data_dir = kDefaultData;
  CLI::App* init_cmd = app.add_subcommand("init", "create a data directory: store, keys, root of trust, tokens");
  init_cmd->add_option("--data", init.data_dir, "data directory")->capture_default_str();
  init_cmd->add_option("--release-key", init.release_key_files, "public key file(s) of release managers (origin)");
  init_cmd->add_option("--root", init.region_root_file,
                       "a region's data directory: the origin's root.json to trust (no keys are made)");
  init_cmd->add_option("--release-threshold", init.release_threshold, "release signatures a manifest needs")
      ->capture_default_str();
  init_cmd->add_option("--root-key", init.root_key_file, "secret root key file (default: generate one)");

  std::string fsck_data = kDefaultData;
  CLI::App* fsck_cmd = app.add_subcommand("fsck", "verify every chunk and manifest in a store");
  fsck_cmd->add_option("--data", fsck_data, "data directory")->capture_default_str();
  bool fsck_repair = false;
  fsck_cmd->add_flag("--repair", fsck_repair,
                     "drop the damaged chunks found, so that a publish or a region's sync sends them again "
                     "(the daemon must be stopped)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*init_cmd) return Init(init);
  if (*fsck_cmd) return Fsck(fsck_data, fsck_repair);
  if (Status st = ApplyConfig(serve, app); !st.ok()) return Fail(st.message());
  return Serve(serve);
}
