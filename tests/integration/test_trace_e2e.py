"""Trace context through the proxy, end to end (issue 3).

Real clients, real proxy, real OpenStack middleware:
- the incoming trace headers are made by the OpenTelemetry JavaScript
  propagators from npm (tests/integration/node/inject.js): W3C with
  tracestate, B3 single and multi, Jaeger, AWS X-Ray;
- tracebridge itself (the built binary, [profiler] enabled = true);
- the upstream is wsgi_app.py: a WSGI app wrapped by osprofiler's real
  WsgiMiddleware and redis notifier, answering with the headers it received
  and osprofiler's profiler state;
- forged and valid X-Trace-Info/X-Trace-HMAC are made by osprofiler's own
  osprofiler._utils.signed_pack;
- a real redis-server stores the spans of both.

Covered: each client format sampled and unsampled (the app continues the
trace with base_id = the client's trace id and parent_id = tracebridge's
edge span, whose low 64 bits are the forwarded traceparent's parent-id; the
client's headers are removed; Server-Timing and X-Trace-Id); forged,
tampered, extra-key and wrong-key osprofiler headers (never forwarded,
counted in /metrics) next to valid ones (continued, also with the second
key of hmac_keys, re-signed with the first, also after a SIGHUP rotation);
no incoming context with sample_new true/false; extra inject formats and
request ids; baggage; keep_foreign_headers; the access log; error replies;
keep-alive and parallel requests. The benchmark is bench/trace_overhead.sh.

Run: TB_BUILDDIR=BUILD /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_trace_e2e.py
The npm packages are installed with "npm ci" into tests/integration/node/
node_modules when missing; the tests needing them skip only if npm or node
is absent.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import Conn, RedisServer, WsgiApp, free_port, metrics_text

osprofiler = pytest.importorskip("osprofiler")
redis_mod = pytest.importorskip("redis")
from osprofiler import _utils  # noqa: E402

if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")

# Every header name a trace format owns (lowercase, as the WSGI app shows
# them), to check that only the injected formats reach the app.
TRACE_HEADERS = {
    "traceparent", "tracestate", "baggage", "b3", "x-b3-traceid",
    "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
    "uber-trace-id", "x-amzn-trace-id", "x-trace-info", "x-trace-hmac",
    "x-datadog-trace-id", "x-datadog-parent-id",
    "x-datadog-sampling-priority", "x-datadog-origin", "x-datadog-tags",
    "x-cloud-trace-context", "ot-tracer-traceid", "ot-tracer-spanid",
    "ot-tracer-sampled",
}
TRACE_PREFIXES = ("uberctx-", "ot-baggage-")

CONF = """
[DEFAULT]
workers = 2
log_level = info
access_log = {access}
drain_timeout = 2

[admin]
listen = 127.0.0.1:{admin}

[listener:api]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = api
upstream_timeout = 5
upstream_connect_timeout = 1
client_header_timeout = 2

[profiler]
enabled = true
hmac_keys = {keys}
connection_string = redis://127.0.0.1:{redis}

[tracing]
keep_foreign_headers = {keep_foreign}
{tracing}

[sampling]
forced_max_per_second = 0
incoming_max_per_second = 0
"""


# --- processes -------------------------------------------------------------

@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = RedisServer(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def app(redis):
    """The service behind tracebridge, trusting SECRET_KEY only."""
    a = WsgiApp(redis.url, "SECRET_KEY", service="app")
    yield a
    a.stop()


@pytest.fixture(scope="module")
def app_newkey(redis):
    """A service that already switched to NEWKEY only (key rotation)."""
    a = WsgiApp(redis.url, "NEWKEY", service="app")
    yield a
    a.stop()


@pytest.fixture(scope="module")
def node_inject():
    """The OpenTelemetry JS propagators: returns inject(trace, span,
    sampled, fmt, tracestate=None) -> {header: value}."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: cannot run the OpenTelemetry JS propagators")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@opentelemetry")):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       check=True, stdout=subprocess.DEVNULL, timeout=300)

    def inject(trace, span, sampled, fmt, tracestate=None, baggage=None):
        args = [node, os.path.join(NODE_DIR, "inject.js"), trace, span,
                "1" if sampled else "0", fmt, tracestate or "-"]
        if baggage:
            args.append(baggage)
        out = subprocess.run(args, check=True, capture_output=True, text=True,
                             timeout=30).stdout
        return json.loads(out)
    return inject


