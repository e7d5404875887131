// The terminal agent: follows the signed channel state of each configured
// model, downloads (a delta when worthwhile, else the artifact, resumable),
// verifies everything against the trusted root, installs atomically into the
// slots of its state directory, runs the health check, switches back on
// failure, and reports — through an on-disk outbox. It also repeats the health
// check of what runs at an interval and reports that. docs/agent.md describes
// the configuration, the state directory and the exit codes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/config.h"
#include "base/clock.h"
#include "base/env.h"
#include "base/status.h"

namespace meridian {

// How much of each reply the agent reads: client/api.h (kTargetReplyBytesMax, …).
inline constexpr size_t kReportsPerFlushMax = 1000;
inline constexpr size_t kFailedVersionsKeptMax = 16;
// Roots followed in one cycle (a long-offline agent catches up over a few).
inline constexpr int64_t kRootUpdatesPerCycleMax = 32;

class Agent {
 public:
  // Opens the state directory (creating it), takes its lock (FailedPrecondition
  // when another agent holds it) and loads the trusted root: STATE/root.json
  // when present, else the configured initial root. The state files, slots
  // and outbox, the lock, the terminal key (made at the first start unless a
  // client certificate identifies the terminal) and the downloads are
  // reached through `env`.
  static Result<std::unique_ptr<Agent>> Open(AgentConfig config, const Clock& clock, Env& env = Env::Default());
  ~Agent();

  // One cycle: sends waiting reports, follows the server's chain of roots
  // (GET /v1/roots; each root verified against the one before, persisted as
  // STATE/root.json; a refused one is logged and the trusted root kept;
  // nothing is installed while the trusted root has expired), then asks for the targets and installs
  // or switches where one changed, then runs the periodic health checks that
  // are due (every health_interval_ms of the clock, of what runs then, server
  // or no server: they only report) and sends the cycle's reports. When
  // `wait_s` > 0 and every model ran its target at the end of the previous
  // cycle of this Agent, all models are long-polled at once (one request and
  // thread each) for up to `wait_s` seconds, cut short to end when the next
  // periodic check is due, and the first answer ends the wait: only the
  // models that answered are looked at. Otherwise every model is asked at
  // once. OK when every model looked at runs its target (or has none);
  // otherwise the first error, also recorded as the last error.
  Status RunOnce(int64_t wait_s);
  // Cycles until `stop` is set (a long poll is given up within about a
  // second of it; a download or health check runs to its end), backing off
  // with jitter after errors.
  void Run(const std::atomic<bool>& stop);
  // The base64 of the terminal's public key (what an operator enrols), made
  // at Open when the key file was missing; empty when a client certificate
  // identifies the terminal instead.
  std::string PublicKeyBase64() const;
  // Accepts a newer root (rotation, signing/ VerifyRootUpdate) and persists it.
  Status UpdateRoot(const std::string& envelope_json);

 private:
  struct Impl;
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The status document of a state directory without opening an agent (no lock,
// no network): what `meridian-agent status` prints.
Result<std::string> ReadAgentStatus(const AgentConfig& config, Env& env = Env::Default());

}  // namespace meridian
