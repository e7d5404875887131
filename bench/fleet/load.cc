// bench/fleet load client: many keep-alive HTTP/1.1 connections from one
// thread (Boost.Beast on Asio coroutines), so the daemon under test gets the
// machine's other core(s). Built by bench/fleet/run.sh with g++ directly, -lsodium
// (not part of the meson build, so CI never compiles it).
//
//   load enrol --port P --token OPERATOR --n N --creds FILE [--batch B] [--conns C]
//       enrols terminals 0..N-1 (POST /v1/terminals, B ≤ 100,000 per request,
//       one request at a time: each is one synced write), then asks for each
//       one's credential over C connections and writes them to FILE, line i
//       terminal i's. Prints both rates.
//   load register --port P --creds FILE --n N [--first I] [--conns C]
//       target polls for terminals I..I+N-1 (one each), as fast as C
//       connections go; prints the rate and the answers' status codes.
//   load poll --port P --creds FILE --ids M --rate R --conns C --seconds S
//             [--side-path PATH --side-token T2]
//       target polls of terminals drawn from 0..M-1 at R requests/s (open
//       loop, spread over C connections) for S seconds; latency counts from
//       the moment a request was due, so a stalled daemon is not hidden by
//       fewer requests being sent. With --side-path, one more connection GETs
//       PATH back to back for as long (e.g. rollout status).
//   load forge --port P --cred CREDENTIAL --n N [--conns C]
//       N target polls of distinct made-up ids (forged-%07d) all sent with one
//       terminal's credential; every one should be 403.
//   load report --port P --creds FILE --n N [--first I] [--step S] [--conns C]
//       terminals I, I+S, … (N of them; S = 3: one region's) each POST one healthy `installed` report of
//       fleet 1.0.1 (rollout `next`), as fast as C connections go; prints the
//       rate, latency, the status codes and how many the daemon counted (a
//       counted report is a synced write and a run of the gates).
//   load call --port P --token T --path PATH [--method POST --body-file F]
//             [--count N] [--warmup W] [--expect CODE]
//       N sequential calls on one keep-alive connection, after W unmeasured.
//   load hold --port P --creds FILE --n N --token OPERATOR --pid DAEMON_PID
//             --change-path PATH [--change-body-file F] [--wait W] [--connecting C] [--settle S]
//       terminals 0..N-1 each hold a long poll of their target (wait W s,
//       default 60) on a connection of their own; once the daemon holds them,
//       reads its RSS, then POSTs the state change (F to PATH, operator token)
//       and times every poll's answer from it. See Hold.
//
// register and poll send terminal i's own credential (line i of FILE, as
// enrol wrote it): the shared terminal token opens no terminal route any more.
// Every mode prints one JSON object on stdout; latencies in milliseconds.
// Terminal i: id term-%07d, region sg/ae/br (i % 3), profile by (i / 3) % 3,
// current version 1.0.0 for 8 in 10, 1.0.1 for 1 in 10, none for 1 in 10;
// its Ed25519 key is derived from its id (seed = SHA-256 of the id), so that
// enrol and any later run agree on it without a key file.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sodium.h>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using net::awaitable;
using net::use_awaitable;

