"""OTLP export of edge spans (issue 14), through the real binary into a real
OTLP/HTTP receiver (tests/integration/node/otlp_receiver.js) that decodes
protobuf with OpenTelemetry's own generated code
(@opentelemetry/otlp-transformer 0.216.0, ExportTraceServiceRequest.decode).

Run: TB_BUILDDIR=... /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_otlp.py
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import BUILDDIR, Conn, free_port, kill, metrics, wait_for, wait_port
from tls_certs import pki  # noqa: F401 (a fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
NODE = shutil.which("node")
NPM = shutil.which("npm")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = "00-%s-%s-01" % (TRACE, CLIENT_SPAN)


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    if NODE is None or NPM is None:
        pytest.skip("node/npm not installed: no OTLP receiver")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@opentelemetry",
                                      "otlp-transformer")):
        subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       check=True, stdout=subprocess.DEVNULL, timeout=300)


class Receiver:
    """otlp_receiver.js on a port; records() are its decoded requests."""

    def __init__(self, tmpdir, *args, port=None):
        self.out = os.path.join(str(tmpdir), "otlp-%d.jsonl" % time.monotonic_ns())
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [NODE, os.path.join(NODE_DIR, "otlp_receiver.js"), "--out", self.out,
             "--port", str(self.port)] + [str(a) for a in args],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert json.loads(line)["port"] == self.port
        self.url = "http://127.0.0.1:%d/v1/traces" % self.port

    def records(self):
        try:
            with open(self.out) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def spans(self, status=200):
        out = []
        for r in self.records():
            if r["status"] != status or "body" not in r:
                continue
            for rs in r["body"].get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        out.append((rs, ss, s))
        return out

    def stop(self):
        kill(self.proc)


@pytest.fixture
def receiver(tmp_path):
    made = []

    def make(*args, **kw):
        r = Receiver(tmp_path, *args, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()


def conf(otlp="", profiler="connection_string = otlp://127.0.0.1:1",
         workers=1, upstream="{upstream}", service="identity", flush="0.05"):
    return """
[DEFAULT]
workers = %d
log_level = info
access_log = {access}
drain_timeout = 2

[admin]
listen = 127.0.0.1:{admin}

[listener:public]
listen = 127.0.0.1:{port}
upstream = %s
service = %s
upstream_timeout = 2

[profiler]
enabled = true
hmac_keys = SECRET_KEY
%s

[tracing]
sample_new = true
project = tracebridge
host = edge-1

