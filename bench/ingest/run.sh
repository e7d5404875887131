#!/usr/bin/env bash
# bench/ingest: time publishing a file into a fresh meridiand (new, then again
# under another version with every chunk present), against `openssl dgst
# -sha256` of the same file in the same run, on two kinds of bytes:
#   - random bytes (default 1 GiB): nothing to compress, nothing repeated;
#   - real model weights: the ONNX models of @imgly/background-removal-data
#     1.4.5 from npm (221 MB; zstd makes them 1.6x smaller), kept in CACHE.
# Prints a markdown table with the ratios to openssl and writes RESULTS.md.
#
# Usage: bench/ingest/run.sh [SIZE_MIB]
#   BUILD=dir      meson build directory (default build-release, set up
#                  --buildtype=release; daemon/meridiand and cli/meridian are built)
#   CACHE=dir      where the npm package is kept (default ~/.cache/meridian-ingest-bench)
#   RESULTS=file   where the table goes (default bench/ingest/RESULTS.md; "-" for nowhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
size_mib=${1:-1024}
build=${BUILD:-build-release}
cache=${CACHE:-$HOME/.cache/meridian-ingest-bench}
results=${RESULTS:-$here/RESULTS.md}
source "$root/bench/common.sh"
work=$(mktemp -d /tmp/meridian-ingest-XXXXXX)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$cache"
weights=$cache/imgly-background-removal-data-1.4.5.bin
if [[ ! -s "$weights" ]]; then
  (cd "$cache" && npm pack "@imgly/background-removal-data@1.4.5" >/dev/null &&
    mkdir -p unpacked && tar -xzf imgly-background-removal-data-1.4.5.tgz -C unpacked &&
    cat unpacked/package/dist/* >"$weights.part" && mv "$weights.part" "$weights" && rm -rf unpacked)
fi
head -c $((size_mib << 20)) /dev/urandom >"$work/random.bin"
# On disk before the runs: its writeback would compete with the daemon's flushes.
sync "$work/random.bin"

"$bin/cli/meridian" keygen "$work/release.key" >/dev/null
now() { date +%s.%N; }
# measure NAME FILE: one line "name bytes openssl_s new_s again_s", each on a fresh daemon.
measure() {
  local name=$1 file=$2 data=$work/data-$1
  "$bin/daemon/meridiand" init --data "$data" --release-key "$work/release.key.pub" >/dev/null
  rm -f "$work/port"
  "$bin/daemon/meridiand" --data "$data" --listen 127.0.0.1:0 --port-file "$work/port" 2>"$work/log-$name" &
  echo $! >"$work/pid"
  for _ in $(seq 1 300); do [[ -s "$work/port" ]] && break; sleep 0.1; done
  local server=http://127.0.0.1:$(cat "$work/port")
  cat "$file" >/dev/null  # page cache warm for both
  local t0 t1 t2 t3
  t0=$(now); openssl dgst -sha256 "$file" >/dev/null; t1=$(now)
  for version in 1.0.0 1.0.1; do
    "$bin/cli/meridian" --server "$server" --token-file "$data/publisher.token" --output json \
      publish --key "$work/release.key" --model bench --version "$version" "$file" >/dev/null
    if [[ $version == 1.0.0 ]]; then t2=$(now); else t3=$(now); fi
  done
  kill "$(cat "$work/pid")"; wait "$(cat "$work/pid")" 2>/dev/null || true
  echo "$name $(stat -c %s "$file") $t0 $t1 $t2 $t3"
}
{
  measure "random-bytes" "$work/random.bin"
  measure "model-weights" "$weights"
} >"$work/times"

python3 - "$work/times" "$results" "$(nproc)" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
out = ["| bytes | size | openssl dgst -sha256 | meridian publish (new) | × openssl | publish again (all chunks present) | × openssl |",
       "| --- | --- | --- | --- | --- | --- | --- |"]
for name, size, t0, t1, t2, t3 in rows:
    mb = int(size) / 1e6
    sha, new, again = float(t1) - float(t0), float(t2) - float(t1), float(t3) - float(t2)
    out.append(f"| {name} | {mb:,.0f} MB | {mb/sha:,.0f} MB/s | {mb/new:,.0f} MB/s ({new:.2f} s) | {sha/new:.2f} "
               f"| {mb/again:,.0f} MB/s ({again:.2f} s) | {sha/again:.2f} |")
table = "\n".join(out)
print(table)
if sys.argv[2] != "-":
    with open(sys.argv[2], "w") as f:
        f.write("# bench/ingest\n\nPublishing into a fresh meridiand on loopback, client and daemon on the same "
                f"{sys.argv[3]}-core machine, against `openssl dgst -sha256` of the same file in the same run "
                "(× openssl: its time over publish's, higher is better). Written by `bench/ingest/run.sh`.\n\n"
                + table + "\n")
PY
