#!/usr/bin/env python3
"""Flood a live dpmfs cluster while a mounted client keeps working (issue 17, "Resource
limits"; tests/e2e/README.md). Run by tests/e2e/flood.sh (CI) and tools/flood.sh (long).

Every handshake proves the cluster key (--key-file; docs/security.md: HELLO, CHALLENGE,
AUTH carrying the connect request), so the flood reaches what lies behind
authentication. Against the metadata server and one data server at once, for --seconds:
  - --conns concurrent connections that complete a valid handshake and then sit idle,
    spread over source addresses 127.0.0.2.. (--sources), half on each server;
  - half-open connections: half a CONNECT, and half a frame after a handshake;
  - oversized requests: a data CONNECT asking for 1024 x 16 MiB of buffers, a WRITE
    header announcing the whole pool followed by 64 KiB and a stall, an rpc CONNECT
    asking for the largest messages and depth;
  - a connect/disconnect flood.
Meanwhile a workload on the mount (create, write 64 KiB, fsync, read back, unlink) runs
throughout and its latency is compared with the same before the flood. Checks: both
daemons stay alive, their VmRSS never exceeds baseline + --rss-bound-mib, it comes back
to within --rss-return-mib of the baseline after the flood, and the workload keeps
making progress (no operation slower than --max-op-seconds); and that the flood took
place: connections were held on both servers, the oversized CONNECT was refused for its
size (not for its proof), WRITEs were left stalled. Prints the figures.
Exit status 0 pass, 1 fail.
"""
import argparse
import errno
import hashlib
import hmac
import os
import resource
import socket
import statistics
import struct
import sys
import threading
import time

HDR = struct.Struct("<IBBHIIQQII")  # the soft frame header, 40 bytes
MAGIC = 0x534D5044
T_WRITE, T_SEND, T_CONNECT, T_ACCEPT, T_REJECT = 1, 4, 32, 33, 34
T_CHALLENGE, T_AUTH = 35, 36
# transport/connection_auth.h
HELLO_MAGIC, CHALLENGE_MAGIC, AUTH_MAGIC, AUTH_VERSION = 0x4F4C4548, 0x4C4C4843, 0x48545541, 1


def frame(ftype, payload=b"", length=None, seq=0, addr=0, rkey=0, flags=0, payload_len=None):
    plen = len(payload) if payload_len is None else payload_len
    ln = plen if length is None else length
    return HDR.pack(MAGIC, ftype, flags, 0, plen, 0, seq, addr, rkey, ln) + payload


def data_connect(method=2, qd=16, io=1 << 20):
    return struct.pack("<IHBBII", 0x44504D44, 1, method, 0, qd, io)


def rpc_connect(session, max_message=64 << 10, depth=32):
    return struct.pack("<IBBHQII", 0x4E435244, 1, 0, 0, session, max_message, depth)


