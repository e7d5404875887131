// The agent's cycle: target → verify → download (delta or artifact, resumable)
// → verify → install → health check → report (see agent.h).
#include "agent/agent.h"

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/backoff.h"
#include "agent/download_spool.h"
#include "agent/health.h"
#include "agent/long_poll.h"
#include "agent/outbox.h"
#include "agent/slots.h"
#include "agent/state_files.h"
#include "base/encoding.h"
#include "base/env.h"
#include "base/file.h"
#include "base/json.h"
#include "client/api.h"
#include "client/delta_files.h"
#include "client/http_client.h"
#include "delta/delta_info.h"
#include "manifest/manifest.h"
#include "rollout/rollout.h"
#include "signing/signing.h"
#include "target/target.h"
#include "trust/terminal_credential.h"
#include "trust/trust.h"

namespace meridian {
namespace {

using Json = nlohmann::json;

constexpr size_t kDeltaApplyBufferBytes = 1u << 20;
// How long past the asked hold a long poll may take to answer before the
// agent stops waiting for it (a slow network, a busy server).
constexpr int64_t kLongPollGraceMs = 5'000;

// A download in progress, or none when there is no job file or it is damaged.
std::optional<DownloadJob> ReadJob(Env& env, const std::string& file) {
  Result<std::string> text = env.ReadFile(file, kDownloadJobBytesMax);
  if (!text.ok()) return std::nullopt;
  Result<DownloadJob> job = ParseDownloadJob(*text);
  if (!job.ok()) return std::nullopt;
  return *job;
}

// Whether a download stopped on the way (resume it) rather than on bad data.
bool IsTransient(const Status& st) {
  return st.code() == Status::Code::kUnavailable || st.code() == Status::Code::kDeadlineExceeded ||
         st.code() == Status::Code::kIOError;
}

// Whether an error is the server's (try the next one) rather than our disk's.
bool IsServerFault(const Status& st) { return st.code() != Status::Code::kIOError; }

}  // namespace

struct Agent::Impl {
  AgentConfig config;
  const Clock* clock = nullptr;
  Env* env = nullptr;  // the state directory's files, slots and outbox
  std::string state_dir;
  std::unique_ptr<FileLock> lock;  // on state/lock: one agent per state directory
  Root root;
  AgentState persisted;
  Outbox outbox{""};
  HttpClientOptions client_options;  // bearer_token: the credential
  std::vector<std::unique_ptr<HttpClient>> servers;
  std::optional<SecretKey> terminal_key;  // the terminal's own; none when a client certificate identifies it
  int64_t credential_expires_ms = 0;
  int64_t credential_renew_ms = 0;  // half its life: asked for again from then on
  size_t preferred = 0;  // the server that answered last
  // Models that ran their target at the end of the last cycle. A cycle
  // long-polls only when every model is settled; any other (just started,
  // download unfinished) is asked at once, or a restart in the middle of an
  // update would wait for the next state change.
  std::set<std::string> settled;
  const std::atomic<bool>* stop = nullptr;  // Run's stop request: ends a long poll early
  std::mt19937_64 rng{std::random_device{}()};

  std::string AgentFile() const { return state_dir + "/agent.json"; }
  std::string RootFile() const { return state_dir + "/root.json"; }
  std::string CredentialFile() const { return state_dir + "/credential.json"; }
  std::string KeyFile() const { return config.key_file.empty() ? state_dir + "/terminal.key" : config.key_file; }

  // ---- identity
  // Makes every server client carry `credential`.
  void UseCredential(const std::string& credential) {
    client_options.bearer_token = credential;
    for (std::unique_ptr<HttpClient>& c : servers) c = std::make_unique<HttpClient>(c->base_url(), client_options);
  }

  // Has a credential at hand: asks for one (signed with the key) when there
  // is none or half of its life has passed, and keeps it in the state
  // directory. An old credential that has not expired serves on while no
  // server grants a new one.
  Status EnsureCredential() {
    if (!terminal_key) return Status::Ok();
    const int64_t now = clock->NowUnixMillis();
    if (!client_options.bearer_token.empty() && now < credential_renew_ms) return Status::Ok();
    HttpClientOptions opts = client_options;
    opts.bearer_token.clear();
    Status last;
    for (const std::string& url : config.credential_servers.empty() ? config.servers : config.credential_servers) {
      HttpClient c(url, opts);
      Result<HttpReply> r = c.Post(TerminalCredentialPath(config.id), "", kShortReplyBytesMax, "application/json",
                                   {"Authorization: " + SignCredentialRequest(*terminal_key, config.id, now)});
      if (!r.ok()) {
        last = r.status();
        continue;
      }
      if (r->status == 202) {
        // Asked to join here; another server may know the terminal, and a
        // credential still valid serves on meanwhile (below).
        last = Status::FailedPrecondition(fmt::format(
            "terminal '{}' asked to join and awaits an operator: meridian terminals accept {}", config.id, config.id));
        continue;
      }
      if (r->status != 200) {
        last = ReplyError(*r, "credential");  // a region refuses: the next server may be the origin
        continue;
      }
      Result<Json> j = ParseJson(r->body, kShortReplyBytesMax);
      std::string credential;
      int64_t expires_ms = 0;
      if (j.ok() && j->is_object()) {
        JsonFields f(*j, "credential reply", UnknownFields::kIgnore);
        f.String("credential", &credential, true);
        f.Int64("expires_ms", &expires_ms, true);
        if (Status st = f.Finish(); !st.ok()) j = st;
      }
      if (!j.ok() || !IsWellFormedCredential(credential) || expires_ms <= now) {
        last = Status::Corruption("credential reply from " + url + " is malformed");
        continue;
      }
      credential_expires_ms = expires_ms;
      credential_renew_ms = now + (expires_ms - now) / 2;
      UseCredential(credential);
      std::string kept = StoredCredentialToJson({credential, expires_ms, credential_renew_ms});
      if (Status st = env->WriteFileAtomic(CredentialFile(), kept, 0600); !st.ok()) {
        Log("credential not kept: " + st.ToString());
      }
      return Status::Ok();
    }
    if (!client_options.bearer_token.empty() && now < credential_expires_ms) {
      Log("credential not renewed, the current one serves until it expires: " + last.ToString());
      return Status::Ok();
    }
    return last;
  }

