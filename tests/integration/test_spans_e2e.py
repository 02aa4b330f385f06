"""Edge spans through the real binary (issue 4): tracebridge in front of a
real osprofiler-wrapped WSGI app (or the fast test upstream), both writing
to a real redis-server; read back with osprofiler's own CLI.

Run: TB_BUILDDIR=... /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_spans_e2e.py
"""
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (BINARY, Conn, free_port, metrics, osprofiler,
                      sentinel_setup, wait_for)

redis = pytest.importorskip("redis")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BASE_ID = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# ---- helpers ----

def span_conf(redis_url, workers=1, tracing="", profiler="", listeners=None,
              sampling=""):
    """A config with the edge span on; {port} {admin} {upstream} {access}
    stay placeholders for make_proxy. listeners: extra listener sections."""
    text = """
[DEFAULT]
workers = %d
log_level = info
access_log = {access}
drain_timeout = 2

[admin]
listen = 127.0.0.1:{admin}

[listener:public]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = identity
upstream_timeout = 1
upstream_connect_timeout = 1
client_header_timeout = 2

[profiler]
enabled = true
hmac_keys = SECRET_KEY
connection_string = %s
%s
[tracing]
project = edgeproj
host = edge-host-1
%s
[sampling]
max_traces_per_second = 0
%s
""" % (workers, redis_url, profiler, tracing, sampling)
    return text + (listeners or "")


def trace_show(url, base):
    return json.loads(osprofiler("trace", "show", "--connection-string", url,
                                 base, "--json"))


def dropped(m):
    return sum(v for k, v in m.items()
               if k.startswith("tracebridge_spans_dropped_total{"))


def drained(proxy, want):
    """Wait until every one of want sampled spans is recorded or dropped and
    nothing is buffered; returns the metrics."""
    def done():
        m = metrics(proxy)
        if m["tracebridge_span_buffer_bytes"] == 0 and \
                m["tracebridge_spans_recorded_total"] + dropped(m) >= want:
            return m
        return None
    return wait_for(done, 30, "the span buffer to drain")


def notifications(client, base):
    return [json.loads(x) for x in
            reversed(client.lrange("osprofiler_opt:" + base, 0, -1))]


def get(port, path, headers=(), timeout=5.0):
    c = Conn(port, timeout)
    try:
        return c.request("GET", path, headers=list(headers))
    finally:
        c.close()


# ---- 1. one trace, one tree, read back by osprofiler ----

def test_proxy_span_is_root_of_osprofiler_tree(servers, wsgi, make_proxy):
    r = servers("redis")
    app = wsgi(r.url)
    p = make_proxy(span_conf(r.url), upstream=app.url)
    resp = get(p.port, "/v3/auth/tokens?nocatalog=1&x=%20y",
               [("traceparent", TRACEPARENT), ("User-Agent", "e2e-test/1.0")])
    assert resp.status == 200
    assert resp.header("X-Trace-Id") == BASE_ID
    seen = resp.json()
    # the app joined the trace under our span
    assert seen["profiler"]["base_id"] == BASE_ID
    edge_span = seen["profiler"]["parent_id"]
    assert UUID.match(edge_span)

    c = r.client()
    key = "osprofiler_opt:" + BASE_ID
    wait_for(lambda: c.llen(key) == 4, 10, "4 notifications")
    names = sorted(n["name"] for n in notifications(c, BASE_ID))
    assert names == ["proxy-start", "proxy-stop", "wsgi-start", "wsgi-stop"]
    assert c.ttl(key) == -1         # osprofiler's default: never expires

    report = trace_show(r.url, BASE_ID)
    roots = report["children"]
    assert len(roots) == 1
    root = roots[0]
    info = root["info"]
    assert info["name"] == "proxy"
    assert root["trace_id"] == edge_span
    # the W3C caller's span 00f067aa0ba902b7 as osprofiler's uuid mapping:
    # not in the trace, hence the root
    assert root["parent_id"] == "00000000-0000-0000-00f0-67aa0ba902b7"
    assert (info["project"], info["service"], info["host"]) == \
        ("edgeproj", "identity", "edge-host-1")
    assert [ch["info"]["name"] for ch in root["children"]] == ["wsgi"]
    child = root["children"][0]
    assert child["parent_id"] == edge_span
    assert (child["info"]["project"], child["info"]["service"]) == \
        ("demo", "api")
    assert info["started"] <= child["info"]["started"]
    assert info["finished"] >= child["info"]["finished"]

    start = info["meta.raw_payload.proxy-start"]["info"]
    assert start["request"] == {"path": "/v3/auth/tokens",
                                "query": "nocatalog=1&x=%20y",
                                "method": "GET", "scheme": "http"}
    assert re.match(r"^127\.0\.0\.1:\d+$", start["client"])
    assert start["listener"] == "public"
    assert start["http_version"] == "HTTP/1.1"
    assert start["user_agent"] == "e2e-test/1.0"
    assert start["trace_format"] == "w3c"
    assert start["caller_span_id"] == "00f067aa0ba902b7"
    assert start["upstream"] == "127.0.0.1:%d" % app.port
    assert start["operation"]
    assert start["sampling"] == "incoming_sampled"
    assert start["host"] == "edge-host-1"

    stop = info["meta.raw_payload.proxy-stop"]["info"]
    assert stop["response"]["status_code"] == 200
    assert stop["response"]["bytes_to_client"] > len(resp.body)
    up = stop["upstream"]
    assert 0 <= up["connect_ms"] <= up["first_byte_ms"] < 5000
    assert up["request_id"] == "req-00000000-0000-4000-8000-000000000001"
    assert "etype" not in stop
    assert stop["host"] == "edge-host-1"

    assert BASE_ID in osprofiler("trace", "list", "--connection-string", r.url)


