// libcurl easy-handle wrapper: bounded requests, streaming downloads.
#include "client/http_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "base/encoding.h"

namespace meridian {

namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool IsSuccess(long status) { return status >= 200 && status < 300; }

// Past this much of a body of unknown length, room for the whole limit is
// reserved at once (address space; pages are touched only as bytes arrive),
// so the body never exists twice while its buffer grows.
constexpr uint64_t kGrowBodyBytesMax = 1u << 20;
constexpr uint64_t kReserveBytesMax = 1ull << 30;  // larger limits grow as they go

struct Transfer {
  HttpReply* reply;
  const std::string* url;                                  // for messages
  const std::function<Status(ByteSpan)>* sink = nullptr;  // streaming GET
  uint64_t body_bytes_max = 0;                             // of a 2xx body
  uint64_t received = 0;
  Status error;  // why the transfer was aborted
  const std::function<Status(const HttpReply&, ByteSpan)>* head_sink = nullptr;  // GetStreamingWithHead
  std::optional<uint64_t> content_length;  // of the current response, when it said
  bool error_body_cut = false;  // stopped after kErrorBodyBytesMax of a non-2xx body: not a failure

  bool InMemory() const { return sink == nullptr && head_sink == nullptr; }
  Status TooLarge(std::string_view how) const {
    return Status::ResourceExhausted(
        fmt::format("the reply from {} {}: more than the {} bytes this request accepts", *url, how, body_bytes_max));
  }
};

// A Content-Length value; UINT64_MAX when it is more digits than fit, nullopt when not a number.
std::optional<uint64_t> ParseContentLength(std::string_view value) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || end != value.data() + value.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) return UINT64_MAX;
  if (ec != std::errc()) return std::nullopt;
  return n;
}

// libcurl hands over one header line at a time (at most 100 KiB, and at most
// 300 KiB of headers per reply: Debian's 7.88.1 carries the fix of
// CVE-2023-38039), so the map below stays small.
size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // A new response (also after a 100-continue): its status is needed before the body arrives.
    t->reply->headers.clear();
    t->content_length.reset();
    size_t sp = line.find(' ');
    if (sp != std::string_view::npos) t->reply->status = std::strtol(std::string(line.substr(sp + 1, 3)).c_str(), nullptr, 10);
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
    if (name == "content-length") {
      // Refused before a byte of the body is read when it says too much.
      t->content_length = ParseContentLength(value);
      if (t->content_length && IsSuccess(t->reply->status)) {
        if (*t->content_length > t->body_bytes_max) {
          t->error = t->TooLarge(fmt::format("says it is {} bytes long", *t->content_length));
          return 0;  // aborts the transfer
        }
        if (t->InMemory()) t->reply->body.reserve(static_cast<size_t>(*t->content_length));
      }
    }
    t->reply->headers[name] = std::string(value);
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  std::string& body = t->reply->body;
  if (!IsSuccess(t->reply->status)) {
    // An error reply: its start for the message, the rest never read.
    size_t room = static_cast<size_t>(kErrorBodyBytesMax - std::min<uint64_t>(kErrorBodyBytesMax, body.size()));
    body.append(data, std::min(room, bytes));
    if (room >= bytes) return bytes;
    t->error_body_cut = true;
    return 0;  // stops the transfer; the reply is returned as it is
  }
  t->received += bytes;
  if (t->received > t->body_bytes_max) {
    t->error = t->TooLarge("is longer");
    return 0;  // aborts the transfer
  }
  const std::function<Status(ByteSpan)>* sink = t->sink;
  if (t->head_sink != nullptr || sink != nullptr) {
    ByteSpan piece(reinterpret_cast<const uint8_t*>(data), bytes);
    Status st = t->head_sink != nullptr ? (*t->head_sink)(*t->reply, piece) : (*sink)(piece);
    if (!st.ok()) {
      t->error = st;
      return 0;
    }
    return bytes;
  }
  if (!t->content_length && t->received > kGrowBodyBytesMax && body.capacity() < t->body_bytes_max &&
      t->body_bytes_max <= kReserveBytesMax) {
    body.reserve(static_cast<size_t>(t->body_bytes_max));  // within the limit: checked above for every byte
  }
  body.append(data, bytes);
  return bytes;
}

