// Child processes, temp dirs and the meridiand fixture for integration tests.
#include "tests/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/digest.h"
#include "base/encoding.h"
#include "base/file.h"
#include "client/api.h"
#include "client/http_client.h"
#include "signing/signing.h"
#include "tests/loopback.h"
#include "trust/terminal_credential.h"

namespace meridian::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "meridian-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

// posix_spawn, not fork: glibc's vfork-style clone shares the parent's
// memory instead of copying its page tables, which for an ASan test process
// cost some 58 ms a child (12 s of region_replicas' 200 agents).
static pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int err = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (err != 0) throw std::runtime_error("spawning " + argv[0] + ": " + std::strerror(err));
  return pid;
}

static int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

CommandResult RunOnTerminal(const std::vector<std::string>& argv) {
  std::string command;
  for (const std::string& arg : argv) {
    std::string quoted = "'";
    for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += (command.empty() ? "" : " ") + quoted + "'";
  }
  return Run({"/usr/bin/script", "--quiet", "--return", "--command", command, "/dev/null"});
}

// Reaps `pid` once it exits, waiting at most until `deadline`; true (and
// `status` set) when it exited. A pidfd turns readable when its process exits,
// so this sleeps in poll(2) instead of polling waitpid (where pidfd_open is
// refused, a seccomp profile say, it polls).
static bool WaitExit(pid_t pid, std::chrono::steady_clock::time_point deadline, int& status) {
  // The system call: glibc 2.36's <sys/pidfd.h> declares pidfd_open without C linkage.
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return WaitFor([&] { return ::waitpid(pid, &status, WNOHANG) == pid; },
                             std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, static_cast<int>(std::clamp<int64_t>(left.count(), 0, INT32_MAX))) >= 0 || errno != EINTR) break;
  }
  ::close(fd);
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

CommandResult Run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  TempDir io;
  pid_t pid = Spawn(argv, io / "out", io / "err");
  int status = 0;
  if (!WaitExit(pid, std::chrono::steady_clock::now() + timeout, status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  CommandResult r;
  r.exit_code = DecodeWait(status);
  r.out = AsString(ReadFile(io / "out"));
  r.err = AsString(ReadFile(io / "err"));
  return r;
}

CommandResult RunMeasuringMemory(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  TempDir dir;
  std::vector<std::string> args = {PeakRssPath(), dir / "peak_kib"};
  args.insert(args.end(), argv.begin(), argv.end());
  CommandResult r = Run(args, timeout);
  std::string kib(AsString(ReadFile(dir / "peak_kib")));
  r.peak_resident_bytes = kib.empty() ? 0 : std::stoull(kib) * 1024;
  return r;
}

Child::Child(const std::vector<std::string>& argv, const std::string& log_path) {
  pid_ = Spawn(argv, log_path, log_path);
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
}

void Child::Signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int Child::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1000;
  int status = 0;
  if (!WaitExit(pid_, std::chrono::steady_clock::now() + timeout, status)) return -1000;
  pid_ = -1;
  return DecodeWait(status);
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

int64_t Metric(const std::string& url, const std::string& name, const HttpClientOptions& options) {
  HttpClient c(url, options);
  Result<HttpReply> r = c.Get("/metrics");
  if (!r.ok() || r->status != 200) return -1;
  size_t at = r->body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(r->body.substr(at + name.size() + 2));
}

static std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}
std::string MeridiandPath() { return EnvOr("MERIDIAND", "./daemon/meridiand"); }
std::string MeridianPath() { return EnvOr("MERIDIAN", "./cli/meridian"); }
std::string MeridianAgentPath() { return EnvOr("MERIDIAN_AGENT", "./agent/meridian-agent"); }
std::string PeakRssPath() { return EnvOr("PEAK_RSS", "./tests/peak_rss"); }

