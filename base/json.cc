// ParseJson: nlohmann's parser with a callback that counts each object's keys
// and nesting, so that repeats (which nlohmann folds silently) are seen.
#include "base/json.h"

#include <vector>

#include <fmt/format.h>

namespace meridian {

Result<nlohmann::json> ParseJson(std::string_view text, uint64_t bytes_max) {
  using Event = nlohmann::json::parse_event_t;
  if (text.size() > bytes_max) {
    return Status::ResourceExhausted(fmt::format("JSON of {} bytes exceeds the {} byte limit", text.size(), bytes_max));
  }
  // Keys seen per open object: an object that ends holding fewer members
  // than keys were read had a key repeated.
  std::vector<size_t> keys_read;
  bool too_deep = false, repeated = false;
  auto check = [&](int depth, Event event, nlohmann::json& parsed) {
    if (depth >= kJsonDepthMax) too_deep = true;  // depth counts from 0
    switch (event) {
      case Event::object_start: keys_read.push_back(0); break;
      case Event::key: ++keys_read.back(); break;
      case Event::object_end:
        if (parsed.size() != keys_read.back()) repeated = true;
        keys_read.pop_back();
        break;
      default: break;
    }
    return !too_deep;
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/false);
  if (too_deep) return Status::InvalidArgument(fmt::format("JSON nests deeper than {} levels", kJsonDepthMax));
  if (j.is_discarded()) return Status::InvalidArgument("not valid JSON");
  if (repeated) return Status::InvalidArgument("JSON object repeats a key");
  return j;
}

}  // namespace meridian
