#!/usr/bin/env bash
# Smoke test of `dpmfs-bench persist`: formats a scratch data pool on tmpfs, starts a
# dpmfs-data on it (soft transport, any free port), runs the quick benchmark for three
# methods and checks that the JSON report parses and holds every cell, the baselines and
# the three target ratios. Performance is not judged here: benchmarks are programs.
#
# Usage: bench_smoke.sh MKFS_BIN DATA_SERVER_BIN BENCH_BIN
set -euo pipefail

mkfs=$1
data_server=$2
bench=$3

base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
dir=$(mktemp -d "$base/dpmfs-bench-smoke.XXXXXX")
server_pid=

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

fail() {
  echo "bench_smoke: FAIL: $*" >&2
  for f in server.out server.err; do
    [ -s "$dir/$f" ] && { echo "--- $f" >&2; tail -n 20 "$dir/$f" >&2; }
  done
  exit 1
}

"$mkfs" data "$dir/pool" --size 64M >/dev/null 2>"$dir/mkfs.err" \
  || { cat "$dir/mkfs.err" >&2; fail "mkfs.dpmfs data failed"; }

# The server and the benchmark prove this key to each other (docs/security.md).
"$mkfs" key create "$dir/cluster.key" >/dev/null || fail "mkfs.dpmfs key create failed"
export DPMFS_KEY_FILE=$dir/cluster.key

"$data_server" --pool "$dir/pool" --listen 127.0.0.1:0 --transport soft \
  >"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!

endpoint=
for _ in $(seq 1 100); do
  endpoint=$(awk '$1 == "READY" { print $2; exit }' "$dir/server.out")
  [ -n "$endpoint" ] && break
  kill -0 "$server_pid" 2>/dev/null || fail "dpmfs-data exited before READY"
  sleep 0.1
done
[ -n "$endpoint" ] || fail "dpmfs-data printed no READY line within 10 s"

json=$dir/persist.json
"$bench" persist --server "$endpoint" --quick --methods read,read2,none --json "$json" \
  >"$dir/bench.out" 2>"$dir/bench.err" \
  || { cat "$dir/bench.out" "$dir/bench.err" >&2; fail "dpmfs-bench persist failed"; }
cat "$dir/bench.out"

python3 - "$json" <<'PY' || fail "the JSON report is incomplete"
import json, sys
with open(sys.argv[1]) as f:
    report = json.load(f)
cells = {(c["method"], c["size"], c["qd"]): c for c in report["cells"]}
want = {(m, 4096, qd) for m in ("read", "read2", "none") for qd in (1, 16)}
missing = want - set(cells)
assert not missing, f"missing cells: {sorted(missing)}"
for key in want:
    c = cells[key]
    assert c["ops_per_sec"] > 0 and c["p50_us"] > 0 and c["p99_us"] >= c["p50_us"], (key, c)
    assert len(c["runs"]) == 1, (key, c["runs"])
baselines = {(b["method"], b["size"]) for b in report["baselines"]}
assert {("tcp-pingpong", 4096), ("tcp-stream", 4096)} <= baselines, baselines
ratios = report["ratios"]
assert len(ratios) == 3, ratios
for name, r in ratios.items():
    # JSON numbers: a ratio of exactly 1 is written "1", which Python reads as an int.
    assert isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool), (name, r)
    assert r["verdict"] in ("PASS", "MISS"), (name, r)
assert report["machine"]["nproc"] >= 1 and report["machine"]["kernel"], report["machine"]
PY

kill "$server_pid"
wait "$server_pid" || fail "dpmfs-data did not stop cleanly on SIGTERM"
server_pid=
echo "bench_smoke: OK"
