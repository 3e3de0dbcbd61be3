#!/usr/bin/env python3
"""Checks that a file is valid Prometheus text exposition format (0.0.4), the parts
dpmfs uses: '# TYPE name counter|gauge|summary' once per family, before its samples;
samples 'name{label="value",...} number' whose name is the family's (or, for a
summary, name_sum / name_count); label values with only \\\\, \\" and \\n escapes; every
family's samples together. Exit 0 and a summary line when valid, 1 with the line
otherwise. (promtool is not packaged for Debian 12's main archive.)"""
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL}(?:,{LABEL})*)?\}})? (\S+)$")


def fail(n, line, why):
    print(f"line {n}: {why}: {line!r}")
    sys.exit(1)


def main(path):
    types, done, current = {}, set(), None
    samples = 0
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.endswith("\n"):
        fail(0, text[-40:], "does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or not re.fullmatch(NAME, parts[2]):
                fail(n, line, "malformed TYPE line")
            if parts[3] not in ("counter", "gauge", "summary", "histogram", "untyped"):
                fail(n, line, "unknown type")
            if parts[2] in types:
                fail(n, line, "second TYPE line for a family")
            if current is not None:
                done.add(current)
            types[parts[2]] = parts[3]
            current = parts[2]
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        if not m:
            fail(n, line, "not a sample")
        name, value = m.group(1), m.group(3)
        try:
            float(value)
        except ValueError:
            fail(n, line, "value is not a number")
        family = name
        if current and types.get(current) == "summary" and name in (current + "_sum", current + "_count"):
            family = current
        if family != current:
            fail(n, line, f"sample outside its family's block (current {current})")
        if types[family] == "summary" and name == family and 'quantile="' not in (m.group(2) or ""):
            fail(n, line, "summary sample without a quantile label")
        samples += 1
    if samples == 0:
        fail(0, "", "no samples")
    print(f"{path}: {len(types)} families, {samples} samples: valid")


if __name__ == "__main__":
    main(sys.argv[1])
