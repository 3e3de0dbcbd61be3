#!/usr/bin/env bash
# mkfs.dpmfs check (mkfs/cluster_check.h) against a real cluster: the daemons started by
# tools/dpmfs, a workload through the FUSE mount, then the cluster stopped and checked.
# Clean after a clean stop and after a kill -9 of the metadata server (the journal
# replayed on a private copy: the pool files' bytes are unchanged); a running cluster is
# refused naming the holder; then damage made offline, one kind at a time from a saved
# copy of the pools, each reported with exit 1: two files sharing blocks, blocks owned
# but free in the allocator, an unreachable file leaking its blocks, a wrong link count,
# an extent past its pool, a corrupt data pool header, a data pool of another cluster, data
# lines swapped; another cluster's metadata pool and a file that is no pool are refused
# (exit 2). Needs root and /dev/fuse (else exit 77: skipped). ~30 s.
#
#   check_test.sh            (DPMFS_BUILD_DIR: the build with the daemons)
set -euo pipefail
source "$(dirname "$0")/../support/cluster_script_prologue.sh" mkfs-check-test
build=${DPMFS_BUILD_DIR:-$root/build}
mkfs=$build/mkfs/mkfs.dpmfs
damage=$build/tests/dpmfs-check-damage

pools_sum() { sha256sum "$meta_pool" "${data_pools[@]}" | awk '{print $1}' | tr '\n' ' '; }
save() { mkdir -p "$work/saved"; for p in "$meta_pool" "${data_pools[@]}"; do cp --sparse=always "$p" "$work/saved/"; done; }
restore() { for p in "$meta_pool" "${data_pools[@]}"; do cp --sparse=always "$work/saved/$(basename "$p")" "$p"; done; }
conf=$dir/cluster.conf

step "a cluster and a workload through the mount"
expect_rc 0 "$dpmfs" up "$dir" --data-servers 2 --data-size 64M --meta-size 32M
meta_pool=$(awk '$1 == "meta" {print $3}' "$conf")
mapfile -t data_pools < <(awk '$1 == "data" {print $3}' "$conf")
m=$dir/mnt
mkdir -p "$m/a/b/c" "$m/gone"
for i in 1 2 3 4; do dd if=/dev/urandom of="$m/a/f$i" bs=64K count=$((i * 8)) status=none; done
dd if=/dev/urandom of="$m/big" bs=1M count=5 status=none
ln "$m/a/f1" "$m/a/b/hard"
ln -s ../a/f2 "$m/a/b/c/sym"
mv "$m/a/f4" "$m/a/b/c/f4"
truncate -s 100K "$m/a/f3"
rm -r "$m/gone"
sync

step "a running cluster is refused, naming the holder"
expect_rc 2 "$mkfs" check "$conf"
expect_out "in use by pid [0-9]+ \(dpmfs-(meta|data)\)"

step "stopped cleanly: clean, and the pools are not written"
expect_rc 0 "$dpmfs" down "$dir"
before=$(pools_sum)
expect_rc 0 "$mkfs" check "$conf" --progress
expect_out ": clean \("
expect_out "check: checking the blocks of data pool 1"
[ "$(pools_sum)" = "$before" ] || fail "check changed a pool file"

step "kill -9 of the metadata server: the journal is replayed on a private copy"
expect_rc 0 "$dpmfs" up "$dir"
for i in 1 2 3; do dd if=/dev/urandom of="$m/late$i" bs=256K count=3 status=none; done
rm "$m/a/f2"
sync
kill -KILL "$(cat "$dir/run/meta.pid")"
expect_rc 0 "$dpmfs" down "$dir"
before=$(pools_sum)
expect_rc 0 "$mkfs" check "$conf"
grep -qE "\+ [1-9][0-9]* journal records replayed" "$work/out" || { cat "$work/out"; fail "no journal replayed"; }
expect_out ": clean \("
[ "$(pools_sum)" = "$before" ] || fail "check changed a pool file while replaying the journal"
save