[otlp]
flush_interval = %s
%s
""" % (workers, upstream, service, profiler, flush, otlp)


def get(port, path="/", headers=()):
    c = Conn(port)
    r = c.request("GET", path, headers=list(headers))
    c.close()
    return r


def attrs(kvs):
    out = {}
    for kv in kvs or []:
        v = kv["value"]
        out[kv["key"]] = v.get("stringValue", v.get("intValue", v.get("doubleValue")))
    return out


def otlp_metrics(p):
    m = metrics(p)
    return {k: v for k, v in m.items() if k.startswith("tracebridge_otlp_")}


def dropped(m):
    return sum(v for k, v in m.items()
               if k.startswith("tracebridge_otlp_spans_dropped_total"))


# ---- the encoder's known bytes, read by OpenTelemetry's decoder ----

def test_known_bytes_decode():
    """tests/unit/test_otlp.c's SMALL_SPAN_HEX, decoded by the generated
    code of opentelemetry-proto (the same bytes the unit test pins)."""
    tool = os.path.join(BUILDDIR, "tests", "unit", "test_otlp")
    if not os.path.exists(tool):
        pytest.skip("make check builds tests/unit/test_otlp")
    hexbytes = subprocess.run([tool, "hex"], capture_output=True, text=True,
                              check=True).stdout.split()[0]
    js = ("const r=require('@opentelemetry/otlp-transformer/build/src/generated/root.js');"
          "const S=r.opentelemetry.proto.trace.v1.Span;"
          "const m=S.decode(Buffer.from(process.argv[1],'hex'));"
          "const o=S.toObject(m,{longs:String,enums:Number,bytes:String});"
          "for(const k of ['traceId','spanId','parentSpanId'])"
          "o[k]=Buffer.from(o[k],'base64').toString('hex');"
          "console.log(JSON.stringify(o));")
    out = subprocess.run([NODE, "-e", js, hexbytes], cwd=NODE_DIR, check=True,
                         capture_output=True, text=True).stdout
    s = json.loads(out)
    assert s["traceId"] == TRACE
    assert s["spanId"] == "a7b22e18f8fd5a24"
    assert s["parentSpanId"] == CLIENT_SPAN
    assert s["traceState"] == "k=v"
    assert s["name"] == "GET /v2.1/servers/{id}"
    assert s["kind"] == 2
    assert s["startTimeUnixNano"] == "1700000000000000000"
    assert s["endTimeUnixNano"] == "1700000000001500000"
    a = attrs(s["attributes"])
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/v2.1/servers/abc"
    assert a["url.query"] == "x=1"
    assert a["http.response.status_code"] == "503"
    assert a["client.port"] == "5555"
    assert a["server.address"] == "api" and a["server.port"] == "8774"


# ---- what is exported ----

def test_protobuf_gzip_span(make_proxy, upstream, receiver):
    """otlp:// connection string (no Redis at all), protobuf + gzip by
    default, an auth header; ids, kind, name, attributes, status, resource,
    scope as the OTel decoder reads them."""
    rc = receiver()
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port,
                        otlp="headers = authorization=Bearer s3cr3t, x-tenant=t1\n"
                             "service_name_prefix = edge\n"
                             "resource_attributes = deployment.environment=test"),
                   upstream=upstream.url)
    r = get(p.port, "/v3/auth/tokens?nocatalog=1&temp_url_sig=SECRETSIG",
            [("traceparent", TRACEPARENT), ("tracestate", "vendor=v1"),
             ("User-Agent", "probe/1.0")])
    assert r.status == 200
    seen = r.json()
    up_tp = dict((k.lower(), v) for k, v in seen["headers"])["traceparent"]
    wait_for(lambda: rc.spans(), 10, "a span at the receiver")
    rec = [x for x in rc.records() if x["status"] == 200][0]
    assert rec["path"] == "/v1/traces"
    assert rec["headers"]["content-type"] == "application/x-protobuf"
    assert rec["headers"]["content-encoding"] == "gzip"
    assert rec["headers"]["authorization"] == "Bearer s3cr3t"
    assert rec["headers"]["x-tenant"] == "t1"
    assert "error" not in rec
    [(rs, ss, s)] = rc.spans()
    ra = attrs(rs["resource"]["attributes"])
    assert ra["service.name"] == "edge-tracebridge-identity"
    assert ra["host.name"] == "edge-1"
    assert ra["telemetry.sdk.name"] == "tracebridge"
    assert ra["deployment.environment"] == "test"
    assert "service.instance.id" in ra and "telemetry.sdk.version" in ra
    assert ss["scope"]["name"] == "tracebridge"
    assert s["traceId"] == TRACE
    assert s["parentSpanId"] == CLIENT_SPAN
    # the span id is the parent the upstream was told
    assert up_tp.split("-")[2] == s["spanId"]
    assert s["traceState"] == "vendor=v1"
    assert s["kind"] == 2
    assert s["name"] == "GET /v3/auth/tokens"
    assert int(s["endTimeUnixNano"]) > int(s["startTimeUnixNano"]) > 1.6e18
    a = attrs(s["attributes"])
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/v3/auth/tokens"
    # redacted by the rules of the Redis span and the access log
    assert a["url.query"] == "nocatalog=1&temp_url_sig=REDACTED"
    assert "SECRETSIG" not in json.dumps(rc.records())
    assert a["url.scheme"] == "http"
    assert a["http.response.status_code"] == "200"
    assert a["network.protocol.version"] == "1.1"
    assert a["client.address"] == "127.0.0.1" and int(a["client.port"]) > 0
    # Conn sends "Host: example.test": no port in it, the listener's then
    assert a["server.address"] == "example.test" and a["server.port"] == str(p.port)
    assert a["user_agent.original"] == "probe/1.0"
    assert int(a["http.request.size"]) > 0 and int(a["http.response.size"]) > 0
    assert a["tracebridge.trace_format"] == "w3c"
    assert "status" not in s or not s["status"].get("code")
    # the header values are never logged
    assert "s3cr3t" not in p.logtext()
    wait_for(lambda: otlp_metrics(p)["tracebridge_otlp_spans_exported_total"] == 1,
             5, "the export counted")
    m = otlp_metrics(p)
    assert m["tracebridge_otlp_spans_exported_total"] == 1
    assert m['tracebridge_otlp_export_requests_total{outcome="success"}'] == 1


def test_json_next_to_redis(make_proxy, upstream, receiver, servers):
    """[otlp] endpoint beside a Redis store: both get the span; JSON with
    no compression; an upstream 5xx is status ERROR with an exception event."""
    redis = servers("r")
    rc = receiver()
    p = make_proxy(conf(profiler="connection_string = %s" % redis.url,
                        otlp="endpoint = %s\nprotocol = http/json\ncompression = none"
                             % rc.url),
                   upstream=upstream.url)
    assert get(p.port, "/status/503").status == 503
    assert get(p.port, "/ok").status == 200
    wait_for(lambda: len(rc.spans()) == 2, 10, "two spans at the receiver")
    recs = [x for x in rc.records() if x["status"] == 200]
    assert all(x["headers"]["content-type"] == "application/json" for x in recs)
    assert all("content-encoding" not in x["headers"] for x in recs)
    spans = {attrs(s["attributes"])["url.path"]: s for _, _, s in rc.spans()}
    bad, ok = spans["/status/503"], spans["/ok"]
    assert "parentSpanId" not in bad  # the trace starts here
    assert bad["status"]["code"] == 2
    ev = bad["events"][0]
    assert ev["name"] == "exception"
    assert attrs(ev["attributes"])["exception.type"] == "HTTPServerError"
    assert attrs(ev["attributes"])["exception.message"] == "HTTP 503"
    assert "status" not in ok
    # the same spans in Redis, same ids: base_id is the trace id
    r = redis.client()
    wait_for(lambda: len(r.keys("osprofiler_opt:*")) == 2, 10, "Redis spans")
    for key in r.keys("osprofiler_opt:*"):
        base = key.decode().split(":", 1)[1]
        assert base.replace("-", "") in (bad["traceId"], ok["traceId"])
        stop = json.loads(r.lindex(key, 0))
        assert uuid.UUID(stop["trace_id"]).hex[16:] in (bad["spanId"], ok["spanId"])


def test_one_trace_across_systems(make_proxy, receiver, servers, wsgi):
    """Client (OTel JS propagator) -> tracebridge -> osprofiler-wrapped WSGI
    app: the exported span's id is the parent the app received, its parent
    the client's span."""
    js = ("const api=require('@opentelemetry/api');"
          "const {W3CTraceContextPropagator}=require('@opentelemetry/core');"
          "const c={};const ctx=api.trace.setSpanContext(api.context.active(),"
          "{traceId:process.argv[1],spanId:process.argv[2],traceFlags:1,isRemote:false});"
          "new W3CTraceContextPropagator().inject(ctx,c,api.defaultTextMapSetter);"
          "console.log(JSON.stringify(c));")
    client = json.loads(subprocess.run([NODE, "-e", js, TRACE, CLIENT_SPAN], cwd=NODE_DIR,
                                       check=True, capture_output=True, text=True).stdout)
    redis = servers("r")
    app = wsgi(redis.url)
    rc = receiver()
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port),
                   upstream=app.url)
    r = get(p.port, "/v2/things", client.items())
    assert r.status == 200
    seen = r.json()["profiler"]
    wait_for(lambda: rc.spans(), 10, "the span")
    [(_, _, s)] = rc.spans()
    assert s["traceId"] == TRACE
    assert seen["base_id"].replace("-", "") == TRACE
    assert s["parentSpanId"] == CLIENT_SPAN
    # what osprofiler's OTLP driver makes of the app's parent: shorten_id
    assert "%016x" % (uuid.UUID(seen["parent_id"]).int & (2 ** 64 - 1)) == s["spanId"]


