// ParseJson: nlohmann's DOM builder counting keys and nesting, so that
// repeats (which nlohmann folds silently) are seen.
// JsonFields: typed reads of one object, each checking the type first, since
// nlohmann is used without exceptions.
#include "base/json.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace meridian {

namespace {

// nlohmann's DOM builder with a limit on nesting and a count of the keys read.
// (nlohmann's parser with a callback would serve, but it rescans an array after
// each element that closes inside it: quadratic in the length of an array of
// objects, minutes for a manifest of 65,536 pages.)
class CheckedDomParser : public nlohmann::detail::json_sax_dom_parser<nlohmann::json> {
 public:
  using Base = nlohmann::detail::json_sax_dom_parser<nlohmann::json>;
  CheckedDomParser(nlohmann::json& document, uint64_t values_max)
      : Base(document, /*allow_exceptions_=*/false), values_left_(values_max) {}

  bool start_object(std::size_t n) { return Enter() && Base::start_object(n); }
  bool end_object() { --depth_; return Base::end_object(); }
  bool start_array(std::size_t n) { return Enter() && Base::start_array(n); }
  bool end_array() { --depth_; return Base::end_array(); }
  bool key(string_t& k) { ++keys_; return Base::key(k); }
  bool null() { return Value() && Base::null(); }
  bool boolean(bool v) { return Value() && Base::boolean(v); }
  bool number_integer(number_integer_t v) { return Value() && Base::number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return Value() && Base::number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return Value() && Base::number_float(v, s); }
  bool string(string_t& v) { return Value() && Base::string(v); }
  bool binary(binary_t& v) { return Value() && Base::binary(v); }

  bool too_deep() const { return too_deep_; }
  bool too_many() const { return too_many_; }
  uint64_t keys() const { return keys_; }

 private:
  bool Enter() {
    too_deep_ = ++depth_ > kJsonDepthMax;
    return !too_deep_ && Value();
  }
  bool Value() {
    too_many_ = values_left_ == 0;
    --values_left_;
    return !too_many_;
  }
  int depth_ = 0;
  bool too_deep_ = false;
  bool too_many_ = false;
  uint64_t values_left_;
  uint64_t keys_ = 0;
};

// The members of every object in `j`.
uint64_t Members(const nlohmann::json& j) {
  uint64_t n = j.is_object() ? j.size() : 0;
  if (j.is_structured()) {
    for (const nlohmann::json& e : j) n += Members(e);
  }
  return n;
}

}  // namespace

Result<nlohmann::json> ParseJson(std::string_view text, uint64_t bytes_max, uint64_t values_max) {
  if (text.size() > bytes_max) {
    return Status::ResourceExhausted(fmt::format("JSON of {} bytes exceeds the {} byte limit", text.size(), bytes_max));
  }
  nlohmann::json j;
  CheckedDomParser sax(j, values_max);
  const bool parsed = nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  if (sax.too_deep()) return Status::InvalidArgument(fmt::format("JSON nests deeper than {} levels", kJsonDepthMax));
  if (sax.too_many()) return Status::ResourceExhausted(fmt::format("JSON holds more than {} values", values_max));
  if (!parsed || sax.is_errored()) return Status::InvalidArgument("not valid JSON");
  // nlohmann keeps the last of a repeated key: a document with one holds
  // fewer members than keys were read.
  if (Members(j) != sax.keys()) return Status::InvalidArgument("JSON object repeats a key");
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
