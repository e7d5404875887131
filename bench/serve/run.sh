#!/usr/bin/env bash
# bench/serve: meridiand serving an artifact and its chunks, against nginx
# serving the same bytes as static files (sendfile), side by side in one run on
# loopback:
#   - one client downloading the whole artifact (curl, the best of 3);
#   - 64 KiB-average chunks, fetched at random by wrk over 64 connections (10 s);
#   - a tiny answer (/healthz against a 2-byte file), wrk, 64 connections.
# meridiand runs twice: with no chunk cache (every chunk read from disk,
# decompressed and checked by its frame's checksum), and with the cache of verified chunks sized to
# the artifact (chunk_cache_bytes, what the operator guide recommends for a
# fleet's rollout). Prints a markdown table (ratios: meridiand's rate over
# nginx's) and writes bench/serve/RESULTS.md.
#
# Usage: bench/serve/run.sh [SIZE_MIB]    (default 256: random bytes)
#   FILE=path      serve this file instead of random bytes (SIZE_MIB is then ignored):
#                  real model weights are compressible, and compressed chunks are
#                  decompressed on every read from disk
#   BUILD=dir      meson build directory (default build-release, set up
#                  --buildtype=release; daemon/meridiand and cli/meridian are built)
#   SECONDS_EACH=s length of each wrk run (default 10)
#   RESULTS=file   where the table goes (default bench/serve/RESULTS.md; "-" for nowhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
size_mib=${1:-256}
file=${FILE:-}
build=${BUILD:-build-release}
seconds=${SECONDS_EACH:-10}
results=${RESULTS:-$here/RESULTS.md}
source "$root/bench/common.sh"
work=$(mktemp -d /tmp/meridian-serve-XXXXXX)
cleanup() {
  [[ -s $work/pid ]] && kill "$(cat "$work/pid")" 2>/dev/null
  [[ -s $work/nginx/nginx.pid ]] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The daemon, holding the artifact; its chunks also as files, for nginx.
if [[ -n $file ]]; then
  cp "$file" "$work/model.bin"
else
  head -c $((size_mib << 20)) /dev/urandom >"$work/model.bin"
fi
bytes=$(stat -c %s "$work/model.bin")
what="$([[ -n $file ]] && basename "$file" || echo "random bytes") ($(awk "BEGIN { printf \"%.1f\", $bytes / 1048576 }") MiB)"
"$bin/cli/meridian" keygen "$work/release.key" >/dev/null
"$bin/daemon/meridiand" init --data "$work/data" --release-key "$work/release.key.pub" >/dev/null
start_daemon() {  # start_daemon CHUNK_CACHE_BYTES
  printf 'chunk_cache_bytes = %s\n' "$1" >"$work/meridiand.toml"
  rm -f "$work/port"
  "$bin/daemon/meridiand" --config "$work/meridiand.toml" --data "$work/data" --listen 127.0.0.1:0 \
    --port-file "$work/port" 2>>"$work/log" &
  echo $! >"$work/pid"
  for _ in $(seq 1 300); do [[ -s "$work/port" ]] && break; sleep 0.1; done
  server=http://127.0.0.1:$(cat "$work/port")
}
stop_daemon() { kill "$(cat "$work/pid")"; wait "$(cat "$work/pid")" 2>/dev/null || true; rm -f "$work/pid"; }
start_daemon 0
"$bin/cli/meridian" --server "$server" --token-file "$work/data/publisher.token" --output json \
  publish --key "$work/release.key" --model bench --version 1.0.0 "$work/model.bin" >"$work/publish.json"
digest=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['digest'])" "$work/publish.json")
token=$(cat "$work/data/mirror.token")
mkdir -p "$work/www/chunks"
curl -sf -H "Authorization: Bearer $token" "$server/v1/models/bench/versions/1.0.0" >"$work/manifest.json"
python3 - "$work" <<'PY'
import base64, json, sys
work = sys.argv[1]
envelope = json.load(open(f"{work}/manifest.json"))
manifest = json.loads(base64.b64decode(envelope["payload"]))
data = open(f"{work}/model.bin", "rb").read()
offset = 0
with open(f"{work}/chunk-paths", "w") as meridian, open(f"{work}/file-paths", "w") as static:
    for c in manifest["chunks"]:
        name = c["digest"].split(":")[1]
        open(f"{work}/www/chunks/{name}", "wb").write(data[offset:offset + c["size"]])
        offset += c["size"]
        meridian.write(f"/v1/chunks/{c['digest']}\n")
        static.write(f"/chunks/{name}\n")
