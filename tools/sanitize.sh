#!/usr/bin/env bash
# Builds the whole project with sanitizers in its own build directory and runs ctest:
#
#   tools/sanitize.sh asan [CTEST_ARGS...]   # AddressSanitizer + UndefinedBehaviorSanitizer
#   tools/sanitize.sh tsan [CTEST_ARGS...]   # ThreadSanitizer
#
#   DPMFS_SANITIZE_BUILD_DIR  build directory (default: <root>/build-asan or build-tsan)
#   DPMFS_SANITIZE_JOBS       compile jobs (default: nproc; 1 leaves the CPU to others)
#   DPMFS_TEST_JOBS           ctest jobs (default 2)
#   DPMFS_SANITIZE_TARGETS    build only these targets (space-separated; then pass ctest a
#                             matching -R PATTERN), for a partial run on a busy machine
#
# Every process a test starts (daemons, FUSE clients, tools) is a sanitized binary; each
# writes its reports to <build>/sanitizer-logs/ (log_path), so a report from a daemon that
# a test only kills is not lost. The exit status is non-zero when ctest fails or any
# report file exists; the reports are printed at the end. Library noise is silenced in
# tools/sanitizers/*.supp, each entry with why (tools/sanitizers/README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-}
case "$kind" in
  asan) sanitize=address ;;
  tsan) sanitize=thread ;;
  *) echo "usage: tools/sanitize.sh asan|tsan [CTEST_ARGS...]" >&2; exit 2 ;;
esac
shift
build=${DPMFS_SANITIZE_BUILD_DIR:-$root/build-$kind}
jobs=${DPMFS_SANITIZE_JOBS:-$(nproc)}
supp=$root/tools/sanitizers
start=$(date +%s)

bash "$root/tools/install-deps.sh"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
# Warnings are not errors here: sanitizer instrumentation changes what gcc can prove
# (e.g. -Wmaybe-uninitialized), and the plain CI build already holds the warning bar.
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDPMFS_SANITIZE="$sanitize" -DDPMFS_WERROR=OFF >/dev/null
targets=()
for t in ${DPMFS_SANITIZE_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" --parallel "$jobs" "${targets[@]}"
built=$(date +%s)

logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
common="log_path=$logs/report:print_stacktrace=1"
export ASAN_OPTIONS="$common:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1"
export LSAN_OPTIONS="$common:suppressions=$supp/lsan.supp"
export UBSAN_OPTIONS="$common:halt_on_error=1:suppressions=$supp/ubsan.supp"
export TSAN_OPTIONS="$common:halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"

rc=0
(cd "$build" && ctest --output-on-failure --timeout 1200 --parallel "${DPMFS_TEST_JOBS:-2}" "$@") ||
  rc=$?
end=$(date +%s)

reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
  echo "sanitize.sh: $(echo "$reports" | wc -l) sanitizer report file(s):"
  for f in $reports; do
    echo "==== $f"
    head -c 20000 "$f"
  done
  [ $rc -ne 0 ] || rc=1
else
  echo "sanitize.sh: no sanitizer reports"
fi
echo "sanitize.sh $kind: build $((built - start)) s, ctest $((end - built)) s, exit $rc"
exit $rc
