#!/usr/bin/env bash
# The README's main command: installs what is missing (Debian packages), builds dpmfs,
# and starts a whole cluster on this machine with `tools/dpmfs up`: one metadata
# server and two data servers on loopback (soft transport), pools on tmpfs, mounted at
# DIR/mnt. Then it says what to do next.
#
#   bash tools/run.sh [DIR] [dpmfs up options]      (DIR default: $DPMFS_DIR, else ~/dpmfs)
#
# Environment: DPMFS_BUILD_DIR (default ./build). Run it again at any time: it builds
# what changed and starts only what is not running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export DPMFS_BUILD_DIR=${DPMFS_BUILD_DIR:-$root/build}

bash "$root/tools/build.sh"

dir=""
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then dir=$1; shift; fi
dir=${dir:-${DPMFS_DIR:-${HOME:-/tmp}/dpmfs}}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)

"$root/tools/dpmfs" up "$dir" "$@"

dpmfs=$root/tools/dpmfs
cat <<MSG

dpmfs is mounted at $dir/mnt. Try:

  cd $dir/mnt
  echo hello > greeting && cat greeting && ls -l
  fio --name=seq --directory=$dir/mnt --rw=write --bs=1M --size=256M --direct=1
  fio --name=rand --directory=$dir/mnt --rw=randwrite --bs=4k --size=64M --direct=1 \\
      --fdatasync=1 --runtime=10 --time_based
  fio --name=check --directory=$dir/mnt --rw=randwrite --bs=4k --size=32M --verify=crc32c

  $dpmfs status $dir     # daemons, pools, mount
  $dpmfs down $dir       # unmount, stop; the data stays until reboot, 'up' brings it back
  $dpmfs destroy $dir    # stop and delete the pools
  $dpmfs --help          # the rest: a second client, mount -t fuse.dpmfs, fstab

Logs: $dir/logs/. Benchmarks: $DPMFS_BUILD_DIR/tools/bench/dpmfs-bench --help.
MSG
