# bench/common.sh: sourced by bench/ingest, bench/serve and bench/replication after they set
# $root (the repository) and $build (a meson build directory, relative to
# $root). Installs what the benches compare against, builds meridiand and the
# CLI there (configured as a release build when new) and sets $bin.
scripts/setup.sh bench
[[ -f $build/build.ninja ]] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" daemon/meridiand cli/meridian >/dev/null
bin=$root/$build
