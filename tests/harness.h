// Test harness for integration tests: temporary directories, child processes
// (real meridiand and meridian binaries), and a daemon fixture on a loopback
// ephemeral port. Binaries come from the MERIDIAND and MERIDIAN environment
// variables that meson sets.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>  // tests that build JSON include json.hpp themselves

#include "base/bytes.h"
#include "client/http_client.h"
#include "signing/signing.h"

namespace meridian::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // -signal when killed by a signal
  std::string out;
  std::string err;
  uint64_t peak_resident_bytes = 0;  // RunMeasuringMemory only
};

// Runs argv to completion (bounded by `timeout`; killed past it).
CommandResult Run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(300));

// Run, through the peak_rss helper (PEAK_RSS), also telling the command's
// peak resident memory (its own: nothing of the test process that started
// it). A command killed by signal N has exit code 128 + N here.
CommandResult RunMeasuringMemory(const std::vector<std::string>& argv,
                                 std::chrono::seconds timeout = std::chrono::seconds(300));

// Runs argv with its standard streams on a pseudo-terminal (util-linux
// `script`), as at a person's terminal: `out` is what the terminal showed,
// both streams together.
CommandResult RunOnTerminal(const std::vector<std::string>& argv);

// A started child process.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv, const std::string& log_path = "/dev/null");
  ~Child();  // SIGKILLs and reaps when still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits for exit; returns the exit code (-signal when killed), or nullopt-like -1000 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

// Polls `condition` every 10 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// A gauge of the daemon at `url` (its /metrics, unauthenticated); -1 when
// absent or when the daemon does not answer.
int64_t Metric(const std::string& url, const std::string& name, const HttpClientOptions& options = {});

std::string MeridiandPath();
std::string MeridianPath();
std::string MeridianAgentPath();  // MERIDIAN_AGENT
std::string PeakRssPath();        // PEAK_RSS

class DaemonFixture;

// Writes a meridian-agent configuration file (TOML) and returns its path.
struct AgentConfigSpec {
  std::string id = {};
  std::vector<std::string> servers = {};
  std::string root = {};
  std::string state = {};
  // The origin that enrols the agent: its key is made as STATE/terminal.key
  // and enrolled (accepted) there, which also issues its credentials. Null:
  // the agent makes its key and asks to join by itself.
  DaemonFixture* enrol_at = nullptr;
  std::string model = {};
  std::string health_check = {};  // empty: none
  std::string extra = {};         // more TOML lines (top-level keys)
  std::string region = "sg";
  std::string profile = "pos-arm64";
  std::vector<std::string> more_models = {};  // followed too, after `model` (channel stable, no health check)
};
std::string WriteAgentConfig(const std::string& path, const AgentConfigSpec& spec);

// The version a meridian-agent state directory's current slot of `model`
// holds: "" when none, "digest mismatch" when the file does not hash to the
// digest its slot was verified with.
std::string InstalledVersion(const std::string& state, const std::string& model);

// The JSON body of POST /v1/rollouts: rollout `id` of model fraud to
// `version`, in one stage of 100% gated on 1 report; each top-level key of
// `overrides` (auto_promote, max_failure_rate, regions, …) is set over these.
std::string RolloutSpecJson(const std::string& id, const std::string& version, const nlohmann::json& overrides);
std::string RolloutSpecJson(const std::string& id, const std::string& version);

