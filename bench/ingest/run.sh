#!/usr/bin/env bash
# bench/ingest: time publishing a file (default 1 GiB of random bytes) into a
# fresh meridiand, against `openssl dgst -sha256` of the same file in the same
# run, and print the ratio. Usage: bench/ingest/run.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
size_mib=${1:-1024}
scripts/setup.sh bench
scripts/build.sh build >/dev/null
bin=$PWD/build
work=$(mktemp -d /tmp/meridian-ingest-XXXXXX)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

head -c $((size_mib << 20)) /dev/urandom >"$work/model.bin"
"$bin/cli/meridian" keygen "$work/release.key" >/dev/null
"$bin/daemon/meridiand" init --data "$work/data" --release-key "$work/release.key.pub" >/dev/null
"$bin/daemon/meridiand" --data "$work/data" --listen 127.0.0.1:0 --port-file "$work/port" 2>"$work/log" &
echo $! >"$work/pid"
for _ in $(seq 1 300); do [[ -s "$work/port" ]] && break; sleep 0.1; done
server=http://127.0.0.1:$(cat "$work/port")

cat "$work/model.bin" >/dev/null  # page cache warm for both
now() { date +%s.%N; }
t0=$(now); openssl dgst -sha256 "$work/model.bin" >/dev/null; t1=$(now)
"$bin/cli/meridian" --server "$server" --token-file "$work/data/publisher.token" --output json \
  publish --key "$work/release.key" --model bench --version 1.0.0 "$work/model.bin" >"$work/publish.json"
t2=$(now)
"$bin/cli/meridian" --server "$server" --token-file "$work/data/publisher.token" --output json \
  publish --key "$work/release.key" --model bench --version 1.0.1 "$work/model.bin" >/dev/null
t3=$(now)

python3 - "$size_mib" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
mib, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:])
sha, pub, again = t1 - t0, t2 - t1, t3 - t2
print(f"| what | seconds | MB/s | × openssl |")
print(f"| --- | --- | --- | --- |")
mb = mib * 1.048576
print(f"| openssl dgst -sha256 | {sha:.2f} | {mb/sha:.0f} | 1.00 |")
print(f"| meridian publish (new) | {pub:.2f} | {mb/pub:.0f} | {pub/sha:.2f} |")
print(f"| meridian publish (all chunks present) | {again:.2f} | {mb/again:.0f} | {again/sha:.2f} |")
PY