  // A server refused the credential (401: expired early, or signed by a key
  // it no longer trusts): ask for a new one at the next chance.
  void CredentialRefused(const HttpReply& reply) {
    if (reply.status == 401 && terminal_key) credential_renew_ms = 0;
  }
  ModelSlots SlotsOf(const ModelConfig& m) const { return ModelSlots(state_dir + "/models/" + m.name, *env); }

  Status Save() { return env->WriteFileAtomic(AgentFile(), AgentStateToJson(persisted)); }

  void Log(const std::string& line) const {
    std::fprintf(stderr, "%s meridian-agent %s: %s\n", FormatRfc3339(clock->NowUnixMillis()).c_str(),
                 config.id.c_str(), line.c_str());
  }

  // ---- reports
  // A report about `version` of model `m` (see docs/agent.md, Reports).
  Json ReportJson(const ModelConfig& m, const std::string& version, const std::string& rollout,
                  const std::string& event, const std::string& reason, const HealthResult* health) const {
    Json j = {{"model", m.name}, {"version", version}, {"channel", m.channel}, {"rollout", rollout},
              {"event", event}, {"reason", Utf8Prefix(reason, kRolloutReasonBytesMax)}, {"profile", config.profile},
              {"region", config.region}};
    if (health != nullptr) {
      Json h = {{"pass", health->pass}};
      for (const auto& [k, v] : health->metrics) h[k] = v;
      j["health"] = h;
    }
    return j;
  }

  // Into the outbox, sent by the next FlushReports.
  void Keep(const Json& report) {
    Status st = outbox.Add(DumpJson(report), clock->NowUnixMillis());
    if (!st.ok()) Log("report not kept: " + st.ToString());
  }

  void Report(const ModelConfig& m, const ChannelTarget& t, const std::string& event, const std::string& reason,
              const HealthResult* health) {
    Keep(ReportJson(m, t.version, t.rollout, event, reason, health));
  }

  // Whether meridiand itself refused a report as one it will never take:
  // malformed (400, 422) or too large (413), with its JSON error. Anything
  // else (a 404, 3xx or 407 from a proxy or mirror before it, 5xx, 401, 403,
  // 429) may pass elsewhere or later: the report is kept.
  static bool RefusedForGood(const HttpReply& reply) {
    return (reply.status == 400 || reply.status == 413 || reply.status == 422) && !ErrorCodeOf(reply).empty();
  }

  // Sends waiting reports, oldest first, stopping at the first server failure.
  Status FlushReports() {
    Result<std::vector<PendingReport>> pending = outbox.Oldest(kReportsPerFlushMax);
    if (!pending.ok()) return pending.status();
    for (const PendingReport& r : *pending) {
      Status last;
      bool done = false;
      for (size_t i = 0; i < servers.size() && !done; ++i) {
        size_t s = (preferred + i) % servers.size();
        Result<HttpReply> reply = servers[s]->Post(TerminalReportsPath(config.id), r.body, kShortReplyBytesMax);
        if (!reply.ok()) {
          last = reply.status();
        } else if (reply->status / 100 != 2 && !RefusedForGood(*reply)) {
          CredentialRefused(*reply);
          last = ReplyError(*reply, "report");  // the server may take it later, or another one now
        } else {
          // 2xx: accepted. Refused for good: the server will never take it;
          // keeping it would block every later report.
          if (reply->status >= 300) Log("report refused, dropped: " + ErrorMessageOf(*reply));
          preferred = s;
          done = true;
        }
      }
      if (!done) return last;
      MERIDIAN_RETURN_IF_ERROR(outbox.Remove(r));
    }
    return Status::Ok();
  }

  // ---- trust
  // Root N+1 in place of the trusted root N (VerifyRootUpdate), persisted
  // atomically before it is used.
  Status AcceptRoot(const std::string& envelope_json) {
    Result<Envelope> envelope = ParseEnvelope(envelope_json);
    if (!envelope.ok()) return envelope.status();
    Result<Root> next = VerifyRootUpdate(root, *envelope);
    if (!next.ok()) return next.status();
    MERIDIAN_RETURN_IF_ERROR(env->WriteFileAtomic(RootFile(), envelope_json));
    root = std::move(*next);
    return Status::Ok();
  }

