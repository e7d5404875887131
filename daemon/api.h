// The /v1 HTTP API of meridiand over the store: routing, validation,
// authorisation, caching headers and Range, as a plain HttpHandler.
#pragma once

#include <memory>
#include <string>

#include "daemon/http.h"
#include "daemon/metrics.h"
#include "signing/signing.h"
#include "store/store.h"

namespace meridian {

struct ApiLimits {
  uint64_t json_body_bytes_max = 8ull << 20;         // JSON requests (missing-chunk queries, …)
  uint64_t missing_query_digests_max = 100'000;      // digests in one POST /v1/chunks/missing
};

class Api final : public HttpHandler {
 public:
  // `root` decides which keys may sign manifests; `publisher_token` guards the
  // publishing routes. All references must outlive the Api.
  Api(Store& store, const Root& root, std::string publisher_token, Metrics& metrics, ApiLimits limits = {});

  uint64_t BodyBytesMax(const HttpRequest& head) const override;
  HttpResponse Handle(const HttpRequest& request) override;
  void Completed(const HttpRequest& request, int status, uint64_t body_bytes_sent) override;

  // Flips /readyz to 503 (at shutdown).
  void SetReady(bool ready) { ready_ = ready; }

 private:
  struct Route;
  HttpResponse Dispatch(const HttpRequest& req, const Route& route);
  HttpResponse GetChunk(const HttpRequest& req, const std::string& digest_text);
  HttpResponse GetArtifact(const HttpRequest& req, const std::string& digest_text);
  HttpResponse PutChunk(const HttpRequest& req, const std::string& digest_text);
  HttpResponse MissingChunks(const HttpRequest& req);
  HttpResponse CommitVersion(const HttpRequest& req, const std::string& model);
  HttpResponse ListModels();
  HttpResponse ListVersions(const std::string& model);
  HttpResponse GetVersion(const std::string& model, const std::string& version);
  HttpResponse RenderMetrics();
  // Empty response when authorised, else the 401/403 to send.
  std::optional<HttpResponse> CheckPublisher(const HttpRequest& req) const;

  Store& store_;
  const Root& root_;
  std::string publisher_token_;
  Metrics& metrics_;
  ApiLimits limits_;
  std::atomic<bool> ready_{true};
};

}  // namespace meridian
