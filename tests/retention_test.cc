// Unit tests of retention (daemon/retention.h) in process, over a real store,
// a real rollout service and a fake clock: what a channel or a rollout names
// is never deleted, the policy keeps the newest, stale deltas and old report
// ids go, deletions are audited, and a collection frees the bytes.
#include "daemon/retention.h"

#include <catch2/catch.hpp>

#include "rollout/rollout.h"
#include "tests/harness.h"
#include "tests/verified_manifest.h"

using namespace meridian;
using namespace meridian::testing;

namespace {

constexpr std::chrono::milliseconds kDay{24 * 3600 * 1000};

struct Fixture {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<Store> store =
      Store::Open(dir / "store", StoreOptions{.sync_writes = false, .clock = &clock, .unreferenced_grace_ms = 3'600'000})
          .value();
  std::unique_ptr<Rollouts> rollouts = Rollouts::Open(*store, SecretKey::Generate(), clock).value();
  DeltaService deltas{*store, std::nullopt};
  Catalog catalog{""};
  std::unique_ptr<AuditLog> audit = AuditLog::Open(*store, clock).value();

  Retention Make(RetentionOptions options = {.interval_ms = 0}) {
    return Retention(*store, catalog, *rollouts, deltas, *audit, clock, options);
  }

  // Version `version` of model "fraud": one chunk of 64 KiB, distinct per version.
  Manifest Publish(const std::string& version, bool is_public = false) {
    Bytes data(64 << 10, static_cast<uint8_t>(version.size() * 31 + version.back()));
    for (size_t i = 0; i < data.size(); i += 97) data[i] = static_cast<uint8_t>(i * 13 + version[2]);
    Manifest m;
    m.name = "fraud";
    m.version = version;
    m.created = "2026-11-30T00:00:00.000Z";
    m.size = data.size();
    m.digest = Digest::Of(data);
    m.chunks = {{Digest::Of(data), data.size()}};
    m.is_public = is_public;
    REQUIRE(store->PutChunk(m.digest, data).ok());
    REQUIRE(store->CommitVersion(Verified(m)).ok());
    catalog.Learn(m);
    return m;
  }

  void StartRollout(const std::string& id, const std::string& version) {
    Result<RolloutSpec> spec = RolloutSpecFromJson(RolloutSpecJson(id, version));
    REQUIRE(spec.ok());
    Result<Rollout> r = rollouts->Start(*spec, "alice", "test");
    INFO(r.status().ToString());
    REQUIRE(r.ok());
  }

  std::vector<std::string> Versions() {
    Result<std::vector<std::string>> v = store->ListVersions("fraud");
    return v.ok() ? *v : std::vector<std::string>{};
  }

  std::string LastAuditEvent() {
    Result<AuditLog::Page> page = audit->Read(0, AuditLog::kPageEventsMax);
    REQUIRE(page.ok());
    REQUIRE_FALSE(page->events.empty());
    return page->events.back();
  }
};

}  // namespace

TEST_CASE("retention: a version a channel or an active rollout names is not deleted; others are, audited") {
  Fixture f;
  f.Publish("1.0.0");
  f.Publish("1.1.0");
  f.Publish("1.2.0", /*is_public=*/true);
  f.StartRollout("r1", "1.1.0");
  Retention retention = f.Make();

  Status in_use = retention.DeleteVersion("fraud", "1.1.0", "alice", "");
  CHECK(in_use.code() == Status::Code::kFailedPrecondition);
  CHECK(in_use.message().find("channel stable") != std::string::npos);
  CHECK(f.Versions() == std::vector<std::string>{"1.0.0", "1.1.0", "1.2.0"});

  REQUIRE(retention.DeleteVersion("fraud", "1.0.0", "alice", "superseded").ok());
  CHECK(f.Versions() == std::vector<std::string>{"1.1.0", "1.2.0"});
  const std::string event = f.LastAuditEvent();
  CHECK(event.find("version.delete") != std::string::npos);
  CHECK(event.find("fraud/1.0.0") != std::string::npos);
  CHECK(event.find("superseded") != std::string::npos);
  CHECK(retention.DeleteVersion("fraud", "1.0.0", "alice", "").code() == Status::Code::kNotFound);
  CHECK(retention.DeleteVersion("fraud", "latest", "alice", "").code() == Status::Code::kInvalidArgument);

  // A public version leaves the catalog with it: its bytes are no longer
  // anyone's to read without a credential.
  REQUIRE(f.catalog.IsPublicVersion("fraud", "1.2.0"));
  REQUIRE(retention.DeleteVersion("fraud", "1.2.0", "alice", "").ok());
  CHECK_FALSE(f.catalog.IsPublicVersion("fraud", "1.2.0"));
}