@pytest.fixture
def tb(make_proxy, redis, app):
    """Start tracebridge in front of `upstream` (default: the SECRET_KEY app)."""
    def start(tracing="sample_new = false", keys="SECRET_KEY", upstream=None,
              keep_foreign="false"):
        return make_proxy(CONF, upstream=upstream or app.url, redis=redis.port,
                          keys=keys, tracing=tracing, keep_foreign=keep_foreign)
    return start


# --- helpers ---------------------------------------------------------------

def rand_hex(nbytes):
    while True:
        h = os.urandom(nbytes).hex()
        if int(h, 16) != 0:
            return h


def as_uuid(hex_id):
    """osprofiler's id mapping: a 64-bit id is the low half of a uuid."""
    return str(uuid.UUID(hex_id.rjust(32, "0")))


def low64(u):
    return "%016x" % (uuid.UUID(u).int & (2 ** 64 - 1))


def send(port, headers=(), path="/v3/projects"):
    c = Conn(port)
    try:
        r = c.request("GET", path, headers=list(headers))
    finally:
        c.close()
    assert r.status == 200, r.raw_head
    return r, r.json()


def trace_headers(seen):
    return {k: v for k, v in seen["headers"].items()
            if k in TRACE_HEADERS or k.startswith(TRACE_PREFIXES)}


def check_signed(seen, key, base_id, parent_id):
    """The X-Trace-Info/HMAC the app got: exactly osprofiler's form, signed
    with key."""
    info = seen["headers"]["x-trace-info"]
    mac = seen["headers"]["x-trace-hmac"]
    assert mac == hmac.new(key.encode(), info.encode(), hashlib.sha1).hexdigest()
    assert json.loads(base64.urlsafe_b64decode(info)) == {
        "base_id": base_id, "parent_id": parent_id}


def metric(tb_proxy, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), metrics_text(tb_proxy), re.M)
    assert m, "%s missing from /metrics" % name
    return int(m.group(1))


def notifications(redis, base_id, want, timeout=5.0):
    """The osprofiler notifications stored for base_id, once `want` of them
    are there (bounded wait: spans are written asynchronously)."""
    end = time.time() + timeout
    while True:
        items = [json.loads(x) for x in redis.db.lrange("osprofiler_opt:" + base_id, 0, -1)]
        if len(items) >= want or time.time() > end:
            return items
        time.sleep(0.05)


def access_line(proxy, needle, timeout=3.0):
    end = time.time() + timeout
    while True:
        try:
            with open(proxy.access_path) as f:
                for line in f:
                    if needle in line:
                        return line
        except FileNotFoundError:
            pass
        if time.time() > end:
            return None
        time.sleep(0.05)


def signed_pack(data, key):
    info, mac = _utils.signed_pack(data, key)
    return info.decode(), mac


# --- 1. headers from real clients -----------------------------------------

