#!/usr/bin/env bash
# Runs xfstests against dpmfs (or, for comparison, bindfs over tmpfs): builds the suite
# once from an unmodified source tree, starts two clusters of its own (TEST_DEV and
# SCRATCH_DEV), runs a list of tests and ends with `N passed, N failed, N skipped`.
# Everything it started is stopped on exit. Usage: tests/xfstests/run.sh --help
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
prog=xfstests

usage() {
  cat <<EOF
Usage: tests/xfstests/run.sh [options] [TEST...]

Runs xfstests (FSTYP=fuse) against two dpmfs clusters of its own on loopback and prints
the suite's summary, then "N passed, N failed, N skipped". Exit 0 when nothing failed.

Tests: the names given (generic/075 ...), else -g GROUP, else the list in
tests/xfstests/subset.txt. Tests in tests/xfstests/exclude.txt (FUSE limits, each with
its reason) are never run.

Options:
  -g GROUP          run an xfstests group instead of the list (e.g. -g quick)
  --list FILE       the list of tests (default: $here/subset.txt)
  --target T        dpmfs (default) or bindfs (bindfs over tmpfs: the local FUSE
                    passthrough to compare with)
  --source DIR      the xfstests source tree (default \$XFSTESTS_SRC, else
                    $root/../shared/xfstests)
  --work DIR        where the tree is copied and built, clusters and mounts live
                    (default \$XFSTESTS_WORK, else /var/tmp/dpmfs-xfstests)
  --base-port P     the test cluster's metadata server on P, the scratch cluster's on
                    P+100 (default \$XFSTESTS_BASE_PORT, else 31000)
  --timeout SEC     stop the suite after SEC seconds (default 3600)
  --test-timeout SEC  stop a single test after SEC seconds (default 1200): its
                    processes are killed, and if one is stuck in a file-system request
                    the run's file-system daemons too; the suite records it as failed
                    and goes on with the next test (mounted afresh)
  -h, --help        this text
Environment: DPMFS_BUILD_DIR (default $root/build) names the dpmfs build.
EOF
}

group="" list="$here/subset.txt" target=dpmfs tests=()
src=${XFSTESTS_SRC:-$root/../shared/xfstests}
work=${XFSTESTS_WORK:-/var/tmp/dpmfs-xfstests}
base_port=${XFSTESTS_BASE_PORT:-31000}
suite_timeout=3600 test_timeout=1200
while [ $# -gt 0 ]; do
  case "$1" in
    -g) group=${2:?-g needs a group}; shift ;;
    --list) list=${2:?}; shift ;;
    --target) target=${2:?}; shift ;;
    --source) src=${2:?}; shift ;;
    --work) work=${2:?}; shift ;;
    --base-port) base_port=${2:?}; shift ;;
    --timeout) suite_timeout=${2:?}; shift ;;
    --test-timeout) test_timeout=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "$prog: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) tests+=("$1") ;;
  esac
  shift
