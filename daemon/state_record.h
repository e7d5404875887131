// Reading back the records the daemon's services keep in the store's state
// space (Store::ScanState): keys of '/'-separated parts, JSON values. Shared
// by the loaders so that each refuses a damaged record the same way.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/json.h"

namespace meridian {

// "a/b/c/d" split on '/' into at most `parts` pieces (the last keeps the rest).
inline std::vector<std::string> SplitStateKey(std::string_view key, size_t parts) {
  std::vector<std::string> out;
  while (out.size() + 1 < parts) {
    size_t slash = key.find('/');
    if (slash == std::string_view::npos) break;
    out.emplace_back(key.substr(0, slash));
    key.remove_prefix(slash + 1);
  }
  out.emplace_back(key);
  return out;
}

// A stored value parsed as JSON (base/json.h rules), or null when it does not
// parse, so that a loader's one is_object() check refuses both.
inline nlohmann::json ParseStateRecord(std::string_view value) {
  Result<nlohmann::json> parsed = ParseJson(value, value.size());
  return parsed.ok() ? std::move(*parsed) : nlohmann::json();
}

}  // namespace meridian