# (format, trace id of the client, tracestate)
CLIENT_CASES = [
    ("w3c", None, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    ("b3single", None, None),
    ("b3multi", None, None),
    ("jaeger", None, None),
    ("xray", None, None),
    # a 64-bit trace id (high half zero): base_id 00000000-0000-0000-...
    ("b3multi", "64", None),
    ("jaeger", "64", None),
]


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
@pytest.mark.parametrize("fmt,width,tracestate", CLIENT_CASES,
                         ids=[c[0] + ("-64bit" if c[1] else "") for c in CLIENT_CASES])
def test_real_client_headers(tb, redis, node_inject, fmt, width, tracestate, sampled):
    trace = ("0" * 16 + rand_hex(8)) if width else rand_hex(16)
    span = rand_hex(8)
    client = node_inject(trace, span, sampled, fmt, tracestate)
    p = tb()
    r, seen = send(p.port, client.items())
    base_id = as_uuid(trace)
    got = trace_headers(seen)

    # the client's own headers never reach the app (keep_foreign_headers = false)
    for name, value in client.items():
        if name not in ("traceparent", "tracestate"):
            assert name.lower() not in seen["headers"], (name, seen["headers"])

    tp = got.get("traceparent", "")
    m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])", tp)
    assert m, got
    assert m.group(1) == trace
    edge = m.group(2)
    assert edge != span
    assert r.header("X-Trace-Id") == base_id

    if sampled:
        expect = {"traceparent", "x-trace-info", "x-trace-hmac"}
        if tracestate:
            expect.add("tracestate")
            assert got["tracestate"] == tracestate
        assert set(got) == expect, got
        assert m.group(3) == "01"
        prof = seen["profiler"]
        assert prof is not None, "osprofiler did not continue the trace"
        assert prof["base_id"] == base_id
        # the app's parent is tracebridge's edge span: a uuid4 whose low
        # 64 bits are the parent-id of the forwarded traceparent
        assert low64(prof["parent_id"]) == edge
        assert uuid.UUID(prof["parent_id"]).version == 4
        assert prof["parent_id"] not in (base_id, as_uuid(span))
        check_signed(seen, "SECRET_KEY", base_id, prof["parent_id"])
        assert r.header("Server-Timing") == "trace;desc=00-%s-%s-01" % (trace, edge)

        # one tree in Redis: the client's span -> tracebridge -> wsgi
        notes = notifications(redis, base_id, 4)
        edge_notes = [n for n in notes if n["name"] == "proxy-start"]
        wsgi_notes = [n for n in notes if n["name"] == "wsgi-start"]
        assert len(edge_notes) == 1 and len(wsgi_notes) == 1, notes
        assert edge_notes[0]["trace_id"] == prof["parent_id"]
        assert edge_notes[0]["parent_id"] == as_uuid(span)
        assert wsgi_notes[0]["parent_id"] == prof["parent_id"]
        assert {n["base_id"] for n in notes} == {base_id}
    else:
        expect = {"traceparent"}
        if tracestate:
            expect.add("tracestate")
            assert got["tracestate"] == tracestate
        assert set(got) == expect, got
        assert m.group(3) == "00"
        assert seen["profiler"] is None
        assert r.header("Server-Timing") == "trace;desc=00-%s-%s-00" % (trace, edge)
        time.sleep(0.2)
        assert redis.db.llen("osprofiler_opt:" + base_id) == 0


# Formats without an npm propagator here, written as their clients do:
# dd-trace (decimal 64-bit ids, 128-bit via _dd.p.tid), Google Cloud
# (X-Cloud-Trace-Context, decimal span id), OpenTracing basictracer.
def other_format_cases(trace, span):
    hi, lo = trace[:16], trace[16:]
    return {
        "datadog": [("x-datadog-trace-id", str(int(lo, 16))),
                    ("x-datadog-parent-id", str(int(span, 16))),
                    ("x-datadog-sampling-priority", "1"),
                    ("x-datadog-tags", "_dd.p.tid=" + hi)],
        "datadog-64bit": [("x-datadog-trace-id", str(int(lo, 16))),
                          ("x-datadog-parent-id", str(int(span, 16))),
                          ("x-datadog-sampling-priority", "2")],
        "gcp": [("X-Cloud-Trace-Context", "%s/%d;o=1" % (trace, int(span, 16)))],
        "ot": [("ot-tracer-traceid", trace), ("ot-tracer-spanid", span),
               ("ot-tracer-sampled", "true")],
    }


@pytest.mark.parametrize("fmt", ["datadog", "datadog-64bit", "gcp", "ot"])
def test_other_formats_continued(tb, fmt):
    trace, span = rand_hex(16), rand_hex(8)
    hdrs = other_format_cases(trace, span)[fmt]
    if fmt == "datadog-64bit":
        trace = "0" * 16 + trace[16:]
    p = tb()
    r, seen = send(p.port, hdrs)
    prof = seen["profiler"]
    assert prof is not None and prof["base_id"] == as_uuid(trace)
    got = trace_headers(seen)
    assert set(got) == {"traceparent", "x-trace-info", "x-trace-hmac"}, got
    assert got["traceparent"] == "00-%s-%s-01" % (trace, low64(prof["parent_id"]))
    check_signed(seen, "SECRET_KEY", as_uuid(trace), prof["parent_id"])


