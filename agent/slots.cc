// Slot switching by atomic symlink replacement (see slots.h).
#include "agent/slots.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>

#include "base/file.h"
#include "manifest/manifest.h"

namespace meridian {
namespace {

constexpr size_t kLinkBytesMax = 512;

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
  MERIDIAN_RETURN_IF_ERROR(CreateDirectories(dir_ + "/blobs"));
  return CreateDirectories(staging_dir());
}

std::string ModelSlots::BlobPath(const std::string& version, const Digest& digest) const {
  return dir_ + "/blobs/" + BlobName(version, digest);
}

Result<std::optional<Slot>> ModelSlots::Current() const { return Read(dir_ + "/current"); }
Result<std::optional<Slot>> ModelSlots::Previous() const { return Read(dir_ + "/previous"); }

Result<std::optional<Slot>> ModelSlots::Read(const std::string& link) const {
  char buf[kLinkBytesMax];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf));
  if (n < 0) {
    if (errno == ENOENT) return std::optional<Slot>();
    return ErrnoStatus("readlink " + link, errno);
  }
  std::string target(buf, static_cast<size_t>(n));
  Result<SlotLink> parsed = ParseSlotLink(target);
  if (!parsed.ok()) return parsed.status().WithContext(link);
  Slot s{std::move(parsed->version), parsed->digest, dir_ + "/" + target};
  struct stat st;
  if (::stat(s.path.c_str(), &st) != 0) return Status::Corruption(link + ": " + target + " is missing");
  return std::optional<Slot>(std::move(s));
}

Status ModelSlots::Point(const std::string& link_name, const std::string& blob_name) const {
  std::string tmp = dir_ + "/." + link_name + ".tmp";
  ::unlink(tmp.c_str());
  if (::symlink(("blobs/" + blob_name).c_str(), tmp.c_str()) != 0) return ErrnoStatus("symlink " + tmp, errno);
  if (::rename(tmp.c_str(), (dir_ + "/" + link_name).c_str()) != 0) return ErrnoStatus("rename " + tmp, errno);
  return SyncDirectory(dir_);
}

Status ModelSlots::Unlink(const std::string& link_name) const {
  std::string path = dir_ + "/" + link_name;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + path, errno);
  return SyncDirectory(dir_);
}

Status ModelSlots::Install(const std::string& staged_file, const std::string& version, const Digest& digest) const {
  std::string blob = BlobPath(version, digest);
  if (::rename(staged_file.c_str(), blob.c_str()) != 0) return ErrnoStatus("rename to " + blob, errno);
  MERIDIAN_RETURN_IF_ERROR(SyncDirectory(dir_ + "/blobs"));
  return Activate(version, digest);
}

Status ModelSlots::Activate(const std::string& version, const Digest& digest) const {
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
  return PointBack(*cur);
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
  struct stat st;
  if (next_previous && next_previous->digest != (*prev)->digest && ::stat(next_previous->path.c_str(), &st) == 0) {
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
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/blobs", ec)) {
    if (!keep.count(e.path().string())) std::filesystem::remove(e.path(), ec);
  }
  if (clear_staging) {
    for (const auto& e : std::filesystem::directory_iterator(staging_dir(), ec)) std::filesystem::remove_all(e.path(), ec);
  }
  if (ec) return Status::IOError("collect garbage in " + dir_ + ": " + ec.message());
  MERIDIAN_RETURN_IF_ERROR(SyncDirectory(dir_ + "/blobs"));
  return SyncDirectory(staging_dir());
}

}  // namespace meridian