assert offset == len(data)
PY
cp "$work/model.bin" "$work/www/model.bin"
printf 'ok' >"$work/www/healthz"
chmod 755 "$work" && chmod -R a+rX "$work/www"  # nginx's workers run as www-data

# nginx on the same bytes: static files, sendfile, no access log.
mkdir -p "$work/nginx"
nginx_port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" 2>/dev/null
static=http://127.0.0.1:$nginx_port

cat >"$work/random-path.lua" <<'EOF'
local paths = {}
for line in io.lines(os.getenv("PATHS")) do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
EOF
# single URL: MB/s of the best of 3 downloads
single() {
  local best=0 rate
  for _ in 1 2 3; do
    rate=$(curl -sf -o /dev/null -w '%{speed_download}' -H "Authorization: Bearer $token" "$1")
    best=$(python3 -c "print(max($best, $rate))")
  done
  python3 -c "print(f'{$best / 1e6:.0f}')"
}
# load URL_BASE PATHS_FILE|-: requests/s with wrk, 64 connections; every answer must be a 200
load() {
  local args=(-t 2 -c 64 -d "${seconds}s" -H "Authorization: Bearer $token")
  [[ $2 == - ]] || args+=(-s "$work/random-path.lua")
  PATHS=$2 wrk "${args[@]}" "$1" >"$work/wrk.out"
  if grep -q "Non-2xx\|Socket errors" "$work/wrk.out"; then
    echo "bench/serve: failed answers from $1:" >&2
    cat "$work/wrk.out" >&2
    exit 1
  fi
  awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.out"
}

{
  echo "nginx $(single "$static/model.bin") $(load "$static" "$work/file-paths") $(load "$static/healthz" -)"
  stop_daemon
  start_daemon 0
  echo "meridiand-no-cache $(single "$server/v1/artifacts/$digest") $(load "$server" "$work/chunk-paths") $(load "$server/healthz" -)"
  stop_daemon
  start_daemon $((bytes + bytes / 4))  # the artifact and the cache's bookkeeping
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "$server/v1/artifacts/$digest"  # the first terminal
  echo "meridiand-cache $(single "$server/v1/artifacts/$digest") $(load "$server" "$work/chunk-paths") $(load "$server/healthz" -)"
} >"$work/rates"
chunks=$(wc -l <"$work/chunk-paths")

python3 - "$work/rates" "$results" "$what" "$chunks" "$(nproc)" "$seconds" <<'PY'
import sys
rates = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in open(sys.argv[1])}
what, chunks, cores, seconds = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ng = rates["nginx"]
rows = [("one client downloading the artifact (MB/s, best of 3)", 0),
        (f"its {chunks} chunks at random, wrk, 64 connections (req/s)", 1),
        ("tiny answer: /healthz against a 2-byte file, wrk, 64 connections (req/s)", 2)]
out = ["| what | nginx (static files) | meridiand, no chunk cache | × nginx | meridiand, chunk cache holding the artifact | × nginx |",
       "| --- | --- | --- | --- | --- | --- |"]
for name, i in rows:
    a, b = rates["meridiand-no-cache"][i], rates["meridiand-cache"][i]
    out.append(f"| {name} | {ng[i]:,.0f} | {a:,.0f} | {a / ng[i]:.2f} | {b:,.0f} | {b / ng[i]:.2f} |")
table = "\n".join(out)
print(table)
if sys.argv[2] != "-":
    with open(sys.argv[2], "w") as f:
        f.write("# bench/serve\n\n"
                f"An artifact of {what}, served by meridiand and by nginx (the same bytes as static "
                f"files, sendfile) on loopback, side by side in one run, on a {cores}-core machine that also runs "
                f"the clients; wrk runs {seconds} s. Written by `bench/serve/run.sh`.\n\n" + table + "\n")
PY
