#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (one per decoder of network or pool bytes;
# tests/fuzz/README.md) with clang + libFuzzer + ASan + UBSan in their own build
# directory, runs each for a duration or a number of executions, and prints per target:
# executions, coverage (libFuzzer's cov/ft), corpus size, crashes. Exit status 0 only
# when no target crashed, failed a property or produced a sanitizer report.
#
#   tools/fuzz.sh [--seconds N] [--runs N] [--target NAME]... [--jobs N] [--list]
#     --seconds N   run each target N seconds (default 60)
#     --runs N      run each target N executions (with --seconds: whichever comes first)
#     --target NAME only this target (repeatable; default: all, in tests/fuzz/fuzz.cmake's order)
#     --jobs N      compile jobs (default: nproc)
#   DPMFS_FUZZ_BUILD_DIR   build directory (default <root>/build-fuzz)
#
# Each target reads its seeds from tests/fuzz/corpus/NAME (kept in the repo) and adds what
# it finds to <build>/fuzz-corpus/NAME (kept between runs, not committed). A crashing input
# goes to <build>/fuzz-artifacts/NAME-crash-<sha1>; replay it with
#   <build>/tests/NAME <build>/fuzz-artifacts/NAME-crash-...
# and, once fixed, copy it into tests/fuzz/corpus/NAME as a regression seed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DPMFS_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=""
runs=""
targets=()
jobs=$(nproc)
list_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --list) list_only=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$seconds" ] && [ -z "$runs" ]; then seconds=60; fi
start=$(date +%s)

bash "$root/tools/install-deps.sh" --fuzz
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
CC=clang CXX=clang++ cmake -S "$root" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPMFS_FUZZ=ON -DDPMFS_SANITIZE=address >/dev/null
mapfile -t all < "$build/fuzz_targets.txt"
if [ $list_only -eq 1 ]; then printf '%s\n' "${all[@]}"; exit 0; fi
if [ ${#targets[@]} -eq 0 ]; then targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
  if ! printf '%s\n' "${all[@]}" | grep -qx "$t"; then
    echo "fuzz.sh: no target '$t' (targets: ${all[*]})" >&2
    exit 2
  fi
done
cmake --build "$build" --parallel "$jobs" --target "${targets[@]}"
built=$(date +%s)

supp=$root/tools/sanitizers
export ASAN_OPTIONS="detect_leaks=1:print_stacktrace=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp"

# Largest input per target: the pool header target needs a header (4 KiB) and a data area.
max_len() {
  case "$1" in
    pool_header_fuzz) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

failed=0
summary=()
for t in "${targets[@]}"; do
  corpus=$build/fuzz-corpus/$t
  seeds=$root/tests/fuzz/corpus/$t
  artifacts=$build/fuzz-artifacts
  log=$build/fuzz-logs/$t.log
  mkdir -p "$corpus" "$seeds" "$artifacts" "$(dirname "$log")"
  before=$(find "$artifacts" -name "$t-*" -type f | wc -l)
  limits=()
  [ -n "$seconds" ] && limits+=(-max_total_time="$seconds")
  [ -n "$runs" ] && limits+=(-runs="$runs")
  # -rss_limit_mb / -malloc_limit_mb: a decoder sizing a buffer from a forged count trips
  # these long before it exhausts the machine; -timeout: one input may take 10 s at most.
  rc=0
  "$build/tests/$t" "$corpus" "$seeds" "${limits[@]}" -print_final_stats=1 \
    -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -max_len="$(max_len "$t")" \
    -artifact_prefix="$artifacts/$t-" >"$log" 2>&1 || rc=$?
  after=$(find "$artifacts" -name "$t-*" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
  reports=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|property failed|deadly signal' "$log" || true)
  crashes=$((after - before))
  verdict=ok
  if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ] || [ "$reports" -gt 0 ]; then
    verdict="FAILED (exit $rc; see $log)"
    failed=1
  fi
  summary+=("$(printf '%-22s execs %10s  exec/s %7s  %-32s crashes %d  reports %d  %s' \
    "$t" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$crashes" "$reports" "$verdict")")
  echo "${summary[-1]}"
done
end=$(date +%s)
echo "---- fuzz.sh summary (${seconds:+${seconds}s }${runs:+${runs} runs }per target)"
printf '%s\n' "${summary[@]}"
echo "fuzz.sh: build $((built - start)) s, fuzzing $((end - built)) s, $([ $failed -eq 0 ] && echo "no crashes" || echo "FAILURES")"
exit $failed