  // Follows the server's chain of roots from the trusted one, one version at
  // a time, then checks that the root it ends with has not expired (TUF's
  // order: an expired root can still be rotated away). A root that does not
  // verify is refused and logged; the agent keeps the one it has. A server
  // that serves no chain (404) leaves the root as it is. Non-OK only when the
  // trusted root has expired: nothing is installed on it.
  Status FollowRoots(HttpClient& c) {
    Result<HttpReply> r = c.Get(RootsPath(), kShortReplyBytesMax);
    int64_t latest = 0;
    if (r.ok() && r->status == 200) {
      Result<Json> j = ParseJsonObject(r->body, kShortReplyBytesMax, "roots reply");
      Status st = j.status();
      if (j.ok()) {
        JsonFields f(*j, "roots reply", UnknownFields::kIgnore);
        f.Int64("latest", &latest, true);
        st = f.Finish();
      }
      if (!st.ok()) Log("chain of roots: " + st.ToString());
    } else if (!r.ok() || r->status != 404) {
      Log("chain of roots: " + (r.ok() ? ReplyError(*r, "roots") : r.status()).ToString());
    }
    for (int64_t steps = 0; root.version < latest && steps < kRootUpdatesPerCycleMax; ++steps) {
      const int64_t next = root.version + 1;
      Result<HttpReply> nr = c.Get(RootPath(next), kRootReplyBytesMax);
      Status st = !nr.ok() ? nr.status() : nr->status != 200 ? ReplyError(*nr, "root") : AcceptRoot(nr->body);
      if (!st.ok()) {
        Log(fmt::format("root version {} refused, keeping version {}: {}", next, root.version, st.ToString()));
        break;
      }
      Log(fmt::format("now trusting root version {}", next));
    }
    return CheckRootFresh(root, clock->NowUnixMillis());
  }

  // The manifest of `t`: the envelope must hash to the digest the signed
  // state names (checked as it arrives: no other bytes are ever read into
  // memory), be signed by a threshold of release keys, and describe that version.
  Result<Manifest> FetchVerifiedManifest(HttpClient& c, const ModelConfig& m, const ChannelTarget& t) {
    Result<HttpReply> reply =
        GetSpooled(c, VersionPath(m.name, t.version), kManifestReplyBytesMax, state_dir, t.ref.manifest_digest);
    if (!reply.ok() && reply.status().code() == Status::Code::kCorruption) {
      return Status::Corruption("manifest envelope does not match the digest in the signed channel state (" +
                                reply.status().message() + ")");
    }
    Result<VerifiedManifest> verified = ManifestFromReply(root, std::move(reply), m.name, t.version);
    if (!verified.ok()) return verified.status();
    if (Digest::Of(verified->envelope()) != t.ref.manifest_digest) {
      return Status::Corruption("manifest envelope does not match the digest in the signed channel state");
    }
    const Manifest& man = verified->manifest();
    if (man.digest != t.ref.digest || man.size != t.ref.size) {
      return Status::Corruption("manifest does not describe the version the channel state names");
    }
    return man;
  }

  // ---- downloads
  // Fetches job.path into staging/download.part, resuming what an earlier run
  // left when the job is the same; verifies size and digest. Returns the file.
  Result<std::string> Download(HttpClient& c, const ModelSlots& slots, const DownloadJob& job) {
    std::string job_file = slots.staging_dir() + "/job.json";
    std::string part = slots.staging_dir() + "/download.part";
    std::optional<DownloadJob> old = ReadJob(*env, job_file);
    if (!old || *old != job) {
      MERIDIAN_RETURN_IF_ERROR(slots.CollectGarbage(true));
      MERIDIAN_RETURN_IF_ERROR(env->WriteFileAtomic(job_file, DownloadJobToJson(job)));
    }
    Result<std::unique_ptr<DownloadSpool>> opened = DownloadSpool::Open(*env, part, job.size);
    if (!opened.ok()) return opened.status();
    DownloadSpool& spool = **opened;
    const uint64_t have = spool.bytes();
    Status transfer;
    if (have < job.size) {
      bool started = false;
      std::vector<std::string> headers;
      if (have > 0) headers.push_back(fmt::format("Range: bytes={}-", have));
      Log(fmt::format("downloading {} from byte {} of {}", job.path, have, job.size));
      auto sink = [&](const HttpReply& head, ByteSpan data) -> Status {
        if (!started) {
          started = true;
          if (head.status == 206) {
            if (!head.Header("content-range").starts_with(fmt::format("bytes {}-", have))) {
              return Status::Corruption("range reply starts elsewhere: " + head.Header("content-range"));
            }
          } else {
            MERIDIAN_RETURN_IF_ERROR(spool.RestartAt(0));  // the whole body again
          }
        }
        MERIDIAN_RETURN_IF_ERROR(spool.Append(data));  // Corruption past the signed size
        persisted.downloaded_bytes += data.size();
        return Status::Ok();
      };
      Result<HttpReply> r = c.GetStreamingWithHead(job.path, sink, job.size + 1, headers);
      if (Status s = Save(); !s.ok()) Log("saving counters: " + s.ToString());
      // More bytes than signed (caught by the sink, or by the client's cap
      // one byte past the size) or a bad range: a lying server, keep none of its bytes.
      if (!r.ok() && (r.status().code() == Status::Code::kCorruption ||
                      r.status().code() == Status::Code::kResourceExhausted)) {
        MERIDIAN_RETURN_IF_ERROR(slots.CollectGarbage(true));
        return r.status();
      }
      if (!r.ok()) {
        transfer = r.status();
      } else if (r->status != 200 && r->status != 206) {
        transfer = ReplyError(*r, "download " + job.path);
      } else if (spool.bytes() != job.size) {
        transfer = Status::Unavailable(
            fmt::format("download {} ended at {} of {} bytes", job.path, spool.bytes(), job.size));
      }
    }
    // What arrived is kept, through a power cut too: a stopped download
    // resumes from here next time.
    Status synced = spool.Sync();
    if (!transfer.ok()) return transfer;
    MERIDIAN_RETURN_IF_ERROR(synced);
    Result<Digest> d = env->DigestOfFile(part);
    if (!d.ok()) return d.status();
    if (*d != job.digest) {
      // Start over next time: these bytes will never verify.
      MERIDIAN_RETURN_IF_ERROR(slots.CollectGarbage(true));
      return Status::Corruption(fmt::format("{} hashes to {}, signed {}", job.path, d->ToString(), job.digest.ToString()));
    }
    return part;
  }

