#!/usr/bin/env bash
# tools/dpmfs up waits for a daemon that is not ready within --timeout as long as it keeps
# printing PROGRESS lines (a long journal replay), and still gives up on one that goes
# silent. The metadata server here is the real dpmfs-meta behind a wrapper that first
# "replays" for ~3 s, printing PROGRESS every 0.4 s, against --timeout 1. No mount. ~10 s.
#
#   launcher_progress_test.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dpmfs=$root/tools/dpmfs
build=${1:?usage: launcher_progress_test.sh BUILD_DIR}

work=$(mktemp -d /tmp/dpmfs-launcher-progress.XXXXXX)
dir=$work/cluster
cleanup() {
  local rc=$?
  set +e
  [ $rc -eq 0 ] || tail -n 20 "$dir"/logs/*.log
  DPMFS_BUILD_DIR=$work/bin "$dpmfs" destroy "$dir" >/dev/null 2>&1
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A build directory of the real binaries, except dpmfs-meta: a wrapper whose "replay"
# takes $FAKE_REPLAY_STEPS x 0.4 s, printing PROGRESS unless $FAKE_REPLAY_SILENT.
mkdir -p "$work/bin"
for b in mkfs/mkfs.dpmfs datapath/dpmfs-data fs/dpmfs-mount; do ln -s "$build/$b" "$work/bin/"; done
cat >"$work/bin/dpmfs-meta" <<WRAP
#!/usr/bin/env bash
for ((i = 1; i <= \${FAKE_REPLAY_STEPS:-8}; i++)); do
  [ -n "\${FAKE_REPLAY_SILENT:-}" ] || echo "PROGRESS replaying journal: step \$i"
  sleep 0.4
done
exec "$build/metadata/dpmfs-meta" "\$@"
WRAP
chmod +x "$work/bin/dpmfs-meta"
export DPMFS_BUILD_DIR=$work/bin

echo "--- a replay of ~3 s with progress, --timeout 1: up waits for it"
start=$(date +%s%N)
"$dpmfs" up "$dir" --no-mount --data-servers 1 --data-size 16M --meta-size 16M --timeout 1 \
  >"$work/out" 2>&1 || { cat "$work/out"; fail "up gave up on a daemon that showed progress"; }
echo "up took $(( ($(date +%s%N) - start) / 1000000 )) ms"
grep -q '^PROGRESS replaying journal: step 8' "$dir/logs/meta.log" || fail "no progress in the log"
"$dpmfs" down "$dir" >/dev/null

echo "--- the same wait without progress: up gives up after --timeout and says why"
rc=0
FAKE_REPLAY_SILENT=1 "$dpmfs" up "$dir" --no-mount --timeout 1 >"$work/out" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "up waited for a silent daemon beyond --timeout"
grep -q 'did not print READY (or PROGRESS) within 1s' "$work/out" || { cat "$work/out"; fail "no reason given"; }
echo "PASS"
