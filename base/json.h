// The one way JSON from outside the process is read: bounded in size and
// nesting, and an object that names a key twice is refused. Duplicate keys
// matter for signed documents: two readers that resolve them differently
// (first-wins, last-wins) would see two different documents under one
// signature, so no reader here resolves them at all.
#pragma once

#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace meridian {

inline constexpr int kJsonDepthMax = 64;

// Parses `text`. InvalidArgument (naming the cause) when it is not one JSON
// value, nests deeper than kJsonDepthMax, or has an object with a repeated
// key; ResourceExhausted when it is longer than `bytes_max`.
Result<nlohmann::json> ParseJson(std::string_view text, uint64_t bytes_max);

}  // namespace meridian