def test_span_name_option(servers, upstream, make_proxy):
    r = servers("redis")
    p = make_proxy(span_conf(r.url, tracing="span_name = edge\n"),
                   upstream=upstream.url)
    resp = get(p.port, "/v3", [("traceparent", TRACEPARENT)])
    assert resp.status == 200
    c = r.client()
    wait_for(lambda: c.llen("osprofiler_opt:" + BASE_ID) == 2, 10, "a span")
    assert [n["name"] for n in notifications(c, BASE_ID)] == \
        ["edge-start", "edge-stop"]
    assert trace_show(r.url, BASE_ID)["children"][0]["info"]["name"] == "edge"


def test_unsampled_request_records_nothing(servers, upstream, make_proxy):
    r = servers("redis")
    p = make_proxy(span_conf(r.url, tracing="sample_new = false\n"),
                   upstream=upstream.url)
    for tp in ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", None):
        resp = get(p.port, "/v3", [("traceparent", tp)] if tp else [])
        assert resp.status == 200
    time.sleep(0.3)
    assert r.client().keys("osprofiler_opt:*") == []
    m = metrics(p)
    assert m["tracebridge_spans_recorded_total"] == 0 and dropped(m) == 0


# ---- 2. failures are error traces ----

class BlackHole:
    """Accepts connections and never answers (an upstream that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_failures_are_error_traces(servers, wsgi, upstream, make_proxy):
    r = servers("redis")
    app = wsgi(r.url)
    hole = BlackHole()
    refused = free_port()               # nothing listens there
    ports = {n: free_port() for n in ("refused", "hang", "big")}
    extra = ""
    for name, up in (("refused", "http://127.0.0.1:%d" % refused),
                     ("hang", "http://127.0.0.1:%d" % hole.port),
                     ("big", upstream.url)):
        extra += """
