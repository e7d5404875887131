// HTTPS end to end, with certificates made by the test (tests/certs.h): the
// CLI, an agent and a region following its origin, against real meridiand
// processes over TLS; wrong CA, wrong host name, an expired certificate, TLS
// 1.1 and a missing client certificate each refused with their cause named;
// an agent that does not trust the server backs off; SIGHUP swaps in a
// renewed certificate under 100 running downloads; a terminal's client
// certificate stands for its token (mTLS); no credential leaves over plain
// HTTP for another machine.
#include <curl/curl.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "client/api.h"
#include "client/http_client.h"
#include "tests/certs.h"
#include "tests/harness.h"
#include "tests/loopback.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Upper-case hex without separators or leading zeros: OpenSSL and libcurl
// print serial numbers differently.
std::string NormalSerial(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ':'), s.end());
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  s.erase(0, std::min(s.find_first_not_of('0'), s.size()));
  return s;
}

// The serial of the certificate a new TLS connection to `url` is shown
// (unverified: only the certificate is of interest); "" without one.
std::string PresentedSerial(const std::string& url) {
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, (url + "/healthz").c_str());
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(curl, CURLOPT_CERTINFO, 1L);
  curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  std::string serial;
  curl_certinfo* info = nullptr;
  if (curl_easy_perform(curl) == CURLE_OK && curl_easy_getinfo(curl, CURLINFO_CERTINFO, &info) == CURLE_OK &&
      info != nullptr && info->num_of_certs > 0) {
    for (curl_slist* field = info->certinfo[0]; field != nullptr; field = field->next) {
      std::string_view line = field->data;
      if (line.starts_with("Serial Number:")) serial = NormalSerial(std::string(line.substr(14)));
    }
  }
  curl_easy_cleanup(curl);
  return serial;
}

// Puts `from` at `to` in one rename, as a certificate renewal tool would.
void Install(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to + ".new", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(to + ".new", to);
}

// SIGHUPs the daemon and waits until new connections are shown `expected`.
void ReloadAndWait(DaemonFixture& d, const std::string& expected) {
  ::kill(d.pid(), SIGHUP);
  REQUIRE(WaitFor([&] { return PresentedSerial(d.url()) == NormalSerial(expected); }, seconds(10)));
}

