#!/usr/bin/env bash
# Builds the Debian packages (meridiand, meridian, meridian-agent) from a copy
# of this tree with packaging/debian as debian/, into build-deb/, and runs
# lintian on them. The build directory the packages come from,
# build-deb/meridian-VERSION/obj-*, is a whole plain build, tests included:
# scripts/test.sh runs the suite on it rather than compiling the tree again.
# Usage: scripts/package.sh            (DEB_BUILD_OPTIONS is honoured; add nocheck to skip the unit suite)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
out=build-deb
src=$out/meridian-$version

# The copy keeps the files' times, and its build directory survives (-nc
# below), so a second run recompiles only what changed.
mkdir -p "$src"
find "$src" -mindepth 1 -maxdepth 1 ! -name 'obj-*' -exec rm -rf {} +
rm -f "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard | xargs -0 cp -p --parents -t "$src" 2>/dev/null || true
  # A file deleted but not yet committed is listed and missing: not copied, not needed.
else
  tar --exclude='./build*' --exclude=./data --exclude=./keys -cf - . | tar -xpf - -C "$src"
fi
cp -pr packaging/debian "$src/debian"

export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} parallel=$(nproc)"
(cd "$src" && dpkg-buildpackage -us -uc -b -nc) >"$out/build.log" 2>&1 || {
  echo "package: dpkg-buildpackage failed; see $out/build.log" >&2
  tail -n 40 "$out/build.log" >&2
  exit 1
}
lintian --fail-on error --tag-display-limit 0 "$out"/meridian_"$version"_*.changes
echo "package: $(cd "$out" && ls ./*.deb | tr '\n' ' ')in $out/"
