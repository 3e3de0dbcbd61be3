#!/usr/bin/env bash
# End-to-end tests of dpmfs: one PHASE per call (ctest registers each; tests/e2e/e2e.cmake).
#
#   run_e2e.sh PHASE
#
# Phases:
#   tmpfs        posix_test against a plain tmpfs directory: validates the tests themselves
#   posix        posix_test through a dpmfs mount
#   two-clients  the TwoClientTest cases through two mounts of one cluster
#   fsx-long     by hand: the random two-client workload with 20000 operations
#   fio          fio --verify=crc32c: sequential and random, buffered and O_DIRECT jobs at
#                once through one mount, then a verify-only pass through a second mount
#   crash-data   kill -9 a data server during an fio verify write job, restart it; every
#                write fio saw complete must verify (fio's verify state), and new writes work
#   crash-data-detects-loss
#                the same with persist=none and a slow NIC-buffer drain: the check MUST find
#                lost writes (proves crash-data can fail)
#   crash-meta   kill -9 dpmfs-meta twice during a create/rename/unlink workload, restart it
#                each time; the workload's operations all succeed and the namespace matches
#                what they acknowledged, also through a fresh second mount
#   client-kill  kill -9 a client holding an unlinked file open; the metadata server's
#                lease expiry reclaims its session and the file's space
#   restart      a namespace with data and fio's files survive down + up, and kill -9 of
#                every daemon and the client at once + up
#   permissions  a mount made without default_permissions still enforces the modes for
#                an unprivileged user (PermissionTest as uid 65534); with dpmfs-meta
#                --root-squash, root through the mount gets only the others' bits
#   tokens       with a 2 s lease (so 2 s session tokens), a client writes and reads back
#                (O_DIRECT) new files for 3.5 token lifetimes: data servers revoke the
#                registrations of expired tokens, and the client never sees an error
#
# Each phase starts its own cluster (tools/dpmfs up) in a temporary directory and always
# stops and deletes it (trap). Environment: DPMFS_BUILD_DIR (the build), DPMFS_POSIX_TEST
# and DPMFS_NS_WORKLOAD (the test binaries; default: under DPMFS_BUILD_DIR/tests),
# DPMFS_E2E_KEEP=1 keeps the temporary directory and cluster after a failure.
# Exit status: 0 pass, 1 fail, 77 skipped (ctest SKIP_RETURN_CODE) with the reason printed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dpmfs=$root/tools/dpmfs
phase=${1:-}
build=${DPMFS_BUILD_DIR:-$root/build}
export DPMFS_BUILD_DIR=$build
posix_test=${DPMFS_POSIX_TEST:-$build/tests/posix_test}
ns_workload=${DPMFS_NS_WORKLOAD:-$build/tests/e2e_ns_workload}

log() { echo "[e2e $phase $(date +%T)] $*"; }
skip() { echo "SKIPPED: e2e $phase: $*"; exit 77; }
fail() { echo "FAIL: e2e $phase: $*" >&2; exit 1; }

case "$phase" in
  tmpfs|posix|two-clients|fsx-long|fio|crash-data|crash-data-detects-loss|crash-meta|client-kill|restart|permissions|tokens) ;;
  *) echo "usage: run_e2e.sh tmpfs|posix|two-clients|fsx-long|fio|crash-data|crash-data-detects-loss|crash-meta|client-kill|restart|permissions|tokens" >&2
     exit 2 ;;
esac

# ---------------------------------------------------------------------------------------
# What the phase needs.

[ -x "$posix_test" ] || fail "posix_test not found at $posix_test (build the 'posix_test' target)"
[ "$(id -u)" -eq 0 ] || skip "needs root (mounts, and becoming uid 65534 in the permission test)"
if [ "$phase" != tmpfs ]; then
  [ -c /dev/fuse ] || skip "/dev/fuse is missing (no FUSE in this kernel or container)"
  command -v fusermount3 >/dev/null || skip "fusermount3 is missing (apt-get install fuse3)"
fi
case "$phase" in
  fio|crash-data|crash-data-detects-loss|restart)
    command -v fio >/dev/null || skip "fio is missing (apt-get install fio; tools/install-deps.sh does)" ;;
esac

