// meridiand: the daemon (serve), and its `init` and `fsck` subcommands.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <toml++/toml.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/clock.h"
#include "base/file.h"
#include "base/service_notify.h"
#include "daemon/api.h"
#include "daemon/audit_log.h"
#include "daemon/credentials.h"
#include "daemon/data_dir.h"
#include "daemon/follower.h"
#include "daemon/outbox.h"
#include "daemon/http_server.h"
#include "daemon/rollouts.h"
#include "manifest/manifest.h"
#include "store/store.h"
#include "trust/trust.h"

using namespace meridian;

namespace {

constexpr const char* kDefaultData = "./data";
constexpr const char* kDefaultListen = "127.0.0.1:7400";
constexpr std::chrono::milliseconds kTickInterval{1000};

void Log(std::string_view message) {
  fmt::print(stderr, "{} meridiand: {}\n", FormatRfc3339(SystemClock::Get().NowUnixMillis()), message);
}

int Fail(std::string_view message) {
  fmt::print(stderr, "meridiand: {}\n", message);
  return 1;
}

bool SplitHostPort(const std::string& listen, std::string* host, uint16_t* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  try {
    int p = std::stoi(listen.substr(colon + 1));
    if (p < 0 || p > 65535 || host->empty()) return false;
    *port = static_cast<uint16_t>(p);
  } catch (...) {
    return false;
  }
  return true;
}

// How the process's descriptors are shared out: every connection is one,
// and so is every file RocksDB keeps open. Sized so that together they never
// exhaust the limit, leaving a reserve for the listener, logs, the WAL and
// MANIFEST, upstream connections and delta work.
struct DescriptorBudget {
  uint64_t limit = 0;
  uint32_t connections_max = 0;
  int store_files_max = 0;
};
constexpr uint64_t kDescriptorsReserved = 64;
constexpr uint64_t kDescriptorsMin = 256;

// Raises the soft open-file limit to the hard one, then splits it.
Result<DescriptorBudget> BudgetDescriptors() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return Status::IOError("getrlimit(RLIMIT_NOFILE) failed");
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  const uint64_t limit = rl.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : rl.rlim_cur;
  if (limit < kDescriptorsMin) {
    return Status::FailedPrecondition(fmt::format(
        "the open-file limit is {}; meridiand needs at least {} (raise ulimit -n, or LimitNOFILE in its unit)", limit,
        kDescriptorsMin));
  }
  DescriptorBudget b;
  b.limit = limit;
  b.store_files_max = static_cast<int>(std::clamp<uint64_t>(limit / 8, 32, 4096));
  b.connections_max = static_cast<uint32_t>(std::min<uint64_t>(
      limit - static_cast<uint64_t>(b.store_files_max) - kDescriptorsReserved, HttpServerOptions{}.connections_max));
  return b;
}

struct ServeOptions {
  std::string data = kDefaultData;
  std::string listen = kDefaultListen;
  std::string config;
  std::string port_file;
  int threads = 0;
  int64_t head_timeout_ms = HttpServerOptions{}.head_timeout.count();
  int64_t body_timeout_ms = HttpServerOptions{}.body_timeout.count();
  int64_t state_expiry_ms = RolloutsOptions{}.state_expiry_ms;    // lifetime of a signed channel state
  int64_t state_refresh_ms = RolloutsOptions{}.state_refresh_ms;  // re-signed when less than this is left
  int64_t credential_lifetime_ms = EnrolmentOptions{}.credential_lifetime_ms;  // of a terminal credential
  std::map<std::string, std::string> time_zones;                  // region ("*": any other) -> IANA zone
  std::string role = "origin";
  std::string region;                  // role region: the region served
  std::string jurisdiction;            // role origin: the region whose resident models it may hold ("": none)
  std::vector<std::string> upstream;   // role region: upstream URLs, in order of preference
  std::string upstream_token_file;     // role region: the upstream's mirror.token
  DeltaServiceOptions deltas;          // the delta_* settings
  // HTTPS: certificate chain and key (PEM); client certificates checked
  // against tls_client_ca, "none", "optional" (the default with a CA) or "required".
  std::string tls_certificate, tls_key, tls_client_ca, tls_client_certificates;
  // Role region: how the upstream is trusted, and the certificate shown to it.
  std::string upstream_ca_file, upstream_client_certificate, upstream_client_key;
  bool upstream_allow_insecure_http = false;
};