// A TCP relay on 127.0.0.1 to another loopback port that counts the
// connections made through it: how often a client tried.
class CountingRelay {
 public:
  explicit CountingRelay(uint16_t to) : to_(to) {
    fd_ = ListenLoopback(&port_, 64);
    if (fd_ < 0) throw std::runtime_error("relay: cannot listen on 127.0.0.1");
    accepting_ = std::thread([this] { Accept(); });
  }
  ~CountingRelay() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
    accepting_.join();
    ::close(fd_);
    for (std::thread& t : pipes_) t.join();
  }
  uint16_t port() const { return port_; }
  int connections() const { return connections_; }

 private:
  void Accept() {
    for (;;) {
      int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      ++connections_;
      int server = ConnectLoopback(to_);
      pipes_.emplace_back([client, server] { Pipe(client, server); });
    }
  }
  // Copies both ways until either side closes (or 10 s of silence).
  static void Pipe(int a, int b) {
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    char buf[16384];
    while (b >= 0 && ::poll(fds, 2, 10'000) > 0) {
      int from = (fds[0].revents != 0) ? 0 : 1;
      ssize_t n = ::read(fds[from].fd, buf, sizeof(buf));
      if (n <= 0 || ::send(fds[1 - from].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    ::close(a);
    if (b >= 0) ::close(b);
  }
  uint16_t to_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::thread accepting_;
  std::vector<std::thread> pipes_;  // touched by the accepting thread only, then joined
};

std::vector<std::string> TlsFlags(const CertFiles& server) {
  return {"--tls-certificate", server.certificate, "--tls-key", server.key};
}

std::string Quoted(const std::string& key, const std::string& value) { return key + " = \"" + value + "\"\n"; }

}  // namespace

TEST_CASE("over HTTPS the CLI publishes and pulls (--ca-file or SSL_CERT_FILE) and an agent with ca_file installs") {
  TempDir t;
  TestCa ca(t.path(), "ca");
  CertFiles server = ca.IssueServer("server");
  DaemonFixture d;
  d.UseTls({.ca_file = ca.certificate()});
  d.Start(TlsFlags(server));
  REQUIRE(d.url().starts_with("https://"));
  Bytes model = RandomBytes(700'000, 7);
  WriteFile(t / "model", model);
  CommandResult pub = d.Publish("fraud", "1.0.0", t / "model");
  INFO(pub.err);
  REQUIRE(pub.exit_code == 0);
  CommandResult pull =
      d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "fraud", "1.0.0", "-o", t / "pulled"});
  INFO(pull.err);
  REQUIRE(pull.exit_code == 0);
  CHECK(ReadFile(t / "pulled") == model);
  // The CA file from the environment, as curl(1) and OpenSSL take it.
  CommandResult env = Run({"/usr/bin/env", "-u", "CURL_CA_BUNDLE", "SSL_CERT_FILE=" + ca.certificate(), MeridianPath(),
                           "--server", d.url(), "--token", d.terminal_token(), "versions", "fraud"});
  INFO(env.err);
  CHECK(env.exit_code == 0);
  CHECK_THAT(env.out, Catch::Contains("1.0.0"));

  d.StartRollout(RolloutSpecJson("r1", "1.0.0"));
  std::string state = t / "state";
  std::string config = WriteAgentConfig(t / "agent.toml", {.id = "pos-1", .servers = {d.url()}, .root = d.root_json(),
                                                           .state = state, .enrol_at = &d,
                                                           .model = "fraud",
                                                           .extra = Quoted("ca_file", ca.certificate())});
  CommandResult once = Run({MeridianAgentPath(), "--config", config, "--once"});
  INFO(once.err);
  REQUIRE(once.exit_code == 0);
  CHECK(InstalledVersion(state, "fraud") == "1.0.0");

  // A region follows the origin over HTTPS, trusting the CA given to it.
  std::unique_ptr<DaemonFixture> region = DaemonFixture::Region(d.root_json());
  region->StartRegion("sg", d.url(), d.mirror_token_file(), {"--upstream-ca-file", ca.certificate()});
  HttpClient at_region(region->url(), HttpClientOptions{.bearer_token = region->terminal_token()});
  CHECK(WaitFor([&] {
    Result<HttpReply> r = at_region.Get(VersionPath("fraud", "1.0.0"));
    return r.ok() && r->status == 200;
  }, seconds(20)));
}

TEST_CASE("HTTPS failures name their cause; a bad file on SIGHUP keeps the certificate served") {
  TempDir t;
  TestCa ca(t.path(), "ca"), stranger(t.path(), "stranger");
  // The daemon reads its certificate and key from one place; each case
  // installs another pair there and reloads.
  CertFiles served{t / "served.pem", t / "served.key"};
  auto install = [&](const CertFiles& c) {
    Install(c.key, served.key);
    Install(c.certificate, served.certificate);
  };
  install(ca.IssueServer("good"));
  DaemonFixture d;
  d.UseTls({.ca_file = ca.certificate()});
  d.Start(TlsFlags(served));
  auto models = [&](const std::string& ca_file) {
    return Run({MeridianPath(), "--server", d.url(), "--ca-file", ca_file, "models"});
  };
  CHECK(models(ca.certificate()).exit_code == 0);

  SECTION("a certificate the CA file did not sign") {
    CommandResult r = models(stranger.certificate());
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains("the certificate of 127.0.0.1 is not trusted by CA file " + stranger.certificate()));
  }
  SECTION("TLS 1.1 is refused by the server") {
    // SECLEVEL=0 lets this client offer TLS 1.1 (Debian's OpenSSL would not), so the refusal is the server's.
    CommandResult r = Run({"/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(d.port()),
                           "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"});
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.out + r.err, Catch::Contains("alert protocol version"));
  }
  SECTION("a certificate for another host name, an expired one, then a file that is no certificate") {
    CertFiles other_name = ca.IssueServer("other-name", 30, {"DNS:other.example"});
    install(other_name);
    ReloadAndWait(d, CertificateSerial(other_name.certificate));
    CommandResult r = models(ca.certificate());
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains("the certificate of 127.0.0.1 is for another host name"));

    CertFiles expired = ca.IssueServer("expired", -1);
    install(expired);
    ReloadAndWait(d, CertificateSerial(expired.certificate));
    r = models(ca.certificate());
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains("the certificate of 127.0.0.1 has expired"));

    WriteFile(served.certificate, AsBytes("not a certificate\n"));
    ::kill(d.pid(), SIGHUP);
    auto log = [&] { return std::string(AsString(ReadFile(d.dir() / "meridiand.log"))); };
    REQUIRE(WaitFor([&] { return log().find("TLS not reloaded") != std::string::npos; }, seconds(10)));
    CHECK_THAT(log(), Catch::Contains(served.certificate + ": holds no PEM certificate"));
    CHECK(PresentedSerial(d.url()) == NormalSerial(CertificateSerial(expired.certificate)));
  }
}

