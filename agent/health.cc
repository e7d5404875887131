// Runs the health-check command with a timeout and reads its metrics.
#include "agent/health.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

namespace meridian {
namespace {

std::atomic<pid_t> g_running_group{0};
static_assert(std::atomic<pid_t>::is_always_lock_free, "read from a signal handler");

bool IsMetricName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int64_t MillisLeft(std::chrono::steady_clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
}

}  // namespace

std::map<std::string, double> ParseHealthMetrics(std::string_view output) {
  std::map<std::string, double> metrics;
  while (!output.empty() && metrics.size() < kHealthMetricsMax) {
    size_t nl = output.find('\n');
    std::string_view line = output.substr(0, nl);
    output.remove_prefix(nl == std::string_view::npos ? output.size() : nl + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    size_t eq = line.find('=');
    if (eq == std::string_view::npos || !IsMetricName(line.substr(0, eq))) continue;
    std::string value(line.substr(eq + 1));
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(value.c_str(), &end);
    // Not "inf" or "nan": JSON has no such numbers, and a report carrying one
    // (written as null) is refused by the daemon and dropped, verdict and all.
    if (value.empty() || errno != 0 || end != value.c_str() + value.size() || !std::isfinite(v)) continue;
    metrics[std::string(line.substr(0, eq))] = v;
  }
  return metrics;
}

HealthResult RunHealthCheck(const std::string& command, const std::string& path, int64_t timeout_ms) {
  HealthResult result;
  std::string cmd = command;
  for (size_t at = cmd.find("{path}"); at != std::string::npos; at = cmd.find("{path}", at)) {
    std::string quoted = ShellQuote(path);
    cmd.replace(at, 6, quoted);
    at += quoted.size();
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    result.reason = "pipe failed";
    return result;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    result.reason = "fork failed";
    return result;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    // The check starts with no signal blocked, whatever its caller blocks
    // (the agent takes SIGTERM and SIGHUP in one thread, with sigwait).
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(fds[1], 1);
    int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: whichever runs first, the group exists before a kill
  g_running_group.store(pid);
  ::close(fds[1]);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string out;
  bool timed_out = false;
  for (;;) {
    int64_t left = MillisLeft(deadline);
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the command (and whatever inherited its stdout) closed it
    if (out.size() < kHealthOutputBytesMax) out.append(buf, static_cast<size_t>(std::min<size_t>(n, kHealthOutputBytesMax - out.size())));
  }
  ::close(fds[0]);
  int status = 0;
  // The output ended; the command exits right after, bounded by the deadline all the same.
  while (!timed_out) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (MillisLeft(deadline) <= 0) {
      timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    g_running_group.store(0);
    result.reason = fmt::format("health check timed out after {} ms", timeout_ms);
    return result;
  }
  ::kill(-pid, SIGKILL);  // nothing the check started outlives it
  g_running_group.store(0);
  result.metrics = ParseHealthMetrics(out);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    result.pass = true;
  } else if (WIFEXITED(status)) {
    result.reason = fmt::format("health check exited with status {}", WEXITSTATUS(status));
  } else {
    result.reason = fmt::format("health check killed by signal {}", WTERMSIG(status));
  }
  return result;
}

void KillRunningHealthCheck() {
  pid_t group = g_running_group.load();
  if (group > 0) ::kill(-group, SIGKILL);
}

}  // namespace meridian
