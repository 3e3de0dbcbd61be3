#!/usr/bin/env bash
# Replication cost through a real mount (docs/replication.md): the 4 KiB QD1 fdatasync
# write and 4 KiB random read rows of `dpmfs-bench fs` on single-host clusters with
# R = 1 and 2 (REPLICAS="1 2 3" for 3: pools of 256M fit the 256 MiB files only at R <= 2), 3 data servers each, interleaved round by round so that the load of
# a shared machine falls on every configuration alike. With BEFORE_TREE set (a checkout
# of another commit, built in BEFORE_TREE/build) its R = 1 runs first in each round:
# "R = 1 before/after".
#
#   tools/bench/replication_compare.sh [ROUNDS] [RUNTIME_S]
# Env: DPMFS_BUILD_DIR (default ./build), BEFORE_TREE, BASE_PORT (default 24300),
#      REPLICAS (default "1 2"). Prints one line per run.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${1:-3} runtime=${2:-5}
build=${DPMFS_BUILD_DIR:-$here/build}
base=${BASE_PORT:-24300}
work=$(mktemp -d /tmp/dpmfs-repl-bench.XXXXXX)
configs=()
[ -n "${BEFORE_TREE:-}" ] && configs+=("before:1")
for r in ${REPLICAS:-1 2}; do configs+=("after:$r"); done
cleanup() {
  for c in "${configs[@]}"; do
    tree=$here b=$build
    [ "${c%%:*}" = before ] && tree=$BEFORE_TREE b=$BEFORE_TREE/build
    DPMFS_BUILD_DIR=$b "$tree/tools/dpmfs" destroy "$work/${c/:/-}" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
i=0
for c in "${configs[@]}"; do
  which=${c%%:*} r=${c##*:}
  tree=$here b=$build extra=(--replicas "$r")
  [ "$which" = before ] && tree=$BEFORE_TREE b=$BEFORE_TREE/build extra=()
  DPMFS_BUILD_DIR=$b "$tree/tools/dpmfs" up "$work/${c/:/-}" --data-servers 3 "${extra[@]}" \
    --data-size 256M --meta-size 64M --base-port $((base + 10 * i)) >/dev/null
  i=$((i + 1))
done
for ((round = 1; round <= rounds; round++)); do
  for c in "${configs[@]}"; do
    d=$work/${c/:/-}
    mkdir -p "$d/mnt/bench"
    "$build/tools/bench/dpmfs-bench" fs --dir "$d/mnt/bench" --no-reference \
      --jobs randwrite4k_fdatasync_j1,randread4k_j1 --runtime "$runtime" \
      --json "$d/round$round.json" >"$d/round$round.txt" 2>"$d/round$round.log"
    python3 - "$c" "$round" "$d/round$round.json" <<'PY'
import json, sys
c, rnd, path = sys.argv[1:]
for row in json.load(open(path))["rows"]:
    print(f"{c:9} round {rnd} {row['profile']:40} value={row.get('dpmfs', 0):.0f} "
          f"p50_us={row.get('dpmfs_p50_us', 0):.0f}", flush=True)
PY
  done
done
