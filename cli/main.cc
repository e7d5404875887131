// meridian: the release managers' CLI (argument parsing only; the commands
// live in commands.cc).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <csignal>

#include "base/encoding.h"
#include "base/file.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "delta/delta.h"

using namespace meridian;
using namespace meridian::cli;

namespace {

// Text that goes into a request or a manifest: JSON, so UTF-8. Refused as the
// command line is parsed, naming its option, where it would otherwise fail
// once the work began. Paths are not checked: Linux names files with any bytes.
const CLI::Validator kUtf8Text(
    [](const std::string& text) { return IsUtf8(text) ? std::string() : std::string("not UTF-8 text"); }, "");

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"meridian: publish and manage signed model versions on a meridiand server"};
  app.require_subcommand(1);
  GlobalOptions g;
  if (const char* s = std::getenv("MERIDIAN_SERVER")) g.server = s;
  if (const char* t = std::getenv("MERIDIAN_TOKEN")) g.token = t;
  if (const char* ca = std::getenv("MERIDIAN_CA_FILE")) g.tls.ca_file = ca;
  std::string token_file, output = "text";
  app.add_option("--server", g.server, "daemon URL (env MERIDIAN_SERVER)")->capture_default_str();
  app.add_option("--token", g.token, "bearer token (env MERIDIAN_TOKEN)");
  app.add_option("--token-file", token_file, "read the bearer token from this file");
  app.add_option("--output", output, "text or json")->check(CLI::IsMember({"text", "json"}))->capture_default_str();
  app.add_option("--ca-file", g.tls.ca_file,
                 "CA file (PEM) to check https:// servers against (env MERIDIAN_CA_FILE; default: CURL_CA_BUNDLE, "
                 "SSL_CERT_FILE, the system's store)");
  app.add_option("--client-cert", g.tls.client_certificate, "client certificate (PEM) for servers that ask for one");
  app.add_option("--client-key", g.tls.client_key, "private key (PEM) of --client-cert");
  app.add_flag("--allow-insecure-http", g.tls.allow_insecure_http,
               "send the token over plain http:// to a server that is not loopback");
  app.add_option("--parallel", g.parallel, "concurrent transfers: chunk uploads, ranges of an artifact pulled")->check(CLI::Range(1, 64))->capture_default_str();

  std::string key_out;
  CLI::App* keygen = app.add_subcommand("keygen", "create an Ed25519 key pair: FILE (secret, 0600) and FILE.pub");
  keygen->add_option("FILE", key_out, "secret key file to write")->required();

  PublishOptions pub;
  std::vector<std::string> annotations;
  CLI::App* publish = app.add_subcommand("publish", "chunk, upload (only what the server lacks), sign and commit");
  publish->add_option("--key", pub.key_files,
                      "release key (secret key file); repeat to sign with several. Below the root's release "
                      "threshold the version waits, invisible, for `meridian sign`")
      ->required();
  publish->add_option("--model", pub.model, "model name")->required()->check(kUtf8Text);
  publish->add_option("--version", pub.version, "SemVer version")->required()->check(kUtf8Text);
  publish->add_option("--media-type", pub.media_type, "media type of the artifact")
      ->capture_default_str()
      ->check(kUtf8Text);
  publish->add_option("--profile", pub.profiles, "device profile it targets (repeatable)")->check(kUtf8Text);
  publish->add_option("--region", pub.regions, "region it may be stored in (repeatable; none = all)")
      ->check(kUtf8Text);
  publish->add_option("--annotation", annotations, "KEY=VALUE annotation (repeatable)")->check(kUtf8Text);
  publish->add_flag("--public", pub.is_public, "readable without a credential (default: terminals, regions and staff only)");
  std::string store_token_file;
  publish->add_option("--store-at", pub.store_at,
                      "upload the chunks to this daemon instead of --server: one in the model's --region, for a model "
                      "the origin may not hold (the origin keeps the manifest)");
  publish->add_option("--store-token-file", store_token_file, "the publisher.token of the --store-at daemon");
  publish->add_option("--chunks-per-page", pub.chunks_per_page,
                      "a longer chunk list goes into index pages of this many chunks (a paged manifest)")
      ->check(CLI::Range(size_t{1}, kChunkPageEntriesMax));
  publish->add_option("PATH", pub.path, "the model file")->required()->check(CLI::ExistingFile);

  CLI::App* models = app.add_subcommand("models", "list models");
  std::string versions_model;
  CLI::App* versions = app.add_subcommand("versions", "list the versions of a model (or delete one)");
  versions->add_option("MODEL", versions_model, "model name");
  std::string delete_model, delete_version, delete_reason;
  CLI::App* versions_delete = versions->add_subcommand(
      "delete", "delete a version no channel or active rollout names; its bytes go at the next collection");
  versions_delete->add_option("MODEL", delete_model, "model name")->required();
  versions_delete->add_option("VERSION", delete_version, "the version")->required();
  versions_delete->add_option("--reason", delete_reason, "why, for the audit log")->check(kUtf8Text);
  CLI::App* collect_cmd = app.add_subcommand(
      "collect", "apply the retention policy and delete what nothing refers to any more, now (operator token)");

  SignOptions sign;
  CLI::App* sign_cmd = app.add_subcommand(
      "sign", "add release signatures to a version waiting for them; it becomes visible at the root's threshold");
  sign_cmd->add_option("MODEL", sign.model, "model name")->required();
  sign_cmd->add_option("VERSION", sign.version, "version")->required();
  sign_cmd->add_option("--key", sign.key_files, "release key (secret key file); repeatable")->required();
  sign_cmd->add_option("--expect-digest", sign.expect_digest,
                       "refuse to sign unless the artifact's digest is this (sha256:…)");
  std::string show_model, show_version, show_root;
  CLI::App* show_cmd = app.add_subcommand("show", "a version's manifest, state and signers");
  show_cmd->add_option("MODEL", show_model, "model name")->required();
  show_cmd->add_option("VERSION", show_version, "version")->required();
  show_cmd->add_option("--root", show_root, "count only signatures valid under this root (root.json)");

  CLI::App* root_cmd = app.add_subcommand("root", "rotate the root of trust");
  root_cmd->require_subcommand(1);
  RootRotateOptions rot;
  CLI::App* rotate_cmd = root_cmd->add_subcommand(
      "rotate", "write root N+1, signed by a threshold of the old and of the new root keys");
  rotate_cmd->add_option("--root", rot.root_file, "the current root (root N)")->required()->check(CLI::ExistingFile);
  rotate_cmd->add_option("--old-key", rot.old_key_files, "secret root key of root N (repeatable)")->required();
  rotate_cmd->add_option("--new-key", rot.new_key_files,
                         "secret root key of root N+1 (repeatable; none: keep root N's root keys)");
  rotate_cmd->add_option("--root-threshold", rot.root_threshold,
                         "root signatures root N+2 will need (default: root N's when its keys are kept, else 1)");
  rotate_cmd->add_option("--release-key", rot.release_key_files,
                         "public release key of root N+1 (repeatable; none: keep root N's release keys)");
  rotate_cmd->add_option("--release-threshold", rot.release_threshold,
                         "release signatures a manifest needs (default: root N's when its keys are kept, else 1)");
  rotate_cmd->add_option("--expires-days", rot.expires_days, "days until root N+1 expires")->capture_default_str();
  rotate_cmd->add_option("-o,--out", rot.out, "file to write root N+1 to")->required();
  std::string push_file;
  CLI::App* push_cmd = root_cmd->add_subcommand("push", "install the next root at the origin (operator token)");
  push_cmd->add_option("FILE", push_file, "root N+1 (meridian root rotate --out)")->required()->check(CLI::ExistingFile);

  PullOptions pull;
  CLI::App* pull_cmd = app.add_subcommand("pull", "download a version, verify it against the root, write it atomically");
  pull_cmd->add_option("--root", pull.root_file, "trusted root document (root.json)")->required();
  pull_cmd->add_option("-o,--out", pull.out, "output file")->required();
  pull_cmd->add_option("MODEL", pull.model, "model name")->required();
  pull_cmd->add_option("VERSION", pull.version, "version")->required();
  pull_cmd->add_option("--from", pull.from_file, "an older version of the file: fetch a delta from it when possible")
      ->check(CLI::ExistingFile);

  std::string diff_old, diff_new, diff_out;
  CLI::App* diff = app.add_subcommand("diff", "write a delta that turns OLD into NEW");
  diff->add_option("OLD", diff_old, "the old version")->required()->check(CLI::ExistingFile);
  diff->add_option("NEW", diff_new, "the new version")->required()->check(CLI::ExistingFile);
  diff->add_option("-o,--out", diff_out, "delta file to write (.mdelta)")->required();
  std::optional<int> diff_level;
  diff->add_option("--literal-level", diff_level,
                   "compress literals with zstd at this level instead of LZMA (faster to make, larger)")
      ->check(CLI::Range(1, 22));
  uint64_t diff_memory_mib = 1024;
  diff->add_option("--memory", diff_memory_mib,
                   "the most memory the encoder uses, in MiB: larger files are encoded in windows (default 1024)")
      ->check(CLI::Range(uint64_t{kDeltaEncoderMemoryMin >> 20}, uint64_t{1} << 24));
  std::string patch_old, patch_delta, patch_out;
  CLI::App* patch = app.add_subcommand("patch", "apply a delta to OLD, verify, write OUT atomically");
  patch->add_option("OLD", patch_old, "the old version")->required()->check(CLI::ExistingFile);
  patch->add_option("DELTA", patch_delta, "delta file")->required()->check(CLI::ExistingFile);
  patch->add_option("-o,--out", patch_out, "output file")->required();

  // rollout …
  CLI::App* rollout = app.add_subcommand("rollout", "staged rollouts of a model channel (operator token)");
  rollout->require_subcommand(1);
  RolloutOptions ro;
  auto add_spec_options = [&ro](CLI::App* cmd) {
    cmd->add_option("MODEL", ro.model, "model name")->required()->check(kUtf8Text);
    cmd->add_option("VERSION", ro.version, "target version")->required()->check(kUtf8Text);
    cmd->add_option("--id", ro.id, "rollout id (default: the daemon picks one)")->check(kUtf8Text);
    cmd->add_option("--channel", ro.channel, "channel")->capture_default_str()->check(kUtf8Text);
    cmd->add_option("--regions", ro.regions, "regions covered (default all)")->delimiter(',')->check(kUtf8Text);
    cmd->add_option("--profile", ro.profiles, "device profiles covered (default all)")
        ->delimiter(',')
        ->check(kUtf8Text);
    cmd->add_option("--canary", ro.canaries, "terminal ids in every stage")->delimiter(',')->check(kUtf8Text);
    cmd->add_option("--stages", ro.stages, "cumulative percent per stage")->delimiter(',')->capture_default_str();
    cmd->add_option("--min-reports", ro.min_reports, "reports a stage needs before its gates decide")
        ->capture_default_str();
    cmd->add_option("--max-failure-rate", ro.max_failure_rate, "failure rate above which a stage breaches")
        ->capture_default_str();
    cmd->add_option("--soak", ro.soak, "time a stage runs before an automatic promote (30s, 5m, 2h)")
        ->capture_default_str();
    cmd->add_flag("--auto-promote", ro.auto_promote, "promote when the gates pass");
    cmd->add_flag("--auto-rollback", ro.auto_rollback, "roll back on a breach (default: pause)");
    cmd->add_flag("--waves", ro.waves, "one region after another, in --regions order; a breach stops the wave");
    cmd->add_option("--window", ro.window,
                    "promote automatically only inside this weekly window of the region's local time, "
                    "e.g. \"Mon-Sat 02:00-05:00\"")
        ->check(kUtf8Text);
    cmd->add_option("--time-zone", ro.time_zones,
                    "REGION=ZONE (IANA, e.g. sg=Asia/Singapore), or ZONE for every region not named; default: the "
                    "daemon's time_zones setting")
        ->check(kUtf8Text);
    cmd->add_option("--health-rule", ro.health_rules,
                    "compare the target's terminals with the previous version's, per region, e.g. "
                    "\"latency_ms p95 +20%\" (repeat; replaces the defaults)")
        ->check(kUtf8Text);
    cmd->add_flag("--no-health-rules", ro.no_health_rules, "judge pass/fail reports only");
    cmd->add_option("--health-min-terminals", ro.health_min_terminals,
                    "terminals per version and region before a health rule judges")
        ->capture_default_str();
  };
  CLI::App* ro_start = rollout->add_subcommand("start", "start moving a model channel to VERSION");
  add_spec_options(ro_start);
  CLI::App* ro_plan = rollout->add_subcommand("plan", "dry run: known terminals and bytes per stage");
  add_spec_options(ro_plan);
  CLI::App* ro_list = rollout->add_subcommand("list", "list rollouts");
  std::string ro_id, ro_reason;
  bool ro_watch = false;
  CLI::App* ro_status = rollout->add_subcommand("status", "a rollout's state and per-stage table");
  ro_status->add_option("ID", ro_id, "rollout id")->required();
  ro_status->add_flag("--watch", ro_watch, "refresh until the rollout settles");
  CLI::App* ro_events = rollout->add_subcommand("events", "a rollout's audit log");
  ro_events->add_option("ID", ro_id, "rollout id")->required();
  std::vector<std::pair<std::string, CLI::App*>> ro_actions;
  for (const char* action : {"promote", "pause", "resume", "abort", "rollback"}) {
    CLI::App* cmd = rollout->add_subcommand(action, std::string(action) + " a rollout");
    cmd->add_option("ID", ro_id, "rollout id")->required();
    cmd->add_option("--reason", ro_reason, "why (kept in the audit log)")->check(kUtf8Text);
    ro_actions.emplace_back(action, cmd);
  }

  CLI::App* residency_cmd =
      app.add_subcommand("residency", "per model: which daemons hold how many of its bytes (operator token)");
  CLI::App* regions_cmd =
      app.add_subcommand("regions", "regions following the daemon: reachable, state, lag, stored bytes, terminals");
  CLI::App* fleet_cmd = app.add_subcommand("fleet", "the versions the known terminals run, per model channel and region");
  FleetTerminalsQuery fleet_q;
  CLI::App* fleet_terminals = fleet_cmd->add_subcommand(
      "terminals", "known terminals of a model channel: region, profile, version, previous version, last seen, "
                   "last report, failures");
  fleet_terminals->add_option("--model", fleet_q.model, "model name")->required();
  fleet_terminals->add_option("--channel", fleet_q.channel, "channel")->capture_default_str();
  fleet_terminals->add_option("--version", fleet_q.version, "only terminals running this version");
  fleet_terminals->add_option("--region", fleet_q.region, "only terminals of this region");
  fleet_terminals->add_option("--state", fleet_q.state, "ok, or failed (the last install failed)")
      ->check(CLI::IsMember({"ok", "failed"}));
  fleet_terminals->add_option("--after", fleet_q.after, "the page after this terminal id (what the last page said)");
  fleet_terminals->add_option("--limit", fleet_q.limit, "terminals per page, 1 to 1000")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));

  CLI::App* terminals = app.add_subcommand("terminals", "enrolled terminals and their keys (operator token)");
  terminals->require_subcommand(1);
  EnrolledTerminalOptions enrol;
  CLI::App* t_add = terminals->add_subcommand("add", "enrol a terminal with its public key, accepted");
  t_add->add_option("ID", enrol.id, "terminal id")->required()->check(kUtf8Text);
  t_add->add_option("--public-key", enrol.public_key, "base64 Ed25519 key (meridian-agent public-key prints it)")
      ->required()
      ->check(kUtf8Text);
  t_add->add_option("--profile", enrol.profile, "its device profile")->check(kUtf8Text);
  t_add->add_option("--region", enrol.region, "its region")->check(kUtf8Text);
  std::string t_file, t_state, t_after, t_id;
  size_t t_limit = 1000;
  CLI::App* t_import = terminals->add_subcommand(
      "import", "enrol terminals from a provisioning file: one per line, id,public_key[,profile[,region]]");
  t_import->add_option("FILE", t_file, "provisioning file")->required();
  CLI::App* t_list = terminals->add_subcommand("list", "enrolled terminals, a page at a time");
  t_list->add_option("--state", t_state, "pending, accepted or revoked")
      ->check(CLI::IsMember({"pending", "accepted", "revoked"}));
  t_list->add_option("--after", t_after, "the page after this terminal id");
  t_list->add_option("--limit", t_limit, "terminals per page, 1 to 10000")->capture_default_str()->check(CLI::Range(1, 10000));
  std::vector<std::pair<std::string, CLI::App*>> t_actions;
  for (const char* action : {"accept", "revoke"}) {
    CLI::App* cmd = terminals->add_subcommand(
        action, std::string(action) == "accept" ? "accept a terminal that asked to join"
                                                : "revoke a terminal: the origin and every region refuse it within seconds");
    cmd->add_option("ID", t_id, "terminal id")->required();
    t_actions.emplace_back(action, cmd);
  }
  // tokens …, audit … (operator token)
  CLI::App* tokens_cmd = app.add_subcommand("tokens", "named publisher and operator credentials for people (operator token)");
  tokens_cmd->require_subcommand(1);
  std::string token_role, token_name;
  CLI::App* tokens_create = tokens_cmd->add_subcommand("create", "create a credential; prints its token once");
  tokens_create->add_option("--role", token_role, "publisher or operator")
      ->required()
      ->check(CLI::IsMember({"publisher", "operator"}));
  tokens_create->add_option("--name", token_name, "who holds it: the actor of its actions in the audit log")
      ->required()
      ->check(kUtf8Text);
  CLI::App* tokens_list = tokens_cmd->add_subcommand("list", "credentials: name, role, created, by whom, revoked");
  CLI::App* tokens_revoke = tokens_cmd->add_subcommand("revoke", "revoke a credential, at once");
  tokens_revoke->add_option("NAME", token_name, "the credential's name")->required();
  CLI::App* audit_cmd = app.add_subcommand("audit", "the origin's hash-chained audit log (operator token)");
  audit_cmd->require_subcommand(1);
  uint64_t audit_after = 0, audit_limit = 100;
  std::string audit_expect_head;
  CLI::App* audit_list = audit_cmd->add_subcommand("list", "a page of events: seq, time, actor, action, subject, detail");
  audit_list->add_option("--after", audit_after, "events after this seq (what the last page said)");
  audit_list->add_option("--limit", audit_limit, "events per page, 1 to 1000")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  CLI::App* audit_verify = audit_cmd->add_subcommand(
      "verify", "check every event and the chain; exit 1 naming the first bad event, else print the head");
  audit_verify->add_option("--expect-head", audit_expect_head,
                           "SEQ:sha256:… printed by an earlier verify: the log must still hold it unchanged");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  g.json = output == "json";
  // A token file's content, without its trailing newline.
  auto read_token = [](const std::string& file, std::string* token) {
    Result<std::string> t = ReadFileToString(file, 4096);
    if (!t.ok()) return t.status();
    *token = *t;
    while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back()))) token->pop_back();
    return Status::Ok();
  };
  if (!token_file.empty()) {
    if (Status st = read_token(token_file, &g.token); !st.ok()) return Fail(st);
  }
  if (!store_token_file.empty()) {
    if (Status st = read_token(store_token_file, &pub.store_token); !st.ok()) return Fail(st);
  }
  for (const std::string& a : annotations) {
    size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0) return Fail("--annotation wants KEY=VALUE, got '" + a + "'");
    pub.annotations[a.substr(0, eq)] = a.substr(eq + 1);
  }

  if (*keygen) return Keygen(g, key_out);
  if (*publish) return Publish(g, pub);
  if (*models) return ListModels(g);
  if (*versions_delete) return DeleteVersion(g, delete_model, delete_version, delete_reason);
  if (*versions) {
    if (versions_model.empty()) return Fail("versions needs MODEL (or: versions delete MODEL VERSION)");
    return ListVersions(g, versions_model);
  }
  if (*collect_cmd) return Collect(g);
  if (*pull_cmd) return Pull(g, pull);
  if (*sign_cmd) return Sign(g, sign);
  if (*show_cmd) return Show(g, show_model, show_version, show_root);
  if (*rotate_cmd) return RootRotate(g, rot);
  if (*push_cmd) return RootPush(g, push_file);
  if (*diff) return Diff(g, diff_old, diff_new, diff_out, diff_level, diff_memory_mib);
  if (*patch) return Patch(g, patch_old, patch_delta, patch_out);
  if (*regions_cmd) return RegionList(g);
  if (*residency_cmd) return Residency(g);
  if (*fleet_terminals) return FleetTerminals(g, fleet_q);
  if (*t_add) return TerminalsAdd(g, enrol);
  if (*t_import) return TerminalsImport(g, t_file);
  if (*t_list) return TerminalsList(g, t_state, t_after, t_limit);
  for (const auto& [action, cmd] : t_actions) {
    if (*cmd) return TerminalsChange(g, action, t_id);
  }
  if (*fleet_cmd) return FleetList(g);
  if (*tokens_create) return TokensCreate(g, token_role, token_name);
  if (*tokens_list) return TokensList(g);
  if (*tokens_revoke) return TokensRevoke(g, token_name);
  if (*audit_list) return AuditList(g, audit_after, audit_limit);
  if (*audit_verify) return AuditVerify(g, audit_expect_head);
  if (*ro_start) return RolloutStart(g, ro);
  if (*ro_plan) return RolloutPlan(g, ro);
  if (*ro_list) return RolloutList(g);
  if (*ro_status) return RolloutStatus(g, ro_id, ro_watch);
  if (*ro_events) return RolloutEvents(g, ro_id);
  for (const auto& [action, cmd] : ro_actions) {
    if (*cmd) return RolloutAct(g, action, ro_id, ro_reason);
  }
  return Fail("no command");
}
