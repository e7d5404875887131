// meridian-agent: the terminal updater's command line (docs/agent.md).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/health.h"
#include "base/file.h"
#include "base/clock.h"
#include "base/service_notify.h"
#include "signing/signing.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // the cycle failed (see the last error)
constexpr int kExitUsage = 2;   // bad flags or configuration

// Stop requests and SIGHUP are taken by one thread (sigwait), where telling
// the service manager is safe, which a signal handler is not. Every write to
// the state directory is crash-safe (that is what kill -9 tests), so a stop
// exits at once instead of waiting out a long poll or a download; only a
// running health check must not be left behind. SIGHUP reloads nothing: the
// configuration is read at start, so a change takes a restart; it is
// acknowledged instead of ending the agent.
[[noreturn]] void HandleSignals(sigset_t signals, std::string status) {
  for (;;) {
    int signal = 0;
    if (::sigwait(&signals, &signal) != 0) continue;
    if (signal == SIGHUP) {
      meridian::NotifyReloading();
      std::fprintf(stderr, "%s meridian-agent: SIGHUP: nothing to reload (the configuration is read at start; "
                   "restart to change it)\n", meridian::FormatRfc3339(meridian::SystemClock::Get().NowUnixMillis()).c_str());
      meridian::NotifyReady(status);
      continue;
    }
    meridian::NotifyStopping();
    meridian::KillRunningHealthCheck();
    ::_exit(0);
  }
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "meridian-agent: %s\n", message.c_str());
  return code;
}

void PrintStatusText(const std::string& json_text) {
  nlohmann::json j = nlohmann::json::parse(json_text);
  std::printf("terminal %s\n", j["id"].get<std::string>().c_str());
  for (const auto& m : j["models"]) {
    auto slot = [](const nlohmann::json& s) { return s.is_null() ? std::string("-") : s.value("version", "?"); };
    std::printf("model %s (%s): current %s, previous %s", m["name"].get<std::string>().c_str(),
                m["channel"].get<std::string>().c_str(), slot(m["current"]).c_str(), slot(m["previous"]).c_str());
    if (!m["staging"].is_null()) {
      std::printf(", staging %s %llu/%llu bytes", m["staging"]["digest"].get<std::string>().c_str(),
                  static_cast<unsigned long long>(m["staging"]["downloaded"].get<uint64_t>()),
                  static_cast<unsigned long long>(m["staging"]["size"].get<uint64_t>()));
    }
    std::printf("\n");
  }
  std::printf("reports waiting: %llu\n", static_cast<unsigned long long>(j["reports_waiting"].get<uint64_t>()));
  std::string err = j.value("last_error", "");
  std::printf("last error: %s%s\n", err.empty() ? "none" : err.c_str(),
              err.empty() ? "" : (" (" + j.value("last_error_at", "") + ")").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meridian-agent: verified, atomic, resumable model updates for a terminal"};
  std::string config_path, output = "text", root_update;
  bool once = false;
  int64_t wait_s = -1;
  app.add_option("--config", config_path, "configuration file (TOML)")->required();
  app.fallthrough();  // `status --config FILE`: the option may follow the subcommand
  // Flags override the file's keys of the same name.
  std::string id, state;
  std::vector<std::string> servers;
  int64_t bandwidth = -1;
  app.add_option("--id", id, "terminal id (overrides `id`)");
  app.add_option("--server", servers, "server URL, repeatable, tried in order (overrides `servers`)");
  app.add_option("--state", state, "state directory (overrides `state`)");
  app.add_option("--bandwidth-limit-bytes-per-s", bandwidth, "download speed cap, 0 = none (overrides the key)");
  app.add_flag("--once", once, "run one cycle and exit (0: up to date or installed)");
  app.add_option("--wait", wait_s, "with --once: long-poll up to this many seconds (default 0)");
  CLI::App* status = app.add_subcommand("status", "what runs, what is staged, the last error");
  status->add_option("--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));
  CLI::App* public_key = app.add_subcommand(
      "public-key", "print this terminal's public key (base64; made when missing), for `meridian terminals add`");
  CLI::App* trust = app.add_subcommand("trust", "accept a newer root document (signed rotation)");
  trust->add_option("ROOT", root_update, "root envelope file")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  meridian::Result<meridian::AgentConfig> config = meridian::LoadAgentConfig(config_path);
  if (!config.ok()) return Fail(kExitUsage, config.status().message());
  if (!id.empty()) config->id = id;
  if (!state.empty()) config->state = state;
  if (!servers.empty()) config->servers = servers;
  if (bandwidth >= 0) config->bandwidth_limit_bytes_per_s = bandwidth;
  if (meridian::Status st = meridian::ValidateAgentConfig(*config); !st.ok()) return Fail(kExitUsage, st.message());

  if (status->parsed()) {
    meridian::Result<std::string> s = meridian::ReadAgentStatus(*config);
    if (!s.ok()) return Fail(kExitFailed, s.status().ToString());
    if (output == "json") {
      std::printf("%s\n", s->c_str());
    } else {
      PrintStatusText(*s);
    }
    return kExitOk;
  }

  auto agent = meridian::Agent::Open(*config, meridian::SystemClock::Get());
  if (!agent.ok()) return Fail(kExitFailed, agent.status().ToString());
  if (public_key->parsed()) {
    std::string key = (*agent)->PublicKeyBase64();
    if (key.empty()) return Fail(kExitUsage, "this terminal is identified by its client certificate, not a key");
    std::printf("%s\n", key.c_str());
    return kExitOk;
  }
  if (trust->parsed()) {
    meridian::Result<std::string> text = meridian::ReadFileToString(root_update, meridian::kParseEnvelopeBytesMax);
    if (!text.ok()) return Fail(kExitFailed, text.status().ToString());
    meridian::Status st = (*agent)->UpdateRoot(*text);
    if (!st.ok()) return Fail(kExitFailed, "root refused: " + st.ToString());
    return kExitOk;
  }
  if (once) {
    meridian::Status st = (*agent)->RunOnce(wait_s < 0 ? 0 : wait_s);
    if (!st.ok()) return Fail(kExitFailed, st.ToString());
    return kExitOk;
  }
  // Blocked before Run starts its threads, which inherit the mask.
  sigset_t signals;
  ::sigemptyset(&signals);
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) ::sigaddset(&signals, signal);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const std::string ready = "terminal " + config->id + " following " + config->servers.front();
  std::thread(HandleSignals, signals, ready).detach();
  meridian::NotifyReady(ready);
  std::atomic<bool> never{false};  // stop requests end the process in HandleSignals
  (*agent)->Run(never);
  return kExitOk;
}