TEST_CASE("retention: the policy keeps the newest versions of each model and those in use, then frees their bytes") {
  Fixture f;
  std::vector<Manifest> published;
  for (const char* v : {"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"}) published.push_back(f.Publish(v));
  f.StartRollout("r1", "1.1.0");
  Retention retention = f.Make({.keep_versions = 2, .interval_ms = 0});
  f.clock.Advance(kDay);

  Result<RetentionReport> r = retention.Collect(kRetentionActor);
  REQUIRE(r.ok());
  CHECK(r->versions_deleted == std::vector<std::string>{"fraud@1.0.0", "fraud@1.2.0"});
  CHECK(f.Versions() == std::vector<std::string>{"1.1.0", "1.3.0", "1.4.0"});
  CHECK(r->chunks.chunks_deleted == 2);
  CHECK(r->chunks.bytes_deleted == 2 * (64 << 10));
  CHECK_FALSE(f.store->HasChunk(published[0].chunks[0].digest).value());
  CHECK(f.store->HasChunk(published[1].chunks[0].digest).value());
  CHECK(f.LastAuditEvent().find("retention") != std::string::npos);

  // Nothing more to do: a second pass deletes nothing.
  r = retention.Collect(kRetentionActor);
  REQUIRE(r.ok());
  CHECK(r->versions_deleted.empty());
  CHECK(r->chunks.chunks_deleted == 0);
}

TEST_CASE("retention: deltas out of or into a deleted artifact are dropped with their bytes; the others kept") {
  Fixture f;
  Manifest a = f.Publish("1.0.0"), b = f.Publish("1.1.0"), c = f.Publish("1.2.0");
  auto record = [&](const Manifest& from, const Manifest& to, uint8_t fill) {
    Bytes bytes(8 << 10, fill);
    DeltaRecord rec;
    rec.info.from = from.digest;
    rec.info.to = to.digest;
    rec.info.worthwhile = true;
    rec.info.size = bytes.size();
    rec.info.digest = Digest::Of(bytes);
    rec.chunks = PutDeltaChunks(*f.store, bytes).value();
    REQUIRE(f.deltas.Adopt(rec).ok());
    return rec;
  };
  DeltaRecord stale = record(a, b, 1), kept = record(b, c, 2);
  Retention retention = f.Make();
  REQUIRE(retention.DeleteVersion("fraud", "1.0.0", "alice", "").ok());
  f.clock.Advance(kDay);
  Result<RetentionReport> r = retention.Collect("alice");
  REQUIRE(r.ok());
  CHECK(r->deltas_dropped == 1);
  CHECK(f.deltas.Find(a.digest, b.digest).status().code() == Status::Code::kNotFound);
  CHECK(f.deltas.Find(b.digest, c.digest).ok());
  CHECK_FALSE(f.store->HasChunk(stale.chunks[0].digest).value());
  CHECK(f.store->GetChunk(kept.chunks[0].digest).ok());
  CHECK(r->chunks.chunks_deleted == 2);  // 1.0.0's chunk and the stale delta's
}

TEST_CASE("retention: a forwarded report's id is forgotten report_ids_ms after a collection first saw it") {
  Fixture f;
  REQUIRE(f.store->WriteState({{"reportid/sg.a.1", ""}, {"reportid/sg.a.2", ""}}).ok());
  Retention retention = f.Make({.report_ids_ms = kDay.count(), .interval_ms = 0});
  CHECK(retention.Collect("alice").value().report_ids_dropped == 0);  // stamped now
  REQUIRE(f.store->WriteState({{"reportid/sg.a.3", ""}}).ok());
  f.clock.Advance(kDay / 2);
  CHECK(retention.Collect("alice").value().report_ids_dropped == 0);
  f.clock.Advance(kDay / 2 + std::chrono::milliseconds(1));
  CHECK(retention.Collect("alice").value().report_ids_dropped == 2);
  CHECK(f.store->GetState("reportid/sg.a.1").status().code() == Status::Code::kNotFound);
  CHECK(f.store->GetState("reportid/sg.a.3").ok());  // seen half a day later: kept half a day more
  f.clock.Advance(kDay);
  CHECK(retention.Collect("alice").value().report_ids_dropped == 1);
}
