// Slot switching by atomic symlink replacement (see slots.h).
#include "agent/slots.h"

#include <set>

#include "manifest/manifest.h"

namespace meridian {
namespace {

// Blob names are "<version>_<64 hex>": '_' never occurs in a SemVer version.
std::string BlobName(const std::string& version, const Digest& digest) { return version + "_" + digest.Hex(); }

constexpr std::string_view kBlobsPrefix = "blobs/";

}  // namespace

std::string SlotLinkTarget(const std::string& version, const Digest& digest) {
  return std::string(kBlobsPrefix) + BlobName(version, digest);
}

Result<SlotLink> ParseSlotLink(std::string_view target) {
  auto malformed = [&target] { return Status::Corruption("malformed link " + std::string(target)); };
  size_t sep = target.rfind('_');
  if (!target.starts_with(kBlobsPrefix) || sep == std::string_view::npos) return malformed();
  SlotLink link;
  link.version = std::string(target.substr(kBlobsPrefix.size(), sep - kBlobsPrefix.size()));
  Result<Digest> d = Digest::Parse(std::string(Digest::kPrefix) + std::string(target.substr(sep + 1)));
  if (!IsValidVersion(link.version) || !d.ok()) return malformed();
  link.digest = *d;
  return link;
}

Status ModelSlots::Init() const {
  MERIDIAN_RETURN_IF_ERROR(env_->CreateDirectories(dir_ + "/blobs"));
  return env_->CreateDirectories(staging_dir());
}

std::string ModelSlots::BlobPath(const std::string& version, const Digest& digest) const {
  return dir_ + "/blobs/" + BlobName(version, digest);
}

Result<std::optional<Slot>> ModelSlots::Current() const { return Read(dir_ + "/current"); }
Result<std::optional<Slot>> ModelSlots::Previous() const { return Read(dir_ + "/previous"); }

Result<std::optional<Slot>> ModelSlots::Read(const std::string& link) const {
  Result<std::string> target = env_->ReadLink(link);
  if (!target.ok() && target.status().code() == Status::Code::kNotFound) return std::optional<Slot>();
  if (!target.ok()) return target.status();
  Result<SlotLink> parsed = ParseSlotLink(*target);
  if (!parsed.ok()) return parsed.status().WithContext(link);
  Slot s{std::move(parsed->version), parsed->digest, dir_ + "/" + *target};
  if (!env_->Exists(s.path)) return Status::Corruption(link + ": " + *target + " is missing");
  return std::optional<Slot>(std::move(s));
}

Status ModelSlots::Point(const std::string& link_name, const std::string& blob_name) const {
  std::string tmp = dir_ + "/." + link_name + ".tmp";
  env_->RemoveFile(tmp);  // what a crash left; absent as a rule
  MERIDIAN_RETURN_IF_ERROR(env_->Symlink("blobs/" + blob_name, tmp));
  MERIDIAN_RETURN_IF_ERROR(env_->Rename(tmp, dir_ + "/" + link_name));
  return env_->SyncDirectory(dir_);
}

Status ModelSlots::Unlink(const std::string& link_name) const {
  Status removed = env_->RemoveFile(dir_ + "/" + link_name);
  if (!removed.ok() && removed.code() != Status::Code::kNotFound) return removed;
  return env_->SyncDirectory(dir_);
}

Status ModelSlots::Install(const std::string& staged_file, const std::string& version, const Digest& digest) const {
  std::string blob = BlobPath(version, digest);
  MERIDIAN_RETURN_IF_ERROR(env_->Rename(staged_file, blob));
  return Activate(version, digest);  // syncs blobs/ before a link names the blob
}

Status ModelSlots::Activate(const std::string& version, const Digest& digest) const {
  MERIDIAN_RETURN_IF_ERROR(env_->SyncDirectory(dir_ + "/blobs"));
  Result<std::optional<Slot>> cur = Current();
  if (!cur.ok()) return cur.status();
  // previous first: a crash between the two leaves both naming the old
  // version, which still runs.
  if (cur->has_value() && (*cur)->digest != digest) {
    MERIDIAN_RETURN_IF_ERROR(Point("previous", BlobName((*cur)->version, (*cur)->digest)));
  }
  return Point("current", BlobName(version, digest));
}

Status ModelSlots::SwitchBack() const {
  Result<std::optional<Slot>> cur = Current();
  if (!cur.ok()) return cur.status();
  Result<std::optional<Slot>> prev = Previous();
  if (!prev.ok()) return prev.status();
  if (!cur->has_value() || !prev->has_value()) return PointBack(*cur);  // its error, when nothing is previous
  // One atomic swap of the two links: switched one at a time, a crash in
  // between would leave both on the old previous, and the version switched
  // away from would no longer be one to go back to.
  Status swapped = env_->Exchange(current_link(), dir_ + "/previous");
  if (swapped.code() == Status::Code::kFailedPrecondition) return PointBack(*cur);
  MERIDIAN_RETURN_IF_ERROR(swapped);
  return env_->SyncDirectory(dir_);
}

Status ModelSlots::FallBack(const std::optional<Slot>& fallback) const {
  Result<std::optional<Slot>> failed = Current();
  if (!failed.ok()) return failed.status();
  bool is_failed = fallback && failed->has_value() && (*failed)->digest == fallback->digest;
  return PointBack(is_failed ? std::nullopt : fallback);
}

Status ModelSlots::PointBack(const std::optional<Slot>& next_previous) const {
  Result<std::optional<Slot>> prev = Previous();
  if (!prev.ok()) return prev.status();
  if (!prev->has_value()) return Status::FailedPrecondition("no previous version to switch back to");
  // current first: from here on the version switched away from no longer runs.
  MERIDIAN_RETURN_IF_ERROR(Point("current", BlobName((*prev)->version, (*prev)->digest)));
  if (next_previous && next_previous->digest != (*prev)->digest && env_->Exists(next_previous->path)) {
    return Point("previous", BlobName(next_previous->version, next_previous->digest));
  }
  return Unlink("previous");
}

Status ModelSlots::CollectGarbage(bool clear_staging) const {
  std::set<std::string> keep;
  for (const Result<std::optional<Slot>>& s : {Current(), Previous()}) {
    if (!s.ok()) return s.status();
    if (s->has_value()) keep.insert((*s)->path);
  }
  // Every file is tried; the first error is returned.
  Status first;
  auto note = [&first](const Status& st) {
    if (!st.ok() && first.ok()) first = st;
  };
  auto remove_unkept = [&](const std::string& dir) {
    Result<std::vector<std::string>> names = env_->ListDirectory(dir);
    if (!names.ok()) return note(names.status());
    for (const std::string& n : *names) {
      if (!keep.count(dir + "/" + n)) note(env_->RemoveFile(dir + "/" + n));
    }
  };
  remove_unkept(dir_ + "/blobs");
  if (clear_staging) remove_unkept(staging_dir());
  if (!first.ok()) return first.WithContext("collect garbage in " + dir_);
  MERIDIAN_RETURN_IF_ERROR(env_->SyncDirectory(dir_ + "/blobs"));
  return env_->SyncDirectory(staging_dir());
}

}  // namespace meridian