TEST_CASE("an agent that does not trust the server says why and backs off instead of retrying at once") {
  TempDir t;
  TestCa ca(t.path(), "ca"), stranger(t.path(), "stranger");
  DaemonFixture d;
  d.UseTls({.ca_file = ca.certificate()});
  d.Start(TlsFlags(ca.IssueServer("server")));
  CountingRelay relay(d.port());
  std::string config = WriteAgentConfig(
      t / "agent.toml",
      {.id = "pos-1", .servers = {"https://127.0.0.1:" + std::to_string(relay.port())}, .root = d.root_json(),
       .state = t / "state", .model = "fraud",
       .extra = Quoted("ca_file", stranger.certificate()) + "backoff_initial_ms = 1000\nbackoff_max_ms = 2000\n"});
  Child agent({MeridianAgentPath(), "--config", config}, t / "agent.log");
  REQUIRE(WaitFor([&] { return relay.connections() > 0; }, seconds(10)));
  // A window of time to count attempts in, not a synchronisation: the
  // backoff allows at most one attempt at once and one per [0.5, 1] s, then
  // per [1, 2] s, so 3 s hold at most 4 more (a tight loop makes hundreds).
  int first = relay.connections();
  std::this_thread::sleep_for(seconds(3));
  int attempts = relay.connections() - first;
  CHECK(attempts <= 4);
  CHECK(attempts >= 1);
  CHECK_THAT(std::string(AsString(ReadFile(t / "agent.log"))),
             Catch::Contains("the certificate of 127.0.0.1 is not trusted by CA file " + stranger.certificate()));
}

