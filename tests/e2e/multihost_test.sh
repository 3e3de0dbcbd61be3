#!/usr/bin/env bash
# A cluster that is really several hosts (issue 18): every daemon and every client in its
# own network namespace with its own address, joined by a bridge, started from one
# cluster file the way docs/deploy.md deploys on real machines.
#
#   multihost_test.sh [--long]
#
# Hosts: dpmfs-mh-PID-meta 10.77.0.10 (metadata server), -d0..-d2 10.77.0.11-13 (data
# servers), -c0/-c1 10.77.0.21-22 (clients); each has a veth into the bridge dpmfs-mh-br
# in the namespace dpmfs-mh-PID-br, so the host's own network is never touched. Pools on
# /dev/shm/dpmfs-mh-PID/. The daemons and mounts run under `nsenter --net` (not `ip netns
# exec`, which also makes a private mount namespace: a FUSE mount made there would be
# invisible here), so the mounts are ordinary mounts of this host, each reaching the
# servers through its own namespace's address.
#
#  1. mkfs.dpmfs cluster in each server's namespace formats only that host's lines (and
#     says "not formatted here" for the others); only the metadata host makes the key.
#  2. The daemons start from the cluster file and listen on their own addresses; both
#     clients mount; fio writes with crc32c verification through both at once, and each
#     client verifies the other's files (no cached pages); TwoClientTest and
#     SharedFileExtension of posix_test across the two clients (--long: the whole
#     posix_test through each client).
#  3. tc netem on every veth, 1 ms delay and 1% loss: fio with verification still passes.
#     Where the kernel has no sch_netem: 1% loss only, nftables dropping frames on the
#     bridge, and the delay skipped (counted as skipped).
#  4. A 5 s partition of data server 1 (its veth set down in the bridge) while fio writes
#     through both clients and a probe (multihost_probe.py) times single writes through
#     client 1: every error an application sees is EIO within BOUND_S seconds (never a
#     hang: the step runs under `timeout`), writes resume after the heal, and every write
#     fio or the probe saw acknowledged reads back intact after the heal (fio
#     --verify_state_load, through the other client). --long adds a 15 s partition, past
#     the client's timeout, in which the probe must see EIO.
#
# Ends with "N passed, N failed, N skipped" and the elapsed time; exits 1 on a failure,
# 77 (ctest: skipped) without root, /dev/fuse, ip, nsenter, fio or python3.
# DPMFS_MH_KEEP=1 keeps the scratch directory (logs) after a failure;
# DPMFS_MH_PARTITION_ONLY=1 runs only the partitions, DPMFS_MH_NO_CUT=1 without the cut.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${DPMFS_BUILD_DIR:-$root/build}
posix_test=${DPMFS_POSIX_TEST:-$build/tests/posix_test}
probe=$root/tests/e2e/multihost_probe.py
long=0
case "${1:-}" in
  --long) long=1 ;;
  "") ;;
  *) echo "usage: multihost_test.sh [--long]" >&2; exit 2 ;;
esac

skip_all() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip_all "needs root (network namespaces, FUSE mounts)"
[ -c /dev/fuse ] || skip_all "/dev/fuse is missing"
for tool in ip nsenter fio python3; do
  command -v $tool >/dev/null || skip_all "$tool is missing (tools/install-deps.sh installs it)"
done
for bin in mkfs/mkfs.dpmfs metadata/dpmfs-meta datapath/dpmfs-data fs/dpmfs-mount; do
  [ -x "$build/$bin" ] || { echo "FAIL: $build/$bin is not built" >&2; exit 1; }
done
[ -x "$posix_test" ] || { echo "FAIL: posix_test not found at $posix_test" >&2; exit 1; }
# The machine must be able to make what the rig is made of (a container may forbid network
# namespaces, or a kernel lack veth or bridges): probed in a namespace of its own, removed
# at once, so a missing capability is a skip with its reason, not a failure of dpmfs.
probe_ns=dpmfs-mh-probe-$$
if ! probe_err=$( { ip netns add "$probe_ns" &&
                    ip -n "$probe_ns" link add dpmfs-mh-pa type veth peer name dpmfs-mh-pb &&
                    ip -n "$probe_ns" link add dpmfs-mh-pbr type bridge; } 2>&1); then
  ip netns del "$probe_ns" 2>/dev/null
  skip_all "this machine cannot make network namespaces, veth pairs and bridges: $probe_err"