std::string WriteAgentConfig(const std::string& path, const AgentConfigSpec& spec) {
  std::string servers;
  for (const std::string& s : spec.servers) servers += (servers.empty() ? "\"" : ", \"") + s + "\"";
  std::string text = "id = \"" + spec.id + "\"\nprofile = \"" + spec.profile + "\"\nregion = \"" + spec.region + "\"\nservers = [" + servers +
                     "]\nroot = \"" + spec.root + "\"\nstate = \"" + spec.state + "\"\n";
  if (spec.enrol_at != nullptr) {
    // As a factory would: the key made on the terminal, its public half enrolled.
    std::filesystem::create_directories(spec.state);
    Status written = WriteSecretKeyFile(spec.state + "/terminal.key", spec.enrol_at->TerminalKey(spec.id));
    if (!written.ok()) throw std::runtime_error("terminal key: " + written.ToString());
    text += "credential_servers = [\"" + spec.enrol_at->url() + "\"]\n";
  }
  text += spec.extra + "\n[[model]]\nname = \"" + spec.model + "\"\nchannel = \"stable\"\n";
  if (!spec.health_check.empty()) text += "health_check = '" + spec.health_check + "'\n";
  for (const std::string& m : spec.more_models) text += "\n[[model]]\nname = \"" + m + "\"\n";
  WriteFile(path, AsBytes(text));
  return path;
}

std::string InstalledVersion(const std::string& state, const std::string& model) {
  std::string link = state + "/models/" + model + "/current";
  if (!std::filesystem::is_symlink(link)) return "";
  std::string target = std::filesystem::read_symlink(link).string();  // blobs/<version>_<hex digest>
  size_t sep = target.rfind('_');
  if (sep == std::string::npos || Digest::Of(ReadFile(link)).Hex() != target.substr(sep + 1)) return "digest mismatch";
  return target.substr(std::string("blobs/").size(), sep - std::string("blobs/").size());
}

std::string RolloutSpecJson(const std::string& id, const std::string& version, const nlohmann::json& overrides) {
  nlohmann::json spec = {{"id", id}, {"model", "fraud"}, {"target_version", version}, {"stages_percent", {100}},
                         {"min_reports", 1}};
  spec.update(overrides);
  return spec.dump();
}

std::string RolloutSpecJson(const std::string& id, const std::string& version) {
  return RolloutSpecJson(id, version, nlohmann::json::object());
}

DaemonFixture::DaemonFixture(const std::vector<std::string>& init_args) {
  CommandResult k = Run({MeridianPath(), "keygen", release_key()});
  if (k.exit_code != 0) throw std::runtime_error("keygen failed: " + k.err);
  std::vector<std::string> argv = {MeridiandPath(), "init", "--data", data(), "--release-key", release_key() + ".pub"};
  argv.insert(argv.end(), init_args.begin(), init_args.end());
  CommandResult i = Run(argv);
  if (i.exit_code != 0) throw std::runtime_error("init failed: " + i.err);
}

DaemonFixture::DaemonFixture(RegionTag, const std::string& origin_root_json) {
  CommandResult i = Run({MeridiandPath(), "init", "--data", data(), "--root", origin_root_json});
  if (i.exit_code != 0) throw std::runtime_error("region init failed: " + i.err);
}

std::unique_ptr<DaemonFixture> DaemonFixture::Region(const std::string& origin_root_json) {
  return std::unique_ptr<DaemonFixture>(new DaemonFixture(RegionTag{}, origin_root_json));
}

void DaemonFixture::StartRegion(const std::string& region, const std::string& upstream,
                                const std::string& upstream_token_file, const std::vector<std::string>& extra_args) {
  std::vector<std::string> args{"--role", "region", "--region", region, "--upstream", upstream,
                                "--upstream-token-file", upstream_token_file};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  Start(args);
}

DaemonFixture::~DaemonFixture() { child_.reset(); }

void DaemonFixture::Restart(const std::vector<std::string>& extra_args) { Launch(port_, extra_args); }

void DaemonFixture::Start(const std::vector<std::string>& extra_args) { Launch(0, extra_args); }