TEST_CASE("SIGHUP with a renewed certificate under 100 running downloads: none fails, new handshakes get the new one") {
  TempDir t;
  TestCa ca(t.path(), "ca");
  CertFiles served{t / "served.pem", t / "served.key"};
  CertFiles old_cert = ca.IssueServer("old"), renewed = ca.IssueServer("renewed");
  Install(old_cert.key, served.key);
  Install(old_cert.certificate, served.certificate);
  DaemonFixture d;
  d.UseTls({.ca_file = ca.certificate()});
  d.Start(TlsFlags(served));
  Bytes model = RandomBytes(1'000'000, 11);
  WriteFile(t / "model", model);
  REQUIRE(d.Publish("fraud", "1.0.0", t / "model").exit_code == 0);
  const Digest digest = Digest::Of(model);
  REQUIRE(PresentedSerial(d.url()) == NormalSerial(CertificateSerial(old_cert.certificate)));

  // Each download holds after its first piece until the reload is done, so
  // all of them span it however fast or slow this machine is (a rate limit
  // instead let every one finish first on a busy one, or not start in time).
  constexpr int kDownloads = 100;
  std::atomic<int> receiving{0}, finished{0}, good{0};
  std::mutex mu;
  std::condition_variable cv;
  bool reloaded = false;
  auto release = [&] {
    {
      std::lock_guard lock(mu);
      reloaded = true;
    }
    cv.notify_all();
  };
  std::vector<std::jthread> downloads;
  // Lets them go before they are joined, also when a REQUIRE below throws.
  struct ReleaseOnExit {
    std::function<void()> release;
    ~ReleaseOnExit() { release(); }
  } release_on_exit{release};
  std::vector<std::string> failures;  // of downloads that ended before their first piece, under mu
  const HttpClientOptions options = d.ClientOptions(d.terminal_token());
  for (int i = 0; i < kDownloads; ++i) {
    downloads.emplace_back([&] {
      HttpClient c(d.url(), options);
      Bytes got;
      Result<HttpReply> r = c.GetStreaming(ArtifactPath(digest), [&](ByteSpan piece) {
        const bool first = got.empty();
        got.insert(got.end(), piece.begin(), piece.end());
        if (first) {
          ++receiving;
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return reloaded; });
        }
        return Status::Ok();
      }, 2'000'000);
      if (r.ok() && r->status == 200 && got == model) ++good;
      if (got.empty()) {
        std::lock_guard lock(mu);
        failures.push_back(r.ok() ? std::to_string(r->status) + " " + r->body : r.status().ToString());
      }
      ++finished;
    });
  }
  // Each one either holds after its first piece or has ended without one.
  const bool placed = WaitFor([&] { return receiving + finished == kDownloads; }, seconds(60));
  {
    std::lock_guard lock(mu);
    INFO(receiving.load() << " of " << kDownloads << " holding their first piece, " << failures.size()
                          << " ended without one" << (failures.empty() ? "" : ", the first: " + failures.front()));
    REQUIRE(placed);
    REQUIRE(failures.empty());
  }
  CHECK(finished == 0);  // every one is under way
  Install(renewed.key, served.key);
  Install(renewed.certificate, served.certificate);
  ReloadAndWait(d, CertificateSerial(renewed.certificate));
  release();
  for (std::jthread& th : downloads) th.join();
  CHECK(good == kDownloads);
  // The renewed certificate verifies too: a full request over a new connection.
  HttpClient after(d.url(), d.ClientOptions());
  Result<HttpReply> r = after.Get("/healthz");
  REQUIRE(r.ok());
  CHECK(r->status == 200);
}

