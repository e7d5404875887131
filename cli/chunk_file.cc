#include "cli/chunk_file.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "base/digest.h"
#include "base/env.h"
#include "delta/chunker.h"

namespace meridian::cli {

namespace {

constexpr size_t kReadBlockBytes = 8 << 20;
// Blocks read and hashed ahead of the chunking: bounds memory to a few blocks.
constexpr size_t kBlocksAhead = 3;

// Runs task(i) for i in [0, count) on up to `threads` threads (this one among them).
void ParallelFor(size_t count, size_t threads, const std::function<void(size_t)>& task) {
  std::atomic<size_t> next{0};
  auto run = [&] {
    for (size_t i; (i = next++) < count;) task(i);
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < std::min(threads, count); ++t) helpers.emplace_back(run);
  run();
  for (std::thread& t : helpers) t.join();
}

// Reads a file block by block on a thread of its own, hashing it whole as it
// goes (SHA-256 is serial: it sets the pace), and hands the blocks over.
class BlockReader {
 public:
  BlockReader(std::string path, const std::function<void(uint64_t)>& on_read)
      : path_(std::move(path)), on_read_(on_read), thread_([this] { Run(); }) {}
  ~BlockReader() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  BlockReader(const BlockReader&) = delete;
  BlockReader& operator=(const BlockReader&) = delete;

  // The next block; empty at the end of the file, then whole() is its digest.
  Result<Bytes> Next() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !ready_.empty() || done_; });
    if (ready_.empty()) return status_.ok() ? Result<Bytes>(Bytes()) : Result<Bytes>(status_);
    Bytes block = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();
    return block;
  }
  Digest whole() const { return whole_; }

 private:
  void Run() {
    Sha256 sha;
    Result<std::unique_ptr<SequentialFile>> file = Env::Default().NewSequentialFile(path_);
    Status st = file.status();
    for (bool eof = !st.ok(); !eof;) {
      Bytes block(kReadBlockBytes);
      size_t held = 0;
      while (held < block.size()) {
        Result<size_t> n = (*file)->Read(std::span(block).subspan(held));
        if (!n.ok()) st = n.status();
        if (!n.ok() || *n == 0) {
          eof = true;
          break;
        }
        held += *n;
      }
      block.resize(held);
      sha.Update(block);
      on_read_(held);
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || ready_.size() < kBlocksAhead; });
      if (stop_) return;
      if (!block.empty()) ready_.push_back(std::move(block));
      cv_.notify_all();
    }
    std::lock_guard lock(mu_);
    status_ = st;
    if (st.ok()) whole_ = sha.Finish();
    done_ = true;
    cv_.notify_all();
  }

  const std::string path_;
  const std::function<void(uint64_t)>& on_read_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Bytes> ready_;
  bool stop_ = false;
  bool done_ = false;
  Status status_ = Status::Ok();
  Digest whole_;
  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace

Result<ChunkedFile> ChunkFile(const std::string& path, const std::function<void(uint64_t)>& on_read,
                              const ChunksHashed& on_chunks) {
  const size_t threads = std::max(1u, std::thread::hardware_concurrency());
  BlockReader reader(path, on_read);
  ChunkedFile out;
  // The uncut tail of one block (shorter than a chunk) and the next block.
  Bytes buf;
  buf.reserve(kReadBlockBytes + ChunkerParams{}.max_bytes);
  uint64_t file_offset = 0;  // of buf[0]
  for (bool eof = false; !eof;) {
    Result<Bytes> block = reader.Next();
    if (!block.ok()) return block.status();
    eof = block->empty();
    buf.insert(buf.end(), block->begin(), block->end());
    std::vector<std::vector<CutCandidate>> found(threads);
    ParallelFor(threads, threads, [&](size_t k) {
      found[k] = ScanCutCandidates(buf, buf.size() * k / threads, buf.size() * (k + 1) / threads);
    });
    std::vector<CutCandidate> candidates;
    for (const std::vector<CutCandidate>& part : found) candidates.insert(candidates.end(), part.begin(), part.end());
    const size_t first = out.manifest.chunks.size();
    size_t cut = 0;
    for (size_t len : CutChunks(buf, eof, candidates)) {
      out.manifest.chunks.push_back({Digest(), len});
      out.offsets.push_back(file_offset + cut);
      cut += len;
    }
    if (out.manifest.chunks.size() > kManifestPagedChunksMax) {
      return Status::ResourceExhausted(fmt::format("{} has more than {} chunks", path, kManifestPagedChunksMax));
    }
    ParallelFor(out.manifest.chunks.size() - first, threads, [&](size_t i) {
      ChunkRef& c = out.manifest.chunks[first + i];
      c.digest = Digest::Of(ByteSpan(buf).subspan(out.offsets[first + i] - file_offset, c.size));
    });
    if (on_chunks) {
      MERIDIAN_RETURN_IF_ERROR(on_chunks(std::span(out.manifest.chunks).subspan(first),
                                         std::span(out.offsets).subspan(first)));
    }
    buf.erase(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(cut));
    file_offset += cut;
  }
  out.manifest.size = file_offset;
  out.manifest.digest = reader.whole();
  return out;
}

}  // namespace meridian::cli
