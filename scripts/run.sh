#!/usr/bin/env bash
# Command one: installs what is missing, builds, initialises a data directory
# on first use (./data, with a release key in ./keys), and starts meridiand in
# the background on 127.0.0.1:7400. Safe to run again: it starts nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${MERIDIAN_DATA:-./data}
listen=${MERIDIAN_LISTEN:-127.0.0.1:7400}

scripts/setup.sh
scripts/build.sh build >/dev/null

if [[ ! -f "$data/root.json" ]]; then
  mkdir -p keys
  [[ -f keys/release.key ]] || build/cli/meridian keygen keys/release.key
  build/daemon/meridiand init --data "$data" --release-key keys/release.key.pub
fi

if curl -sf "http://$listen/healthz" >/dev/null; then
  echo "meridiand is already running on http://$listen"
else
  nohup build/daemon/meridiand --data "$data" --listen "$listen" >>"$data/meridiand.log" 2>&1 &
  echo $! >"$data/meridiand.pid"
  for _ in $(seq 1 300); do
    curl -sf "http://$listen/healthz" >/dev/null && break
    if ! kill -0 "$(cat "$data/meridiand.pid")" 2>/dev/null; then
      echo "meridiand failed to start; see $data/meridiand.log:" >&2
      tail -n 20 "$data/meridiand.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  curl -sf "http://$listen/healthz" >/dev/null || { echo "meridiand did not become healthy" >&2; exit 1; }
  echo "meridiand is running on http://$listen (pid $(cat "$data/meridiand.pid"), log $data/meridiand.log)"
fi

cat <<NEXT

Next:
  export PATH=\$PWD/build/cli:\$PWD/build/daemon:\$PATH
  head -c 50000000 /dev/urandom > model.bin
  meridian --token-file $data/publisher.token publish --key keys/release.key --model demo --version 1.0.0 model.bin
  meridian --token-file $data/terminal.token versions demo
  meridian --token-file $data/terminal.token pull --root $data/root.json demo 1.0.0 -o pulled.bin && cmp model.bin pulled.bin
Web console: http://$listen/ui/ (sign in with the token in $data/operator.token)
Stop it with: kill \$(cat $data/meridiand.pid)
NEXT