TEST_CASE("mTLS: a terminal's certificate stands for its token, for its own id only; without one the daemon refuses") {
  TempDir t;
  TestCa ca(t.path(), "ca");
  CertFiles console = ca.IssueClient("console", "release-console");
  CertFiles pos7 = ca.IssueClient("pos-7", "pos-7");
  DaemonFixture d;
  d.UseTls({.ca_file = ca.certificate(), .client_certificate = console.certificate, .client_key = console.key});
  std::vector<std::string> flags = TlsFlags(ca.IssueServer("server"));
  flags.insert(flags.end(), {"--tls-client-ca", ca.certificate(), "--tls-client-certificates", "required"});
  d.Start(flags);
  WriteFile(t / "model", RandomBytes(300'000, 3));
  REQUIRE(d.Publish("fraud", "1.0.0", t / "model").exit_code == 0);
  d.StartRollout(RolloutSpecJson("r1", "1.0.0"));

  // No token: the certificate is the terminal's identity.
  std::string state = t / "state";
  std::string config = WriteAgentConfig(
      t / "agent.toml", {.id = "pos-7", .servers = {d.url()}, .root = d.root_json(), .state = state, .model = "fraud",
                         .extra = Quoted("ca_file", ca.certificate()) + Quoted("client_certificate", pos7.certificate) +
                                  Quoted("client_key", pos7.key)});
  CommandResult once = Run({MeridianAgentPath(), "--config", config, "--once"});
  INFO(once.err);
  REQUIRE(once.exit_code == 0);
  CHECK(InstalledVersion(state, "fraud") == "1.0.0");
  CommandResult status = Run({MeridianAgentPath(), "status", "--config", config, "--output", "json"});
  REQUIRE(status.exit_code == 0);
  CHECK(Json::parse(status.out)["reports_waiting"] == 0);  // its reports were taken

  // pos-7's certificate cannot speak for pos-8, with or without the terminal token.
  HttpClient as_pos7(d.url(), HttpClientOptions{.bearer_token = d.terminal_token(),
                                                .tls = {.ca_file = ca.certificate(),
                                                        .client_certificate = pos7.certificate,
                                                        .client_key = pos7.key}});
  Result<HttpReply> other = as_pos7.Get(TargetPath("pos-8", {.model = "fraud", .channel = "stable", .current = "", .profile = "", .region = ""}));
  REQUIRE(other.ok());
  CHECK(other->status == 403);
  CHECK_THAT(ErrorMessageOf(*other), Catch::Contains("terminal 'pos-7'"));

  // The certificate alone reads the (private) model, until the terminal is revoked.
  HttpClient pos7_cert(d.url(), HttpClientOptions{.tls = {.ca_file = ca.certificate(),
                                                          .client_certificate = pos7.certificate,
                                                          .client_key = pos7.key}});
  const std::string manifest = "/v1/models/fraud/versions/1.0.0";
  CHECK(pos7_cert.Get(manifest)->status == 200);
  REQUIRE(d.Cli({"--token", d.operator_token(), "terminals", "revoke", "pos-7"}).exit_code == 0);
  Result<HttpReply> revoked = pos7_cert.Get(manifest);
  REQUIRE(revoked.ok());
  CHECK(revoked->status == 403);
  CHECK_THAT(ErrorMessageOf(*revoked), Catch::Contains("'pos-7' was revoked"));

  // Required: a client without a certificate is told so.
  CommandResult bare = Run({MeridianPath(), "--server", d.url(), "--ca-file", ca.certificate(), "models"});
  CHECK(bare.exit_code != 0);
  CHECK_THAT(bare.err, Catch::Contains("127.0.0.1 requires a client certificate and none is configured"));
}

TEST_CASE("a credential over plain HTTP to a host that is not loopback is refused before connecting") {
  // 192.0.2.0/24 is TEST-NET-1: never routed, and never contacted here.
  auto started = std::chrono::steady_clock::now();
  CommandResult cli = Run({MeridianPath(), "--server", "http://192.0.2.1:7400", "--token", "secret", "rollout", "list"});
  CHECK(cli.exit_code != 0);
  CHECK_THAT(cli.err, Catch::Contains("refusing to send a credential over plain HTTP to http://192.0.2.1:7400"));
  CHECK_THAT(cli.err, Catch::Contains("--allow-insecure-http"));

  HttpClient client("http://192.0.2.1:7400", HttpClientOptions{.bearer_token = "secret"});
  Result<HttpReply> r = client.Get("/v1/rollouts");
  CHECK(r.status().code() == Status::Code::kFailedPrecondition);
  CHECK(std::chrono::steady_clock::now() - started < seconds(2));  // a connection attempt would wait 5 s

  TempDir t;
  std::string config = WriteAgentConfig(t / "agent.toml", {.id = "pos-1", .servers = {"http://192.0.2.1:7400"},
                                                           .root = t / "root.json", .state = t / "state",
                                                           .model = "fraud"});
  CommandResult agent = Run({MeridianAgentPath(), "--config", config, "--once"});
  CHECK(agent.exit_code == 2);
  CHECK_THAT(agent.err, Catch::Contains("refusing to send a credential over plain HTTP to http://192.0.2.1:7400"));

  HttpClientOptions token{.bearer_token = "secret"};
  for (const char* loopback : {"http://127.0.0.1:7400", "http://127.3.4.5", "http://[::1]:7400", "http://localhost:7400",
                               "https://192.0.2.1"}) {
    CHECK(CheckTransport(loopback, token).ok());
  }
  CHECK_FALSE(CheckTransport("http://10.1.2.3", token).ok());
  CHECK_FALSE(CheckTransport("http://[2001:db8::1]", token).ok());
  CHECK(CheckTransport("http://10.1.2.3", HttpClientOptions{}).ok());  // no credential: nothing to protect
  CHECK(CheckTransport("http://10.1.2.3",
                       HttpClientOptions{.bearer_token = "secret", .tls = {.allow_insecure_http = true}}).ok());
}