  // The signed descriptor of a delta from `from` to `to`, when the server has
  // a worthwhile one ready; nullopt means "download the artifact".
  std::optional<DownloadJob> DeltaJob(HttpClient& c, const Digest& from, const Digest& to) {
    Result<HttpReply> r = c.Get(DeltaInfoPath(from, to), kDeltaInfoReplyBytesMax);
    // 409 while the daemon computes it, 404 without a delta service: the artifact then.
    if (!r.ok() || r->status != 200) return std::nullopt;
    Result<DeltaInfo> info = DeltaInfoFromReply(root, r, from, to);
    if (!info.ok()) {
      Log("delta descriptor refused: " + info.status().ToString());
      return std::nullopt;
    }
    if (!info->worthwhile) return std::nullopt;
    return DownloadJob{DeltaPath(from, to), info->digest, info->size};
  }

  // Applies a verified delta file to the current slot into staging; returns the target file.
  Result<std::string> ApplyDeltaFile(const ModelSlots& slots, const std::string& delta_file, const Slot& source,
                                     const Manifest& man) {
    Result<std::unique_ptr<FileSourceReader>> src = FileSourceReader::Open(*env, source.path);
    if (!src.ok()) return src.status();
    std::string out = slots.staging_dir() + "/target.part";
    Result<std::unique_ptr<FileTargetSink>> sink = FileTargetSink::Create(*env, out);
    if (!sink.ok()) return sink.status();
    DeltaDecoder decoder(**src, **sink, ApplyOptions{source.digest, man.digest, man.size});
    Result<std::unique_ptr<SequentialFile>> delta = env->NewSequentialFile(delta_file);
    if (!delta.ok()) return delta.status();
    std::vector<uint8_t> buf(kDeltaApplyBufferBytes);
    Status st;
    for (;;) {
      Result<size_t> n = (*delta)->Read(buf);
      if (!n.ok()) {
        st = n.status();
        break;
      }
      if (*n == 0) break;
      st = decoder.Append(ByteSpan(buf.data(), *n));
      if (!st.ok()) break;
    }
    if (st.ok()) st = decoder.Finish();
    if (st.ok()) st = (*sink)->Sync();
    if (!st.ok()) return st;
    return out;
  }

  // Gets the verified target file into staging (delta when possible).
  Result<std::string> Fetch(HttpClient& c, const ModelConfig& m, const ModelSlots& slots,
                            const std::optional<Slot>& current, const Manifest& man) {
    const DownloadJob artifact{ArtifactPath(man.digest), man.digest, man.size};
    // An artifact download under way (a delta was refused before it) goes on
    // from the bytes it has: trying the same delta again would throw them away.
    const bool artifact_under_way = ReadJob(*env, slots.staging_dir() + "/job.json") == artifact;
    if (current && !artifact_under_way) {
      if (std::optional<DownloadJob> dj = DeltaJob(c, current->digest, man.digest); dj && dj->size < man.size) {
        Result<std::string> delta = Download(c, slots, *dj);
        if (!delta.ok() && IsTransient(delta.status())) return delta.status();  // resumed next time
        Result<std::string> applied = delta.ok() ? ApplyDeltaFile(slots, *delta, *current, man) : delta.status();
        if (applied.ok()) return applied;
        // Bytes that do not verify, or a delta that does not make the signed
        // target: refuse it and fetch the artifact instead, so a bad delta
        // never blocks the update.
        Log(fmt::format("{} {}: delta refused ({}), fetching the artifact", m.name, man.version,
                        applied.status().ToString()));
        MERIDIAN_RETURN_IF_ERROR(slots.CollectGarbage(true));
      }
    }
    return Download(c, slots, artifact);
  }

