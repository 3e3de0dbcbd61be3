#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings as errors,
# and runs every suite with ctest (the run ends with ctest's summary).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DPMFS_BUILD_DIR:-$root/build}

bash "$root/tools/build.sh" -DDPMFS_WERROR=ON
cd "$build"
ctest --output-on-failure --timeout 600 --parallel "${DPMFS_TEST_JOBS:-2}" "$@"
