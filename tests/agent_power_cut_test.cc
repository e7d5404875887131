// Power cuts and failing disks under the agent's durable operations: slot
// switches (install, activate, switch back, fall back), the report outbox (add,
// remove), the state files, the download spool (resumed, restarted) and the
// terminal key's creation. Each operation runs on a FaultEnv over a
// MemEnv: a clean run counts its sync points; then, for every k, power is cut
// right after the k-th sync point and again with whatever the operation wrote
// after it left unsynced (the machine dies before the next sync), and the
// state the MemEnv keeps is opened afresh. Nothing the operation acknowledged
// may be lost, nothing half-written may be visible. Each mutating step is
// also failed with ENOSPC and with EIO: a clean error, a consistent state.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "agent/download_spool.h"
#include "agent/outbox.h"
#include "agent/slots.h"
#include "agent/state_files.h"
#include "base/digest.h"
#include "base/env.h"
#include "client/delta_files.h"
#include "delta/delta.h"
#include "signing/signing.h"

using namespace meridian;

namespace {

// A durable operation: `setup` makes the state before it (on the MemEnv),
// `run` performs it, `check` asserts what may be seen afterwards, given
// whether `run` returned OK.
struct DurableOp {
  std::string name;
  std::function<void(Env&)> setup = nullptr;
  std::function<Status(Env&)> run = nullptr;
  std::function<void(Env&, bool acknowledged)> check = nullptr;
};

struct Coverage {
  uint64_t sync_points = 0;
  uint64_t cut_points = 0;      // power cuts simulated
  uint64_t failed_steps = 0;    // runs with one mutating step failed
};

Coverage CutPowerEverywhere(const DurableOp& op) {
  Coverage c;
  uint64_t mutations = 0;
  {
    MemEnv mem;
    op.setup(mem);
    FaultEnv env(mem);
    REQUIRE(op.run(env).ok());
    c.sync_points = env.sync_points();
    mutations = env.mutations();
    op.check(mem, true);
    mem.PowerCut();
    op.check(mem, true);
  }
  for (uint64_t k = 0; k <= c.sync_points; ++k) {
    for (FaultEnv::CrashPoint where : {FaultEnv::CrashPoint::kAfterSync, FaultEnv::CrashPoint::kBeforeNextSync}) {
      INFO(op.name << ": power cut after sync point " << k
                   << (where == FaultEnv::CrashPoint::kAfterSync ? "" : ", unsynced writes after it"));
      MemEnv mem;
      op.setup(mem);
      FaultEnv env(mem);
      env.CrashAt(k, where);
      Status st = op.run(env);
      // Before the last sync point the crash always comes first.
      if (k < c.sync_points) CHECK(!st.ok());
      mem.PowerCut();
      op.check(mem, st.ok());
      ++c.cut_points;
    }
  }
  for (uint64_t n = 1; n <= mutations; ++n) {
    for (int err : {ENOSPC, EIO}) {
      INFO(op.name << ": mutating step " << n << " fails with " << std::strerror(err));
      MemEnv mem;
      op.setup(mem);
      FaultEnv env(mem);
      env.FailNthMutation(n, err);
      Status st = op.run(env);
      // A best-effort step (removing a stale temporary) may fail unnoticed.
      if (!st.ok()) {
        CHECK(st.code() == (err == ENOSPC ? Status::Code::kInsufficientStorage : Status::Code::kIOError));
        CHECK_THAT(st.message(), Catch::Contains(std::strerror(err)));
      }
      op.check(mem, st.ok());  // as the running agent sees it
      mem.PowerCut();
      op.check(mem, st.ok());  // and after a restart
      ++c.failed_steps;
    }
  }
  std::printf("power cut: %-32s %2llu sync points, %3llu cut points, %3llu failed steps\n", op.name.c_str(),
              static_cast<unsigned long long>(c.sync_points), static_cast<unsigned long long>(c.cut_points),
              static_cast<unsigned long long>(c.failed_steps));
  return c;
}

// ---- slots

const std::string kModelDir = "/state/models/fraud";

struct Version {
  std::string version;
  std::string bytes;
  Digest digest() const { return Digest::Of(bytes); }
};
const Version kV1{"1.0.0", "weights of one"}, kV2{"2.0.0", "weights of two"}, kV3{"3.0.0", "weights of three"};

// What the agent leaves in staging before Install: the download, written and
// fsynced through a descriptor (its directory is not synced).
std::string Stage(Env& env, const Version& v) {
  std::string path = ModelSlots(kModelDir, env).staging_dir() + "/download.part";
  std::unique_ptr<WritableFile> f = env.NewWritableFile(path, 0644).value();
  REQUIRE(f->Append(AsBytes(v.bytes)).ok());
  REQUIRE(f->Sync().ok());
  REQUIRE(f->Close().ok());
  return path;
}

void InitAndInstall(Env& env, const std::vector<Version>& versions) {
  ModelSlots slots(kModelDir, env);
  REQUIRE(slots.Init().ok());
  for (const Version& v : versions) REQUIRE(slots.Install(Stage(env, v), v.version, v.digest()).ok());
}

// The version a link names after checking that it is well formed and that its
// file is complete and hashes to the digest the link names; "" for no link.
std::string VerifiedVersion(Env& env, const Result<std::optional<Slot>>& slot) {
  INFO(slot.status().ToString());
  REQUIRE(slot.ok());
  if (!slot->has_value()) return "";
  Result<std::string> bytes = env.ReadFile((*slot)->path, 1 << 20);
  REQUIRE(bytes.ok());
  CHECK(Digest::Of(*bytes) == (*slot)->digest);
  return (*slot)->version;
}

// Checks a slot operation: afterwards current and previous are whole,
// verified files; current is the one before or the one after (the link
// switch is atomic); once acknowledged, both are the ones after.
std::function<void(Env&, bool)> SlotsEndUp(std::string current_before, std::string current_after,
                                           std::string previous_after) {
  return [=](Env& env, bool acknowledged) {
    ModelSlots slots(kModelDir, env);
    std::string current = VerifiedVersion(env, slots.Current());
    std::string previous = VerifiedVersion(env, slots.Previous());
    if (acknowledged) {
      CHECK(current == current_after);
      CHECK(previous == previous_after);
    } else {
      CHECK((current == current_before || current == current_after));
    }
  };
}

// Checks a switch back: current and previous are whole, verified files, and
// the two links are as they were or swapped, never both on one version.
std::function<void(Env&, bool)> SlotsSwapped(std::string current_before, std::string previous_before) {
  return [=](Env& env, bool acknowledged) {
    ModelSlots slots(kModelDir, env);
    const std::pair links{VerifiedVersion(env, slots.Current()), VerifiedVersion(env, slots.Previous())};
    const std::pair before{current_before, previous_before}, after{previous_before, current_before};
    if (acknowledged) {
      CHECK(links == after);
    } else {
      CHECK((links == before || links == after));
    }
  };
}

DurableOp InstallOp(const std::string& name, const std::vector<Version>& installed, const Version& next) {
  const std::string before = installed.empty() ? "" : installed.back().version;
  return DurableOp{
      .name = name,
      .setup =
          [=](Env& env) {
            InitAndInstall(env, installed);
            Stage(env, next);
          },
      .run = [=](Env& env) {
        ModelSlots slots(kModelDir, env);
        return slots.Install(slots.staging_dir() + "/download.part", next.version, next.digest());
      },
      .check = SlotsEndUp(before, next.version, before == next.version ? "" : before),
  };
}

Slot SlotOf(const Version& v) { return Slot{v.version, v.digest(), ModelSlots(kModelDir).BlobPath(v.version, v.digest())}; }

// ---- outbox

const std::string kOutboxDir = "/state/outbox";
const std::string kReportA = R"({"model":"fraud","version":"1.0.0","event":"installed"})";
const std::string kReportB = R"({"model":"fraud","version":"2.0.0","event":"health_failed"})";

// Every report the outbox lists is read whole, and the bodies are `before`
// or `after` (an addition or removal is atomic); `after` once acknowledged.
std::function<void(Env&, bool)> OutboxEndsUp(std::vector<std::string> before, std::vector<std::string> after) {
  return [=](Env& env, bool acknowledged) {
    Result<std::vector<PendingReport>> pending = Outbox(kOutboxDir, env).Oldest(kOutboxReportsMax);
    REQUIRE(pending.ok());
    std::vector<std::string> bodies;
    for (const PendingReport& r : *pending) bodies.push_back(r.body);
    if (acknowledged) {
      CHECK(bodies == after);
    } else {
      CHECK((bodies == before || bodies == after));
    }
  };
}

void AddReports(Env& env, const std::vector<std::string>& bodies) {
  Outbox outbox(kOutboxDir, env);
  REQUIRE(outbox.Init().ok());
  int64_t now_ms = 1'000;
  for (const std::string& b : bodies) REQUIRE(outbox.Add(b, now_ms += 1'000).ok());
}

// ---- state files: each is replaced as the agent does it, with Env::WriteFileAtomic

template <typename T>
DurableOp StateFileOp(const std::string& name, const std::string& path, const T& before, const T& after,
                      std::string (*to_json)(const T&), Result<T> (*parse)(std::string_view), mode_t mode) {
  return DurableOp{
      .name = name,
      .setup =
          [=](Env& env) {
            REQUIRE(env.CreateDirectories("/state", 0700).ok());
            REQUIRE(env.WriteFileAtomic(path, to_json(before), mode).ok());
          },
      .run = [=](Env& env) { return env.WriteFileAtomic(path, to_json(after), mode); },
      .check =
          [=](Env& env, bool acknowledged) {
            Result<std::string> text = env.ReadFile(path, 1 << 20);
            REQUIRE(text.ok());
            Result<T> parsed = parse(*text);  // never half a file
            REQUIRE(parsed.ok());
            if (acknowledged) {
              CHECK(*parsed == after);
            } else {
              CHECK((*parsed == before || *parsed == after));
            }
            // No temporary outlives a failed write or a power cut.
            CHECK(env.ListDirectory("/state").value() == std::vector<std::string>{path.substr(path.rfind('/') + 1)});
          },
  };
}

// ---- the download spool: staging/download.part as Agent::Download writes it

const std::string kPart = kModelDir + "/staging/download.part";
// A download larger than the others, arriving in pieces.
const Version kBig{"4.0.0", std::string(3'000, 'w') + std::string(3'000, 'x') + std::string(3'000, 'y')};

// Spools `bytes` of kBig from byte `from` (a server answering a range, or the
// whole body when `restart`) and syncs, as one transfer of Agent::Download;
// `*synced` is how many bytes the last Sync that returned OK made durable.
Status Transfer(Env& env, uint64_t from, uint64_t bytes, bool restart, uint64_t* synced) {
  Result<std::unique_ptr<DownloadSpool>> spool = DownloadSpool::Open(env, kPart, kBig.bytes.size());
  if (!spool.ok()) return spool.status();
  if ((*spool)->bytes() < from) return Status::Unavailable("the spool lost bytes it had synced");
  MERIDIAN_RETURN_IF_ERROR((*spool)->RestartAt(restart ? 0 : from));
  if (restart) from = 0;
  *synced = std::min(*synced, from);  // dropped on purpose: the server sends them again
  for (uint64_t at = from; at < from + bytes; at += 1'000) {  // a network's pieces
    MERIDIAN_RETURN_IF_ERROR((*spool)->Append(AsBytes(std::string_view(kBig.bytes).substr(at, 1'000))));
  }
  MERIDIAN_RETURN_IF_ERROR((*spool)->Sync());
  *synced = (*spool)->bytes();
  return Status::Ok();
}

// The rest of the download, as Agent::Download and SyncModel do on the next
// cycle: the stored blob when a run stopped after moving it there, else
// resume from what the spool has, verify, install.
Status FinishDownload(Env& env) {
  ModelSlots slots(kModelDir, env);
  const std::string blob = slots.BlobPath(kBig.version, kBig.digest());
  if (Result<Digest> d = env.DigestOfFile(blob); d.ok() && *d == kBig.digest()) {
    return slots.Activate(kBig.version, kBig.digest());
  }
  Result<std::unique_ptr<DownloadSpool>> spool = DownloadSpool::Open(env, kPart, kBig.bytes.size());
  if (!spool.ok()) return spool.status();
  const uint64_t have = (*spool)->bytes();
  MERIDIAN_RETURN_IF_ERROR((*spool)->Append(AsBytes(std::string_view(kBig.bytes).substr(have))));
  MERIDIAN_RETURN_IF_ERROR((*spool)->Sync());
  Result<Digest> d = env.DigestOfFile(kPart);
  if (!d.ok()) return d.status();
  if (*d != kBig.digest()) return Status::Corruption("the finished download does not verify");
  return slots.Install(kPart, kBig.version, kBig.digest());
}

// A download resumed in two transfers (each synced at its end) and installed.
// After any cut the spool holds a prefix of the artifact, at least what the
// last acknowledged sync made durable (`synced`) and never a byte beyond what
// was written; the next cycle finishes, verifies and installs it.
DurableOp DownloadOp(const std::string& name, bool restart) {
  auto synced = std::make_shared<uint64_t>(0);
  return DurableOp{
      .name = name,
      .setup =
          [=](Env& env) {
            InitAndInstall(env, {kV1});
            REQUIRE(Transfer(env, 0, 2'000, false, synced.get()).ok());  // an earlier run stopped here
          },
      .run =
          [=](Env& env) -> Status {
            MERIDIAN_RETURN_IF_ERROR(Transfer(env, 2'000, restart ? 5'000 : 3'000, restart, synced.get()));
            MERIDIAN_RETURN_IF_ERROR(Transfer(env, 5'000, 4'000, false, synced.get()));
            Result<Digest> d = env.DigestOfFile(kPart);
            if (!d.ok()) return d.status();
            if (*d != kBig.digest()) return Status::Corruption("download does not verify");
            return ModelSlots(kModelDir, env).Install(kPart, kBig.version, kBig.digest());
          },
      .check =
          [=](Env& env, bool acknowledged) {
            ModelSlots slots(kModelDir, env);
            std::string current = VerifiedVersion(env, slots.Current());
            if (acknowledged) CHECK(current == kBig.version);
            if (current == kBig.version) return;  // installed (or finished by an earlier check)
            CHECK(current == kV1.version);
            if (env.Exists(kPart)) {
              std::string part = env.ReadFile(kPart, 1 << 20).value();
              CHECK(kBig.bytes.starts_with(part));  // never a byte that was not written there
              // What a sync acknowledged is kept (unless Install moved it to the blob).
              if (!env.Exists(slots.BlobPath(kBig.version, kBig.digest()))) CHECK(part.size() >= *synced);
            }
            Status finished = FinishDownload(env);
            INFO(finished.ToString());
            REQUIRE(finished.ok());
            CHECK(VerifiedVersion(env, slots.Current()) == kBig.version);
            CHECK(VerifiedVersion(env, slots.Previous()) == kV1.version);
          },
  };
}

// ---- a delta applied as Agent::ApplyDeltaFile does: the current slot read
// where the decoder asks, staging/target.part written, read back and synced,
// then installed

const Version kSource{"5.0.0", std::string(4'000, 's') + std::string(4'000, 't')};
const Version kTarget{"6.0.0", std::string(4'000, 's') + "changed" + std::string(4'000, 't')};
const std::string kDeltaFile = kModelDir + "/staging/download.part";

Status ApplyAndInstall(Env& env) {
  ModelSlots slots(kModelDir, env);
  Result<std::unique_ptr<FileSourceReader>> source =
      FileSourceReader::Open(env, slots.BlobPath(kSource.version, kSource.digest()));
  if (!source.ok()) return source.status();
  const std::string out = slots.staging_dir() + "/target.part";
  Result<std::unique_ptr<FileTargetSink>> sink = FileTargetSink::Create(env, out);
  if (!sink.ok()) return sink.status();
  DeltaDecoder decoder(**source, **sink, ApplyOptions{kSource.digest(), kTarget.digest(), kTarget.bytes.size()});
  Result<std::unique_ptr<SequentialFile>> delta = env.NewSequentialFile(kDeltaFile);
  if (!delta.ok()) return delta.status();
  uint8_t buf[100];  // small pieces: the decoder works across many appends
  for (;;) {
    Result<size_t> n = (*delta)->Read(buf);
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    MERIDIAN_RETURN_IF_ERROR(decoder.Append(ByteSpan(buf, *n)));
  }
  MERIDIAN_RETURN_IF_ERROR(decoder.Finish());
  MERIDIAN_RETURN_IF_ERROR((*sink)->Sync());
  return slots.Install(out, kTarget.version, kTarget.digest());
}

DurableOp DeltaApplyOp() {
  return DurableOp{
      .name = "delta: apply and install",
      .setup =
          [](Env& env) {
            InitAndInstall(env, {kSource});
            Result<Bytes> delta = EncodeDelta(AsBytes(kSource.bytes), AsBytes(kTarget.bytes));
            REQUIRE(delta.ok());
            REQUIRE(delta->size() < kTarget.bytes.size() / 10);  // copies, not the whole target
            REQUIRE(env.WriteFileAtomic(kDeltaFile, *delta).ok());
          },
      .run = ApplyAndInstall,
      .check =
          [](Env& env, bool acknowledged) {
            ModelSlots slots(kModelDir, env);
            std::string current = VerifiedVersion(env, slots.Current());
            if (acknowledged) CHECK(current == kTarget.version);
            if (current == kTarget.version) return;
            CHECK(current == kSource.version);
            // The next cycle applies it again over whatever target.part was left.
            Status again = ApplyAndInstall(env);
            INFO(again.ToString());
            REQUIRE(again.ok());
            CHECK(VerifiedVersion(env, slots.Current()) == kTarget.version);
            CHECK(VerifiedVersion(env, slots.Previous()) == kSource.version);
          },
  };
}

// ---- the terminal key, made at the agent's first start

const std::string kKeyFile = "/state/terminal.key";

}  // namespace

TEST_CASE("power cut: slot switches leave current naming a whole, verified file") {
  std::vector<DurableOp> ops = {
      InstallOp("slots: install (first)", {}, kV1),
      InstallOp("slots: install (upgrade)", {kV1}, kV2),
      DurableOp{
          .name = "slots: activate",
          .setup =
              [](Env& env) {
                InitAndInstall(env, {kV1, kV2});
                REQUIRE(ModelSlots(kModelDir, env).SwitchBack().ok());  // 1.0.0 runs, 2.0.0 kept
              },
          .run = [](Env& env) { return ModelSlots(kModelDir, env).Activate(kV2.version, kV2.digest()); },
          .check = SlotsEndUp(kV1.version, kV2.version, kV1.version),
      },
      DurableOp{
          .name = "slots: switch back",
          .setup = [](Env& env) { InitAndInstall(env, {kV1, kV2}); },
          .run = [](Env& env) { return ModelSlots(kModelDir, env).SwitchBack(); },
          .check = SlotsSwapped(kV2.version, kV1.version),
      },
      DurableOp{
          .name = "slots: fall back (to a fallback)",
          .setup = [](Env& env) { InitAndInstall(env, {kV1, kV2, kV3}); },
          .run = [](Env& env) { return ModelSlots(kModelDir, env).FallBack(SlotOf(kV1)); },
          .check = SlotsEndUp(kV3.version, kV2.version, kV1.version),
      },
      DurableOp{
          .name = "slots: fall back (none left)",
          .setup = [](Env& env) { InitAndInstall(env, {kV1, kV2}); },
          .run = [](Env& env) { return ModelSlots(kModelDir, env).FallBack(std::nullopt); },
          .check = SlotsEndUp(kV2.version, kV1.version, ""),
      },
  };
  for (const DurableOp& op : ops) {
    Coverage c = CutPowerEverywhere(op);
    CHECK(c.sync_points >= 1);
  }
}

TEST_CASE("power cut: an outbox report is wholly there or absent, and kept once added") {
  for (const DurableOp& op : {
           DurableOp{
               .name = "outbox: add",
               .setup = [](Env& env) { AddReports(env, {kReportA}); },
               .run = [](Env& env) { return Outbox(kOutboxDir, env).Add(kReportB, 9'000); },
               .check = OutboxEndsUp({kReportA}, {kReportA, kReportB}),
           },
           DurableOp{
               .name = "outbox: remove",
               .setup = [](Env& env) { AddReports(env, {kReportA, kReportB}); },
               .run =
                   [](Env& env) {
                     Outbox outbox(kOutboxDir, env);
                     return outbox.Remove(outbox.Oldest(1).value().at(0));
                   },
               .check = OutboxEndsUp({kReportA, kReportB}, {kReportB}),
           },
       }) {
    Coverage c = CutPowerEverywhere(op);
    CHECK(c.sync_points >= 1);
  }
}

TEST_CASE("power cut: a state file parses after any cut, and is the new one once written") {
  AgentState old_state;
  old_state.state_versions["fraud/stable"] = 4;
  old_state.last_success_at = "2026-11-30T10:00:00.000Z";
  AgentState new_state = old_state;
  new_state.state_versions["fraud/stable"] = 5;
  new_state.failed["fraud"] = {kV3.digest()};
  new_state.downloaded_bytes = 123'456;
  new_state.health_checked_ms["fraud"] = 1'700'000'000'000;

  const DownloadJob old_job{"/v1/artifacts/" + kV1.digest().ToString(), kV1.digest(), kV1.bytes.size()};
  const DownloadJob new_job{"/v1/artifacts/" + kV2.digest().ToString(), kV2.digest(), kV2.bytes.size()};
  const StoredCredential old_credential{"mtc1.b2xk.c2ln", 2'000, 1'500};
  const StoredCredential new_credential{"mtc1.bmV3.c2lnbmVk", 4'000, 3'000};

  for (const DurableOp& op : {
           StateFileOp<AgentState>("state file: agent.json", "/state/agent.json", old_state, new_state,
                                   AgentStateToJson, ParseAgentState, 0644),
           StateFileOp<StoredCredential>("state file: credential.json", "/state/credential.json", old_credential,
                                         new_credential, StoredCredentialToJson, ParseStoredCredential, 0600),
           StateFileOp<DownloadJob>("state file: job.json", "/state/job.json", old_job, new_job,
                                    DownloadJobToJson, ParseDownloadJob, 0644),
       }) {
    Coverage c = CutPowerEverywhere(op);
    CHECK(c.sync_points == 2);  // the file's and its directory's
  }
}

TEST_CASE("power cut: a download resumes from the bytes it synced and installs after any cut") {
  for (const DurableOp& op : {DownloadOp("download: resumed", false),
                              DownloadOp("download: restarted (whole body)", true)}) {
    Coverage c = CutPowerEverywhere(op);
    CHECK(c.sync_points >= 4);  // two transfers, then Install's
  }
}

TEST_CASE("power cut: a delta applied into staging installs whole after any cut") {
  Coverage c = CutPowerEverywhere(DeltaApplyOp());
  CHECK(c.sync_points >= 3);  // target.part's, then Install's
}

TEST_CASE("power cut: the terminal key is absent or whole after a cut, and kept once made") {
  auto made = std::make_shared<std::string>();  // the key id LoadOrCreate returned
  Coverage c = CutPowerEverywhere(DurableOp{
      .name = "terminal key: create",
      .setup =
          [=](Env& env) {
            REQUIRE(env.CreateDirectories("/state", 0700).ok());
            made->clear();
          },
      .run =
          [=](Env& env) -> Status {
            Result<SecretKey> key = LoadOrCreateSecretKeyFile(env, kKeyFile);
            if (!key.ok()) return key.status();
            *made = key->KeyId();
            return Status::Ok();
          },
      .check =
          [=](Env& env, bool acknowledged) {
            Result<std::vector<std::string>> names = env.ListDirectory("/state");
            REQUIRE(names.ok());
            if (!env.Exists(kKeyFile)) {
              CHECK(!acknowledged);
              CHECK(names->empty());  // no temporary left where the key would be
              return;
            }
            CHECK(*names == std::vector<std::string>{"terminal.key"});
            CHECK(env.GetPermissions(kKeyFile).value() == 0600);
            Result<SecretKey> key = ReadSecretKeyFile(env, kKeyFile);  // whole, never half a key
            INFO(key.status().ToString());
            REQUIRE(key.ok());
            if (acknowledged) CHECK(key->KeyId() == *made);
            // The next start uses it rather than making another.
            Result<SecretKey> again = LoadOrCreateSecretKeyFile(env, kKeyFile);
            REQUIRE(again.ok());
            CHECK(again->KeyId() == key->KeyId());
          },
  });
  CHECK(c.sync_points == 2);  // the file's and its directory's
}

TEST_CASE("terminal key: a key others may read is refused, a damaged one never replaced") {
  MemEnv env;
  REQUIRE(env.CreateDirectories("/state", 0700).ok());
  SecretKey key = SecretKey::Generate();
  REQUIRE(WriteSecretKeyFile(env, kKeyFile, key).ok());
  REQUIRE(env.SetPermissions(kKeyFile, 0644).ok());
  CHECK(LoadOrCreateSecretKeyFile(env, kKeyFile).status().code() == Status::Code::kPermissionDenied);
  REQUIRE(env.SetPermissions(kKeyFile, 0600).ok());
  CHECK(LoadOrCreateSecretKeyFile(env, kKeyFile).value().KeyId() == key.KeyId());
  REQUIRE(env.WriteFileAtomic(kKeyFile, std::string_view("{\"keytype\":"), 0600).ok());
  CHECK(LoadOrCreateSecretKeyFile(env, kKeyFile).status().code() == Status::Code::kInvalidArgument);
  CHECK(env.ReadFile(kKeyFile, 100).value() == "{\"keytype\":");  // left for an operator to look at
}