fi
ip netns del "$probe_ns"

started=$(date +%s.%N)
passed=0 failed=0 skipped=0
tag=$$
prefix=dpmfs-mh-$tag
bridge_ns=$prefix-br
work=$(mktemp -d "/tmp/dpmfs-mh.XXXXXX")
chmod 755 "$work"  # uid 65534 must reach the mounts inside it (posix_test's PermissionTest)
pools=/dev/shm/dpmfs-mh-$tag
cluster_file=$work/cluster.conf
key_file=$work/cluster.key
# Seconds within which a write the partition blocks must fail (EIO) or complete: the data
# client waits 5 s for a connection or a completion (DataClientOptions::timeout), and an
# operation is retried once on a fresh connection; 2 s for a loaded machine.
BOUND_S=12

data_size=256M
[ $long = 0 ] || data_size=1G  # posix_test's 5 GiB sparse file, 64 MiB fio jobs
hosts=(meta d0 d1 d2 c0 c1)
declare -A addr=([meta]=10.77.0.10 [d0]=10.77.0.11 [d1]=10.77.0.12 [d2]=10.77.0.13
                 [c0]=10.77.0.21 [c1]=10.77.0.22)
declare -A pid_of=()
bg_pids=()  # fio and probe runs in the background, ended if the rig stops early
made_ns=()
mounts=()