namespace {

struct Args {
  std::map<std::string, std::string> kv;
  std::string Get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  long long Num(const std::string& k, long long def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::stoll(it->second);
  }
};

const char* const kRegions[] = {"sg", "ae", "br"};
const char* const kProfiles[] = {"pos-arm64", "kiosk-x86", "cam-arm32"};

std::string TerminalId(long long i) {
  char id[32];
  std::snprintf(id, sizeof id, "term-%07lld", i);
  return id;
}

std::string TargetPath(long long i, const std::string& id) {
  std::string p = "/v1/terminals/";
  p += id;
  p += "/target?model=fleet&channel=stable&region=";
  p += kRegions[i % 3];
  p += "&profile=";
  p += kProfiles[(i / 3) % 3];
  long long m = i % 10;
  if (m < 8) p += "&current=1.0.0";
  else if (m == 8) p += "&current=1.0.1";
  return p;
}

std::string TargetPath(long long i) { return TargetPath(i, TerminalId(i)); }

std::string Base64(const unsigned char* data, size_t n) {
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), data, n, sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

// A terminal's key pair, derived from its id (see the header).
struct Keys {
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
};
Keys TerminalKeys(const std::string& id) {
  unsigned char seed[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(seed, reinterpret_cast<const unsigned char*>(id.data()), id.size());
  Keys k;
  crypto_sign_seed_keypair(k.pk, k.sk, seed);
  return k;
}

// The credential request's header (trust/terminal_credential.h): the
// signature is over PAE(request type, "<id> <unix ms>").
std::string CredentialRequest(const std::string& id, const Keys& k, long long time_ms) {
  static const std::string kType = "application/vnd.meridian.credential-request.v1";
  std::string payload = id + " " + std::to_string(time_ms);
  std::string pae = "DSSEv1 " + std::to_string(kType.size()) + " " + kType + " " + std::to_string(payload.size()) +
                    " " + payload;
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(pae.data()), pae.size(), k.sk);
  return "Meridian-Terminal " + Base64(k.pk, sizeof k.pk) + "." + std::to_string(time_ms) + "." +
         Base64(sig, sizeof sig);
}

long long UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Terminals 0..n-1's credentials, one a line, as enrol wrote them.
std::vector<std::string> ReadCredentials(const std::string& path, long long n) {
  std::ifstream f(path);
  std::vector<std::string> creds;
  creds.reserve(static_cast<size_t>(n));
  for (std::string line; static_cast<long long>(creds.size()) < n && std::getline(f, line);) creds.push_back(line);
  if (static_cast<long long>(creds.size()) < n) {
    std::fprintf(stderr, "load: %s holds %zu credentials, %lld needed\n", path.c_str(), creds.size(), n);
    std::exit(2);
  }
  return creds;
}

// CPU seconds this process used (user + system): the client's share of the machine.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string Stats(std::vector<double> v) {
  if (v.empty()) return "{\"n\":0}";
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {
    size_t idx = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, idx == 0 ? 0 : idx - 1)];
  };
  char buf[256];
  std::snprintf(buf, sizeof buf, "{\"n\":%zu,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}", v.size(), q(0.50),
                q(0.99), q(0.999), v.back());
  return buf;
}

std::string JsonStr(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
    else o += c;
  }
  return o + "\"";
}

// One keep-alive connection to 127.0.0.1:port that reconnects after an error.
class Conn {
 public:
  Conn(net::io_context& io, unsigned short port, std::string token)
      : stream_(io), ep_(net::ip::make_address("127.0.0.1"), port), token_(std::move(token)) {}

  // Sends one request; the status code, or -1 when the connection failed
  // (it is reopened at the next call). `auth`, when not empty, is the whole
  // Authorization value instead of the connection's bearer token. `written`,
  // when set, is called once the request is on the wire and before its answer
  // is awaited (a long poll's hold starts there); a pointer, not a
  // std::function by value, since GCC 12 may destroy a temporary in a
  // co_await expression twice.
  awaitable<int> Send(http::verb method, const std::string& target, const std::string& body, std::string* reply,
                      const std::string& auth = {}, const std::function<void()>* written = nullptr) {
    try {
      if (!open_) {
        stream_.expires_after(std::chrono::seconds(30));
        co_await stream_.async_connect(ep_, use_awaitable);
        stream_.socket().set_option(tcp::no_delay(true));
        open_ = true;
      }
      http::request<http::string_body> req{method, target, 11};
      req.set(http::field::host, "127.0.0.1");
      req.set(http::field::authorization, auth.empty() ? "Bearer " + token_ : auth);
      if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
      }
      req.prepare_payload();
      stream_.expires_after(std::chrono::seconds(600));
      co_await http::async_write(stream_, req, use_awaitable);
      if (written) (*written)();
      http::response_parser<http::string_body> parser;
      parser.body_limit(64u << 20);
      co_await http::async_read(stream_, buf_, parser, use_awaitable);
      auto& res = parser.get();
      if (reply) *reply = res.body();
      if (!res.keep_alive()) Close();
      co_return static_cast<int>(res.result_int());
    } catch (const std::exception& e) {
      Close();
      if (reply) *reply = e.what();
      co_return -1;
    }
  }

 private:
  void Close() {
    beast::error_code ec;
    stream_.socket().close(ec);
    buf_.clear();
    open_ = false;
  }
  beast::tcp_stream stream_;
  tcp::endpoint ep_;
  std::string token_;
  beast::flat_buffer buf_;
  bool open_ = false;
};

