#!/usr/bin/env bash
# Command two: installs what is missing; builds the Debian packages
# (scripts/package.sh: a plain build of the programs, as distributions build
# them, checked by lintian; no tests compiled); builds the whole tree with
# AddressSanitizer + UBSan (the tests' own code with ASan only; warnings as
# errors) and runs the whole suite there (the daemons, CLI and agents the
# integration tests start are the sanitized builds); installs, uses and
# purges the packages (tests/package_test.sh: the plain binaries, as shipped);
# then runs the libFuzzer targets (fuzz/run.sh) for a bounded time. Each
# source file is compiled twice in all: once for the packages, once sanitized
# for the tests; both builds are unity builds (meson's -Dunity=on: a library's
# sources four to a compiler run, so the headers they share, Beast's and
# nlohmann-json's above all, are parsed and instantiated once for the four;
# the sanitized build took 910 s without, 673 s with, on one 2-core VM).
set -euo pipefail
cd "$(dirname "$0")/.."
# How long each step took, on stderr: where CI time goes.
step_start=$SECONDS
took() {
  echo "test.sh: $1 took $((SECONDS - step_start)) s" >&2
  step_start=$SECONDS
}
scripts/setup.sh
took "setup"
# noddebs: CI installs the packages, never their debug symbols.
DEB_BUILD_OPTIONS="nocheck noddebs" scripts/package.sh
took "the packages (plain build, lintian)"
scripts/build.sh build-asan -Dsanitize=true -Doptimization=1 -Dunity=on >/dev/null
took "the ASan/UBSan build"

status=0
meson test -C build-asan --num-processes 2 --print-errorlogs || status=1
took "the suite"
package=0
tests/package_test.sh || { package=1; status=1; }
took "the package test"
fuzz=0
FUZZ_BUILD_DIR=$PWD/build-fuzz fuzz/run.sh "${FUZZ_SECONDS:-20}" >build-fuzz.log 2>&1 || {
  fuzz=1
  status=1
  echo "fuzz: a fuzzer failed; see build-fuzz.log" >&2
  tail -n 30 build-fuzz.log >&2
}
took "the fuzzers (build and run)"

# One summary line over the suite, the package test and the fuzzers (one
# each), as "N passed, N failed".
python3 - "$package" "$fuzz" build-asan/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = 0
for code in sys.argv[1:3]:
    if code == "0": passed += 1
    else: failed += 1
for path in sys.argv[3:]:
    for line in open(path):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r != "SKIP": failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $status
