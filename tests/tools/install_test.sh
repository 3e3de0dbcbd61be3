#!/usr/bin/env bash
# The installed dpmfs, as a package user meets it: `cmake --install` into a scratch root
# (DESTDIR; --deb: the .deb CPack builds, unpacked with dpkg-deb) has every program, the
# mount helper, the units, man pages and bash completion; every program's --version names
# the commit; then a cluster is started from the installed units' ExecStart lines and
# mounted through `mount -t fuse.dpmfs` with the installed files only. The host's /usr is
# never touched: the installed sbin is bind-mounted over /usr/local/sbin inside a private
# mount namespace (as tests/xfstests/run.sh does). Needs root, /dev/fuse and mount.fuse3
# (else exit 77: skipped). ~10 s (--deb: plus cpack).
#
#   install_test.sh BUILD_DIR [--deb]
set -euo pipefail
build=$(cd "${1:?usage: install_test.sh BUILD_DIR [--deb]}" && pwd)
mode=${2:-install}
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIPPED: /dev/fuse is missing"; exit 77; }
command -v mount.fuse3 >/dev/null || [ -x /sbin/mount.fuse3 ] || { echo "SKIPPED: no mount.fuse3"; exit 77; }
start_ns=$(date +%s%N)

work=$(mktemp -d /tmp/dpmfs-install-test.XXXXXX)
root=$work/root
pids=()
cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]+"${pids[@]}"}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null; done
  [ $rc -eq 0 ] || { for f in "$work"/*.log; do echo "== $f"; tail -n 20 "$f"; done; }
  rm -rf "$work" "/dev/shm/dpmfs-install-test-$$"
  exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

if [ "$mode" = --deb ]; then
  echo "--- cpack -G DEB, unpacked into a scratch root"
  (cd "$work" && cpack -G DEB -B "$work/deb" --config "$build/CPackConfig.cmake" >/dev/null)
  deb=$(ls "$work"/deb/dpmfs_*.deb)
  info=$(dpkg-deb --info "$deb")  # not piped into grep -q: its early exit would fail pipefail
  [[ "$info" == *"Depends: fuse3"* ]] || fail "the .deb does not depend on fuse3: $info"
  dpkg-deb -x "$deb" "$root"
  prefix=$root/usr
else
  echo "--- cmake --install into a scratch root (DESTDIR)"
  DESTDIR=$root cmake --install "$build" --prefix /usr/local >/dev/null
  prefix=$root/usr/local
fi

echo "--- every file is installed"
for f in sbin/dpmfs-meta sbin/dpmfs-data sbin/dpmfs-mount sbin/mkfs.dpmfs sbin/dpmfs \
         bin/dpmfs-bench bin/dpmfs-powerloss bin/dpmfs-admin share/man/man1/dpmfs-admin.1 \
         lib/systemd/system/dpmfs-meta.service lib/systemd/system/dpmfs-data@.service \
         lib/systemd/system/dpmfs-data.target \
         share/man/man8/dpmfs-meta.8 share/man/man8/dpmfs-data.8 share/man/man8/dpmfs-mount.8 \
         share/man/man8/mkfs.dpmfs.8 share/man/man8/dpmfs.8 share/man/man1/dpmfs-bench.1 \
         share/man/man1/dpmfs-powerloss.1 share/bash-completion/completions/dpmfs \
         share/bash-completion/completions/mkfs.dpmfs share/bash-completion/completions/dpmfs-data; do
  [ -e "$prefix/$f" ] || fail "$f is not installed under $prefix"
done
[ -e "$root/etc/default/dpmfs" ] || [ -e "$prefix/etc/default/dpmfs" ] ||
  fail "/etc/default/dpmfs is not installed"
for page in "$prefix"/share/man/man*/*; do
  grep -q '^\.TH' "$page" || fail "$page is not a man page"
  grep -qE -- '(\\-\\-|--)[a-z]' "$page" || fail "$page does not describe the program's flags"
done

echo "--- --version names the version and the commit"
for b in sbin/dpmfs-meta sbin/dpmfs-data sbin/dpmfs-mount sbin/mkfs.dpmfs bin/dpmfs-bench bin/dpmfs-powerloss bin/dpmfs-admin; do
  v=$("$prefix/$b" --version)
  [[ "$v" =~ dpmfs\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ [0-9a-f]{7,} ]] || fail "$b --version says '$v'"
done
echo "  $("$prefix/sbin/dpmfs-meta" --version)"

echo "--- bash completion offers the flags"
out=$(bash -c "source '$prefix/share/bash-completion/completions/dpmfs'
  COMP_WORDS=('$prefix/sbin/dpmfs-data' --clu); COMP_CWORD=1
  _dpmfs_complete '$prefix/sbin/dpmfs-data' --clu; echo \"\${COMPREPLY[*]}\"")
[[ "$out" == *--cluster-file* ]] || fail "completion of 'dpmfs-data --clu' gave '$out'"

echo "--- a cluster from the units' command lines, mounted with mount -t fuse.dpmfs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pools=/dev/shm/dpmfs-install-test-$$
conf=$work/cluster.conf
cat >"$conf" <<CONF
cluster_uuid $(cat /proc/sys/kernel/random/uuid)
meta 127.0.0.1:$(free_port) $pools/meta.pool 16M
data 127.0.0.1:$(free_port) $pools/data0.pool 32M
data 127.0.0.1:$(free_port) $pools/data1.pool 32M
CONF
"$prefix/sbin/mkfs.dpmfs" cluster "$conf" >"$work/mkfs.log" 2>&1 || fail "mkfs.dpmfs cluster failed"
# mkfs made the cluster key beside the cluster file, where the daemons look for it.
[ -f "$work/cluster.key" ] || fail "mkfs.dpmfs cluster made no cluster key beside $conf"
# ExecStart of a unit, as systemd would run it with /etc/default/dpmfs empty.
exec_start() {
  sed -n 's/^ExecStart=//p' "$prefix/lib/systemd/system/$1" |
    sed -e "s|\${DPMFS_CLUSTER_FILE}|$conf|" -e "s|%i|${2:-}|" -e 's|\$DPMFS_[A-Z_]*||'
}
wait_ready() {
  for _ in $(seq 200); do grep -qs '^READY ' "$1" && return 0; sleep 0.1; done
  fail "no READY in $1"
}
for i in 0 1; do
  cmd=$(exec_start dpmfs-data@.service "$i")
  [[ "$cmd" == "dpmfs-data --cluster-file $conf --index $i"* ]] || fail "unexpected ExecStart: $cmd"
  PATH=$prefix/sbin:$PATH $cmd >"$work/data$i.log" 2>&1 &
  pids+=($!)
  wait_ready "$work/data$i.log"
done
PATH=$prefix/sbin:$PATH $(exec_start dpmfs-meta.service) >"$work/meta.log" 2>&1 &
pids+=($!)
wait_ready "$work/meta.log"
meta=$(awk '$1 == "meta" {print $2}' "$conf")

# Only the installed files: their sbin is /usr/local/sbin in this namespace, and mount(8)
# finds mount.fuse3, which finds `dpmfs` (the helper), which runs `dpmfs-mount`.
sbin=$work/sbin
mkdir -p "$sbin" "$work/mnt"
for f in "$prefix"/sbin/*; do ln -s "$f" "$sbin/"; done
# Mounted twice: with mount -t, then from an fstab line as fs/README.md gives it (the
# namespace's own /etc/fstab, bind-mounted over the host's), `mount MOUNTPOINT`; while
# mounted, the installed dpmfs-admin asks the whole cluster for its stats, the client's
# among them (pushed with its heartbeat, docs/monitoring.md).
printf '%s %s fuse.dpmfs noauto,default_permissions,log=%s,key_file=%s 0 0\n' \
  "$meta" "$work/mnt" "$work/client-fstab.log" "$work/cluster.key" >"$work/fstab"
unshare -m --propagation private -- bash -euc '
  mount --bind "$1" /usr/local/sbin
  export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
  [ "$(command -v dpmfs)" = /usr/local/sbin/dpmfs ] || { echo "dpmfs is not the installed one"; exit 1; }
  mount -t fuse.dpmfs "$2" "$3" -o default_permissions,log="$4",key_file="$5"
  echo "written through the installed client" >"$3/hello"
  sync "$3/hello"
  [ "$(cat "$3/hello")" = "written through the installed client" ]
  umount "$3"
  mount --bind "$6" /etc/fstab
  mount "$3"
  [ "$(cat "$3/hello")" = "written through the installed client" ] || { echo "the fstab mount does not show the file"; exit 1; }
  # The client reports with its heartbeat: wait for it to show (at most 10 s).
  for _ in $(seq 50); do
    "$9" --cluster-file "$7" --key-file "$5" stats >"$8" 2>&1 || true
    grep -q "^client" "$8" && break
    sleep 0.2
  done
  umount "$3"
' inner "$sbin" "$meta" "$work/mnt" "$work/client.log" "$work/cluster.key" "$work/fstab" "$conf" \
  "$work/stats.txt" "$prefix/bin/dpmfs-admin" || fail "mount through the installed files failed"
echo "--- dpmfs-admin stats answered for the servers and the fstab-mounted client"
grep -q "^meta" "$work/stats.txt" || { cat "$work/stats.txt"; fail "dpmfs-admin stats shows no metadata server"; }
grep -q "^data" "$work/stats.txt" || { cat "$work/stats.txt"; fail "dpmfs-admin stats shows no data server"; }
grep -q "^client" "$work/stats.txt" || { cat "$work/stats.txt"; fail "dpmfs-admin stats shows no client"; }
grep -q "mounted dpmfs from $meta" "$work/client-fstab.log" || fail "the fstab mount's client log lacks the mount"

echo "--- the detached client logged to its file, mode 0600"
for _ in $(seq 50); do grep -q "unmounted" "$work/client.log" 2>/dev/null && break; sleep 0.1; done
grep -q "mounted dpmfs from $meta" "$work/client.log" || fail "client log lacks the mount"
grep -q "unmounted $work/mnt" "$work/client.log" || fail "client log lacks the unmount (after detaching)"
[ "$(stat -c %a "$work/client.log")" = 600 ] || fail "client log mode is $(stat -c %a "$work/client.log")"
echo "PASS ($mode) in $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"