// The keys of --config, in the order --help lists them.
constexpr std::array<std::string_view, 26> kConfigKeys = {
    "data", "listen", "threads", "head_timeout_ms", "body_timeout_ms", "state_expiry_ms", "state_refresh_ms",
    "credential_lifetime_ms", "role",
    "region", "jurisdiction", "upstream", "upstream_token_file", "upstream_ca_file", "upstream_client_certificate",
    "upstream_client_key", "upstream_allow_insecure_http", "tls_certificate", "tls_key", "tls_client_ca",
    "tls_client_certificates", "delta_previous_versions", "delta_threads", "delta_literal_level",
    "delta_artifact_bytes_max", "time_zones"};

// The TLS settings: a --config key and the flag of the same name
// (tls_key: --tls-key), which wins.
struct TlsSetting {
  const char* key;
  std::string ServeOptions::*field;
  const char* help;
};
constexpr TlsSetting kTlsSettings[] = {
    {"tls_certificate", &ServeOptions::tls_certificate, "HTTPS: certificate chain file (PEM), reloaded on SIGHUP"},
    {"tls_key", &ServeOptions::tls_key, "HTTPS: private key file (PEM) of the certificate"},
    {"tls_client_ca", &ServeOptions::tls_client_ca, "HTTPS: CA file (PEM) that signs client certificates (mTLS)"},
    {"tls_client_certificates", &ServeOptions::tls_client_certificates,
     "none, optional (default with --tls-client-ca) or required"},
    {"upstream_ca_file", &ServeOptions::upstream_ca_file, "role region: CA file (PEM) the upstream's certificate is checked against"},
    {"upstream_client_certificate", &ServeOptions::upstream_client_certificate,
     "role region: client certificate (PEM) shown to the upstream"},
    {"upstream_client_key", &ServeOptions::upstream_client_key, "role region: its private key (PEM)"},
};

