#!/usr/bin/env bash
# The long flood, run by hand (issue 17, "Resource limits"): the same as CI's e2e_flood
# (tests/e2e/flood.sh, tests/e2e/flood.py) with more connections for longer.
#   tools/flood.sh [--conns N] [--seconds S] [--sources K] [--rss-bound-mib M] ...
# Defaults here: 2000 connections (1000 per server, over 32 source addresses), 120 s.
# Needs root, FUSE and python3; the open-file limit is raised by flood.py itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec bash "$root/tests/e2e/flood.sh" --conns 2000 --sources 32 --seconds 120 "$@"
