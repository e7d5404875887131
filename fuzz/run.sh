#!/bin/sh
# Builds the libFuzzer targets with clang 14 (libFuzzer, ASan, UBSan) and runs
# each for a bounded time. Usage: fuzz/run.sh [SECONDS] (default 20: how long
# each target runs; as many run at once as there are cores).
# Needs: clang-14 and libclang-rt-14-dev (libFuzzer runtime), libzstd-dev,
# liblzma-dev, libssl-dev, libfmt-dev, libsodium-dev, nlohmann-json3-dev,
# libhowardhinnant-date-dev (with the defines its CMake package gives),
# libcurl4-openssl-dev and libtomlplusplus-dev (its shared library, as
# pkg-config gives it to the programs: Debian's 3.3.0 headers compiled into a
# sanitized target stop on UB of toml++'s own, upstream's issue 295).
#   delta_decode  the delta decoder (hostile deltas against a fixed source)
#   signed_json   the strict JSON reader and the UTF-8 check, manifests, envelopes, channel states, rollout specs (windows,
#                 health rules), roots and their expiry times, delta descriptors, regions' holdings, audit events
#                 and heads, terminal credentials and credential requests
#   http_head     request targets, framing and Host checks, Range, If-None-Match
#   config        the TOML configuration files: meridian-agent's and meridiand's --config
#   agent_state   what the agent reads back from its state directory after a crash: agent.json,
#                 credential.json, job.json, slot links, root.json, terminal.key, outbox reports as
#                 the server reads them, and batches of reports a region forwards upstream
#   sync_document a region's sync document from its upstream, and its stored record of revocations
#   chunk_page    a paged manifest's index pages, as a store or a server hands them back, and the
#                 chunk batches a daemon takes from a publisher (POST /v1/chunks)
set -eu
seconds=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=$(nproc)
base="base/digest.cc base/status.cc base/encoding.cc base/env.cc base/file.cc base/json.cc base/clock.cc"

# The sources of each target besides its fuzz/NAME_fuzzer.cc and $base.
targets="delta_decode signed_json http_head config agent_state sync_document chunk_page"
delta_decode="delta/approximate_match.cc delta/difference_model.cc delta/delta_decode.cc delta/delta_encode.cc delta/delta_format.cc delta/chunker.cc"
signed_json="manifest/manifest.cc signing/signing.cc signing/root.cc target/target.cc rollout/rollout.cc
  rollout/rollout_json.cc rollout/window.cc rollout/analysis.cc delta/delta_info.cc daemon/catalog.cc
  audit/audit.cc trust/terminal_credential.cc"
http_head="daemon/http.cc"
config="agent/config.cc daemon/config.cc client/http_client.cc manifest/manifest.cc rollout/rollout.cc
  rollout/rollout_json.cc rollout/window.cc rollout/analysis.cc"
agent_state="agent/state_files.cc agent/slots.cc daemon/api_shared.cc daemon/forwarded_reports.cc daemon/http.cc rollout/rollout.cc
  rollout/rollout_json.cc rollout/window.cc rollout/analysis.cc manifest/manifest.cc signing/signing.cc signing/root.cc
  trust/terminal_credential.cc"
chunk_page="manifest/chunk_pages.cc manifest/chunk_batch.cc manifest/manifest.cc"
sync_document="daemon/sync_document.cc manifest/manifest.cc rollout/rollout.cc rollout/rollout_json.cc rollout/window.cc
  rollout/analysis.cc signing/signing.cc signing/root.cc target/target.cc"

# Each source is compiled once (a source shared by several targets too), all
# cores at a time; line tables are enough for the sanitizers' reports.
sources_of() { eval "echo fuzz/$1_fuzzer.cc \$$1 $base"; }
mkdir -p "$out/obj"
for t in $targets; do sources_of "$t"; done | tr ' ' '\n' | grep . | sort -u |
  (cd "$root" && xargs -P "$jobs" -n 1 sh -c '
    clang++-14 -std=c++20 -O1 -gline-tables-only -fsanitize=fuzzer-no-link,address,undefined \
      -fno-sanitize-recover=all -I. -DUSE_OS_TZDB=1 -DHAS_STRING_VIEW=1 -DONLY_C_LOCALE=1 \
      -DTOML_HEADER_ONLY=0 -DTOML_SHARED_LIB=1 \
      -c "$2" -o "$1/obj/$(echo "$2" | tr / _).o"' _ "$out")
for t in $targets; do
  objs=$(for s in $(sources_of "$t"); do printf '%s ' "$out/obj/$(echo "$s" | tr / _).o"; done)
  # shellcheck disable=SC2086  # $objs is a list of paths without spaces
  clang++-14 -fsanitize=fuzzer,address,undefined $objs -lzstd -llzma -lcrypto -lsodium -lfmt -ldate-tz -lcurl \
    -ltomlplusplus -pthread -o "$out/${t}_fuzzer"
done

seeds="$root/fuzz/corpus/delta_decode"
if [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then
  mkdir -p "$seeds"
  MERIDIAN_FUZZ_WRITE_CORPUS="$seeds" "$out/delta_decode_fuzzer"
fi
# New inputs go to a work directory per target; the seed corpora in the tree
# stay as they are. Each target's output goes to its own log, printed after.
for t in $targets; do echo "$t"; done | xargs -P "$jobs" -n 1 sh -c '
  mkdir -p "$1/corpus-$4"
  "$1/$4_fuzzer" -max_total_time="$2" -rss_limit_mb=512 -max_len=65536 -artifact_prefix="$1/$4-" \
    -print_final_stats=1 "$1/corpus-$4" "$3/fuzz/corpus/$4" >"$1/$4.log" 2>&1' _ "$out" "$seconds" "$root" || failed=1
for t in $targets; do
  echo "fuzz: $t for ${seconds}s"
  cat "$out/$t.log"
done
exit "${failed:-0}"
