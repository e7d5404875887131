// Route matching and the Markdown rendering of route tables.
#include "daemon/routes.h"

#include <map>

#include <fmt/format.h>

namespace meridian {

std::string_view RoleName(CallerRole role) {
  switch (role) {
    case CallerRole::kAnyone: return "anyone";
    case CallerRole::kPublisher: return "publisher";
    case CallerRole::kOperator: return "operator";
    case CallerRole::kTerminal: return "terminal";
    case CallerRole::kMirror: return "mirror";
    case CallerRole::kReader: return "reader";
    case CallerRole::kNobody: return "nobody";
  }
  return "?";
}

namespace {

// As ParseTarget splits a path: "/" has no segment, "/a/" has "a" and "".
std::vector<std::string_view> PatternSegments(std::string_view pattern) {
  std::vector<std::string_view> out;
  if (pattern == "/") return out;
  size_t start = 1;  // past the leading '/'
  while (start <= pattern.size()) {
    size_t slash = pattern.find('/', start);
    if (slash == std::string_view::npos) slash = pattern.size();
    out.push_back(pattern.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool IsPlaceholder(std::string_view segment) { return segment.starts_with('{') && segment.ends_with('}'); }

std::string BodyLimitText(uint64_t bytes) {
  if (bytes == 0) return "none";
  if (bytes % (1u << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes < (1u << 20) && bytes % (1u << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1u << 20));
}

}  // namespace

Route& RouteTable::Add(Route route) { return routes_.emplace_back(std::move(route)); }

bool RouteTable::Matches(const Route& route, const std::vector<std::string>& segments,
                         std::vector<std::string>* params) {
  std::vector<std::string_view> want = PatternSegments(route.pattern);
  if (want.size() != segments.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!IsPlaceholder(want[i]) && want[i] != segments[i]) return false;
  }
  if (params != nullptr) {
    params->clear();
    for (size_t i = 0; i < want.size(); ++i) {
      if (IsPlaceholder(want[i])) params->push_back(segments[i]);
    }
  }
  return true;
}

Result<const Route*> RouteTable::Find(std::string_view method, const std::vector<std::string>& segments,
                                      std::vector<std::string>* params) const {
  std::string_view verb = method == "HEAD" ? "GET" : method;
  bool path_known = false;
  for (const Route& route : routes_) {
    if (!Matches(route, segments, nullptr)) continue;
    if (route.method != verb) {
      path_known = true;
      continue;
    }
    Matches(route, segments, params);
    return &route;
  }
  if (path_known) return Status::FailedPrecondition(std::string(method) + " is not allowed here");
  return Status::NotFound("no such route");
}

std::string RoutesMarkdown(const RouteTable& origin, const RouteTable& region) {
  // One row per label, in the origin's order, then the region's own routes.
  struct Row {
    const Route* route;
    bool origin = false, region = false;
  };
  std::vector<std::string> order;
  std::map<std::string, Row> rows;
  auto take = [&](const RouteTable& table, bool is_origin) {
    for (const Route& r : table.routes()) {
      auto [it, added] = rows.emplace(r.Label(), Row{&r});
      if (added) order.push_back(r.Label());
      if (r.role == CallerRole::kNobody) continue;  // listed, but refused by this role of daemon
      (is_origin ? it->second.origin : it->second.region) = true;
      it->second.route = &r;
    }
  };
  take(origin, true);
  take(region, false);
  std::string out = "| route | role | body limit | served by | what |\n| --- | --- | --- | --- | --- |\n";
  for (const std::string& label : order) {
    const Row& row = rows[label];
    const char* served = row.origin && row.region ? "origin, region" : row.origin ? "origin" : "region";
    out += fmt::format("| `{}` | {} | {} | {} | {} |\n", label, RoleName(row.route->role),
                       BodyLimitText(row.route->body_bytes_max), served, row.route->summary);
  }
  return out;
}

}  // namespace meridian
