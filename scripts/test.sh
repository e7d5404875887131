#!/usr/bin/env bash
# Command two: installs what is missing, builds, and runs the whole test suite,
# then all of it again under AddressSanitizer + UBSan (the daemons, CLI and
# agents the integration tests start are the sanitized builds too), then the
# libFuzzer targets (fuzz/run.sh) for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
scripts/build.sh build-asan -Dsanitize=true -Doptimization=1 >/dev/null

status=0
meson test -C build --num-processes 2 --print-errorlogs || status=1
meson test -C build-asan --num-processes 2 --print-errorlogs || status=1
FUZZ_BUILD_DIR=$PWD/build-fuzz fuzz/run.sh "${FUZZ_SECONDS:-60}" >build-fuzz.log 2>&1 || {
  status=1
  echo "fuzz: a fuzzer failed; see build-fuzz.log" >&2
  tail -n 30 build-fuzz.log >&2
}

# One summary line over both runs, as "N passed, N failed".
python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r != "SKIP": failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $status
