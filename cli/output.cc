// Error lines, JSON printing, human sizes and the progress bar.
#include "cli/output.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "base/json.h"
#include "client/api.h"

namespace meridian::cli {

int Fail(std::string_view message) {
  fmt::print(stderr, "meridian: {}\n", message);
  return 1;
}

int FailReply(std::string_view what, const HttpReply& reply) {
  return Fail(ReplyError(reply, what));
}

std::string SpoolDir() {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  return ec ? "/tmp" : dir.string();
}

// A path in it may be any bytes (Linux names files so): shown with U+FFFD.
void PrintJson(const nlohmann::json& j) { fmt::print("{}\n", DumpJson(j, 2)); }

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

Progress::Progress(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)), total_(total_bytes), enabled_(enabled && ::isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() {
  if (enabled_ && last_permille_ >= 0) fmt::print(stderr, "\n");
}

void Progress::Add(uint64_t bytes) {
  std::lock_guard lock(mu_);
  done_ += bytes;
  Draw();
}

void Progress::Draw() {
  if (!enabled_) return;
  int permille = total_ == 0 ? 1000 : static_cast<int>(std::min<uint64_t>(1000, done_ * 1000 / total_));
  if (permille == last_permille_) return;
  last_permille_ = permille;
  int filled = permille * 30 / 1000;
  fmt::print(stderr, "\r{} [{}{}] {:5.1f}% {}", label_, std::string(static_cast<size_t>(filled), '#'),
             std::string(static_cast<size_t>(30 - filled), ' '), permille / 10.0, HumanBytes(done_));
}

}  // namespace meridian::cli
