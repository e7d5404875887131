#!/usr/bin/env bash
# The Debian packages on this machine, as an operator would use them: installs
# build-deb/*.deb (scripts/package.sh) with apt-get, runs the packaged
# meridiand as the user `meridian` on a free loopback port through a publish
# and pull with the packaged CLI, then purges the packages and checks that
# nothing they installed or made is left (but the system user, which Debian
# keeps). Needs root; refuses a machine whose /var/lib/meridian holds a store.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
arch=$(dpkg --print-architecture)
packages=(meridiand meridian meridian-agent)
debs=()
for p in "${packages[@]}"; do debs+=("$PWD/build-deb/${p}_${version}_${arch}.deb"); done

fail() { echo "package_test: $*" >&2; exit 1; }
# As the packages' system user; setpriv execs, so `$!` of `"${as_meridian[@]}" … &` is the program's pid.
as_meridian=(setpriv --reuid=meridian --regid=meridian --init-groups)
[[ $(id -u) -eq 0 ]] || fail "needs root (it installs and purges the packages)"
for deb in "${debs[@]}"; do [[ -f $deb ]] || fail "$deb missing: run scripts/package.sh first"; done
[[ ! -e /var/lib/meridian/root.json ]] || fail "/var/lib/meridian holds a store; not touching it"

tmp=$(mktemp -d)
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" >"$tmp/apt.log" 2>&1 ||
  { cat "$tmp/apt.log" >&2; fail "apt-get install failed"; }
installed=$(dpkg-query -L "${packages[@]}" | sort -u)

# What the packages set up.
id meridian >/dev/null || fail "no system user meridian"
[[ $(stat -c '%U %a' /var/lib/meridian) == "meridian 700" ]] || fail "/var/lib/meridian: $(stat -c '%U %a' /var/lib/meridian)"
dpkg-query -W -f='${Conffiles}\n' meridiand | grep -q '/etc/meridian/meridiand.toml' || fail "meridiand.toml is not a conffile"
for unit in meridiand meridian-agent; do
  [[ -f /lib/systemd/system/$unit.service ]] || fail "no $unit.service"
done
[[ -f /usr/share/doc/meridian-agent/examples/agent.toml ]] || fail "no example agent.toml"
# The example is a configuration this agent takes (status reads no network).
meridian-agent --config /usr/share/doc/meridian-agent/examples/agent.toml status >/dev/null ||
  fail "the example agent.toml is refused"

# The packaged daemon as the packaged unit runs it (but on a free port).
chmod 0755 "$tmp"
meridian keygen "$tmp/release.key" >/dev/null
"${as_meridian[@]}" meridiand init --data /var/lib/meridian --release-key "$tmp/release.key.pub" >/dev/null
"${as_meridian[@]}" meridiand --config /etc/meridian/meridiand.toml --data /var/lib/meridian \
  --listen 127.0.0.1:0 --port-file /var/lib/meridian/port 2>"$tmp/meridiand.log" &
daemon=$!
for _ in $(seq 1 300); do
  [[ -s /var/lib/meridian/port ]] && break
  kill -0 "$daemon" 2>/dev/null || { cat "$tmp/meridiand.log" >&2; fail "meridiand exited"; }
  sleep 0.1
done
[[ -s /var/lib/meridian/port ]] || fail "meridiand did not listen within 30 s"
server=http://127.0.0.1:$(cat /var/lib/meridian/port)
[[ $(ps -o user= -p "$daemon") == meridian ]] || fail "meridiand does not run as meridian"

head -c 3000000 /dev/urandom >"$tmp/model.bin"
meridian --server "$server" --token-file /var/lib/meridian/publisher.token publish \
  --key "$tmp/release.key" --model demo --version 1.0.0 "$tmp/model.bin" >/dev/null
meridian --server "$server" --token-file /var/lib/meridian/terminal.token pull --root /var/lib/meridian/root.json demo 1.0.0 -o "$tmp/pulled.bin" >/dev/null
cmp "$tmp/model.bin" "$tmp/pulled.bin" || fail "pulled bytes differ"
meridian-agent --help >/dev/null || fail "meridian-agent does not run"
kill "$daemon"
wait "$daemon" || true
daemon=

# Purge: nothing the packages installed or made is left.
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" >"$tmp/apt.log" 2>&1 ||
  { cat "$tmp/apt.log" >&2; fail "apt-get purge failed"; }
for p in "${packages[@]}"; do
  ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed || fail "$p still known to dpkg"
done
left=()
while read -r path; do
  # Directories the packages share with the system stay; their own go.
  if [[ -e $path && ! -d $path ]] || [[ -d $path && $path == *meridian* ]]; then left+=("$path"); fi
done <<<"$installed"
for path in /var/lib/meridian /var/lib/meridian-agent /etc/meridian; do [[ -e $path ]] && left+=("$path"); done
((${#left[@]} == 0)) || fail "left behind after purge: ${left[*]}"
echo "package_test: installed, served a publish and pull as meridian on $server, purged clean"
