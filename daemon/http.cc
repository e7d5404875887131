// Pure HTTP helpers: JSON errors, the long-poll notifier, Range,
// If-None-Match, target parsing.
#include "daemon/http.h"

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

std::string_view HttpRequest::Header(std::string_view lowercase_name) const {
  auto it = headers.find(std::string(lowercase_name));
  return it == headers.end() ? std::string_view() : std::string_view(it->second);
}

HttpResponse JsonError(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  nlohmann::json j = {{"error", {{"code", code}, {"message", message}}}};
  r.body = DumpJson(j);
  r.Set("Content-Type", "application/json");
  return r;
}

static std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<HttpResponse> RefuseHead(const HttpRequest& head, unsigned http_version, bool parser_chunked) {
  auto host = head.headers.find("host");
  if (http_version >= 11 && (host == head.headers.end() || host->second.find(',') != std::string::npos)) {
    return JsonError(400, "bad_request", "an HTTP/1.1 request needs exactly one Host header");
  }
  auto bad = [](std::string message) { return JsonError(400, "bad_framing", message); };
  auto te = head.headers.find("transfer-encoding");
  auto cl = head.headers.find("content-length");
  if (cl != head.headers.end()) {
    std::string_view v = Trim(cl->second);
    if (v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos) {
      return bad("Content-Length must be one decimal number");
    }
  }
  if (te == head.headers.end()) return std::nullopt;
  if (cl != head.headers.end()) return bad("Transfer-Encoding and Content-Length together");
  if (http_version < 11) return bad("Transfer-Encoding in an HTTP/1.0 request");
  // A list of codings; empty list elements are ignored (RFC 9110 §5.6.1).
  std::vector<std::string> codings;
  std::string_view rest = te->second;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = Trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) continue;
    std::string lower(item);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    codings.push_back(std::move(lower));
  }
  if (codings.empty() || codings.back() != "chunked") return bad("Transfer-Encoding must end in chunked");
  for (size_t i = 0; i + 1 < codings.size(); ++i) {
    if (codings[i] == "chunked") return bad("chunked may be applied only once");
    return JsonError(501, "not_implemented", "transfer coding '" + codings[i] + "' is not supported");
  }
  if (!parser_chunked) return bad("Transfer-Encoding not understood");
  return std::nullopt;
}

uint64_t ChangeNotifier::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

uint64_t ChangeNotifier::Subscribe(uint64_t seen_generation, Callback callback) {
  std::unique_lock lock(mu_);
  uint64_t id = next_id_++;
  if (seen_generation != generation_) {
    lock.unlock();
    callback();
    return id;
  }
  subscribers_.emplace(id, std::move(callback));
  return id;
}

void ChangeNotifier::Unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  subscribers_.erase(id);
}

size_t ChangeNotifier::waiting() const {
  std::lock_guard lock(mu_);
  return subscribers_.size();
}

void ChangeNotifier::NotifyAll() {
  std::map<uint64_t, Callback> fire;
  {
    std::lock_guard lock(mu_);
    ++generation_;
    fire.swap(subscribers_);
  }
  for (auto& [id, callback] : fire) callback();
}


static bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

RangeRequest InterpretRange(std::string_view header, uint64_t size) {
  RangeRequest whole;
  header = Trim(header);
  if (header.substr(0, 6) != "bytes=") return whole;
  std::string_view spec = Trim(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return whole;
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return whole;
  std::string_view a = Trim(spec.substr(0, dash)), b = Trim(spec.substr(dash + 1));
  uint64_t first = 0, last = 0;
  RangeRequest r;
  if (a.empty()) {  // suffix: the last N bytes
    uint64_t n = 0;
    if (!ParseU64(b, &n)) return whole;
    if (n == 0 || size == 0) return {RangeRequest::Kind::kUnsatisfiable, 0, 0};
    n = std::min(n, size);
    return {RangeRequest::Kind::kPartial, size - n, n};
  }
  if (!ParseU64(a, &first)) return whole;
  if (b.empty()) {
    last = size == 0 ? 0 : size - 1;
  } else if (!ParseU64(b, &last) || last < first) {
    return whole;
  }
  if (first >= size) return {RangeRequest::Kind::kUnsatisfiable, 0, 0};
  last = std::min(last, size - 1);
  r.kind = RangeRequest::Kind::kPartial;
  r.first = first;
  r.length = last - first + 1;
  return r;
}

bool IfNoneMatchHits(std::string_view header, std::string_view etag) {
  auto opaque = [](std::string_view t) {
    t = Trim(t);
    if (t.substr(0, 2) == "W/") t.remove_prefix(2);
    return t;
  };
  std::string_view want = opaque(etag);
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = opaque(header.substr(0, comma));
    if (item == "*" || item == want) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

static Result<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    // Exactly two hex digits (from_chars alone would take "%-f").
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      return Status::InvalidArgument("malformed percent escape");
    }
    unsigned v = 0;
    std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

Result<ParsedTarget> ParseTarget(std::string_view target) {
  ParsedTarget t;
  size_t q = target.find('?');
  if (q != std::string_view::npos) {
    t.query = std::string(target.substr(q + 1));
    target = target.substr(0, q);
    // Refused here, so that QueryParam never has to tell a malformed value from an absent one.
    if (Result<std::string> decoded = PercentDecode(t.query); !decoded.ok()) {
      return Status::InvalidArgument("query: " + decoded.status().message());
    }
  }
  if (target.empty() || target[0] != '/') return Status::InvalidArgument("request target must start with '/'");
  target.remove_prefix(1);
  while (true) {
    size_t slash = target.find('/');
    Result<std::string> seg = PercentDecode(target.substr(0, slash));
    if (!seg.ok()) return seg.status();
    t.segments.push_back(std::move(*seg));
    if (slash == std::string_view::npos) break;
    target.remove_prefix(slash + 1);
  }
  if (t.segments.size() == 1 && t.segments[0].empty()) t.segments.clear();
  return t;
}

std::optional<std::string> QueryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key == name) {
      std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      Result<std::string> v = PercentDecode(raw);
      if (!v.ok()) return std::nullopt;  // not from a ParsedTarget's query, which has none malformed
      return *v;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace meridian
