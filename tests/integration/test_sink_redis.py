"""The Redis span sink against real redis-server, redis-sentinel and
osprofiler (issue 4). Drives tests/unit/tb_sink_driver (found under
$TB_BUILDDIR, default the repository root); run with
/usr/bin/python3 -m pytest tests/integration/test_sink_redis.py.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import unquote_to_bytes

import pytest

from conftest import (BAD_SENTINEL_ANSWERS, BASIC_CONF, BUILDDIR, Conn,
                      FakeResp, FakeSentinel, free_port, metrics, osprofiler,
                      resp_bulk, sentinel_setup, wait_for)

DRIVER = os.path.join(BUILDDIR, "tests", "unit", "tb_sink_driver")

redis = pytest.importorskip("redis")
if not os.access(DRIVER, os.X_OK):
    pytest.skip("driver not built: %s" % DRIVER, allow_module_level=True)
if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)


def driver(*args, timeout=60, check=True):
    """Run the driver; returns (counters dict, stdout lines, stderr)."""
    p = subprocess.run([DRIVER] + [str(a) for a in args], capture_output=True,
                       timeout=timeout, text=True, errors="replace")
    if check:
        assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    stats = json.loads(lines[0]) if lines and lines[0].startswith("{") \
        else None
    return stats, lines, p.stderr


def driver_bg(*args):
    return subprocess.Popen([DRIVER] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return json.loads(out.splitlines()[0]), err


def accounted(st):
    return (st["recorded"] + st["dropped_buffer_full"] + st["dropped_format"]
            + st["dropped_redis_error"] + st["dropped_shutdown"]
            + st["buffered"])


def trace_ids(client, base_id):
    """trace_id -> number of start notifications in the list."""
    seen = {}
    for raw in client.lrange("osprofiler_opt:" + base_id, 0, -1):
        n = json.loads(raw)
        if n["name"].endswith("-start"):
            seen[n["trace_id"]] = seen.get(n["trace_id"], 0) + 1
    return seen


# ---- the format, checked against osprofiler itself ----

TARGETS = [
    "/v3/auth/tokens?nocatalog",
    "/v2.1/servers/detail?limit=1&marker=a%20b",
    "/a%2Fb%2/%zz/%C3%A9/~x_y-z.!$&'()*+,;=:@[]?q=%E2%82%AC&x=\"y\"",
    "/",
]


def osprofiler_notifications(server, target, method):
    """What osprofiler's real WsgiMiddleware + redis driver store for one
    request with this raw target (environ built as a WSGI server does)."""
    from oslo_config import cfg
    from osprofiler import _utils, notifier, opts, web

    conf = cfg.ConfigOpts()
    opts.set_defaults(conf, enabled=True, hmac_keys="SECRET_KEY")
    conf([])

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    mw = web.WsgiMiddleware(app, hmac_keys="SECRET_KEY", enabled=True)
    base = "6c1a9a5e-1b2c-4d3e-8f40-%012x" % (abs(hash(target)) % (1 << 48))
    info, hmac = _utils.signed_pack({"base_id": base, "parent_id": base},
                                    "SECRET_KEY")
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query, "SERVER_NAME": "api", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": None, "wsgi.errors": None,
        "HTTP_X_TRACE_INFO": info, "HTTP_X_TRACE_HMAC": hmac,
    }
    # osprofiler's notifier and web state are process-wide: restore them, or
    # a later test's in-process middleware writes to this (stopped) Redis
    saved = notifier.get()
    notifier.set(notifier.create(server.url, project="demo", service="api",
                                 host="h1", conf=conf))
    web.enable("SECRET_KEY")
    try:
        list(mw(environ, lambda *a: None))
    finally:
        web.disable()
        notifier.set(saved)
    raw = [r.decode() for r in
           reversed(server.client().lrange("osprofiler_opt:" + base, 0, -1))]
    return [json.loads(r, object_pairs_hook=list) for r in raw], raw


def is_subsequence(small, big):
    it = iter(big)
    return all(k in it for k in small)


@pytest.mark.parametrize("target", TARGETS)
def test_format_matches_osprofiler(servers, target):
    r = servers("redis")
    theirs, theirs_raw = osprofiler_notifications(r, target, "POST")
    assert [n[0][1] for n in theirs] == ["wsgi-start", "wsgi-stop"]

    _, lines, _ = driver("--print", "--name", "wsgi", "--project", "demo",
                         "--service", "api", "--host", socket.gethostname(), "--target",
                         target, "--method", "POST")
    ours = [json.loads(line, object_pairs_hook=list) for line in lines[:2]]
    for t, o in zip(theirs, ours):
        # same top-level keys in the same order
        assert [k for k, _ in o] == [k for k, _ in t]
        td, od = dict(t), dict(o)
        for k in ("name", "project", "service"):
            assert od[k] == td[k]
        # info: osprofiler's keys first-to-last in our order, same values
        ti, oi = dict(td["info"]), dict(od["info"])
        assert is_subsequence([k for k, _ in td["info"]],
                              [k for k, _ in od["info"]])
        assert oi["host"] == ti["host"]
        if "request" in ti:
            # exact: request.path is webob's quoting, query the raw string
            assert od["info"][0] == td["info"][0]
    # byte for byte: the request object (webob's quoting, json.dumps'
    # separators and escaping) is the same text
    req = re.compile(r'"request": \{[^}]*\}')
    assert req.search(lines[0]).group(0) == req.search(theirs_raw[0]).group(0)


def test_trace_show_and_list(servers):
    r = servers("redis")
    base = "0f1e2d3c-4b5a-4697-8899-aabbccddeeff"
    st, _, _ = driver("--url", r.url, "--n", 1, "--base", base,
                      "--user-agent", "ua \"\x01\u20ac")
    assert st["recorded"] == 1 and accounted(st) == 1
    raw = r.client().lrange("osprofiler_opt:" + base, 0, -1)
    assert [json.loads(x)["name"] for x in raw] == ["proxy-stop",
                                                    "proxy-start"]
    report = json.loads(osprofiler("trace", "show", "--connection-string",
                                   r.url, base, "--json"))
    roots = report["children"]
    assert len(roots) == 1
    root = roots[0]
    assert root["info"]["name"] == "proxy"
    assert root["info"]["project"] == "tracebridge"
    assert root["info"]["service"] == "public"
    assert root["info"]["host"] == "edge1"
    assert root["parent_id"] == base
    start = root["info"]["meta.raw_payload.proxy-start"]
    assert start["info"]["request"] == {
        "path": "/v3/auth/tokens", "query": "nocatalog=1",
        "method": "GET", "scheme": "http"}
    assert start["info"]["user_agent"] == "ua \"\x01\u20ac"
    assert root["info"]["finished"] >= root["info"]["started"]
    listing = osprofiler("trace", "list", "--connection-string", r.url)
    assert base in listing


def test_error_trace(servers):
    r = servers("redis")
    base = "e0e0e0e0-4b5a-4697-8899-aabbccddeeff"
    st, _, _ = driver("--url", r.url, "--n", 2, "--base", base,
                      "--filter-error", "--errors-every", 1)
    assert st["recorded"] == 2
    marker = json.loads(r.client().get("osprofiler_error:" + base))
    assert list(marker) == ["base_id", "timestamp"]
    assert marker["base_id"] == base
    # type=bool in osprofiler's CLI: any non-empty value means true
    assert base in osprofiler("trace", "list", "--connection-string", r.url,
                              "--error-trace", "1")
    report = json.loads(osprofiler("trace", "show", "--connection-string",
                                   r.url, base, "--json"))
    stop = report["children"][0]["info"]["meta.raw_payload.proxy-stop"]
    assert stop["info"]["etype"] == "UpstreamUnavailable"
    # without filter_error_trace: no marker, like osprofiler
    base2 = "e1e1e1e1-4b5a-4697-8899-aabbccddeeff"
    driver("--url", r.url, "--n", 1, "--base", base2, "--errors-every", 1)
    assert r.client().get("osprofiler_error:" + base2) is None


def test_outage_exact_accounting(servers):
    r = servers("redis", extra=["--appendonly", "yes",
                                "--appendfsync", "always"])
    base = "0a7a6e00-4b5a-4697-8899-aabbccddeeff"
    n = 3000
    p = driver_bg("--url", r.url, "--n", n, "--rate", 1000, "--base", base,
                  "--drain", 30)
    time.sleep(1.0)
    r.stop()                    # SIGTERM: AOF flushed, clients cut
    time.sleep(1.0)
    r.start()                   # same dir, same port: data comes back
    st, err = finish(p)
    assert st["submitted"] == n
    assert accounted(st) == n
    assert st["buffered"] == 0
    assert st["reconnects"] >= 1
    seen = trace_ids(r.client(), base)
    # every recorded span is in Redis exactly once or, when its reply was
    # lost with the connection, twice (documented in sink_redis.h)
    assert len(seen) == st["recorded"]
    assert all(c in (1, 2) for c in seen.values())
    idx = sorted(int(t.rsplit("-", 1)[1], 16) for t in seen)
    assert idx[0] < 500 and idx[-1] >= n - 1
    # nothing was lost: spans from during the outage waited in the buffer
    assert st["recorded"] == n, st


def test_frozen_redis_never_blocks(servers):
    """A Redis that accepts connections but never answers (SIGSTOP): the
    command timeout cuts the connection, spans wait, the loop keeps
    running, and after SIGCONT everything is recorded."""
    r = servers("redis")
    base = "f502e000-4b5a-4697-8899-aabbccddeeff"
    n = 2000
    p = driver_bg("--url", r.url, "--n", n, "--rate", 500, "--base", base,
                  "--command-timeout", 0.3, "--connect-timeout", 0.3,
                  "--drain", 30)
    time.sleep(1.0)
    r.proc.send_signal(signal.SIGSTOP)
    time.sleep(2.0)
    r.proc.send_signal(signal.SIGCONT)
    st, err = finish(p)
    assert accounted(st) == n and st["buffered"] == 0
    assert st["recorded"] == n
    assert st["reconnects"] >= 1
    assert "command timeout" in err
    # the loop was never held up by Redis (1 ms ticks; generous bound)
    assert st["max_tick_gap_ms"] < 250, st
    seen = trace_ids(r.client(), base)
    # every span is there; one re-sent after a timeout may be there more
    # than once (Redis still executes what a dead connection sent)
    assert len(seen) == n


def test_read_only_replica_keeps_spans(servers):
    """READONLY (a replica, e.g. a demoted master) is not a reason to drop:
    spans wait and go in once the server accepts writes."""
    m = servers("master")
    rep = servers("replica", extra=["--replicaof", "127.0.0.1", str(m.port)])
    base = "4ead0000-4b5a-4697-8899-aabbccddeeff"
    p = driver_bg("--url", rep.url, "--n", 20, "--base", base,
                  "--drain", 20)
    time.sleep(1.0)
    rep.client().execute_command("REPLICAOF", "NO", "ONE")
    st, err = finish(p)
    assert st["recorded"] == 20 and accounted(st) == 20
    assert st["dropped_redis_error"] == 0
    assert "READONLY" in err
    assert len(trace_ids(rep.client(), base)) == 20


def test_tiny_buffer_bounded(servers):
    port = free_port()          # nothing listens there
    st, _, err = driver("--url", "redis://127.0.0.1:%d" % port, "--n", 5000,
                        "--buffer", 20000, "--drain", 0.5)
    assert st["recorded"] == 0
    assert st["max_buffer_bytes"] <= 20000
    assert st["dropped_buffer_full"] > 4900
    # the counters are printed before the sink is freed: what is still
    # buffered then becomes dropped{reason="shutdown"}
    assert st["buffered"] > 0 and st["dropped_shutdown"] == 0
    assert accounted(st) == 5000
    assert "connect to 127.0.0.1:%d failed" % port in err


def test_span_ttl(servers):
    r = servers("redis")
    base = "7717e000-4b5a-4697-8899-aabbccddeeff"
    driver("--url", r.url, "--n", 1, "--base", base, "--ttl", 100,
           "--filter-error", "--errors-every", 1)
    c = r.client()
    assert 0 < c.ttl("osprofiler_opt:" + base) <= 100
    assert 0 < c.ttl("osprofiler_error:" + base) <= 100
    base2 = "7717e001-4b5a-4697-8899-aabbccddeeff"
    driver("--url", r.url, "--n", 1, "--base", base2)
    assert c.ttl("osprofiler_opt:" + base2) == -1      # osprofiler: forever


def test_unix_socket_and_db(servers, tmp_path):
    sock = str(tmp_path / "r.sock")
    r = servers("redis", extra=["--unixsocket", sock])
    base = "50c4e700-4b5a-4697-8899-aabbccddeeff"
    st, _, _ = driver("--url", "unix://%s?db=3" % sock, "--n", 5,
                      "--base", base)
    assert st["recorded"] == 5
    assert r.client(db=3).llen("osprofiler_opt:" + base) == 10
    assert r.client(db=0).llen("osprofiler_opt:" + base) == 0


def test_password(servers):
    r = servers("redis", extra=["--requirepass", "s3cr3t:pw"])
    base = "9a55e000-4b5a-4697-8899-aabbccddeeff"
    st, _, err = driver("--url", "redis://:s3cr3t%%3Apw@127.0.0.1:%d/2"
                        % r.port, "--n", 3, "--base", base)
    assert st["recorded"] == 3
    assert r.client(db=2, password="s3cr3t:pw").llen(
        "osprofiler_opt:" + base) == 6
    st, _, err = driver("--url", "redis://:wrong@127.0.0.1:%d" % r.port,
                        "--n", 3, "--drain", 0.5)
    assert st["recorded"] == 0 and accounted(st) == 3
    assert "refused the handshake" in err
    assert "wrong" not in err and "s3cr3t" not in err


@pytest.mark.parametrize("url,why", [
    ("http://127.0.0.1:6379", "expected a redis://"),
    ("redis://:6379", "missing host"),
    ("redis://h:99999", "port must be"),
    ("redis://h/x", "db number"),
    ("redis://secret@h", "credentials"),
    ("unix://relative", "absolute path"),
])
def test_bad_connection_strings(url, why):
    p = subprocess.run([DRIVER, "--url", url], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 3
    assert "connection string: " in p.stderr and why in p.stderr
    assert "secret" not in p.stderr


def test_host_name(servers):
    """A name goes through evdns (hiredis would block in getaddrinfo)."""
    r = servers("redis")
    base = "10ca1105-4b5a-4697-8899-aabbccddeeff"
    st, _, _ = driver("--url", "redis://localhost:%d" % r.port, "--n", 3,
                      "--base", base)
    assert st["recorded"] == 3
    assert r.client().llen("osprofiler_opt:" + base) == 6


def test_metrics(servers):
    r = servers("redis")
    _, lines, _ = driver("--url", r.url, "--n", 10, "--metrics")
    text = "\n".join(lines[1:])
    assert "tracebridge_spans_recorded_total 10" in text
    assert 'tracebridge_spans_dropped_total{reason="buffer_full"} 0' in text
    assert "tracebridge_span_buffer_bytes 0" in text
    assert "tracebridge_redis_connected 1" in text
    assert "tracebridge_redis_reconnects_total 0" in text


def test_sentinel_failover(servers):
    m, rep, s = sentinel_setup(servers)
    base = "5e471e10-4b5a-4697-8899-aabbccddeeff"
    n = 1200
    p = driver_bg("--url", "redissentinel://127.0.0.1:%d" % s.port,
                  "--socket-timeout", 0.5, "--n", n, "--rate", 150,
                  "--base", base, "--drain", 20, "--metrics")
    wait_for(lambda: m.client().llen("osprofiler_opt:" + base) > 0, 5,
             "spans on the first master")
    time.sleep(0.5)
    m.stop(signal.SIGKILL)
    wait_for(lambda: rep.client().info("replication")["role"] == "master",
             20, "failover to the replica")
    out, err = p.communicate(timeout=40)
    assert p.returncode == 0, err
    lines = out.splitlines()
    st = json.loads(lines[0])
    assert accounted(st) == n
    assert st["buffered"] == 0
    assert st["master"] == "127.0.0.1:%d" % rep.port
    assert 'tracebridge_redis_master{addr="127.0.0.1:%d"} 1' % rep.port \
        in "\n".join(lines[1:])
    seen = trace_ids(rep.client(), base)
    idx = sorted(int(t.rsplit("-", 1)[1], 16) for t in seen)
    # spans from after the failover reached the new master
    assert idx and idx[-1] == n - 1
    late = [i for i in idx if i >= n - 300]
    assert len(late) == 300


def test_sentinel_switch_master_while_connected(servers):
    """A failover while our connection is healthy (SENTINEL FAILOVER): the
    +switch-master message (or the READONLY answer of the demoted master)
    moves the sink to the new master; nothing is dropped."""
    m, rep, s = sentinel_setup(servers)
    base = "5e471e11-4b5a-4697-8899-aabbccddeeff"
    n = 900
    p = driver_bg("--url", "redissentinel://127.0.0.1:%d" % s.port,
                  "--socket-timeout", 0.5, "--n", n, "--rate", 150,
                  "--base", base, "--drain", 20)
    wait_for(lambda: m.client().llen("osprofiler_opt:" + base) > 0, 5,
             "spans on the first master")
    time.sleep(0.5)
    s.client().execute_command("SENTINEL", "FAILOVER", "mymaster")
    wait_for(lambda: rep.client().info("replication")["role"] == "master",
             20, "failover to the replica")
    st, err = finish(p)
    assert accounted(st) == n and st["buffered"] == 0
    assert st["dropped_redis_error"] == 0 and st["dropped_buffer_full"] == 0
    assert st["master"] == "127.0.0.1:%d" % rep.port
    seen = trace_ids(rep.client(), base)
    late = [i for i in (int(t.rsplit("-", 1)[1], 16) for t in seen)
            if i >= n - 300]
    assert len(late) == 300


# ---- a faulty Redis or sentinel in front of the real binary (issue 13) ----

# one worker: one span writer, one connection to the fake
PROXY_CONF = BASIC_CONF.replace("workers = 2\n", "workers = 1\n") + """
[profiler]
enabled = true
hmac_keys = SECRET_KEY
connection_string = {redis}
socket_timeout = 1

