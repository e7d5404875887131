// What a daemon must know of every version it lists before it touches any
// bytes: whether the version's residency lets this daemon hold them, and
// whether anyone may read them without a credential. Reads are decided from
// here — a 451 for bytes this daemon may not hold, a 401 for an anonymous
// read of a private model — so neither costs a store read, let alone work.
//
// Kept in memory, rebuilt from the stored manifests at start (Load) and told
// of each version committed since (Learn). It holds sets only for the
// exceptions: public versions (with their chunks and artifacts) and the chunks
// and artifacts of versions held elsewhere. Private versions held here, the
// common case, cost nothing.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_set>

#include "base/digest.h"
#include "base/status.h"
#include "manifest/manifest.h"
#include "store/store.h"

namespace meridian {

// How many bytes of one model a daemon holds, for GET /v1/residency.
struct ModelHolding {
  uint64_t versions = 0;        // versions listed (with bytes or manifest only)
  uint64_t versions_held = 0;   // of those, versions whose every chunk is stored here
  uint64_t bytes = 0;           // distinct chunk bytes of the model stored here
  bool operator==(const ModelHolding&) const = default;
};

// The body of POST /v1/holdings, in which a region tells its upstream what it
// holds: {"region": ID, "models": {NAME: {"versions": N, "versions_held": N, "bytes": N}}}.
inline constexpr size_t kHoldingsModelsMax = 100'000;
std::string HoldingsToJson(std::string_view region, const std::map<std::string, ModelHolding>& models);
// InvalidArgument naming the field for anything malformed or past kHoldingsModelsMax.
Result<std::map<std::string, ModelHolding>> ParseHoldings(std::string_view json, std::string* region);

class Catalog {
 public:
  // `jurisdiction`: the region this daemon stands in. A region daemon's is
  // its region; an origin's is what its operator declares, or "" — then it
  // may hold only models without residency.
  explicit Catalog(std::string jurisdiction) : jurisdiction_(std::move(jurisdiction)) {}

  const std::string& jurisdiction() const { return jurisdiction_; }
  // Whether a model resident in `regions` (empty: anywhere) may have bytes here.
  bool MayHold(const std::vector<std::string>& regions) const;
  bool MayHold(const Manifest& m) const { return MayHold(m.regions); }
  // "this daemon's jurisdiction is 'sg'", or that it declares none: for the 451s.
  std::string DescribeJurisdiction() const;

  // Every version in `store`, replacing what was known (Reload after a
  // version is deleted). Memory: the digest sets above.
  Status Load(Store& store);
  // A version committed since Load.
  void Learn(const Manifest& m);

  // A chunk, artifact or version of some public version held here. Looked up
  // in memory: an anonymous request costs no store read to refuse.
  bool IsPublicChunk(const Digest& chunk) const;
  bool IsPublicArtifact(const Digest& artifact) const;
  bool IsPublicVersion(const std::string& model, const std::string& version) const;
  // The public versions of `model` among `versions`, in their order.
  std::vector<std::string> PublicVersions(const std::string& model, const std::vector<std::string>& versions) const;
  // A chunk or artifact of some version whose bytes this daemon may not hold
  // (a chunk shared with a version held here is stored and served anyway).
  bool IsElsewhereChunk(const Digest& chunk) const;
  bool IsElsewhereArtifact(const Digest& artifact) const;

  // Per model, what `store` holds of it: every chunk of every listed version
  // is looked up, so bytes that should not be here are counted too. A
  // version that no longer reads here (Corruption: a damaged envelope, a
  // lost index page) counts as a version not held, its bytes unknown.
  static Result<std::map<std::string, ModelHolding>> Holdings(Store& store);

 private:
  const std::string jurisdiction_;
  // The exceptions, by kind.
  struct Sets {
    std::unordered_set<Digest> public_chunks;
    std::unordered_set<Digest> public_artifacts;
    std::set<std::pair<std::string, std::string>> public_versions;  // (model, version)
    std::unordered_set<Digest> elsewhere_chunks;
    std::unordered_set<Digest> elsewhere_artifacts;
  };
  // Adds what `m` makes an exception of, if anything.
  void Add(Sets& sets, const Manifest& m) const;

  // Held by Load and Learn: a version committed while Load lists the store
  // is learnt after Load replaced the sets, never lost to the replacement.
  std::mutex load_mu_;
  mutable std::shared_mutex mu_;
  Sets sets_;  // guarded by mu_
};

}  // namespace meridian
