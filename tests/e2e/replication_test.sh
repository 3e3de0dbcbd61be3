#!/usr/bin/env bash
# Replication through a real mount (docs/replication.md), real daemons on loopback:
# a cluster of 3 data servers with 2 copies of each block. Files written through the
# mount read back (O_DIRECT, so from the data servers, not the page cache) with any one
# data server killed (kill -9): reads fail over to the other copy. With two servers
# down some blocks have no copy left: reads fail with EIO at once (no hang) and work
# again when the servers are back. A data server whose pool is deleted and formatted
# again is rebuilt in full: afterwards, with each server holding the other copies of its
# blocks killed in turn, every file reads back through a fresh client. `up --replicas`
# with too few data servers is refused and creates nothing. Needs root and /dev/fuse
# (else exit 77: skipped). ~40 s.
#
# Writes while a copy is down, resync and status: replication_failover_test.sh.
set -euo pipefail
source "$(dirname "$0")/../support/cluster_script_prologue.sh" replication-test

step "--replicas above --data-servers is refused, nothing is created"
if "$dpmfs" up "$dir" --data-servers 2 --replicas 3 >"$work/out" 2>&1; then
  fail "up --replicas 3 with 2 data servers succeeded"
fi
grep -q "needs at least 3 data servers" "$work/out" || { cat "$work/out"; fail "unclear error"; }
[ ! -e "$dir/cluster.conf" ] || fail "a refused up wrote $dir/cluster.conf"

step "up: 3 data servers, 2 copies"
"$dpmfs" up "$dir" --data-servers 3 --replicas 2 --data-size 64M --meta-size 32M >/dev/null
grep -q "^replicas 2" "$dir/cluster.conf" || fail "cluster.conf lacks 'replicas 2'"
mnt=$dir/mnt
# Several stripe units (1 MiB) per file, so every server holds primaries and copies.
for i in 1 2 3; do
  head -c $((3 * 1024 * 1024 + i * 12345)) /dev/urandom >"$work/src$i"
  cp "$work/src$i" "$mnt/f$i"
done
sync
# Reads from the data servers, not the kernel's page cache.
check_all() {
  local i
  for i in 1 2 3; do
    dd if="$mnt/f$i" iflag=direct bs=1M status=none | cmp - "$work/src$i" ||
      fail "f$i differs ($*)"
  done
}
check_all "all servers up"
pid_of() { cat "$dir/run/$1.pid"; }
# Waits until the metadata server has every data server up again (a returning server is
# resyncing first; docs/replication.md), at most 60 s.
map_bin=${DPMFS_BUILD_DIR:-$root/build}/tools/cluster_map/dpmfs-cluster-map
cluster_map() {
  "$map_bin" "$(awk '$1 == "meta" {print $2}' "$dir/cluster.conf")" --key-file "$dir/cluster.key"
}
wait_all_up() {
  local i
  for ((i = 0; i < 300; i++)); do
    if cluster_map >"$work/map" 2>&1 && ! grep -qvE '^(epoch|data [0-9]+ up)' "$work/map"; then
      return 0
    fi
    sleep 0.2
  done
  cat "$work/map"
  fail "the data servers are not all up after 60 s"
}

for victim in 0 1 2; do
  step "data server $victim killed: every file reads back from the other copies"
  kill -9 "$(pid_of data$victim)"
  sleep 0.2
  check_all "data$victim down"
  "$dpmfs" up "$dir" >/dev/null
  check_all "data$victim back"
  wait_all_up
done

# The files read back through a client that has nothing cached (layouts, pages).
second=$work/mnt2
before_destroy() { umount -l "$second" 2>/dev/null || true; }
check_fresh() {
  local i
  mkdir -p "$second"
  "$dpmfs" mount "$dir" "$second" >/dev/null
  for i in 1 2 3; do
    dd if="$second/f$i" iflag=direct bs=1M status=none | cmp - "$work/src$i" ||
      { umount "$second"; fail "f$i differs through a fresh client ($*)"; }
  done
  umount "$second"
}

step "data1's pool deleted and formatted again: rebuilt in full when it returns"
# Data server 1 holds its own primaries (second copies on data2) and the second copies
# of data0's primaries: a resync of only what it missed (nothing) would leave them zeros.
kill -9 "$(pid_of data1)"
pool1=$(awk '$1 == "data" {print $3}' "$dir/cluster.conf" | sed -n 2p)
[ -f "$pool1" ] || fail "no pool file for data1 in cluster.conf ($pool1)"
rm -f "$pool1"
mkfs_bin=${DPMFS_BUILD_DIR:-$root/build}/mkfs/mkfs.dpmfs
"$mkfs_bin" cluster "$dir/cluster.conf" --only data:1 >"$work/out" 2>&1 ||
  { cat "$work/out"; fail "mkfs.dpmfs --only data:1 failed"; }
"$dpmfs" up "$dir" >/dev/null
# Back within one probe period (lease / 3) the map may never have shown it down: wait for
# the probe that sees the new pool, then for the rebuild to end.
for ((i = 0; i < 300; i++)); do
  grep -q "data server 1 answers with a freshly formatted pool" "$dir/logs/meta.log" && break
  sleep 0.2
done
grep -q "data server 1 answers with a freshly formatted pool" "$dir/logs/meta.log" ||
  { tail -n 20 "$dir/logs/meta.log"; fail "data1's new pool was not rebuilt in full"; }
wait_all_up
grep -qE "data server 1 resynced \([1-9][0-9]* MiB copied" "$dir/logs/meta.log" ||
  { tail -n 20 "$dir/logs/meta.log"; fail "no copy to data1 logged"; }
for other in 0 2; do
  step "data1 rebuilt, data$other (the other copy of some of its blocks) killed: all reads back"
  kill -9 "$(pid_of data$other)"
  sleep 0.2
  check_fresh "data1 rebuilt, data$other down"
  "$dpmfs" up "$dir" >/dev/null
  wait_all_up
done

step "two servers down: some blocks have no copy: EIO at once, then service resumes"
kill -9 "$(pid_of data0)" "$(pid_of data1)"
sleep 0.2
start=$(date +%s)
if dd if="$mnt/f1" iflag=direct bs=1M of=/dev/null status=none 2>"$work/err"; then
  fail "a read with both copies of a block down succeeded"
fi
grep -q "Input/output error" "$work/err" || { cat "$work/err"; fail "not EIO"; }
[ $(($(date +%s) - start)) -le 10 ] || fail "the failing read took more than 10 s"
"$dpmfs" up "$dir" >/dev/null
check_all "servers back"
wait_all_up
check_all "servers up"
echo "PASS"