struct Codes {
  std::map<int, long long> n;
  std::string first_error;
  int expect = 200;
  void Add(int code, const std::string& reply) {
    ++n[code];
    if (code != expect && first_error.empty()) first_error = std::to_string(code) + " " + reply.substr(0, 300);
  }
  std::string Json() const {
    std::string o = "{";
    for (auto& [c, k] : n) o += (o.size() > 1 ? ",\"" : "\"") + std::to_string(c) + "\":" + std::to_string(k);
    return o + "}";
  }
};

// Calls `one(conn, k)` for k = 0..n-1, each once, over `conns` keep-alive
// connections each going as fast as it is answered; returns when all are done.
// (The callable outlives every coroutine: they end within io.run().)
void OverConnections(unsigned short port, long long conns, long long n,
                     const std::function<awaitable<void>(Conn&, long long)>& one) {
  net::io_context io(1);
  long long next = 0;
  for (long long c = 0; c < conns; ++c) {
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
          Conn conn(io, port, "");
          while (next < n) co_await one(conn, next++);
        },
        net::detached);
  }
  io.run();
}

int Register(const Args& a) {
  auto port = static_cast<unsigned short>(a.Num("port", 0));
  long long first = a.Num("first", 0), n = a.Num("n", 1000), conns = a.Num("conns", 64);
  std::vector<std::string> creds = ReadCredentials(a.Get("creds"), first + n);
  long long done = 0;
  Codes codes;
  auto t0 = Clock::now();
  auto last_report = t0;
  OverConnections(port, conns, n, [&](Conn& conn, long long k) -> awaitable<void> {
    long long i = first + k;
    std::string reply;
    int code = co_await conn.Send(http::verb::get, TargetPath(i), "", &reply, "Bearer " + creds[static_cast<size_t>(i)]);
    codes.Add(code, reply);
    ++done;
    if (done % 100000 == 0) {
      auto now = Clock::now();
      std::fprintf(stderr, "  registered %lld/%lld (%.0f/s over the last %lld)\n", done, n,
                   100000.0 / std::chrono::duration<double>(now - last_report).count(), 100000LL);
      last_report = now;
    }
  });
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("{\"mode\":\"register\",\"n\":%lld,\"conns\":%lld,\"seconds\":%.3f,\"rate\":%.1f,\"cpu_s\":%.2f,"
              "\"codes\":%s,\"first_error\":%s}\n",
              n, conns, secs, static_cast<double>(n) / secs, CpuSeconds(), codes.Json().c_str(), JsonStr(codes.first_error).c_str());
  return codes.n.size() == 1 && codes.n.count(200) ? 0 : 1;
}

std::string ReportBody(long long i) {
  std::string b = R"({"model":"fleet","version":"1.0.1","channel":"stable","rollout":"next","event":"installed",)";
  b += R"("reason":"","health":{"pass":true,"latency_ms":12.5},"profile":")";
  b += kProfiles[(i / 3) % 3];
  b += R"(","region":")";
  b += kRegions[i % 3];
  return b + "\"}";
}

