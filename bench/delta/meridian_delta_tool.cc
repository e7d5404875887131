// Bench-only command line over the delta codec, so bench/delta/run.sh can time
// and measure it like the peers:
//   meridian_delta_tool diff OLD NEW DELTA [LITERAL_LEVEL [NUMERIC_LEVEL]]  (files mapped)
//   meridian_delta_tool patch OLD DELTA OUT   (streaming: bounded memory)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "delta/delta.h"

using namespace meridian;

namespace {

// A read-only mapping of a whole file (so only touched pages count as resident).
struct Mapped {
  ByteSpan data;
  explicit Mapped(const char* path) {
    const int fd = open(path, O_RDONLY);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) {
      std::perror(path);
      std::exit(1);
    }
    if (st.st_size > 0) {
      void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        std::perror(path);
        std::exit(1);
      }
      data = ByteSpan(static_cast<const uint8_t*>(p), static_cast<size_t>(st.st_size));
    }
    close(fd);
  }
};

Status ReadAt(int fd, uint64_t offset, std::span<uint8_t> out) {
  for (size_t done = 0; done < out.size();) {
    const ssize_t n = pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n <= 0) return Status::IOError("read failed");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

class FileSourceReader final : public SourceReader {
 public:
  FileSourceReader(int fd, uint64_t size) : fd_(fd), size_(size) {}
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, std::span<uint8_t> out) override { return ReadAt(fd_, offset, out); }

 private:
  int fd_;
  uint64_t size_;
};

// Writes the target to a file it can read back from.
class FileSink final : public TargetSink {
 public:
  explicit FileSink(int fd) : fd_(fd) {}
  Status Write(ByteSpan data) override {
    for (size_t done = 0; done < data.size();) {
      const ssize_t n = write(fd_, data.data() + done, data.size() - done);
      if (n <= 0) return Status::IOError("write failed");
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }
  Status ReadBack(uint64_t offset, std::span<uint8_t> out) override { return ReadAt(fd_, offset, out); }

 private:
  int fd_;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "%s\n", st.ToString().c_str());
  return 1;
}

int Diff(const char* old_path, const char* new_path, const char* delta_path, const char* level,
         const char* numeric_level) {
  Mapped source(old_path), target(new_path);
  DeltaOptions options;
  if (level != nullptr) options.literal_level = std::atoi(level);
  if (numeric_level != nullptr) options.numeric_level = std::atoi(numeric_level);
  Result<Bytes> delta = EncodeDelta(source.data, target.data, options);
  if (!delta.ok()) return Fail(delta.status());
  std::FILE* f = std::fopen(delta_path, "wb");
  if (f == nullptr || std::fwrite(delta->data(), 1, delta->size(), f) != delta->size() || std::fclose(f) != 0) {
    std::perror(delta_path);
    return 1;
  }
  return 0;
}

int Patch(const char* old_path, const char* delta_path, const char* out_path) {
  const int fd = open(old_path, O_RDONLY);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) {
    std::perror(old_path);
    return 1;
  }
  // The caller must know the source digest; a terminal has it from its
  // manifest. Here it is computed by streaming the file once.
  Sha256 hasher;
  FileSourceReader reader(fd, static_cast<uint64_t>(st.st_size));
  Bytes buf(1 << 20);
  for (uint64_t off = 0; off < reader.size(); off += buf.size()) {
    std::span<uint8_t> piece(buf.data(), std::min<uint64_t>(buf.size(), reader.size() - off));
    if (Status s = reader.Read(off, piece); !s.ok()) return Fail(s);
    hasher.Update(piece);
  }
  ApplyOptions options;
  options.source_digest = hasher.Finish();
  std::FILE* in = std::fopen(delta_path, "rb");
  const int out = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (in == nullptr || out < 0) {
    std::perror("open");
    return 1;
  }
  FileSink sink(out);
  DeltaDecoder decoder(reader, sink, options);
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), in)) > 0;) {
    if (Status s = decoder.Append(ByteSpan(buf.data(), n)); !s.ok()) return Fail(s);
  }
  if (Status s = decoder.Finish(); !s.ok()) return Fail(s);
  if (close(out) != 0) {
    std::perror(out_path);
    return 1;
  }
  std::fclose(in);
  close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && argc <= 7 && std::strcmp(argv[1], "diff") == 0) {
    return Diff(argv[2], argv[3], argv[4], argc >= 6 ? argv[5] : nullptr, argc == 7 ? argv[6] : nullptr);
  }
  if (argc == 5 && std::strcmp(argv[1], "patch") == 0) return Patch(argv[2], argv[3], argv[4]);
  std::fprintf(stderr, "usage: %s diff OLD NEW DELTA [LITERAL_LEVEL [NUMERIC_LEVEL]] | patch OLD DELTA OUT\n", argv[0]);
  return 2;
}
