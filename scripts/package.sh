#!/usr/bin/env bash
# Builds the Debian packages (meridiand, meridian, meridian-agent) from a copy
# of this tree with packaging/debian as debian/, into build-deb/, and runs
# lintian on them. The build directory the packages come from is
# build-deb/meridian-VERSION/obj-*.
# Usage: scripts/package.sh            (DEB_BUILD_OPTIONS is honoured; with nocheck the tests are neither
#                                       built nor run)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
out=build-deb
src=$out/meridian-$version

# The copy is updated in place, and its build directory survives (-nc below),
# so a second run recompiles only what changed: a file whose content is the
# same keeps its time, a changed one is copied anew (newer than any object).
mkdir -p "$src"
rm -rf "$src/debian" "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard
else
  find . -type f ! -path './build*' ! -path './data/*' ! -path './keys/*' -printf '%P\0'
fi | python3 -c '
import filecmp, os, shutil, sys
src = sys.argv[1]
files = {os.path.normpath(f) for f in sys.stdin.read().split("\0") if f and os.path.isfile(f)}
for f in files:
    copy = os.path.join(src, f)
    if os.path.isfile(copy) and filecmp.cmp(f, copy, shallow=False):
        continue
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    shutil.copy(f, copy)
for root, dirs, names in os.walk(src):  # files since deleted from the tree
    rel = os.path.relpath(root, src)
    if rel == ".":
        dirs[:] = [d for d in dirs if not d.startswith("obj-")]
    for n in names:
        if os.path.normpath(os.path.join(rel, n)) not in files:
            os.unlink(os.path.join(root, n))
' "$src"
cp -pr packaging/debian "$src/debian"

export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} parallel=$(nproc)"
(cd "$src" && dpkg-buildpackage -us -uc -b -nc) >"$out/build.log" 2>&1 || {
  echo "package: dpkg-buildpackage failed; see $out/build.log" >&2
  tail -n 40 "$out/build.log" >&2
  exit 1
}
lintian --fail-on error --tag-display-limit 0 "$out"/meridian_"$version"_*.changes
echo "package: $(cd "$out" && ls ./*.deb | tr '\n' ' ')in $out/"
