// The in-process origin of tests/in_process_daemon.h.
#include "tests/in_process_daemon.h"

#include <catch2/catch.hpp>

#include <rocksdb/env.h>

#include "base/encoding.h"
#include "client/api.h"
#include "manifest/chunk_pages.h"
#include "manifest/manifest.h"
#include "trust/terminal_credential.h"

namespace meridian::testing {

namespace {

template <typename T>
std::unique_ptr<T> OrDie(Result<std::unique_ptr<T>> r) {
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(*r);
}

std::string SignedRoot(const SecretKey& key) {
  Root root;
  root.expires = "2100-01-01T00:00:00.000Z";
  root.keys[key.KeyId()] = key.public_key();
  for (const char* role : {"root", "release", "online"}) root.roles[role] = Role{{key.KeyId()}, 1};
  Envelope env{std::string(kRootPayloadType), ToBytes(RootToJson(root)), {}};
  SignEnvelope(env, key);
  return EnvelopeToJson(env);
}

}  // namespace

SecretKey InProcessDaemon::Key() { return SecretKey::FromSeed(Bytes(kSeedBytes, 11)).value(); }

InProcessDaemon::InProcessDaemon(RolloutsOptions rollouts_options, bool makes_deltas, std::string jurisdiction)
    : catalog(std::move(jurisdiction)) {
  memory_env.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  store = OrDie(Store::Open(dir / "store", StoreOptions{.sync_writes = false, .clock = &clock, .env = memory_env.get()}));
  roots = OrDie(RootChain::Open(*store, SignedRoot(Key())));
  pending = OrDie(PendingReleases::Open(*store, *roots->Current()));
  rollouts = OrDie(Rollouts::Open(*store, Key(), clock, std::move(rollouts_options)));
  deltas = std::make_unique<DeltaService>(*store, makes_deltas ? std::optional<SecretKey>(Key()) : std::nullopt);
  enrolment = OrDie(Enrolment::OpenOrigin(*store, clock, Key()));
  credentials = OrDie(Credentials::Open(*store, clock));
  audit = OrDie(AuditLog::Open(*store, clock));
  retention = std::make_unique<Retention>(*store, catalog, *rollouts, *deltas, *audit, clock,
                                           RetentionOptions{.interval_ms = 0});
  api = std::make_unique<Api>(*store, catalog, *roots, *pending, tokens, *credentials, *audit, *enrolment,
                               metrics, *rollouts, *deltas, *retention, clock);
}

InProcessDaemon::~InProcessDaemon() = default;

HttpResponse CallApi(Api& api, const std::string& method, const std::string& target, const std::string& body,
                     const std::string& authorization) {
  HttpRequest req;
  req.method = method;
  req.target = target;
  if (!authorization.empty()) req.headers["authorization"] = authorization;
  if (!body.empty()) req.headers["content-type"] = "application/json";
  HttpAdmission admission = api.Admit(req);
  HttpResponse r;
  if (admission.refusal) {
    r = std::move(*admission.refusal);
  } else if (body.size() > admission.body_bytes_max) {
    r.status = 413;
  } else {
    req.body = body;
    r = api.Handle(req);
  }
  api.Completed(req, r.status, r.BodyBytes());
  return r;
}

nlohmann::json InProcessDaemon::Operator(const std::string& method, const std::string& target, const nlohmann::json& body) {
  HttpResponse r = Call(method, target, body.is_null() ? "" : body.dump(), "Bearer " + tokens.operator_token);
  INFO(method << " " << target << ": " << r.status << " " << r.body);
  REQUIRE(r.status / 100 == 2);
  return nlohmann::json::parse(r.body);
}

void InProcessDaemon::Publish(const std::string& model, const std::string& version, const std::string& bytes) {
  Publish(model, version, std::vector<std::string>{bytes});
}

void InProcessDaemon::Publish(const std::string& model, const std::string& version,
                              const std::vector<std::string>& chunks, size_t chunks_per_page,
                              const std::vector<std::string>& regions) {
  const std::string publisher = "Bearer " + tokens.publisher;
  auto put_chunk = [&](std::string_view bytes) {
    HttpRequest put;
    put.method = "PUT";
    put.target = ChunkPath(Digest::Of(bytes));
    put.headers["authorization"] = publisher;
    HttpAdmission admitted = api->Admit(put);
    REQUIRE_FALSE(admitted.refusal);
    put.body = bytes;
    REQUIRE(api->Handle(put).status / 100 == 2);
  };
  Manifest m;
  m.name = model;
  m.version = version;
  m.created = FormatRfc3339(clock.NowUnixMillis());
  m.regions = regions;
  Sha256 whole;
  for (const std::string& bytes : chunks) {
    put_chunk(bytes);
    whole.Update(AsBytes(bytes));
    m.chunks.push_back({Digest::Of(bytes), bytes.size()});
    m.size += bytes.size();
  }
  m.digest = whole.Finish();
  if (chunks_per_page > 0) {
    for (const ChunkPage& page : MakeChunkPages(m.chunks, chunks_per_page)) {
      put_chunk(AsString(page.bytes));
      m.chunk_pages.push_back(page.ref);
    }
  }
  Envelope env{std::string(kManifestPayloadType), ToBytes(ManifestToJson(m)), {}};
  SignEnvelope(env, Key());
  HttpResponse r = Call("POST", VersionsPath(model), EnvelopeToJson(env), publisher);
  INFO(r.body);
  REQUIRE(r.status == 201);
}

std::string InProcessDaemon::TerminalAuthorization(const std::string& id) {
  std::string& credential = terminal_credentials_[id];
  if (credential.empty()) {
    const SecretKey& key = terminal_keys_.try_emplace(id, SecretKey::Generate()).first->second;
    Operator("POST", TerminalsPath(),
             {{"terminals", {{{"id", id}, {"public_key", Base64Encode(key.public_key().bytes)}}}}});
    HttpResponse r = Call("POST", TerminalCredentialPath(id), "", SignCredentialRequest(key, id, clock.NowUnixMillis()));
    INFO(r.body);
    REQUIRE(r.status == 200);
    credential = nlohmann::json::parse(r.body).at("credential").get<std::string>();
  }
  return "Bearer " + credential;
}

}  // namespace meridian::testing