[tracing]
sample_new = true
"""


def proxied_span(proxy):
    """One request through proxy; its base id (its two notifications go to
    osprofiler_opt:<base id>)."""
    c = Conn(proxy.port)
    try:
        r = c.request("GET", "/v3")
    finally:
        c.close()
    assert r.status == 200
    return r.header("X-Trace-Id")


def test_unusable_sentinel_answers_then_spans(servers, fakes, upstream,
                                              make_proxy):
    """One unusable sentinel answer (port 0, -1, 70000, not a number, a
    10 KB host or port, the wrong type or element count) stopped span
    delivery for good, silently. Each is now logged with the sentinel's
    name and a few bytes of the value, counted by reason, and followed by
    the other sentinels, a round of them by the backoff; the first usable
    answer is followed and the spans arrive."""
    r = servers("redis")
    answers = [a for a, _ in BAD_SENTINEL_ANSWERS]
    sents = [fakes(FakeSentinel, answers, r.port) for _ in range(4)]
    url = "redissentinel://" + ",".join("127.0.0.1:%d" % s.port
                                        for s in sents)
    p = make_proxy(PROXY_CONF, upstream=upstream.url, redis=url)
    base = proxied_span(p)
    c = r.client()
    wait_for(lambda: c.llen("osprofiler_opt:" + base) == 2, 20,
             "the span in Redis")
    assert not answers
    m = metrics(p)
    for reason in ("unknown_master", "error_reply", "reply_type",
                   "element_count", "host", "port"):
        want = sum(1 for _, why in BAD_SENTINEL_ANSWERS if why == reason)
        assert m['tracebridge_redis_sentinel_unusable_answers_total'
                 '{reason="%s"}' % reason] == want, reason
    assert m["tracebridge_redis_connected"] == 1
    # 8 answers, 4 sentinels: each asked in turn, twice, then the first
    assert [s.asked(b"SENTINEL") for s in sents] == [3, 2, 2, 2]
    lines = [ln for ln in p.logtext().splitlines()
             if "unusable answer for master mymaster" in ln]
    assert len(lines) == len(BAD_SENTINEL_ANSWERS)
    assert all("[warn]" in ln for ln in lines)
    for s in sents:
        assert any("sentinel 127.0.0.1:%d:" % s.port in ln for ln in lines)
    # a few bytes of the value, never 10 KB of it
    assert all(len(ln) < 300 for ln in lines)
    assert sum(ln.endswith("... (10240 bytes)") for ln in lines) == 2
    assert any('port is not a number in 1..65535: "70000"' in ln
               for ln in lines)
    base2 = proxied_span(p)
    wait_for(lambda: c.llen("osprofiler_opt:" + base2) == 2, 5,
             "a later span in Redis")


def test_oversized_reply_cut_off(servers, fakes, upstream, make_proxy):
    """A Redis answering "$1000000000" and then 400 MiB raised the proxy's
    RSS from 8 MB to 417 MB. The sink expects replies of a few bytes:
    past 64 KiB the connection is closed (logged, counted), memory stays
    put, and the next connection (relayed to a real redis-server) takes
    the span."""
    r = servers("redis")
    sent = {"bytes": 0, "cut": False}

    def bomb(fake, n, args, s):
        s.sendall(b"$1000000000\r\n")
        chunk = b"x" * (1 << 20)
        try:
            while sent["bytes"] < 400 << 20:
                s.sendall(chunk)
                sent["bytes"] += len(chunk)
        except OSError:
            sent["cut"] = True
        return False

    f = fakes(FakeResp, bomb, relay_to=r.port, relay_after=1)
    p = make_proxy(PROXY_CONF, upstream=upstream.url,
                   redis="redis://127.0.0.1:%d" % f.port)
    hwm0 = p.status("VmHWM")
    base = proxied_span(p)
    c = r.client()
    wait_for(lambda: c.llen("osprofiler_opt:" + base) == 2, 20,
             "the span in the real Redis")
    assert f.commands[0][0] == b"LPUSH" and f.conns == 2
    hwm = p.status("VmHWM")
    assert hwm - hwm0 < 32 * 1024, (hwm0, hwm)     # kB
    # cut off early: what the fake got rid of sat in socket buffers
    assert sent["cut"] and sent["bytes"] < 64 << 20, sent
    m = metrics(p)
    assert m['tracebridge_redis_replies_refused_total{reason="too_large"}'] \
        == 1
    assert m["tracebridge_redis_connected"] == 1
    assert "127.0.0.1:%d sent a reply larger than 65536 bytes; closing " \
        "the connection" % f.port in p.logtext()


REFUSED = 'tracebridge_redis_replies_refused_total{reason="%s"}'


def assert_refused_once(p, reason, line):
    """p is still up and connected, refused one reply of a shape hiredis
    0.14.1 aborts on, for reason (and none for the other), and logged
    line; no assert fired."""
    assert p.proc.poll() is None
    m = metrics(p)
    for why in ("unexpected_reply", "bad_pubsub_reply"):
        assert m[REFUSED % why] == (why == reason), why
    assert m["tracebridge_redis_connected"] == 1
    log = p.logtext()
    assert line in log
    assert "Assertion" not in log


def test_reply_too_many_refused_not_aborted(servers, fakes, upstream,
                                            make_proxy):
    """A Redis answering an LPUSH with two replies (":1\\r\\n:1\\r\\n")
    aborted the proxy: hiredis 0.14.1 asserts on a reply that no command
    waits for (async.c:478). The extra reply is refused instead: the
    connection is closed (logged, counted), the proxy lives on, and the
    next connection (relayed to a real redis-server) takes the spans."""
    r = servers("redis")

    def twice(fake, n, args, s):
        s.sendall(b":1\r\n:1\r\n")

    f = fakes(FakeResp, twice, relay_to=r.port, relay_after=1)
    p = make_proxy(PROXY_CONF, upstream=upstream.url,
                   redis="redis://127.0.0.1:%d" % f.port)
    proxied_span(p)
    wait_for(lambda: metrics(p)[REFUSED % "unexpected_reply"] == 1, 20,
             "the extra reply refused")
    base = proxied_span(p)
    c = r.client()
    wait_for(lambda: c.llen("osprofiler_opt:" + base) == 2, 20,
             "a later span in the real Redis")
    assert f.commands[0][0] == b"LPUSH" and f.conns == 2
    assert_refused_once(p, "unexpected_reply", "127.0.0.1:%d sent an "
                        "unexpected reply (no command waits for it); "
                        "closing the connection" % f.port)


def test_sentinel_bad_pubsub_message_refused_not_aborted(servers, fakes,
                                                         upstream,
                                                         make_proxy):
    """A sentinel whose +switch-master feed sends a one-element pub/sub
    reply ("*1\\r\\n$7\\r\\nmessage\\r\\n") aborted the proxy in hiredis
    0.14.1 (async.c:378). It is refused: logged, counted, the sentinel
    asked again; the connection to the master stays and spans arrive."""
    r = servers("redis")

    def sentinel(fake, n, args, s):
        cmd = args[0].upper()
        if cmd == b"SENTINEL":
            s.sendall(b"*2\r\n" + resp_bulk(b"127.0.0.1") +
                      resp_bulk(b"%d" % r.port))
        elif cmd == b"SUBSCRIBE":
            s.sendall(b"*3\r\n" + resp_bulk(b"subscribe") +
                      resp_bulk(args[1]) + b":1\r\n")
            if n == 0:
                s.sendall(b"*1\r\n" + resp_bulk(b"message"))
        else:
            s.sendall(b"-ERR unknown command\r\n")

    f = fakes(FakeResp, sentinel)
    p = make_proxy(PROXY_CONF, upstream=upstream.url,
                   redis="redissentinel://127.0.0.1:%d" % f.port)
    wait_for(lambda: metrics(p)[REFUSED % "bad_pubsub_reply"] == 1, 20,
             "the bad pub/sub reply refused")
    wait_for(lambda: f.asked(b"SUBSCRIBE") == 2, 20, "subscribed again")
    base = proxied_span(p)
    c = r.client()
    wait_for(lambda: c.llen("osprofiler_opt:" + base) == 2, 20,
             "the span in Redis")
    assert_refused_once(p, "bad_pubsub_reply", "sentinel 127.0.0.1:%d sent "
                        "a bad pub/sub reply (not an array of three "
                        "elements); asking the next one" % f.port)
