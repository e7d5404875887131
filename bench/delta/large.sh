#!/bin/bash
# bench/delta/large.sh: `meridian diff` and `meridian patch` on a generated pair
# many times the encoder's memory budget (make_large_pair.py: insertions every
# GiB, an eighth moved from the end to the front, an eighth drifted). Prints
# the delta's size, make and apply time and peak RSS; the patch verifies the
# target's SHA-256 itself. Then a fresh meridiand (default settings: a 1 GiB
# encoder budget) is given a smaller generated pair as two published versions,
# makes their delta in the background, and its peak RSS is read once the
# delta is served; the served delta is applied and verified.
#
# Usage: bench/delta/large.sh [SIZE_GIB [DAEMON_GIB]]   (defaults 20 and 5, 0 skips; needs
#        about 2 × SIZE_GIB on disk, then 5 × DAEMON_GIB: each file is deleted as
#        soon as it is no longer needed — the patch verifies the new version's
#        digest from the delta's header, so it runs after the new file is gone)
#   CACHE=/path   where the pairs go (default ~/.cache/meridian-delta-bench/large)
#   BUILD=dir     meson build directory (default build-release, set up --buildtype=release)
#   MEMORY=MiB    the CLI encoder's budget (default 1024)
#   RESULTS=file  where the tables go (default bench/delta/RESULTS-large.md; "-" for nowhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
size=${1:-20}
daemon_size=${2:-5}
cache=${CACHE:-$HOME/.cache/meridian-delta-bench/large}
build=${BUILD:-build-release}
memory=${MEMORY:-1024}
results=${RESULTS:-$here/RESULTS-large.md}
cd "$root"
source "$root/bench/common.sh"
meridian=$bin/cli/meridian
mkdir -p "$cache"
work=$(mktemp -d /tmp/meridian-large-XXXXXX)
stop_daemon() {
  [[ -s $work/pid ]] || return 0
  kill "$(cat "$work/pid")" 2>/dev/null || true
  wait "$(cat "$work/pid")" 2>/dev/null || true
  rm -f "$work/pid"
}
trap 'stop_daemon; rm -rf "$work"' EXIT
tables=$work/tables

# measure LOG CMD...: prints "seconds rss_mib" of one run under /usr/bin/time -v.
measure() {
  local log=$1
  shift
  /usr/bin/time -v -o "$log" "$@" >/dev/null
  awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]}
              /Maximum resident set size/ {rss = $2} END {printf "%.1f %d\n", s, rss / 1024}' "$log"
}
if ((size > 0)); then
  old="$cache/old-$size" new="$cache/new-$size"
  [ -f "$new" ] || python3 "$here/make_large_pair.py" "$size" "$old" "$new"
  read -r make_s make_rss < <(measure "$cache/make.log" "$meridian" diff --memory "$memory" "$old" "$new" -o "$cache/delta")
  delta_bytes=$(stat -c %s "$cache/delta")
  new_bytes=$(stat -c %s "$new")
  rm -f "$new"
  read -r apply_s apply_rss < <(measure "$cache/apply.log" "$meridian" patch "$old" "$cache/delta" -o "$cache/out")
  rm -f "$cache/out" "$old"
  awk -v g="$size" -v m="$memory" -v d="$delta_bytes" -v n="$new_bytes" -v ms="$make_s" -v mr="$make_rss" \
      -v as="$apply_s" -v ar="$apply_rss" 'BEGIN {
    printf "| pair | budget | delta bytes | delta / new | make s | make MB/s | make RSS MiB | apply s | apply MB/s | apply RSS MiB |\n"
    printf "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    printf "| generated %d GiB | %d MiB | %d | %.5f | %.0f | %.0f | %d | %.0f | %.0f | %d |\n\n",
           g, m, d, d / n, ms, n / ms / 1e6, mr, as, n / as / 1e6, ar
  }' >>"$tables"
fi
((daemon_size > 0)) || { cat "$tables"; exit 0; }

# The daemon: two published versions, their delta made in the background
# (queued when the second is committed).
d_old="$cache/old-$daemon_size" d_new="$cache/new-$daemon_size"
[ -f "$d_new" ] || python3 "$here/make_large_pair.py" "$daemon_size" "$d_old" "$d_new"
"$meridian" keygen "$work/release.key" >/dev/null
"$bin/daemon/meridiand" init --data "$work/data" --release-key "$work/release.key.pub" >/dev/null
"$bin/daemon/meridiand" --data "$work/data" --listen 127.0.0.1:0 --port-file "$work/port" 2>"$work/log" &
echo $! >"$work/pid"
for _ in $(seq 1 300); do [[ -s "$work/port" ]] && break; sleep 0.1; done
server=http://127.0.0.1:$(cat "$work/port")
token=$(cat "$work/data/publisher.token")
from=sha256:$(sha256sum "$d_old" | cut -d' ' -f1) to=sha256:$(sha256sum "$d_new" | cut -d' ' -f1)
publish() {
  "$meridian" --server "$server" --token "$token" publish --key "$work/release.key" --model large --version "$1" "$2" >/dev/null
}
publish 1.0.0 "$d_old"
start=$SECONDS
publish 1.0.1 "$d_new"
published=$SECONDS
rm -f "$d_new"
until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
          "$server/v1/deltas/$from/$to/info") == 200 ]]; do
  sleep 1
  ((SECONDS - start < 7200)) || { echo "no delta after 2 hours" >&2; exit 1; }
done
publish_s=$((published - start)) daemon_s=$((SECONDS - published))
daemon_rss=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$(cat "$work/pid")/status")
curl -sf -H "Authorization: Bearer $token" "$server/v1/deltas/$from/$to" -o "$work/delta"
daemon_delta=$(stat -c %s "$work/delta")
"$meridian" patch "$d_old" "$work/delta" -o "$work/out" >/dev/null  # verifies the target's digest
rm -f "$work/out" "$d_old"
stop_daemon
cp "$work/log" "$cache/meridiand.log"
{
  echo "| meridiand | delta bytes | second publish s | delta ready s after it | daemon peak RSS MiB |"
  echo "| --- | --- | --- | --- | --- |"
  echo "| two published $daemon_size GiB versions, 1 GiB budget (default) | $daemon_delta | $publish_s | $daemon_s | $daemon_rss |"
} >>"$tables"
cat "$tables"
if [[ $results != - ]]; then
  {
    echo "# bench/delta/large.sh"
    echo
    echo "Generated pairs many times the encoder's memory budget (\`make_large_pair.py\`), on one"
    echo "$(nproc)-core machine; written by \`bench/delta/large.sh $size $daemon_size\`."
    echo
    cat "$tables"
  } >"$results"
fi
