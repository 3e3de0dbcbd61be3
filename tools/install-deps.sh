#!/usr/bin/env bash
# Installs, from Debian's packages, whatever dpmfs needs to build, run and test that is
# not on this machine yet. Idempotent and quiet when nothing is missing, so both README
# commands (and .ci/run) call it unconditionally.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build
  libibverbs-dev librdmacm-dev ibverbs-providers rdma-core   # verbs backend
  libpmem-dev                                                # PM pools
  libfuse3-dev fuse3                                         # FUSE client
  libspdlog-dev libfmt-dev                                   # logging
  libgtest-dev libgmock-dev libbenchmark-dev                 # tests, micro-benchmarks
  libboost-dev libcli11-dev                                  # intrusive lists, command lines
  uuid-dev                                                   # cluster UUIDs
  procps psmisc                                              # pkill/fuser for the launcher and tests
  fio bindfs attr                                            # e2e tests and benchmarks (fio, a FUSE
                                                             # passthrough to compare, getfattr/setfattr)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