void DaemonFixture::Launch(uint16_t port, const std::vector<std::string>& extra_args) {
  std::string port_file = dir_ / "port";
  ::unlink(port_file.c_str());
  std::vector<std::string> argv;
  if (open_files_max_ > 0) argv = {"/usr/bin/prlimit", fmt::format("--nofile={0}:{0}", open_files_max_)};
  argv.insert(argv.end(), {MeridiandPath(), "--data", data(), "--listen", "127.0.0.1:" + std::to_string(port),
                           "--port-file", port_file});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  child_ = std::make_unique<Child>(argv, dir_ / "meridiand.log");
  if (!WaitFor([&] { return std::filesystem::exists(port_file); }, std::chrono::seconds(30))) {
    throw std::runtime_error("meridiand did not start: " + std::string(AsString(ReadFile(dir_ / "meridiand.log"))));
  }
  port_ = static_cast<uint16_t>(std::stoi(std::string(AsString(ReadFile(port_file)))));
  HttpClient probe(url(), ClientOptions());
  if (!WaitFor([&] {
        auto r = probe.Get("/healthz");
        return r.ok() && r->status == 200;
      }, std::chrono::seconds(30))) {
    throw std::runtime_error("meridiand not healthy");
  }
}

void DaemonFixture::Kill9() {
  if (!child_) return;
  child_->Signal(SIGKILL);
  child_->Wait(std::chrono::seconds(30));
  child_.reset();
}

int DaemonFixture::Terminate() {
  if (!child_) return -1000;
  child_->Signal(SIGTERM);
  int code = child_->Wait(std::chrono::seconds(30));
  child_.reset();
  return code;
}

// A token file's content without its trailing newline.
static std::string ReadToken(const std::string& path) {
  std::string t(AsString(ReadFile(path)));
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t;
}

pid_t DaemonFixture::pid() const { return child_ ? child_->pid() : -1; }

std::string DaemonFixture::publisher_token() const { return ReadToken(data() + "/publisher.token"); }

std::string DaemonFixture::operator_token() const { return ReadToken(data() + "/operator.token"); }

std::string DaemonFixture::terminal_token() const { return ReadToken(data() + "/terminal.token"); }
std::string DaemonFixture::mirror_token() const { return ReadToken(mirror_token_file()); }

const SecretKey& DaemonFixture::TerminalKey(const std::string& id) {
  auto it = keys_.find(id);
  if (it != keys_.end()) return it->second;
  EnrolKeys({id});
  return keys_.at(id);
}

void DaemonFixture::EnrolKeys(const std::vector<std::string>& ids) {
  nlohmann::json enrol = nlohmann::json::array();
  for (const std::string& id : ids) {
    if (keys_.count(id) != 0) continue;
    const SecretKey& key = keys_.emplace(id, SecretKey::Generate()).first->second;
    enrol.push_back({{"id", id}, {"public_key", Base64Encode(key.public_key().bytes)}});
  }
  if (enrol.empty()) return;
  HttpClient op(url(), ClientOptions(operator_token()));
  Result<HttpReply> r = op.Post(TerminalsPath(), nlohmann::json{{"terminals", enrol}}.dump());
  if (!r.ok() || r->status != 200) throw std::runtime_error("enrolling failed: " + (r.ok() ? r->body : r.status().ToString()));
}

std::string DaemonFixture::TerminalCredential(const std::string& id) { return TerminalCredentials({id})[0]; }

std::vector<std::string> DaemonFixture::TerminalCredentials(const std::vector<std::string>& ids) {
  EnrolKeys(ids);
  HttpClient c(url(), ClientOptions());
  std::vector<std::string> out;
  for (const std::string& id : ids) {
    std::string& credential = credentials_[id];
    if (credential.empty()) {
      Result<HttpReply> r = c.Post(TerminalCredentialPath(id), "", "application/json",
                                   {"Authorization: " + SignCredentialRequest(keys_.at(id), id, SystemClock::Get().NowUnixMillis())});
      if (!r.ok() || r->status != 200) {
        throw std::runtime_error("credential of " + id + " refused: " + (r.ok() ? r->body : r.status().ToString()));
      }
      credential = nlohmann::json::parse(r->body).at("credential").get<std::string>();
    }
    out.push_back(credential);
  }
  return out;
}

