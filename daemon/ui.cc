// Serving the web console's compiled-in files (see daemon/ui.h).
#include "daemon/ui.h"

namespace meridian {

namespace {

// Only the console's own files run or style the page; nothing may frame it
// (clickjacking of its buttons), and no form goes anywhere.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

void SetSecurityHeaders(HttpResponse& r) {
  r.Set("Content-Security-Policy", std::string(kContentSecurityPolicy));
  r.Set("X-Content-Type-Options", "nosniff");
  r.Set("Referrer-Policy", "no-referrer");
}

}  // namespace

HttpResponse ServeUiFile(const HttpRequest& request, std::string_view name) {
  std::optional<UiFile> file = FindUiFile(name);
  HttpResponse r = file ? HttpResponse{} : JsonError(404, "not_found", "no such console file");
  SetSecurityHeaders(r);
  if (!file) return r;
  r.Set("ETag", std::string(file->etag));
  r.Set("Cache-Control", "no-cache");
  if (std::string_view inm = request.Header("if-none-match"); !inm.empty() && IfNoneMatchHits(inm, file->etag)) {
    r.status = 304;
    return r;
  }
  r.Set("Content-Type", std::string(file->content_type));
  r.body = std::string(file->bytes);
  return r;
}

HttpResponse RedirectToUi() {
  HttpResponse r;
  r.status = 302;
  r.Set("Location", std::string(kUiPath));
  return r;
}

}  // namespace meridian
