#!/usr/bin/env bash
# Before/after speed of two builds of dpmfs on one machine in one sitting: `dpmfs-bench
# persist` (4 KiB, QD 1 and 16), `meta` (16 threads, window 32, shared and per-thread
# clients) and `fs`, alternating before and after round by round so that the load of a
# shared machine falls on both alike; then a table of medians with each side's range
# (tools/bench/before_after_report.py). How to read it is in tools/bench/README.md.
#
#   tools/bench/before_after.sh BEFORE_TREE AFTER_TREE [ROUNDS]
# Each tree is a checkout built in TREE/build. Env: WORK (default a new /tmp dir; results
# in WORK/results), BASE_PORT (default 24100, below the kernel's ephemeral ports, which
# a client's connection may hold for a moment: before uses BASE_PORT.., after +100, the
# persist servers +201/+202), FS_RUNTIME (s per fs job, default 8), FS_FILES (3000),
# BENCHES (default "persist meta fs"), META_SIZE (metadata pool, default 1G: meta's
# create cells fill a 256 MiB pool's inodes on a fast machine, and its mkdir cell then
# fails with ENOSPC).
set -uo pipefail
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
declare -A TREE=([before]=$(cd "$1" && pwd) [after]=$(cd "$2" && pwd))
rounds=${3:-3}
for n in before after; do
  [ -x "${TREE[$n]}/build/tools/bench/dpmfs-bench" ] ||
    { echo "before_after: ${TREE[$n]}/build has no dpmfs-bench: build that tree first" >&2; exit 2; }
done
work=${WORK:-$(mktemp -d /tmp/dpmfs-before-after.XXXXXX)}
out=$work/results
mkdir -p "$out"
base=${BASE_PORT:-24100}
META_SIZE=${META_SIZE:-1G}
declare -A BASE=([before]=$base [after]=$((base + 100)))
declare -A PPORT=([before]=$((base + 201)) [after]=$((base + 202)))
export DPMFS_LOCAL_KEYS=$work/keys  # the launcher's key links stay in the scratch dir
log() { echo "[$(date -u +%T)] $*" | tee -a "$out/run.log"; }

# An older tree may predate the cluster key: pass --key-file only to a build that has it.
key_args() {  # side
  local key=$work/$1/cluster.key
  [ -f "$key" ] && echo "--key-file $key"
}
bin() { echo "${TREE[$1]}/build/$2"; }

stop_all() {
  for n in before after; do
    [ -f "$work/persist-$n.pid" ] && kill "$(cat "$work/persist-$n.pid")" 2>/dev/null
    DPMFS_BUILD_DIR=${TREE[$n]}/build "${TREE[$n]}/tools/dpmfs" destroy "$work/$n" \
      >/dev/null 2>&1 || true
    rm -f "/dev/shm/dpmfs-before-after-persist-$n-$$.pool"
  done
}
trap stop_all EXIT

start_side() {  # side
  local n=$1 pool=/dev/shm/dpmfs-before-after-persist-$1-$$.pool
  DPMFS_BUILD_DIR=${TREE[$n]}/build "${TREE[$n]}/tools/dpmfs" up "$work/$n" \
    --base-port "${BASE[$n]}" --pool-dir "/dev/shm/dpmfs-before-after-$n-$$" --data-size 1G \
    --meta-size "$META_SIZE" \
    >> "$out/up-$n.log" 2>&1 || { log "dpmfs up ($n) failed: see $out/up-$n.log"; return 1; }
  "$(bin "$n" mkfs/mkfs.dpmfs)" data "$pool" --size 256M > /dev/null 2>&1 ||
    { log "mkfs of the persist pool ($n) failed"; return 1; }
  # shellcheck disable=SC2046
  "$(bin "$n" datapath/dpmfs-data)" --pool "$pool" --listen "127.0.0.1:${PPORT[$n]}" \
    --transport soft --log-level warn $(key_args "$n") \
    > "$out/persist-server-$n.out" 2> "$out/persist-server-$n.err" &
  echo $! > "$work/persist-$n.pid"
  for _ in $(seq 100); do grep -qs READY "$out/persist-server-$n.out" && return 0; sleep 0.1; done
  log "persist server ($n) not ready: see $out/persist-server-$n.err"; return 1
}

# shellcheck disable=SC2046
run_persist() {  # side round
  "$(bin "$1" tools/bench/dpmfs-bench)" persist --server "127.0.0.1:${PPORT[$1]}" --sizes 4096 \
    --qd 1,16 $(key_args "$1") --json "$out/persist-$1-$2.json" \
    > "$out/persist-$1-$2.txt" 2> "$out/persist-$1-$2.err"
}
# shellcheck disable=SC2046
run_meta() {
  "$(bin "$1" tools/bench/dpmfs-bench)" meta --meta "127.0.0.1:${BASE[$1]}" \
    --meta-pid "$(cat "$work/$1/run/meta.pid")" --threads 16 --window 32 \
    --clients shared,per-thread $(key_args "$1") --json "$out/meta-$1-$2.json" \
    > "$out/meta-$1-$2.txt" 2> "$out/meta-$1-$2.err"
}
run_fs() {
  "$(bin "$1" tools/bench/dpmfs-bench)" fs --dir "$work/$1/mnt" --no-reference \
    --runtime "${FS_RUNTIME:-8}" --files "${FS_FILES:-3000}" --json "$out/fs-$1-$2.json" \
    > "$out/fs-$1-$2.txt" 2> "$out/fs-$1-$2.err"
}

log "before ${TREE[before]} ($(git -C "${TREE[before]}" rev-parse --short HEAD 2>/dev/null))," \
  "after ${TREE[after]} ($(git -C "${TREE[after]}" rev-parse --short HEAD 2>/dev/null))," \
  "$rounds rounds, results in $out"
start_side before && start_side after || exit 1
for ((k = 1; k <= rounds; k++)); do
  for bench in ${BENCHES:-persist meta fs}; do
    for n in before after; do
      log "round $k $bench $n (load $(cut -d' ' -f1-3 /proc/loadavg))"
      "run_$bench" "$n" "$k" || log "  failed: see $out/$bench-$n-$k.err"
    done
  done
done
python3 "$(dirname "$0")/before_after_report.py" "$out" | tee "$out/report.txt"