TerminalsClient::TerminalsClient(DaemonFixture& issuer, std::string url, long timeout_ms)
    : issuer_(issuer), url_(url.empty() ? issuer.url() : std::move(url)), timeout_ms_(timeout_ms) {}

HttpClient& TerminalsClient::For(const std::string& path) {
  const std::string prefix = "/v1/terminals/";
  if (!path.starts_with(prefix)) throw std::runtime_error("not a terminal's path: " + path);
  std::string id = path.substr(prefix.size(), path.find('/', prefix.size()) - prefix.size());
  std::unique_ptr<HttpClient>& c = clients_[id];
  if (!c) {
    HttpClientOptions o = issuer_.ClientOptions(issuer_.TerminalCredential(id));
    o.timeout_ms = timeout_ms_;
    c = std::make_unique<HttpClient>(url_, o);
  }
  return *c;
}

Result<HttpReply> TerminalsClient::Get(const std::string& path) { return For(path).Get(path); }
Result<HttpReply> TerminalsClient::Post(const std::string& path, std::string_view body) { return For(path).Post(path, body); }

HttpClientOptions DaemonFixture::ClientOptions(std::string token) const {
  // The connect timeout covers the TLS handshake, which a CI machine busy
  // with other tests can hold up for seconds; a daemon that is gone refuses
  // the connection at once, so the long timeout costs no failing test time.
  return HttpClientOptions{.connect_timeout_ms = 60'000, .timeout_ms = 60'000, .bearer_token = std::move(token),
                           .tls = tls_.value_or(TlsClientOptions{})};
}

std::string DaemonFixture::StartRollout(const std::string& spec_json) {
  HttpClient c(url(), ClientOptions(operator_token()));
  Result<HttpReply> r = c.Post(RolloutsPath(), spec_json);
  if (!r.ok() || r->status != 201) {
    throw std::runtime_error("rollout start failed: " + (r.ok() ? r->body : r.status().ToString()));
  }
  return r->body;
}

long DaemonFixture::RolloutAction(const std::string& id, const std::string& action, const std::string& reason) {
  HttpClient c(url(), ClientOptions(operator_token()));
  Result<HttpReply> r = c.Post(RolloutActionPath(id, action), "{\"reason\":\"" + reason + "\"}");
  return r.ok() ? r->status : -1;
}

std::string DaemonFixture::GetRollout(const std::string& id, bool events) {
  HttpClient c(url(), ClientOptions(operator_token()));
  Result<HttpReply> r = c.Get(events ? RolloutEventsPath(id) : RolloutPath(id));
  return r.ok() ? r->body : r.status().ToString();
}

CommandResult DaemonFixture::Cli(std::vector<std::string> args) {
  if (tls_) {
    for (const auto& [flag, file] : {std::pair{"--ca-file", tls_->ca_file}, {"--client-cert", tls_->client_certificate},
                                     {"--client-key", tls_->client_key}}) {
      if (!file.empty()) args.insert(args.begin(), {flag, file});
    }
  }
  args.insert(args.begin(), {MeridianPath(), "--server", url()});
  return Run(args);
}

CommandResult DaemonFixture::Publish(const std::string& model, const std::string& version, const std::string& path) {
  return Cli({"--token", publisher_token(), "--output", "json", "publish", "--key", release_key(), "--model", model,
              "--version", version, path});
}

CommandResult DaemonFixture::Fsck() { return Run({MeridiandPath(), "fsck", "--data", data()}); }

FakeHttpServer::FakeHttpServer(Handler handler) : handler_(std::move(handler)) {
  fd_ = ListenLoopback(&port_, 16);
  if (fd_ < 0) throw std::runtime_error("fake server: cannot listen on 127.0.0.1");
  thread_ = std::thread([this] { Serve(); });
}

FakeHttpServer::~FakeHttpServer() {
  ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
  thread_.join();
  ::close(fd_);
}