int Report(const Args& a) {
  auto port = static_cast<unsigned short>(a.Num("port", 0));
  long long first = a.Num("first", 0), n = a.Num("n", 1000), step = a.Num("step", 1), conns = a.Num("conns", 64);
  std::vector<std::string> creds = ReadCredentials(a.Get("creds"), first + (n - 1) * step + 1);
  long long counted = 0;
  Codes codes;
  codes.expect = 202;
  std::vector<double> latency;
  latency.reserve(static_cast<size_t>(n));
  auto t0 = Clock::now();
  OverConnections(port, conns, n, [&](Conn& conn, long long k) -> awaitable<void> {
    long long i = first + k * step;
    std::string reply;
    auto sent = Clock::now();
    int code = co_await conn.Send(http::verb::post, "/v1/terminals/" + TerminalId(i) + "/reports", ReportBody(i),
                                  &reply, "Bearer " + creds[static_cast<size_t>(i)]);
    latency.push_back(Ms(Clock::now() - sent));
    codes.Add(code, reply);
    if (code == 202 && reply.find("\"counted\":true") != std::string::npos) ++counted;
  });
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("{\"mode\":\"report\",\"n\":%lld,\"conns\":%lld,\"seconds\":%.3f,\"rate\":%.1f,\"counted\":%lld,"
              "\"latency\":%s,\"cpu_s\":%.2f,\"codes\":%s,\"first_error\":%s}\n",
              n, conns, secs, static_cast<double>(n) / secs, counted, Stats(latency).c_str(), CpuSeconds(),
              codes.Json().c_str(), JsonStr(codes.first_error).c_str());
  return codes.n.size() == 1 && codes.n.count(202) ? 0 : 1;
}

int Poll(const Args& a) {
  net::io_context io(1);
  auto port = static_cast<unsigned short>(a.Num("port", 0));
  long long ids = a.Num("ids", 10000), conns = a.Num("conns", 16);
  double rate = static_cast<double>(a.Num("rate", 1000)), seconds = static_cast<double>(a.Num("seconds", 10));
  std::string side_path = a.Get("side-path"), side_token = a.Get("side-token");
  std::vector<std::string> creds = ReadCredentials(a.Get("creds"), ids);
  std::vector<double> lat, service, side_lat;  // lat: from when due; service: from when sent
  Codes codes, side_codes;
  auto last_done = Clock::now();
  long long late = 0;    // requests sent more than 1 ms after they were due (the client or the daemon behind)
  long long unsent = 0;  // due before the end but not sent by then (the connection waited on an answer)
  auto start = Clock::now() + std::chrono::milliseconds(50);
  auto stop = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(conns / rate));
  bool running = true;
  long long poll_left = conns;
  for (long long c = 0; c < conns; ++c) {
    net::co_spawn(
        io,
        [&, c]() -> awaitable<void> {
          Conn conn(io, port, "");
          std::mt19937_64 rng(static_cast<uint64_t>(c) * 7919 + 1);
          std::uniform_int_distribution<long long> pick(0, ids - 1);
          net::steady_timer timer(io);
          std::string reply;
          auto due = start + period * c / conns;
          while (due < stop) {
            if (Clock::now() >= stop) {
              // Past the end: what is due and unsent is not sent; each counts
              // with the time it has waited so far (a lower bound).
              for (auto now = Clock::now(); due < stop; due += period, ++unsent) lat.push_back(Ms(now - due));
              break;
            }
            timer.expires_at(due);
            co_await timer.async_wait(use_awaitable);
            auto sent = Clock::now();
            if (sent - due > std::chrono::milliseconds(1)) ++late;
            long long i = pick(rng);
            int code = co_await conn.Send(http::verb::get, TargetPath(i), "", &reply, "Bearer " + creds[i]);
            last_done = Clock::now();
            lat.push_back(Ms(last_done - due));
            service.push_back(Ms(last_done - sent));
            codes.Add(code, reply);
            due += period;
          }
          if (--poll_left == 0) running = false;
        },
        net::detached);
  }
  if (!side_path.empty()) {
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
          Conn conn(io, port, side_token);
          net::steady_timer timer(io);
          timer.expires_at(start);
          co_await timer.async_wait(use_awaitable);
          std::string reply;
          while (running) {
            auto t = Clock::now();
            int code = co_await conn.Send(http::verb::get, side_path, "", &reply);
            side_lat.push_back(Ms(Clock::now() - t));
            side_codes.Add(code, reply);
          }
        },
        net::detached);
  }
  io.run();
  // Over the time the polls took: longer than asked when the daemon fell behind.
  double secs = std::chrono::duration<double>(std::max(stop, last_done) - start).count();
  std::printf("{\"mode\":\"poll\",\"rate_asked\":%.0f,\"rate_done\":%.1f,\"conns\":%lld,\"ids\":%lld,\"seconds\":%.1f,"
              "\"late\":%lld,\"unsent\":%lld,\"cpu_s\":%.2f,\"latency\":%s,\"service\":%s,\"codes\":%s,"
              "\"first_error\":%s,\"side\":{\"latency\":%s,\"codes\":%s}}\n",
              rate, static_cast<double>(service.size()) / secs, conns, ids, secs, late, unsent, CpuSeconds(),
              Stats(lat).c_str(),
              Stats(service).c_str(), codes.Json().c_str(), JsonStr(codes.first_error).c_str(), Stats(side_lat).c_str(),
              side_codes.Json().c_str());
  return 0;
}

