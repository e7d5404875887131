#!/bin/sh
# Builds the libFuzzer targets with clang 14 (libFuzzer, ASan, UBSan) and runs
# each for a bounded time. Usage: fuzz/run.sh [SECONDS] (default 60, shared
# equally between the targets).
# Needs: clang-14 and libclang-rt-14-dev (libFuzzer runtime), libzstd-dev,
# liblzma-dev, libssl-dev, libfmt-dev, libsodium-dev, nlohmann-json3-dev,
# libhowardhinnant-date-dev (with the defines its CMake package gives).
#   delta_decode  the delta decoder (hostile deltas against a fixed source)
#   signed_json   the strict JSON reader, manifests, envelopes, channel states, rollout specs (windows,
#                 health rules), roots and their expiry times, delta descriptors, regions' holdings, audit events
#                 and heads, terminal credentials and credential requests
#   http_head     request targets, framing and Host checks, Range, If-None-Match
set -eu
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_BUILD_DIR:-$root/build-fuzz}
base="$root/base/digest.cc $root/base/status.cc $root/base/encoding.cc $root/base/file.cc $root/base/json.cc
  $root/base/clock.cc"

build() {  # NAME SOURCES… : builds $out/NAME_fuzzer
  name=$1
  shift
  clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I"$root" \
    -DUSE_OS_TZDB=1 -DHAS_STRING_VIEW=1 -DONLY_C_LOCALE=1 \
    "$root/fuzz/${name}_fuzzer.cc" "$@" $base -lzstd -llzma -lcrypto -lsodium -lfmt -ldate-tz -pthread -o "$out/${name}_fuzzer"
}

mkdir -p "$out"
# Two at a time: the machines this runs on have two cores.
build delta_decode "$root/delta/delta_decode.cc" "$root/delta/delta_encode.cc" "$root/delta/delta_format.cc" \
  "$root/delta/chunker.cc" &
build signed_json "$root/manifest/manifest.cc" "$root/signing/signing.cc" "$root/signing/root.cc" \
  "$root/target/target.cc" "$root/rollout/rollout.cc" "$root/rollout/rollout_json.cc" "$root/rollout/window.cc" \
  "$root/rollout/analysis.cc" "$root/delta/delta_info.cc" "$root/daemon/catalog.cc" "$root/audit/audit.cc" \
  "$root/trust/terminal_credential.cc" &
wait %1 && wait %2
build http_head "$root/daemon/http.cc"

seeds="$root/fuzz/corpus/delta_decode"
if [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then
  mkdir -p "$seeds"
  MERIDIAN_FUZZ_WRITE_CORPUS="$seeds" "$out/delta_decode_fuzzer"
fi
# New inputs go to a work directory per target; the seed corpora in the tree stay as they are.
each=$((seconds / 3))
for name in delta_decode signed_json http_head; do
  mkdir -p "$out/corpus-$name"
  echo "fuzz: $name for ${each}s"
  "$out/${name}_fuzzer" -max_total_time="$each" -rss_limit_mb=512 -max_len=65536 -artifact_prefix="$out/$name-" \
    -print_final_stats=1 "$out/corpus-$name" "$root/fuzz/corpus/$name"
done
