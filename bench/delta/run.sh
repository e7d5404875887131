#!/bin/bash
# bench/delta: Meridian's delta codec side by side with bsdiff, xdelta3 -9,
# zstd --patch-from -19 --long=31 and zstd -19 --long=31 (no base), on the
# pairs built by make_pairs.py. Writes bench/delta/RESULTS.md.
#
# Usage: bench/delta/run.sh
#   CACHE=/path     where packages, pairs and deltas go (default ~/.cache/meridian-delta-bench)
#   BUILD=dir       meson build directory holding cli/meridian (default build)
#   TOOLS="..."     subset of: meridian meridian-fast xdelta3 zstd-patch zstd-nobase bsdiff
#                   (meridian: LZMA literals; meridian-fast: zstd level 12 literals)
#   PAIRS="..."     subset of the pair names (default: all)
#   TIMEOUT=secs    per command (default 900; bsdiff needs ~17× the file in memory and minutes)
#   RESULTS=name    results file under CACHE (default results.tsv; runs in parallel need
#                   one each); the table is made from all CACHE/results*.tsv
# Needs (Debian): bsdiff xdelta3 zstd time npm python3. Each tool's output is
# applied and compared byte for byte; a failure or timeout is reported as such.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${CACHE:-$HOME/.cache/meridian-delta-bench}
build=${BUILD:-$root/build}
tools=${TOOLS:-meridian meridian-fast xdelta3 zstd-patch zstd-nobase bsdiff}
timeout_s=${TIMEOUT:-900}
"$root/scripts/setup.sh" bench
mkdir -p "$cache/out"
results="$cache/${RESULTS:-results.tsv}"
touch "$results"

for v in 1.4.0 1.4.5; do
  [ -f "$cache/imgly-background-removal-data-$v.tgz" ] ||
    (cd "$cache" && npm pack "@imgly/background-removal-data@$v" >/dev/null)
done
[ -f "$cache/pairs/code-sqljs-patch-1.10.3/new" ] || python3 "$here/make_pairs.py" "$cache"
ninja -C "$build" cli/meridian >/dev/null
meridian="$build/cli/meridian"
pairs=${PAIRS:-$(ls "$cache/pairs")}

# run LOG TIMES CMD...: runs CMD TIMES times under /usr/bin/time -v with a
# timeout; prints "seconds rss_kb" of the fastest run, or "fail 0".
run() {
  local log=$1 times=$2 best=""
  shift 2
  for ((i = 0; i < times; i++)); do
    if ! nice -n 5 /usr/bin/time -v -o "$log" timeout "$timeout_s" "$@" >/dev/null 2>"$log.err"; then
      echo "fail 0"
      return
    fi
    local this
    this=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]}
                       /Maximum resident set size/ {rss = $2} END {printf "%.2f %d\n", s, rss}' "$log")
    if [[ -z $best ]] || awk -v a="${this% *}" -v b="${best% *}" 'BEGIN {exit !(a < b)}'; then best=$this; fi
  done
  echo "$best"
}

# Making is timed once; applying, which is quick and easily disturbed on a
# shared machine, is timed as the fastest of three runs.
for pair in $pairs; do
  old="$cache/pairs/$pair/old"
  new="$cache/pairs/$pair/new"
  for tool in $tools; do
    # Over 1 GB (the 2 GiB memory check) only Meridian runs: the peers would take
    # hours (zstd -19 makes about 1 MB/s) and bsdiff ~17× the file in memory.
    if [[ $tool != meridian* ]] && (($(stat -c %s "$new") > 1000000000)); then continue; fi
    d="$cache/out/$pair.$tool.delta"
    o="$cache/out/$pair.$tool.out"
    rm -f "$d" "$o"
    case $tool in
      meridian | meridian-fast)
        fast=()
        [ "$tool" = meridian-fast ] && fast=(--literal-level 12)
        mk=$(run "$d.make" 1 "$meridian" diff "${fast[@]}" "$old" "$new" -o "$d")
        ap=$(run "$d.apply" 3 "$meridian" patch "$old" "$d" -o "$o") ;;
      bsdiff)
        mk=$(run "$d.make" 1 bsdiff "$old" "$new" "$d")
        ap=$(run "$d.apply" 3 bspatch "$old" "$o" "$d") ;;
      xdelta3)
        mk=$(run "$d.make" 1 xdelta3 -9 -e -f -s "$old" "$new" "$d")
        ap=$(run "$d.apply" 3 xdelta3 -d -f -s "$old" "$d" "$o") ;;
      zstd-patch)
        mk=$(run "$d.make" 1 zstd -q -f -19 --long=31 --patch-from="$old" "$new" -o "$d")
        ap=$(run "$d.apply" 3 zstd -q -f -d --long=31 --patch-from="$old" "$d" -o "$o") ;;
      zstd-nobase)
        mk=$(run "$d.make" 1 zstd -q -f -19 --long=31 "$new" -o "$d")
        ap=$(run "$d.apply" 3 zstd -q -f -d --long=31 "$d" -o "$o") ;;
      *) echo "unknown tool $tool" >&2; exit 2 ;;
    esac
    size=$(stat -c %s "$d" 2>/dev/null || echo 0)
    ok=0
    [[ $mk != fail* && $ap != fail* ]] && cmp -s "$o" "$new" && ok=1
    line="$pair	$tool	$size	$(stat -c %s "$new")	${mk% *}	${mk#* }	${ap% *}	${ap#* }	$ok"
    echo "$line"
    grep -v -P "^$pair\t$tool\t" "$results" > "$results.tmp" || true
    echo "$line" >> "$results.tmp"
    mv "$results.tmp" "$results"
    rm -f "$o"
  done
done
python3 "$here/table.py" "$cache"/results*.tsv > "$here/RESULTS.md"
cat "$here/RESULTS.md"
