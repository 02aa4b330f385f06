"""Sampling policy sources (issue 5) against a real redis-server, a real
policy file and a real HTTP remote-sampling endpoint, through
tests/unit/tb_policy_driver (found under $TB_BUILDDIR, default the repo root).

Run: /usr/bin/python3 -m pytest tests/integration/test_policy_source.py
"""
import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import (BAD_SENTINEL_ANSWERS, BUILDDIR, FakeResp,
                      FakeSentinel, free_port, resp_bulk, sentinel_setup,
                      wait_for)

DRIVER = os.path.join(BUILDDIR, "tests", "unit", "tb_policy_driver")

if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)
if not os.access(DRIVER, os.X_OK):
    pytest.skip("%s not built" % DRIVER, allow_module_level=True)


def prob(p, **extra):
    d = {"default_strategy": {"type": "probabilistic", "param": p}}
    d.update(extra)
    return json.dumps(d)


class Driver:
    """tb_policy_driver with its JSON lines collected by a thread."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([DRIVER] + [str(a) for a in args],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.stderr = []
        self.expect_rc = 0     # sanitizer builds exit non-zero on a leak
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))

    def _read_err(self):
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace"))

    def wait_for(self, pred, timeout):
        """First event satisfying pred within timeout seconds, else fail."""
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                pytest.fail("no matching event within %.1fs; stderr:\n%s"
                            % (timeout, "".join(self.stderr)))
            try:
                ev = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if pred(ev):
                return ev

    def quiet(self, seconds):
        """Events that arrive within seconds (expected: none)."""
        got = []
        end = time.time() + seconds
        while time.time() < end:
            try:
                got.append(self.lines.get(timeout=max(0.01, end - time.time())))
            except queue.Empty:
                pass
        return got

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.expect_rc != 0:
            try:
                self.proc.wait(timeout=5)   # it exits by itself
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def default_param(ev):
    return ev["policy"]["default_strategy"]["param"]


def is_policy(source=None, param=None):
    def pred(ev):
        return (ev["event"] == "policy"
                and (source is None or ev["source"] == source)
                and (param is None or default_param(ev) == param))
    return pred


@pytest.fixture
def drivers():
    made = []

    def make(*args):
        d = Driver(*args)
        made.append(d)
        return d
    yield make
    for d in made:
        rc = d.stop()
        time.sleep(0.05)   # let the stderr reader finish
        assert rc == d.expect_rc, "driver exit %s; stderr:\n%s" % (
            rc, "".join(d.stderr))


def redis_args(r, url=None):
    return ["--redis", url or r.url, "--key", "tb:policy",
            "--channel", "tb:policy"]


def test_redis_set_publish_within_1s_on_every_proxy(redis_server, drivers):
    r = redis_server
    r.cli("SET", "tb:policy", prob(0.1))
    a = drivers(*redis_args(r), "--service", "nova")
    b = drivers(*redis_args(r), "--service", "nova")
    for d in (a, b):
        d.wait_for(is_policy("redis:tb:policy", 0.1), 5)
    r.cli("SET", "tb:policy", prob(0.9))
    t0 = time.time()
    r.cli("PUBLISH", "tb:policy", "changed")
    for d in (a, b):
        ev = d.wait_for(is_policy("redis:tb:policy", 0.9), 1.0)
        # the fixed probe trace (R = 0x80...) is sampled at 0.9, not at 0.1
        assert ev["probe"]["nova"][0] is True
        assert ev["probe"]["nova"][1] == "probabilistic"
    assert time.time() - t0 < 1.0


def test_redis_broken_policy_rejected_old_kept(redis_server, drivers):
    r = redis_server
    r.cli("SET", "tb:policy", prob(0.3))
    d = drivers(*redis_args(r))
    d.wait_for(is_policy("redis:tb:policy", 0.3), 5)
    for bad, why in [
            ("{not json", "invalid JSON"),
            (prob(1.5), "outside [0,1]"),
            (json.dumps({"service_strategies": [
                {"service": "nova", "type": "probabilistic", "param": 1,
                 "operation_strategies": [{"operation": "GET /",
                                           "type": "ratelimiting",
                                           "param": 1}]}]}),
             "ratelimiting is not allowed per operation")]:
        r.cli("SET", "tb:policy", bad)
        r.cli("PUBLISH", "tb:policy", "x")
        ev = d.wait_for(lambda e: e["event"] == "rejected", 1.0)
        assert why in ev["reason"], ev
        assert ev["source"] == "redis:tb:policy"
    assert not [e for e in d.quiet(0.3) if e["event"] == "policy"]
    # still in force, and a good one is taken again
    r.cli("SET", "tb:policy", prob(0.7))
    r.cli("PUBLISH", "tb:policy", "x")
    d.wait_for(is_policy("redis:tb:policy", 0.7), 1.0)


def test_redis_restart_then_reread(redis_server, drivers):
    r = redis_server
    r.cli("SET", "tb:policy", prob(0.2))
    d = drivers(*redis_args(r))
    d.wait_for(is_policy("redis:tb:policy", 0.2), 5)
    # changed without PUBLISH: nobody is told, so nothing moves yet
    r.cli("SET", "tb:policy", prob(0.6))
    assert not [e for e in d.quiet(0.5) if e["event"] == "policy"]
    r.shutdown_save()
    time.sleep(0.3)
    r.start()
    # the reconnect re-reads the key (backoff starts at 0.1 s, max 5 s)
    d.wait_for(is_policy("redis:tb:policy", 0.6), 8)


def test_redis_absent_at_start_then_up(servers, drivers):
    port = free_port()
    d = drivers("--redis", "redis://127.0.0.1:%d" % port, "--key", "tb:policy",
                "--channel", "tb:policy")
    d.wait_for(is_policy("builtin"), 2)
    r = servers("late", port=port)
    try:
        r.cli("SET", "tb:policy", prob(0.4))
        r.cli("PUBLISH", "tb:policy", "x")
        d.wait_for(is_policy("redis:tb:policy", 0.4), 8)
    finally:
        r.stop(signal.SIGKILL)     # killed before the driver is stopped


def test_redis_unix_socket_and_db(servers, drivers, tmp_path):
    """unix:// with ?db=N: the key is read from that database over the
    socket, and a PUBLISH re-reads it."""
    sock = str(tmp_path / "r.sock")
    r = servers("redis", extra=["--unixsocket", sock])
    r.client(db=2).set("tb:policy", prob(0.3))
    r.client(db=0).set("tb:policy", prob(0.8))     # not this one
    d = drivers(*redis_args(r, "unix://%s?db=2" % sock))
    d.wait_for(is_policy("redis:tb:policy", 0.3), 5)
    r.client(db=2).set("tb:policy", prob(0.6))
    t0 = time.time()
    r.cli("PUBLISH", "tb:policy", "changed")
    d.wait_for(is_policy("redis:tb:policy", 0.6), 1.0)
    assert time.time() - t0 < 1.0
    # both connections go over the socket (flag U), in db 2: one for GET,
    # one subscribed
    unix = [c for c in r.client().client_list() if "U" in c["flags"]]
    assert sorted((c["db"], c["sub"]) for c in unix) == [
        ("2", "0"), ("2", "1")], unix


def test_redis_sentinel_discovery_and_failover(servers, drivers):
    """redissentinel://: the master is asked of the sentinel (the first
    one listed is down), the key read and a PUBLISH followed; after the
    master dies the sentinels' new master is used by both connections, and
    a PUBLISH there is followed too."""
    m, rep, s = sentinel_setup(servers)
    m.client().set("tb:policy", prob(0.2))
    url = "redissentinel://127.0.0.1:%d,127.0.0.1:%d" % (free_port(), s.port)
    d = drivers(*redis_args(m, url), "--service-name", "mymaster",
                "--socket-timeout", "0.5")
    d.wait_for(is_policy("redis:tb:policy", 0.2), 5)
    m.client().set("tb:policy", prob(0.4))
    m.client().publish("tb:policy", "x")
    d.wait_for(is_policy("redis:tb:policy", 0.4), 1.0)
    rc = rep.client()
    wait_for(lambda: rc.get("tb:policy") == prob(0.4).encode(), 10,
             "the replica to copy the key")

    m.stop(signal.SIGKILL)
    wait_for(lambda: rc.info("replication")["role"] == "master", 20,
             "failover to the replica")
    # both connections move: the subscriber shows up on the new master
    wait_for(lambda: rc.pubsub_numsub("tb:policy")[0][1] == 1, 20,
             "the subscription on the new master")
    rc.set("tb:policy", prob(0.9))
    rc.publish("tb:policy", "x")
    d.wait_for(is_policy("redis:tb:policy", 0.9), 10)
    assert "sentinel" in "".join(d.stderr)


def test_redis_sentinel_unusable_answers_then_policy(servers, fakes,
                                                     drivers):
    """Unusable sentinel answers (issue 13) stop neither of the policy's
    connections: each is logged and the other sentinel asked, and once an
    answer can be used the key is read and a PUBLISH followed."""
    r = servers("redis")
    r.cli("SET", "tb:policy", prob(0.3))
    answers = [a for a, _ in BAD_SENTINEL_ANSWERS]
    a, b = (fakes(FakeSentinel, answers, r.port) for _ in range(2))
    url = "redissentinel://127.0.0.1:%d,127.0.0.1:%d" % (a.port, b.port)
    d = drivers(*redis_args(r, url), "--service-name", "mymaster",
                "--socket-timeout", "1")
    d.wait_for(is_policy("redis:tb:policy", 0.3), 20)
    wait_for(lambda: r.client().pubsub_numsub("tb:policy")[0][1] == 1, 10,
             "the subscription")
    r.cli("SET", "tb:policy", prob(0.6))
    r.cli("PUBLISH", "tb:policy", "x")
    d.wait_for(is_policy("redis:tb:policy", 0.6), 2)
    assert not answers
    err = "".join(d.stderr)
    assert err.count("unusable answer for master mymaster") == \
        len(BAD_SENTINEL_ANSWERS)
    assert max(len(ln) for ln in err.splitlines()) < 300


def test_redis_bad_pubsub_reply_refused_then_policy(fakes, drivers):
    """A one-element pub/sub reply ("*1\r\n$7\r\nmessage\r\n") on the
    SUBSCRIBE connection aborted the process in hiredis 0.14.1
    (async.c:378). It is refused: logged, the connection closed and
    subscribed again, and a later message is followed."""
    state = {"param": 0.3, "subs": 0, "sock": None}

    def answer(fake, n, args, s):
        cmd = args[0].upper()
        if cmd == b"GET":
            s.sendall(resp_bulk(prob(state["param"]).encode()))
        elif cmd == b"SUBSCRIBE":
            s.sendall(b"*3\r\n" + resp_bulk(b"subscribe") +
                      resp_bulk(args[1]) + b":1\r\n")
            with fake.lock:
                state["subs"] += 1
                state["sock"] = s
                first = state["subs"] == 1
            if first:
                s.sendall(b"*1\r\n" + resp_bulk(b"message"))
        else:
            s.sendall(b"-ERR unknown command\r\n")

    f = fakes(FakeResp, answer)
    d = drivers(*redis_args(None, "redis://127.0.0.1:%d" % f.port))
    d.wait_for(is_policy("redis:tb:policy", 0.3), 10)
    wait_for(lambda: state["subs"] == 2, 10, "subscribed again")
    state["param"] = 0.6
    state["sock"].sendall(b"*3\r\n" + resp_bulk(b"message") +
                          resp_bulk(b"tb:policy") + resp_bulk(b"x"))
    d.wait_for(is_policy("redis:tb:policy", 0.6), 5)
    err = "".join(d.stderr)
    assert "sent a bad pub/sub reply (not an array of three elements); " \
        "closing the connection" in err
    assert "Assertion" not in err


def test_redis_policy_larger_than_limit(redis_server, drivers):
    """A value larger than a policy document may be (4 MiB) is not buffered
    whole: the connection is cut off, logged, the policy in force stays,
    and once the key is fixed the reconnect reads it."""
    r = redis_server
    r.cli("SET", "tb:policy", prob(0.2))
    d = drivers(*redis_args(r))
    d.wait_for(is_policy("redis:tb:policy", 0.2), 5)
    r.client().set("tb:policy", b" " * (5 << 20))
    r.cli("PUBLISH", "tb:policy", "x")
    wait_for(lambda: "sent a reply larger than 4194304 bytes" in
             "".join(d.stderr), 5, "the refusal in the log")
    assert not d.quiet(0.3)         # neither applied nor rejected
    r.cli("SET", "tb:policy", prob(0.7))
    d.wait_for(is_policy("redis:tb:policy", 0.7), 10)


def write_atomic(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, str(path))


def test_file_change_and_sighup(tmp_path, drivers):
    f = tmp_path / "policy.json"
    write_atomic(f, prob(0.25))
    d = drivers("--file", f)
    src = "file:%s" % f
    d.wait_for(is_policy(src, 0.25), 2)
    write_atomic(f, prob(0.75))
    d.wait_for(is_policy(src, 0.75), 2.5)
    # in place, same size: mtime tells
    time.sleep(0.05)
    with open(str(f), "w") as fh:
        fh.write(prob(0.55))
    d.wait_for(is_policy(src, 0.55), 2.5)
    # broken: rejected, old kept
    write_atomic(f, prob(-1))
    ev = d.wait_for(lambda e: e["event"] == "rejected", 2.5)
    assert "outside [0,1]" in ev["reason"]
    assert not [e for e in d.quiet(1.2) if e["event"] == "policy"]
    # SIGHUP reloads even what the poller already saw
    write_atomic(f, prob(0.35))
    d.wait_for(is_policy(src, 0.35), 2.5)
    d.signal(signal.SIGHUP)
    d.wait_for(is_policy(src, 0.35), 1.0)


def test_file_broken_at_start_is_an_error(tmp_path, drivers):
    f = tmp_path / "policy.json"
    write_atomic(f, prob(2))
    d = drivers("--file", f)
    d.expect_rc = 1
    ev = d.wait_for(lambda e: True, 2)
    assert ev["event"] == "error" and "outside [0,1]" in ev["reason"]


def test_last_loaded_wins(tmp_path, redis_server, drivers):
    r = redis_server
    f = tmp_path / "policy.json"
    write_atomic(f, prob(0.15))
    d = drivers("--file", f, *redis_args(r))
    d.wait_for(is_policy("file:%s" % f, 0.15), 2)
    r.cli("SET", "tb:policy", prob(0.45))
    r.cli("PUBLISH", "tb:policy", "x")
    d.wait_for(is_policy("redis:tb:policy", 0.45), 1)
    write_atomic(f, prob(0.65))
    d.wait_for(is_policy("file:%s" % f, 0.65), 2.5)
    # the same Redis text again wins again when announced
    r.cli("PUBLISH", "tb:policy", "x")
    d.wait_for(is_policy("redis:tb:policy", 0.45), 1)
    # SIGHUP: the file wins; the unchanged Redis key does not take over again
    d.signal(signal.SIGHUP)
    d.wait_for(is_policy("file:%s" % f, 0.65), 1)
    assert not [e for e in d.quiet(0.5) if e["event"] == "policy"]


class Sampling(http.server.BaseHTTPRequestHandler):
    """Jaeger remote sampling endpoint: answers[service] = (status, body)."""
    answers = {}
    seen = []

    def do_GET(self):
        from urllib.parse import urlparse, parse_qs
        q = parse_qs(urlparse(self.path).query)
        svc = q.get("service", [""])[0]
        Sampling.seen.append(svc)
        status, body = Sampling.answers.get(svc, (404, "{}"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def sampling_endpoint():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sampling)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Sampling.answers = {}
    Sampling.seen = []
    yield srv
    srv.shutdown()


def test_url_polling_per_service(sampling_endpoint, drivers):
    url = "http://127.0.0.1:%d/api/sampling" % sampling_endpoint.server_port
    Sampling.answers = {
        "nova": (200, json.dumps({"strategyType": "PROBABILISTIC",
                                  "probabilisticSampling": {"samplingRate": 0.9}})),
        "glance": (200, json.dumps({"strategyType": 1, "rateLimitingSampling":
                                    {"maxTracesPerSecond": 5}})),
    }
    d = drivers("--url", url, "--poll", "0.3", "--service", "nova",
                "--service", "glance")
    ev = d.wait_for(is_policy("url:" + url), 3)
    svcs = {s["service"]: s for s in ev["policy"]["service_strategies"]}
    assert svcs["nova"]["param"] == 0.9
    assert svcs["glance"]["type"] == "ratelimiting"
    assert ev["probe"]["nova"][:2] == [True, "probabilistic"]
    assert ev["probe"]["glance"][1] == "ratelimiting"
    assert set(Sampling.seen) >= {"nova", "glance"}
    # a broken answer for one service is rejected; its last good one stays
    Sampling.answers["nova"] = (200, '{"strategyType": 7}')
    ev = d.wait_for(lambda e: e["event"] == "rejected", 2)
    assert "service nova" in ev["reason"] and ev["source"].endswith("service=nova")
    assert not [e for e in d.quiet(0.8) if e["event"] == "policy"]
    # a changed answer is picked up at the next poll
    Sampling.answers["nova"] = (200, json.dumps(
        {"probabilisticSampling": {"samplingRate": 0.1}}))
    ev = d.wait_for(is_policy("url:" + url), 2)
    svcs = {s["service"]: s for s in ev["policy"]["service_strategies"]}
    assert svcs["nova"]["param"] == 0.1
    assert ev["probe"]["nova"][:2] == [False, "probabilistic"]


def test_driver_self_test_file_source():
    """The driver run bare: load, change detection, rejection, reload."""
    p = subprocess.run([DRIVER], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert b" 0 failed" in p.stdout


def test_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path, drivers):
    """A policy_file that is a FIFO (or a device) must not block the control
    loop in open() or read(): refused at once like any unreadable file."""
    f = tmp_path / "policy.fifo"
    os.mkfifo(str(f))
    d = drivers("--file", f)
    d.expect_rc = 1
    ev = d.wait_for(lambda e: True, 2)
    assert ev["event"] == "error" and "not a regular file" in ev["reason"]
