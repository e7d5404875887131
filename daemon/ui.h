// The web console at /ui/: its files (daemon/ui/), compiled into meridiand by
// daemon/ui/embed.py so that nothing is read from disk or fetched from the
// internet, and the HTTP answers that serve them. The page holds no data; it
// reads the operator API with the token its user gives it.
#pragma once

#include <optional>
#include <string_view>

#include "daemon/http.h"

namespace meridian {

// Where the console lives; GET / and GET /ui redirect here.
inline constexpr std::string_view kUiPath = "/ui/";

struct UiFile {
  std::string_view bytes;
  std::string_view content_type;
  std::string_view etag;  // strong: "\"sha256:<hex of bytes>\"", computed at build time
};

// The console file `name` ("index.html", "app.js", "style.css", "favicon.svg"), or nullopt.
// Defined in the source embed.py generates.
std::optional<UiFile> FindUiFile(std::string_view name);

// The console file `name` as an answer to `request`: 200, or 304 when its
// If-None-Match holds the file's ETag; revalidated on every use (no-cache)
// so that a new daemon's console is picked up at once. Every answer carries
// a Content-Security-Policy that allows the console's own files only (no
// inline script or style, no framing, no form submission). 404 JSON for a
// name that is not a console file.
HttpResponse ServeUiFile(const HttpRequest& request, std::string_view name);

// 302 to kUiPath.
HttpResponse RedirectToUi();

}  // namespace meridian
