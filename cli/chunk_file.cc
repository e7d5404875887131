#include "cli/chunk_file.h"

#include <algorithm>
#include <atomic>
#include <cassert>
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
// Room before a block's bytes for the uncut tail of the block before it
// (shorter than a chunk's largest size), so that the two are cut as one
// buffer without copying the block.
const size_t kTailRoom = ChunkerParams{}.max_bytes;

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

// A block of the file: kTailRoom bytes of room, then `size` bytes read.
struct Block {
  Bytes buffer;
  size_t size = 0;
};

// Reads a file block by block on a thread of its own, hashing it whole as it
// goes (SHA-256 is serial: it sets the pace), and hands the blocks over. The
// buffers of blocks given back are read into again: no block is allocated,
// zeroed and faulted in more than once.
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

  // The next block; of size 0 at the end of the file, then whole() is its digest.
  Result<Block> Next() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !ready_.empty() || done_; });
    if (ready_.empty()) return status_.ok() ? Result<Block>(Block()) : Result<Block>(status_);
    Block block = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();
    return block;
  }
  // Takes back a block's buffer to read into.
  void GiveBack(Block block) {
    std::lock_guard lock(mu_);
    free_.push_back(std::move(block.buffer));
  }
  Digest whole() const { return whole_; }

 private:
  void Run() {
    Sha256 sha;
    Result<std::unique_ptr<SequentialFile>> file = Env::Default().NewSequentialFile(path_);
    Status st = file.status();
    for (bool eof = !st.ok(); !eof;) {
      Block block;
      {
        std::lock_guard lock(mu_);
        if (!free_.empty()) {
          block.buffer = std::move(free_.back());
          free_.pop_back();
        }
      }
      block.buffer.resize(kTailRoom + kReadBlockBytes);
      const std::span<uint8_t> room = std::span(block.buffer).subspan(kTailRoom);
      while (block.size < room.size()) {
        Result<size_t> n = (*file)->Read(room.subspan(block.size));
        if (!n.ok()) st = n.status();
        if (!n.ok() || *n == 0) {
          eof = true;
          break;
        }
        block.size += *n;
      }
      sha.Update(room.first(block.size));
      on_read_(block.size);
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || ready_.size() < kBlocksAhead; });
      if (stop_) return;
      if (block.size > 0) ready_.push_back(std::move(block));
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
  std::deque<Block> ready_;
  std::vector<Bytes> free_;
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
  Bytes tail;  // the uncut end of the block before, shorter than a chunk
  tail.reserve(kTailRoom);
  uint64_t file_offset = 0;  // of the tail's first byte
  for (bool eof = false; !eof;) {
    Result<Block> block = reader.Next();
    if (!block.ok()) return block.status();
    eof = block->size == 0;
    if (eof) block->buffer.resize(kTailRoom);
    // The tail and the block's bytes, as one buffer. CutChunks leaves a tail
    // shorter than a chunk's largest size: it fits in the room.
    assert(tail.size() < kTailRoom);
    std::copy(tail.begin(), tail.end(), block->buffer.begin() + static_cast<ptrdiff_t>(kTailRoom - tail.size()));
    const ByteSpan buf = ByteSpan(block->buffer).subspan(kTailRoom - tail.size(), tail.size() + block->size);
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
      c.digest = Digest::Of(buf.subspan(out.offsets[first + i] - file_offset, c.size));
    });
    if (on_chunks) {
      MERIDIAN_RETURN_IF_ERROR(on_chunks(std::span(out.manifest.chunks).subspan(first),
                                         std::span(out.offsets).subspan(first)));
    }
    tail.assign(buf.begin() + static_cast<ptrdiff_t>(cut), buf.end());
    file_offset += cut;
    reader.GiveBack(std::move(*block));
  }
  out.manifest.size = file_offset;
  out.manifest.digest = reader.whole();
  return out;
}

}  // namespace meridian::cli
