// meridian diff and meridian patch: deltas between local files, offline.
#include <fcntl.h>
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

// Sets the format version in the header of the delta at `path` (written
// first, before the encoder knew the lowest version its operations need).
Status SetFormatVersion(const std::string& path, uint16_t version) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  uint8_t header[kDeltaHeaderBytes];
  ssize_t n = ::pread(fd, header, sizeof(header), 0);
  if (n == static_cast<ssize_t>(sizeof(header))) {
    delta_format::SetFormatVersion(header, version);
    n = ::pwrite(fd, header, sizeof(header), 0);
  }
  const int err = errno;
  ::close(fd);
  return n == static_cast<ssize_t>(sizeof(header)) ? Status::Ok()
                                                   : ErrnoStatus("rewrite the header of " + path, n < 0 ? err : EIO);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

int Diff(const GlobalOptions& g, const std::string& old_path, const std::string& new_path, const std::string& out,
         std::optional<int> zstd_literal_level, uint64_t memory_mib) {
  auto start = std::chrono::steady_clock::now();
  // Both files are read through readers, windows at a time when they are
  // larger than the memory budget, and hashed first: the delta's header
  // names them, and the encoder checks what it reads against those digests.
  Result<Digest> source_digest = Env::Default().DigestOfFile(old_path);
  if (!source_digest.ok()) return Fail(source_digest.status());
  Result<Digest> target_digest = Env::Default().DigestOfFile(new_path);
  if (!target_digest.ok()) return Fail(target_digest.status());
  Result<std::unique_ptr<FileSourceReader>> source = FileSourceReader::Open(old_path);
  if (!source.ok()) return Fail(source.status());
  Result<std::unique_ptr<FileSourceReader>> target = FileSourceReader::Open(new_path);
  if (!target.ok()) return Fail(target.status());
  const std::string staging = out + ".partial." + std::to_string(::getpid());
  Result<std::unique_ptr<FileTargetSink>> sink = FileTargetSink::Create(staging);
  if (!sink.ok()) return Fail(sink.status());

  DeltaOptions options;
  options.memory_bytes_max = memory_mib << 20;
  if (zstd_literal_level) {
    options.literal_codec = LiteralCodec::kZstd;
    options.literal_level = *zstd_literal_level;
  }
  const uint64_t target_size = (*target)->size();
  Result<uint16_t> version = uint16_t{0};
  {
    Progress progress("encoding", target_size, !g.json);
    options.on_progress = [&progress](uint64_t bytes) { progress.Add(bytes); };
    version = EncodeDelta({**source, *source_digest}, {**target, *target_digest}, options,
                          [&](ByteSpan bytes) { return (*sink)->Write(bytes); });
  }
  Status st = version.status();
  if (st.ok()) st = SetFormatVersion(staging, *version);
  if (st.ok()) st = (*sink)->Sync();  // syncs the file, the rewritten header too
  if (st.ok()) st = Env::Default().PublishFile(staging, out);
  if (!st.ok()) {
    Env::Default().RemoveFile(staging);  // best effort: never left beside the output
    return Fail(st);
  }
  const uint64_t delta_size = (*sink)->bytes_written();
  double pct = target_size == 0 ? 0 : 100.0 * static_cast<double>(delta_size) / static_cast<double>(target_size);
  if (g.json) {
    PrintJson({{"delta", out}, {"delta_bytes", delta_size}, {"target_bytes", target_size}, {"seconds", Seconds(start)}});
  } else {
    fmt::print("wrote {}: {} bytes, {:.2f}% of {} ({:.1f} s)\n", out, delta_size, pct, new_path, Seconds(start));
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
