// What `meridian publish` and `meridian sign` share: reading release keys and
// the daemon's answer to a commit, which may leave the version waiting for
// more signatures (202). Private to the CLI.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "client/http_client.h"
#include "signing/signing.h"

namespace meridian::cli {

// Secret key files, each a release manager's; InvalidArgument naming the
// file that does not load, or when the same key is given twice.
Result<std::vector<SecretKey>> ReadReleaseKeys(const std::vector<std::string>& files);

struct CommitAnswer {
  bool pending = false;              // 202: waiting for more release signatures
  std::vector<std::string> signers;  // the release keys that signed it so far (pending only)
  uint64_t threshold = 0;            // signatures it needs (pending only)
};
// A 200, 201 or 202 answer to POST /v1/models/{model}/versions.
Result<CommitAnswer> ParseCommitAnswer(const HttpReply& reply);
// For people: "1 of 2 release signatures (…)" and what to do next, when pending.
void PrintCommitAnswer(const std::string& model, const std::string& version, const CommitAnswer& answer);

}  // namespace meridian::cli
