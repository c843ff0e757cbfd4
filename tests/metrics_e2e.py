#!/usr/bin/python3
"""End-to-end check of GET /metrics: known RESP traffic against a real `tollgate serve`, then the
exposition parsed with the real Prometheus parser (prometheus_client), asserting exact values.

Usage: metrics_e2e.py TOLLGATE_BIN. Exit 0 = pass, 77 = skipped (no --http-port yet), else fail.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

POLICY = """policies:
  api:
    layers:
      - { name: user, key: "user:{user}", capacity: 2, rate: 0.001 }
      - { name: shadow, key: "s:{user}", capacity: 1, rate: 0.001, shadow: true }
    cost:
      by: type
      values: { msg: 1, upload: 2 }
      default: 1
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Resp:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t in (b"+", b"-"):
            return rest.decode() if t == b"+" else Exception(rest.decode())
        if t == b":":
            return int(rest)
        if t in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if t in (b"*", b"%"):
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n * (2 if t == b"%" else 1))]
        if t == b"_":
            return None
        raise ValueError(line)

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self._read()


def scrape(http_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    samples = {}
    types = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types, ctype


def main():
    binary = sys.argv[1]
    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    if "--http-port" not in help_text:
        print("SKIP: tollgate serve has no --http-port yet")
        return 77
    tmp = tempfile.mkdtemp(prefix="tollgate-metrics-")
    proc = None
    try:
        cfg = os.path.join(tmp, "policy.yaml")
        with open(cfg, "w") as f:
            f.write(POLICY)
        port, http_port = free_port(), free_port()
        proc = subprocess.Popen(
            [binary, "serve", "--port", str(port), "--http-port", str(http_port), "--bind",
             "127.0.0.1", "--data-dir", os.path.join(tmp, "data"), "--config", cfg,
             "--io-threads", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # Log lines may come first; the ready line says the RESP port is listening.
        ready = ""
        for _ in range(50):
            ready = proc.stdout.readline()
            if not ready or "tollgate ready on" in ready:
                break
        assert "tollgate ready on" in ready, ready
        for _ in range(100):  # the HTTP listener may come up just after the RESP one
            try:
                scrape(http_port)
                break
            except OSError:
                time.sleep(0.05)
        c = Resp(port)
        sent = {}

        def call(*args):
            name = str(args[0]).lower()
            sent[name] = sent.get(name, 0) + 1
            return c.call(*args)

        # Locks: 2 granted, 2 contended, 1 timeout; one released (hold observed), one expires.
        g = call("LOCK.ACQUIRE", "k1", 10000)
        assert isinstance(g, list), g
        assert call("LOCK.ACQUIRE", "k1", 10000) is None
        assert call("LOCK.ACQUIRE", "k1", 10000) is None
        assert call("LOCK.ACQUIRE", "k1", 10000, "WAIT", 50) is None
        time.sleep(0.02)
        assert call("LOCK.RELEASE", "k1", g[0]) == 1
        g2 = call("LOCK.ACQUIRE", "k2", 50)
        assert isinstance(g2, list), g2
        # Fences: 1 accepted, 2 stale.
        assert call("FENCE.SET", "r", g2[1], "v") == "OK"
        for _ in range(2):
            r = call("FENCE.SET", "r", 1, "old")
            assert isinstance(r, Exception) and str(r).startswith("STALE"), r
        # Rate checks: u1 (type msg) and u2 (type "weird", not in the cost table), 3 each:
        # layer user allows 2 and denies 1 per user; shadow allows 1 and shadow-denies 2 per user.
        for user, typ in (("u1", "msg"), ("u2", "weird")):
            got = [call("RATE.CHECK", "api", "user", user, "type", typ)[0] for _ in range(3)]
            assert got == [1, 1, 0], got
        call("THROTTLE", "t", 1, 0.001)
        call("THROTTLE", "t", 1, 0.001)
        r = c.call("NOSUCHCOMMAND")
        sent["unknown"] = 1
        assert isinstance(r, Exception)
        time.sleep(0.4)  # k2 (ttl 50 ms) expires unreleased
        info = call("INFO")
        info_fields = dict(l.split(":", 1) for l in info.split("\r\n") if ":" in l)

        m, types, ctype = scrape(http_port)
        fails = []

        def expect(name, labels, want):
            got = m.get((name, tuple(sorted(labels.items()))))
            if got != want:
                fails.append(f"{name}{labels}: want {want}, got {got}")

        assert ctype.startswith("text/plain"), ctype
        expect("tollgate_build_info", {"version": "0.1.0"}, 1)
        expect("tollgate_connected_clients", {}, 1)
        expect("tollgate_lock_waiters", {}, 0)
        for cmd, n in sent.items():
            expect("tollgate_commands_total", {"command": cmd}, n)
            expect("tollgate_command_duration_seconds_count", {"command": cmd}, n)
        expect("tollgate_commands_total", {"command": "ping"}, 0)
        total = sum(v for (n, _), v in m.items() if n == "tollgate_commands_total")
        if total != int(info_fields["total_commands_processed"]):
            fails.append(f"commands: metrics {total} != INFO {info_fields['total_commands_processed']}")
        for res, n in (("granted", 2), ("contended", 2), ("timeout", 1)):
            expect("tollgate_lock_acquisitions_total", {"result": res}, n)
        expect("tollgate_lock_hold_seconds_count", {}, 1)
        expect("tollgate_lock_expirations_total", {}, 1)
        expect("tollgate_fence_writes_total", {"result": "accepted"}, 1)
        expect("tollgate_fence_writes_total", {"result": "stale"}, 2)
        for layer, res, n in (("user", "allowed", 4), ("user", "denied", 2),
                              ("user", "shadow_denied", 0), ("shadow", "allowed", 2),
                              ("shadow", "denied", 0), ("shadow", "shadow_denied", 4)):
            expect("tollgate_ratelimit_decisions_total",
                   {"policy": "api", "layer": layer, "result": res}, n)
        expect("tollgate_ratelimit_check_duration_seconds_count", {"policy": "api"}, 6)
        expect("tollgate_ratelimit_buckets", {"policy": "api", "layer": "user"}, 2)
        for typ, n in (("msg", 1), ("upload", 0), ("other", 1)):
            expect("tollgate_ratelimit_denied_by_type_total", {"policy": "api", "type": typ}, n)
        expect("tollgate_throttle_decisions_total", {"result": "allowed"}, 1)
        expect("tollgate_throttle_decisions_total", {"result": "denied"}, 1)
        expect("tollgate_policy_reloads_total", {"result": "ok"}, 1)
        expect("tollgate_policy_reloads_total", {"result": "error"}, 0)
        expect("tollgate_policy_info", {"path": cfg}, 1)
        expect("tollgate_policy_last_reload_success", {}, 1)
        ts = m.get(("tollgate_policy_last_reload_timestamp_seconds", ()))
        if ts is None or abs(ts - time.time()) > 60:
            fails.append(f"last reload timestamp {ts}")
        commits = m.get(("tollgate_store_fsync_duration_seconds_count", ()))
        if commits is None or commits < 1 or commits != int(info_fields["group_commits"]):
            fails.append(f"fsync count {commits} != INFO group_commits {info_fields['group_commits']}")
        if m.get(("tollgate_store_group_commit_size_sum", ())) != int(info_fields["records_written"]):
            fails.append("group commit size sum != INFO records_written")
        for name, t in (("tollgate_command_duration_seconds", "histogram"),
                        ("tollgate_lock_hold_seconds", "histogram"),
                        ("tollgate_ratelimit_check_duration_seconds", "histogram"),
                        ("tollgate_store_fsync_duration_seconds", "histogram"),
                        ("tollgate_store_group_commit_size", "histogram"),
                        ("tollgate_lock_acquisitions", "counter"),
                        ("tollgate_lock_waiters", "gauge")):
            if types.get(name) != t:
                fails.append(f"type of {name}: {types.get(name)}")
        if fails:
            print("FAIL:\n  " + "\n  ".join(fails))
            return 1
        print(f"PASS: {len(m)} samples checked against known traffic")
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
