#!/usr/bin/env bash
# The README's main command (for now, until the metadata server and the FUSE client
# land): installs what is missing, builds, formats a data pool on tmpfs, starts a data
# server on it over the soft transport, and benchmarks every persist method against it
# beside a raw-TCP floor. Extra arguments go to 'dpmfs-bench persist'.
#
# Environment: DPMFS_RUN_DIR (default /dev/shm/dpmfs-run) holds the pool, the server's
# log and the benchmark's JSON; DPMFS_POOL_SIZE (default 1G).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DPMFS_BUILD_DIR:-$root/build}
run_dir=${DPMFS_RUN_DIR:-/dev/shm/dpmfs-run}
pool_size=${DPMFS_POOL_SIZE:-1G}

bash "$root/tools/build.sh"
mkdir -p "$run_dir"
pool="$run_dir/data0.pool"
if ! "$build/mkfs/mkfs.dpmfs" show "$pool" >/dev/null 2>&1; then
  "$build/mkfs/mkfs.dpmfs" data "$pool" --size "$pool_size"
else
  echo "run: reusing the data pool $pool"
fi

log="$run_dir/dpmfs-data.log"
ready="$run_dir/dpmfs-data.ready"
rm -f "$ready"
"$build/datapath/dpmfs-data" --pool "$pool" --listen 127.0.0.1:0 --transport soft \
  >"$ready" 2>"$log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q '^READY ' "$ready" 2>/dev/null && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run: the data server failed to start; the end of its log ($log):" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.1
done
address=$(awk '/^READY /{print $2}' "$ready")
[ -n "$address" ] || { echo "run: the data server did not become ready; see $log" >&2; exit 1; }
echo "run: data server on $address (pool $pool, log $log)"

"$build/tools/bench/dpmfs-bench" persist --server "$address" --transport soft \
  --json "$run_dir/bench-persist.json" "$@"
echo "run: results in $run_dir/bench-persist.json"