  // After a switch to `t`: the health check, and a switch back on failure,
  // keeping `fallback` (what was previous before the switch) as the next
  // fallback. OK when healthy; the failure otherwise.
  Status CheckAndReport(const ModelConfig& m, const ModelSlots& slots, const ChannelTarget& t,
                        const std::optional<Slot>& fallback) {
    HealthResult h;
    h.pass = true;
    if (!m.health_check.empty()) h = RunHealthCheck(m.health_check, slots.current_link(), config.health_check_timeout_ms);
    persisted.health_checked_ms[m.name] = clock->NowUnixMillis();  // the periodic check counts from here
    if (h.pass) {
      Report(m, t, "installed", "", &h);
      return slots.CollectGarbage(true);
    }
    Status back = slots.FallBack(fallback);
    std::string reason = h.reason + (back.ok() ? ", switched back" : ", could not switch back: " + back.message());
    Log(m.name + " " + t.version + ": " + reason);
    std::vector<Digest>& failed = persisted.failed[m.name];
    failed.push_back(t.ref.digest);
    if (failed.size() > kFailedVersionsKeptMax) failed.erase(failed.begin());
    MERIDIAN_RETURN_IF_ERROR(Save());
    Report(m, t, "failed", reason, &h);
    if (Status gc = slots.CollectGarbage(true); !gc.ok()) Log(gc.ToString());
    return Status::FailedPrecondition(m.name + " " + t.version + ": " + reason);
  }

  // The periodic health check of the version `m` runs, when one is due: run
  // and reported like an install's ("installed", health.pass and metrics),
  // marked "periodic", so the terminals still on a rollout's old version
  // report as well as those on the new one and the daemon can compare them.
  // It switches nothing, whatever it says: only the check right after a
  // switch switches back. RunOnce calls it after the models' installs, never
  // during one. A model seen for the first time starts its interval now, so
  // neither a restart nor an upgraded agent checks everything at once.
  void CheckPeriodically(const ModelConfig& m) {
    if (m.health_check.empty() || config.health_interval_ms == 0) return;
    int64_t now = clock->NowUnixMillis();
    auto [last, first] = persisted.health_checked_ms.try_emplace(m.name, now);
    if (first || !HealthCheckDue(last->second, now)) return;
    last->second = now;  // also when nothing runs: looked at again an interval later, not every cycle
    ModelSlots slots = SlotsOf(m);
    Result<std::optional<Slot>> cur = slots.Current();
    if (!cur.ok() || !cur->has_value()) return;  // nothing runs; a broken slot is the sync's error to report
    const Slot& running = **cur;
    HealthResult h = RunHealthCheck(m.health_check, slots.current_link(), config.health_check_timeout_ms);
    if (!h.pass) Log(fmt::format("{} {}: periodic health check failed: {}", m.name, running.version, h.reason));
    // No rollout named: the daemon takes the newest active one the terminal is eligible for.
    Json report = ReportJson(m, running.version, "", "installed", h.pass ? "" : h.reason, &h);
    report["periodic"] = true;
    Keep(report);
  }

  // A check that ran at `last_ms` is due again at now_ms. A clock set back
  // (last_ms in the future) makes it due, or checks would stop until it caught up.
  bool HealthCheckDue(int64_t last_ms, int64_t now_ms) const {
    return last_ms > now_ms || last_ms <= now_ms - config.health_interval_ms;
  }

  // `wait_s`, shortened so that a long poll ends when the next periodic
  // health check is due (0 when one is due now).
  int64_t WaitUntilHealthCheck(int64_t wait_s) const {
    if (config.health_interval_ms == 0) return wait_s;
    int64_t now = clock->NowUnixMillis();
    for (const ModelConfig& m : config.models) {
      auto last = persisted.health_checked_ms.find(m.name);
      if (m.health_check.empty() || last == persisted.health_checked_ms.end()) continue;
      int64_t left_ms = HealthCheckDue(last->second, now) ? 0 : last->second + config.health_interval_ms - now;
      wait_s = std::min(wait_s, (left_ms + 999) / 1000);
    }
    return wait_s;
  }

  // The target request of a model (long-polling up to `wait_s` seconds for a
  // state newer than the highest accepted so far).
  std::string TargetPath(const ModelConfig& m, const std::optional<Slot>& cur, int64_t wait_s) {
    return meridian::TargetPath(config.id, {.model = m.name,
                                            .channel = m.channel,
                                            .current = cur ? cur->version : "",
                                            .profile = config.profile,
                                            .region = config.region,
                                            .wait_s = wait_s,
                                            .known_state_version = persisted.state_versions[m.name + "/" + m.channel]});
  }

