#!/usr/bin/env bash
# bench/tls: HTTPS serving of the same bytes by meridiand and by nginx (TLS,
# Debian's package), side by side in one run, with meridiand over plain HTTP
# for reference. Two loads, each against every server in turn:
#   - one client streaming a whole artifact (default 256 MiB) over one connection;
#   - many small requests: every chunk of that artifact (about 64 KiB each) by
#     its /v1/chunks/{digest} URL, from CLIENTS connections kept alive.
# nginx serves the same bytes from files (the artifact, and each chunk under
# the same URL path); both use one certificate (ECDSA P-256) and negotiate
# TLS 1.3 with OpenSSL's default suite. Clients are curl(1), on the same machine.
# Prints a markdown table and writes bench/tls/RESULTS.md.
#
# Usage: bench/tls/run.sh [SIZE_MIB]
#   BUILD=dir      meson build directory (default build-release, set up --buildtype=release);
#                  only daemon/meridiand and cli/meridian are built
#   RUNS=3         runs of each measurement; the best is kept
#   CLIENTS=4      concurrent keep-alive connections of the small-request load
#   RESULTS=file   where the table goes (default bench/tls/RESULTS.md; "-" for nowhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
size_mib=${1:-256}
build=${BUILD:-$root/build-release}
[[ $build = /* ]] || build=$root/$build
runs=${RUNS:-3}
clients=${CLIENTS:-4}
results=${RESULTS:-$here/RESULTS.md}
load_start=$(cut -d' ' -f1 /proc/loadavg)

scripts/setup.sh
[[ -f $build/build.ninja ]] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" daemon/meridiand cli/meridian >/dev/null
meridian=$build/cli/meridian
meridiand=$build/daemon/meridiand
nginx=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d /tmp/meridian-tls-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# A private CA and a certificate for 127.0.0.1, as tests/certs.cc makes them.
tls=$work/tls
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" \
  -subj "/CN=bench CA" -days 2 -addext basicConstraints=critical,CA:TRUE 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" \
  -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
  -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null

# waits for a port file; prints the port.
wait_port() {
  for _ in $(seq 1 300); do [[ -s $1 ]] && { cat "$1"; return; }; sleep 0.1; done
  echo "tls: no port in $1" >&2; exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One data directory, the artifact published once over plain HTTP.
head -c $((size_mib << 20)) /dev/urandom >"$work/model.bin"
"$meridian" keygen "$work/release.key" >/dev/null
"$meridiand" init --data "$work/data" --release-key "$work/release.key.pub" >/dev/null
"$meridiand" --data "$work/data" --listen 127.0.0.1:0 --port-file "$work/port.plain" 2>"$work/plain.log" &
pids+=($!)
plain_port=$(wait_port "$work/port.plain")
"$meridian" --server "http://127.0.0.1:$plain_port" --token-file "$work/data/publisher.token" --output json \
  publish --key "$work/release.key" --model bench --version 1.0.0 "$work/model.bin" >/dev/null
digest=sha256:$(sha256sum "$work/model.bin" | cut -d' ' -f1)
token=$(cat "$work/data/terminal.token")
# The chunk list, from the signed manifest; nginx gets each chunk as a file at the same path.
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$plain_port/v1/models/bench/versions/1.0.0" >"$work/envelope.json"
mkdir -p "$work/www/v1/chunks" "$work/www/v1/artifacts"
cp "$work/model.bin" "$work/www/v1/artifacts/$digest"
python3 - "$work/envelope.json" "$work/model.bin" "$work/www/v1/chunks" >"$work/chunks.txt" <<'PY'
import base64, json, sys
manifest = json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"]))
data = open(sys.argv[2], "rb")
for c in manifest["chunks"]:
    piece = data.read(c["size"])
    open(f"{sys.argv[3]}/{c['digest']}", "wb").write(piece)
    print(c["digest"])
PY
n_chunks=$(wc -l <"$work/chunks.txt")

# meridiand over HTTPS, on the same data directory (the plain one is stopped first: one store, one daemon).
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()
"$meridiand" --data "$work/data" --listen 127.0.0.1:0 --port-file "$work/port.tls" \
  --tls-certificate "$tls/server.pem" --tls-key "$tls/server.key" 2>"$work/tls.log" &
pids+=($!)
tls_port=$(wait_port "$work/port.tls")

nginx_port=$(free_port)
user=root; [[ $(id -u) = 0 ]] || user=$(id -un)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $(nproc);
$([[ $(id -u) = 0 ]] && echo "user $user;")
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy; fastcgi_temp_path $work/nginx/fcgi;
  uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  types { } default_type application/octet-stream;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $tls/server.pem;
    ssl_certificate_key $tls/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $work/www;
  }
}
EOF
"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" -g "daemon off;" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$nginx_port/v1/chunks/$(head -1 "$work/chunks.txt")" && break; sleep 0.1; done

declare -A base=([meridiand-https]="https://127.0.0.1:$tls_port" [nginx-https]="https://127.0.0.1:$nginx_port")
# The plain-HTTP reference runs after the TLS daemon stops (one store, one daemon).
curl_common=(-s --fail --cacert "$tls/ca.pem" -H "Authorization: Bearer $token")

# best_stream URL: the best of $runs single-stream downloads, in MB/s.
best_stream() {
  local best=0 v
  for _ in $(seq 1 "$runs"); do
    v=$(curl "${curl_common[@]}" -o /dev/null -w '%{speed_download}' "$1/v1/artifacts/$digest")
    best=$(python3 -c "print(max($best, $v / 1e6))")
  done
  printf '%.0f' "$best"
}
# best_small URL: the best of $runs rounds of every chunk fetched by each of
# $clients connections at once, in requests/s (and MB/s).
printf 'url = "BASE/v1/chunks/%s"\noutput = "/dev/null"\n' $(cat "$work/chunks.txt") >"$work/chunks.curl"
best_small() {
  local best=0 t0 t1 v
  sed "s#BASE#$1#" "$work/chunks.curl" >"$work/urls.curl"
  for _ in $(seq 1 "$runs"); do
    t0=$(date +%s.%N)
    local fetching=()
    for _ in $(seq 1 "$clients"); do
      curl "${curl_common[@]}" -K "$work/urls.curl" &
      fetching+=($!)
    done
    wait "${fetching[@]}"
    t1=$(date +%s.%N)
    v=$(python3 -c "print($clients * $n_chunks / ($t1 - $t0))")
    best=$(python3 -c "print(max($best, $v))")
  done
  printf '%.0f' "$best"
}

declare -A stream small
for s in meridiand-https nginx-https; do
  stream[$s]=$(best_stream "${base[$s]}")
  small[$s]=$(best_small "${base[$s]}")
done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
"$meridiand" --data "$work/data" --listen 127.0.0.1:0 --port-file "$work/port.plain2" 2>>"$work/plain.log" &
pids[0]=$!
base[meridiand-http]="http://127.0.0.1:$(wait_port "$work/port.plain2")"
stream[meridiand-http]=$(best_stream "${base[meridiand-http]}")
small[meridiand-http]=$(best_small "${base[meridiand-http]}")

chunk_kib=$(python3 -c "print(round($size_mib * 1024 / $n_chunks))")
cipher=$(openssl s_client -connect "127.0.0.1:$nginx_port" </dev/null 2>/dev/null | awk '/^New, /{print $2, $5}')
table=$(python3 - "$size_mib" "$n_chunks" "$chunk_kib" "$clients" "${stream[meridiand-https]}" "${stream[nginx-https]}" \
  "${stream[meridiand-http]}" "${small[meridiand-https]}" "${small[nginx-https]}" "${small[meridiand-http]}" <<'PY'
import sys
mib, n, kib, clients = sys.argv[1:5]
sm, sn, sp, qm, qn, qp = map(float, sys.argv[5:])
print("| load | meridiand HTTPS | nginx HTTPS | meridiand ÷ nginx | meridiand plain HTTP |")
print("| --- | --- | --- | --- | --- |")
print(f"| one stream of {mib} MiB (MB/s) | {sm:.0f} | {sn:.0f} | {sm/sn:.2f} | {sp:.0f} |")
print(f"| {n} chunks of ~{kib} KiB × {clients} keep-alive connections (requests/s) | {qm:.0f} | {qn:.0f} | {qm/qn:.2f} | {qp:.0f} |")
PY
)
echo "$table"
if [[ $results != - ]]; then
  {
    echo "# bench/tls results"
    echo
    echo "\`bench/tls/run.sh $size_mib\` on $(date -u +%F), commit $(git rev-parse --short HEAD)$(git diff --quiet -- . ":(exclude)$results" || echo +dirty):" \
      "$(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/{print $2}') GiB RAM;" \
      "$(basename "$build") build; curl clients on the same machine; TLS: $cipher;" \
      "best of $runs runs; load average at start $load_start, at end $(cut -d' ' -f1 /proc/loadavg)."
    echo
    echo "$table"
    echo
    cat <<'NOTE'
How to read it: nginx sends file bytes as they are; meridiand reads each chunk from RocksDB,
decompresses it (zstd) and hashes it again (SHA-256, verify on read) before it sends it,
which is what the plain-HTTP column costs by itself. The gap between the two meridiand
columns is TLS (AES-256-GCM encryption, one handshake per connection here). Each load keeps
its connections open (one for the stream; CLIENTS for the chunks), so handshakes are not
what is measured; clients, daemon and nginx share the machine's cores.
NOTE
  } >"$results"
fi