# ---- failures ----

def test_retry_after_503(make_proxy, upstream, receiver):
    """503 + Retry-After: 1 twice: the batch arrives afterwards, each span once."""
    rc = receiver("--fail", 2, "--retry-after", 1)
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port,
                        flush="0.2"), upstream=upstream.url)
    t0 = time.time()
    for i in range(3):
        assert get(p.port, "/r%d" % i).status == 200
    wait_for(lambda: rc.spans(), 15, "spans after the retries")
    assert time.time() - t0 >= 2.0   # two Retry-After seconds honoured
    statuses = [x["status"] for x in rc.records()]
    assert statuses == [503, 503, 200]
    paths = sorted(attrs(s["attributes"])["url.path"] for _, _, s in rc.spans())
    assert paths == ["/r0", "/r1", "/r2"]
    wait_for(lambda: otlp_metrics(p)["tracebridge_otlp_spans_exported_total"] == 3,
             5, "the export counted")
    m = otlp_metrics(p)
    assert m['tracebridge_otlp_export_requests_total{outcome="retry"}'] == 2
    assert m["tracebridge_otlp_spans_exported_total"] == 3


def test_400_not_retried(make_proxy, upstream, receiver):
    rc = receiver("--status", 400)
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port),
                   upstream=upstream.url)
    assert get(p.port, "/x").status == 200
    wait_for(lambda: otlp_metrics(p).get(
        'tracebridge_otlp_spans_dropped_total{reason="rejected"}') == 1, 10, "rejected")
    time.sleep(1)
    assert len(rc.records()) == 1
    assert "collector answered 400" in p.logtext()


