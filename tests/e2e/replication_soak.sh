#!/usr/bin/env bash
# The long run of replication_failover_test.sh, by hand (not in ctest): ROUNDS rounds
# (default 10) of fio with verification while a data server is kill -9'd, a verify-only
# pass, its resync, and the kill of another server. Run as root from the build tree:
#   DPMFS_BUILD_DIR=$PWD/build bash tests/e2e/replication_soak.sh [ROUNDS]
set -euo pipefail
ROUNDS=${1:-10} exec bash "$(dirname "$0")/replication_failover_test.sh"
