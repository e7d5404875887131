// The descriptor of a delta a daemon serves: which versions it joins, whether
// it is worth downloading, and the digest and size of its bytes. The daemon
// signs it with its online key (DSSE, kDeltaInfoPayloadType) so a client knows
// exactly what it is about to download and apply. Pure: JSON only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/status.h"

namespace meridian {

inline constexpr std::string_view kDeltaInfoPayloadType = "application/vnd.meridian.delta-info.v1+json";
inline constexpr size_t kDeltaInfoJsonBytesMax = 64 * 1024;

struct DeltaInfo {
  Digest from;                            // source artifact
  Digest to;                              // target artifact
  bool worthwhile = false;                // false: download the artifact instead
  std::string reason;                     // why not worthwhile
  Digest digest;                          // of the delta bytes (when worthwhile)
  uint64_t size = 0;                      // delta bytes (when worthwhile)
  uint64_t artifact_size = 0;             // the target, uncompressed
  uint64_t compressed_artifact_size = 0;  // the target zstd-compressed: what a full download costs at best
  bool operator==(const DeltaInfo&) const = default;
};

// {"from","to","worthwhile","reason"?,"digest"?,"size"?,"artifact_size","compressed_artifact_size"}
std::string DeltaInfoToJson(const DeltaInfo& info);
// InvalidArgument on malformed input or over kDeltaInfoJsonBytesMax.
Result<DeltaInfo> ParseDeltaInfo(std::string_view json);

}  // namespace meridian