def parse_ep(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def recv_exact(s, n, timeout=5.0):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def connect(ep, source=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(ep)
    return s


def proof_subkey(cluster_key):
    """crypto_kdf_derive_from_key(32, 1, "dpmfsAU1", key): BLAKE2b keyed with the cluster
    key, the subkey id in the salt, the context in the personalisation."""
    return hashlib.blake2b(b"", digest_size=32, key=cluster_key,
                           salt=struct.pack("<Q", 1) + bytes(8), person=b"dpmfsAU1" + bytes(8)).digest()


def token_subkey(cluster_key):
    """crypto_kdf_derive_from_key(32, 1, "dpmfsTK1", key): the session tokens' MAC key."""
    return hashlib.blake2b(b"", digest_size=32, key=cluster_key,
                           salt=struct.pack("<Q", 1) + bytes(8), person=b"dpmfsTK1" + bytes(8)).digest()


def session_token(session=0xF100D, client=b"flood.py", lifetime_ms=600000):
    """A session token (datapath/session_token.h) as a key holder issues it: data servers
    register memory only for a connection that presents one."""
    now = int(time.time() * 1000)
    body = (struct.pack("<IHHQqqQ", 0x4B4F5444, 1, 0, session, now, now + lifetime_ms, 0) +
            struct.pack("<I", len(client)) + client)
    return body + hashlib.blake2b(body, digest_size=16, key=TOKEN_SUBKEY).digest()


def proof(subkey, role, ni, nt, initiator, target, app=b"", credential=b""):
    """crypto_auth (HMAC-SHA-512-256) over the transcript of connection_auth.cc's MakeProof."""
    def lp(b):
        return struct.pack("<I", len(b)) + b
    t = (lp(role) + struct.pack("<H", AUTH_VERSION) + ni + nt + lp(b"soft") +
         lp(initiator.encode()) + lp(target.encode()) + lp(app) + lp(credential))
    return hmac.new(subkey, t, hashlib.sha512).digest()[:32]


def recv_frame(s):
    h = HDR.unpack(recv_exact(s, HDR.size))
    return h, (recv_exact(s, h[4]) if h[4] else b"")


SUBKEY = None  # set in main from --key-file
TOKEN_SUBKEY = None


def handshake(ep, private, source=None):
    """The initiator's side of the authenticated handshake with `private` as the connect
    request. Returns (socket, reply type, reply payload)."""
    s = connect(ep, source)
    ni = os.urandom(32)
    s.sendall(frame(T_CONNECT, struct.pack("<IHH", HELLO_MAGIC, AUTH_VERSION, 0) + ni))
    h, payload = recv_frame(s)
    if h[1] != T_CHALLENGE:
        return s, h[1], payload
    nt, proof_t = payload[8:40], payload[40:72]
    me, peer = "%s:%d" % s.getsockname()[:2], "%s:%d" % s.getpeername()[:2]
    if not hmac.compare_digest(proof_t, proof(SUBKEY, b"dpmfs target", ni, nt, me, peer)):
        raise ConnectionError(f"{peer} did not prove the cluster key")
    # A data server's connect request ("DPMD") goes with a session token, as a real
    # client's does (transport/README.md, "Authentication": AUTH's credential).
    cred = session_token() if private[:4] == struct.pack("<I", 0x44504D44) else b""
    proof_i = proof(SUBKEY, b"dpmfs initiator", ni, nt, me, peer, private, cred)
    s.sendall(frame(T_AUTH, struct.pack("<IHH", AUTH_MAGIC, AUTH_VERSION, 0) + proof_i +
                    struct.pack("<I", len(private)) + private + struct.pack("<I", len(cred)) + cred))
    h, payload = recv_frame(s)
    return s, h[1], payload


class Workload(threading.Thread):
    """The legitimate client: one file's create/write/fsync/read/unlink, over and over."""

    def __init__(self, mnt):
        super().__init__(daemon=True)
        self.dir = os.path.join(mnt, "flood-workload")
        os.makedirs(self.dir, exist_ok=True)
        self.samples = []  # (start time, seconds)
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        data = os.urandom(64 << 10)
        i = 0
        while not self.stop.is_set():
            path = os.path.join(self.dir, f"f{i % 16}")
            t0 = time.monotonic()
            try:
                fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644)
                os.write(fd, data)
                os.fsync(fd)
                os.lseek(fd, 0, os.SEEK_SET)
                back = os.read(fd, len(data))
                os.close(fd)
                os.unlink(path)
                if back != data:
                    self.errors.append(f"{path}: read back differs")
            except OSError as e:
                self.errors.append(f"{path}: {e}")
            self.samples.append((t0, time.monotonic() - t0))
            i += 1

    def window(self, t0, t1):
        return [d for (t, d) in self.samples if t0 <= t < t1]


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--meta-pid", type=int, required=True)
    ap.add_argument("--data-pid", type=int, required=True)
    ap.add_argument("--mnt", required=True)
    ap.add_argument("--key-file", required=True, help="the cluster key (64 hex digits)")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--sources", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rss-bound-mib", type=int, default=400)
    ap.add_argument("--rss-return-mib", type=int, default=64)
    ap.add_argument("--max-op-seconds", type=float, default=5)
    a = ap.parse_args()
    global SUBKEY, TOKEN_SUBKEY
    with open(a.key_file) as f:
        key = bytes.fromhex(f.read().strip())
    SUBKEY, TOKEN_SUBKEY = proof_subkey(key), token_subkey(key)
    meta, data = parse_ep(a.meta), parse_ep(a.data)
    pids = {"meta": a.meta_pid, "data": a.data_pid}

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    failures = []
    work = Workload(a.mnt)
    work.start()
    base_t0 = time.monotonic()
    time.sleep(2.0)
    base = {k: rss_kib(p) for k, p in pids.items()}
    base_t1 = time.monotonic()

    peak = dict(base)
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            for k, p in pids.items():
                r = rss_kib(p)
                if r is not None:
                    peak[k] = max(peak[k], r)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    flood_t0 = time.monotonic()
    held, refused, sockets = {"meta": 0, "data": 0}, {"meta": 0, "data": 0}, []
    sources = [f"127.0.0.{2 + i}" for i in range(a.sources)]

    # 1. Concurrent connections with a valid handshake, held idle.
    for i in range(a.conns):
        name, ep = ("meta", meta) if i % 2 == 0 else ("data", data)
        priv = rpc_connect(0x1000 + i) if name == "meta" else data_connect()
        try:
            s, t, _ = handshake(ep, priv, sources[i % len(sources)])
            if t == T_ACCEPT:
                held[name] += 1
                sockets.append(s)
            else:
                refused[name] += 1
                s.close()
        except OSError:
            refused[name] += 1

    # 2. Half-open: half a CONNECT; half a frame after a handshake.
    half = []
    for i in range(100):
        ep = meta if i % 2 == 0 else data
        try:
            s = connect(ep, "127.0.0.200")
            s.sendall(frame(T_CONNECT, data_connect())[:20])
            half.append(s)
            s2, t, _ = handshake(ep, rpc_connect(0x9000 + i) if ep == meta else data_connect(),
                                 "127.0.0.201")
            if t == T_ACCEPT:
                s2.sendall(frame(T_SEND, b"x" * 1000)[:HDR.size + 100])
                half.append(s2)
        except OSError:
            pass

    # 3. Oversized: a 1024 x 16 MiB rpc CONNECT, a WRITE header announcing the pool.
    try:
        s, t, why = handshake(data, data_connect(method=4, qd=1024, io=16 << 20), "127.0.0.202")
        why = why.decode(errors="replace")
        if t != T_REJECT:
            failures.append("a 1024 x 16 MiB rpc CONNECT was not refused")
        elif "authentic" in why:
            failures.append(f"the oversized CONNECT was refused before its size was seen: {why}")
        else:
            print(f"oversized CONNECT refused: {why}")
        s.close()
    except OSError as e:
        failures.append(f"oversized CONNECT: {e}")
    big_writes = []
    for i in range(4):
        try:
            s, t, info = handshake(data, data_connect(), "127.0.0.203")
            if t == T_ACCEPT and len(info) >= 28:
                addr, length, rkey = struct.unpack_from("<QQI", info, 8)
                ln = min(length, (1 << 30) - 1)
                s.sendall(frame(T_WRITE, os.urandom(64 << 10), length=ln, payload_len=ln,
                                seq=1, addr=addr, rkey=rkey))
                big_writes.append(s)
        except OSError:
            pass
    try:
        s, t, _ = handshake(meta, rpc_connect(0xBEEF, max_message=1 << 20, depth=256), "127.0.0.204")
        s.close()
    except OSError:
        pass

    # 4. Connect/disconnect flood until the end of the window, from two threads.
    flood_count = [0, 0]
    # At least 2 s of it even when the phases above used up the window (a loaded machine).
    end = max(flood_t0 + a.seconds, time.monotonic() + 2.0)

    def churn(idx, ep, priv):
        while time.monotonic() < end:
            try:
                s, _, _ = handshake(ep, priv, "127.0.0.205")
                s.close()
                flood_count[idx] += 1
            except OSError:
                time.sleep(0.001)

    churners = [threading.Thread(target=churn, args=(0, meta, rpc_connect(0x7777))),
                threading.Thread(target=churn, args=(1, data, data_connect()))]
    for t in churners:
        t.start()
    for t in churners:
        t.join()
    flood_t1 = time.monotonic()
    during_rss = dict(peak)

    for k, p in pids.items():
        if not alive(p):
            failures.append(f"dpmfs-{k} (pid {p}) died during the flood")

    # Release everything and wait for memory to come back.
    for s in sockets + half + big_writes:
        try:
            s.close()
        except OSError:
            pass
    deadline = time.monotonic() + 20
    after = {}
    while time.monotonic() < deadline:
        after = {k: rss_kib(p) for k, p in pids.items()}
        if all(after[k] is not None and after[k] - base[k] <= a.rss_return_mib * 1024 for k in pids):
            break
        time.sleep(0.5)
    stop_sampling.set()
    time.sleep(1.0)
    work.stop.set()
    work.join(timeout=30)

    before_lat = work.window(base_t0, base_t1)
    during_lat = work.window(flood_t0, flood_t1)
    for k in pids:
        grow = (peak[k] - base[k]) / 1024
        if grow > a.rss_bound_mib:
            failures.append(f"dpmfs-{k} grew by {grow:.0f} MiB during the flood (bound {a.rss_bound_mib})")
        if after.get(k) is None or after[k] - base[k] > a.rss_return_mib * 1024:
            failures.append(f"dpmfs-{k} did not give memory back: {base[k] // 1024} -> "
                            f"{(after.get(k) or 0) // 1024} MiB")
    if not during_lat:
        failures.append("the mounted client made no progress during the flood")
    elif max(during_lat) > a.max_op_seconds:
        failures.append(f"a client operation took {max(during_lat):.1f} s during the flood")
    if work.errors:
        failures.append(f"client errors: {work.errors[:3]}")
    # The flood itself: without these the checks above would pass on a flood that never
    # got past the handshake (as when authentication was added and this file spoke none).
    for k in pids:
        if held[k] == 0:
            failures.append(f"no flood connection was held by dpmfs-{k} (refused {refused[k]})")
    if not big_writes:
        failures.append("no WRITE announcing the pool was left stalled on the data server")
    if min(flood_count) == 0:
        failures.append(f"the connect/disconnect flood completed no handshake: {flood_count}")

    print(f"flood: {a.seconds:.0f} s, {a.conns} concurrent handshaken connections asked for "
          f"from {a.sources} addresses: held meta {held['meta']} data {held['data']}, "
          f"refused meta {refused['meta']} data {refused['data']}; {len(half)} half-open; "
          f"{len(big_writes)} stalled WRITEs announcing the pool; churn meta {flood_count[0]} "
          f"data {flood_count[1]} connect/close")
    for k in pids:
        print(f"RSS dpmfs-{k}: before {base[k] / 1024:.0f} MiB, peak {during_rss[k] / 1024:.0f} MiB, "
              f"after {(after.get(k) or 0) / 1024:.0f} MiB")
    print(f"client op (create+64KiB write+fsync+read+unlink) before: n={len(before_lat)} "
          f"p50={pct(before_lat, 50) * 1e3:.1f} ms p99={pct(before_lat, 99) * 1e3:.1f} ms; during: "
          f"n={len(during_lat)} p50={pct(during_lat, 50) * 1e3:.1f} ms "
          f"p99={pct(during_lat, 99) * 1e3:.1f} ms max={max(during_lat or [0]) * 1e3:.0f} ms")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
