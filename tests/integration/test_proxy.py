"""The core data path: framing, keep-alive, pipelining, streaming, errors."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import BINARY, BASIC_CONF, Conn, free_port, metrics, metrics_text, wait_for, wait_port


def test_get_forwarded_headers(proxy, conn_to):
    c = conn_to(proxy.port)
    r = c.request("GET", "/v3/auth?x=1", headers=[
        ("Host", "keystone.example:5000"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy-Connection", "keep-alive"),
        ("X-Forwarded-For", "10.1.1.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Auth-Token", "tok"),
    ])
    assert r.status == 200
    got = r.json()
    names = [k.lower() for k, _ in got["headers"]]
    hdr = {k.lower(): v for k, v in got["headers"]}
    assert got["target"] == "/v3/auth?x=1"
    assert got["version"] == "HTTP/1.1"
    for hop in ("connection", "x-hop", "keep-alive", "te", "proxy-authorization",
                "proxy-connection"):
        assert hop not in names, hop
    assert hdr["host"] == "keystone.example:5000"
    # the peer is no trusted proxy: its X-Forwarded-For is replaced
    assert hdr["x-forwarded-for"] == "127.0.0.1"
    assert hdr["x-forwarded-proto"] == "http"
    assert hdr["x-forwarded-host"] == "keystone.example:5000"
    assert hdr["x-auth-token"] == "tok"
    assert names.count("x-forwarded-proto") == 1
    assert r.header("X-OpenStack-Request-ID") is not None


def test_keepalive_reuses_upstream_connection(proxy, conn_to):
    c = conn_to(proxy.port)
    ids = [c.request("GET", "/a").header("X-Conn-Id") for _ in range(5)]
    assert len(set(ids)) == 1
    # a new client connection is served from the upstream pool too
    # (2 workers: retry until we land on the worker that has the pooled one)
    seen = set(ids)
    for _ in range(10):
        c2 = conn_to(proxy.port)
        seen.add(c2.request("GET", "/b").header("X-Conn-Id"))
    assert len(seen) <= 2


def test_pipelined_requests_answered_in_order(proxy, conn_to):
    c = conn_to(proxy.port)
    reqs = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    reqs += b"POST /p5 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    reqs += b"GET /p6 HTTP/1.1\r\nHost: x\r\n\r\n"
    c.send(reqs)
    paths = [c.response().json()["path"] for _ in range(7)]
    assert paths == ["/p%d" % i for i in range(7)]


def test_chunked_request_body(proxy, conn_to):
    c = conn_to(proxy.port)
    body = b"5;ext=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    c.send(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    r = c.response()
    got = r.json()
    assert got["body_len"] == 11
    import hashlib
    assert got["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    hdr = {k.lower(): v for k, v in got["headers"]}
    assert hdr["transfer-encoding"] == "chunked"
    assert "content-length" not in hdr
    # the connection is still good
    assert c.request("GET", "/after").status == 200


def test_chunked_response_with_trailers(proxy, conn_to):
    c = conn_to(proxy.port)
    r = c.request("GET", "/chunked?parts=4")
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.body == b"part-0;part-1;part-2;part-3;"
    assert r.trailers == ["X-Checksum: abc"]
    assert c.request("GET", "/again").status == 200


def test_chunked_response_to_http10_client_is_dechunked(proxy, conn_to):
    c = conn_to(proxy.port)
    c.send(b"GET /chunked?parts=2 HTTP/1.0\r\n\r\n")
    r = c.response()
    assert r.header("Transfer-Encoding") is None
    assert r.body == b"part-0;part-1;"
    assert c.closed()


def test_http10_keepalive(proxy, conn_to):
    c = conn_to(proxy.port)
    r = c.request("GET", "/x", headers=[("Connection", "keep-alive")], version="1.0")
    assert r.status == 200
    assert r.header("Connection").lower() == "keep-alive"
    got = r.json()
    assert dict((k.lower(), v) for k, v in got["headers"])["host"].startswith("127.0.0.1:")
    r = c.request("GET", "/y", version="1.0")
    assert r.status == 200
    assert c.closed()


def test_expect_100_continue(proxy, conn_to):
    c = conn_to(proxy.port)
    c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    r = c.response()
    assert r.status == 100
    c.send(b"data")
    r = c.response()
    assert r.status == 200
    got = r.json()
    assert got["body_len"] == 4
    assert "expect" not in [k.lower() for k, _ in got["headers"]]


def test_head_204_304_have_no_body(proxy, conn_to):
    c = conn_to(proxy.port)
    r = c.request("HEAD", "/h")
    assert r.status == 200 and r.header("Content-Length") is not None
    r = c.request("GET", "/status/204")
    assert r.status == 204 and r.header("Content-Length") is None
    r = c.request("GET", "/status/304")
    assert r.status == 304 and r.header("ETag") == '"e"'
    # all framed right: the next response on the same connection parses
    assert c.request("GET", "/next").json()["path"] == "/next"


def test_read_until_close_response(proxy, conn_to):
    c = conn_to(proxy.port)
    r = c.request("GET", "/close")
    assert r.status == 200
    assert r.body == b"until-close-body"
    assert r.header("Connection") == "close"


def test_upstream_refused_is_502(make_proxy, conn_to):
    p = make_proxy(upstream="http://127.0.0.1:%d" % free_port())
    c = conn_to(p.port)
    r = c.request("GET", "/")
    assert r.status == 502
    # still serving
    assert conn_to(p.port).request("GET", "/").status == 502


def test_upstream_reset_is_502(proxy, conn_to):
    r = conn_to(proxy.port).request("GET", "/reset")
    assert r.status == 502
    assert conn_to(proxy.port).request("GET", "/ok").status == 200


def test_upstream_timeout_is_504(proxy, conn_to):
    t = time.time()
    r = conn_to(proxy.port, timeout=10).request("GET", "/slow?delay=4")
    assert r.status == 504
    assert time.time() - t < 3.9
    assert conn_to(proxy.port).request("GET", "/ok").status == 200


def test_upstream_early_response_closes_client(proxy, conn_to):
    c = conn_to(proxy.port)
    c.send(b"PUT /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1000)
    r = c.response()
    assert r.status == 413
    assert r.header("Connection") == "close"


def test_client_abort_does_not_reuse_upstream(proxy, conn_to):
    c = conn_to(proxy.port)
    c.send(b"GET /download?size=1000000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.sock.recv(65536)
    aborted = [l.split(b":")[1].strip() for l in head.split(b"\r\n")
               if l.lower().startswith(b"x-conn-id:")][0].decode()
    c.sock.close()
    time.sleep(0.3)
    # every later request is fine and never lands on the aborted connection
    for _ in range(8):
        r = conn_to(proxy.port).request("GET", "/ok")
        assert r.status == 200
        assert r.header("X-Conn-Id") != aborted
    # the aborted request was reported, with the bytes actually sent
    line = [l for l in open(proxy.access_path) if "/download?size=1000000000" in l][0]
    assert int(line.split('" ')[1].split()[1]) < 1000000000


BAD_REQUESTS = [
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400),
    (b"G(ET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\nHost: x\n\n", 400),
]


@pytest.mark.parametrize("raw,status", BAD_REQUESTS, ids=range(len(BAD_REQUESTS)))
def test_malformed_request_then_good_one(proxy, conn_to, raw, status):
    c = conn_to(proxy.port)
    try:
        c.send(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = c.response()
    assert r.status == status
    assert c.closed()
    assert conn_to(proxy.port).request("GET", "/fine").status == 200


def test_header_timeout_is_408(proxy, conn_to):
    c = conn_to(proxy.port, timeout=6)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    r = c.response()
    assert r.status == 408


def test_upgrade_is_refused_cleanly(proxy, conn_to):
    c = conn_to(proxy.port)
    r = c.request("GET", "/ws", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
    assert r.status == 200
    names = [k.lower() for k, _ in r.json()["headers"]]
    assert "upgrade" not in names and "connection" not in names


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])


GIB = 1 << 30


def test_1gib_upload_streams_with_bounded_memory(proxy, upstream):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    marker = os.path.join(upstream.state, "up1")
    s.sendall(b"PUT /upload?marker=up1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB)
    block = b"u" * (1 << 20)
    seen_before_end = False
    for i in range(1024):
        if i == 1023:
            seen_before_end = os.path.exists(marker)
        s.sendall(block)
    resp = b""
    while b"\r\n\r\n" not in resp or not resp.rstrip().endswith(b"}"):
        d = s.recv(65536)
        if not d:
            break
        resp += d
    s.close()
    assert b" 200 " in resp.split(b"\r\n")[0]
    body = json.loads(resp.split(b"\r\n\r\n", 1)[1])
    assert body["body_len"] == GIB
    assert seen_before_end, "upstream saw no byte before the upload ended"
    print("1 GiB upload: tracebridge VmHWM %d KiB" % _rss_kib(proxy.pid))
    assert _rss_kib(proxy.pid) < 64 * 1024


def test_1gib_download_streams_with_bounded_memory(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    s.sendall(b"GET /download?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % GIB)
    got = 0
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(65536)
    h, rest = head.split(b"\r\n\r\n", 1)
    got = len(rest)
    # read slowly at first so the proxy has to apply backpressure
    time.sleep(0.5)
    while got < GIB:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)
    s.close()
    assert got == GIB
    print("1 GiB download: tracebridge VmHWM %d KiB" % _rss_kib(proxy.pid))
    assert _rss_kib(proxy.pid) < 64 * 1024


def test_metrics_and_healthz(proxy, conn_to):
    conn_to(proxy.port).request("GET", "/m")
    base = "http://127.0.0.1:%d" % proxy.admin
    assert urllib.request.urlopen(base + "/healthz").read() == b"ok\n"
    m = urllib.request.urlopen(base + "/metrics").read().decode()
    assert 'tracebridge_requests_total{listener="api",code="2xx"}' in m
    assert "tracebridge_request_duration_seconds_bucket" in m
    assert "tracebridge_connections_active" in m


def test_access_log_line(proxy, conn_to):
    conn_to(proxy.port).request("GET", "/logged?q=1", headers=[("User-Agent", "ua/1")])
    time.sleep(0.2)
    text = open(proxy.access_path).read()
    line = [l for l in text.splitlines() if "/logged?q=1" in l][0]
    assert '"GET /logged?q=1 HTTP/1.1" 200' in line
    assert '"ua/1"' in line
    assert "127.0.0.1:%s" % proxy.fmt["upstream"].rsplit(":", 1)[1] in line


def _metric(proxy, name):
    for line in metrics_text(proxy).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_reused_connection_failure_is_retried_once(make_proxy, upstream, conn_to):
    conf = BASIC_CONF.replace("workers = 2", "workers = 1")
    p = make_proxy(conf, upstream=upstream.url)
    c = conn_to(p.port)
    first = c.request("GET", "/arm-drop")
    assert first.status == 200
    r = c.request("GET", "/after-drop")
    assert r.status == 200
    assert r.header("X-Conn-Id") != first.header("X-Conn-Id")
    assert _metric(p, 'tracebridge_upstream_errors_total{kind="retried"}') == 1
    # a non-idempotent request is not retried: it gets a 502
    c.request("GET", "/arm-drop")
    r = c.request("POST", "/post-after-drop", body=b"x")
    assert r.status == 502


def test_proxy_authorization_and_x_forwarded_switches(make_proxy, upstream, conn_to):
    conf = BASIC_CONF + ("keep_proxy_authorization = true\nx_forwarded = false\n"
                         "trusted_proxies = 127.0.0.1\n")
    p = make_proxy(conf, upstream=upstream.url)
    r = conn_to(p.port).request("GET", "/sw", headers=[
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("X-Forwarded-For", "10.1.1.1")])
    hdr = {k.lower(): v for k, v in r.json()["headers"]}
    assert hdr["proxy-authorization"] == "Basic Zm9vOmJhcg=="
    assert hdr["x-forwarded-for"] == "10.1.1.1"
    assert "x-forwarded-proto" not in hdr and "x-forwarded-host" not in hdr


def test_max_connections_pauses_accept(make_proxy, upstream, conn_to):
    conf = BASIC_CONF.replace("workers = 2", "workers = 1").replace(
        "drain_timeout = 5", "drain_timeout = 5\nmax_connections = 2")
    p = make_proxy(conf, upstream=upstream.url)
    a, b = conn_to(p.port), conn_to(p.port)
    assert a.request("GET", "/a").status == 200
    assert b.request("GET", "/b").status == 200
    c = conn_to(p.port, timeout=0.5)     # accepted by the kernel, not by us
    c.send(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(OSError):
        c.response()
    a.close()
    c.sock.settimeout(5)
    assert c.response().status == 200


def test_idle_pooled_connection_closed_by_server_is_counted(proxy, conn_to):
    """An upstream ending keep-alive on an idle pooled connection: closed at
    once, counted by cause, and not taken for stray bytes."""
    def m(k):
        return metrics(proxy).get(k, 0)
    eof = 'tracebridge_upstream_pool_closed_total{reason="eof"}'
    before, stray = m(eof), m("tracebridge_upstream_pool_stray_total")
    r = conn_to(proxy.port).request("GET", "/close-idle")
    assert r.status == 200 and r.body == b"ok"
    wait_for(lambda: m(eof) == before + 1, 10, "the idle close counted")
    assert m("tracebridge_upstream_pool_stray_total") == stray
    # the next request gets a fresh connection, not the closed one
    assert conn_to(proxy.port).request("GET", "/after").status == 200