struct UrlParts {
  std::string scheme;  // lowercase
  std::string host;    // lowercase, IPv6 without brackets
};

Result<UrlParts> ParseUrl(const std::string& url) {
  CURLU* u = curl_url();
  char* scheme = nullptr;
  char* host = nullptr;
  bool ok = u != nullptr && curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
  UrlParts p;
  if (ok) {
    p.scheme = scheme;
    p.host = host;
  }
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  if (!ok || (p.scheme != "http" && p.scheme != "https")) {
    return Status::InvalidArgument(fmt::format("'{}' is not an http:// or https:// URL", url));
  }
  std::transform(p.host.begin(), p.host.end(), p.host.begin(), [](unsigned char c) { return std::tolower(c); });
  if (p.host.size() >= 2 && p.host.front() == '[') p.host = p.host.substr(1, p.host.size() - 2);
  return p;
}

// 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and localhost: traffic that
// never leaves the machine.
bool IsLoopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) != 1) return false;
  return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
}

// The CA file a client trusts: its own setting, else what curl(1) and
// OpenSSL users set in the environment; empty means libcurl's default (the
// system's store).
std::string EffectiveCaFile(const TlsClientOptions& tls) {
  if (!tls.ca_file.empty()) return tls.ca_file;
  for (const char* name : {"CURL_CA_BUNDLE", "SSL_CERT_FILE"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return value;
  }
  return "";
}

// A failed TLS connection explained by its cause, or nullopt when `rc` is not
// a TLS failure. `detail` is libcurl's error buffer (OpenSSL's reason).
std::optional<Status> ExplainTlsFailure(CURL* curl, CURLcode rc, const std::string& detail, const std::string& url,
                                        const std::string& host, const std::string& ca_file,
                                        const TlsClientOptions& tls) {
  const std::string ca = ca_file.empty() ? "the system's CA store" : "CA file " + ca_file;
  auto fail = [&](std::string what) { return Status::Unavailable(fmt::format("{} ({})", what, url)); };
  auto mentions = [&](std::string_view text) { return detail.find(text) != std::string::npos; };
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION: {
      // libcurl checks the name itself, after a chain that verified, and
      // says so in its error buffer only.
      if (mentions("target host name")) {
        return fail(fmt::format("the certificate of {} is for another host name: {}", host, detail));
      }
      long verify = X509_V_OK;
      curl_easy_getinfo(curl, CURLINFO_SSL_VERIFYRESULT, &verify);
      switch (verify) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
          return fail(fmt::format("the certificate of {} has expired", host));
        case X509_V_ERR_CERT_NOT_YET_VALID:
          return fail(fmt::format("the certificate of {} is not valid yet (is this machine's clock right?)", host));
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        case X509_V_ERR_CERT_UNTRUSTED:
          return fail(fmt::format("the certificate of {} is not trusted by {}", host, ca));
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
          return fail(fmt::format("the certificate of {} is for another host name: {}", host, detail));
        default:
          return fail(fmt::format("the certificate of {} failed verification: {}", host,
                                  X509_verify_cert_error_string(verify)));
      }
    }
    case CURLE_SSL_CACERT_BADFILE:
      return fail(fmt::format("cannot use {}: {}", ca, detail));
    case CURLE_SSL_CERTPROBLEM:
      return fail(fmt::format("cannot use the client certificate {} with key {}: {}", tls.client_certificate,
                              tls.client_key, detail));
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      // The server's verdict on the client certificate is an alert: during
      // the handshake with TLS 1.2, at the first read after it with TLS 1.3.
      if (mentions("alert certificate required") ||
          (tls.client_certificate.empty() && mentions("alert handshake failure"))) {
        return fail(fmt::format("{} requires a client certificate and none is configured", host));
      }
      if (mentions("alert unknown ca") || mentions("alert bad certificate") || mentions("alert certificate expired") ||
          mentions("alert certificate unknown") || mentions("alert certificate revoked") ||
          mentions("alert unsupported certificate")) {
        return fail(fmt::format("{} refused the client certificate {}: {}", host, tls.client_certificate, detail));
      }
      if (mentions("alert protocol version") || mentions("unsupported protocol")) {
        return fail(fmt::format("{} and this client have no TLS version in common (1.2 or later is required): {}",
                                host, detail));
      }
      if (mentions("wrong version number")) {
        return fail(fmt::format("{} does not speak TLS on this port (an http:// server?)", host));
      }
      if (rc != CURLE_SSL_CONNECT_ERROR) return std::nullopt;
      return fail(fmt::format("TLS handshake with {} failed: {}", host, detail));
    default:
      return std::nullopt;
  }
}

}  // namespace

