// What the commands over the daemon's control API share (rollouts, regions,
// fleet, tokens, audit): a call with the token given, its JSON answer, and
// that answer shown as JSON or as text. Private to the CLI.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "cli/commands.h"

namespace meridian::cli {

// GETs, POSTs or DELETEs `path` and parses the JSON answer; one error line
// otherwise. `timeout_ms`: the whole call's.
Result<nlohmann::json> Call(const GlobalOptions& g, const std::string& method, const std::string& path,
                            const std::string& body, long want_status, const std::string& what,
                            int64_t timeout_ms = 60'000);

// The answer as JSON with --output json, else as `print_text` writes it. The
// text printers read the fields they show without checking each one: an
// answer of another shape (another version of the daemon, or not a daemon)
// is an error message, not a crash.
Status Show(const GlobalOptions& g, const nlohmann::json& j, const std::string& what,
            const std::function<void(const nlohmann::json&)>& print_text);

// Call, then Show; the process exit code.
int CallAndShow(const GlobalOptions& g, const std::string& method, const std::string& path, const std::string& body,
                long want_status, const std::string& what, const std::function<void(const nlohmann::json&)>& print_text,
                int64_t timeout_ms = 60'000);

}  // namespace meridian::cli