def test_keep_foreign_headers(tb, node_inject):
    """keep_foreign_headers = true: formats not injected pass untouched,
    injected ones are still replaced, osprofiler ones always re-signed."""
    p = tb("sample_new = false", keep_foreign="true")
    trace, span = rand_hex(16), rand_hex(8)
    client = node_inject(trace, span, True, "b3multi")
    w3c = node_inject(trace, span, True, "w3c")
    r, seen = send(p.port, list(client.items()) + list(w3c.items()))
    got = trace_headers(seen)
    for k, v in client.items():
        assert got[k] == v
    edge = low64(seen["profiler"]["parent_id"])
    assert got["traceparent"] == "00-%s-%s-01" % (trace, edge)


def test_baggage_from_jaeger_and_w3c(tb, node_inject):
    """Baggage from uberctx-* (Jaeger) and from a W3C baggage header reaches
    the app as one W3C baggage header; the uberctx-* are gone."""
    p = tb()
    trace, span = rand_hex(16), rand_hex(8)
    client = node_inject(trace, span, True, "jaeger", None, "user=alice,tenant=t1")
    r, seen = send(p.port, client.items())
    got = trace_headers(seen)
    assert not [k for k in got if k.startswith("uberctx-")], got
    members = sorted(got["baggage"].split(","))
    assert members == ["tenant=t1", "user=alice"], got
    assert seen["profiler"]["base_id"] == as_uuid(trace)

    client = node_inject(trace, span, False, "w3c", None, "user=bob")
    r, seen = send(p.port, client.items())
    got = trace_headers(seen)
    assert got["baggage"] == "user=bob", got
    assert set(got) == {"traceparent", "baggage"}, got


# --- 2. forged osprofiler headers -----------------------------------------

def forged_cases():
    b, pa = str(uuid.uuid4()), str(uuid.uuid4())
    good_info, good_mac = signed_pack({"base_id": b, "parent_id": pa}, "SECRET_KEY")
    other = str(uuid.uuid4())
    tampered = base64.urlsafe_b64encode(
        json.dumps({"base_id": other, "parent_id": pa}).encode()).decode()
    extra_info, extra_mac = signed_pack(
        {"base_id": b, "parent_id": pa, "sampled": True}, "SECRET_KEY")
    wrong_info, wrong_mac = signed_pack({"base_id": b, "parent_id": pa}, "WRONG_KEY")
    return b, [
        ("unsigned", [("X-Trace-Info", good_info)]),
        ("hmac only", [("X-Trace-HMAC", good_mac)]),
        ("bad signature", [("X-Trace-Info", good_info), ("X-Trace-HMAC", "0" * 40)]),
        ("tampered", [("X-Trace-Info", tampered), ("X-Trace-HMAC", good_mac)]),
        ("extra json key", [("X-Trace-Info", extra_info), ("X-Trace-HMAC", extra_mac)]),
        ("wrong key", [("X-Trace-Info", wrong_info), ("X-Trace-HMAC", wrong_mac)]),
        ("upper-case hmac", [("X-Trace-Info", good_info),
                             ("X-Trace-HMAC", good_mac.upper() + "00")]),
    ]


def test_forged_osprofiler_headers_never_reach_the_app(tb):
    p = tb("sample_new = false")
    b, cases = forged_cases()
    # osprofiler itself must reject each of them (else the case is no forgery)
    for name, hdrs in cases:
        d = dict(hdrs)
        assert _utils.signed_unpack(d.get("X-Trace-Info", ""), d.get("X-Trace-HMAC"),
                                    ["SECRET_KEY"]) is None or name == "extra json key", name
    for name, hdrs in cases:
        r, seen = send(p.port, hdrs)
        assert "x-trace-info" not in seen["headers"], name
        assert "x-trace-hmac" not in seen["headers"], name
        assert seen["profiler"] is None, name
        assert r.header("X-Trace-Id") != b, name
        # a new, unsampled trace (02: W3C Level 2 "random trace id")
        assert seen["headers"]["traceparent"].endswith("-02"), name
    assert metric(p, "tracebridge_trace_osprofiler_forged_total") == len(cases)

    # a forged osprofiler header next to a real W3C context: the W3C one wins
    trace, span = rand_hex(16), rand_hex(8)
    r, seen = send(p.port, cases[2][1] + [
        ("traceparent", "00-%s-%s-01" % (trace, span))])
    assert seen["profiler"]["base_id"] == as_uuid(trace)
    check_signed(seen, "SECRET_KEY", as_uuid(trace), seen["profiler"]["parent_id"])
    assert metric(p, "tracebridge_trace_osprofiler_forged_total") == len(cases) + 1


