// The daemon's HTTP surface as one table: for each route its method, path
// pattern, the role a caller needs, the largest body it takes and its handler.
// Matching, the role and the body limit are decided from the request head
// alone, so nothing is read or computed for a request that will be refused.
// docs/api.md carries the table as RoutesMarkdown renders it (a test compares).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "daemon/http.h"

namespace meridian {

// Who may call a route.
enum class CallerRole {
  kAnyone,     // no credential
  kPublisher,  // release managers: chunks and versions
  kOperator,   // rollouts and the region view
  kTerminal,   // targets and reports
  kMirror,     // regions downstream: sync and forwarded reports
  kReader,     // model bytes and manifests: any credential above, or none for a public model (Route::is_public)
  kNobody,     // served by another role of daemon: the handler gives the refusal from the head alone
};
std::string_view RoleName(CallerRole role);

struct Route {
  std::string method;   // "GET" (which answers HEAD too), "POST", "PUT" or "DELETE"
  std::string pattern;  // "/v1/chunks/{digest}": literal segments and {name} placeholders
  CallerRole role = CallerRole::kAnyone;
  uint64_t body_bytes_max = 0;
  // Called with the whole request; request.params holds the placeholders'
  // decoded values in pattern order.
  std::function<HttpResponse(const HttpRequest&)> handler;
  std::string summary;  // one line for docs/api.md
  // What the body bytes of a GET count as in meridian_served_bytes_total:
  // "delta", "artifact" or "chunk"; empty for every other route.
  std::string served_kind;
  // kReader routes: whether the request reads something public, so that it
  // needs no credential. Decided from the head (the path) before anything is read.
  std::function<bool(const HttpRequest&)> is_public;
  // A write served on the connection's own thread all the same: brief and
  // frequent, so that the hop to the blocking pool would cost more than it
  // saves (see Api::Admit).
  bool brief_write = false;

  // "GET /v1/chunks/{digest}": the label in metrics and docs.
  std::string Label() const { return method + " " + pattern; }
};

class RouteTable {
 public:
  // Adds a route; patterns are matched in the order added. The reference
  // holds until the next Add.
  Route& Add(Route route);

  // The route for `method` (HEAD as GET) and the decoded path `segments`,
  // with the placeholders' values in *params. NotFound when no route has
  // that path; FailedPrecondition when one has it for another method (405).
  Result<const Route*> Find(std::string_view method, const std::vector<std::string>& segments,
                            std::vector<std::string>* params) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  static bool Matches(const Route& route, const std::vector<std::string>& segments, std::vector<std::string>* params);
  std::vector<Route> routes_;
};

// The tables of an origin and a region as one Markdown table (method and path,
// role, body limit, served by, summary): the block docs/api.md carries.
std::string RoutesMarkdown(const RouteTable& origin, const RouteTable& region);

}  // namespace meridian
