#!/usr/bin/env bash
# bench/large: an artifact far larger than memory, end to end. A sparse file
# (default 200 GiB; all zeros, so it takes no disk, and its chunks, all
# alike, take one in each store) is published to an origin, replicated to a
# region that follows it, and pulled back from the region, verified. What
# grows with the artifact is its chunk list (819,200 chunks for 200 GiB, in
# index pages): the table gives each process's peak memory beside the times.
# Not in CI: it reads and hashes the artifact five times (publish: once on
# each side; the region's commit; pull: download and re-read).
#
# Usage: bench/large/run.sh [SIZE_GIB]
#   BUILD=dir      meson build directory (default build-release; daemon/meridiand
#                  and cli/meridian are built)
#   RESULTS=file   where the table goes (default bench/large/RESULTS.md; "-" for nowhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
size_gib=${1:-200}
build=${BUILD:-build-release}
results=${RESULTS:-$here/RESULTS.md}
source "$root/bench/common.sh"
work=$(mktemp -d /tmp/meridian-large-XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

now() { date +%s.%N; }
# start NAME ARGS...: a daemon on a loopback ephemeral port; sets $port.
start() {
  local name=$1
  shift
  "$bin/daemon/meridiand" --data "$work/$name" --listen 127.0.0.1:0 --port-file "$work/$name.port" "$@" \
    2>"$work/$name.log" &
  pids+=($!)
  eval "${name}_pid=$!"
  for _ in $(seq 1 300); do [[ -s $work/$name.port ]] && break; sleep 0.1; done
  port=$(cat "$work/$name.port")
}
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

"$bin/cli/meridian" keygen "$work/release.key" >/dev/null
"$bin/daemon/meridiand" init --data "$work/origin" --release-key "$work/release.key.pub" >/dev/null
start origin
origin=http://127.0.0.1:$port
"$bin/daemon/meridiand" init --data "$work/region" --root "$work/origin/root.json" >/dev/null
start region --role region --region sg --upstream "$origin" --upstream-token-file "$work/origin/mirror.token"
region=http://127.0.0.1:$port

file=$work/large.bin
truncate -s "${size_gib}G" "$file"
# timed CMD...: runs it; "seconds peak_KiB" in $work/time.
timed() { /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }; }

t0=$(now)
timed "$bin/cli/meridian" --server "$origin" --token-file "$work/origin/publisher.token" \
  publish --key "$work/release.key" --model large --version 1.0.0 "$file"
read -r publish_s publish_kib <"$work/time"
t1=$(now)
# Replicated once the region serves the version (it commits it after checking every byte).
until curl -sf -o /dev/null -H "Authorization: Bearer $(cat "$work/region/terminal.token")" \
  "$region/v1/models/large/versions/1.0.0"; do
  sleep 1
done
t2=$(now)
timed "$bin/cli/meridian" --server "$region" --token-file "$work/region/terminal.token" \
  pull --root "$work/origin/root.json" -o "$work/pulled.bin" large 1.0.0
read -r pull_s pull_kib <"$work/time"
[[ $(stat -c %s "$work/pulled.bin") == $(stat -c %s "$file") ]]
origin_kib=$(peak_kib "$origin_pid")
region_kib=$(peak_kib "$region_pid")
chunks=$(curl -sf -H "Authorization: Bearer $(cat "$work/region/terminal.token")" \
  "$region/v1/models/large/versions/1.0.0" | python3 -c '
import base64, json, sys
m = json.loads(base64.b64decode(json.load(sys.stdin)["payload"]))
pages = m.get("chunk_pages", [])
print(sum(p["chunks"] for p in pages) if pages else len(m["chunks"]), len(pages))')

# shellcheck disable=SC2086 # $chunks: the chunks and the pages
python3 - "$results" "$size_gib" $chunks "$publish_s" "$(echo "$t2 - $t1" | bc)" "$pull_s" \
  "$publish_kib" "$origin_kib" "$region_kib" "$pull_kib" "$(nproc)" <<'PY'
import sys
(results, gib, chunks, pages, publish_s, replicate_s, pull_s,
 publish_kib, origin_kib, region_kib, pull_kib, cores) = sys.argv[1:]
gib, mib = int(gib), lambda kib: f"{int(kib) / 1024:,.0f} MiB"
rate = lambda s: f"{gib * 1024**3 / 1e6 / float(s):,.0f} MB/s"
rows = [
    ("publish to the origin (meridian publish)", publish_s, publish_kib, "client"),
    ("replicate to the region (publish's end to the region serving it)", replicate_s, origin_kib, "origin, peak"),
    ("pull back from the region, verified (meridian pull)", pull_s, pull_kib, "client"),
    ("", "", region_kib, "region, peak"),
]
out = ["| step | time | rate | peak RSS | of |", "| --- | --- | --- | --- | --- |"]
for step, s, kib, who in rows:
    out.append(f"| {step} | {float(s):,.0f} s | {rate(s)} | {mib(kib)} | {who} |" if s
               else f"| | | | {mib(kib)} | {who} |")
table = "\n".join(out)
print(table)
if results != "-":
    with open(results, "w") as f:
        f.write(f"# bench/large\n\nA sparse {gib} GiB artifact ({int(chunks):,} chunks in {pages} index pages) published "
                f"to an origin, replicated to a region and pulled back from it, verified; all on loopback on one "
                f"{cores}-core machine. Written by `bench/large/run.sh {gib}`.\n\n" + table + "\n")
PY