def test_forged_with_sample_new_starts_own_trace(tb):
    """sample_new = true: a forged header is dropped and a new trace, with
    tracebridge's own base_id and signature, goes to the app."""
    p = tb("sample_new = true")
    b, cases = forged_cases()
    for name, hdrs in cases:
        r, seen = send(p.port, hdrs)
        prof = seen["profiler"]
        assert prof is not None and prof["base_id"] != b, name
        assert prof["base_id"] == r.header("X-Trace-Id"), name
        check_signed(seen, "SECRET_KEY", prof["base_id"], prof["parent_id"])


def test_valid_osprofiler_headers_are_continued(tb, redis):
    # sample_new = false and an unsampled policy: osprofiler headers are
    # always sampled ("the key holder asked")
    p = tb("sample_new = false")
    b, pa = str(uuid.uuid4()), str(uuid.uuid4())
    info, mac = signed_pack({"base_id": b, "parent_id": pa}, "SECRET_KEY")
    r, seen = send(p.port, [("X-Trace-Info", info), ("X-Trace-HMAC", mac)])
    prof = seen["profiler"]
    assert prof["base_id"] == b
    assert prof["parent_id"] not in (pa, b)
    assert uuid.UUID(prof["parent_id"]).version == 4
    check_signed(seen, "SECRET_KEY", b, prof["parent_id"])
    assert seen["headers"]["traceparent"] == "00-%s-%s-01" % (
        uuid.UUID(b).hex, low64(prof["parent_id"]))
    assert r.header("X-Trace-Id") == b
    notes = notifications(redis, b, 4)
    edge = [n for n in notes if n["name"] == "proxy-start"]
    assert len(edge) == 1 and edge[0]["parent_id"] == pa
    assert edge[0]["trace_id"] == prof["parent_id"]
    assert metric(p, "tracebridge_trace_osprofiler_forged_total") == 0

    # without parent_id: still continued, the edge span hangs off base_id
    b2 = str(uuid.uuid4())
    info, mac = signed_pack({"base_id": b2}, "SECRET_KEY")
    r, seen = send(p.port, [("X-Trace-Info", info), ("X-Trace-HMAC", mac)])
    assert seen["profiler"]["base_id"] == b2
    check_signed(seen, "SECRET_KEY", b2, seen["profiler"]["parent_id"])


def test_hmac_key_rotation(tb, app_newkey):
    """hmac_keys = NEWKEY,SECRET_KEY: either key is accepted, NEWKEY signs
    what goes downstream (the app behind trusts NEWKEY only)."""
    p = tb("sample_new = false", keys="NEWKEY,SECRET_KEY", upstream=app_newkey.url)
    for key in ("SECRET_KEY", "NEWKEY"):
        b, pa = str(uuid.uuid4()), str(uuid.uuid4())
        info, mac = signed_pack({"base_id": b, "parent_id": pa}, key)
        r, seen = send(p.port, [("X-Trace-Info", info), ("X-Trace-HMAC", mac)])
        prof = seen["profiler"]
        assert prof is not None and prof["base_id"] == b, key
        check_signed(seen, "NEWKEY", b, prof["parent_id"])
        assert r.header("X-Trace-Id") == b
    info, mac = signed_pack({"base_id": str(uuid.uuid4())}, "RETIRED_KEY")
    r, seen = send(p.port, [("X-Trace-Info", info), ("X-Trace-HMAC", mac)])
    assert seen["profiler"] is None
    assert "x-trace-info" not in seen["headers"]
    assert metric(p, "tracebridge_trace_osprofiler_forged_total") == 1


# --- 3 and 5. no incoming context; the access log ------------------------

