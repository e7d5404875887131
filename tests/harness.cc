// Child processes, temp dirs and the meridiand fixture for integration tests.
#include "tests/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include "base/file.h"
#include "client/http_client.h"

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

static pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

static int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

CommandResult Run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  TempDir io;
  pid_t pid = Spawn(argv, io / "out", io / "err");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  CommandResult r;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.exit_code = DecodeWait(status);
  r.out = AsString(ReadFile(io / "out"));
  r.err = AsString(ReadFile(io / "err"));
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
  bool done = WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
  if (!done) return -1000;
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

static std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}
std::string MeridiandPath() { return EnvOr("MERIDIAND", "./daemon/meridiand"); }
std::string MeridianPath() { return EnvOr("MERIDIAN", "./cli/meridian"); }

DaemonFixture::DaemonFixture() {
  CommandResult k = Run({MeridianPath(), "keygen", release_key()});
  if (k.exit_code != 0) throw std::runtime_error("keygen failed: " + k.err);
  CommandResult i = Run({MeridiandPath(), "init", "--data", data(), "--release-key", release_key() + ".pub"});
  if (i.exit_code != 0) throw std::runtime_error("init failed: " + i.err);
}

DaemonFixture::~DaemonFixture() { child_.reset(); }

void DaemonFixture::Start() {
  std::string port_file = dir_ / "port";
  ::unlink(port_file.c_str());
  child_ = std::make_unique<Child>(
      std::vector<std::string>{MeridiandPath(), "--data", data(), "--listen", "127.0.0.1:0", "--port-file", port_file},
      dir_ / "meridiand.log");
  if (!WaitFor([&] { return std::filesystem::exists(port_file); }, std::chrono::seconds(30))) {
    throw std::runtime_error("meridiand did not start: " + std::string(AsString(ReadFile(dir_ / "meridiand.log"))));
  }
  port_ = static_cast<uint16_t>(std::stoi(std::string(AsString(ReadFile(port_file)))));
  HttpClient probe(url());
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

std::string DaemonFixture::publisher_token() const {
  std::string t(AsString(ReadFile(data() + "/publisher.token")));
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t;
}

std::string DaemonFixture::operator_token() const {
  std::string t(AsString(ReadFile(data() + "/operator.token")));
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t;
}

CommandResult DaemonFixture::Cli(std::vector<std::string> args) {
  args.insert(args.begin(), {MeridianPath(), "--server", url()});
  return Run(args);
}

CommandResult DaemonFixture::Publish(const std::string& model, const std::string& version, const std::string& path) {
  return Cli({"--token", publisher_token(), "--output", "json", "publish", "--key", release_key(), "--model", model,
              "--version", version, path});
}

CommandResult DaemonFixture::Fsck() { return Run({MeridiandPath(), "fsck", "--data", data()}); }

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
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

}  // namespace meridian::testing
