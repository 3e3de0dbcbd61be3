#!/usr/bin/env python3
"""The write probe of multihost_test.sh: small O_DIRECT writes, timed one by one.

    multihost_probe.py write FILE LOG STOPFILE MAX_SECONDS
    multihost_probe.py check FILE LOG
    multihost_probe.py report LOG CUT HEAL BOUND

`write` prepares FILE (3 stripe units, so with 3 data servers every server holds a part),
then writes rounds of three 4 KiB O_DIRECT writes, one into each stripe unit, every 50 ms
until STOPFILE exists or MAX_SECONDS pass. Errors do not stop it: each write is one LOG
line "round stripe offset start end errno" (wall-clock seconds, errno 0 for success), so
the rig can see which errors the application got, how long a write took to fail, and when
writes worked again after a partition healed.

`check` reads FILE back (O_DIRECT: from the data servers, not the page cache) and compares
every offset whose last write was acknowledged with what that write wrote: an
acknowledged write that is not there is lost. An offset whose last write failed is left
out: a failed write may or may not have landed. Prints "checked N offsets, M lost".

`report` reads LOG against the times (wall-clock seconds) the link was cut and healed:
prints the writes made, the errors seen by errno, the longest write, and the time from the
heal to the end of the first round of three acknowledged writes begun after it (I/O
resumed). Fails (exit 1) if an error was not EIO, a write took longer than BOUND seconds
(a hang, not an error in bounded time), or no round after the heal succeeded.
"""
import errno
import mmap
import os
import sys
import time

BLOCK = 4096
STRIPE = 1 << 20
STRIPES = 3
SLOTS = 64  # offsets per stripe unit that the rounds cycle through


def pattern(round_no, stripe):
    head = ("round %d stripe %d " % (round_no, stripe)).encode()
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


def offset_of(round_no, stripe):
    return stripe * STRIPE + (round_no % SLOTS) * BLOCK


def aligned(data):
    buf = mmap.mmap(-1, BLOCK)  # page aligned, as O_DIRECT wants
    buf.write(data)
    return buf


def write(path, log_path, stop_path, max_seconds):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    # Every slot written once before the faults, so later rounds overwrite allocated blocks.
    for stripe in range(STRIPES):
        for slot in range(SLOTS):
            os.pwrite(fd, aligned(pattern(-1, stripe)), stripe * STRIPE + slot * BLOCK)
    os.fsync(fd)
    deadline = time.time() + max_seconds
    round_no = 0
    with open(log_path, "w", buffering=1) as log:
        while time.time() < deadline and not os.path.exists(stop_path):
            for stripe in range(STRIPES):
                off = offset_of(round_no, stripe)
                buf = aligned(pattern(round_no, stripe))
                start = time.time()
                err = 0
                try:
                    if os.pwrite(fd, buf, off) != BLOCK:
                        err = errno.EIO
                except OSError as e:
                    err = e.errno
                log.write("%d %d %d %.6f %.6f %d\n" % (round_no, stripe, off, start, time.time(), err))
            round_no += 1
            time.sleep(0.05)
    os.close(fd)


def check(path, log_path):
    last = {}  # offset -> (round, stripe, errno) of the last write to it
    with open(log_path) as log:
        for line in log:
            r, s, off, _, _, err = line.split()
            last[int(off)] = (int(r), int(s), int(err))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, BLOCK)
    checked = lost = 0
    for off, (r, s, err) in sorted(last.items()):
        if err != 0:
            continue
        checked += 1
        n = os.preadv(fd, [buf], off)
        if n != BLOCK or buf[:] != pattern(r, s):
            lost += 1
            print("lost: offset %d (round %d stripe %d) reads back %r" % (off, r, s, buf[:40]))
    os.close(fd)
    print("checked %d offsets, %d lost" % (checked, lost))
    return 1 if lost else 0


def report(log_path, cut, heal, bound):
    rows = []
    with open(log_path) as log:
        for line in log:
            r, s, off, start, end, err = line.split()
            rows.append((int(r), int(s), float(start), float(end), int(err)))
    failures = []
    errors = {}
    for _, _, start, end, err in rows:
        if err:
            errors[err] = errors.get(err, 0) + 1
    longest = max((end - start for _, _, start, end, _ in rows), default=0.0)
    longest_failed = max((end - start for _, _, start, end, err in rows if err), default=0.0)
    during = [row for row in rows if row[3] >= cut and row[2] <= heal]
    rounds = {}
    for r, _, start, end, err in rows:
        first, last, bad = rounds.get(r, (start, end, 0))
        rounds[r] = (min(first, start), max(last, end), bad + (1 if err else 0))
    resumed = None
    for r in sorted(rounds):
        first, last, bad = rounds[r]
        if first >= heal and not bad and len([x for x in rows if x[0] == r]) == STRIPES:
            resumed = last - heal
            break
    print("probe: %d writes (%d rounds of %d), %d overlapping the partition; errors: %s; "
          "longest write %.2f s, longest failing write %.2f s; I/O resumed %s after the heal"
          % (len(rows), len(rounds), STRIPES, len(during),
             ", ".join("%s x%d" % (errno.errorcode.get(e, str(e)), n)
                       for e, n in sorted(errors.items())) or "none",
             longest, longest_failed,
             "%.2f s" % resumed if resumed is not None else "NEVER"))
    for e in errors:
        if e != errno.EIO:
            failures.append("an application write failed with %s, not EIO"
                            % errno.errorcode.get(e, str(e)))
    if longest > bound:
        failures.append("a write took %.2f s, more than the %.0f s bound" % (longest, bound))
    if resumed is None:
        failures.append("no round of writes begun after the heal succeeded")
    for f in failures:
        print("probe: FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "report":
        sys.exit(report(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])))
    else:
        sys.exit(__doc__)