def test_no_context_sample_new_true(tb, redis):
    p = tb("sample_new = true")
    r, seen = send(p.port)
    base_id = r.header("X-Trace-Id")
    prof = seen["profiler"]
    assert prof is not None and prof["base_id"] == base_id
    assert uuid.UUID(base_id).version == 4
    check_signed(seen, "SECRET_KEY", base_id, prof["parent_id"])
    tp = seen["headers"]["traceparent"]
    # flags 03: sampled + W3C Level 2 "random trace id" (tracebridge made it)
    assert tp == "00-%s-%s-03" % (uuid.UUID(base_id).hex, low64(prof["parent_id"]))
    # Server-Timing carries the traceparent's flags, random bit (02) included
    assert r.header("Server-Timing") == "trace;desc=" + tp
    assert set(trace_headers(seen)) == {"traceparent", "x-trace-info", "x-trace-hmac"}
    # a new trace: the edge span is the root (its parent is base_id)
    notes = notifications(redis, base_id, 4)
    edge = [n for n in notes if n["name"] == "proxy-start"]
    assert len(edge) == 1 and edge[0]["parent_id"] == base_id
    line = access_line(p, "trace=%s sampled=1" % base_id)
    assert line is not None, open(p.access_path).read()
    assert "GET /v3/projects" in line and " 200 " in line


def test_no_context_sample_new_false(tb, redis):
    p = tb("sample_new = false")
    r, seen = send(p.port)
    base_id = r.header("X-Trace-Id")
    assert seen["profiler"] is None
    got = trace_headers(seen)
    assert set(got) == {"traceparent"}, got
    # flags 02: not sampled, W3C Level 2 "random trace id" (made here)
    assert re.fullmatch(r"00-%s-[0-9a-f]{16}-02" % uuid.UUID(base_id).hex,
                        got["traceparent"])
    assert r.header("Server-Timing") == "trace;desc=%s" % got["traceparent"]
    assert access_line(p, "trace=%s sampled=0" % base_id) is not None
    time.sleep(0.2)
    assert redis.db.llen("osprofiler_opt:" + base_id) == 0


# --- 4. more inject formats; request ids ----------------------------------

def test_inject_formats_and_request_id(tb, node_inject):
    p = tb("sample_new = false\ninject = osprofiler, w3c, b3, jaeger\n"
           "request_id_from_trace = true")
    trace, span = rand_hex(16), rand_hex(8)
    r, seen = send(p.port, node_inject(trace, span, True, "b3multi").items())
    prof = seen["profiler"]
    base_id = as_uuid(trace)
    assert prof["base_id"] == base_id
    edge = low64(prof["parent_id"])
    got = trace_headers(seen)
    # b3 is injected as the single header; the client's X-B3-* are gone
    assert set(got) == {"traceparent", "b3", "uber-trace-id", "x-trace-info",
                        "x-trace-hmac"}, got
    assert got["traceparent"] == "00-%s-%s-01" % (trace, edge)
    assert got["b3"] == "%s-%s-1" % (trace, edge)
    tid, sid, _parent, flags = got["uber-trace-id"].split(":")
    assert tid.rjust(32, "0") == trace and sid.rjust(16, "0") == edge
    assert int(flags, 16) & 1 == 1
    check_signed(seen, "SECRET_KEY", base_id, prof["parent_id"])
    assert seen["headers"]["x-openstack-request-id"] == "req-" + base_id

    # unsampled: every non-osprofiler format still says "not sampled"
    trace, span = rand_hex(16), rand_hex(8)
    r, seen = send(p.port, node_inject(trace, span, False, "w3c").items())
    got = trace_headers(seen)
    assert set(got) == {"traceparent", "b3", "uber-trace-id"}, got
    assert got["traceparent"].endswith("-00")
    assert got["b3"].startswith(trace + "-") and got["b3"].endswith("-0")
    assert int(got["uber-trace-id"].split(":")[3], 16) & 1 == 0
    assert seen["headers"]["x-openstack-request-id"] == "req-" + as_uuid(trace)

    # the client's own request id is kept, and only it arrives
    own = "req-" + str(uuid.uuid4())
    r, seen = send(p.port, [("X-OpenStack-Request-ID", own)])
    assert seen["headers"]["x-openstack-request-id"] == own


def test_request_id_not_made_by_default(tb):
    p = tb("sample_new = true")
    r, seen = send(p.port)
    assert "x-openstack-request-id" not in seen["headers"]


# --- per request state on one connection; error replies -------------------

