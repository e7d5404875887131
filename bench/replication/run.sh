#!/usr/bin/env bash
# bench/replication: how long `meridian pull` takes to fetch a version, a
# region to replicate it from its upstream and `meridian publish` to send a
# new file as large, over a link with a round trip of
# RTT, against one curl download of the same artifact over the same link in
# the same run (what the bytes alone cost). The link is
# bench/replication/delay_proxy.py on loopback.
# The region's time runs from its exec to its /metrics counting the version
# (start-up, the sync round, the manifest, the chunks, the commit).
# Prints a markdown table and writes RESULTS.md.
#
# Usage: bench/replication/run.sh [SIZE_MIB] [RTT_MS...]   (default 256; 0 50 100)
#   BUILD=dir      meson build directory (default build-release)
#   RESULTS=file   where the table goes (default bench/replication/RESULTS.md; "-" for nowhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
size_mib=${1:-256}
shift || true
rtts=("$@")
[[ ${#rtts[@]} -gt 0 ]] || rtts=(0 50 100)
build=${BUILD:-build-release}
results=${RESULTS:-$here/RESULTS.md}
source "$root/bench/common.sh"
work=$(mktemp -d /tmp/meridian-replication-XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
now() { date +%s.%N; }
wait_port() { for _ in $(seq 1 300); do [[ -s $1 ]] && return; sleep 0.05; done; echo "no $1" >&2; exit 1; }
# link PORT RTT: sets $port to a port that reaches PORT with that round trip (PORT itself for 0).
link() {
  port=$1
  [[ $2 != 0 ]] || return 0
  python3 "$here/delay_proxy.py" 0 "$1" $(($2 / 2)) >"$work/proxy.port" 2>"$work/proxy.log" &
  pids+=($!)
  wait_port "$work/proxy.port"
  port=$(cat "$work/proxy.port")
}

# The origin, holding one version of random bytes.
"$bin/cli/meridian" keygen "$work/release.key" >/dev/null
"$bin/daemon/meridiand" init --data "$work/origin" --release-key "$work/release.key.pub" >/dev/null
"$bin/daemon/meridiand" --data "$work/origin" --listen 127.0.0.1:0 --port-file "$work/origin.port" 2>"$work/origin.log" &
pids+=($!)
wait_port "$work/origin.port"
origin_port=$(cat "$work/origin.port")
head -c $((size_mib << 20)) /dev/urandom >"$work/model.bin"
# An origin that publishes go to.
"$bin/daemon/meridiand" init --data "$work/sink" --release-key "$work/release.key.pub" >/dev/null
"$bin/daemon/meridiand" --data "$work/sink" --listen 127.0.0.1:0 --port-file "$work/sink.port" 2>"$work/sink.log" &
pids+=($!)
wait_port "$work/sink.port"
sink_port=$(cat "$work/sink.port")
"$bin/cli/meridian" --server "http://127.0.0.1:$origin_port" --token-file "$work/origin/publisher.token" \
  --output json publish --key "$work/release.key" --model bench --version 1.0.0 "$work/model.bin" >"$work/published.json"
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$work/published.json")
chunks=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunks"])' "$work/published.json")

for rtt in "${rtts[@]}"; do
  link "$origin_port" "$rtt"
  # One download of the artifact over the link.
  t0=$(now)
  curl -sf -o /dev/null -H "Authorization: Bearer $(cat "$work/origin/terminal.token")" \
    "http://127.0.0.1:$port/v1/artifacts/$digest"
  t1=$(now)
  # meridian pull over the link: the same bytes, each chunk verified, the file written.
  rm -f "$work/pulled.bin"
  "$bin/cli/meridian" --server "http://127.0.0.1:$port" --token-file "$work/origin/terminal.token" --output json \
    pull --root "$work/origin/root.json" bench 1.0.0 -o "$work/pulled.bin" >/dev/null
  t1p=$(now)
  cmp -s "$work/pulled.bin" "$work/model.bin" || { echo "pull: the file differs" >&2; exit 1; }
  # A fresh region following the origin over the link.
  region=$work/region-$rtt
  "$bin/daemon/meridiand" init --data "$region" --root "$work/origin/root.json" >/dev/null
  rm -f "$work/region.port"
  t2=$(now)
  "$bin/daemon/meridiand" --data "$region" --listen 127.0.0.1:0 --port-file "$work/region.port" --role region \
    --region sg --upstream "http://127.0.0.1:$port" --upstream-token-file "$work/origin/mirror.token" \
    2>"$work/region-$rtt.log" &
  region_pid=$!
  pids+=($region_pid)
  wait_port "$work/region.port"
  until curl -sf -H "Authorization: Bearer $(cat "$region/operator.token")" \
    "http://127.0.0.1:$(cat "$work/region.port")/metrics" | grep -q '^meridian_store_versions 1$'; do
    sleep 0.02
  done
  t3=$(now)
  kill "$region_pid"; wait "$region_pid" 2>/dev/null || true
  # meridian publish of a new file of the same size over the link, to an origin of its own
  # (so that the regions above replicate one version only).
  head -c $((size_mib << 20)) /dev/urandom >"$work/upload.bin"
  link "$sink_port" "$rtt"
  t4=$(now)
  "$bin/cli/meridian" --server "http://127.0.0.1:$port" --token-file "$work/sink/publisher.token" --output json \
    publish --key "$work/release.key" --model "upload-$rtt" --version 1.0.0 "$work/upload.bin" >/dev/null
  t5=$(now)
  echo "$rtt $t0 $t1 $t1p $t2 $t3 $t4 $t5"
done >"$work/times"

python3 - "$work/times" "$results" "$size_mib" "$chunks" "$(nproc)" "$(git rev-parse --short HEAD)" <<'PY'
import sys
times, results, size_mib, chunks, cores, commit = sys.argv[1:]
mb = int(size_mib) * 1048576 / 1e6
out = ["| round trip | curl, one download of the artifact | meridian pull | × curl | region replicating the version | × curl "
       "| meridian publish (a new file as large) | × curl | a request per chunk would wait at least |",
       "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for line in open(times):
    rtt, t0, t1, t1p, t2, t3, t4, t5 = line.split()
    download, pull, replicate = float(t1) - float(t0), float(t1p) - float(t1), float(t3) - float(t2)
    publish = float(t5) - float(t4)
    out.append(f"| {rtt} ms | {download:.2f} s ({mb / download:,.0f} MB/s) | {pull:.2f} s | {download / pull:.2f} "
               f"| {replicate:.2f} s | {download / replicate:.2f} | {publish:.2f} s | {download / publish:.2f} "
               f"| {int(chunks) * int(rtt) / 1000:.0f} s |")
table = "\n".join(out)
print(table)
if results != "-":
    with open(results, "w") as f:
        f.write("# bench/replication\n\n"
                f"`meridian pull` fetching one version ({mb:,.0f} MB of random bytes, {chunks} chunks; 4 connections), "
                "a region replicating it from its upstream, and `meridian publish` sending a new file as large "
                "(to an origin of its own), over a link with the round trip shown "
                "(`delay_proxy.py` on loopback), against one curl "
                f"download of the same artifact over the same link, in one run on a {cores}-core machine at {commit}. "
                "The region's time runs from its exec to its /metrics counting the version. × curl: curl's time "
                "over pull's, the region's or publish's (1.0: it costs what moving the bytes once does). The last column is "
                "the chunk count times the round trip: what fetching each chunk with a request of its own, one after "
                "another, would spend waiting alone. "
                "Written by `bench/replication/run.sh`.\n\n" + table + "\n")
PY
