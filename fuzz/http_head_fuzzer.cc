// libFuzzer target for what the daemon reads from a request head before any
// handler runs: the request target (percent-decoding, query), the framing and
// Host checks, Range and If-None-Match. The input is "TARGET\nname: value\n…".
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/http.h"

using namespace meridian;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  HttpRequest head;
  head.method = "POST";
  size_t line_end = text.find('\n');
  head.target = std::string(text.substr(0, line_end));
  while (line_end != std::string_view::npos) {
    text.remove_prefix(line_end + 1);
    line_end = text.find('\n');
    std::string_view line = text.substr(0, line_end);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto [it, added] = head.headers.emplace(std::string(line.substr(0, colon)), std::string(line.substr(colon + 1)));
    if (!added) it->second += ", " + std::string(line.substr(colon + 1));
  }
  if (Result<ParsedTarget> t = ParseTarget(head.target); t.ok()) {
    // A parsed query has no malformed escape: every parameter in it decodes.
    std::string_view query = t->query;
    std::string_view first = query.substr(0, std::min(query.find('&'), query.find('=')));
    if (!query.empty() && !QueryParam(t->query, first).has_value()) __builtin_trap();
  }
  (void)RefuseHead(head, 11, true);
  (void)RefuseHead(head, 10, false);
  RangeRequest r = InterpretRange(head.Header("range"), 1000);
  if (r.kind == RangeRequest::Kind::kPartial && (r.length == 0 || r.first + r.length > 1000)) __builtin_trap();
  (void)IfNoneMatchHits(head.Header("if-none-match"), "\"sha256:00\"");
  return 0;
}