def test_keepalive_requests_keep_their_own_context(tb, node_inject):
    """Three requests on one client connection: each gets its own context,
    nothing carries over from the one before."""
    p = tb("sample_new = false")
    t1, s1 = rand_hex(16), rand_hex(8)
    t3, s3 = rand_hex(16), rand_hex(8)
    c = Conn(p.port)
    try:
        r1 = c.request("GET", "/a", headers=list(node_inject(t1, s1, True, "w3c").items()))
        r2 = c.request("GET", "/b")
        r3 = c.request("GET", "/c", headers=list(node_inject(t3, s3, False, "b3single").items()))
    finally:
        c.close()
    j1, j2, j3 = r1.json(), r2.json(), r3.json()
    assert j1["profiler"]["base_id"] == as_uuid(t1)
    assert j2["profiler"] is None and "x-trace-info" not in j2["headers"]
    assert r2.header("X-Trace-Id") not in (as_uuid(t1), as_uuid(t3))
    assert j2["headers"]["traceparent"].endswith("-02")
    assert j3["profiler"] is None
    assert j3["headers"]["traceparent"].startswith("00-%s-" % t3)
    assert j3["headers"]["traceparent"].endswith("-00")
    assert len({r.header("Server-Timing") for r in (r1, r2, r3)}) == 3


def test_error_reply_carries_trace_headers(make_proxy, redis):
    """Upstream down: the 502 still says which trace it belongs to, the
    access log has it, and the edge span records the error."""
    p = make_proxy(CONF, upstream="http://127.0.0.1:%d" % free_port(),
                   redis=redis.port, keys="SECRET_KEY", tracing="sample_new = false",
                   keep_foreign="false")
    trace, span = rand_hex(16), rand_hex(8)
    c = Conn(p.port)
    try:
        r = c.request("GET", "/v3", headers=[
            ("traceparent", "00-%s-%s-01" % (trace, span))])
    finally:
        c.close()
    assert r.status == 502
    assert r.header("X-Trace-Id") == as_uuid(trace)
    assert re.fullmatch(r"trace;desc=00-%s-[0-9a-f]{16}-01" % trace,
                        r.header("Server-Timing") or ""), r.raw_head
    assert access_line(p, "trace=%s sampled=1" % as_uuid(trace)) is not None
    notes = notifications(redis, as_uuid(trace), 2)
    stop = [n for n in notes if n["name"] == "proxy-stop"]
    assert len(stop) == 1 and stop[0]["info"].get("etype"), notes
    assert low64(stop[0]["trace_id"]) == r.header("Server-Timing")[-19:-3]


def test_trace_headers_after_many_other_headers(tb, node_inject):
    """Trace headers late in a big head (past the first 64 fields) are still
    read, removed and replaced."""
    p = tb("sample_new = false")
    trace, span = rand_hex(16), rand_hex(8)
    filler = [("X-Filler-%03d" % i, "v%d" % i) for i in range(90)]
    hdrs = filler + list(node_inject(trace, span, True, "b3multi").items())
    r, seen = send(p.port, hdrs)
    got = trace_headers(seen)
    assert set(got) == {"traceparent", "x-trace-info", "x-trace-hmac"}, got
    assert seen["profiler"]["base_id"] == as_uuid(trace)
    assert seen["headers"]["x-filler-089"] == "v89"


# --- decisions without ids; trust_incoming_sampling -----------------------

@pytest.mark.parametrize("hdrs", [[("b3", "0")], [("X-B3-Sampled", "0")]],
                         ids=["b3-single-deny", "b3-multi-deny"])
def test_b3_deny_without_ids(tb, hdrs):
    """B3's bare "do not sample" (no ids): honoured even with sample_new =
    true; the trace id is new and the b3 header does not reach the app."""
    p = tb("sample_new = true")
    r, seen = send(p.port, hdrs)
    assert seen["profiler"] is None
    got = trace_headers(seen)
    assert set(got) == {"traceparent"}, got
    base = r.header("X-Trace-Id")
    assert got["traceparent"].startswith("00-%s-" % uuid.UUID(base).hex)
    assert got["traceparent"][-2:] in ("00", "02")