step() { echo "--- $*"; }
pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
skip() { skipped=$((skipped + 1)); echo "skipped: $*"; }
die() { fail "$*"; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ns() { echo "$prefix-$1"; }
# Runs a command in host $1's network namespace only (the mount namespace stays ours).
on() { local h=$1; shift; nsenter --net="/run/netns/$(ns "$h")" -- "$@"; }
# The namespace file for nsenter --net. Daemons are started with nsenter as a simple
# command in the background, not through on(): a function run with & is a subshell, and
# $! would be that subshell's pid, not the daemon's (nsenter and setsid exec, so $! is
# the daemon itself); cleanup would stop the subshell and leave the daemon running.
netns_file() { echo "/run/netns/$(ns "$1")"; }

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ $rc -eq 0 ] || [ $failed -gt 0 ] || failed=1
  if [ $failed -gt 0 ]; then
    for f in "$work"/logs/*.log; do
      [ -e "$f" ] && { echo "=== end of $f"; tail -n 15 "$f"; }
    done
  fi
  local m p
  for p in "${bg_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done  # timeout passes it on
  for m in "${mounts[@]}"; do
    fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  for p in "${pid_of[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pid_of[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  for p in "${made_ns[@]}"; do ip netns del "$p" 2>/dev/null; done
  rm -rf "$pools"
  if [ $failed -gt 0 ] && [ "${DPMFS_MH_KEEP:-0}" = 1 ]; then
    echo "kept $work (DPMFS_MH_KEEP=1)"
  else
    rm -rf "$work"
  fi
  echo "$passed passed, $failed failed, $skipped skipped in $(secs "$started" "$(now)") s"
  [ $failed -eq 0 ] || exit 1
  exit 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/logs" "$work/fio" "$pools"
chmod 700 "$work/logs"

# ---------------------------------------------------------------------------------------
step "network: namespaces $prefix-{br,${hosts[*]// /,}}, veths into the bridge dpmfs-mh-br"
ip netns add "$bridge_ns" || die "ip netns add $bridge_ns failed"
made_ns+=("$bridge_ns")
ip -n "$bridge_ns" link set lo up
ip -n "$bridge_ns" link add dpmfs-mh-br type bridge || die "no bridge support"
ip -n "$bridge_ns" link set dpmfs-mh-br up
for h in "${hosts[@]}"; do
  ip netns add "$(ns "$h")" || die "ip netns add $(ns "$h") failed"
  made_ns+=("$(ns "$h")")
  ip -n "$(ns "$h")" link set lo up
  ip -n "$bridge_ns" link add "v-$h" type veth peer name eth0 netns "$(ns "$h")" ||
    die "no veth support"
  ip -n "$bridge_ns" link set "v-$h" master dpmfs-mh-br up
  ip -n "$(ns "$h")" addr add "${addr[$h]}/24" dev eth0
  ip -n "$(ns "$h")" link set eth0 up
done
pass "6 hosts on 10.77.0.0/24"

# ---------------------------------------------------------------------------------------
step "one cluster file; mkfs.dpmfs cluster on each server host formats only its lines"
{
  echo "cluster_uuid $(cat /proc/sys/kernel/random/uuid)"
  echo "block_size 4K"
  echo "stripe_unit 1M"
  echo "meta ${addr[meta]}:7000 $pools/meta.pool 64M"
  for i in 0 1 2; do echo "data ${addr[d$i]}:7001 $pools/data$i.pool $data_size"; done
} >"$cluster_file"
mkfs_on() {  # HOST: formats; checks what it formatted and what it left
  local h=$1 out=$work/logs/mkfs-$1.log
  on "$h" "$build/mkfs/mkfs.dpmfs" cluster "$cluster_file" >"$out" 2>&1 ||
    { cat "$out"; die "mkfs.dpmfs cluster on $h failed"; }
  local skipped_lines
  skipped_lines=$(grep -c '^not formatted here: ' "$out" || true)
  [ "$skipped_lines" -eq 3 ] ||
    { cat "$out"; die "mkfs on $h: expected 3 lines 'not formatted here', got $skipped_lines"; }
  grep '^not formatted here: ' "$out" | grep -q "${addr[$h]}" &&
    { cat "$out"; die "mkfs on $h left its own line unformatted"; }
  true
}
mkfs_on meta
[ -f "$pools/meta.pool" ] || die "the metadata host did not format meta.pool"
ls "$pools"/data*.pool >/dev/null 2>&1 && die "the metadata host formatted data pools"
[ -f "$key_file" ] || die "the metadata host's mkfs made no cluster key beside the cluster file"
key_sum=$(sha256sum <"$key_file")
for i in 0 1 2; do
  mkfs_on "d$i"
  [ -f "$pools/data$i.pool" ] || die "d$i did not format data$i.pool"
done
[ "$(sha256sum <"$key_file")" = "$key_sum" ] || die "a data host's mkfs replaced the cluster key"
pass "each host formatted its own pool, listed the other 3 as not formatted here; one key"

# ---------------------------------------------------------------------------------------
# start_on HOST NAME CMD...: the daemon in HOST's namespace, log in logs/NAME.log, until
# it prints READY (20 s).
start_on() {
  local h=$1 name=$2; shift 2
  local log=$work/logs/$name.log
  nsenter --net="$(netns_file "$h")" -- setsid "$@" </dev/null >>"$log" 2>&1 &
  pid_of[$name]=$!
  for _ in $(seq 200); do
    grep -q '^READY ' "$log" 2>/dev/null && break
    kill -0 "${pid_of[$name]}" 2>/dev/null || { cat "$log"; die "$name exited before READY"; }
    sleep 0.1
  done
  grep -q '^READY ' "$log" || { cat "$log"; die "$name printed no READY within 20 s"; }
  grep '^READY ' "$log" | tail -n 1 | grep -q " ${addr[$h]}:" ||
    { cat "$log"; die "$name is not serving on its host's address ${addr[$h]}"; }
}
step "servers: dpmfs-data --cluster-file --index N on d0..d2, dpmfs-meta --cluster-file on meta"
for i in 0 1 2; do
  start_on "d$i" "data$i" "$build/datapath/dpmfs-data" --cluster-file "$cluster_file" --index "$i"
done
start_on meta meta "$build/metadata/dpmfs-meta" --cluster-file "$cluster_file"
# What cleanup stops must be the daemons themselves.
for name in data0 data1 data2 meta; do
  tr '\0' ' ' <"/proc/${pid_of[$name]}/cmdline" | grep -q '^/.*/dpmfs-\(data\|meta\) ' ||
    die "pid ${pid_of[$name]} recorded for $name is not the daemon: $(tr '\0' ' ' <"/proc/${pid_of[$name]}/cmdline")"