// A meridiand on 127.0.0.1 with its own data directory, initialised with a
// fresh release key (release.key / release.key.pub in the temp dir).
class DaemonFixture {
 public:
  // `init_args` go after meridiand init's usual ones (more --release-key
  // files, --release-threshold, --root-key).
  explicit DaemonFixture(const std::vector<std::string>& init_args = {});
  // A region's daemon: its data directory initialised with the origin's root
  // (meridiand init --root); it holds no keys. Start it with StartRegion.
  static std::unique_ptr<DaemonFixture> Region(const std::string& origin_root_json);
  ~DaemonFixture();
  // Starts (with `extra_args` after the usual ones) and waits until /healthz answers.
  void Start(const std::vector<std::string>& extra_args = {});
  // Starts it from now on with this open-file limit, soft and hard (prlimit).
  void LimitOpenFiles(uint64_t limit) { open_files_max_ = limit; }
  // From the next start on it serves HTTPS (give the --tls-* flags to Start):
  // url() is https://, and the fixture's own requests and Cli() use `client`
  // (its CA file, and a client certificate when the daemon requires one).
  void UseTls(TlsClientOptions client) { tls_ = std::move(client); }
  // Options for a client of this daemon: its TLS settings and `token`;
  // connect (TLS handshake included) and whole-request timeouts of 60 s.
  HttpClientOptions ClientOptions(std::string token = "") const;
  // Start as --role region following `upstream` (a URL, or several joined by ',').
  void StartRegion(const std::string& region, const std::string& upstream, const std::string& upstream_token_file,
                   const std::vector<std::string>& extra_args = {});
  std::string mirror_token_file() const { return data() + "/mirror.token"; }
  std::string mirror_token() const;
  // Starts again on the port it had (regions following it keep their URL).
  void Restart(const std::vector<std::string>& extra_args = {});
  void Kill9();
  int Terminate();  // SIGTERM, returns the exit code
  std::string url() const {
    return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_);
  }
  uint16_t port() const { return port_; }
  pid_t pid() const;  // of the running daemon
  const TempDir& dir() const { return dir_; }
  std::string data() const { return dir_ / "data"; }
  std::string release_key() const { return dir_ / "release.key"; }
  std::string root_json() const { return data() + "/root.json"; }
  std::string root_key() const { return data() + "/keys/root.key"; }  // generated by init unless --root-key was given
  std::string publisher_token() const;
  std::string publisher_token_file() const { return data() + "/publisher.token"; }
  std::string operator_token() const;
  // POST /v1/rollouts with the operator token; returns the reply body (throws unless 201).
  std::string StartRollout(const std::string& spec_json);
  // POST /v1/rollouts/{id}/{action} with the operator token; returns the HTTP status.
  long RolloutAction(const std::string& id, const std::string& action, const std::string& reason);
  // GET /v1/rollouts/{id}[/events] with the operator token; returns the body.
  std::string GetRollout(const std::string& id, bool events = false);
  // The shared token that reads models (and speaks for no terminal).
  std::string terminal_token() const;
  // Terminal `id`'s key, made and enrolled here (accepted) at its first use:
  // what a factory writes on the terminal (WriteAgentConfig's enrol_at).
  const SecretKey& TerminalKey(const std::string& id);
  // Enrols a fresh key for each of `ids` without one, in one request: a
  // test about to start many agents with enrol_at calls it first, instead of
  // paying a synced request per agent (200 took 22 s under ASan).
  void EnrolKeys(const std::vector<std::string>& ids);
  // A credential of terminal `id` (its TerminalKey), asked for at first use.
  std::string TerminalCredential(const std::string& id);
  // The credentials of `ids`, in order: keys new to the fixture enrolled in one request.
  std::vector<std::string> TerminalCredentials(const std::vector<std::string>& ids);
  // `meridian --server URL [--ca-file, --client-cert, --client-key with UseTls] <args…>`
  CommandResult Cli(std::vector<std::string> args);
  // meridian publish with the fixture's key and token; --output json.
  CommandResult Publish(const std::string& model, const std::string& version, const std::string& path);
  // meridiand fsck --data DATA (daemon must be stopped).
  CommandResult Fsck();

 private:
  struct RegionTag {};
  DaemonFixture(RegionTag, const std::string& origin_root_json);
  void Launch(uint16_t port, const std::vector<std::string>& extra_args);
  TempDir dir_;
  std::unique_ptr<Child> child_;
  uint16_t port_ = 0;
  uint64_t open_files_max_ = 0;  // 0: inherited
  std::optional<TlsClientOptions> tls_;  // set: HTTPS
  std::map<std::string, SecretKey> keys_;          // terminal id -> its key (TerminalKey)
  std::map<std::string, std::string> credentials_;  // terminal id -> its credential (TerminalCredential)
};