  // One model against one server: `answered` is the server's reply to a long
  // poll of this model, or null to ask now. *server_fault says whether another
  // server may do better.
  Status SyncModel(HttpClient& c, const ModelConfig& m, const HttpReply* answered, bool* server_fault) {
    *server_fault = true;
    ModelSlots slots = SlotsOf(m);
    MERIDIAN_RETURN_IF_ERROR(slots.Init());
    Result<std::optional<Slot>> cur = slots.Current();
    if (!cur.ok()) return cur.status();
    std::string key = m.name + "/" + m.channel;
    uint64_t known = persisted.state_versions[key];
    Result<HttpReply> r =
        answered != nullptr ? Result<HttpReply>(*answered) : c.Get(TargetPath(m, *cur, 0), kTargetReplyBytesMax);
    if (!r.ok()) return r.status();
    if (r->status == 404) {
      *server_fault = false;
      return Status::Ok();  // no rollout ever set this channel: nothing to run yet
    }
    if (r->status != 200) {
      CredentialRefused(*r);
      return ReplyError(*r, "target");
    }
    Result<Json> reply = ParseJson(r->body, kTargetReplyBytesMax, kTargetReplyValuesMax);
    if (!reply.ok()) return reply.status().WithContext("target reply");
    Json& j = *reply;
    if (!j.is_object() || !j.contains("state") || !j["state"].is_object()) {
      return Status::InvalidArgument("target reply carries no signed state");
    }
    Result<ChannelState> state =
        VerifyChannelState(root, j["state"].dump(), m.name, m.channel, known, clock->NowUnixMillis());
    if (!state.ok()) return state.status();
    if (state->state_version > known) {
      persisted.state_versions[key] = state->state_version;
      MERIDIAN_RETURN_IF_ERROR(Save());
    }
    ChannelTarget t = ResolveChannelTarget(
        *state, TerminalInfo{config.id, config.profile, config.region, *cur ? (*cur)->version : ""});
    *server_fault = false;
    if (t.version.empty()) return Status::Ok();
    const Digest& want = t.ref.digest;
    if (*cur && (*cur)->digest == want) return slots.CollectGarbage(true);
    const std::vector<Digest>& failed = persisted.failed[m.name];
    if (std::find(failed.begin(), failed.end(), t.ref.digest) != failed.end()) {
      return slots.CollectGarbage(true);  // it failed here before: stay on what runs until the target moves on
    }
    Result<std::optional<Slot>> prev = slots.Previous();
    if (!prev.ok()) return prev.status();
    if (*prev && (*prev)->digest == want) {
      // A rollback target: the kept slot, no download. Re-hash it: it is about to run.
      Result<Digest> d = env->DigestOfFile((*prev)->path);
      if (d.ok() && *d == want) {
        MERIDIAN_RETURN_IF_ERROR(slots.SwitchBack());
        Log(fmt::format("{}: switched back to {}", m.name, t.version));
        return CheckAndReport(m, slots, t, *prev);
      }
    }
    *server_fault = true;
    Result<Manifest> fetched = FetchVerifiedManifest(c, m, t);
    if (!fetched.ok()) return fetched.status();
    const Manifest& man = *fetched;
    std::string blob = slots.BlobPath(man.version, man.digest);
    if (Result<Digest> d = env->DigestOfFile(blob); d.ok() && *d == man.digest) {
      // Verified and stored by a run that stopped before switching.
      MERIDIAN_RETURN_IF_ERROR(slots.Activate(man.version, man.digest));
    } else {
      Result<std::string> file = Fetch(c, m, slots, *cur, man);
      if (!file.ok()) {
        // Bytes that failed verification are worth a report; a broken link is
        // not a verdict on the version (the gates count failures) and is retried.
        if (!IsTransient(file.status())) Report(m, t, "failed", file.status().ToString(), nullptr);
        return file.status();
      }
      Report(m, t, "downloaded", "", nullptr);
      Report(m, t, "verified", "", nullptr);
      *server_fault = false;
      MERIDIAN_RETURN_IF_ERROR(slots.Install(*file, man.version, man.digest));
    }
    *server_fault = false;
    Log(fmt::format("{}: installed {}", m.name, t.version));
    return CheckAndReport(m, slots, t, *prev);
  }

  bool AllSettled() const { return settled.size() == config.models.size(); }

  // Long-polls every model at once on the preferred server (one request and
  // thread each) until one answers with something to act on, the hold (plus
  // a grace) passed or Run was asked to stop. Null when a slot cannot be read:
  // the cycle then asks every model at once, which reports the error.
  std::unique_ptr<LongPolls> WaitForChange(int64_t wait_s) {
    std::vector<std::string> paths;
    for (const ModelConfig& m : config.models) {
      Result<std::optional<Slot>> cur = SlotsOf(m).Current();
      if (!cur.ok()) return nullptr;
      paths.push_back(TargetPath(m, *cur, wait_s));
    }
    auto polls = std::make_unique<LongPolls>(servers[preferred]->base_url(), paths, client_options, kTargetReplyBytesMax);
    polls->Wait(wait_s * 1000 + kLongPollGraceMs, stop);
    return polls;
  }