// Enrols terminals 0..n-1 as the factory would (their public keys in bulk),
// then has each prove its key for a credential, as an agent does at start.
int Enrol(const Args& a) {
  net::io_context io(1);
  auto port = static_cast<unsigned short>(a.Num("port", 0));
  long long n = a.Num("n", 1000), batch = std::min(a.Num("batch", 100000), 100000LL), conns = a.Num("conns", 64);
  std::string token = a.Get("token");
  // The keys exist before enrolment (a factory has them): derived outside the timed phases.
  double cpu0 = CpuSeconds();
  std::vector<Keys> keys(static_cast<size_t>(n));
  for (long long i = 0; i < n; ++i) keys[i] = TerminalKeys(TerminalId(i));
  double keys_cpu = CpuSeconds() - cpu0;

  Codes enrol_codes;
  auto t0 = Clock::now();
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        Conn conn(io, port, token);
        std::string reply;
        for (long long from = 0; from < n; from += batch) {
          std::string body = "{\"terminals\":[";
          for (long long i = from; i < std::min(n, from + batch); ++i) {
            if (i > from) body += ',';
            body += "{\"id\":\"" + TerminalId(i) + "\",\"public_key\":\"" + Base64(keys[i].pk, sizeof keys[i].pk) +
                    "\",\"profile\":\"" + kProfiles[(i / 3) % 3] + "\",\"region\":\"" + kRegions[i % 3] + "\"}";
          }
          body += "]}";
          enrol_codes.Add(co_await conn.Send(http::verb::post, "/v1/terminals", body, &reply), reply);
        }
      },
      net::detached);
  io.run();
  double enrol_s = std::chrono::duration<double>(Clock::now() - t0).count();

  io.restart();
  std::vector<std::string> creds(static_cast<size_t>(n));
  Codes cred_codes;
  long long next = 0, done = 0;
  auto t1 = Clock::now(), last_report = t1;
  for (long long c = 0; c < conns; ++c) {
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
          Conn conn(io, port, "");
          std::string reply;
          static const std::string kField = "\"credential\":\"";
          while (next < n) {
            long long i = next++;
            std::string id = TerminalId(i);
            std::string auth = CredentialRequest(id, keys[i], UnixMs());
            int code = co_await conn.Send(http::verb::post, "/v1/terminals/" + id + "/credential", "", &reply, auth);
            cred_codes.Add(code, reply);
            if (size_t at = reply.find(kField); code == 200 && at != std::string::npos) {
              at += kField.size();
              creds[i] = reply.substr(at, reply.find('"', at) - at);
            }
            if (++done % 100000 == 0) {
              auto now = Clock::now();
              std::fprintf(stderr, "  credentials %lld/%lld (%.0f/s over the last 100000)\n", done, n,
                           100000.0 / std::chrono::duration<double>(now - last_report).count());
              last_report = now;
            }
          }
        },
        net::detached);
  }
  io.run();
  double cred_s = std::chrono::duration<double>(Clock::now() - t1).count();
  {
    std::ofstream f(a.Get("creds"));
    for (const auto& c : creds) f << c << '\n';
  }
  std::printf("{\"mode\":\"enrol\",\"n\":%lld,\"batch\":%lld,\"keys_cpu_s\":%.2f,\"enrol_seconds\":%.3f,"
              "\"enrol_rate\":%.1f,\"enrol_codes\":%s,\"cred_conns\":%lld,\"cred_seconds\":%.3f,\"cred_rate\":%.1f,"
              "\"cpu_s\":%.2f,\"cred_codes\":%s,\"first_error\":%s}\n",
              n, batch, keys_cpu, enrol_s, static_cast<double>(n) / enrol_s, enrol_codes.Json().c_str(), conns, cred_s,
              static_cast<double>(n) / cred_s, CpuSeconds(), cred_codes.Json().c_str(),
              JsonStr(enrol_codes.first_error + cred_codes.first_error).c_str());
  bool ok = enrol_codes.n.size() == 1 && enrol_codes.n.count(200) && cred_codes.n.size() == 1 && cred_codes.n.count(200);
  return ok ? 0 : 1;
}

