# The common start of the shell tests that run a whole cluster through tools/dpmfs as root
# (tests/tools/launcher_test.sh, tests/e2e/replication_test.sh, tests/mkfs/check_test.sh).
# Sourced right after `set -euo pipefail`:
#
#   source "$(dirname "$0")/../support/cluster_script_prologue.sh" NAME
#
# Exits 77 (ctest: skipped) without root or /dev/fuse. Sets root (the source tree),
# dpmfs (the launcher), work (a scratch directory /tmp/dpmfs-NAME.XXXXXX) and
# dir=$work/cluster; points DPMFS_LOCAL_KEYS (where `up` records the key for the mount
# helper) into $work instead of the machine's /run/dpmfs/keys; defines step, fail,
# expect_rc and expect_out. At exit: on failure prints the cluster's status
# and the end of its logs, runs the caller's `before_destroy` if it defines one (an extra
# unmount, say), destroys the cluster, removes $work and keeps the exit status.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dpmfs=$root/tools/dpmfs
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIPPED: /dev/fuse is missing"; exit 77; }

work=$(mktemp -d "/tmp/dpmfs-${1:?usage: source cluster_script_prologue.sh NAME}.XXXXXX")
dir=$work/cluster
export DPMFS_LOCAL_KEYS=$work/keys
cleanup() {
  local rc=$?
  set +e
  [ $rc -eq 0 ] || { "$dpmfs" status "$dir"; tail -n 20 "$dir"/logs/*.log; }
  if declare -F before_destroy >/dev/null; then before_destroy; fi
  "$dpmfs" destroy "$dir" >/dev/null 2>&1
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
step() { echo "--- $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_rc RC CMD...: runs CMD, which must exit with RC; its output goes to $work/out.
expect_rc() {
  local want=$1 rc=0; shift
  "$@" >"$work/out" 2>&1 || rc=$?
  [ "$rc" -eq "$want" ] || { cat "$work/out"; fail "'$*' exited $rc, want $want"; }
}
# expect_out REGEX: the last expect_rc's output matches REGEX.
expect_out() { grep -qE -- "$1" "$work/out" || { cat "$work/out"; fail "output lacks /$1/"; }; }