Status CheckTransport(const std::string& base_url, const HttpClientOptions& options) {
  Result<UrlParts> url = ParseUrl(base_url);
  if (!url.ok()) return url.status();
  const TlsClientOptions& tls = options.tls;
  if (tls.client_certificate.empty() != tls.client_key.empty()) {
    return Status::FailedPrecondition("a client certificate needs its key, and a key its certificate: set both");
  }
  bool credential = !options.bearer_token.empty() || !tls.client_certificate.empty();
  if (url->scheme == "http" && credential && !tls.allow_insecure_http && !IsLoopback(url->host)) {
    return Status::FailedPrecondition(fmt::format(
        "refusing to send a credential over plain HTTP to {}: use an https:// URL, or set allow_insecure_http "
        "(--allow-insecure-http) if the network path is trusted",
        base_url));
  }
  return Status::Ok();
}

// libcurl calls this about once a second even while nothing arrives.
static int OnProgress(void* cancel, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(cancel)->load() ? 1 : 0;
}

struct HttpClient::Impl {
  CURL* curl = nullptr;
  HttpClientOptions options;
  Status transport;     // CheckTransport of the base URL: every request fails with it
  std::string host;     // of the base URL, for messages
  std::string ca_file;  // EffectiveCaFile
  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }

  Result<HttpReply> Perform(const std::string& url, const std::string& method, ByteSpan body,
                            const std::string& content_type, const std::vector<std::string>& headers,
                            const std::function<Status(ByteSpan)>* sink, uint64_t body_bytes_max,
                            const std::function<Status(const HttpReply&, ByteSpan)>* head_sink = nullptr) {
    if (!transport.ok()) return transport;
    curl_easy_reset(curl);
    HttpReply reply;
    Transfer t{&reply, &url, sink, body_bytes_max, 0, Status::Ok(), head_sink, std::nullopt, false};
    curl_slist* list = nullptr;
    for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
    if (!options.bearer_token.empty()) {
      list = curl_slist_append(list, ("Authorization: Bearer " + options.bearer_token).c_str());
    }
    list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
    if (!content_type.empty() && method != "GET") {
      list = curl_slist_append(list, ("Content-Type: " + content_type).c_str());
    }
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, options.connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, options.timeout_ms);
    if (options.stall_timeout_ms > 0) {
      // Less than a byte a second, averaged over the whole window: nothing came.
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, std::max(1L, options.stall_timeout_ms / 1000));
    }
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);  // send paths as given: never squash "/../"
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    // Each piece of body goes to OnBody as libcurl reads it (its 16 KiB
    // buffer), never paused, so libcurl itself holds no more than that; no
    // CURLOPT_ACCEPT_ENCODING, so what arrives is what is counted (no
    // decompression bomb).
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "meridian/0.1");
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    char error_buffer[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    // libcurl's defaults, stated: a chain to a trusted CA and a matching name.
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
    if (!options.tls.client_certificate.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLCERT, options.tls.client_certificate.c_str());
      curl_easy_setopt(curl, CURLOPT_SSLKEY, options.tls.client_key.c_str());
    }
    if (options.cancel != nullptr) {
      curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
      curl_easy_setopt(curl, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(options.cancel));
    }
    if (options.recv_bytes_per_s_max > 0) {
      curl_easy_setopt(curl, CURLOPT_MAX_RECV_SPEED_LARGE, static_cast<curl_off_t>(options.recv_bytes_per_s_max));
    }
    if (method == "POST" || method == "PUT" || method == "DELETE") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(list);
    if (!t.error.ok()) return t.error;
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && t.error_body_cut)) {
      // libcurl's own words when it has them: a timeout's say which limit it
      // was and how much had come.
      const char* detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(rc);
      if (std::optional<Status> tls = ExplainTlsFailure(curl, rc, detail, url, host, ca_file, options.tls)) return *tls;
      if (rc == CURLE_OPERATION_TIMEDOUT) return Status::DeadlineExceeded(std::string(detail) + " (" + url + ")");
      if (rc == CURLE_ABORTED_BY_CALLBACK) return Status::Unavailable("cancelled (" + url + ")");
      return Status::Unavailable(std::string(curl_easy_strerror(rc)) + " (" + url + ")");
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 0) reply.status = status;
    return reply;
  }
};