done
pass "4 servers READY on their own addresses"

# mount_on HOST DIR [OPTS]: dpmfs-mount in HOST's namespace (foreground, detached by setsid)
mount_on() {
  local h=$1 mnt=$2 extra=${3:-}
  local log=$work/logs/mount-$h.log
  mkdir -p "$mnt"
  nsenter --net="$(netns_file "$h")" -- setsid "$build/fs/dpmfs-mount" "${addr[meta]}:7000" "$mnt" -f \
    -o "default_permissions,allow_other,key_file=$key_file$extra" </dev/null >>"$log" 2>&1 &
  pid_of[mount-$h]=$!
  mounts+=("$mnt")
  for _ in $(seq 200); do
    awk -v m="$mnt" '$2 == m { found = 1 } END { exit !found }' /proc/mounts && stat -f "$mnt" >/dev/null 2>&1 &&
      return 0
    kill -0 "${pid_of[mount-$h]}" 2>/dev/null || { cat "$log"; die "dpmfs-mount on $h exited"; }
    sleep 0.1
  done
  cat "$log"; die "$mnt not mounted within 20 s"
}
m0=$work/mnt-c0 m1=$work/mnt-c1
step "clients: dpmfs-mount ${addr[meta]}:7000 on c0 ($m0) and c1 ($m1, lookupcache=positive)"
mount_on c0 "$m0"
mount_on c1 "$m1" ,lookupcache=positive
echo hello-from-c0 >"$m0/hello"
[ "$(cat "$m1/hello")" = hello-from-c0 ] || die "c1 does not see c0's file"
pass "both clients mounted through 10.77.0.10; a file written on c0 reads back on c1"

