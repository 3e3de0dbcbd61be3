#!/usr/bin/env bash
# Tests of tools/dpmfs, the single-host cluster launcher, with the real daemons: up is
# idempotent and restarts what died (a data server, a client), a failing daemon is
# reported with its log and what was started is stopped, down/up keeps the data,
# status's exit codes, the mount-helper mode (what mount.fuse3 runs), a second client,
# destroy. Needs root and /dev/fuse (else exit 77: skipped). ~30 s.
#
#   launcher_test.sh            (DPMFS_BUILD_DIR: the build with the daemons)
set -euo pipefail
source "$(dirname "$0")/../support/cluster_script_prologue.sh" launcher-test
before_destroy() { fusermount3 -u -z "$work/helper" 2>/dev/null; }


step "usage"
expect_rc 0 "$dpmfs" --help
expect_out 'up \[DIR\]'
for c in up down status stats log-level mount destroy install; do expect_rc 0 "$dpmfs" "$c" --help; done
expect_rc 2 "$dpmfs" frobnicate
expect_out "unknown command 'frobnicate'"
expect_rc 2 "$dpmfs" up "$dir" --data-servers 0
expect_rc 2 "$dpmfs" up "$dir" --persist bogus
expect_rc 3 "$dpmfs" status "$dir"
expect_out 'no cluster'

step "up, then up again"
expect_rc 0 "$dpmfs" up "$dir" --data-servers 3 --data-size 64M --meta-size 32M
expect_out 'mounted at'
[ "$(grep -c '^data ' "$dir/cluster.conf")" -eq 3 ] || fail "cluster.conf does not have 3 data servers"
grep -q '^cluster_uuid ' "$dir/cluster.conf" || fail "the new cluster UUID is not recorded"
expect_rc 0 "$dpmfs" up "$dir"
expect_out 'already up'
expect_rc 0 "$dpmfs" status "$dir"
expect_out 'data2 .*running'
echo "survives" >"$dir/mnt/file"

step "a data server dies: status says so, up restarts only it"
kill -KILL "$(cat "$dir/run/data1.pid")"
sleep 0.3
expect_rc 1 "$dpmfs" status "$dir"
expect_out 'data1 .*stopped'
expect_rc 0 "$dpmfs" up "$dir"
expect_out 'already running: meta data0 data2'
expect_out 'data1 serving'
expect_rc 0 "$dpmfs" status "$dir"
[ "$(cat "$dir/mnt/file")" = survives ] || fail "the file is not readable after data1's restart"

step "the client dies: the stale mount is replaced"
kill -KILL "$(cat "$dir/run/client.pid")"
sleep 0.3
expect_rc 1 "$dpmfs" status "$dir"
expect_out 'STALE'
expect_rc 0 "$dpmfs" up "$dir"
expect_out 'stale mount'
[ "$(cat "$dir/mnt/file")" = survives ] || fail "the file is not readable through the new mount"

step "mount-helper mode (as mount.fuse3 runs it) and a second client"
addr=$(awk '$1 == "meta" {print $2}' "$dir/cluster.conf")
link=$DPMFS_LOCAL_KEYS/${addr//[^A-Za-z0-9.]/_}.key
# up recorded the cluster's key under its address (the helper is given no key below).
[ "$(readlink "$link")" = "$dir/cluster.key" ] || fail "up did not link $link to the cluster key"
# Another cluster's link (another address) is no business of this one's down.
ln -s "$work/other.key" "$DPMFS_LOCAL_KEYS/127.0.0.1_1.key"
mkdir -p "$work/helper" "$work/second"
expect_rc 0 "$dpmfs" "$addr" "$work/helper" -o default_permissions
grep -q " $work/helper fuse" /proc/mounts || fail "mount-helper mode did not mount"
[ "$(cat "$work/helper/file")" = survives ] || fail "the file is not readable through the helper's mount"
fusermount3 -u "$work/helper"
expect_rc 1 "$dpmfs" 127.0.0.1:1 "$work/helper"
expect_rc 0 "$dpmfs" mount "$dir" "$work/second"
[ "$(cat "$work/second/file")" = survives ] || fail "the file is not readable through the second client"

step "down stops everything, twice is fine; up brings the same file system back"
expect_rc 0 "$dpmfs" down "$dir"
expect_out 'unmounted .*/mnt'
expect_out 'unmounted .*/second'
grep -qE " ($dir/mnt|$work/second) " /proc/mounts && fail "a mount survived down"
expect_rc 3 "$dpmfs" status "$dir"
[ ! -e "$link" ] && [ ! -L "$link" ] || fail "down left the key link $link"
[ -L "$DPMFS_LOCAL_KEYS/127.0.0.1_1.key" ] || fail "down removed another cluster's key link"
expect_rc 0 "$dpmfs" down "$dir"
expect_out 'nothing was running'
# A stale link at this address (a cluster that died without down) is replaced by up.
ln -s "$work/other.key" "$link"
expect_rc 0 "$dpmfs" up "$dir"
expect_out 'mounted at'
[ "$(readlink "$link")" = "$dir/cluster.key" ] || fail "up kept a stale key link $link"
[ "$(cat "$dir/mnt/file")" = survives ] || fail "the data did not survive down + up"

step "a daemon that cannot start: its log is shown, what up started is stopped"
expect_rc 0 "$dpmfs" down "$dir"
expect_rc 1 "$dpmfs" up "$dir" --meta-arg=--no-such-flag
expect_out 'meta .*exited with status'
expect_out 'no-such-flag'
expect_out 'stopping what this .up. started: data0 data1 data2'
expect_rc 3 "$dpmfs" status "$dir"
# The failing flag is not remembered: a plain up works.
expect_rc 0 "$dpmfs" up "$dir"
expect_out 'mounted at'
[ "$(cat "$dir/mnt/file")" = survives ] || fail "the data did not survive the failed start"

step "pools that do not fit are refused before anything is written"
expect_rc 1 "$dpmfs" up "$work/huge" --data-size 1000T --no-mount
expect_out 'need .* free'
expect_out "destroy DIR"
big_pool=$(awk '$1 == "data" {print $3; exit}' "$work/huge/cluster.conf")
[ ! -e "$big_pool" ] || fail "a pool was created although it does not fit"
expect_rc 0 "$dpmfs" destroy "$work/huge"

step "destroy"
pool_dir=$(awk '$1 == "meta" {print $3}' "$dir/cluster.conf" | xargs dirname)
# Without mkfs.dpmfs it cannot tell the pools are pools: it keeps them, and keeps the
# configuration that names them, rather than leaving pools nobody knows about.
expect_rc 1 env DPMFS_BUILD_DIR="$work/no-build" PATH=/usr/bin:/bin "$dpmfs" destroy "$dir"
expect_out 'mkfs.dpmfs .* is not found'
expect_out 'kept .*configuration'
[ -e "$pool_dir" ] || fail "destroy without mkfs.dpmfs deleted $pool_dir"
[ -f "$dir/cluster.conf" ] || fail "destroy without mkfs.dpmfs forgot the pools' configuration"
expect_rc 0 "$dpmfs" destroy "$dir"
[ ! -e "$pool_dir" ] || fail "destroy left $pool_dir"
[ ! -e "$dir" ] || fail "destroy left $dir"
echo "PASS"
