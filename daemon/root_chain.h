// The chain of roots a daemon trusts and serves: the root of its data
// directory (DATA/root.json) and every rotation accepted since, each signed
// by a threshold of the previous root's root keys and of its own
// (signing/ VerifyRootUpdate). Rotations are kept in the store's state space
// ("root/<version, 20 digits>"), envelope bytes as signed, so terminals and
// regions can follow the chain one version at a time (GET /v1/roots/{version}).
// The newest root decides which keys sign manifests from the moment it is added.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/status.h"
#include "signing/signing.h"
#include "store/store.h"

namespace meridian {

// Rotations kept: far more than any deployment makes, few enough to load at once.
inline constexpr size_t kRootChainLengthMax = 1000;

class RootChain {
 public:
  // Starts from `initial_envelope_json` (a root envelope the root signs
  // itself: LoadTrustedRoot) and follows the rotations kept in `store`, each
  // verified again. InvalidArgument / PermissionDenied for an initial root
  // that does not load; Corruption when a kept rotation no longer verifies.
  static Result<std::unique_ptr<RootChain>> Open(Store& store, std::string initial_envelope_json);

  // The newest root, shared and immutable.
  std::shared_ptr<const Root> Current() const;
  // Its version.
  int64_t latest_version() const;
  // The envelope of root `version`, byte for byte as signed; NotFound for a
  // version older than the initial root or newer than the latest.
  Result<std::string> EnvelopeJson(int64_t version) const;
  // Accepts root Current()->version + 1: VerifyRootUpdate's errors
  // (InvalidArgument, PermissionDenied, FailedPrecondition for another
  // version), FailedPrecondition when it has expired at `fresh_at_unix_ms`
  // (CheckRootFresh; not checked without one: a region catching up passes
  // through roots that expired since), ResourceExhausted past
  // kRootChainLengthMax. Durable when OK; the new root is current from then on.
  Status Add(const std::string& envelope_json, std::optional<int64_t> fresh_at_unix_ms);

 private:
  explicit RootChain(Store& store) : store_(store) {}
  // VerifyRootUpdate of an envelope against the current root; mu_ held.
  Result<Root> VerifyNext(const std::string& envelope_json) const;
  // Makes a verified root current; mu_ held.
  void Adopt(const std::string& envelope_json, Root next);

  Store& store_;
  mutable std::mutex mu_;
  std::shared_ptr<const Root> current_;         // guarded by mu_
  int64_t first_version_ = 0;                   // of the initial root
  std::map<int64_t, std::string> envelopes_;    // version -> envelope JSON, initial root included; guarded by mu_
};

}  // namespace meridian
