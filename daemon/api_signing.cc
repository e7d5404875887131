// The routes of the trust chain: releases signed by several release managers
// (co-signing: POST /v1/models/{model}/versions below the threshold, GET
// /v1/pending) and the chain of roots (GET and POST /v1/roots).
#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "daemon/api.h"
#include "daemon/api_shared.h"
#include "manifest/manifest.h"
#include "trust/trust.h"

namespace meridian {
namespace {

nlohmann::json PendingJson(const CoSignedManifest& c) {
  const Manifest& m = c.manifest;
  return {{"model", m.name},          {"version", m.version},           {"digest", m.digest.ToString()},
          {"size", m.size},           {"signers", c.signers},           {"signatures", c.signers.size()},
          {"threshold", c.threshold}};
}

}  // namespace

HttpResponse Api::CoSignVersion(const HttpRequest& req, const std::string& model, const Root& root) {
  Result<CoSignedManifest> cosigned = VerifyCoSignedManifest(root, req.body);
  const Status& trust = cosigned.status();
  if (trust.code() == Status::Code::kInvalidArgument) return JsonError(400, "invalid_argument", trust.message());
  if (trust.code() == Status::Code::kPermissionDenied) {
    return JsonError(403, "not_signed", "manifest is not signed by any release key of the root: " + trust.message());
  }
  if (!trust.ok()) return JsonError(422, "invalid_manifest", trust.message());
  const Manifest& m = cosigned->manifest;
  if (m.name != model) {
    return JsonError(400, "invalid_argument", fmt::format("the manifest is of {}, not {}", m.name, model));
  }
  // A visible version's signatures are final: the store keeps its first envelope.
  Result<std::string> visible = store_.GetEnvelope(m.name, m.version);
  if (visible.ok()) {
    Result<Envelope> stored = ParseEnvelope(*visible);
    if (stored.ok() && stored->payload == cosigned->envelope.payload) {
      return JsonOk(200, {{"model", m.name}, {"version", m.version}, {"digest", m.digest.ToString()},
                          {"size", m.size}, {"already_published", true}});
    }
    return JsonError(409, "version_exists", fmt::format("{} {} is published already with another manifest", m.name, m.version));
  }
  if (visible.status().code() != Status::Code::kNotFound) return ErrorFor(visible.status());
  Result<CoSignedManifest> kept = pending_.Add(root, *cosigned, clock_.NowUnixMillis());
  if (kept.status().code() == Status::Code::kInvalidArgument) {
    return JsonError(409, "pending_differs", kept.status().message());
  }
  if (kept.status().code() == Status::Code::kResourceExhausted) {
    return JsonError(429, "too_many_pending", kept.status().message());
  }
  if (!kept.ok()) return ErrorFor(kept.status());
  if (!kept->complete()) {
    nlohmann::json answer = PendingJson(*kept);
    answer["pending"] = true;
    return JsonOk(202, answer);
  }
  // The signatures gathered reach the threshold: commit as any publish.
  Result<VerifiedManifest> verified = VerifySignedManifest(root, EnvelopeToJson(kept->envelope));
  if (!verified.ok()) return ErrorFor(verified.status());
  return CommitVerified(req, *verified);
}

HttpResponse Api::ListPending() {
  nlohmann::json list = nlohmann::json::array();
  for (const PendingRelease& p : pending_.List()) {
    nlohmann::json j = PendingJson(p.release);
    j["received"] = FormatRfc3339(p.received_ms);
    list.push_back(std::move(j));
  }
  return JsonOk(200, {{"pending", list}});
}

HttpResponse Api::GetPending(const std::string& model, const std::string& version) {
  if (!IsValidModelName(model)) return JsonError(400, "invalid_argument", "invalid model name");
  if (!IsValidVersion(version)) return JsonError(400, "invalid_argument", "invalid version (SemVer expected)");
  Result<std::string> env = pending_.EnvelopeJson(model, version);
  if (!env.ok()) return ErrorFor(env.status());
  HttpResponse r;
  r.body = std::move(*env);
  r.Set("Content-Type", "application/json");
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::ListRoots() {
  std::shared_ptr<const Root> root = roots_.Current();
  HttpResponse r = JsonOk(200, {{"latest", root->version}, {"expires", root->expires}});
  r.Set("Cache-Control", "no-store");
  return r;
}

HttpResponse Api::GetRoot(const std::string& version_text) {
  int64_t version = 0;
  if (version_text == "latest") {
    version = roots_.latest_version();
  } else {
    auto [end, ec] = std::from_chars(version_text.data(), version_text.data() + version_text.size(), version);
    if (ec != std::errc() || end != version_text.data() + version_text.size() || version < 1) {
      return JsonError(400, "invalid_argument", "a root version is a whole number from 1, or latest");
    }
  }
  Result<std::string> env = roots_.EnvelopeJson(version);
  if (!env.ok()) return ErrorFor(env.status());
  HttpResponse r;
  r.body = std::move(*env);
  r.Set("Content-Type", "application/json");
  // Root N never changes once signed; "latest" moves.
  r.Set("Cache-Control", version_text == "latest" ? "no-store" : "public, max-age=31536000, immutable");
  return r;
}

HttpResponse Api::PushRoot(const HttpRequest& req) {
  // An operator installs only a root that is valid now.
  Status st = roots_.Add(req.body, clock_.NowUnixMillis());
  if (st.code() == Status::Code::kInvalidArgument) return JsonError(400, "invalid_argument", st.message());
  if (st.code() == Status::Code::kPermissionDenied) return JsonError(403, "not_signed", st.message());
  if (st.code() == Status::Code::kFailedPrecondition) return JsonError(409, "root_refused", st.message());
  if (!st.ok()) return ErrorFor(st);
  rollouts_.notifier().NotifyAll();  // regions long-poll GET /v1/sync, which names the latest root
  return JsonOk(201, {{"version", roots_.latest_version()}});
}

}  // namespace meridian