void FakeHttpServer::Serve() {
  constexpr size_t kRequestHeadBytesMax = 64u << 10;
  constexpr size_t kRequestBodyBytesMax = 1u << 20;
  for (;;) {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < kRequestHeadBytesMax) {
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n <= 0) break;
      head.append(buf, static_cast<size_t>(n));
    }
    FakeRequest req;
    size_t end = head.find("\r\n\r\n");
    size_t sp1 = head.find(' ');
    size_t sp2 = sp1 == std::string::npos ? sp1 : head.find(' ', sp1 + 1);
    if (sp2 != std::string::npos) {
      req.method = head.substr(0, sp1);
      req.path = head.substr(sp1 + 1, sp2 - sp1 - 1);
    }
    auto header = [&](const std::string& name) -> std::string {
      size_t at = head.find("\r\n" + name + ": ");
      if (at == std::string::npos || at > end) return "";
      at += name.size() + 4;
      return head.substr(at, head.find("\r\n", at) - at);
    };
    req.range = header("Range");
    std::string length = header("Content-Length");
    size_t body_bytes = std::min<size_t>(length.empty() ? 0 : std::stoul(length), kRequestBodyBytesMax);
    if (end != std::string::npos) req.body = head.substr(end + 4);
    while (req.body.size() < body_bytes) {
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n <= 0) break;
      req.body.append(buf, static_cast<size_t>(n));
    }
    FakeReply reply = handler_(req);
    std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " X\r\n" +
                      (reply.chunked ? "Transfer-Encoding: chunked"
                                     : "Content-Length: " + std::to_string(reply.body.size() + reply.filler_bytes)) +
                      "\r\nConnection: close\r\n";
    for (const std::string& h : reply.headers) out += h + "\r\n";
    out += "\r\n";
    // False once the client stopped taking bytes.
    auto send_all = [&](std::string_view bytes) {
      for (size_t off = 0; off < bytes.size();) {
        ssize_t n = ::send(c, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
      }
      return true;
    };
    auto send_body = [&](std::string_view piece) {
      if (piece.empty()) return true;
      if (!reply.chunked) return send_all(piece);
      return send_all(fmt::format("{:x}\r\n", piece.size())) && send_all(piece) && send_all("\r\n");
    };
    bool open = send_all(out) &&
                send_body(std::string_view(reply.body).substr(0, std::min(reply.body.size(), reply.body_bytes_sent_max)));
    const std::string filler(64u << 10, 'x');
    for (uint64_t left = reply.filler_bytes; open && left > 0;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, filler.size()));
      open = send_body(std::string_view(filler).substr(0, n));
      if (open) filler_bytes_sent_ += n;
      left -= n;
    }
    if (open && reply.chunked) send_all("0\r\n\r\n");
    using std::chrono::steady_clock, std::chrono::milliseconds;
    const auto silent_until = steady_clock::now() + milliseconds(reply.silent_ms);
    for (pollfd p{c, POLLIN, 0}; open;) {
      const auto left = std::chrono::duration_cast<milliseconds>(silent_until - steady_clock::now());
      if (left.count() <= 0) break;
      // The client sends nothing more: readable means it closed (or failed).
      if (::poll(&p, 1, static_cast<int>(left.count())) > 0) open = ::read(c, buf, sizeof(buf)) > 0;
    }
    ::close(c);
  }
}

FakeReply Forward(HttpClient& server, const FakeRequest& request) {
  std::vector<std::string> headers;
  if (!request.range.empty()) headers.push_back("Range: " + request.range);
  Result<HttpReply> r = request.method == "POST"  ? server.Post(request.path, request.body)
                       : request.method == "PUT" ? server.Put(request.path, AsBytes(request.body))
                                                 : server.Get(request.path, headers);
  if (!r.ok()) return FakeReply{502, "", {}};
  FakeReply out{static_cast<int>(r->status), r->body, {}};
  if (!r->Header("content-range").empty()) out.headers.push_back("Content-Range: " + r->Header("content-range"));
  return out;
}

