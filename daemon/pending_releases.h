// Releases waiting for co-signers: manifest envelopes signed by at least one
// release key of the root but by fewer than its threshold. They are kept
// durably in the store's state space ("pending-release/<model>/<version>")
// and nowhere else: not among the manifests, so nothing lists, serves,
// replicates or rolls out a pending version. Once its signatures reach the
// threshold the caller commits it as any publish, then removes it here.
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "signing/signing.h"
#include "store/store.h"
#include "trust/trust.h"

namespace meridian {

// Versions pending at once, all models together: each holds a manifest
// envelope (up to kParseEnvelopeBytesMax), so this bounds their memory and disk.
inline constexpr size_t kPendingReleasesMax = 64;

struct PendingRelease {
  CoSignedManifest release;
  int64_t received_ms = 0;  // when its first signature arrived
};

class PendingReleases {
 public:
  // Loads the pending versions kept in `store`, each verified again against
  // `root`; one that no longer verifies (damaged, or none of its signers left
  // in a rotated root) is dropped.
  static Result<std::unique_ptr<PendingReleases>> Open(Store& store, const Root& root,
                                                       size_t pending_max = kPendingReleasesMax);

  // Adds the signatures of `signed_release` to those kept for its version and
  // keeps the result (durably when OK), complete or not: a complete one stays
  // until Remove, so its signatures are not lost when its commit fails
  // (chunks still missing). Returns what is kept now. InvalidArgument when
  // the version is pending with another payload (another release under that
  // number); ResourceExhausted when pending_max versions are pending already.
  Result<CoSignedManifest> Add(const Root& root, const CoSignedManifest& signed_release, int64_t now_ms);
  // Forgets a version (committed, or never pending): OK either way.
  Status Remove(const std::string& model, const std::string& version);
  // The envelope kept for a version, as JSON; NotFound.
  Result<std::string> EnvelopeJson(const std::string& model, const std::string& version) const;
  // Every pending version, by model then version (lexical).
  std::vector<PendingRelease> List() const;

 private:
  using Key = std::pair<std::string, std::string>;  // model, version
  PendingReleases(Store& store, size_t pending_max) : store_(store), pending_max_(pending_max) {}
  static std::string StateKey(const Key& key);

  Store& store_;
  const size_t pending_max_;
  mutable std::mutex mu_;
  std::map<Key, PendingRelease> pending_;  // guarded by mu_
};

}  // namespace meridian
