#!/usr/bin/env bash
# Installs the Debian packages Meridian needs to build and test (and, with
# the argument "bench", what the benchmarks compare against).
# Idempotent: when every package is present it only checks and returns.
set -euo pipefail

packages=(
  g++ meson ninja-build pkg-config python3
  lld                           # links the programs and tests 3-4x as fast as BFD ld (meson.build)
  libboost1.81-dev librocksdb-dev libsodium-dev libzstd-dev liblzma-dev
  libcurl4-openssl-dev libssl-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libtomlplusplus-dev catch2
  curl zstd
  libsystemd-dev                # sd_notify: meridiand and meridian-agent under Type=notify units
  systemd                       # systemd-analyze: tests/systemd_test checks deploy/systemd/
  nginx                         # tests/nginx_test: the caching proxy (deploy/nginx)
  haproxy                       # tests/region_replicas_test: a region on several daemons (deploy/haproxy)
  prometheus                    # promtool: tests check /metrics and deploy/prometheus/ rules
  chromium chromium-driver python3-selenium  # tests/ui_test: the web console in a real browser
  python3-cryptography          # tests/ui_test: a terminal's signed credential request
  debhelper dpkg-dev fakeroot lintian        # scripts/package.sh: the Debian packages
  clang-14 libclang-rt-14-dev   # the delta decoder's libFuzzer target
  libhowardhinnant-date-dev cmake  # rollout/window: IANA zones (libdate-tz); meson finds it by its CMake package
)
if [[ "${1:-}" == bench ]]; then
  packages+=(bsdiff xdelta3 time openssl wrk)
  # bench/delta fetches its data with npm; a node/npm from elsewhere will do.
  command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install packages (run as root or with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