std::string FindProgram(const std::string& name) {
  std::vector<std::string> dirs = {"/usr/sbin", "/usr/local/sbin"};
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    for (size_t start = 0; start <= p.size();) {
      size_t end = p.find(':', start);
      if (end == std::string::npos) end = p.size();
      if (end > start) dirs.push_back(p.substr(start, end - start));
      start = end + 1;
    }
  }
  for (const std::string& d : dirs) {
    if (::access((d + "/" + name).c_str(), X_OK) == 0) return d + "/" + name;
  }
  return "";
}

uint16_t FreeLoopbackPort() {
  uint16_t port = 0;
  int fd = ListenLoopback(&port, 1);
  if (fd < 0) return 0;
  ::close(fd);
  return port;
}

namespace {

void ReplaceAll(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

}  // namespace

FrontEnd::FrontEnd(FrontEndSpec spec) : spec_(std::move(spec)) {
  const std::string binary = FindProgram(spec_.program);
  if (binary.empty()) FAIL(spec_.program << " is not installed: run scripts/setup.sh (Debian package " << spec_.program << ")");
  const char* path = std::getenv(spec_.template_variable.c_str());
  if (path == nullptr) FAIL(spec_.template_variable << " (the template's path) is not set: run with meson test");
  std::string text(AsString(ReadFile(path)));
  for (const auto& [placeholder, value] : spec_.placeholders) {
    REQUIRE(text.find(placeholder) != std::string::npos);
    ReplaceAll(text, placeholder, value);
  }
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), spec_.arguments.begin(), spec_.arguments.end());
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreeLoopbackPort();
    REQUIRE(port_ != 0);
    std::string config = text;
    ReplaceAll(config, "@LISTEN@", "127.0.0.1:" + std::to_string(port_));
    REQUIRE(config.find('@') == std::string::npos);  // every placeholder filled
    WriteFile(spec_.config_path, AsBytes(config));
    child_ = std::make_unique<Child>(argv, spec_.output_path);
    HttpClient probe(url(), HttpClientOptions{.connect_timeout_ms = 1000, .timeout_ms = 5000,
                                              .response_bytes_max = 1 << 20, .bearer_token = {}});
    const bool up = WaitFor([&] {
      if (child_->Wait(std::chrono::milliseconds(0)) != -1000) return true;  // exited
      Result<HttpReply> r = probe.Get(spec_.probe_path);                   // through it to a daemon
      return r.ok() && r->status == 200;
    }, std::chrono::seconds(30));
    if (up && child_->running()) return;
    const bool exited = !child_->running();
    Halt();  // a throw from here skips the destructor
    const std::string log = Log();
    if (exited && log.find("ddress already in use") != std::string::npos) continue;
    FAIL(spec_.program << " did not start: " << log);
  }
  FAIL(spec_.program << " found no free port");
}

FrontEnd::~FrontEnd() { Halt(); }

std::string FrontEnd::Log() const {
  std::string log(AsString(ReadFile(spec_.output_path)));
  if (spec_.log) log += spec_.log();
  return log;
}

int FrontEnd::Stop(int signal) {
  child_->Signal(signal);
  return child_->Wait(std::chrono::seconds(30));
}

void FrontEnd::Halt() {
  if (child_ && child_->running()) {
    child_->Signal(SIGTERM);
    child_->Wait(std::chrono::seconds(30));
  }
}

uint64_t ResidentBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

Bytes RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(b.data() + i, &v, 8);
  }
  for (; i < n; ++i) b[i] = static_cast<uint8_t>(rng());
  return b;
}

void WriteFile(const std::string& path, ByteSpan data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!f) throw std::runtime_error("write failed: " + path);
}

Bytes ReadFile(const std::string& path) {
  // One read through the library, one copy: byte by byte, as an
  // istreambuf_iterator goes, takes a second per few MiB in this unoptimised,
  // sanitized test code.
  Result<std::string> text = ReadFileToString(path, std::numeric_limits<uint64_t>::max());
  if (!text.ok()) return {};
  Bytes bytes(text->size());
  if (!bytes.empty()) std::memcpy(bytes.data(), text->data(), bytes.size());
  return bytes;
}

}  // namespace meridian::testing