  // SyncModel on each server in turn until one does not fail: first the one
  // that `answered` a long poll (server index `answered_by`), else the preferred.
  Status SyncModelFailover(const ModelConfig& m, const HttpReply* answered, size_t answered_by) {
    Status first;
    size_t start = answered != nullptr ? answered_by : preferred;
    for (size_t i = 0; i < servers.size(); ++i) {
      size_t s = (start + i) % servers.size();
      bool server_fault = false;
      Status st = SyncModel(*servers[s], m, i == 0 ? answered : nullptr, &server_fault);
      if (st.ok() || !server_fault || !IsServerFault(st)) {
        if (st.ok() || !server_fault) preferred = s;
        return st;
      }
      Log(fmt::format("{}: server {} failed: {}", m.name, servers[s]->base_url(), st.ToString()));
      if (first.ok()) first = st;
    }
    return first;
  }
};

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Agent::~Agent() = default;

Result<std::unique_ptr<Agent>> Agent::Open(AgentConfig config, const Clock& clock, Env& env) {
  auto impl = std::make_unique<Impl>();
  impl->env = &env;
  std::error_code ec;
  impl->state_dir = std::filesystem::absolute(config.state, ec).lexically_normal().string();
  if (ec) return Status::InvalidArgument("state: " + ec.message());
  while (impl->state_dir.size() > 1 && impl->state_dir.back() == '/') impl->state_dir.pop_back();
  MERIDIAN_RETURN_IF_ERROR(env.CreateDirectories(impl->state_dir, 0700));
  std::string lock = impl->state_dir + "/lock";
  Result<std::unique_ptr<FileLock>> locked = env.LockFile(lock);
  if (!locked.ok() && locked.status().code() == Status::Code::kFailedPrecondition) {
    return Status::FailedPrecondition("another meridian-agent uses " + impl->state_dir);
  }
  if (!locked.ok()) return locked.status();
  impl->lock = std::move(*locked);
  impl->clock = &clock;
  impl->outbox = Outbox(impl->state_dir + "/outbox", env);
  MERIDIAN_RETURN_IF_ERROR(impl->outbox.Init());
  bool have_state_root = env.Exists(impl->RootFile());
  Result<std::string> root_text = env.ReadFile(have_state_root ? impl->RootFile() : config.root, kParseEnvelopeBytesMax);
  if (!root_text.ok()) return root_text.status();
  Result<Root> root = LoadTrustedRoot(*root_text);
  if (!root.ok()) return Status::InvalidArgument("trusted root: " + root.status().ToString());
  impl->root = std::move(*root);
  if (!have_state_root) MERIDIAN_RETURN_IF_ERROR(env.WriteFileAtomic(impl->RootFile(), *root_text));
  if (env.Exists(impl->AgentFile())) {
    Result<std::string> text = env.ReadFile(impl->AgentFile(), kAgentStateBytesMax);
    if (!text.ok()) return text.status();
    Result<AgentState> p = ParseAgentState(*text);
    if (!p.ok()) return p.status();
    impl->persisted = std::move(*p);
  }
  HttpClientOptions opts;
  opts.connect_timeout_ms = config.connect_timeout_ms;
  opts.timeout_ms = config.request_timeout_ms;
  opts.stall_timeout_ms = config.stall_timeout_ms;
  opts.tls = config.tls;
  opts.recv_bytes_per_s_max = config.bandwidth_limit_bytes_per_s;
  opts.response_bytes_max = kShortReplyBytesMax;  // each request names its own limit; any other gets the least
  for (const std::string& url : config.servers) impl->servers.push_back(std::make_unique<HttpClient>(url, opts));
  impl->client_options = opts;
  impl->config = std::move(config);
  // A client certificate is the terminal's identity when there is one; else its own key.
  if (impl->config.tls.client_certificate.empty()) {
    Result<SecretKey> key = LoadOrCreateSecretKeyFile(env, impl->KeyFile());
    if (!key.ok()) return key.status();
    impl->terminal_key = std::move(*key);
    if (env.Exists(impl->CredentialFile())) {
      Result<std::string> text = env.ReadFile(impl->CredentialFile(), kStoredCredentialBytesMax);
      Result<StoredCredential> kept = text.ok() ? ParseStoredCredential(*text) : Result<StoredCredential>(text.status());
      // A damaged file costs one request for a new credential, nothing more.
      if (kept.ok()) {
        impl->credential_expires_ms = kept->expires_ms;
        impl->credential_renew_ms = kept->renew_ms;
        impl->UseCredential(kept->credential);
      }
    }
  }
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

std::string Agent::PublicKeyBase64() const {
  return impl_->terminal_key ? Base64Encode(impl_->terminal_key->public_key().bytes) : std::string();
}

Status Agent::RunOnce(int64_t wait_s) {
  Impl& d = *impl_;
  Status first;
  // Without a credential no server takes a report or names a target; what
  // runs is still checked below, and its reports wait in the outbox.
  Status credential = d.EnsureCredential();
  if (!credential.ok()) {
    d.Log("no credential: " + credential.ToString());
    first = credential;
  } else if (Status st = d.FlushReports(); !st.ok()) {
    d.Log("reports kept for later: " + st.ToString());
    first = st;
  }
  // The root first (anyone may read the chain): what follows may be signed
  // by keys only a newer root names; not asked of servers that could not be
  // reached for a credential just now. An expired root outranks other errors.
  Status fresh = credential.code() == Status::Code::kUnavailable ? CheckRootFresh(d.root, d.clock->NowUnixMillis())
                                                                 : d.FollowRoots(*d.servers[d.preferred]);
  if (!fresh.ok()) {
    d.Log("installing nothing: " + fresh.ToString());
    first = fresh;
  }
  const bool may_sync = credential.ok() && fresh.ok();
  // Every model settled: wait for a change to any of them, then look only at
  // the models whose poll answered (the others did not change).
  size_t polled_server = d.preferred;
  wait_s = d.WaitUntilHealthCheck(wait_s);
  std::unique_ptr<LongPolls> polls = may_sync && wait_s > 0 && d.AllSettled() ? d.WaitForChange(wait_s) : nullptr;
  for (size_t i = 0; may_sync && i < d.config.models.size(); ++i) {
    const ModelConfig& m = d.config.models[i];
    std::optional<Result<HttpReply>> outcome = polls ? polls->Outcome(i) : std::nullopt;
    if (polls && !outcome) continue;
    const HttpReply* answered = outcome && outcome->ok() ? &**outcome : nullptr;
    // A long poll that failed ended the wait at once: the model is asked
    // again below (another server may serve it), but the cycle counts as
    // failed, so that Run backs off. Else a server that fails every poll at
    // once (or a poll_wait_s the daemon refuses) would have the agent loop as
    // fast as it is answered.
    if (outcome && (answered == nullptr || (answered->status != 200 && answered->status != 404)) && first.ok()) {
      first = (answered == nullptr ? outcome->status() : ReplyError(*answered, "long poll"))
                  .WithContext(fmt::format("{}: long poll", m.name));
    }
    Status st = d.SyncModelFailover(m, answered, polled_server);
    if (st.ok()) {
      d.settled.insert(m.name);
    } else {
      d.settled.erase(m.name);
      d.Log(m.name + ": " + st.ToString());
      if (first.ok()) first = st;
    }
  }
  // What runs now, whether or not a server answered: its reports wait in the outbox.
  for (const ModelConfig& m : d.config.models) d.CheckPeriodically(m);
  // Reports made in this cycle go out now, not a long poll later.
  if (credential.ok()) {
    if (Status st = d.FlushReports(); !st.ok() && first.ok()) first = st;
  }
  std::string now = FormatRfc3339(d.clock->NowUnixMillis());
  if (first.ok()) {
    d.persisted.last_success_at = now;
  } else {
    d.persisted.last_error = first.ToString();
    d.persisted.last_error_at = now;
  }
  if (Status st = d.Save(); !st.ok() && first.ok()) first = st;
  return first;
}

void Agent::Run(const std::atomic<bool>& stop) {
  const AgentConfig& c = impl_->config;
  impl_->stop = &stop;
  // Sleeps in short steps so a stop request is honoured within 100 ms.
  auto pause = [&](int64_t ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  };
  int attempt = 0;
  while (!stop.load()) {
    Status st = RunOnce(c.poll_wait_s);
    if (st.ok()) {
      attempt = 0;  // the next cycle long-polls: it is the pause
      continue;
    }
    pause(BackoffDelayMs(attempt++, c.backoff_initial_ms, c.backoff_max_ms, impl_->rng()));
  }
}

Status Agent::UpdateRoot(const std::string& envelope_json) { return impl_->AcceptRoot(envelope_json); }

Result<std::string> ReadAgentStatus(const AgentConfig& config, Env& env) {
  Json out = {{"id", config.id}};
  std::string agent_file = config.state + "/agent.json";
  if (env.Exists(agent_file)) {
    Result<std::string> text = env.ReadFile(agent_file, kAgentStateBytesMax);
    if (!text.ok()) return text.status();
    Result<AgentState> p = ParseAgentState(*text);
    if (!p.ok()) return p.status();
    out["last_error"] = p->last_error;
    out["last_error_at"] = p->last_error_at;
    out["last_success_at"] = p->last_success_at;
    out["downloaded_bytes"] = p->downloaded_bytes;
  }
  out["reports_waiting"] = Outbox(config.state + "/outbox", env).Count();
  Json models = Json::array();
  for (const ModelConfig& m : config.models) {
    ModelSlots slots(config.state + "/models/" + m.name, env);
    Json mj = {{"name", m.name}, {"channel", m.channel}};
    auto slot_json = [](const Result<std::optional<Slot>>& s) -> Json {
      if (!s.ok()) return {{"error", s.status().ToString()}};
      if (!s->has_value()) return nullptr;
      return {{"version", (*s)->version}, {"digest", (*s)->digest.ToString()}};
    };
    mj["current"] = slot_json(slots.Current());
    mj["previous"] = slot_json(slots.Previous());
    std::optional<DownloadJob> job = ReadJob(env, slots.staging_dir() + "/job.json");
    if (job) {
      Result<uint64_t> have = env.GetFileSize(slots.staging_dir() + "/download.part");
      mj["staging"] = {{"path", job->path}, {"digest", job->digest.ToString()}, {"size", job->size},
                       {"downloaded", have.ok() ? *have : 0}};
    } else {
      mj["staging"] = nullptr;
    }
    models.push_back(mj);
  }
  out["models"] = models;
  return out.dump(2);
}

}  // namespace meridian
