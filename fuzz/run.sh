#!/bin/sh
# Builds the delta decoder fuzzer with clang 14 (libFuzzer, ASan, UBSan) and runs
# it for a bounded time. Usage: fuzz/run.sh [SECONDS] (default 60).
# Needs: clang-14 and libclang-rt-14-dev (libFuzzer runtime), libzstd-dev, liblzma-dev, libssl-dev, libfmt-dev.
set -eu
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_BUILD_DIR:-$root/build-fuzz}
mkdir -p "$out/corpus-work"
clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root" \
  "$root/fuzz/delta_decode_fuzzer.cc" "$root/delta/delta_decode.cc" "$root/delta/delta_encode.cc" \
  "$root/delta/delta_format.cc" "$root/delta/chunker.cc" "$root/base/digest.cc" "$root/base/status.cc" \
  "$root/base/encoding.cc" \
  -lzstd -llzma -lcrypto -lfmt -pthread -o "$out/delta_decode_fuzzer"
seeds="$root/fuzz/corpus/delta_decode"
if [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then
  mkdir -p "$seeds"
  MERIDIAN_FUZZ_WRITE_CORPUS="$seeds" "$out/delta_decode_fuzzer"
fi
# New inputs go to the work directory; the seed corpus in the tree stays as it is.
exec "$out/delta_decode_fuzzer" -max_total_time="$seconds" -rss_limit_mb=512 -max_len=65536 \
  -artifact_prefix="$out/" \
  -print_final_stats=1 "$out/corpus-work" "$seeds"