# ---------------------------------------------------------------------------------------
# fio jobs with crc32c verification. SIZE per job; the verify-only pass through the other
# client reads from the data servers (that client has no cached pages of these files).
write_fio_jobs() {
  cat >"$1" <<EOF
[global]
size=$2
ioengine=psync
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=1
group_reporting=0

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
fio_size=16M
[ $long = 0 ] || fio_size=64M
write_fio_jobs "$work/fio/jobs.fio" "$fio_size"
# fio_both LABEL: both clients write + verify at once, each in its own directory, then
# each verifies the other's files. Prints fio's bandwidth lines.
fio_both() {
  local label=$1 c rc0=0 rc1=0
  mkdir -p "$m0/fio-$label-c0" "$m0/fio-$label-c1"
  local t0; t0=$(now)
  (cd "$work/fio" && timeout 300 fio --directory="$m0/fio-$label-c0" jobs.fio \
     --output="$work/fio/$label-c0.txt") & local p0=$!
  (cd "$work/fio" && timeout 300 fio --directory="$m1/fio-$label-c1" jobs.fio \
     --output="$work/fio/$label-c1.txt") & local p1=$!
  wait $p0 || rc0=$?
  wait $p1 || rc1=$?
  grep -E '^ +(WRITE|READ):' "$work/fio/$label-c0.txt" "$work/fio/$label-c1.txt" |
    sed 's/^/    /' || true
  if [ $rc0 -ne 0 ] || [ $rc1 -ne 0 ]; then
    grep -hE 'err=|error' "$work/fio/$label-c"?.txt | head
    fail "$label: fio write+verify failed (c0 $rc0, c1 $rc1)"
    return
  fi
  local rc=0
  (cd "$work/fio" && timeout 300 fio --directory="$m1/fio-$label-c0" --verify_only jobs.fio \
     --output="$work/fio/$label-c0-on-c1.txt") || rc=$?
  (cd "$work/fio" && timeout 300 fio --directory="$m0/fio-$label-c1" --verify_only jobs.fio \
     --output="$work/fio/$label-c1-on-c0.txt") || rc=$?
  local verified
  verified=$(cat "$work/fio/$label-c0-on-c1.txt" "$work/fio/$label-c1-on-c0.txt" | grep -cE 'err= 0' || true)
  if [ $rc -ne 0 ] || [ "$verified" -ne 6 ]; then
    fail "$label: cross-client verify-only failed (rc $rc, $verified of 6 jobs without error)"
    return
  fi
  rm -rf "$m0/fio-$label-c0" "$m0/fio-$label-c1"  # room for the next steps' files
  pass "$label: fio 2 clients x 3 jobs x $fio_size written and verified (crc32c), each verified again through the other client, in $(secs "$t0" "$(now)") s"
}
if [ "${DPMFS_MH_PARTITION_ONLY:-0}" = 1 ]; then
  skip "fio and posix_test before the faults (DPMFS_MH_PARTITION_ONLY=1)"
else
step "fio with verification through both clients at once"
fio_both plain

step "posix_test across the two clients (TwoClientTest, SharedFileExtension)"
mkdir -p "$m0/tc"
t0=$(now)
if DPMFS_TEST_DIR=$m0/tc DPMFS_TEST_DIR2=$m1/tc DPMFS_TEST_LOOKUPCACHE2=positive \
     timeout 600 "$posix_test" --gtest_filter='TwoClientTest.*:*SharedFileExtension.*' \
     >"$work/logs/posix-two-clients.log" 2>&1; then
  pass "posix_test two-client cases: $(grep -E '^\[  PASSED  \]' "$work/logs/posix-two-clients.log" | sed 's/\[  PASSED  \] //'), $(grep -c '^\[  SKIPPED \]' "$work/logs/posix-two-clients.log" || true) skipped, in $(secs "$t0" "$(now)") s"
else
  grep -E '^\[  FAILED  \]|Failure' "$work/logs/posix-two-clients.log" | head -20
  fail "posix_test two-client cases failed across the hosts"
fi
if [ $long = 1 ]; then
  for c in c0 c1; do
    mnt=$m0; [ $c = c0 ] || mnt=$m1
    mkdir -p "$mnt/posix-$c"
    t0=$(now)
    if DPMFS_TEST_DIR=$mnt/posix-$c timeout 900 "$posix_test" \
         --gtest_filter='-TwoClientTest.*:*SharedFileExtension.*' >"$work/logs/posix-$c.log" 2>&1; then
      pass "posix_test (all single-client suites) through $c: $(grep -E '^\[  PASSED  \]' "$work/logs/posix-$c.log" | sed 's/\[  PASSED  \] //') in $(secs "$t0" "$(now)") s"
    else
      grep -E '^\[  FAILED  \]|Failure' "$work/logs/posix-$c.log" | head -20
      fail "posix_test failed through $c"
    fi
  done
else
  skip "posix_test's single-client suites through each client (--long runs them)"
fi
fi

# ---------------------------------------------------------------------------------------
step "tc netem on every veth: 1 ms delay, 1% loss"
netem_why=""
if ! command -v tc >/dev/null; then
  netem_why="tc is missing (iproute2)"
elif ! out=$(ip netns exec "$bridge_ns" tc qdisc add dev lo root netem delay 1ms 2>&1); then
  netem_why="this kernel has no sch_netem (tc: ${out//$'\n'/ })"
fi
if [ -n "$netem_why" ] && command -v nft >/dev/null; then
  # Without netem, the loss at least: nftables drops 1% of the frames the bridge forwards
  # (silently, as a lossy link does; TCP retransmits them). A delay needs netem.
  skip "1 ms delay under fio: $netem_why"
  ip netns exec "$bridge_ns" nft -f - <<'NFT'
table bridge dpmfs_loss {
  chain forward {
    type filter hook forward priority 0;
    numgen random mod 100 == 0 counter drop
  }
}
NFT
  fio_both loss-1pct
  dropped=$(ip netns exec "$bridge_ns" nft list table bridge dpmfs_loss | grep -oE 'packets [0-9]+' | awk '{print $2}')
  ip netns exec "$bridge_ns" nft delete table bridge dpmfs_loss
  if [ "${dropped:-0}" -gt 0 ]; then
    pass "loss-1pct: nftables dropped $dropped frames on the bridge during fio"
  else
    fail "loss-1pct: nftables dropped no frame: the loss was not exercised"
  fi
elif [ -n "$netem_why" ]; then
  skip "netem: 1 ms delay + 1% loss under fio: $netem_why, and nft (nftables) is missing"
else
  ip netns exec "$bridge_ns" tc qdisc del dev lo root
  for h in "${hosts[@]}"; do
    ip netns exec "$bridge_ns" tc qdisc add dev "v-$h" root netem delay 1ms loss 1%
    ip netns exec "$(ns "$h")" tc qdisc add dev eth0 root netem delay 1ms loss 1%
  done
  fio_both netem
  for h in "${hosts[@]}"; do
    ip netns exec "$bridge_ns" tc qdisc del dev "v-$h" root
    ip netns exec "$(ns "$h")" tc qdisc del dev eth0 root
  done
fi

# ---------------------------------------------------------------------------------------
# One fio process per client, each one job (fio 3.33 with numjobs=2 verifies the second
# job's state against the wrong offsets once a job ends by its runtime: seen on tmpfs
# with fallocate=none).
# Files of 48 stripe units: every data server holds part of each. fallocate=truncate: the
# file has its full size from the start (sparse), so the verify pass never reads past EOF
# (a job stopped by EIO leaves a shorter file, and fio would lay it out again).
# --rate_iops=,1000: the writes (12288 of them) last at least 12 s, so fio is still
# writing when the cut comes (at +3 s) and after the heal, however fast the machine: an
# idle one wrote the whole file in 1.9 s and the step found fio ended before the cut.
part_args() {  # MOUNT NAME LABEL RUNTIME: sets part_fio, fio's arguments for NAME's job
  part_fio=(--name="part-$2" --directory="$1/part-$3" --rw=randwrite --bs=4k --size=48M
            --direct=1 --ioengine=psync --verify=crc32c --verify_state_save=1 --randrepeat=1
            --runtime="$4" --fallocate=truncate --rate_iops=,1000)
}

# partition LABEL SECONDS [must-fail]: cuts d1's veth for SECONDS while fio writes through
# both clients and the probe through c1; checks errors (EIO only, within BOUND_S), that
# writes resume after the heal and that every acknowledged write reads back. must-fail:
# the probe must also have seen EIO (a partition longer than the client's timeout).
partition() {
  local label=$1 seconds=$2 must_fail=${3:-}
  local pdir=$work/$label runtime=$(($2 + 7)) c i p mnt other out
  step "$label: a ${seconds} s partition of d1 (${addr[d1]}) while fio writes through c0 and c1 and the probe through c1"
  mkdir -p "$pdir" "$m0/part-$label"
  (exec timeout 120 python3 "$probe" write "$m1/probe-$label" "$pdir/probe.log" "$pdir/stop" 90) &
  local probe_pid=$!
  bg_pids+=("$probe_pid")
  # The probe first fills its file (192 writes); its log starts with the timed rounds.
  for _ in $(seq 200); do [ -s "$pdir/probe.log" ] && break; sleep 0.1; done
  [ -s "$pdir/probe.log" ] || die "$label: the probe wrote nothing within 20 s"
  local fio_pids=()
  for c in c0 c1; do
    mnt=$m0; [ $c = c0 ] || mnt=$m1
    part_args "$mnt" $c "$label" "$runtime"
    (cd "$pdir" && exec timeout 90 fio "${part_fio[@]}" --do_verify=0 \
       --output="$pdir/fio-write-$c.txt") & fio_pids+=($!)
    bg_pids+=($!)
  done
  sleep 3
  for p in "${fio_pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { cat "$pdir"/fio-write-*.txt; die "$label: fio ended before the partition"; }
  done
  local cut heal
  cut=$(now)
  # DPMFS_MH_NO_CUT=1: the same step without the cut (a control for the checks below).
  [ "${DPMFS_MH_NO_CUT:-0}" = 1 ] || ip -n "$bridge_ns" link set v-d1 down
  sleep "$seconds"
  ip -n "$bridge_ns" link set v-d1 up
  heal=$(now)
  echo "    cut at +0, healed at +$(secs "$cut" "$heal") s"
  local -A fio_rc=() fio_end=()
  for i in 0 1; do
    c=c$i; fio_rc[$c]=0
    wait "${fio_pids[i]}" || fio_rc[$c]=$?
    fio_end[$c]=$(now)
  done
  # The probe goes on until I/O has resumed and a little more (or until its own 90 s).
  for _ in $(seq 150); do
    python3 "$probe" report "$pdir/probe.log" "$cut" "$heal" "$BOUND_S" 2>/dev/null |
      grep -q "resumed [0-9]" && break
    sleep 0.2
  done
  sleep 1
  touch "$pdir/stop"
  local probe_rc=0
  wait $probe_pid || probe_rc=$?
  [ $probe_rc -eq 0 ] || fail "$label: the probe ended with status $probe_rc (124: hung)"
  local issued errs
  for c in c0 c1; do
    out=$pdir/fio-write-$c.txt
    issued=$(grep -oE 'issued rwts: total=[0-9]+,[0-9]+' "$out" | sed -E 's/.*,//' || true)
    errs=$(grep -oE 'err= *[0-9]+' "$out" | tr -d ' ' || true)
    echo "    fio through $c: exit ${fio_rc[$c]} at +$(secs "$cut" "${fio_end[$c]}") s, ${issued:-?} writes issued, ${errs:-no err line}"
    grep -hE 'io_u error|fio: .*error' "$out" | head -3 | sed 's/^/      /' || true
    if [ "${fio_rc[$c]}" -eq 124 ]; then
      fail "$label: fio through $c hung (killed by timeout after 90 s)"
    elif grep -oE 'err= *[0-9]+' "$out" | grep -qvE 'err= *(0|5)$'; then
      fail "$label: fio through $c saw an error other than EIO"
    else
      pass "$label: fio through $c saw no error other than EIO (exit ${fio_rc[$c]})"
    fi
  done
  if python3 "$probe" report "$pdir/probe.log" "$cut" "$heal" "$BOUND_S" >"$pdir/report.txt"; then
    pass "$label: $(sed 's/^probe: //' "$pdir/report.txt")"
  else
    cat "$pdir/report.txt"
    fail "$label: the probe's writes (above)"
  fi
  if [ "$must_fail" = must-fail ] && ! grep -q 'errors: EIO' "$pdir/report.txt"; then
    fail "$label: a ${seconds} s partition gave the probe no EIO: the failure path was not exercised"
  fi
  for c in c0 c1; do
    kill -0 "${pid_of[mount-$c]}" 2>/dev/null || fail "$label: the client on $c died"
  done

  step "$label, after the heal: every acknowledged write reads back"
  local vrc verified
  for c in c0 c1; do
    vrc=0
    # Read back through the other client: no cached pages.
    other=$m1; [ $c = c0 ] || other=$m0
    part_args "$other" $c "$label" "$runtime"
    (cd "$pdir" && exec timeout 120 fio "${part_fio[@]}" --verify_only --do_verify=1 \
       --verify_state_load=1 --verify_fatal=1 --output="$pdir/fio-verify-$c.txt") || vrc=$?
    verified=$(grep -oE 'issued rwts: total=[0-9]+' "$pdir/fio-verify-$c.txt" | sed -E 's/.*=//' || true)
    if [ $vrc -eq 0 ]; then
      pass "$label: every write fio saw complete through $c verified through the other client (${verified:-?} blocks, fio --verify_state_load)"
    else
      grep -E 'err=|verify|bad' "$pdir/fio-verify-$c.txt" | head -10
      fail "$label: fio verify of $c's writes after the heal failed (exit $vrc): an acknowledged write was lost"
    fi
  done
  if out=$(timeout 60 python3 "$probe" check "$m0/probe-$label" "$pdir/probe.log"); then
    pass "$label: probe read back through c0: $out"
  else
    echo "$out" | tail -5
    fail "$label: probe: acknowledged writes lost"
  fi
}

partition partition-5s 5
if [ $long = 1 ]; then
  # Longer than the client's 5 s timeout: the application must see EIO, in bounded time.
  partition partition-15s 15 must-fail
else
  skip "a 15 s partition, past the client's timeout, that must give EIO (--long runs it)"
fi
fio_both healed