std::string FlagOf(std::string_view key) {
  std::string flag = "--" + std::string(key);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

// The server's TLS settings from the flags and keys; plain HTTP without a certificate.
Result<TlsServerOptions> ServerTls(const ServeOptions& o) {
  TlsServerOptions tls{o.tls_certificate, o.tls_key, o.tls_client_ca, ClientCertificates::kNone};
  if (o.tls_certificate.empty()) {
    if (!o.tls_key.empty() || !o.tls_client_ca.empty() || !o.tls_client_certificates.empty()) {
      return Status::InvalidArgument("the TLS settings need tls_certificate (--tls-certificate)");
    }
    return tls;
  }
  if (o.tls_key.empty()) return Status::InvalidArgument("tls_certificate needs tls_key (--tls-key), its private key");
  const std::string& mode = o.tls_client_certificates;
  if (mode == "optional" || (mode.empty() && !o.tls_client_ca.empty())) {
    tls.client_certificates = ClientCertificates::kOptional;
  } else if (mode == "required") {
    tls.client_certificates = ClientCertificates::kRequired;
  } else if (!mode.empty() && mode != "none") {
    return Status::InvalidArgument("tls_client_certificates must be none, optional or required, got '" + mode + "'");
  }
  if (tls.client_certificates != ClientCertificates::kNone && o.tls_client_ca.empty()) {
    return Status::InvalidArgument("tls_client_certificates = " + mode + " needs tls_client_ca (--tls-client-ca)");
  }
  return tls;
}

// Settings from --config FILE (TOML); flags given on the command line win.
Status ApplyConfig(ServeOptions& o, const CLI::App& app) {
  if (o.config.empty()) return Status::Ok();
  toml::table t;
  try {
    t = toml::parse_file(o.config);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", o.config, e.description()));
  }
  for (const auto& [key, value] : t) {
    if (std::find(kConfigKeys.begin(), kConfigKeys.end(), key.str()) == kConfigKeys.end()) {
      return Status::InvalidArgument(fmt::format("{}: unknown setting '{}'", o.config, key.str()));
    }
  }
  if (app.count("--data") == 0) o.data = t["data"].value_or(o.data);
  if (app.count("--listen") == 0) o.listen = t["listen"].value_or(o.listen);
  if (app.count("--threads") == 0) o.threads = t["threads"].value_or(o.threads);
  if (app.count("--role") == 0) o.role = t["role"].value_or(o.role);
  if (app.count("--region") == 0) o.region = t["region"].value_or(o.region);
  if (app.count("--jurisdiction") == 0) o.jurisdiction = t["jurisdiction"].value_or(o.jurisdiction);
  if (app.count("--upstream-token-file") == 0) o.upstream_token_file = t["upstream_token_file"].value_or(o.upstream_token_file);
  for (const TlsSetting& s : kTlsSettings) {
    if (app.count(FlagOf(s.key)) == 0) o.*s.field = t[s.key].value_or(o.*s.field);
  }
  if (app.count("--upstream-allow-insecure-http") == 0) {
    o.upstream_allow_insecure_http = t["upstream_allow_insecure_http"].value_or(o.upstream_allow_insecure_http);
  }
  if (app.count("--upstream") == 0) {
    if (const toml::array* list = t["upstream"].as_array()) {
      for (const auto& url : *list) {
        if (!url.is_string()) return Status::InvalidArgument(o.config + ": upstream must be a list of URLs");
        o.upstream.push_back(*url.value<std::string>());
      }
    } else if (std::optional<std::string> url = t["upstream"].value<std::string>()) {
      o.upstream.push_back(*url);
    }
  }
  o.head_timeout_ms = t["head_timeout_ms"].value_or(o.head_timeout_ms);
  o.body_timeout_ms = t["body_timeout_ms"].value_or(o.body_timeout_ms);
  if (o.head_timeout_ms < 1 || o.body_timeout_ms < 1) {
    return Status::InvalidArgument(o.config + ": timeouts must be at least 1 ms");
  }
  if (const toml::node* zones = t.get("time_zones")) {
    const toml::table* table = zones->as_table();
    if (table == nullptr) return Status::InvalidArgument(o.config + ": time_zones must be a table of region = \"Zone\"");
    for (const auto& [region, zone] : *table) {
      std::optional<std::string> name = zone.value<std::string>();
      if (!name) return Status::InvalidArgument(o.config + ": time_zones." + std::string(region.str()) + " must be a zone name");
      if (Status st = CheckTimeZone(*name); !st.ok()) return Status::InvalidArgument(o.config + ": time_zones: " + st.message());
      o.time_zones[std::string(region.str())] = *name;
    }
  }
  o.state_expiry_ms = t["state_expiry_ms"].value_or(o.state_expiry_ms);
  o.state_refresh_ms = t["state_refresh_ms"].value_or(o.state_refresh_ms);
  if (o.state_expiry_ms < 1000 || o.state_refresh_ms < 1 || o.state_refresh_ms >= o.state_expiry_ms) {
    return Status::InvalidArgument(o.config + ": state_expiry_ms must be at least 1000 and above state_refresh_ms (at least 1)");
  }
  o.credential_lifetime_ms = t["credential_lifetime_ms"].value_or(o.credential_lifetime_ms);
  if (o.credential_lifetime_ms < 10'000 || o.credential_lifetime_ms > 30ll * 24 * 3600 * 1000) {
    return Status::InvalidArgument(o.config + ": credential_lifetime_ms must be 10000 (10 s) to 30 days");
  }
  DeltaServiceOptions& d = o.deltas;
  d.previous_versions = t["delta_previous_versions"].value_or(d.previous_versions);
  d.encoder.threads = t["delta_threads"].value_or(d.encoder.threads);
  const int64_t artifact_max = t["delta_artifact_bytes_max"].value_or(static_cast<int64_t>(d.artifact_bytes_max));
  if (d.previous_versions < 0 || d.previous_versions > 100) {
    return Status::InvalidArgument(o.config + ": delta_previous_versions must be 0 to 100");
  }
  if (d.encoder.threads < 1 || d.encoder.threads > 64) {
    return Status::InvalidArgument(o.config + ": delta_threads must be 1 to 64");
  }
  if (artifact_max < 0 || artifact_max > (int64_t{1} << 40)) {
    return Status::InvalidArgument(o.config + ": delta_artifact_bytes_max must be 0 to 1 TiB");
  }
  d.artifact_bytes_max = static_cast<uint64_t>(artifact_max);
  // Unset: LZMA literals (smallest). A level: zstd literals, faster to make and apply.
  if (std::optional<int> level = t["delta_literal_level"].value<int>()) {
    if (*level < 1 || *level > 22) return Status::InvalidArgument(o.config + ": delta_literal_level must be 1 to 22");
    d.encoder.literal_codec = LiteralCodec::kZstd;
    d.encoder.literal_level = *level;
  } else if (t.contains("delta_literal_level")) {
    return Status::InvalidArgument(o.config + ": delta_literal_level must be an integer");
  }
  return Status::Ok();
}

// The chain of roots: DATA/root.json and the rotations the store keeps.
Result<std::unique_ptr<RootChain>> OpenRoots(const DataDir& d, Store& store) {
  Result<std::string> text = ReadFileToString(d.root(), kRootEnvelopeBytesMax);
  if (!text.ok()) return text.status();
  Result<std::unique_ptr<RootChain>> roots = RootChain::Open(store, std::move(*text));
  if (!roots.ok()) return roots.status().WithContext(d.root());
  return roots;
}

int Serve(ServeOptions o) {
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
  Result<DescriptorBudget> fds = BudgetDescriptors();
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
                                          .on_damaged_chunk = on_damaged_chunk});
  if (!store.ok()) return Fail("cannot open store: " + store.status().ToString());
  Result<std::unique_ptr<AuditLog>> audit = AuditLog::Open(**store, SystemClock::Get());
  if (!audit.ok()) return Fail("cannot open the audit log: " + audit.status().ToString());
  // The gates' own decisions go to the audit log as the operators' do (the API appends those).
  auto audit_gate_change = [audit_log = audit->get()](const RolloutSpec& spec, const RolloutEvent& e) {
    std::string action = fmt::format("rollout.{}", ActionName(e.action));
    Status st = audit_log->Append(kGateActor, action, spec.id, DescribeRolloutEvent(e));
    if (!st.ok()) Log(fmt::format("the audit log could not record the gate's {} of {}: {}", action, spec.id, st.message()));
  };
  Result<std::unique_ptr<Rollouts>> rollouts =
      Rollouts::Open(**store, std::move(online_key), SystemClock::Get(),
                     RolloutsOptions{.state_expiry_ms = o.state_expiry_ms, .state_refresh_ms = o.state_refresh_ms,
                                     .time_zones = o.time_zones, .on_gate_change = audit_gate_change});
  if (!rollouts.ok()) return Fail("cannot load rollouts: " + rollouts.status().ToString());
  DeltaService deltas(**store, std::move(delta_key), o.deltas);

  Result<std::unique_ptr<Enrolment>> enrolment =
      region ? Enrolment::OpenRegion(**store, SystemClock::Get())
             : Enrolment::OpenOrigin(**store, SystemClock::Get(), std::move(*credential_key),
                                     EnrolmentOptions{.credential_lifetime_ms = o.credential_lifetime_ms});
  if (!enrolment.ok()) return Fail("cannot load the enrolled terminals: " + enrolment.status().ToString());

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
  Api api(**store, catalog, **roots, **pending, ApiTokens{*publisher, *operator_token, *terminal_token, *mirror_token},
          **credentials, **audit, **enrolment, metrics, **rollouts, deltas);
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
  std::mutex tick_mu;
  std::condition_variable tick_cv;
  bool done = false;
  std::thread ticker([&] {
    std::string fault;
    Status::Code fault_code = Status::Code::kOk;
    std::unique_lock lock(tick_mu);
    while (!tick_cv.wait_for(lock, kTickInterval, [&] { return done; })) {
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
    }
  });
  server.Run();
  {
    std::lock_guard lock(tick_mu);
    done = true;
  }
  tick_cv.notify_one();
  ticker.join();
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