// Polls of ids no one enrolled, all with one terminal's valid credential: a
// holder of one credential trying to speak for others (or to fill the registry).
int Forge(const Args& a) {
  auto port = static_cast<unsigned short>(a.Num("port", 0));
  long long n = a.Num("n", 1000), conns = a.Num("conns", 64);
  std::string auth = "Bearer " + a.Get("cred");
  Codes codes;
  codes.expect = 403;
  auto t0 = Clock::now();
  OverConnections(port, conns, n, [&](Conn& conn, long long i) -> awaitable<void> {
    char id[32];
    std::snprintf(id, sizeof id, "forged-%07lld", i);
    std::string reply;
    codes.Add(co_await conn.Send(http::verb::get, TargetPath(i, id), "", &reply, auth), reply);
  });
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("{\"mode\":\"forge\",\"n\":%lld,\"conns\":%lld,\"seconds\":%.3f,\"rate\":%.1f,\"cpu_s\":%.2f,"
              "\"codes\":%s,\"first_error\":%s}\n",
              n, conns, secs, static_cast<double>(n) / secs, CpuSeconds(), codes.Json().c_str(),
              JsonStr(codes.first_error).c_str());
  return codes.n.size() == 1 && codes.n.count(403) ? 0 : 1;
}

// The whole of `path`, or "" when no path is given.
std::string ReadBodyFile(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A process's resident and peak resident memory (KiB) and CPU seconds, from /proc.
struct ProcFigures {
  long long rss_kb = 0, hwm_kb = 0;
  double cpu_s = 0;
};
ProcFigures ReadProc(long long pid) {
  ProcFigures f;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) f.rss_kb = std::stoll(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) f.hwm_kb = std::stoll(line.substr(6));
  }
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // Fields 14 and 15 (utime, stime) counted from the state (field 3), which
  // follows the command name's closing parenthesis (the name may hold spaces).
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string skip;
  for (int field = 3; field < 14; ++field) rest >> skip;
  long long utime = 0, stime = 0;
  rest >> utime >> stime;
  f.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return f;
}

// The number after `"name":` in a JSON reply, or -1 (enough for the flat fields read here).
long long JsonNumber(const std::string& reply, const std::string& name) {
  size_t at = reply.find("\"" + name + "\":");
  return at == std::string::npos ? -1 : std::atoll(reply.c_str() + at + name.size() + 3);
}

// The value of an unlabelled sample in Prometheus text, or -1.
double MetricValue(const std::string& text, const std::string& name) {
  size_t at = text.rfind("\n" + name + " ");
  return at == std::string::npos ? -1 : std::atof(text.c_str() + at + name.size() + 2);
}

