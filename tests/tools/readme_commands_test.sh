#!/usr/bin/env bash
# The README's two commands are what a fresh machine runs: the first installs, builds and
# starts the cluster (tools/run.sh), the second installs, builds and tests
# (tools/test.sh), and the second is exactly what CI runs (.ci/run). Checks the text of
# README.md and .ci/run, and that tools/run.sh and tools/test.sh go through
# tools/build.sh (which runs tools/install-deps.sh) so neither needs anything else.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

readme_cmds=$(awk '/^## The two commands/{on=1; next} /^## /{on=0} on && /^    bash /{sub(/^    /, ""); print}' "$root/README.md")
[ "$(echo "$readme_cmds" | wc -l)" -eq 2 ] ||
  fail "README.md's 'The two commands' section should show exactly two commands, shows: $readme_cmds"
run_cmd=$(echo "$readme_cmds" | sed -n 1p)
test_cmd=$(echo "$readme_cmds" | sed -n 2p)
[ "$run_cmd" = "bash tools/run.sh" ] || fail "the first README command is '$run_cmd'"
[ "$test_cmd" = "bash tools/test.sh" ] || fail "the second README command is '$test_cmd'"
grep -qxF "$test_cmd" "$root/.ci/run" || fail ".ci/run does not run '$test_cmd' (the README's test command)"
grep -q 'tools/build.sh' "$root/tools/run.sh" || fail "tools/run.sh does not build"
grep -q 'tools/dpmfs" up' "$root/tools/run.sh" || fail "tools/run.sh does not start the cluster"
grep -q 'tools/build.sh' "$root/tools/test.sh" || fail "tools/test.sh does not build"
grep -q 'install-deps.sh' "$root/tools/build.sh" || fail "tools/build.sh does not install the dependencies"
for p in fio bindfs fuse3 libfuse3-dev; do
  grep -qE "(^|[[:space:]])$p([[:space:]]|$)" "$root/tools/install-deps.sh" ||
    fail "tools/install-deps.sh does not install $p"
done
echo "PASS: README: '$run_cmd' and '$test_cmd'; .ci/run runs '$test_cmd'"
