#!/usr/bin/env bash
# Live metrics of a real cluster (docs/monitoring.md), through tools/dpmfs on loopback:
# FUSE work through a real mount, then
#   - `dpmfs stats --json`: the metadata server, every data server and the client are
#     present; the per-op counts moved by at least what was done (metadata server per
#     opcode, client per FUSE op and data-path bytes); histograms non-empty and ordered
#     (p50 <= p99 <= p999 <= max); the table names every server;
#   - /metrics of each daemon (--metrics-listen 127.0.0.1:0) fetched with curl parses as
#     the Prometheus text format (tests/e2e/prometheus_check.py);
#   - `dpmfs status` (and --json) shows the session of the mount, asked of the server;
#   - `dpmfs log-level`: a debug line appears after the change, not before; a bad level
#     is refused and changes nothing; a server that does not answer is reported.
# Needs root and /dev/fuse (else exit 77: skipped). ~30 s.
set -euo pipefail
source "$(dirname "$0")/../support/cluster_script_prologue.sh" metrics-test
checker=$root/tests/e2e/prometheus_check.py

step "up: 2 data servers, /metrics on loopback (any free port)"
"$dpmfs" up "$dir" --data-servers 2 --data-size 64M --meta-size 32M \
  --meta-arg --metrics-listen=127.0.0.1:0 --data-arg --metrics-listen=127.0.0.1:0 >/dev/null
mnt=$dir/mnt
"$dpmfs" stats "$dir" --json >"$work/before.json" || { cat "$work/before.json"; fail "stats before"; }

step "FUSE work: 10 mkdir, 20 files of 64 KiB written and read back (O_DIRECT), stat"
for i in $(seq 10); do mkdir "$mnt/d$i"; done
head -c 65536 /dev/urandom >"$work/blob"
for i in $(seq 20); do cp "$work/blob" "$mnt/d$((i % 10 + 1))/f$i"; done
for i in $(seq 20); do
  dd if="$mnt/d$((i % 10 + 1))/f$i" iflag=direct bs=64k status=none | cmp - "$work/blob"
done
ls -lR "$mnt" >/dev/null

step "stats --json: every server and the client, counts moved by what was done"
# The client pushes its stats with its heartbeat (every lease/3, ~3.3 s): wait for one
# that has seen the work.
ok=0
for _ in $(seq 40); do
  "$dpmfs" stats "$dir" --json >"$work/after.json" || { cat "$work/after.json"; fail "stats"; }
  if python3 - "$work/before.json" "$work/after.json" <<'PY'
import json, sys
after = json.load(open(sys.argv[2]))
clients = [r for s in after["servers"] for r in s["reports"] if r["role"] == "client"]
def m(r, name, op=""):
    return sum(x["value"] for x in r["metrics"] if x["name"] == name and x["op"] == op)
sys.exit(0 if clients and m(clients[0], "fuse_requests", "mkdir") >= 10
         and m(clients[0], "data_bytes", "read") >= 20 * 65536 else 1)
PY
  then ok=1; break; fi
  sleep 0.5
done
[ $ok = 1 ] || { cat "$work/after.json"; fail "no client report with the work in 20 s"; }
python3 - "$work/before.json" "$work/after.json" <<'PY' || fail "stats --json does not add up"
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
assert after["version"] == 1
servers = after["servers"]
roles = [s["role"] for s in servers]
assert roles == ["meta", "data", "data"], roles
for s in servers:
    assert s["ok"], s
def reports(doc, role):
    return [r for s in doc["servers"] for r in s["reports"] if r["role"] == role]
def m(r, name, op=""):
    return sum(x["value"] for x in r["metrics"] if x["name"] == name and x["op"] == op)
def moved(role, name, op, at_least):
    b = sum(m(r, name, op) for r in reports(before, role))
    a = sum(m(r, name, op) for r in reports(after, role))
    assert a - b >= at_least, f"{role} {name}{{op={op}}} moved {a - b}, want >= {at_least}"
moved("meta", "requests", "mkdir", 10)
moved("meta", "requests", "create", 20)
moved("meta", "requests", "lookup", 1)
moved("client", "fuse_requests", "mkdir", 10)
moved("client", "fuse_requests", "create", 20)
moved("client", "fuse_requests", "write", 20)
moved("client", "data_bytes", "write", 20 * 65536)
moved("client", "data_bytes", "read", 20 * 65536)
moved("client", "data_requests", "read", 20)
assert m(reports(after, "meta")[0], "sessions") >= 1
for r in reports(after, "data"):
    assert m(r, "connections_accepted") >= 1, r["instance"]
    assert m(r, "up") == 1
