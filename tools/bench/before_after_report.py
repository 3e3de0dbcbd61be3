#!/usr/bin/env python3
"""Table of a tools/bench/before_after.sh run: per row, each side's median and range
over the rounds, the after/before ratio of medians, and a verdict by the rule of
tools/bench/README.md: a row is worse (or better) only when the whole after-range lies
on the wrong (right) side of the whole before-range; otherwise the difference is within
run-to-run noise. Fewer than 3 runs a side get no verdict.

    tools/bench/before_after_report.py RESULTS_DIR
"""
import glob
import json
import os
import re
import statistics
import sys


def load(results, bench, side):
    """The JSON reports of one bench and side, in round order; unreadable ones skipped."""
    runs = []
    paths = glob.glob(os.path.join(results, f"{bench}-{side}-*.json"))
    for path in sorted(paths, key=lambda p: [int(x) if x.isdigit() else x
                                            for x in re.split(r"(\d+)", p)]):
        try:
            with open(path) as f:
                runs.append(json.load(f))
        except (OSError, ValueError) as e:
            print(f"skipped {path}: {e}", file=sys.stderr)
    return runs


def persist_rows(before, after):
    def cell(report, method, qd, key):
        for c in report.get("cells", []):
            if c["method"] == method and c["qd"] == qd and c["size"] == 4096:
                return c[key]
        return None

    def baseline(report, method, key):
        for c in report.get("baselines", []):
            if c["method"] == method and c["size"] == 4096:
                return c[key]
        return None

    def ratio(report, name):
        r = report.get("ratios", {}).get(name)
        return r["value"] if r else None

    for name in ("read_vs_read2_p50_4k_qd1", "read_vs_tcp_pingpong_p50_4k_qd1",
                 "read_vs_tcp_stream_ops_4k_qd16"):
        yield (f"persist ratio {name}", [ratio(j, name) for j in before],
               [ratio(j, name) for j in after], name.endswith("qd16"))
    for m in ("none", "read2", "read", "imm", "rpc"):
        yield (f"persist {m} 4K qd1 p50 us", [cell(j, m, 1, "p50_us") for j in before],
               [cell(j, m, 1, "p50_us") for j in after], False)
        yield (f"persist {m} 4K qd16 ops/s", [cell(j, m, 16, "ops_per_sec") for j in before],
               [cell(j, m, 16, "ops_per_sec") for j in after], True)
    yield ("persist tcp-pingpong p50 us", [baseline(j, "tcp-pingpong", "p50_us") for j in before],
           [baseline(j, "tcp-pingpong", "p50_us") for j in after], False)
    yield ("persist tcp-stream ops/s", [baseline(j, "tcp-stream", "ops_per_sec") for j in before],
           [baseline(j, "tcp-stream", "ops_per_sec") for j in after], True)


def meta_rows(before, after):
    def cell(report, op, clients, key):
        for c in report.get("cells", []):
            if c["op"] == op and c["clients"] == clients and c["threads"] == 16:
                return c.get(key)
        return None

    for op in ("create", "stat", "unlink", "mkdir", "rename"):
        for clients in ("shared", "per-thread"):
            yield (f"meta {op} 16thr {clients} ops/s",
                   [cell(j, op, clients, "ops_per_sec") for j in before],
                   [cell(j, op, clients, "ops_per_sec") for j in after], True)
            yield (f"meta {op} 16thr {clients} server us/op",
                   [cell(j, op, clients, "server_cpu_us_per_op") for j in before],
                   [cell(j, op, clients, "server_cpu_us_per_op") for j in after], False)


def fs_rows(before, after):
    def row(report, profile):
        for r in report.get("rows", []):
            if r["profile"] == profile:
                return r.get("dpmfs")
        return None

    profiles = [r["profile"] for r in (before or after)[0].get("rows", [])] if before or after else []
    for p in profiles:
        yield (f"fs {p}", [row(j, p) for j in before], [row(j, p) for j in after], True)


def fmt(v):
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def verdict(b, a, higher_is_better):
    if min(len(a), len(b)) < 3:
        return "too few runs"  # one or two runs say nothing about the spread
    if min(a) > max(b):
        return "better" if higher_is_better else "WORSE"
    if max(a) < min(b):
        return "WORSE" if higher_is_better else "better"
    return "noise"


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    results = sys.argv[1]
    print(f"{'row':44} {'before: median [min-max]':>30} {'after: median [min-max]':>30} "
          f"{'a/b':>5}  verdict")
    for bench, rows in (("persist", persist_rows), ("meta", meta_rows), ("fs", fs_rows)):
        before, after = load(results, bench, "before"), load(results, bench, "after")
        if not before or not after:
            continue
        for name, vb, va, higher in rows(before, after):
            vb = [v for v in vb if v is not None]
            va = [v for v in va if v is not None]
            if not vb or not va:
                print(f"{name:44} n/a")
                continue
            mb, ma = statistics.median(vb), statistics.median(va)
            ratio = f"{ma / mb:5.2f}" if mb else "  n/a"
            left = f"{fmt(mb)} [{fmt(min(vb))}-{fmt(max(vb))}]"
            right = f"{fmt(ma)} [{fmt(min(va))}-{fmt(max(va))}]"
            print(f"{name:44} {left:>30} {right:>30} {ratio}  {verdict(vb, va, higher)}"
                  f"  (n={len(vb)}/{len(va)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