def test_partial_success_logged(make_proxy, upstream, receiver):
    rc = receiver("--partial", 1)
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port,
                        flush="0.3"), upstream=upstream.url)
    for i in range(2):
        assert get(p.port, "/p%d" % i).status == 200
    wait_for(lambda: "partial success: 1 of 2 spans rejected: too old" in p.logtext(),
             10, "the partial success log line")
    wait_for(lambda: otlp_metrics(p)["tracebridge_otlp_spans_exported_total"] == 1,
             5, "the export counted")
    m = otlp_metrics(p)
    assert m["tracebridge_otlp_spans_exported_total"] == 1
    assert m['tracebridge_otlp_spans_dropped_total{reason="rejected"}'] == 1
    time.sleep(0.5)
    assert len(rc.records()) == 1   # not retried


def test_collector_down_then_up(make_proxy, upstream, receiver):
    """No collector for a while under load: every request is answered, and
    exported + dropped == sampled exactly once it is back."""
    port = free_port()
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % port,
                        otlp="batch_size = 8\ntimeout = 1", workers=2),
                   upstream=upstream.url)
    n = 40
    for i in range(n):
        assert get(p.port, "/d%d" % i).status == 200
    time.sleep(1.5)
    assert otlp_metrics(p)["tracebridge_otlp_spans_exported_total"] == 0
    rc = receiver(port=port)
    wait_for(lambda: otlp_metrics(p)["tracebridge_otlp_spans_exported_total"] +
             dropped(otlp_metrics(p)) == n, 40, "every span accounted for")
    m = otlp_metrics(p)
    got = [attrs(s["attributes"])["url.path"] for _, _, s in rc.spans()]
    assert len(got) == len(set(got)) == m["tracebridge_otlp_spans_exported_total"]
    assert m["tracebridge_otlp_queue_bytes"] == 0
    assert "connection to the collector failed" in p.logtext()


def test_tiny_queue_drops_counted(make_proxy, upstream):
    """The collector never answers; a 1 KiB queue holds what it can, the
    rest is dropped and counted, requests are unaffected."""
    port = free_port()
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % port,
                        otlp="queue_bytes = 1024", flush="60"),
                   upstream=upstream.url)
    for i in range(30):
        assert get(p.port, "/q%d" % i).status == 200
    m = otlp_metrics(p)
    assert m['tracebridge_otlp_spans_dropped_total{reason="queue_full"}'] > 0
    assert 0 < m["tracebridge_otlp_queue_bytes"] <= 1024


def test_tls_to_the_collector(make_proxy, upstream, receiver, pki):
    rc = receiver("--tls", pki.rsa.cert, pki.rsa.key)
    url = "https://localhost:%d/v1/traces" % rc.port
    p = make_proxy(conf(profiler="", otlp="endpoint = %s\nca_file = %s" % (url, pki.ca.cert)),
                   upstream=upstream.url)
    assert get(p.port, "/tls").status == 200
    wait_for(lambda: rc.spans(), 10, "a span over TLS")
    # a reload with the same settings keeps the exporter; its TLS context
    # is the new configuration's from then on (the old one is freed)
    p.signal(signal.SIGHUP)
    wait_for(lambda: "reload done" in p.logtext(), 10, "the reload")
    assert get(p.port, "/tls2").status == 200
    assert get(p.port, "/tls3").status == 200
    wait_for(lambda: len(rc.spans()) == 3, 10, "spans after the reload")
    p.stop()

    rc2 = receiver("--tls", pki.rsa.cert, pki.rsa.key)
    url = "https://localhost:%d/v1/traces" % rc2.port
    p2 = make_proxy(conf(profiler="", otlp="endpoint = %s\nca_file = %s" % (url, pki.ca2.cert)),
                    upstream=upstream.url)
    assert get(p2.port, "/tls").status == 200
    wait_for(lambda: "TLS to the collector failed: certificate verify failed" in p2.logtext(),
             10, "the TLS failure log line")
    assert rc2.records() == []