// Terminals 0..n-1 each hold one long poll of their target (`known=` the
// channel's state version now, `wait=` W seconds) on a connection of their
// own, opened at most `connecting` at a time. Once all are on the wire and
// the daemon's gauge meridian_long_polls_held counts them (or stops growing),
// the daemon's memory is read (/proc/PID), then the operator's request makes
// the state change (on a connection opened before the polls, so that it is
// not turned away when they fill the daemon's connections) and every poll's
// answer is timed from the moment that request was sent.
int Hold(const Args& a) {
  net::io_context io(1);
  auto port = static_cast<unsigned short>(a.Num("port", 0));
  long long n = a.Num("n", 1000), wait_s = a.Num("wait", 60), pid = a.Num("pid", 0),
            connecting = a.Num("connecting", 256), settle_s = a.Num("settle", 30);
  std::string token = a.Get("token"), change_path = a.Get("change-path");
  std::string change_body = ReadBodyFile(a.Get("change-body-file"));
  std::vector<std::string> creds = ReadCredentials(a.Get("creds"), n);
  long long known = -1, opening = 0, sent = 0, done = 0, early = 0, unsent = 0, stale = 0, held = -1;
  bool changed = false;
  int change_code = 0;
  Clock::time_point t_change, last_answer;
  double open_s = 0, change_ms = 0, client_cpu0 = 0, client_cpu1 = 0;
  ProcFigures at_hold, at_end;
  std::vector<double> lat;  // ms from the change request's send to each answer
  Codes early_codes, codes;
  std::string fail;
  // The connections outlive their answers, as an agent's keep-alive
  // connection would: closed at once, each would have the daemon tear down a
  // session within the window measured.
  std::vector<std::unique_ptr<Conn>> conns(static_cast<size_t>(n));
  auto poll = [&](long long i) -> awaitable<void> {
    Conn& conn = *(conns[i] = std::make_unique<Conn>(io, port, ""));
    std::string reply, target = TargetPath(i) + "&known=" + std::to_string(known) + "&wait=" + std::to_string(wait_s);
    std::string auth = "Bearer " + creds[i];
    bool written = false;
    const std::function<void()> on_written = [&] {
      written = true;
      --opening;
      ++sent;
    };
    int code = co_await conn.Send(http::verb::get, target, "", &reply, auth, &on_written);
    auto t = Clock::now();
    if (!written) --opening;
    if (!changed) {
      early_codes.Add(code, reply);  // refused, failed, or the wait ended before the change
      ++(written ? early : unsent);   // unsent: the connection failed (the client's own open-file limit)
    } else {
      lat.push_back(Ms(t - t_change));
      last_answer = t;
      codes.Add(code, reply);
      if (code == 200 && JsonNumber(reply, "state_version") <= known) ++stale;
    }
    ++done;
  };
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        Conn ctl(io, port, token);
        net::steady_timer timer(io);
        auto pause = [&](std::chrono::milliseconds d) {
          timer.expires_after(d);
          return timer.async_wait(use_awaitable);
        };
        std::string reply;
        if (int code = co_await ctl.Send(http::verb::get, TargetPath(0), "", &reply, "Bearer " + creds[0]); code != 200) {
          fail = "target of terminal 0: " + std::to_string(code) + " " + reply.substr(0, 300);
          co_return;
        }
        known = JsonNumber(reply, "state_version");
        auto t_open = Clock::now();
        for (long long i = 0; i < n; ++i) {
          while (opening >= connecting) co_await pause(std::chrono::milliseconds(1));
          ++opening;
          net::co_spawn(io, poll(i), net::detached);
        }
        while (opening > 0) co_await pause(std::chrono::milliseconds(1));
        open_s = std::chrono::duration<double>(Clock::now() - t_open).count();
        // The daemon holds a poll once it has read and checked it: wait for
        // its gauge to count every one written and not answered yet.
        auto settle_end = Clock::now() + std::chrono::seconds(settle_s);
        while (Clock::now() < settle_end) {
          co_await ctl.Send(http::verb::get, "/metrics", "", &reply);
          held = static_cast<long long>(MetricValue(reply, "meridian_long_polls_held"));
          if (held >= sent - early) break;
          co_await pause(std::chrono::milliseconds(100));
        }
        at_hold = ReadProc(pid);
        client_cpu0 = CpuSeconds();
        t_change = Clock::now();
        changed = true;
        change_code = co_await ctl.Send(http::verb::post, change_path, change_body, &reply);
        change_ms = Ms(Clock::now() - t_change);
        if (change_code / 100 != 2) fail = "the change: " + std::to_string(change_code) + " " + reply.substr(0, 300);
        while (done < n) co_await pause(std::chrono::milliseconds(5));
        client_cpu1 = CpuSeconds();
        at_end = ReadProc(pid);
      },
      net::detached);
  io.run();
  if (!fail.empty() && !changed) {
    std::fprintf(stderr, "load: %s\n", fail.c_str());
    return 1;
  }
  double window_s = lat.empty() ? 0 : std::chrono::duration<double>(last_answer - t_change).count();
  std::printf("{\"mode\":\"hold\",\"n\":%lld,\"known\":%lld,\"wait_s\":%lld,\"open_seconds\":%.3f,\"sent\":%lld,"
              "\"early\":%lld,\"unsent\":%lld,\"early_codes\":%s,\"held_gauge\":%lld,\"rss_held_kb\":%lld,\"hwm_held_kb\":%lld,"
              "\"change_code\":%d,\"change_ms\":%.3f,\"latency\":%s,\"codes\":%s,\"stale\":%lld,"
              "\"rss_end_kb\":%lld,\"hwm_end_kb\":%lld,\"answer_seconds\":%.3f,\"daemon_cpu_s\":%.2f,"
              "\"client_cpu_s\":%.2f,\"client_cpu_total_s\":%.2f,\"first_error\":%s}\n",
              n, known, wait_s, open_s, sent, early, unsent, early_codes.Json().c_str(), held, at_hold.rss_kb, at_hold.hwm_kb,
              change_code, change_ms, Stats(lat).c_str(), codes.Json().c_str(), stale, at_end.rss_kb, at_end.hwm_kb,
              window_s, at_end.cpu_s - at_hold.cpu_s, client_cpu1 - client_cpu0, CpuSeconds(),
              JsonStr(fail + early_codes.first_error + codes.first_error).c_str());
  bool ok = fail.empty() && early == 0 && unsent == 0 && stale == 0 && codes.n.size() == 1 && codes.n.count(200);
  return ok ? 0 : 1;
}