work=$(mktemp -d "/tmp/dpmfs-e2e-$phase.XXXXXX")
chmod 755 "$work"  # uid 65534 must reach the mount inside it (permission test)
cluster=$work/cluster
mnt=$cluster/mnt
bg_pids=()

cleanup() {
  local rc=$?
  set +e
  for p in "${bg_pids[@]+"${bg_pids[@]}"}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -d "$cluster/logs" ]; then
    echo "---- e2e $phase failed (exit $rc): cluster state and the end of each log ----"
    "$dpmfs" status "$cluster" 2>&1 | grep -vE '^\s+(format version|block size|data offset|created):'
    for f in "$cluster"/logs/*.log; do
      echo "---- $f"
      tail -n 30 "$f"
    done
  fi
  if [ $rc -ne 0 ] && [ "${DPMFS_E2E_KEEP:-0}" = 1 ]; then
    echo "kept $work (DPMFS_E2E_KEEP=1); stop it with: $dpmfs destroy $cluster"
    exit $rc
  fi
  if [ -f "$cluster/cluster.conf" ]; then
    "$dpmfs" destroy "$cluster" >/dev/null 2>&1 || echo "e2e: '$dpmfs destroy $cluster' failed" >&2
  fi
  for m in "$work"/mnt*; do
    [ -d "$m" ] || continue
    fusermount3 -u -z "$m" 2>/dev/null
  done
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The cluster: 2 data servers of 512 MiB (fio's files and the 5 GiB sparse file fit).
cluster_up() {
  log "dpmfs up $cluster $*"
  "$dpmfs" up "$cluster" --data-size 512M --meta-size 128M "$@" ||
    fail "'dpmfs up' failed (its output above names the daemon and shows its log)"
}

# A second client of the cluster at $work/mnt2 (extra arguments: for `dpmfs mount`).
second_mount() {
  mkdir -p "$work/mnt2"
  "$dpmfs" mount "$cluster" "$work/mnt2" "$@" || fail "the second mount failed"
}

# A third client, mounted only to read back what the other two acknowledged: it has
# no cache of its own, so it sees what the servers hold.
third_mount() {
  mkdir -p "$work/mnt3"
  "$dpmfs" mount "$cluster" "$work/mnt3" || fail "the third mount failed"
}

pid_of() { cat "$cluster/run/$1.pid"; }

# statfs of the first mount: free bytes.
free_bytes() { stat -f -c '%f %S' "$1" | awk '{ printf "%.0f\n", $1 * $2 }'; }

# ---------------------------------------------------------------------------------------

phase_tmpfs() {
  local d=/dev/shm/dpmfs-e2e-tmpfs.$$
  mkdir -p "$d"
  chmod 755 "$d"
  log "posix_test against tmpfs ($d): checks the tests, not dpmfs"
  local rc=0
  DPMFS_TEST_DIR=$d DPMFS_TEST_DIR2=$d DPMFS_TEST_LOOKUPCACHE2=positive "$posix_test" || rc=$?
  rm -rf "$d"
  [ $rc -eq 0 ] || fail "posix_test fails on tmpfs: a test expects something Linux does not do"
}

phase_posix() {
  cluster_up
  mkdir -p "$mnt/posix"
  chmod 755 "$mnt/posix"
  log "posix_test in $mnt/posix"
  DPMFS_TEST_DIR=$mnt/posix "$posix_test" --gtest_filter='-TwoClientTest.*:*SharedFileExtension.*' ||
    fail "posix_test failed through the dpmfs mount"
}

phase_two_clients() {
  cluster_up
  # The second client asks the server for every absent name (TwoClientTest's
  # LookupcachePositiveFindsNewNamesAtOnce checks it); the first keeps the default.
  second_mount -o lookupcache=positive
  third_mount
  mkdir -p "$mnt/tc"
  log "TwoClientTest: $mnt/tc and $work/mnt2/tc (read back through $work/mnt3/tc)"
  DPMFS_TEST_DIR=$mnt/tc DPMFS_TEST_DIR2=$work/mnt2/tc DPMFS_TEST_DIR3=$work/mnt3/tc \
    DPMFS_TEST_LOOKUPCACHE2=positive \
    "$posix_test" --gtest_filter='TwoClientTest.*:*SharedFileExtension.*' ||
    fail "the two-client tests failed"
}

# By hand (not a ctest case): the fsx-style two-client workload at length.
# DPMFS_FSX_OPS (default 20000) and DPMFS_FSX_SEED pass through.
phase_fsx_long() {
  cluster_up
  second_mount
  third_mount
  mkdir -p "$mnt/tc"
  log "RandomOperationsFromBothClientsMatchAModel, ${DPMFS_FSX_OPS:-20000} operations"
  DPMFS_TEST_DIR=$mnt/tc DPMFS_TEST_DIR2=$work/mnt2/tc DPMFS_TEST_DIR3=$work/mnt3/tc \
    DPMFS_FSX_OPS=${DPMFS_FSX_OPS:-20000} \
    "$posix_test" --gtest_filter='TwoClientTest.RandomOperationsFromBothClientsMatchAModel' ||
    fail "the long fsx-style workload found a difference"
}

# Writes the integrity job file: four jobs at once, 32 MiB each, covering buffered and
# O_DIRECT, sequential and random, aligned and unaligned block sizes.
write_fio_jobs() {
  cat >"$1" <<EOF
[global]
size=32M
ioengine=psync
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=1
group_reporting=0

[seq-buffered-100k]
rw=write
bs=100k
# A multiple of the block size, so the verify-only pass finds the file complete.
size=32000k

[seq-direct-1m]
rw=write
bs=1M
direct=1

[rand-direct-4k]
rw=randwrite
bs=4k
direct=1

[rand-buffered-16k]
rw=randwrite
bs=16k
fsync=16
EOF
}

phase_fio() {
  cluster_up
  second_mount
  mkdir -p "$mnt/fio"
  write_fio_jobs "$work/integrity.fio"
  log "fio write + verify (4 jobs x 32 MiB at once) in $mnt/fio"
  (cd "$work" && fio --directory="$mnt/fio" "$work/integrity.fio" --output="$work/fio-write.txt") ||
    { cat "$work/fio-write.txt"; fail "fio write/verify failed through $mnt"; }
  grep -E 'WRITE:|READ:' "$work/fio-write.txt" | sed 's/^/    /'
  log "fio verify-only through the second client ($work/mnt2/fio: no cached pages)"
  (cd "$work" && fio --directory="$work/mnt2/fio" --verify_only "$work/integrity.fio" \
      --output="$work/fio-verify.txt") ||
    { cat "$work/fio-verify.txt"; fail "fio verify-only failed through the second client"; }
  grep -E 'READ:' "$work/fio-verify.txt" | sed 's/^/    /'
  local verified
  verified=$(grep -cE 'err= 0' "$work/fio-verify.txt" || true)
  [ "$verified" -eq 4 ] || fail "fio verify-only: expected 4 jobs without error, found $verified"
}

# fio job for the crash phases: two jobs of random 4 KiB O_DIRECT writes into sparse
# files (every write fills a hole: allocate, write + persist, commit) with crc32c headers,
# for 6 s; fio saves which writes completed (verify state) when the job ends, by time or
# by an error. The verify pass replays the same offsets (randrepeat) up to that point.
crash_fio_args() {
  echo --name=crash --directory="$mnt/crash" --rw=randwrite --bs=4k --size=128M --numjobs=2 \
       --direct=1 --ioengine=psync --fallocate=truncate --verify=crc32c --verify_state_save=1 \
       --randrepeat=1 --runtime=6 --group_reporting=0
}

# kill -9 data0 while fio writes; restart it; verify with fio's saved state.
# $1 = "expect-pass" or "expect-loss".
crash_data() {
  local expect=$1
  mkdir -p "$mnt/crash"
  # shellcheck disable=SC2046
  (cd "$work" && exec fio $(crash_fio_args) --do_verify=0 --output="$work/fio-crash-write.txt") &
  local fio_pid=$!
  bg_pids+=("$fio_pid")
  sleep 2.5
  kill -0 "$fio_pid" 2>/dev/null || { cat "$work/fio-crash-write.txt"; fail "fio ended before the kill (too fast or failed)"; }
  local victim
  victim=$(pid_of data0)
  log "kill -9 data0 (pid $victim) while fio writes"
  kill -KILL "$victim"
  sleep 1
  log "restarting it: dpmfs up"
  "$dpmfs" up "$cluster" || fail "'dpmfs up' could not restart data0"
  local fio_rc=0
  wait "$fio_pid" || fio_rc=$?
  bg_pids=()
  log "the write job ended with status $fio_rc:"
  grep -E 'err=|WRITE:|error' "$work/fio-crash-write.txt" | sed 's/^/    /' || true
  ls "$work"/*verify.state >/dev/null 2>&1 || fail "fio saved no verify state (nothing to check against)"
  log "verify every write fio saw complete (fio --verify_only --verify_state_load=1)"
  local vrc=0
  # shellcheck disable=SC2046
  (cd "$work" && fio $(crash_fio_args) --verify_only --do_verify=1 --verify_state_load=1 --verify_fatal=1 \
      --output="$work/fio-crash-verify.txt") || vrc=$?
  grep -E 'err=|READ:|verify|bad' "$work/fio-crash-verify.txt" | head -20 | sed 's/^/    /' || true
  if [ "$expect" = expect-loss ]; then
    [ $vrc -ne 0 ] || fail "persist=none with a 50 ms NIC-buffer drain lost no acknowledged write: \
the crash check cannot tell a durable write from a lost one"
    # A verify mismatch (EILSEQ, "bad magic header" / "crc32c"), not some other error.
    grep -qE 'err=84|verify: bad' "$work/fio-crash-verify.txt" ||
      fail "the verify pass failed, but not with a verify mismatch (see above)"
    log "as expected, fio found writes that were acknowledged and then lost (exit $vrc)"
    return 0
  fi
  [ $vrc -eq 0 ] || fail "writes that fio saw complete did not survive kill -9 of a data server"
  # Each job must have read back (and verified) every write it issued, but for the one
  # that was in flight when the job ended.
  local written verified i
  read -r -a written <<<"$(grep -oE 'issued rwts: total=[0-9]+,[0-9]+' "$work/fio-crash-write.txt" |
    sed -E 's/.*total=[0-9]+,//' | tr '\n' ' ')"
  read -r -a verified <<<"$(grep -oE 'issued rwts: total=[0-9]+' "$work/fio-crash-verify.txt" |
    sed -E 's/.*total=//' | tr '\n' ' ')"
  log "writes issued per job: ${written[*]}; verified per job: ${verified[*]}"
  [ ${#written[@]} -eq 2 ] && [ ${#verified[@]} -eq 2 ] || fail "cannot read fio's per-job counts"
  for i in 0 1; do
    [ "${written[i]}" -gt 100 ] || fail "job $i wrote only ${written[i]} blocks: the kill tested nothing"
    [ "${verified[i]}" -ge $((written[i] - 1)) ] ||
      fail "job $i: fio verified ${verified[i]} of its ${written[i]} writes"
  done
  log "later writes work: a fresh 16 MiB write + verify"
  fio --name=after --directory="$mnt/crash" --rw=write --bs=64k --size=16M --direct=1 \
      --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$work/fio-after.txt" ||
    { cat "$work/fio-after.txt"; fail "writes after the data server's restart failed"; }
}

phase_crash_data() {
  cluster_up --persist read
  crash_data expect-pass
}

phase_crash_data_detects_loss() {
  cluster_up --persist none --data-arg=--drain-delay-us=50000
  crash_data expect-loss
}

phase_crash_meta() {
  cluster_up
  mkdir -p "$mnt/ns"
  "$ns_workload" run "$mnt/ns" --model "$work/model" --seed 7 --after 300 >"$work/workload.txt" 2>&1 &
  local wl=$!
  bg_pids+=("$wl")
  local cycle victim
  for cycle in 1 2; do
    sleep 1.5
    kill -0 "$wl" 2>/dev/null || { cat "$work/workload.txt"; fail "the workload ended before kill $cycle"; }
    victim=$(pid_of meta)
    log "kill -9 dpmfs-meta (pid $victim) during the workload ($cycle of 2)"
    kill -KILL "$victim"
    sleep 0.5
    "$dpmfs" up "$cluster" || fail "'dpmfs up' could not restart dpmfs-meta"
  done
  sleep 1
  log "the workload: 300 more operations, then it checks the namespace"
  kill -USR1 "$wl"
  local rc=0 waited=0
  while kill -0 "$wl" 2>/dev/null && [ $waited -lt 600 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -0 "$wl" 2>/dev/null && { cat "$work/workload.txt"; fail "the workload hangs 60 s after the restart"; }
  wait "$wl" || rc=$?
  bg_pids=()
  sed 's/^/    /' "$work/workload.txt"
  [ $rc -eq 0 ] || fail "after kill -9 of dpmfs-meta the namespace or an operation went wrong"
  grep -qE '^e2e_ns_workload: [0-9]{3,} operations' "$work/workload.txt" ||
    fail "the workload did fewer than 100 operations: the crash test tested nothing"
  log "the same namespace through a fresh second client"
  second_mount
  "$ns_workload" verify "$work/mnt2/ns" --model "$work/model" ||
    fail "a fresh client sees a namespace different from the acknowledged one"
}

phase_client_kill() {
  cluster_up --meta-arg=--lease-ms=2000
  second_mount
  local f0 f1 f2 f3 held=$work/mnt2/held
  f0=$(free_bytes "$mnt")
  log "the second client writes 64 MiB and keeps the file open; the first unlinks it"
  dd if=/dev/urandom of="$held" bs=1M count=64 conv=fsync status=none || fail "writing $held failed"
  (exec 3<"$held"; exec sleep 600) &
  local holder=$!
  bg_pids+=("$holder")
  sleep 0.3
  rm "$mnt/held" || fail "unlink through the first client failed"
  sleep 1
  f1=$(free_bytes "$mnt")
  log "free: $((f0 >> 20)) MiB before, $((f1 >> 20)) MiB with the unlinked file still open"
  [ $((f0 - f1)) -ge $((48 << 20)) ] ||
    fail "the space of a file open on another client was freed at unlink (or never used)"
  log "kill -9 the second client (dpmfs-mount pid $(pid_of client2))"
  kill -KILL "$(pid_of client2)"
  kill -KILL "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  bg_pids=()
  local waited=0
  while :; do
    f2=$(free_bytes "$mnt")
    [ $((f0 - f2)) -lt $((8 << 20)) ] && break
    [ $waited -ge 150 ] && fail "15 s after the client died (lease 2 s) its unlinked file's space is \
still not reclaimed: free $((f2 >> 20)) MiB, was $((f0 >> 20)) MiB"
    sleep 0.1
    waited=$((waited + 1))
  done
  log "reclaimed after $((waited / 10)).$((waited % 10)) s: free $((f2 >> 20)) MiB"
  fusermount3 -u -z "$work/mnt2" 2>/dev/null || true
  # The surviving client is unaffected.
  echo ok >"$mnt/after" && [ "$(cat "$mnt/after")" = ok ] || fail "the first client stopped working"
  f3=$(free_bytes "$mnt")
  : "$f3"
}

# What a restart must keep: a namespace with data (the workload's model) and fio-written
# files, after a clean down/up and after kill -9 of every daemon and the client at once.
phase_restart() {
  cluster_up
  mkdir -p "$mnt/ns" "$mnt/fio"
  "$ns_workload" run "$mnt/ns" --model "$work/model" --seed 11 --max-ops 3000 ||
    fail "the workload failed before any restart"
  local job=(--name=keep --directory="$mnt/fio" --rw=randwrite --bs=16k --size=32M --numjobs=2
             --verify=crc32c --randrepeat=1 --fsync=64)
  fio "${job[@]}" --do_verify=1 --output="$work/fio-keep.txt" ||
    { cat "$work/fio-keep.txt"; fail "fio write/verify failed"; }
  check_kept() {
    "$ns_workload" verify "$mnt/ns" --model "$work/model" ||
      fail "after $1 the namespace differs from what it was"
    fio "${job[@]}" --verify_only --do_verify=1 --output="$work/fio-keep-verify.txt" ||
      { cat "$work/fio-keep-verify.txt"; fail "after $1 fio's files do not verify"; }
  }
  log "dpmfs down, dpmfs up"
  "$dpmfs" down "$cluster" || fail "'dpmfs down' failed"
  "$dpmfs" up "$cluster" || fail "'dpmfs up' after down failed"
  check_kept "down + up"
  log "kill -9 every daemon and the client at once, then dpmfs up"
  local name
  for name in client meta data0 data1; do kill -KILL "$(pid_of "$name")"; done
  sleep 0.5
  "$dpmfs" up "$cluster" || fail "'dpmfs up' after kill -9 of everything failed"
  check_kept "kill -9 of everything"
}

start=$SECONDS
phase_permissions() {
  # The mount options of the old fstab line: allow_other, no default_permissions.
  cluster_up --mount-opts allow_other
  mkdir -p "$mnt/perm"
  chmod 755 "$mnt/perm"
  log "PermissionTest as uid 65534 in $mnt/perm (mounted without asking for default_permissions)"
  DPMFS_TEST_DIR=$mnt/perm DPMFS_TEST_ENFORCED=1 "$posix_test" --gtest_filter='PermissionTest.*' ||
    fail "an unprivileged user did what the modes forbid through a mount without default_permissions"
  printf 'root only\n' >"$mnt/perm/rootfile"
  chmod 600 "$mnt/perm/rootfile"
  mkdir -m 755 "$mnt/perm/rootdir"
  log "restarting with dpmfs-meta --root-squash: root through the mount is nobody"
  "$dpmfs" down "$cluster" >/dev/null || fail "'dpmfs down' failed"
  cluster_up --mount-opts allow_other --meta-arg=--root-squash
  cat "$mnt/perm/rootfile" >/dev/null 2>"$work/err" &&
    fail "root read a 0600 file of root's through a root_squash mount"
  grep -q "Permission denied" "$work/err" || fail "reading the 0600 file: $(cat "$work/err")"
  touch "$mnt/perm/rootdir/new" 2>/dev/null &&
    fail "root created a file in a 0755 directory of root's through a root_squash mount"
  chmod 666 "$mnt/perm/rootfile" 2>/dev/null &&
    fail "root chmod-ed root's file through a root_squash mount"
  ls "$mnt/perm/rootdir" >/dev/null || fail "root_squash took away the others' bits too (ls of a 0755 directory)"
  log "root_squash holds: read, create and chmod refused; the others' bits still apply"
}

# Session tokens (docs/security.md): data servers revoke a connection's registration when
# its token expires; clients renew their token every third of a lease and replace aging
# connections. Across several token lifetimes, the mounts must not notice.
phase_tokens() {
  cluster_up --meta-arg=--lease-ms=2000
  local i=0 end=$((SECONDS + 7))
  # Reads use O_DIRECT: each one goes to the data servers (a READ on one of the client's
  # connections), not to the page cache.
  log "writing and reading back (O_DIRECT) new files for 7 s (tokens last 2 s)"
  while [ $SECONDS -lt $end ]; do
    head -c 65536 /dev/urandom >"$work/want"
    dd if="$work/want" of="$mnt/t$i" bs=64k conv=fsync status=none 2>"$work/err" ||
      fail "write $i failed: $(cat "$work/err")"
    dd if="$mnt/t$i" of="$work/got" bs=64k iflag=direct status=none 2>"$work/err" ||
      fail "read $i failed: $(cat "$work/err")"
    cmp -s "$work/want" "$work/got" || fail "file $i read back different"
    i=$((i + 1))
    sleep 0.2
  done
  [ $i -ge 10 ] || fail "only $i files in 7 s: the test tested nothing"
  local revoked refused w
  # A connection in use is replaced before its token runs out; an idle one is revoked
  # when it does, which may be just after the loop: wait up to one token lifetime.
  for w in $(seq 30); do
    revoked=$(cat "$cluster"/logs/data*.log | grep -c "token expired" || true)
    [ "$revoked" -ge 1 ] && break
    sleep 0.1
  done
  refused=$(cat "$cluster"/logs/data*.log | grep -c "session token" || true)
  log "$i files written and read back; data servers revoked $revoked aged connections"
  [ "$refused" -eq 0 ] ||
    fail "a data server refused a client's token: $(grep "session token" "$cluster"/logs/data*.log | head -3)"
  [ "$revoked" -ge 1 ] || fail "no connection was ever revoked: the test ran shorter than a token"
}

"phase_${phase//-/_}"
log "PASS ($((SECONDS - start)) s)"