def test_config_error_names_file_line_option(make_proxy, upstream, receiver, tmp_path):
    """-t reports bad [otlp] values with file, line and option."""
    from conftest import BINARY
    bad = tmp_path / "bad.conf"
    bad.write_text(conf(otlp="protocol = grpc").format(
        access="off", admin=free_port(), port=free_port(), upstream=upstream.url))
    r = subprocess.run([BINARY, "-t", "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert re.search(r"%s:\d+: protocol: expected one of: http/protobuf, http/json"
                     % re.escape(str(bad)), r.stderr), r.stderr


def test_slow_collector_times_out_and_retries(make_proxy, upstream, receiver):
    """An answer later than [otlp] timeout: the attempt is given up and the
    batch sent again; requests are never slowed meanwhile."""
    rc = receiver("--delay-first", 3000)
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port,
                        otlp="timeout = 0.5"), upstream=upstream.url)
    t0 = time.time()
    for i in range(5):
        assert get(p.port, "/s%d" % i).status == 200
    assert time.time() - t0 < 2
    wait_for(lambda: "collector timed out" in p.logtext(), 10, "the timeout")
    wait_for(lambda: otlp_metrics(p)["tracebridge_otlp_spans_exported_total"] == 5,
             15, "the retried export")


def test_proxy_failure_and_listeners(make_proxy, receiver):
    """A dead upstream (our 502) is status ERROR with the Redis span's
    etype; two listeners are two resources, named by their services."""
    rc = receiver()
    dead = free_port()
    text = conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port,
                upstream="http://127.0.0.1:%d" % dead, service="compute")
    text = text.replace("[profiler]", """[listener:image]
listen = 127.0.0.1:{port2}
upstream = http://127.0.0.1:%d
service = image
upstream_connect_timeout = 1

[profiler]""" % dead, 1)
    p = make_proxy(text, port2=free_port())
    assert get(p.port, "/a").status == 502
    assert get(p.fmt["port2"], "/b").status == 502
    wait_for(lambda: len(rc.spans()) == 2, 10, "two spans")
    names = {}
    for rs, _, s in rc.spans():
        names[attrs(rs["resource"]["attributes"])["service.name"]] = s
    assert sorted(names) == ["tracebridge-compute", "tracebridge-image"]
    s = names["tracebridge-compute"]
    assert s["status"]["code"] == 2
    ev = attrs(s["events"][0]["attributes"])
    assert ev["exception.type"] == "UpstreamUnavailable"
    assert attrs(s["attributes"])["http.response.status_code"] == "502"


def test_shutdown_flushes(make_proxy, upstream, receiver):
    """SIGTERM: what waits for flush_interval goes out while draining."""
    rc = receiver()
    p = make_proxy(conf(profiler="connection_string = otlp://127.0.0.1:%d" % rc.port,
                        flush="60"), upstream=upstream.url)
    for i in range(3):
        assert get(p.port, "/t%d" % i).status == 200
    time.sleep(0.3)
    assert rc.spans() == []
    p.signal(signal.SIGTERM)
    p.proc.wait(10)
    assert len(rc.spans()) == 3


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_sampler_attributes(make_proxy, upstream, receiver, protocol):
    """A trace the policy started says how (Jaeger's sampler.type and
    sampler.param tags, as the Redis span's info does); one the caller
    decided names no sampler."""
    rc = receiver()
    otlp = "connection_string = otlp://127.0.0.1:%d" % rc.port
    text = conf(profiler=otlp, otlp="protocol = %s" % protocol) \
        .replace("sample_new = true\n", "") + "\n[sampling]\ndefault_probability = 1\n"
    p = make_proxy(text, upstream=upstream.url)
    assert get(p.port, "/chosen").status == 200
    wait_for(lambda: len(rc.spans()) == 1, 10, "a span at the receiver")
    a = attrs(rc.spans()[0][2]["attributes"])
    assert a["sampler.type"] == "probabilistic"
    assert float(a["sampler.param"]) == 1.0
    assert a["tracebridge.sampling_reason"] == "probabilistic"
    assert get(p.port, "/forced", [("traceparent", TRACEPARENT)]).status == 200
    wait_for(lambda: len(rc.spans()) == 2, 10, "a second span")
    s = [s for _, _, s in rc.spans() if attrs(s["attributes"])["url.path"] == "/forced"][0]
    assert "sampler.type" not in attrs(s["attributes"])
