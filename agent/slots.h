// A model's slots in the agent's state directory: complete, verified files
// under blobs/, the `current` and `previous` symlinks that point at them, and
// a staging directory for downloads. Every switch is a symlink renamed over
// the old one and a directory fsync, so a crash at any moment leaves
// `current` naming a complete file (layout: docs/agent.md).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/env.h"
#include "base/status.h"

namespace meridian {

struct Slot {
  std::string version;
  Digest digest;     // SHA-256 of the file, verified before it entered blobs/
  std::string path;  // absolute path of the file under blobs/
};

// What a `current` or `previous` link points at, "blobs/<version>_<sha256
// hex>" (docs/agent.md): readlink tells what runs. A link a crash or a hand
// damaged is refused by ParseSlotLink, never followed.
struct SlotLink {
  std::string version;
  Digest digest;
  bool operator==(const SlotLink&) const = default;
};
std::string SlotLinkTarget(const std::string& version, const Digest& digest);
// Corruption ("malformed link …") unless `target` is what SlotLinkTarget makes
// of a valid version and a digest.
Result<SlotLink> ParseSlotLink(std::string_view target);

class ModelSlots {
 public:
  // `dir` is STATE/models/<name>, reached through `env`.
  explicit ModelSlots(std::string dir, Env& env = Env::Default()) : dir_(std::move(dir)), env_(&env) {}
  // Creates the directories.
  Status Init() const;

  // The slot a link points at; nullopt when there is none. Corruption when the
  // link is malformed or its file is missing.
  Result<std::optional<Slot>> Current() const;
  Result<std::optional<Slot>> Previous() const;

  std::string dir() const { return dir_; }
  std::string staging_dir() const { return dir_ + "/staging"; }
  std::string current_link() const { return dir_ + "/current"; }
  // Where a verified file of `version`/`digest` lives once installed.
  std::string BlobPath(const std::string& version, const Digest& digest) const;

  // Moves `staged_file` (complete, its digest verified, fsynced, on the same
  // file system) into blobs/ and makes it current; the old current becomes
  // previous. The caller verified `digest`.
  Status Install(const std::string& staged_file, const std::string& version, const Digest& digest) const;
  // Makes an already stored blob current (the old current becomes previous).
  // blobs/ is synced first: a blob moved there by a run that stopped before
  // its directory was synced would otherwise be named by a durable link and
  // lost in a power cut.
  Status Activate(const std::string& version, const Digest& digest) const;
  // Points current back at previous and keeps the old current as the new
  // previous (a rollback target, which may roll forward again), exchanging
  // the two links atomically (Env::Exchange; one after the other where the
  // file system cannot). FailedPrecondition when there is no previous slot.
  Status SwitchBack() const;
  // After the current version failed its health check: points current back at
  // previous, drops the failed one, and makes `fallback` — the slot that was
  // previous before the failed switch — previous again when its file is still
  // stored and it is neither version, so that the next failure still has a
  // version to fall back to; otherwise no slot is previous.
  // FailedPrecondition when there is no previous slot.
  Status FallBack(const std::optional<Slot>& fallback) const;
  // Removes blobs neither link names, and everything in staging/ when
  // `clear_staging`. Best effort: errors are returned but nothing depends on them.
  Status CollectGarbage(bool clear_staging) const;

 private:
  Result<std::optional<Slot>> Read(const std::string& link) const;
  // Points current at previous, then previous at `next_previous` when that
  // is another version whose file is stored; otherwise removes previous.
  Status PointBack(const std::optional<Slot>& next_previous) const;
  Status Point(const std::string& link_name, const std::string& blob_name) const;
  Status Unlink(const std::string& link_name) const;
  std::string dir_;
  Env* env_;
};

}  // namespace meridian