done
case "$target" in dpmfs|bindfs) ;; *) echo "$prog: --target dpmfs|bindfs" >&2; exit 2 ;; esac
for n in "$suite_timeout" "$test_timeout" "$base_port"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "$prog: '$n' is not a positive number" >&2; exit 2; }
done
build=${DPMFS_BUILD_DIR:-$root/build}
[[ "$build" = /* ]] || build=$(pwd)/$build

note() { echo "$prog: $*"; }
started=$(date +%s)

# --- No tree: skipped, not failed. ------------------------------------------------------
if [ ! -x "$src/check" ] || [ ! -d "$src/tests/generic" ]; then
  note "no xfstests source tree at $src: skipped (set XFSTESTS_SRC or --source)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
src=$(cd "$src" && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "$prog: must run as root (mounts, users, packages)" >&2; exit 2
fi

# --- Packages (only what is missing, as tools/install-deps.sh does). -------------------
packages=(xfslibs-dev uuid-dev libtool-bin e2fsprogs automake autoconf gcc make libuuid1 quota
          attr acl libacl1-dev libaio-dev xfsprogs libgdbm-dev gawk fio dbench uuid-runtime
          python3 sqlite3 libcap-dev liburing-dev bc psmisc fuse3 bindfs util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  note "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1
fi

# --- Build once per source tree (a copy: the source may be read-only). ------------------
tree=$work/xfstests
mkdir -p "$work"
stamp=$( (cd "$src" && find . -path ./.git -prune -o -type f -printf '%P %s %T@\n' | sort) |
         sha1sum | cut -d' ' -f1)
if [ "$(cat "$tree/.dpmfs-source-stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$tree/ltp/fsx" ]; then
  note "building xfstests from $src in $tree (once per source tree; a few minutes)"
  rm -rf "$tree"
  cp -a "$src" "$tree"
  if ! (cd "$tree" && nice make -j"$(nproc)" >"$work/build.log" 2>&1); then
    tail -30 "$work/build.log" >&2
    echo "$prog: building xfstests failed (log: $work/build.log)" >&2
    exit 1
  fi
  echo "$stamp" >"$tree/.dpmfs-source-stamp"
else
  note "reusing the xfstests build in $tree"
fi

# --- Users the suite wants. -------------------------------------------------------------
for u in fsgqa fsgqa2 123456-fsgqa; do
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u" || useradd --badname -m -s /bin/bash "$u"
done

# --- Targets: two file systems, mounted by mount(8) as the suite does. ------------------
state=$work/state-$target
mnt=$work/mnt-$target
bin=$work/bin
mkdir -p "$state" "$mnt/test" "$mnt/scratch"
cleanup_steps=()
suite_pid=""
# The file-system daemons of this run, by their arguments (both daemonize: they are no
# children of ours): dpmfs clients of our two clusters, bindfs over our two sources.
fs_daemon_pids() {
  local pid cmd
  while read -r pid cmd; do
    case "$target:$cmd" in
      "dpmfs:$build/fs/dpmfs-mount 127.0.0.1:$base_port "*|"dpmfs:$build/fs/dpmfs-mount 127.0.0.1:$((base_port + 100)) "*) echo "$pid" ;;
      "bindfs:bindfs "*"$state/tmpfs-test/dev "*|"bindfs:bindfs "*"$state/tmpfs-scratch/dev "*) echo "$pid" ;;
    esac
  done < <(ps -e -o pid=,args=)
}
# Every process below `root` (not itself).
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = parent[p]; while (q > 1) { if (q == root) { print p; break } q = parent[q] } } }'
}
# Sends SIG to each pid; then waits up to SEC seconds for all of them to be gone.
signal_and_wait() {
  local sig=$1 sec=$2 pid i; shift 2
  for pid in "$@"; do kill "-$sig" "$pid" 2>/dev/null; done
  for ((i = 0; i < sec * 10; i++)); do
    local alive=0
    for pid in "$@"; do [ -d "/proc/$pid" ] && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  return 1
}
cleanup() {
  local rc=$?
  set +e
  trap - INT TERM
  # The suite first (a run cut short: interrupted, or the runner killed), then the file
  # systems' daemons: SIGTERM unmounts a client (SIGCONT first: one may have been
  # stopped), and ends every request a stuck test waits in. SIGKILL for what remains.
  local pids=() i
  if [ -n "$suite_pid" ]; then
    pids=($(descendants "$suite_pid") "$suite_pid")
    signal_and_wait TERM 5 "${pids[@]}" || signal_and_wait KILL 2 "${pids[@]}"
  fi
  pids=($(fs_daemon_pids))
  if [ ${#pids[@]} -gt 0 ]; then
    for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null; done
    signal_and_wait TERM 10 "${pids[@]}" || signal_and_wait KILL 5 "${pids[@]}"
  fi
  if [ -n "$suite_pid" ]; then
    pids=($(descendants "$suite_pid") "$suite_pid")
    signal_and_wait KILL 5 "${pids[@]}"
  fi
  for m in "$mnt/test" "$mnt/scratch"; do
    if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
  [ -n "${watchdog_pid:-}" ] && kill "$watchdog_pid" 2>/dev/null
  for ((i = ${#cleanup_steps[@]} - 1; i >= 0; i--)); do eval "${cleanup_steps[i]}" >/dev/null 2>&1; done
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Mount helpers go to $bin, which the suite's mount namespace sees as /usr/local/sbin.
rm -rf "$bin"; mkdir -p "$bin"
for f in /usr/local/sbin/*; do
  case "${f##*/}" in dpmfs|umount) ;; *) [ -e "$f" ] && ln -s "$f" "$bin/" ;; esac
done

if [ "$target" = dpmfs ]; then
  for b in dpmfs-mount dpmfs-meta dpmfs-data mkfs.dpmfs; do
    if ! find -L "$build" -maxdepth 2 -name "$b" -type f -perm -u+x | grep -q .; then
      echo "$prog: no $b in $build: build dpmfs first (bash tools/build.sh) or set DPMFS_BUILD_DIR" >&2
      exit 1
    fi
  done
  export DPMFS_BUILD_DIR=$build
  # mount -t fuse.dpmfs runs mount.fuse3, which runs `dpmfs SOURCE MNT -o OPTS` through
  # /bin/sh with mount(8)'s cleaned environment (no PATH: the shell's default path, so
  # /usr/local/sbin, where `tools/dpmfs install` puts it). The suite runs in a mount
  # namespace of its own in which $bin is bind-mounted over /usr/local/sbin; nothing
  # changes for the rest of the machine. This helper runs the client with no subtype
  # (so df shows plain "fuse", what the suite checks for FSTYP=fuse) and its log in a
  # file: a client that kept the stderr of whoever ran mount(8) would put its lines
  # into the tests' output.
  cat >"$bin/dpmfs" <<EOF
#!/usr/bin/env bash
# Written by tests/xfstests/run.sh: what mount.fuse3 runs for fuse.dpmfs.
log="$state/client-\${1//[^0-9A-Za-z.]/_}.log"
start=\$(stat -c %s "\$log" 2>/dev/null || echo 0)
rc=0
# Each of the two clusters has its own key (docs/security.md): the one of the source's.
key="$state/cluster-scratch/cluster.key"
[ "\$1" = "127.0.0.1:$base_port" ] && key="$state/cluster-test/cluster.key"
"$build/fs/dpmfs-mount" "\$@" -o subtype=,key_file="\$key" </dev/null >>"\$log" 2>&1 || rc=\$?
if [ \$rc -ne 0 ]; then tail -c +\$((start + 1)) "\$log" >&2; fi
exit \$rc
EOF
  chmod +x "$bin/dpmfs"
  test_port=$base_port scratch_port=$((base_port + 100))
  for c in test scratch; do
    port=test_port; [ $c = scratch ] && port=scratch_port
    size=1G; [ $c = scratch ] && size=512M
    dir=$state/cluster-$c
    tools_dpmfs="$root/tools/dpmfs"
    cleanup_steps+=("'$tools_dpmfs' destroy '$dir'")
    "$tools_dpmfs" destroy "$dir" >/dev/null 2>&1 || true
    if ! "$tools_dpmfs" up "$dir" --no-mount --base-port "${!port}" --data-size "$size" \
         --meta-size 256M >"$state/up-$c.log" 2>&1; then
      cat "$state/up-$c.log" >&2
      echo "$prog: cannot start the $c cluster" >&2
      exit 1
    fi
  done
  test_dev=127.0.0.1:$test_port scratch_dev=127.0.0.1:$scratch_port subtype=.dpmfs
  opts="-o allow_other,default_permissions"
else
  # bindfs over tmpfs: each "device" is a directory on a tmpfs of its own, sized as the
  # dpmfs clusters' data pools.
  # Each "device" is a directory on a tmpfs of its own, sized as the dpmfs clusters'
  # data pools (a directory inside it: the suite unmounts its devices by name, which
  # for the tmpfs's root would unmount the tmpfs). bindfs names its mounts by their
  # source directory, and umount(8) given an existing directory that is no mount point
  # says "not mounted": a umount in front of the real one, in this target's $bin only,
  # turns our two source directories into their mount points.
  for c in test scratch; do
    size=2G; [ $c = scratch ] && size=1G
    dir=$state/tmpfs-$c
    mkdir -p "$dir"
    mountpoint -q "$dir" && umount "$dir"
    mount -t tmpfs -o size=$size "tmpfs-for-xfs-bindfs-$c" "$dir"
    cleanup_steps+=("umount '$dir'")
    mkdir "$dir/dev"
  done
  test_dev=$state/tmpfs-test/dev scratch_dev=$state/tmpfs-scratch/dev subtype=.bindfs
  cat >"$bin/umount" <<EOF
#!/usr/bin/env bash
# Written by tests/xfstests/run.sh --target bindfs (see there).
args=()
for a in "\$@"; do
  if [ "\$a" = "$test_dev" ] || [ "\$a" = "$scratch_dev" ]; then
    t=\$(findmnt -rn -S "\$a" -o TARGET | head -1)
    [ -n "\$t" ] && a=\$t
  fi
  args+=("\$a")
done
exec /usr/bin/umount "\${args[@]}"
EOF
  chmod +x "$bin/umount"
  opts="-o allow_other,default_permissions"
fi

cat >"$tree/local.config" <<EOF
# Written by dpmfs tests/xfstests/run.sh --target $target
export FSTYP=fuse
export FUSE_SUBTYP=$subtype
export TEST_DEV=$test_dev
export TEST_DIR=$mnt/test
export SCRATCH_DEV=$scratch_dev
export SCRATCH_MNT=$mnt/scratch
export TEST_FS_MOUNT_OPTS="$opts"
export MOUNT_OPTIONS="$opts"
EOF

# --- Run. -------------------------------------------------------------------------------
args=(-E "$here/exclude.txt")
if [ ${#tests[@]} -gt 0 ]; then
  args+=("${tests[@]}")
elif [ -n "$group" ]; then
  args+=(-g "$group")
else
  mapfile -t listed < <(sed -e 's/#.*//' "$list" | tr -s ' \t' '\n\n' | grep -v '^$')
  args+=("${listed[@]}")
fi
note "target $target: TEST_DEV=$test_dev SCRATCH_DEV=$scratch_dev; ./check ${args[*]:2:6}..."
out=$work/check-$target.out
rm -rf "$tree/results"
rc=0
# In a private mount namespace: the mounts the suite makes (and, for dpmfs, the helper
# over /usr/local/sbin) are invisible outside and end with it.
inner='
  set -u
  tree=$1 bin=$2 tmo=$3; shift 3
  if [ -n "$bin" ]; then mount --bind "$bin" /usr/local/sbin || exit 1; fi
  export PATH=/usr/local/sbin:$PATH
  cd "$tree" && timeout -k 60 "$tmo" ./check "$@"
  rc=$?
  for m in "$TEST_DIR_" "$SCRATCH_MNT_"; do
    if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
  exit $rc'
# The watchdog: a test that hangs must not wedge the run. Every 5 s it looks for the
# test check is running (the process "/bin/bash .../tests/GROUP/NNN" below the suite);
# one running longer than --test-timeout gets SIGKILL with all its processes, and the
# run's file-system daemons are stopped too (SIGCONT, SIGTERM, SIGKILL after 10 s): the
# file system may be what hangs, and a process waiting in a FUSE request no signal ends
# (once a request is sent, the kernel waits for the answer), nor does check's own
# unmount after the test. Without its daemon the kernel ends every request with
# ENOTCONN; check records the test as failed, unmounts, and the next test mounts afresh.
timed_out=$work/timed-out-$target.txt
: >"$timed_out"
watchdog() {
  set +e
  while [ -d "/proc/$suite_pid" ]; do
    sleep 5
    local line pid age name
    line=$(ps -o pid=,etimes=,args= -p "$(descendants "$suite_pid" | paste -sd, -)" 2>/dev/null |
           awk '$3 ~ /bash$/ && $4 ~ /(^|\/)tests\/[a-z0-9]+\/[0-9]+$/ { print $1, $2, $4; exit }')
    [ -n "$line" ] || continue
    read -r pid age name <<<"$line"
    [ "$age" -gt "$test_timeout" ] || continue
    name=${name##*/tests/}
    local pids=($(descendants "$pid") "$pid") daemons=($(fs_daemon_pids)) how="SIGKILL"
    signal_and_wait KILL 10 "${pids[@]}" || how="SIGKILL; it was stuck in a file-system request"
    for p in "${daemons[@]}"; do kill -CONT "$p" 2>/dev/null; done
    signal_and_wait TERM 10 "${daemons[@]}" || signal_and_wait KILL 10 "${daemons[@]}"
    signal_and_wait KILL 10 "${pids[@]}"
    note "$name ran longer than $test_timeout s: stopped ($how), and the file systems' daemons" \
         "(pids ${daemons[*]}); the next test mounts afresh" >&2
    echo "$name" >>"$timed_out"
  done
}

# In the background with `wait`, so that a signal to the runner is handled at once
# (bash runs traps only after a foreground child ends) and cleanup can end the suite.
# (A subshell: $! of a pipeline would be its last command, tee.)
(
  TEST_DIR_=$mnt/test SCRATCH_MNT_=$mnt/scratch \
    unshare -m --propagation private -- bash -c "$inner" inner "$tree" "$bin" \
    "$suite_timeout" "${args[@]}" 2>&1 | tee "$out"
) &
suite_pid=$!
watchdog &
watchdog_pid=$!
wait "$suite_pid" || rc=$?
kill "$watchdog_pid" 2>/dev/null
wait "$watchdog_pid" 2>/dev/null || true  # killed: 143, not a failure of the run
suite_pid=""

# --- Summary. ---------------------------------------------------------------------------
names() { awk -v k="$1" 'index($0, k) == 1 { for (i = 3 - (k != "Not run:"); i <= NF; ++i) print $i; exit }' "$out" | sort -u; }
# This suite's "Ran:" also lists the tests that turned out not to run: passed is what
# ran and neither failed nor was not run.
ran=$(names "Ran:" | wc -l) notrun=$(names "Not run:" | wc -l) failed=$(names "Failures:" | wc -l)
passed=$(comm -23 <(names "Ran:") <(sort -u <(names "Not run:") <(names "Failures:")) | wc -l)
elapsed=$(($(date +%s) - started))
if [ "$ran" -eq 0 ] && [ "$notrun" -eq 0 ] && [ "$failed" -eq 0 ]; then
  # No summary: check was stopped (the suite timeout, a signal). Count what finished from
  # its per-test lines ("generic/001 5s", "... [not run] why", "... - output mismatch",
  # "... [failed, ...]"), so a cut-short run still says how far it got and what failed.
  counts=$(awk '$1 ~ /^[a-z0-9]+\/[0-9]+$/ {
      last = $1
      if ($2 == "[not") n++
      else if ($0 ~ /output mismatch|\[failed/) f++
      else if ($2 ~ /^[0-9]+s$/) p++
    } END { printf "%d %d %d %s\n", p, f, n, last }' "$out")
  read -r passed failed notrun last_test <<<"$counts"
  note "the suite produced no summary (exit $rc; output in $out): stopped during or after" \
       "${last_test:-its first test}; counted from its per-test lines"
  failed=$((failed + 1))  # the unfinished run itself
fi
if [ -s "$timed_out" ]; then
  note "stopped by --test-timeout ($test_timeout s): $(paste -sd' ' "$timed_out")"
fi
note "results in $tree/results; this run: $out; $((elapsed / 60))m$((elapsed % 60))s"
echo "$passed passed, $failed failed, $notrun skipped"
[ "$failed" -eq 0 ]