step "two files share blocks"
expect_rc 0 "$damage" "$meta_pool" share /a/f1 /big
expect_rc 1 "$mkfs" check "$conf"
expect_out "^shared: .* of data pool [0-9] .* are held by two files: inode [0-9]+ \(/(a/f1|a/b/hard|big)\)"
expect_out "problems \("
restore

step "an extent straddling the last used block: shared and owned but free"
expect_rc 0 "$damage" "$meta_pool" straddle /big
expect_rc 1 "$mkfs" check "$conf"
expect_out "^shared: "
expect_out "^owned-free: bytes \[[0-9]+, [0-9]+\) = blocks [0-9]+-[0-9]+ of data pool [0-9] .* belong to inode [0-9]+ \(/[a-z0-9/]+\) file offset [0-9]+ but are free in the allocator"
restore

step "a file no directory names leaks its blocks"
expect_rc 0 "$damage" "$meta_pool" orphan /a/f3
expect_rc 1 "$mkfs" check "$conf"
expect_out "^unreachable: inode [0-9]+ \(nlink 0, 0 open handles\) is named by no directory .* are leaked"
restore

step "a wrong link count"
expect_rc 0 "$damage" "$meta_pool" nlink /a/f1 5
expect_rc 1 "$mkfs" check "$conf"
expect_out "^links: inode [0-9]+ \(/a/(f1|b/hard)\) has nlink 5 but 2 names"
restore

step "an extent past the end of its pool (and --json)"
expect_rc 0 "$damage" "$meta_pool" outside /big
expect_rc 1 "$mkfs" check "$conf"
expect_out "^outside: inode [0-9]+ \(/big\) file offset 0: .* lies outside its data area"
expect_rc 1 "$mkfs" check "$conf" --json
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert not r["clean"]; assert any(p["kind"]=="outside" and p["path"]=="/big" for p in r["problems"]), r' "$work/out" \
  || fail "--json did not report the extent"
restore

step "a corrupt data pool header (one byte of its cluster UUID)"
printf '\xff' | dd of="${data_pools[1]}" bs=1 seek=20 conv=notrunc status=none
expect_rc 1 "$mkfs" check "$conf"
expect_out "^header: data pool 1 \(.*\): .*checksum mismatch"
restore

step "a data pool of another cluster"
expect_rc 0 "$mkfs" data "${data_pools[1]}" --size 64M --index 1 --force --no-zero \
  --cluster 11111111-2222-4333-8444-555555555555
expect_rc 1 "$mkfs" check "$conf"
expect_out "^header: data pool 1 .* belongs to cluster 11111111-2222-4333-8444-555555555555, the metadata pool to"
restore

step "the data lines swapped"
awk '$1 == "data" {d[n++] = $0; next} {print} END {print d[1]; print d[0]}' "$conf" >"$work/swapped.conf"
expect_rc 1 "$mkfs" check "$work/swapped.conf"
expect_out "^header: data pool 0 .* is data pool index 1, .* makes it index 0"

step "another cluster's metadata pool, and a file that is no pool: refused"
sed -E 's/^cluster_uuid .*/cluster_uuid 11111111-2222-4333-8444-555555555555/' "$conf" >"$work/foreign.conf"
expect_rc 2 "$mkfs" check "$work/foreign.conf"
expect_out "error: metadata pool .* belongs to cluster .*, but .* names cluster 11111111-2222-4333-8444-555555555555"
head -c 8M /dev/zero >"$work/zero.pool"
awk -v z="$work/zero.pool" '$1 == "meta" {$3 = z} {print}' "$conf" >"$work/nopool.conf"
expect_rc 2 "$mkfs" check "$work/nopool.conf"
expect_out "not a dpmfs pool"

step "usage"
expect_rc 2 "$mkfs" check
expect_rc 2 "$mkfs" check "$work/missing.conf"
echo "check_test: OK"