[listener:%s]
listen = 127.0.0.1:%d
upstream = %s
service = %s
upstream_timeout = 1
upstream_connect_timeout = 1
""" % (name, ports[name], up, name)
    try:
        p = make_proxy(span_conf(r.url, profiler="filter_error_trace = true\n",
                                 tracing="sample_new = true\n",
                                 listeners=extra), upstream=app.url)
        bases = {}
        resp = get(ports["refused"], "/v3")
        assert resp.status == 502
        bases["UpstreamUnavailable"] = resp.header("X-Trace-Id")
        resp = get(ports["hang"], "/v3")
        assert resp.status == 504
        bases["UpstreamTimeout"] = resp.header("X-Trace-Id")
        resp = get(p.port, "/fail/now")
        assert resp.status == 500
        bases["HTTPServerError"] = resp.header("X-Trace-Id")
        # the client goes away in the middle of a 64 MiB body
        c = Conn(ports["big"])
        c.send(b"GET /download?size=67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
        while b"\r\n\r\n" not in c.buf:
            c._fill()
        head = c.buf.split(b"\r\n\r\n")[0].decode("latin-1")
        c._fill()
        c.close()
        bases["ClientDisconnected"] = re.search(
            r"(?im)^X-Trace-Id: (\S+)", head).group(1)
        # and one that went well: not an error trace
        ok = get(p.port, "/v3").header("X-Trace-Id")

        c = r.client()
        for etype, base in bases.items():
            assert base and UUID.match(base), (etype, bases)
            wait_for(lambda: c.exists("osprofiler_error:" + base), 10,
                     "error marker of " + etype)
        listing = osprofiler("trace", "list", "--connection-string", r.url,
                             "--error-trace", "1")
        for etype, base in bases.items():
            assert base in listing, etype
            marker = json.loads(c.get("osprofiler_error:" + base))
            assert list(marker) == ["base_id", "timestamp"]
            assert marker["base_id"] == base
            stops = [n for n in notifications(c, base)
                     if n["name"] == "proxy-stop"]
            assert len(stops) == 1, etype
            info = stops[0]["info"]
            assert info["etype"] == etype
            assert isinstance(info["message"], str) and info["message"]
            if etype == "HTTPServerError":
                assert info["message"] == "HTTP 500"
                assert info["response"]["status_code"] == 500
        assert ok not in listing
        assert c.get("osprofiler_error:" + ok) is None
        # the failure is the span's exception in osprofiler's report
        rep = trace_show(r.url, bases["UpstreamTimeout"])
        assert rep["children"][0]["info"]["exception"] == "UpstreamTimeout"
        # the app's own span sits under ours in the 5xx trace
        rep = trace_show(r.url, bases["HTTPServerError"])
        assert [ch["info"]["name"] for ch in rep["children"][0]["children"]] \
            == ["wsgi"]
    finally:
        hole.close()


def test_error_reply_carries_trace_id(servers, make_proxy):
    """Regression: the proxy's own 502/504 replies had no X-Trace-Id or
    Server-Timing, so a client could not find the failed request's trace."""
    r = servers("redis")
    p = make_proxy(span_conf(r.url), upstream="http://127.0.0.1:%d"
                   % free_port())
    resp = get(p.port, "/v3", [("traceparent", TRACEPARENT)])
    assert resp.status == 502
    assert resp.body == b"502 Bad Gateway\n"
    assert resp.header("Content-Length") == str(len(resp.body))
    assert resp.header("X-Trace-Id") == BASE_ID
    assert re.match(r"^trace;desc=00-4bf92f3577b34da6a3ce929d0e0e4736-"
                    r"[0-9a-f]{16}-01$", resp.header("Server-Timing"))
    c = r.client()
    wait_for(lambda: c.llen("osprofiler_opt:" + BASE_ID) == 2, 10, "a span")
    stop = notifications(c, BASE_ID)[1]["info"]
    assert stop["etype"] == "UpstreamUnavailable"
    assert stop["response"]["status_code"] == 502
    assert stop["response"]["bytes_to_client"] == len(resp.raw_head) + \
        len(resp.body)


# ---- 3. Redis outage under load: nothing fails, everything accounted ----

def load(port, n, threads, path="/v3", on_progress=None):
    """n GETs over `threads` keep-alive connections; returns (statuses,
    trace ids). Reconnects when the proxy closes a connection."""
    statuses, ids = [], []
    lock = threading.Lock()
    counter = [0]

    def worker(k):
        c = Conn(port)
        try:
            for i in range(k):
                try:
                    resp = c.request("GET", path)
                except (EOFError, ConnectionError):
                    c.close()
                    c = Conn(port)
                    resp = c.request("GET", path)
                with lock:
                    statuses.append(resp.status)
                    ids.append(resp.header("X-Trace-Id"))
                    counter[0] += 1
                    done = counter[0]
                if on_progress:
                    on_progress(done)
        finally:
            c.close()
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=worker, args=(k,)) for k in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return statuses, ids


def redis_traces(client):
    """base_id -> number of proxy spans (start notifications) in Redis."""
    out = {}
    keys = client.keys("osprofiler_opt:*")
    pipe = client.pipeline()
    for k in keys:
        pipe.lrange(k, 0, -1)
    for k, items in zip(keys, pipe.execute()):
        base = k.decode().split(":", 1)[1]
        out[base] = sum(1 for x in items
                        if json.loads(x)["name"] == "proxy-start")
    return out


