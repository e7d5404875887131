// Output helpers shared by the CLI commands: errors, JSON or text results,
// a progress bar on terminals.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"
#include "client/http_client.h"

namespace meridian::cli {

// Prints "meridian: <message>" on stderr and returns exit code 1.
int Fail(std::string_view message);
inline int Fail(const Status& st) { return Fail(st.message()); }
// For a reply with an unexpected status: the server's error message.
int FailReply(std::string_view what, const HttpReply& reply);

// Where replies too large for memory are spooled as they arrive (a signed
// manifest: client/api.h GetSpooled): $TMPDIR, else /tmp.
std::string SpoolDir();

// Prints JSON (pretty) on stdout.
void PrintJson(const nlohmann::json& j);

// "12.3 MB" style sizes for people.
std::string HumanBytes(uint64_t bytes);

// A one-line progress bar on stderr, drawn only when stderr is a terminal
// and JSON output is off. Thread-safe.
class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes, bool enabled);
  ~Progress();
  void Add(uint64_t bytes);

 private:
  void Draw();
  std::mutex mu_;
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool enabled_;
  int last_permille_ = -1;
};

}  // namespace meridian::cli
