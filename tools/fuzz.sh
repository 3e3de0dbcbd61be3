#!/usr/bin/env bash
# Builds the metadata decoder fuzzer (tests/metadata/fuzz/meta_decode_fuzz.cc) with clang
# + libFuzzer + ASan/UBSan in its own build directory and runs it for SECONDS (default
# 60). Exit status 0 = no crash, sanitizer report or failed property in that time.
#
#   tools/fuzz.sh [SECONDS]
#   DPMFS_FUZZ_BUILD_DIR=/tmp/bf DPMFS_FUZZ_JOBS=1 tools/fuzz.sh 600
#
# The corpus grows in $build/fuzz-corpus/meta_decode (kept between runs, seeded with one
# empty input); a crashing input is written to $build/fuzz-artifacts/ and its path
# printed by libFuzzer. Replay one with: $build/tests/meta_decode_fuzz FILE
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DPMFS_FUZZ_BUILD_DIR:-/work/build-fuzz}
seconds=${1:-60}
jobs=${DPMFS_FUZZ_JOBS:-2}

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz.sh: clang++ not found (libFuzzer needs clang)" >&2
  exit 2
fi
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPMFS_FUZZ=ON
fi
cmake --build "$build" --target meta_decode_fuzz --parallel "$jobs"

corpus=$build/fuzz-corpus/meta_decode
artifacts=$build/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
# -rss_limit_mb and -malloc_limit_mb: a decoder sizing a vector from a forged count
# would trip these long before exhausting the machine.
exec "$build/tests/meta_decode_fuzz" "$corpus" \
  -max_total_time="$seconds" -print_final_stats=1 \
  -rss_limit_mb=1024 -malloc_limit_mb=64 -max_len=4096 \
  -artifact_prefix="$artifacts/"