HttpClient::HttpClient(std::string base_url, HttpClientOptions options)
    : base_url_(std::move(base_url)), impl_(std::make_unique<Impl>()) {
  GlobalInit();
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
  impl_->curl = curl_easy_init();
  impl_->options = std::move(options);
  impl_->transport = CheckTransport(base_url_, impl_->options);
  if (Result<UrlParts> url = ParseUrl(base_url_); url.ok()) impl_->host = url->host;
  impl_->ca_file = EffectiveCaFile(impl_->options.tls);
}

HttpClient::~HttpClient() = default;

Result<HttpReply> HttpClient::Get(const std::string& path, uint64_t response_bytes_max,
                                  const std::vector<std::string>& headers) {
  return impl_->Perform(base_url_ + path, "GET", {}, "", headers, nullptr, response_bytes_max);
}

Result<HttpReply> HttpClient::Get(const std::string& path, const std::vector<std::string>& headers) {
  return Get(path, impl_->options.response_bytes_max, headers);
}

Result<HttpReply> HttpClient::Post(const std::string& path, std::string_view body, uint64_t response_bytes_max,
                                   const std::string& content_type, const std::vector<std::string>& headers) {
  return impl_->Perform(base_url_ + path, "POST", AsBytes(body), content_type, headers, nullptr, response_bytes_max);
}

Result<HttpReply> HttpClient::Post(const std::string& path, std::string_view body, const std::string& content_type,
                                   const std::vector<std::string>& headers) {
  return Post(path, body, impl_->options.response_bytes_max, content_type, headers);
}

Result<HttpReply> HttpClient::Delete(const std::string& path, std::string_view body, uint64_t response_bytes_max) {
  return impl_->Perform(base_url_ + path, "DELETE", AsBytes(body), "application/json", {}, nullptr, response_bytes_max);
}

Result<HttpReply> HttpClient::Put(const std::string& path, ByteSpan body, uint64_t response_bytes_max,
                                  const std::string& content_type) {
  return impl_->Perform(base_url_ + path, "PUT", body, content_type, {}, nullptr, response_bytes_max);
}

Result<HttpReply> HttpClient::Put(const std::string& path, ByteSpan body, const std::string& content_type) {
  return Put(path, body, impl_->options.response_bytes_max, content_type);
}

Result<HttpReply> HttpClient::GetStreaming(const std::string& path, const std::function<Status(ByteSpan)>& sink,
                                           uint64_t body_bytes_max, const std::vector<std::string>& headers) {
  return impl_->Perform(base_url_ + path, "GET", {}, "", headers, &sink, body_bytes_max);
}

Result<HttpReply> HttpClient::GetStreamingWithHead(const std::string& path,
                                                   const std::function<Status(const HttpReply&, ByteSpan)>& sink,
                                                   uint64_t body_bytes_max, const std::vector<std::string>& headers) {
  return impl_->Perform(base_url_ + path, "GET", {}, "", headers, nullptr, body_bytes_max, &sink);
}

namespace {

// The string `field` of the "error" object of a JSON error body, if there is one.
std::optional<std::string> ErrorField(const HttpReply& reply, const char* field) {
  nlohmann::json j = nlohmann::json::parse(reply.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains(field) &&
      j["error"][field].is_string()) {
    return j["error"][field].get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

std::string ErrorMessageOf(const HttpReply& reply) {
  if (std::optional<std::string> message = ErrorField(reply, "message")) return *message;
  std::string s(Utf8Prefix(reply.body, 200));  // a proxy's page, say: its start, cut at a character
  return s.empty() ? "HTTP " + std::to_string(reply.status) : s;
}

std::string ErrorCodeOf(const HttpReply& reply) { return ErrorField(reply, "code").value_or(""); }

}  // namespace meridian
