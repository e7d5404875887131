// libcurl easy-handle wrapper: bounded requests, streaming downloads.
#include "client/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>

namespace meridian {

namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  HttpReply* reply;
  const std::function<Status(ByteSpan)>* sink = nullptr;  // streaming GET
  uint64_t body_bytes_max = 0;
  uint64_t received = 0;
  Status error;  // why the transfer was aborted
  const std::function<Status(const HttpReply&, ByteSpan)>* head_sink = nullptr;  // GetStreamingWithHead
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // A new response (also after a 100-continue): its status is needed before the body arrives.
    t->reply->headers.clear();
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
    t->reply->headers[name] = std::string(value);
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  t->received += bytes;
  if (t->received > t->body_bytes_max) {
    t->error = Status::ResourceExhausted("response body exceeds " + std::to_string(t->body_bytes_max) + " bytes");
    return 0;  // aborts the transfer
  }
  if (t->head_sink != nullptr && t->reply->status >= 200 && t->reply->status < 300) {
    Status st = (*t->head_sink)(*t->reply, ByteSpan(reinterpret_cast<const uint8_t*>(data), bytes));
    if (!st.ok()) {
      t->error = st;
      return 0;
    }
    return bytes;
  }
  if (t->sink != nullptr) {
    long status = t->reply->status;
    if (status >= 200 && status < 300) {
      Status st = (*t->sink)(ByteSpan(reinterpret_cast<const uint8_t*>(data), bytes));
      if (!st.ok()) {
        t->error = st;
        return 0;
      }
      return bytes;
    }
  }
  t->reply->body.append(data, bytes);
  return bytes;
}

}  // namespace

// libcurl calls this about once a second even while nothing arrives.
static int OnProgress(void* cancel, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(cancel)->load() ? 1 : 0;
}

struct HttpClient::Impl {
  CURL* curl = nullptr;
  HttpClientOptions options;
  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }

  Result<HttpReply> Perform(const std::string& url, const std::string& method, ByteSpan body,
                            const std::string& content_type, const std::vector<std::string>& headers,
                            const std::function<Status(ByteSpan)>* sink, uint64_t body_bytes_max,
                            const std::function<Status(const HttpReply&, ByteSpan)>* head_sink = nullptr) {
    curl_easy_reset(curl);
    HttpReply reply;
    Transfer t{&reply, sink, body_bytes_max, 0, Status::Ok(), head_sink};
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
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);  // send paths as given: never squash "/../"
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "meridian/0.1");
    if (options.cancel != nullptr) {
      curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
      curl_easy_setopt(curl, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(options.cancel));
    }
    if (options.recv_bytes_per_s_max > 0) {
      curl_easy_setopt(curl, CURLOPT_MAX_RECV_SPEED_LARGE, static_cast<curl_off_t>(options.recv_bytes_per_s_max));
    }
    if (method == "POST" || method == "PUT") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(list);
    if (!t.error.ok()) return t.error;
    if (rc != CURLE_OK) {
      std::string what = std::string(curl_easy_strerror(rc)) + " (" + url + ")";
      if (rc == CURLE_OPERATION_TIMEDOUT) return Status::DeadlineExceeded(what);
      if (rc == CURLE_ABORTED_BY_CALLBACK) return Status::Unavailable("cancelled (" + url + ")");
      return Status::Unavailable(what);
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
    return reply;
  }
};

HttpClient::HttpClient(std::string base_url, HttpClientOptions options)
    : base_url_(std::move(base_url)), impl_(std::make_unique<Impl>()) {
  GlobalInit();
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
  impl_->curl = curl_easy_init();
  impl_->options = std::move(options);
}

HttpClient::~HttpClient() = default;

Result<HttpReply> HttpClient::Get(const std::string& path, const std::vector<std::string>& headers) {
  return impl_->Perform(base_url_ + path, "GET", {}, "", headers, nullptr, impl_->options.response_bytes_max);
}

Result<HttpReply> HttpClient::Post(const std::string& path, std::string_view body, const std::string& content_type) {
  return impl_->Perform(base_url_ + path, "POST", AsBytes(body), content_type, {}, nullptr,
                        impl_->options.response_bytes_max);
}

Result<HttpReply> HttpClient::Put(const std::string& path, ByteSpan body, const std::string& content_type) {
  return impl_->Perform(base_url_ + path, "PUT", body, content_type, {}, nullptr, impl_->options.response_bytes_max);
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

std::string ErrorMessageOf(const HttpReply& reply) {
  nlohmann::json j = nlohmann::json::parse(reply.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
      j["error"]["message"].is_string()) {
    return j["error"]["message"].get<std::string>();
  }
  std::string s = reply.body.substr(0, 200);
  return s.empty() ? "HTTP " + std::to_string(reply.status) : s;
}

}  // namespace meridian
