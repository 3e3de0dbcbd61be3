#!/usr/bin/env python3
"""Compares two xfstests runs test by test (tests/xfstests/README.md, "Results").

    tests/xfstests/compare_runs.py A.out B.out [--names A B]

Each file is check's output of one run (run.sh prints where it is: 'this run: PATH').
A test is 'pass', 'fail' or 'not run' by check's own summary lines (Ran:, Not run:,
Failures:); a test only one run ran is 'absent' in the other. Prints each side's counts,
then every test whose outcome differs, grouped by the pair of outcomes, with the reason
check gave for a 'not run' (its per-test line).
"""
import argparse
import re
import sys


def parse(path):
    ran, not_run, failed, reasons = [], set(), set(), {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("Ran: "):
                ran += line[5:].split()
            elif line.startswith("Not run: "):
                not_run |= set(line[9:].split())
            elif line.startswith("Failures: "):
                failed |= set(line[10:].split())
            else:
                m = re.match(r"^(\S+/\d+)\s+\[not run\]\s*(.*)$", line)
                if m:
                    reasons[m.group(1)] = m.group(2)
    if not ran:
        sys.exit(f"compare_runs: {path} has no 'Ran:' line: not a finished check run")
    outcome = {}
    for t in ran:
        outcome[t] = "fail" if t in failed else "not run" if t in not_run else "pass"
    return outcome, reasons


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--names", nargs=2, default=["A", "B"])
    args = p.parse_args()
    (a, ra), (b, rb) = parse(args.a), parse(args.b)
    na, nb = args.names
    for name, o in ((na, a), (nb, b)):
        counts = {k: sum(1 for v in o.values() if v == k) for k in ("pass", "fail", "not run")}
        print(f"{name}: {len(o)} tests: {counts['pass']} pass, {counts['fail']} fail, "
              f"{counts['not run']} not run")
    groups = {}
    for t in sorted(set(a) | set(b)):
        pair = (a.get(t, "absent"), b.get(t, "absent"))
        if pair[0] != pair[1]:
            groups.setdefault(pair, []).append(t)
    for (oa, ob), tests in sorted(groups.items()):
        print(f"\n{na} {oa}, {nb} {ob}: {len(tests)}")
        for t in tests:
            why = ra.get(t) if oa == "not run" else rb.get(t) if ob == "not run" else ""
            print(f"  {t}" + (f"  ({why})" if why else ""))


if __name__ == "__main__":
    main()
