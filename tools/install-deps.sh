#!/usr/bin/env bash
# Installs, from Debian's packages, whatever dpmfs needs to build, run and test that is
# not on this machine yet. Idempotent and quiet when nothing is missing, so both README
# commands (and .ci/run) call it unconditionally. `--fuzz` adds clang's libFuzzer.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build
  libibverbs-dev librdmacm-dev ibverbs-providers rdma-core   # verbs backend; rdma(8) for Soft-RoCE
  libpmem-dev                                                # PM pools
  libfuse3-dev fuse3                                         # FUSE client
  libspdlog-dev libfmt-dev                                   # logging; fmt::format in tools/bench
  libgtest-dev libgmock-dev                                  # tests
  libbenchmark-dev                                           # dpmfs-microbench (tools/bench)
  libboost-dev                                               # Boost.Intrusive, small_vector: rpc/reply_cache.h
  libcli11-dev                                               # command lines
  libsodium-dev                                              # cluster key, handshake MACs (docs/security.md)
  libsystemd-dev                                             # sd_notify (Type=notify units)
  help2man                                                   # man pages from --help
  nlohmann-json3-dev                                         # dpmfs-admin: stats/status --json
  libcpp-httplib-dev                                         # the daemons' optional /metrics endpoint
  procps psmisc                                              # free (tests/vm), fuser (launcher, tests)
  nftables                                                   # e2e_multihost: 1% loss without sch_netem
  fio bindfs                                                 # e2e tests and benchmarks (fio, and a
                                                             # FUSE passthrough for dpmfs-bench fs)
)

# tools/fuzz.sh only: libFuzzer, ASan and UBSan come with clang's compiler-rt.
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-14-dev)
fi

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