def test_untrusted_incoming_decision(make_proxy, redis, app, node_inject):
    """trust_incoming_sampling = false: the policy decides (sample_new =
    true here), the caller's trace id is kept."""
    conf = CONF.replace("service = api\n", "service = api\ntrust_incoming_sampling = false\n")
    p = make_proxy(conf, upstream=app.url, redis=redis.port, keys="SECRET_KEY",
                   tracing="sample_new = true", keep_foreign="false")
    trace, span = rand_hex(16), rand_hex(8)
    r, seen = send(p.port, node_inject(trace, span, False, "w3c").items())
    assert seen["profiler"] is not None
    assert seen["profiler"]["base_id"] == as_uuid(trace)
    assert seen["headers"]["traceparent"].startswith("00-%s-" % trace)
    assert seen["headers"]["traceparent"].endswith("-01")


def test_key_rotation_by_reload(make_proxy, redis, app, app_newkey):
    """SIGHUP with hmac_keys = NEWKEY,SECRET_KEY (and the upstream moved to
    the NEWKEY service): new connections sign with NEWKEY and still accept
    SECRET_KEY; a connection opened before keeps the old configuration."""
    fmt = dict(redis=redis.port, keys="SECRET_KEY", tracing="sample_new = false",
               keep_foreign="false")
    p = make_proxy(CONF, upstream=app.url, **fmt)
    old = Conn(p.port)
    try:
        b = str(uuid.uuid4())
        info, mac = signed_pack({"base_id": b}, "SECRET_KEY")
        r = old.request("GET", "/", headers=[("X-Trace-Info", info), ("X-Trace-HMAC", mac)])
        check_signed(r.json(), "SECRET_KEY", b, r.json()["profiler"]["parent_id"])

        p.fmt.update(keys="NEWKEY,SECRET_KEY", upstream=app_newkey.url)
        p.write_conf(CONF)
        p.signal(signal.SIGHUP)
        end = time.time() + 5
        while True:
            b = str(uuid.uuid4())
            info, mac = signed_pack({"base_id": b}, "SECRET_KEY")
            r, seen = send(p.port, [("X-Trace-Info", info), ("X-Trace-HMAC", mac)])
            info = seen["headers"].get("x-trace-info", "")
            if seen["headers"].get("x-trace-hmac") == hmac.new(
                    b"NEWKEY", info.encode(), hashlib.sha1).hexdigest():
                break   # the reload is in force (until then: old keys)
            assert time.time() < end, "reload not in force after 5 s"
            time.sleep(0.1)
        assert seen["profiler"]["base_id"] == b
        check_signed(seen, "NEWKEY", b, seen["profiler"]["parent_id"])

        # the connection opened before the reload: old keys, old upstream
        b = str(uuid.uuid4())
        info, mac = signed_pack({"base_id": b}, "SECRET_KEY")
        r = old.request("GET", "/", headers=[("X-Trace-Info", info), ("X-Trace-HMAC", mac)])
        check_signed(r.json(), "SECRET_KEY", b, r.json()["profiler"]["parent_id"])
    finally:
        old.close()


def test_concurrent_requests_no_crosstalk(tb):
    """Requests in parallel over both workers: every answer carries its own
    request's trace, and every edge span id is distinct."""
    import threading
    p = tb("sample_new = false")
    results, errors = [], []

    def client(n):
        try:
            c = Conn(p.port)
            try:
                for _ in range(n):
                    trace, span = rand_hex(16), rand_hex(8)
                    r = c.request("GET", "/x", headers=[
                        ("traceparent", "00-%s-%s-01" % (trace, span))])
                    assert r.status == 200, (r.raw_head, r.body[:200], p.logtext()[-2000:])
                    results.append((trace, r.header("X-Trace-Id"), r.json()))
            finally:
                c.close()
        except Exception as e:  # reported below, with the thread's error
            errors.append(repr(e))

    # 4 clients: wsgiref's listen backlog is 5, more would time out there
    threads = [threading.Thread(target=client, args=(40,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 160
    parents = set()
    for trace, xtid, seen in results:
        assert xtid == as_uuid(trace)
        assert seen["profiler"]["base_id"] == as_uuid(trace)
        assert seen["headers"]["traceparent"] == "00-%s-%s-01" % (
            trace, low64(seen["profiler"]["parent_id"]))
        parents.add(seen["profiler"]["parent_id"])
    assert len(parents) == 160
