// Integration: the systemd units in deploy/systemd/ (systemd-analyze verify
// and security), and the sd_notify protocol of the real meridiand and
// meridian-agent: each is started with NOTIFY_SOCKET naming a datagram socket
// this test binds, as systemd would for a Type=notify unit.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <stdexcept>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "base/bytes.h"
#include "base/file.h"
#include "client/http_client.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

constexpr std::chrono::seconds kNotifyWait{30};

std::string SourceRoot() {
  const char* root = std::getenv("MERIDIAN_SOURCE_ROOT");
  if (root == nullptr) throw std::runtime_error("MERIDIAN_SOURCE_ROOT is not set (run through meson test)");
  return root;
}

std::string UnitPath(const std::string& name) { return SourceRoot() + "/deploy/systemd/" + name; }

// The service manager's end of NOTIFY_SOCKET: a unix datagram socket bound
// in a temporary directory.
class NotifySocket {
 public:
  NotifySocket() : path_(dir_ / "notify") {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.size() >= sizeof(addr.sun_path)) throw std::runtime_error("notify socket");
    path_.copy(addr.sun_path, path_.size());
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("cannot bind " + path_);
    }
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  // The environment entry that points a child here.
  std::string env() const { return "NOTIFY_SOCKET=" + path_; }

  // The next message, or "" when none comes within kNotifyWait.
  std::string Next() {
    pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kNotifyWait).count())) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  TempDir dir_;
  std::string path_;
  int fd_ = -1;
};

// Whether a notify message (newline-separated assignments) holds `line`.
bool Has(const std::string& message, const std::string& line) {
  return ("\n" + message + "\n").find("\n" + line + "\n") != std::string::npos;
}

// A SIGHUP is a reload that keeps the process: RELOADING=1, then READY=1.
void ExpectReloadAcknowledged(Child& child, NotifySocket& notify) {
  child.Signal(SIGHUP);
  std::string reloading = notify.Next();
  INFO(reloading);
  CHECK(Has(reloading, "RELOADING=1"));
  CHECK(reloading.find("MONOTONIC_USEC=") != std::string::npos);
  std::string ready = notify.Next();
  INFO(ready);
  CHECK(Has(ready, "READY=1"));
  CHECK(child.Wait(std::chrono::milliseconds(0)) == -1000);  // still running
}

// A SIGTERM says STOPPING=1 before the process exits 0.
void ExpectStopAnnounced(Child& child, NotifySocket& notify) {
  child.Signal(SIGTERM);
  std::string stopping = notify.Next();
  INFO(stopping);
  CHECK(Has(stopping, "STOPPING=1"));
  CHECK(child.Wait(std::chrono::seconds(30)) == 0);
}

}  // namespace

TEST_CASE("systemd-analyze verify finds nothing wrong with either unit", "[systemd]") {
  // verify wants ExecStart's binary to exist: a copy of each unit runs the built one.
  TempDir t;
  for (const auto& [unit, installed, built] :
       {std::tuple{"meridiand.service", "/usr/bin/meridiand", MeridiandPath()},
        std::tuple{"meridian-agent.service", "/usr/bin/meridian-agent", MeridianAgentPath()}}) {
    std::string text(AsString(ReadFile(UnitPath(unit))));
    size_t at = text.find(std::string("ExecStart=") + installed + " ");
    REQUIRE(at != std::string::npos);
    text.replace(at + std::string("ExecStart=").size(), std::string(installed).size(), built);
    std::string copy = t / unit;
    REQUIRE(WriteFileAtomic(copy, text).ok());
    CommandResult r = Run({"/usr/bin/systemd-analyze", "verify", copy}, std::chrono::seconds(60));
    INFO(unit << ":\n" << r.out << r.err);
    CHECK(r.exit_code == 0);
    // Complaints about the host's own units are not ours; any about this one are.
    CHECK((r.out + r.err).find(unit) == std::string::npos);
  }
}

TEST_CASE("systemd-analyze security rates both units OK or better", "[systemd]") {
  // systemd's ratings: below 1.0 SAFE (0.0 PERFECT), below 5.0 OK, then MEDIUM,
  // EXPOSED, UNSAFE, DANGEROUS.
  constexpr double kOkExposureBelow = 5.0;
  const std::regex overall(R"(Overall exposure level for (\S+): ([0-9]+\.[0-9]) (\S+))");
  for (const char* unit : {"meridiand.service", "meridian-agent.service"}) {
    CommandResult r = Run({"/usr/bin/systemd-analyze", "security", "--offline=yes", UnitPath(unit)}, std::chrono::seconds(60));
    INFO(unit << ":\n" << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    std::smatch m;
    REQUIRE(std::regex_search(r.out, m, overall));
    const double exposure = std::stod(m[2].str());
    fmt::print("systemd-analyze security {}: exposure {:.1f} {}\n", unit, exposure, m[3].str());
    CHECK(m[1].str() == unit);
    CHECK(exposure < kOkExposureBelow);
    CHECK((m[3].str() == "OK" || m[3].str() == "SAFE" || m[3].str() == "PERFECT"));
  }
}

TEST_CASE("meridiand notifies READY once it answers, RELOADING/READY on SIGHUP, STOPPING on SIGTERM", "[systemd]") {
  DaemonFixture d;  // an initialised data directory; the daemon is started here, under "systemd"
  NotifySocket notify;
  std::string port_file = d.dir() / "port";
  Child daemon({"/usr/bin/env", notify.env(), MeridiandPath(), "--data", d.data(), "--listen", "127.0.0.1:0",
                "--port-file", port_file},
               d.dir() / "meridiand.log");

  std::string ready = notify.Next();
  INFO(ready);
  INFO(AsString(ReadFile(d.dir() / "meridiand.log")));
  REQUIRE(Has(ready, "READY=1"));
  CHECK(ready.find("STATUS=serving") != std::string::npos);
  // READY means listening: the very first request is answered, no retries.
  REQUIRE(std::filesystem::exists(port_file));
  const int port = std::stoi(std::string(AsString(ReadFile(port_file))));
  HttpClient client(fmt::format("http://127.0.0.1:{}", port));
  auto healthz = [&] {
    auto r = client.Get("/healthz");
    return r.ok() && r->status == 200;
  };
  CHECK(healthz());

  ExpectReloadAcknowledged(daemon, notify);
  CHECK(healthz());  // a reload serves on
  ExpectStopAnnounced(daemon, notify);
}

TEST_CASE("meridian-agent notifies READY with its state open, RELOADING/READY on SIGHUP, STOPPING on SIGTERM",
          "[systemd]") {
  DaemonFixture d;
  d.Start();
  TempDir t;
  std::string state = t / "state";
  std::string config = WriteAgentConfig(t / "agent.toml", {.id = "pos-1", .servers = {d.url()}, .root = d.root_json(),
                                                           .state = state, .enrol_at = &d,
                                                           .model = "fraud"});
  NotifySocket notify;
  Child agent({"/usr/bin/env", notify.env(), MeridianAgentPath(), "--config", config}, t / "agent.log");

  std::string ready = notify.Next();
  INFO(ready);
  INFO(AsString(ReadFile(t / "agent.log")));
  REQUIRE(Has(ready, "READY=1"));
  CHECK(ready.find("STATUS=terminal pos-1") != std::string::npos);
  CHECK(std::filesystem::exists(state + "/root.json"));  // the state directory was opened first

  ExpectReloadAcknowledged(agent, notify);
  ExpectStopAnnounced(agent, notify);
}
