#!/usr/bin/env bash
# The flood test (issue 17, "Resource limits"): a real cluster and mount from
# tools/dpmfs, then tests/e2e/flood.py against its metadata server and first data server
# while the mount keeps working. Arguments after the first go to flood.py (the long run,
# tools/flood.sh, passes --conns/--seconds). Exit 0 pass, 1 fail, 77 skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dpmfs=$root/tools/dpmfs
export DPMFS_BUILD_DIR=${DPMFS_BUILD_DIR:-$root/build}
skip() { echo "SKIPPED: flood: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (FUSE mount)"
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is missing"
command -v python3 >/dev/null || skip "python3 is missing"

work=$(mktemp -d /tmp/dpmfs-flood.XXXXXX)
cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ] && [ -d "$work/logs" ]; then
    for f in "$work"/logs/*.log; do echo "---- $f"; tail -n 20 "$f"; done
  fi
  [ -f "$work/cluster.conf" ] && "$dpmfs" destroy "$work" >/dev/null 2>&1
  fusermount3 -u -z "$work/mnt" 2>/dev/null
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
"$dpmfs" up "$work" --data-servers 1 --data-size 128M --meta-size 64M >/dev/null ||
  { echo "FAIL: dpmfs up"; exit 1; }
meta_ep=$(awk '$1 == "meta" {print $2}' "$work/cluster.conf")
data_ep=$(awk '$1 == "data" {print $2; exit}' "$work/cluster.conf")
python3 "$here/flood.py" --meta "$meta_ep" --data "$data_ep" \
  --meta-pid "$(cat "$work/run/meta.pid")" --data-pid "$(cat "$work/run/data0.pid")" \
  --mnt "$work/mnt" --key-file "$work/cluster.key" "$@"