def test_redis_outage_under_load(servers, upstream, make_proxy):
    # AOF so that what Redis acknowledged before the stop is there after it
    r = servers("redis", extra=["--appendonly", "yes",
                                "--appendfsync", "always"])
    p = make_proxy(span_conf(r.url, workers=2, tracing="sample_new = true\n"),
                   upstream=upstream.url)
    n = 3000
    stopped, restarted = threading.Event(), threading.Event()

    def on_progress(done):
        if done == 800:
            threading.Thread(target=outage).start()
        if done >= 2000:
            # the last third goes through after Redis is back
            assert restarted.wait(15)

    def outage():
        r.stop(signal.SIGTERM)
        stopped.set()
        time.sleep(1.0)
        r.start()
        restarted.set()

    t0 = time.time()
    statuses, ids = load(p.port, n, 6, on_progress=on_progress)
    assert stopped.is_set() and restarted.is_set()
    assert len(statuses) == n
    assert statuses == [200] * n            # no proxied request failed
    assert len(set(ids)) == n and all(UUID.match(i) for i in ids)

    m = drained(p, n)
    rec = m["tracebridge_spans_recorded_total"]
    assert rec + dropped(m) == n, m
    assert m["tracebridge_redis_reconnects_total"] >= 1
    assert m["tracebridge_redis_connected"] == 1
    # a 1 s outage fits the default 16 MiB buffer: nothing dropped
    assert dropped(m) == 0, m

    seen = redis_traces(r.client())
    assert set(seen) == set(ids)            # before, during and after
    # each span at least once; twice only when its replies were lost with
    # the connection (sink_redis.h "Duplicates")
    assert all(c in (1, 2) for c in seen.values())
    assert sum(seen.values()) >= rec
    assert ids[0] in seen and ids[-1] in seen
    assert time.time() - t0 < 60


# ---- 4. Redis down, tiny buffer: memory stays bounded ----

