// What a region reads from its upstream and keeps of it, as JSON: the sync
// document (GET /v1/sync, docs/api.md "Regions"), the revocations it carries,
// and the record of them a region stores. Pure: the follower fetches, the
// enrolment stores.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/status.h"

namespace meridian {

// A terminal revoked at a time: credentials it was issued before then are refused.
struct Revocation {
  std::string terminal_id;
  int64_t revoked_ms = 0;
  bool operator==(const Revocation&) const = default;
};

// The JSON form of revocations, as the sync document and a region's state carry them:
//   [{"terminal":"…","revoked_ms":N}, …]
nlohmann::json RevocationsToJson(const std::vector<Revocation>& revocations);
Result<std::vector<Revocation>> RevocationsFromJson(const nlohmann::json& j);

// ---------------------------------------------------------------------------
// The sync document (GET /v1/sync): what an upstream holds.

struct SyncVersion {
  std::string model;
  std::string version;
  std::vector<std::string> regions;  // from the manifest; empty = all (a hint: the signed manifest decides)
  bool operator==(const SyncVersion&) const = default;
};

struct SyncChannel {
  std::string model;
  std::string channel;
  uint64_t state_version = 0;
  std::string envelope;  // the signed channel state, verbatim
  bool operator==(const SyncChannel&) const = default;
};

struct SyncDocument {
  uint64_t sync_version = 0;  // grows with every version stored, channel state signed, root and terminal revoked upstream
  int64_t root_version = 0;   // the newest root upstream (0: an upstream that serves no chain of roots)
  std::vector<SyncVersion> versions;
  std::vector<SyncChannel> channels;
  std::vector<Revocation> revoked;  // terminals revoked within a credential's lifetime (Enrolment)
  uint64_t revocations = 0;         // how many the origin ever made: a part of sync_version
  bool operator==(const SyncDocument&) const = default;
};

inline constexpr size_t kSyncDocumentBytesMax = 256u << 20;

std::string SyncDocumentToJson(const SyncDocument& doc);
Result<SyncDocument> ParseSyncDocument(std::string_view json);

// ---------------------------------------------------------------------------
// The revocations a region adopted from its upstream's sync document, as it
// stores them (state key "revoked-terminals", daemon/enrolment.h):
//   {"made":N,"revoked":[…RevocationsToJson…]}

struct RegionRevocations {
  uint64_t made = 0;  // how many the origin ever made
  std::vector<Revocation> revoked;
  bool operator==(const RegionRevocations&) const = default;
};

std::string RegionRevocationsToJson(const RegionRevocations& record);
// InvalidArgument when malformed (the caller reports it as corruption).
Result<RegionRevocations> ParseRegionRevocations(std::string_view json);

}  // namespace meridian