// Speaks as whichever terminal a path names (/v1/terminals/{id}/…), each with
// its own credential from `issuer` (the origin; enrolled at first use), to
// `url` (the issuer's by default: a region or a proxy in front of either).
class TerminalsClient {
 public:
  explicit TerminalsClient(DaemonFixture& issuer, std::string url = "", long timeout_ms = 60'000);
  Result<HttpReply> Get(const std::string& path);
  Result<HttpReply> Post(const std::string& path, std::string_view body);

 private:
  HttpClient& For(const std::string& path);
  DaemonFixture& issuer_;
  std::string url_;
  long timeout_ms_;
  std::map<std::string, std::unique_ptr<HttpClient>> clients_;  // by terminal id
};

// A scriptable HTTP/1.1 server on 127.0.0.1 (port 0) for tests that need a
// lying server or mirror: one connection at a time, one request per
// connection (Connection: close).
struct FakeRequest {
  std::string method;
  std::string path;   // with the query
  std::string range;  // the Range header's value, or empty
  std::string body;   // at most 1 MiB (Content-Length)
};
struct FakeReply {
  int status = 200;
  std::string body = {};
  std::vector<std::string> headers = {};  // "Name: value"
  size_t body_bytes_sent_max = SIZE_MAX;  // close after this many body bytes: a transfer cut short
  // Bytes of 'x' sent after `body`, made as they go (never held): a reply
  // larger than memory, sent until the client stops reading. Counted in the
  // Content-Length unless `chunked`.
  uint64_t filler_bytes = 0;
  // Transfer-Encoding: chunked and no Content-Length: a body of unknown length.
  bool chunked = false;
  // Then, before closing: the connection held open with nothing sent for this
  // long, or until the client closes it (a server that stopped sending).
  int silent_ms = 0;
};
class FakeHttpServer {
 public:
  using Handler = std::function<FakeReply(const FakeRequest& request)>;
  explicit FakeHttpServer(Handler handler);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Filler bytes (FakeReply::filler_bytes) clients took so far (the socket
  // accepted them): how far a client read a reply larger than memory.
  uint64_t filler_bytes_sent() const { return filler_bytes_sent_; }

 private:
  void Serve();
  Handler handler_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<uint64_t> filler_bytes_sent_{0};
  std::thread thread_;
};

// `request` sent on to a real server through `server` (whose credential it
// carries), and the server's answer as a FakeReply (502 when none came): the
// start of a proxy that lies about some of it.
FakeReply Forward(HttpClient& server, const FakeRequest& request);

// The path of program `name` (nginx, haproxy) in /usr/sbin, /usr/local/sbin
// or $PATH; "" when none is executable.
std::string FindProgram(const std::string& name);

// A port on 127.0.0.1 nothing listens on right now (a server started on it
// may still lose a race for it: callers retry); 0 when none was found.
uint16_t FreeLoopbackPort();

// A front end a test runs in the foreground (nginx, HAProxy: Debian's
// packages) from a configuration template in the tree: the template (its
// path in the environment variable `template_variable`, set by meson) with
// the placeholders filled in and @LISTEN@ set to a free loopback port, then
// started and awaited until `probe_path` answers 200 through it. A port
// taken meanwhile (its log says "ddress already in use") is tried again on
// another. FAILs the test, with what it logged, when it cannot start.
struct FrontEndSpec {
  std::string program;                                   // "nginx", found by FindProgram
  std::string template_variable;                         // "MERIDIAN_NGINX_CONF"
  std::vector<std::pair<std::string, std::string>> placeholders = {};  // {"@UPSTREAM@", "127.0.0.1:7400"}, …
  std::string config_path;                               // where the filled-in template is written
  std::vector<std::string> arguments;                    // after the program's path
  std::string output_path;                               // its standard output and error
  std::string probe_path = "/healthz";
  std::function<std::string()> log = nullptr;            // what it logged besides output_path, if anything
};
class FrontEnd {
 public:
  explicit FrontEnd(FrontEndSpec spec);
  // Fast shutdown (SIGTERM: the master takes its workers along, which a
  // SIGKILL would leave running).
  ~FrontEnd();
  FrontEnd(const FrontEnd&) = delete;
  FrontEnd& operator=(const FrontEnd&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Everything it logged.
  std::string Log() const;
  // Sends `signal` (a graceful stop) and waits; the exit code.
  int Stop(int signal);

 private:
  void Halt();
  FrontEndSpec spec_;
  std::unique_ptr<Child> child_;
  uint16_t port_ = 0;
};

// Resident memory of a process, from /proc (0 when it cannot be read).
uint64_t ResidentBytes(pid_t pid);

Bytes RandomBytes(size_t n, uint64_t seed);
void WriteFile(const std::string& path, ByteSpan data);
Bytes ReadFile(const std::string& path);

}  // namespace meridian::testing