int Call(const Args& a) {
  net::io_context io(1);
  auto port = static_cast<unsigned short>(a.Num("port", 0));
  long long count = a.Num("count", 20), warmup = a.Num("warmup", 1), expect = a.Num("expect", 200);
  std::string body = ReadBodyFile(a.Get("body-file"));
  http::verb method = a.Get("method", "GET") == "POST" ? http::verb::post : http::verb::get;
  std::string path = a.Get("path"), token = a.Get("token"), last;
  std::vector<double> lat;
  Codes codes;
  size_t bytes = 0;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        Conn conn(io, port, token);
        for (long long i = 0; i < warmup + count; ++i) {
          auto t = Clock::now();
          int code = co_await conn.Send(method, path, body, &last);
          if (i >= warmup) {
            lat.push_back(Ms(Clock::now() - t));
            codes.Add(code, last);
          }
          bytes = last.size();
        }
      },
      net::detached);
  io.run();
  std::printf("{\"mode\":\"call\",\"path\":%s,\"latency\":%s,\"codes\":%s,\"reply_bytes\":%zu,\"first_error\":%s}\n",
              JsonStr(path).c_str(), Stats(lat).c_str(), codes.Json().c_str(), bytes,
              JsonStr(codes.first_error).c_str());
  if (!a.Get("reply-file").empty()) std::ofstream(a.Get("reply-file")) << last;
  return codes.n.size() == 1 && codes.n.count(static_cast<int>(expect)) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: load register|poll|report|call|enrol|forge|hold --key value …\n");
    return 2;
  }
  Args a;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) {
      std::fprintf(stderr, "load: expected --key, got %s\n", argv[i]);
      return 2;
    }
    a.kv[k.substr(2)] = argv[i + 1];
  }
  if (sodium_init() < 0) return 2;
  std::string mode = argv[1];
  if (mode == "register") return Register(a);
  if (mode == "poll") return Poll(a);
  if (mode == "report") return Report(a);
  if (mode == "call") return Call(a);
  if (mode == "enrol") return Enrol(a);
  if (mode == "forge") return Forge(a);
  if (mode == "hold") return Hold(a);
  std::fprintf(stderr, "load: unknown mode %s\n", mode.c_str());
  return 2;
}
