#!/usr/bin/env bash
# Smoke test of `dpmfs-bench meta`: the benchmark starts its own dpmfs-meta on a scratch
# pool (soft transport), runs every op with 1 and 2 threads, both client modes and
# windows 1 and 4 (one call in flight per thread, and four pipelined), and the JSON
# report must hold every cell with operations counted. It must also leave nothing behind
# in its scratch directory. Then the recovery measurement on its own (--ops none
# --recovery-ops): the server is killed with SIGKILL after 3000 acknowledged mknods and
# restarted, the benchmark checks the files are there, and the report must say how long
# the restart took and what the server replayed. Performance is not judged here:
# benchmarks are programs. No warm-up: unlink consumes the files the create phase made,
# and when unlink runs more than 5x faster than create (per-thread clients, window 4) a
# 0.05 s warm-up used them all up and the cell measured 0 operations (seen twice in six
# runs of this sitting); the benchmark's limit is written down in tools/bench/README.md ('unlink's supply').
# A 256 MiB pool: on an idle machine a 0.2 s create cell makes ~40k files, and with a
# 64 MiB pool (max_inodes = checkpoint capacity / 256) a later mkdir cell met ENOSPC.
#
# Usage: bench_meta_smoke.sh BENCH_BIN META_BIN
set -euo pipefail

bench=$1
meta=$2

base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
dir=$(mktemp -d "$base/dpmfs-bench-meta-smoke.XXXXXX")
trap 'rm -rf "$dir"' EXIT

fail() {
  echo "bench_meta_smoke: FAIL: $*" >&2
  exit 1
}

mkdir "$dir/scratch"
json=$dir/meta.json
"$bench" meta --meta-bin "$meta" --scratch-dir "$dir/scratch" --pool-size 256M --ops all \
  --threads 1,2 --clients shared,per-thread --window 1,4 --seconds 0.2 --warmup-seconds 0 \
  --json "$json" >"$dir/bench.out" 2>"$dir/bench.err" \
  || { cat "$dir/bench.out" "$dir/bench.err" >&2; fail "dpmfs-bench meta failed"; }
cat "$dir/bench.out"

python3 - "$json" <<'PY' || fail "the JSON report is incomplete"
import json, sys
with open(sys.argv[1]) as f:
    report = json.load(f)
assert report["config"]["windows"] == [1, 4], report["config"]
cells = {(c["op"], c["threads"], c["clients"], c["window"]): c for c in report["cells"]}
want = {(op, t, mode, w) for op in ("create", "stat", "unlink", "mkdir", "rename")
        for t in (1, 2) for mode in ("shared", "per-thread") for w in (1, 4)}
missing = want - set(cells)
assert not missing, f"missing cells: {sorted(missing)}"
for key in want:
    c = cells[key]
    assert c["ops_per_sec"] > 0 and c["median"]["ops"] > 0, (key, c)
    assert c["p50_us"] > 0 and c["p99_us"] >= c["p50_us"], (key, c)
    assert c["server_cpu_us_per_op"] is not None, (key, c)
PY

leftovers=$(find "$dir/scratch" -mindepth 1 | head -n 5)
[ -z "$leftovers" ] || fail "the benchmark left files behind: $leftovers"

rjson=$dir/recovery.json
"$bench" meta --meta-bin "$meta" --scratch-dir "$dir/scratch" --pool-size 64M --ops none \
  --recovery-ops 3000 --json "$rjson" >"$dir/recovery.out" 2>"$dir/recovery.err" \
  || { cat "$dir/recovery.out" "$dir/recovery.err" >&2; fail "dpmfs-bench meta --recovery-ops failed"; }
cat "$dir/recovery.out"
python3 - "$rjson" <<'PY' || fail "the recovery report is incomplete"
import json, sys
with open(sys.argv[1]) as f:
    report = json.load(f)
assert report["cells"] == [], report["cells"]
r = report["recovery"]
assert r["ops"] == 3000 and r["names_checked"] > 16, r
assert r["log_seconds"] > 0 and r["restart_seconds"] > 0 and r["kill_seconds"] >= 0, r
assert "journal records replayed" in r["server_report"], r
assert r["server_checkpoint"].startswith("checkpoint: "), r  # taken after the replay
PY
leftovers=$(find "$dir/scratch" -mindepth 1 | head -n 5)
[ -z "$leftovers" ] || fail "the recovery measurement left files behind: $leftovers"
echo "bench_meta_smoke: OK"
