// ParseJson: nlohmann's parser with a callback that counts each object's keys
// and nesting, so that repeats (which nlohmann folds silently) are seen.
// JsonFields: typed reads of one object, each checking the type first, since
// nlohmann is used without exceptions.
#include "base/json.h"

#include <algorithm>
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

Result<nlohmann::json> ParseJsonObject(std::string_view text, uint64_t bytes_max, std::string_view what) {
  Result<nlohmann::json> j = ParseJson(text, bytes_max);
  if (!j.ok()) return Status::InvalidArgument(fmt::format("{}: {}", what, j.status().message()));
  if (!j->is_object()) return Status::InvalidArgument(fmt::format("{}: not a JSON object", what));
  return j;
}

namespace {

// `v` as an array whose every element passes `is`, into `out` (left as it
// was unless all of them do).
template <typename T>
bool ArrayOf(const nlohmann::json& v, bool (nlohmann::json::*is)() const noexcept, std::vector<T>* out) {
  if (!v.is_array()) return false;
  std::vector<T> read;
  read.reserve(v.size());
  for (const nlohmann::json& e : v) {
    if (!(e.*is)()) return false;
    read.push_back(e.get<T>());
  }
  *out = std::move(read);
  return true;
}

}  // namespace

const nlohmann::json* JsonFields::Find(std::string_view key, bool required) {
  known_.emplace(key);
  auto it = object_.find(key);
  if (it == object_.end()) {
    if (required) Fail(key, "is missing");
    return nullptr;
  }
  return &*it;
}

const nlohmann::json* JsonFields::Object(std::string_view key, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr || v->is_object()) return v;
  Fail(key, "must be an object");
  return nullptr;
}

const nlohmann::json* JsonFields::Array(std::string_view key, size_t max, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr || (v->is_array() && v->size() <= max)) return v;
  Fail(key, fmt::format("must be an array of at most {} elements", max));
  return nullptr;
}

const nlohmann::json* JsonFields::Objects(std::string_view key, size_t max, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr) return v;
  if (v->is_array() && v->size() <= max &&
      std::all_of(v->begin(), v->end(), [](const nlohmann::json& e) { return e.is_object(); })) {
    return v;
  }
  Fail(key, fmt::format("must be an array of at most {} objects", max));
  return nullptr;
}

void JsonFields::String(std::string_view key, std::string* out, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr) return;
  if (v->is_string()) *out = v->get<std::string>();
  else Fail(key, "must be a string");
}

void JsonFields::Strings(std::string_view key, std::vector<std::string>* out, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v != nullptr && !ArrayOf(*v, &nlohmann::json::is_string, out)) Fail(key, "must be an array of strings");
}

void JsonFields::Numbers(std::string_view key, std::vector<double>* out, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v != nullptr && !ArrayOf(*v, &nlohmann::json::is_number, out)) Fail(key, "must be an array of numbers");
}

void JsonFields::Number(std::string_view key, double* out, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr) return;
  if (v->is_number()) *out = v->get<double>();
  else Fail(key, "must be a number");
}

void JsonFields::Bool(std::string_view key, bool* out, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr) return;
  if (v->is_boolean()) *out = v->get<bool>();
  else Fail(key, "must be true or false");
}

void JsonFields::Int64(std::string_view key, int64_t* out, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr) return;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Fail(key, "is out of range");
    *out = static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    *out = v->get<int64_t>();
  } else {
    Fail(key, "must be an integer");
  }
}

void JsonFields::Uint(std::string_view key, uint64_t* out, bool required, uint64_t max) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr) return;
  if (v->is_number_unsigned() && v->get<uint64_t>() <= max) *out = v->get<uint64_t>();
  else Fail(key, fmt::format("must be an integer in [0, {}]", max));
}

void JsonFields::Uint32(std::string_view key, uint32_t* out, bool required) {
  uint64_t wide = *out;
  Uint(key, &wide, required, std::numeric_limits<uint32_t>::max());
  *out = static_cast<uint32_t>(wide);
}

void JsonFields::Digest(std::string_view key, meridian::Digest* out, bool required) {
  const nlohmann::json* v = Find(key, required);
  if (v == nullptr) return;
  Result<meridian::Digest> d = v->is_string() ? meridian::Digest::Parse(v->get_ref<const std::string&>())
                                              : Status::InvalidArgument("");
  if (d.ok()) *out = *d;
  else Fail(key, "must be sha256:<64 lowercase hex digits>");
}

void JsonFields::Fail(std::string_view key, std::string_view problem) {
  if (error_.empty()) error_ = fmt::format("{}: field '{}' {}", what_, key, problem);
}

Status JsonFields::Finish() const {
  if (!error_.empty()) return Status::InvalidArgument(error_);
  if (unknown_ == UnknownFields::kIgnore) return Status::Ok();
  for (const auto& item : object_.items()) {
    if (!known_.contains(item.key())) {
      return Status::InvalidArgument(fmt::format("{}: unknown field '{}'", what_, item.key()));
    }
  }
  return Status::Ok();
}

}  // namespace meridian