for role, name, op in [("meta", "op_latency", "mkdir"), ("meta", "op_latency", "create"),
                       ("client", "fuse_latency", "write"), ("client", "data_latency", "read")]:
    h = [h for r in reports(after, role) for h in r["histograms"] if h["name"] == name and h["op"] == op]
    assert h and h[0]["count"] > 0, (role, name, op)
    h = h[0]
    assert 0 < h["p50_us"] <= h["p99_us"] <= h["p999_us"] <= h["max_ns"] / 1e3 + 1e-9, h
print("stats --json: meta, 2 data servers and the client; counts and histograms as expected")
PY
expect_rc 0 "$dpmfs" stats "$dir"
expect_out "^meta 127\.0\.0\.1:"
expect_out "^data 127\.0\.0\.1:"
expect_out "^client .*$mnt"
expect_out "op_latency +mkdir"

step "/metrics of each daemon parses as the Prometheus text format"
for name in meta data0 data1; do
  url=$(grep -o 'serving /metrics on http://[0-9.:]*/metrics' "$dir/logs/$name.log" | tail -n 1 |
        sed 's/^serving \/metrics on //')
  [ -n "$url" ] || fail "$name logged no /metrics address"
  curl -sf --max-time 5 "$url" >"$work/$name.prom" || fail "curl $url"
  python3 "$checker" "$work/$name.prom" || { head -n 30 "$work/$name.prom"; fail "$name: bad text format"; }
done
grep -qE '^dpmfs_requests_total\{role="meta",instance="[^"]+",op="mkdir"\} [1-9]' "$work/meta.prom" ||
  fail "meta's /metrics lacks the mkdir count"
grep -q 'dpmfs_op_latency_seconds{.*quantile="0.999"' "$work/meta.prom" || fail "no p999 summary"
grep -q '^dpmfs_connections_accepted_total{role="data"' "$work/data0.prom" || fail "data0 lacks connections"

step "status asks the servers: the mount's session, journal, pools"
expect_rc 0 "$dpmfs" status "$dir"
expect_out "^  meta +127\.0\.0\.1:[0-9]+ +yes +sessions 1,"
expect_out "^  data:1 +127\.0\.0\.1:[0-9]+ +yes"
"$dpmfs" status "$dir" --json >"$work/status.json" || { cat "$work/status.json"; fail "status --json"; }
python3 - "$work/status.json" <<'PY' || { cat "$work/status.json"; fail "status --json"; }
import json, sys
s = json.load(open(sys.argv[1]))
local = {d["name"]: d for d in s["local"]}
assert local["meta"]["running"] and local["data1"]["running"], local
asked = s["asked"]["servers"]
assert asked[0]["role"] == "meta" and asked[0]["up"] and asked[0]["sessions"] == 1, asked[0]
assert 0 <= asked[0]["journal_used_pct"] <= 100 and 0 < asked[0]["pool_used_pct"] < 100, asked[0]
assert all(a["up"] for a in asked), asked
PY

step "log level at run time: debug lines after the change, not before"
conf=$dir/cluster.conf
"$dpmfs" stats "$dir" >/dev/null
grep -q "admin request stats" "$dir/logs/meta.log" && fail "a debug line before the change"
grep -q "admin request stats" "$dir/logs/data1.log" && fail "a debug line before the change (data1)"
expect_rc 0 "$dpmfs" log-level "$dir" all debug
expect_out "^meta 127.*: log level debug"
expect_out "^data:1 127.*: log level debug"
"$dpmfs" stats "$dir" >/dev/null
grep -q "log level changed from info to debug" "$dir/logs/meta.log" || fail "the change is not logged"
grep -q "admin request stats" "$dir/logs/meta.log" || fail "no debug line after the change (meta)"
grep -q "admin request stats" "$dir/logs/data1.log" || fail "no debug line after the change (data1)"
expect_rc 0 "$dpmfs" log-level "$dir" data:0 info
expect_out "^data:0 "
grep -c "admin request stats" "$dir/logs/data0.log" >"$work/n0"
"$dpmfs" stats "$dir" >/dev/null
[ "$(grep -c "admin request stats" "$dir/logs/data0.log")" = "$(cat "$work/n0")" ] ||
  fail "data0 logs debug lines after going back to info"

step "bad input: a bad level or target is refused, nothing changes; a dead server is reported"
expect_rc 2 "$dpmfs" log-level "$dir" meta loud
expect_out "unknown log level 'loud'"
expect_rc 2 "$dpmfs" log-level "$dir" everything debug
expect_out "TARGET must be"
grep -q "to loud" "$dir/logs/meta.log" && fail "a refused level reached the server"
kill -9 "$(cat "$dir/run/data1.pid")"
expect_rc 1 "$dpmfs" stats "$dir"
expect_out "^data:1 127\.0\.0\.1:[0-9]+: NOT ANSWERING"
expect_out "^meta 127"
echo "PASS"