def test_tiny_buffer_keeps_memory_bounded(make_proxy, upstream):
    dead = free_port()                      # no Redis there
    p = make_proxy(span_conf("redis://127.0.0.1:%d" % dead, workers=2,
                             tracing="sample_new = true\n"
                                     "span_buffer_bytes = 4k\n"),
                   upstream=upstream.url)
    # big spans (8 KiB target + 8 KiB user agent each): unbounded, 4000 of
    # them would hold > 60 MiB
    path = "/v3?q=" + "a" * 8000
    ua = [("User-Agent", "u" * 8000)]

    def run(k, threads=4):
        out = []
        lock = threading.Lock()

        def w(j):
            c = Conn(p.port)
            try:
                for _ in range(j):
                    s = c.request("GET", path, headers=ua).status
                    with lock:
                        out.append(s)
            finally:
                c.close()
        ts = [threading.Thread(target=w, args=(k // threads,))
              for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        return out

    assert run(200) == [200] * 200          # warm up
    rss0 = p.status("VmRSS")
    st = run(4000)
    assert st == [200] * 4000
    rss1 = p.status("VmRSS")
    assert rss1 - rss0 < 20 * 1024, (rss0, rss1)   # kB
    m = metrics(p)
    assert m["tracebridge_spans_recorded_total"] == 0
    assert m["tracebridge_span_buffer_bytes"] <= 2 * 4096
    # a span of these is > 16 KiB: none fits, every one is dropped
    assert m['tracebridge_spans_dropped_total{reason="buffer_full"}'] == 4200
    assert m["tracebridge_redis_connected"] == 0


# ---- 5. Sentinel failover without restarting tracebridge ----

def test_sentinel_failover(servers, upstream, make_proxy):
    m, rep, s = sentinel_setup(servers)
    p = make_proxy(span_conf("redissentinel://127.0.0.1:%d" % s.port,
                             tracing="sample_new = true\n",
                             profiler="sentinel_service_name = mymaster\n"
                                      "socket_timeout = 0.5\n"),
                   upstream=upstream.url)
    before = [get(p.port, "/v3").header("X-Trace-Id") for _ in range(5)]
    mc = m.client()
    wait_for(lambda: all(mc.llen("osprofiler_opt:" + b) == 2 for b in before),
             10, "spans on the first master")
    met = metrics(p)
    assert met['tracebridge_redis_master{addr="127.0.0.1:%d"}' % m.port] == 1
    # replication is asynchronous: let the replica catch up first
    rc = rep.client()
    wait_for(lambda: all(rc.llen("osprofiler_opt:" + b) == 2 for b in before),
             10, "the replica to copy the spans")

    m.stop(signal.SIGKILL)
    wait_for(lambda: rc.info("replication")["role"] == "master", 20,
             "failover to the replica")
    # requests during and after the failover never fail
    after = []

    def new_span_on_new_master():
        resp = get(p.port, "/v3")
        assert resp.status == 200
        after.append(resp.header("X-Trace-Id"))
        return rc.llen("osprofiler_opt:" + after[-1]) == 2 or \
            rc.llen("osprofiler_opt:" + after[0]) == 2
    wait_for(new_span_on_new_master, 20, "spans on the new master")
    assert len(after) < 400
    more = [get(p.port, "/v3").header("X-Trace-Id") for _ in range(5)]
    wait_for(lambda: all(rc.llen("osprofiler_opt:" + b) == 2 for b in more),
             10, "new spans on the new master")
    met = drained(p, len(before) + len(after) + len(more))
    assert met['tracebridge_redis_master{addr="127.0.0.1:%d"}' % rep.port] \
        == 1
    assert 'tracebridge_redis_master{addr="127.0.0.1:%d"}' % m.port not in met
    assert met["tracebridge_redis_connected"] == 1
    assert dropped(met) == 0
    # the spans written before the kill were replicated: all in one place
    lens = {b: rc.llen("osprofiler_opt:" + b) for b in before + after}
    assert all(v >= 2 for v in lens.values()), (
        [lens[b] for b in before], [lens[b] for b in after],
        {k: v for k, v in met.items() if "span" in k or "redis" in k})
    assert p.proc.poll() is None


# ---- 6. bad connection strings are config errors ----

@pytest.mark.parametrize("cs,why", [
    ("redis://:99999", "missing host"),
    ("redis://127.0.0.1:99999", "port must be"),
    ("redis://:hunter2pw@127.0.0.1:99999", "port must be"),
    ("foo://x", "expected a redis://"),
    ("redissentinel://", "expected a redis://"),
    ("redissentinel://:hunter2pw@", "missing host"),
])
def test_bad_connection_string(tmp_path, cs, why):
    conf = tmp_path / "tb.conf"
    conf.write_text(span_conf(cs).format(
        port=free_port(), admin=free_port(), upstream="http://127.0.0.1:1",
        access="off"))
    lineno = conf.read_text().splitlines().index(
        "connection_string = " + cs) + 1
    p = subprocess.run([BINARY, "-t", "-c", str(conf)], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2, p.stdout + p.stderr
    msg = p.stderr
    assert msg.startswith("%s:%d: connection_string: " % (conf, lineno)), msg
    assert why in msg, msg
    assert "hunter2pw" not in msg + p.stdout


# ---- 7. span_ttl ----

def test_span_ttl(servers, upstream, make_proxy):
    r = servers("redis")
    p = make_proxy(span_conf(r.url, tracing="span_ttl = 60\n",
                             profiler="filter_error_trace = true\n"),
                   upstream=upstream.url)
    assert get(p.port, "/status/503", [("traceparent", TRACEPARENT)]).status \
        == 503
    c = r.client()
    wait_for(lambda: c.llen("osprofiler_opt:" + BASE_ID) == 2, 10, "a span")
    assert 0 < c.ttl("osprofiler_opt:" + BASE_ID) <= 60
    assert 0 < c.ttl("osprofiler_error:" + BASE_ID) <= 60


# ---- shutdown: spans still waiting for their batch are written first ----

def test_sigterm_writes_waiting_spans(servers, upstream, make_proxy):
    r = servers("redis")
    p = make_proxy(span_conf(r.url, tracing="sample_new = true\n"),
                   upstream=upstream.url)
    c = Conn(p.port)
    ids = [c.request("GET", "/v3").header("X-Trace-Id") for _ in range(50)]
    c.close()
    p.signal(signal.SIGTERM)            # at once: the last batch still waits
    assert p.proc.wait(10) == 0
    assert "dropped" not in p.logtext()
    seen = redis_traces(r.client())
    assert set(seen) == set(ids)
