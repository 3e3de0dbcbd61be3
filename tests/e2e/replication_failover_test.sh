#!/usr/bin/env bash
# Writes through the loss of a data server (docs/replication.md), real daemons and a real
# mount: R = 2 over 3 data servers. fio with verification (O_DIRECT and buffered jobs)
# while one data server is kill -9'd: 0 errors; a verify-only pass through a second,
# fresh client passes. The server restarts and is resynced (bytes copied in the metadata
# server's log and in 'dpmfs status'); then a *different* server is killed and the
# verify-only pass still passes (the resynced copies are read). Both copies of some
# blocks down: EIO at once, then service resumes. Needs root, /dev/fuse and fio (else
# exit 77: skipped). ROUNDS=N repeats the kill/verify/resync cycle (the long run,
# tests/e2e/replication_soak.sh). ~60 s.
set -euo pipefail
source "$(dirname "$0")/../support/cluster_script_prologue.sh" replication-failover
command -v fio >/dev/null || { echo "SKIPPED: fio is missing"; exit 77; }
rounds=${ROUNDS:-1}

map_bin=${DPMFS_BUILD_DIR:-$root/build}/tools/cluster_map/dpmfs-cluster-map
cluster_map() {
  "$map_bin" "$(awk '$1 == "meta" {print $2}' "$dir/cluster.conf")" --key-file "$dir/cluster.key"
}
wait_all_up() {
  local i
  for ((i = 0; i < 600; i++)); do
    if cluster_map >"$work/map" 2>&1 && ! grep -qvE '^(epoch|data [0-9]+ up)' "$work/map"; then
      return 0
    fi
    sleep 0.2
  done
  cat "$work/map"
  fail "the data servers are not all up after 120 s"
}
pid_of() { cat "$dir/run/$1.pid"; }
second=$work/mnt2
before_destroy() { umount -l "$second" 2>/dev/null || true; }

# The jobs: random overwrites after fio lays the files out (appends), 4k O_DIRECT,
# 64k O_DIRECT and 16k buffered with fsync, every block with a crc32c header.
# --verify_state_save=0: fio would leave its *-verify.state files in the working directory
# (the repository, under ctest); the verify-only pass reads the blocks' headers, not them.
# --rate=,3m: each job writes for at least 2 to 4 s, so the kill at +1.5 s falls while
# they write, however fast the machine (idle, the jobs ended before it and no write was
# recorded as missing from the killed server).
jobs=(--directory="$dir/mnt" --verify=crc32c --verify_fatal=1 --verify_state_save=0 --rate=,3m --rw=randwrite
      --randrepeat=1 --group_reporting
      --name=direct4k --direct=1 --bs=4k --size=6M
      --name=direct64k --direct=1 --bs=64k --size=12M
      --name=buffered --direct=0 --bs=16k --size=8M --fsync=16)
verify_only() {  # from a fresh client: nothing in its page cache or layout cache
  mkdir -p "$second"
  "$dpmfs" mount "$dir" "$second" >/dev/null
  local rc=0
  fio "${jobs[@]/#--directory=*/--directory=$second}" --verify_only >"$work/verify.log" 2>&1 ||
    rc=$?
  umount "$second"
  [ $rc -eq 0 ] || { tail -n 30 "$work/verify.log"; fail "verify-only pass failed ($*)"; }
  grep -q "err= 0" "$work/verify.log" || { cat "$work/verify.log"; fail "verify errors ($*)"; }
}

step "up: 3 data servers, 2 copies, health probes every 300 ms"
"$dpmfs" up "$dir" --data-servers 3 --replicas 2 --data-size 96M --meta-size 32M \
  --meta-arg=--probe-ms=300 >/dev/null

for ((round = 0; round < rounds; round++)); do
  victim=$((round % 3)) other=$(((round + 1) % 3))
  step "round $round: fio with verification while data server $victim is killed"
  rm -f "$dir"/mnt/direct* "$dir"/mnt/buffered*
  fio "${jobs[@]}" >"$work/fio.log" 2>&1 &
  fio_pid=$!
  sleep 1.5
  kill -9 "$(pid_of "data$victim")"
  rc=0
  wait $fio_pid || rc=$?
  [ $rc -eq 0 ] || { tail -n 30 "$work/fio.log"; fail "fio failed with data$victim killed"; }
  grep -q "err= 0" "$work/fio.log" || { cat "$work/fio.log"; fail "fio reported errors"; }
  cluster_map >"$work/map"
  grep -qE "^data $victim down dirty_bytes=[1-9]" "$work/map" ||
    { cat "$work/map"; fail "data$victim is not down with recorded writes"; }

  step "round $round: verify-only pass from a fresh client, data$victim still down"
  verify_only "data$victim down"

  step "round $round: data$victim restarts and is resynced"
  "$dpmfs" up "$dir" >/dev/null
  wait_all_up
  grep -E "data server $victim resynced \([0-9]+ MiB copied in [0-9.]+ s" "$dir/logs/meta.log" | tail -n 1 |
    grep -q . || { tail -n 20 "$dir/logs/meta.log"; fail "no resync of data$victim logged"; }
  "$dpmfs" status "$dir" >"$work/status" || true
  grep -qE "^  data$victim +up \(last resync: [0-9.]+ MiB copied\)" "$work/status" ||
    { cat "$work/status"; fail "status does not show data$victim's resync"; }

  step "round $round: data$other killed: the resynced copies on data$victim are read"
  kill -9 "$(pid_of "data$other")"
  verify_only "data$other down after data$victim's resync"
  "$dpmfs" up "$dir" >/dev/null
  wait_all_up
done

step "both copies of some blocks down: EIO at once, then service resumes"
kill -9 "$(pid_of data0)" "$(pid_of data1)"
start=$(date +%s)
if dd if="$dir/mnt/direct4k.0.0" iflag=direct bs=1M of=/dev/null status=none 2>"$work/err"; then
  fail "a read with both copies of a block down succeeded"
fi
grep -q "Input/output error" "$work/err" || { cat "$work/err"; fail "not EIO"; }
[ $(($(date +%s) - start)) -le 10 ] || fail "the failing read took more than 10 s"
"$dpmfs" up "$dir" >/dev/null
verify_only "both servers back"
wait_all_up
echo "PASS ($rounds rounds)"
