// The control API's calls shared by the CLI's commands (see control.h).
#include "cli/control.h"

#include <fmt/format.h>

#include "base/json.h"
#include "cli/output.h"
#include "client/api.h"
#include "client/http_client.h"

namespace meridian::cli {

Result<nlohmann::json> Call(const GlobalOptions& g, const std::string& method, const std::string& path,
                            const std::string& body, long want_status, const std::string& what, int64_t timeout_ms) {
  if (g.token.empty()) {
    return Status::PermissionDenied("this command needs a token: the operator's (--token-file DATA/operator.token), "
                                    "or a publisher's to delete versions");
  }
  HttpClient client(g.server, g.ClientOptions(timeout_ms));
  Result<HttpReply> r = method == "GET"      ? client.Get(path, kJsonReplyBytesMax)
                        : method == "DELETE" ? client.Delete(path, body, kJsonReplyBytesMax)
                                             : client.Post(path, body, kJsonReplyBytesMax);
  if (!r.ok()) return Status::Unavailable(fmt::format("{}: {}", what, r.status().message()));
  if (r->status != want_status) return ReplyError(*r, what);
  Result<nlohmann::json> j = ParseJson(r->body, r->body.size());  // the client bounded the reply
  if (!j.ok()) return Status::Corruption(what + ": the daemon's answer is not JSON: " + j.status().message());
  return j;
}

Status Show(const GlobalOptions& g, const nlohmann::json& j, const std::string& what,
            const std::function<void(const nlohmann::json&)>& print_text) {
  if (g.json) {
    PrintJson(j);
    return Status::Ok();
  }
  try {
    print_text(j);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(fmt::format("{}: the daemon's answer is not what this CLI expects ({})", what, e.what()));
  }
  return Status::Ok();
}

int CallAndShow(const GlobalOptions& g, const std::string& method, const std::string& path, const std::string& body,
                long want_status, const std::string& what, const std::function<void(const nlohmann::json&)>& print_text,
                int64_t timeout_ms) {
  Result<nlohmann::json> j = Call(g, method, path, body, want_status, what, timeout_ms);
  if (!j.ok()) return Fail(j.status());
  if (Status shown = Show(g, *j, what, print_text); !shown.ok()) return Fail(shown);
  return 0;
}

}  // namespace meridian::cli
