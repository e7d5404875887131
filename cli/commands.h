// The `meridian` release managers' CLI: one function per command. Each
// returns the process exit code (0 on success) after printing either one
// clear error line on stderr or its result on stdout (text, or JSON with
// --output json).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "client/api.h"
#include "manifest/manifest.h"

namespace meridian::cli {

struct GlobalOptions {
  std::string server = "http://127.0.0.1:7400";
  std::string token;   // bearer token for publishing / control
  bool json = false;   // --output json
  int parallel = 4;    // concurrent chunk transfers
  TlsClientOptions tls;  // --ca-file, --client-cert, --client-key, --allow-insecure-http

  // How a client of `server` talks to it: with this token and TLS setup, and
  // a whole-request timeout other than the default when one is given.
  HttpClientOptions ClientOptions(long timeout_ms = HttpClientOptions{}.timeout_ms) const {
    return {.timeout_ms = timeout_ms, .bearer_token = token, .tls = tls};
  }
  // A download as long as the data (an artifact's ranges, a delta): no
  // whole-request limit, which a slow link would outlast, but a limit on
  // silence instead (a server or a middlebox that stopped sending).
  HttpClientOptions DownloadOptions() const {
    return {.timeout_ms = 0, .stall_timeout_ms = kDownloadStallTimeoutMs, .bearer_token = token, .tls = tls};
  }
  static constexpr long kDownloadStallTimeoutMs = 60'000;
};

struct PublishOptions {
  std::vector<std::string> key_files;  // release keys: each adds a signature
  std::string model;
  std::string version;
  std::string path;
  std::string media_type = "application/octet-stream";
  std::vector<std::string> profiles;
  std::vector<std::string> regions;
  std::map<std::string, std::string> annotations;
  bool is_public = false;   // readable without a credential
  // Where the chunks go when not to --server: a daemon in one of `regions`,
  // for a model the origin may not hold; with that daemon's publisher token.
  std::string store_at;
  std::string store_token;
  // A chunk list longer than this is written as index pages of this many
  // chunks (a paged, v2 manifest); 1 … kChunkPageEntriesMax.
  size_t chunks_per_page = kChunkPageEntriesMax;
};

struct PullOptions {
  std::string root_file;
  std::string model;
  std::string version;
  std::string out;
  std::string from_file;  // a local older version: download only a delta from it when the daemon has one
};

// A rollout as `rollout start` and `rollout plan` describe it.
struct RolloutOptions {
  std::string model;
  std::string version;
  std::string id;  // empty: the daemon picks one
  std::string channel = "stable";
  std::vector<std::string> regions;
  std::vector<std::string> profiles;
  std::vector<std::string> canaries;
  std::vector<double> stages = {1, 10, 50, 100};
  uint32_t min_reports = 1;
  double max_failure_rate = 0.05;
  std::string soak = "0s";  // "90s", "5m", "2h", "250ms"; a bare number is seconds
  bool auto_promote = false;
  bool auto_rollback = false;
  bool waves = false;  // regions one after another, in the order of --regions
  std::string window;  // "Mon-Sat 02:00-05:00": automatic promotes only inside it
  std::vector<std::string> time_zones;  // "sg=Asia/Singapore", or a bare zone for every region
  std::optional<std::vector<std::string>> health_rules;  // absent: the defaults; given: only these
  bool no_health_rules = false;
  uint32_t health_min_terminals = 5;
};

int Keygen(const GlobalOptions& g, const std::string& file);
int Publish(const GlobalOptions& g, const PublishOptions& o);
int ListModels(const GlobalOptions& g);
// Per model, the bytes each daemon holds (GET /v1/residency, operator token).
int Residency(const GlobalOptions& g);
// The versions of a model; with a publisher token, those waiting for
// signatures too ("k of n signatures", and who signed).
int ListVersions(const GlobalOptions& g, const std::string& model);
// Deletes a version no channel or active rollout names (publisher token).
int DeleteVersion(const GlobalOptions& g, const std::string& model, const std::string& version, const std::string& reason);
// The retention policy and a collection, now (operator token).
int Collect(const GlobalOptions& g);

// Co-signing (signing_commands.cc). `sign` fetches a version waiting for
// signatures, shows what it is (refusing when its digest is not
// `expect_digest`, when given), adds a signature by each key and posts it.
struct SignOptions {
  std::string model;
  std::string version;
  std::vector<std::string> key_files;
  std::string expect_digest;  // empty: not checked
};
int Sign(const GlobalOptions& g, const SignOptions& o);
// A version's manifest, state (visible, or pending with k of n signatures)
// and signers; with `root_file`, only signatures valid under that root count.
int Show(const GlobalOptions& g, const std::string& model, const std::string& version, const std::string& root_file);

// Root rotation (signing_commands.cc). `root rotate` writes root N+1 signed by
// every old and new root key given, after checking it is what
// VerifyRootUpdate accepts; `root push` installs it at the origin (operator token).
struct RootRotateOptions {
  std::string root_file;                      // the current root (root N)
  std::vector<std::string> old_key_files;     // secret root keys of root N
  std::vector<std::string> new_key_files;     // secret root keys of root N+1 (none: keep N's root keys)
  int root_threshold = 0;                     // 0: N's when its root keys are kept, else 1
  std::vector<std::string> release_key_files; // public release keys of N+1 (none: keep N's release role)
  int release_threshold = 0;                  // 0: N's when its release keys are kept, else 1
  int expires_days = 365;
  std::string out;
};
int RootRotate(const GlobalOptions& g, const RootRotateOptions& o);
int RootPush(const GlobalOptions& g, const std::string& file);
int Pull(const GlobalOptions& g, const PullOptions& o);
// Offline deltas between local files (format: docs/formats/delta.md).
// Literals are LZMA2 (smallest) unless `zstd_literal_level` asks for zstd at
// that level (12: several times faster to make on code, about 30 % larger).
// The encoder uses at most `memory_mib` MiB, whatever the files' sizes.
int Diff(const GlobalOptions& g, const std::string& old_path, const std::string& new_path, const std::string& out,
         std::optional<int> zstd_literal_level, uint64_t memory_mib);
int Patch(const GlobalOptions& g, const std::string& old_path, const std::string& delta_path, const std::string& out);

// `meridian rollout …` (operator token). `action` is promote, pause, resume,
// abort or rollback.
int RolloutStart(const GlobalOptions& g, const RolloutOptions& o);
int RolloutPlan(const GlobalOptions& g, const RolloutOptions& o);
int RolloutList(const GlobalOptions& g);
int RolloutStatus(const GlobalOptions& g, const std::string& id, bool watch);
int RolloutAct(const GlobalOptions& g, const std::string& action, const std::string& id, const std::string& reason);
int RolloutEvents(const GlobalOptions& g, const std::string& id);
// `meridian regions`: the regions following the daemon (operator token).
int RegionList(const GlobalOptions& g);
// `meridian fleet`: per model channel, the known terminals by the version they run (operator token).
int FleetList(const GlobalOptions& g);
// `meridian fleet terminals`: a page of known terminals of a model channel (operator token).
int FleetTerminals(const GlobalOptions& g, const FleetTerminalsQuery& q);

// Enrolment (operator token): terminals and their public keys.
struct EnrolledTerminalOptions {
  std::string id;
  std::string public_key;  // base64 (meridian-agent public-key prints it)
  std::string profile;
  std::string region;
};
int TerminalsAdd(const GlobalOptions& g, const EnrolledTerminalOptions& t);
// A provisioning file: one terminal per line, id,public_key[,profile[,region]].
int TerminalsImport(const GlobalOptions& g, const std::string& file);
int TerminalsList(const GlobalOptions& g, const std::string& state, const std::string& after, size_t limit);
// `action`: "accept" or "revoke".
int TerminalsChange(const GlobalOptions& g, const std::string& action, const std::string& id);
// `meridian tokens …`: named publisher and operator credentials (operator token).
// Create prints the new token on stdout, once.
int TokensCreate(const GlobalOptions& g, const std::string& role, const std::string& name);
int TokensList(const GlobalOptions& g);
int TokensRevoke(const GlobalOptions& g, const std::string& name);
// `meridian audit list`: a page of the audit log after seq `after` (operator token).
int AuditList(const GlobalOptions& g, uint64_t after, uint64_t limit);
// `meridian audit verify`: fetches the whole log, checks every event and the
// chain, and the daemon's head and `expect_head` ("SEQ:sha256:…", may be
// empty) against it; exit 1 naming the first bad event, else prints the head.
int AuditVerify(const GlobalOptions& g, const std::string& expect_head);

}  // namespace meridian::cli
