// The one way JSON from outside the process is read: bounded in size and
// nesting, and an object that names a key twice is refused. Duplicate keys
// matter for signed documents: two readers that resolve them differently
// (first-wins, last-wins) would see two different documents under one
// signature, so no reader here resolves them at all.
//
// Fields are read with JsonFields, and who wrote a document decides what an
// unknown field means:
// - Written by people (operator and publisher request bodies, rollout specs
//   given to `rollout start`/`plan`; config files, which are TOML, follow the
//   same rule): UnknownFields::kRefuse. A misspelt optional field would
//   otherwise silently become its default.
// - Written by a Meridian program (manifests, envelopes, roots, channel
//   states and the rollouts inside them, delta descriptors, sync documents,
//   agent reports and forwarded report batches, server answers, the daemon's
//   and agent's own state records): UnknownFields::kIgnore. A newer writer
//   adds fields; an older reader must still read the rest (TUF's rule), or a
//   fleet could not be upgraded one program at a time, nor a program
//   downgraded over the state it wrote.
// Everywhere else the rules are the same: duplicate keys, wrong types, values
// out of range, missing required fields and the limits above are refused.
#pragma once

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/status.h"

namespace meridian {

inline constexpr int kJsonDepthMax = 64;
inline constexpr uint64_t kJsonValuesUnlimited = UINT64_MAX;

// Parses `text`. InvalidArgument (naming the cause) when it is not one JSON
// value, nests deeper than kJsonDepthMax, or has an object with a repeated
// key; ResourceExhausted when it is longer than `bytes_max`, or holds more
// than `values_max` values (objects, arrays, strings, numbers, booleans,
// nulls; keys not counted). A value in memory takes 16 to about 100 bytes,
// against 2 or 3 of text: where the text is untrusted and its values few
// (a signed envelope), `values_max` bounds the memory far below that.
Result<nlohmann::json> ParseJson(std::string_view text, uint64_t bytes_max, uint64_t values_max = kJsonValuesUnlimited);

// ParseJson for a document that must be an object; every error is
// InvalidArgument and starts with "<what>: ".
Result<nlohmann::json> ParseJsonObject(std::string_view text, uint64_t bytes_max, std::string_view what);

// JSON text of `j` (nlohmann::json or ordered_json), compact or indented by
// `indent` spaces, which never throws: bytes in a string that are not UTF-8
// (a path, a message from outside, a cut character) are written as U+FFFD,
// and what reads the text back gets valid JSON. A signed document spoilt that
// way no longer verifies, which is the honest outcome.
template <typename Json>
std::string DumpJson(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

enum class UnknownFields { kRefuse, kIgnore };

// Reads the fields of one JSON object into typed outputs, without throwing.
// A field that is absent leaves its output as it was (its default) unless it
// is required. Reading goes on past a problem, but only the first one is
// kept; Finish() reports it as "<what>: field '<key>' <problem>", or, under
// kRefuse, a field nothing read as "<what>: unknown field '<key>'".
class JsonFields {
 public:
  // `object` must be a JSON object that outlives the reader.
  JsonFields(const nlohmann::json& object, std::string_view what, UnknownFields unknown)
      : object_(object), what_(what), unknown_(unknown) {}

  // The member `key`, or nullptr when it is absent (a problem if required).
  const nlohmann::json* Find(std::string_view key, bool required = false);
  // Find, also nullptr (and a problem) when the member is not an object, or
  // not an array of at most `max` elements.
  const nlohmann::json* Object(std::string_view key, bool required = false);
  const nlohmann::json* Array(std::string_view key, size_t max, bool required = false);
  // Array, of objects only: each one is read with a JsonFields of its own.
  const nlohmann::json* Objects(std::string_view key, size_t max, bool required = false);

  void String(std::string_view key, std::string* out, bool required = false);
  void Strings(std::string_view key, std::vector<std::string>* out, bool required = false);
  void Numbers(std::string_view key, std::vector<double>* out, bool required = false);
  void Number(std::string_view key, double* out, bool required = false);
  void Bool(std::string_view key, bool* out, bool required = false);
  void Int64(std::string_view key, int64_t* out, bool required = false);
  // A non-negative integer of at most `max`.
  void Uint(std::string_view key, uint64_t* out, bool required = false,
            uint64_t max = std::numeric_limits<uint64_t>::max());
  void Uint32(std::string_view key, uint32_t* out, bool required = false);
  // A string "sha256:<64 lowercase hex>".
  void Digest(std::string_view key, meridian::Digest* out, bool required = false);

  // A string naming an enumerator. `name` is the enum's public name function,
  // which answers "unknown" past the last enumerator: that ends the search, so
  // a new enumerator needs no second list here.
  template <typename Enum>
  void Choice(std::string_view key, std::string_view (*name)(Enum), Enum* out, bool required = false) {
    const nlohmann::json* v = Find(key, required);
    if (v == nullptr) return;
    std::vector<std::string_view> names;
    for (int i = 0; name(static_cast<Enum>(i)) != "unknown"; ++i) {
      names.push_back(name(static_cast<Enum>(i)));
      if (v->is_string() && v->get_ref<const std::string&>() == names.back()) {
        *out = static_cast<Enum>(i);
        return;
      }
    }
    Fail(key, fmt::format("must be one of {}", fmt::join(names, ", ")));
  }

  // Records a problem of the caller's own (a value of the right type that is
  // not valid), unless an earlier one is kept already.
  void Fail(std::string_view key, std::string_view problem);
  bool ok() const { return error_.empty(); }
  // InvalidArgument with the first problem, then (kRefuse) an unknown field.
  Status Finish() const;

 private:
  const nlohmann::json& object_;
  std::string what_;  // owned: callers often format it on the spot
  UnknownFields unknown_;
  std::set<std::string, std::less<>> known_;
  std::string error_;
};

}  // namespace meridian
