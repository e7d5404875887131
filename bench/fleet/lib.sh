# bench/fleet/lib.sh: what the fleet and long-poll benches share, sourced
# after they set $bench (a name for messages), $here (the bench's directory),
# $root (the repository) and $build (the meson build directory). Builds
# meridiand and the CLI (release), compiles the load client (bench/fleet/load.cc)
# with g++ when it changed, makes a work directory in /tmp removed at exit
# (and the daemon stopped), and starts a fresh daemon on a free loopback port
# holding model `fleet` 1.0.0 and 1.0.1, 1.0.0 being channel `stable`'s version.
# Sets $load, $meridian, $meridiand, $work, $data, $pid, $port, $server, $op;
# defines start_daemon, stop_daemon, cpu_s, rss_kb, hwm_kb, metric, now, cli.
scripts/setup.sh
[[ -f $build/build.ninja ]] || meson setup "$build" --buildtype=release >/dev/null
ninja -j1 -C "$build" daemon/meridiand cli/meridian >/dev/null
load=$build/bench-fleet-load
if [[ ! -x $load || $root/bench/fleet/load.cc -nt $load ]]; then
  echo "$bench: compiling the load client"
  g++ -std=c++20 -O2 -DNDEBUG -pthread -o "$load" "$root/bench/fleet/load.cc" -lsodium
fi
meridian=$build/cli/meridian
meridiand=$build/daemon/meridiand

work=$(mktemp -d /tmp/meridian-$bench-XXXXXX)
cleanup() {
  local pid
  pid=$(cat "$work/pid" 2>/dev/null) && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
data=$work/data

# start_daemon: starts meridiand on a free loopback port and waits (at most
# 120 s) until /readyz answers 200; sets $pid, $server and $ready_s (seconds
# from the exec to that answer, to 50 ms).
start_daemon() {
  rm -f "$work/port"
  local t0 ready=""
  t0=$(now)
  "$meridiand" --data "$data" --listen 127.0.0.1:0 --port-file "$work/port" 2>>"$work/log" &
  pid=$!
  echo $pid >"$work/pid"
  for _ in $(seq 1 2400); do
    kill -0 $pid 2>/dev/null || { echo "$bench: meridiand exited; its log:" >&2; cat "$work/log" >&2; exit 1; }
    if [[ -s $work/port ]] &&
      curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$(cat "$work/port")/readyz"; then
      ready=1
      break
    fi
    sleep 0.05
  done
  [[ $ready ]] || { echo "$bench: meridiand was not ready within 120 s" >&2; exit 1; }
  ready_s=$(python3 -c "print(f'{$(now) - $t0:.2f}')")
  port=$(cat "$work/port")
  server=http://127.0.0.1:$port
}
# stop_daemon: SIGTERM (it drains and closes the store), waits for the exit.
stop_daemon() {
  kill "$pid"
  wait "$pid" || true
  rm -f "$work/pid"
}
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f\n", ($14 + $15) / t}' "/proc/$pid/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"; }
metric() { curl -sf "$server/metrics" | awk -v m="$1" '$1 == m {printf "%.0f\n", $2}'; }
now() { date +%s.%N; }

# --- a fresh daemon, two versions of a small model, the channel's state
"$meridian" keygen "$work/release.key" >/dev/null
"$meridiand" init --data "$data" --release-key "$work/release.key.pub" >/dev/null
start_daemon
op=$(cat "$data/operator.token")
cli() { "$meridian" --server "$server" --output json "$@"; }

head -c $((4 << 20)) /dev/urandom >"$work/model.bin"
cp "$work/model.bin" "$work/model2.bin"
printf 'new weights' | dd of="$work/model2.bin" bs=1 seek=1000000 conv=notrunc status=none
for v in 1.0.0:model.bin 1.0.1:model2.bin; do
  cli --token-file "$data/publisher.token" publish --key "$work/release.key" \
    --model fleet --version "${v%%:*}" "$work/${v#*:}" >/dev/null
done
# 1.0.0 becomes the channel's version (one stage of 100 %, promoted once:
# completed); 1.0.1 is published, not rolled out.
cli --token-file "$data/operator.token" rollout start fleet 1.0.0 --id base --stages 100 >/dev/null
cli --token-file "$data/operator.token" rollout promote base >/dev/null
