// meridian diff and meridian patch: deltas between local files, offline.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>

#include <fmt/format.h>

#include "base/env.h"
#include "base/file.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "client/delta_files.h"
#include "delta/delta.h"

namespace meridian::cli {

namespace {

constexpr size_t kDeltaReadPieceBytes = 1 << 20;

// A read-only memory map of a whole file (the encoder works on spans).
class MappedFile {
 public:
  ~MappedFile() {
    if (data_ != nullptr && size_ > 0) ::munmap(data_, size_);
  }
  static Result<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    Result<ReadOnlyFile> f = OpenReadOnly(path);
    if (!f.ok()) return f.status();
    auto m = std::unique_ptr<MappedFile>(new MappedFile());
    m->size_ = static_cast<size_t>(f->size);
    if (m->size_ > 0) {
      m->data_ = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, f->fd, 0);
      if (m->data_ == MAP_FAILED) {
        int err = errno;
        ::close(f->fd);
        m->data_ = nullptr;
        return ErrnoStatus("map " + path, err);
      }
    }
    ::close(f->fd);
    return m;
  }
  ByteSpan bytes() const { return {static_cast<const uint8_t*>(data_), size_}; }

 private:
  MappedFile() = default;
  void* data_ = nullptr;
  size_t size_ = 0;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

int Diff(const GlobalOptions& g, const std::string& old_path, const std::string& new_path, const std::string& out,
         std::optional<int> zstd_literal_level) {
  auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<MappedFile>> source = MappedFile::Open(old_path);
  if (!source.ok()) return Fail(source.status());
  Result<std::unique_ptr<MappedFile>> target = MappedFile::Open(new_path);
  if (!target.ok()) return Fail(target.status());
  Progress progress("encoding", (*target)->bytes().size(), !g.json);
  DeltaOptions options;
  options.on_progress = [&progress](uint64_t bytes) { progress.Add(bytes); };
  if (zstd_literal_level) {
    options.literal_codec = LiteralCodec::kZstd;
    options.literal_level = *zstd_literal_level;
  }
  Result<Bytes> delta = EncodeDelta((*source)->bytes(), (*target)->bytes(), options);
  if (!delta.ok()) return Fail(delta.status());
  if (Status st = WriteFileAtomic(out, *delta); !st.ok()) return Fail(st);
  uint64_t target_size = (*target)->bytes().size();
  double pct = target_size == 0 ? 0 : 100.0 * static_cast<double>(delta->size()) / static_cast<double>(target_size);
  if (g.json) {
    PrintJson({{"delta", out}, {"delta_bytes", delta->size()}, {"target_bytes", target_size},
               {"seconds", Seconds(start)}});
  } else {
    fmt::print("wrote {}: {} bytes, {:.2f}% of {} ({:.1f} s)\n", out, delta->size(), pct, new_path, Seconds(start));
  }
  return 0;
}

int Patch(const GlobalOptions& g, const std::string& old_path, const std::string& delta_path, const std::string& out) {
  auto start = std::chrono::steady_clock::now();
  Result<Digest> source_digest = Env::Default().DigestOfFile(old_path);
  if (!source_digest.ok()) return Fail(source_digest.status());
  Result<std::unique_ptr<FileSourceReader>> source = FileSourceReader::Open(old_path);
  if (!source.ok()) return Fail(source.status());
  Result<std::unique_ptr<FileSourceReader>> delta = FileSourceReader::Open(delta_path);
  if (!delta.ok()) return Fail(delta.status());
  std::string staging = out + ".partial." + std::to_string(::getpid());
  Result<std::unique_ptr<FileTargetSink>> sink = FileTargetSink::Create(staging);
  if (!sink.ok()) return Fail(sink.status());

  ApplyOptions options;
  options.source_digest = *source_digest;
  DeltaDecoder decoder(**source, **sink, options);
  Bytes piece(kDeltaReadPieceBytes);
  Status st;
  {
    Progress progress("applying", (*delta)->size(), !g.json);
    for (uint64_t off = 0; st.ok() && off < (*delta)->size();) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(piece.size(), (*delta)->size() - off));
      st = (*delta)->Read(off, std::span<uint8_t>(piece.data(), n));
      if (st.ok()) st = decoder.Append(ByteSpan(piece.data(), n));
      off += n;
      progress.Add(n);
    }
  }
  if (st.ok()) st = decoder.Finish();
  if (st.ok()) st = (*sink)->Sync();
  if (!st.ok()) {
    Env::Default().RemoveFile(staging);  // best effort: never left beside the output
    return Fail(delta_path + ": " + st.message());
  }
  // Verified and fsynced: renamed over the output, its directory synced.
  if (Status published = Env::Default().PublishFile(staging, out); !published.ok()) return Fail(published);
  if (g.json) {
    PrintJson({{"out", out}, {"bytes", decoder.target_bytes_written()}, {"digest", decoder.header()->target_digest.ToString()},
               {"seconds", Seconds(start)}});
  } else {
    fmt::print("wrote {}: {} bytes, verified {} ({:.1f} s)\n", out, decoder.target_bytes_written(),
               decoder.header()->target_digest.ToString(), Seconds(start));
  }
  return 0;
}

}  // namespace meridian::cli
