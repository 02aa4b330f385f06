"""Credentials are never recorded (issue 13, "Secrets").

Every credential OpenStack clients send, in every place they send it
(header fields, query parameters, Referer, userinfo), through every path a
request can take (a good request, a malformed head, a 5xx from the upstream,
an upstream that is down), with the proxy at debug level: then every log
file, every Redis key and value, /metrics and /sampling are searched, and
none of the secret values appears, raw or as the hex of the error log's
head sample.

Run: TB_BUILDDIR=... /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_secrets.py
"""
import binascii
import secrets
import shutil
import socket

import pytest

from conftest import Conn, admin_get, free_port, metrics, metrics_text, wait_for
from test_spans_e2e import span_conf

redis = pytest.importorskip("redis")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# the credential fields of issue 13, as clients spell them
FIELDS = ["X-Auth-Token", "X-Subject-Token", "X-Service-Token",
          "X-Storage-Token", "X-Auth-Key", "X-Storage-Pass", "Authorization",
          "Proxy-Authorization", "Cookie", "X-Account-Meta-Temp-URL-Key",
          "X-Account-Meta-Temp-URL-Key-2", "X-Container-Meta-Temp-URL-Key",
          "X-Container-Meta-Temp-URL-Key-2"]
# secret query parameters: the built-in names, oslo's keys inside names,
# and one from [tracing] redact_query_params
PARAMS = ["temp_url_sig", "temp_url_expires", "temp_url_prefix", "Signature",
          "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
          "AWSAccessKeyId", "password", "new_password", "auth_token",
          "adminPass", "client_secret", "passphrase", "private_key", "token",
          "My-Extra-Param"]

# the edge span's configuration of test_spans_e2e, at debug level, every
# request traced, and a listener whose upstream is down
DOWN = """
[listener:down]
listen = 127.0.0.1:{port_down}
upstream = http://127.0.0.1:{dead}
service = down
upstream_connect_timeout = 1
"""


def conf(redis_url):
    return span_conf(
        redis_url, workers=2, listeners=DOWN,
        profiler="filter_error_trace = true\n",
        tracing="sample_new = true\nredact_query_params = my-extra-param\n",
    ).replace("log_level = info", "log_level = debug")


class Secrets:
    """One distinct random value per place a secret goes; all are searched
    for everywhere."""

    def __init__(self):
        self.all = []

    def new(self, what):
        # letters and digits only: valid in a query, a field, a path
        v = "Zq%s%s" % (what[:3].replace("-", "").replace("_", ""),
                        secrets.token_hex(10))
        self.all.append(v)
        return v


def leaks(text, values):
    """The values found in text: whole, any 8-byte piece, or its start
    ("Zq" appears nowhere else), raw or in hex (the error log's sample)."""
    found = []
    low = text.lower()
    for v in values:
        pieces = {v[i:i + 8] for i in range(len(v) - 7)} | {v[:5]}
        hexes = {binascii.hexlify(p.encode()).decode() for p in pieces}
        if any(p in text for p in pieces) or any(h in low for h in hexes):
            found.append(v)
    if "Zq" in text:
        found.append("Zq at %d" % text.index("Zq"))
    return found


def target_with(s, path="/v1/AUTH_acct/cont/obj"):
    q = "&".join("%s=%s" % (p, s.new(p)) for p in PARAMS)
    return "%s?limit=10&%s;marker=x#frag" % (path, q)


def fields_with(s):
    hs = []
    for f in FIELDS:
        v = s.new(f)
        if f in ("Authorization", "Proxy-Authorization"):
            v = "Basic " + v
        elif f == "Cookie":
            v = "session=%s; other=1" % v
        hs.append((f, v))
    hs.append(("Referer", "https://u:%s@swift.example%s" % (
        s.new("refuser"), target_with(s, "/v1/AUTH_acct/c/page"))))
    hs.append(("traceparent", TRACEPARENT))
    return hs


def raw_exchange(port, data, timeout=3.0):
    """Send raw bytes, read until the proxy closes; the reply."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        c.sendall(data)
        out = b""
        while True:
            try:
                d = c.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                break
            out += d
        return out
    finally:
        c.close()


def malformed_heads(s):
    """Heads the parser rejects with a secret within the error log's sample
    window, for every credential field and every way a line can be bad."""
    heads = []
    for f in FIELDS:
        for form in ("%s : %s", "%s\t: %s", "%s :%s"):
            heads.append(form % (f, s.new(f)))
        odd = f.upper().replace("-", "_")
        heads.append("%s : %s" % (odd, s.new(f)))
        heads.append("%s: x\r\n %s" % (f, s.new(f)))          # obs-fold
        heads.append("%s:\r\n\t%s" % (f, s.new(f)))           # obs-fold
        heads.append("%s: \x01%s" % (f, s.new(f)))            # CTL in value
        heads.append("%s: \r%s" % (f, s.new(f)))              # bare CR
    out = [("GET / HTTP/1.1\r\nHost: h\r\n%s\r\n\r\n" % h).encode("latin-1")
           for h in heads]
    # the request line: a bad byte right before a secret parameter, userinfo
    for p in PARAMS:
        out.append(("GET /o?a=\x01&%s=%s HTTP/1.1\r\nHost: h\r\n\r\n" %
                    (p, s.new(p))).encode("latin-1"))
    out.append(("GET http://\x01u:%s@h/ HTTP/1.1\r\nHost: h\r\n\r\n" %
                s.new("userinfo")).encode("latin-1"))
    out.append(("GET http://u:%s@h/\x01 HTTP/1.1\r\nHost: h\r\n\r\n" %
                s.new("userinfo")).encode("latin-1"))
    # a bare LF ends the lines
    out.append(("GET / HTTP/1.1\nX-Auth-Token : %s\n\n" %
                s.new("lf")).encode("latin-1"))
    return out


def redis_dump(client):
    """Every key and value, as text."""
    parts = []
    for k in client.scan_iter(count=1000):
        parts.append(k.decode("latin-1"))
        t = client.type(k).decode()
        if t == "list":
            parts += [x.decode("latin-1") for x in client.lrange(k, 0, -1)]
        elif t == "string":
            parts.append(client.get(k).decode("latin-1"))
        elif t == "hash":
            for hk, hv in client.hgetall(k).items():
                parts += [hk.decode("latin-1"), hv.decode("latin-1")]
        else:
            parts.append(repr(client.dump(k)))
    return "\n".join(parts)


def test_no_secret_is_recorded(make_proxy, upstream, redis_server):
    s = Secrets()
    dead = free_port()
    p = make_proxy(conf(redis_server.url), upstream=upstream.url,
                   port_down=free_port(), dead=dead)
    sampled = 0

    # 1. good requests: origin-form and absolute-form, every method kind
    for method, path in (("GET", None), ("HEAD", None), ("DELETE", None)):
        c = Conn(p.port)
        r = c.request(method, target_with(s), headers=fields_with(s))
        c.close()
        assert r.status == 200
        sampled += 1
    c = Conn(p.port)
    r = c.request("PUT", target_with(s), headers=fields_with(s), body=b"data")
    assert r.status == 200
    sampled += 1
    # (no fragment: the absolute-form grammar has none, RFC 9112 3.2.2)
    r = c.request("GET", "http://admin:%s@127.0.0.1:%d%s" % (
        s.new("userinfo"), p.port, target_with(s).split("#")[0]),
        headers=fields_with(s))
    assert r.status == 200, r.status
    sampled += 1
    c.close()
    # a target that is neither origin- nor absolute-form, userinfo first:
    # whatever the answer, its operation name reaches /metrics and /sampling
    c = Conn(p.port)
    c.send(("GET u:%s@evil.example/x?token=%s HTTP/1.1\r\nHost: h\r\n"
            "Connection: close\r\n\r\n" % (s.new("ui"), s.new("tok"))).encode())
    c.closed()
    c.close()

    # 2. 5xx from the upstream
    for code in (500, 503):
        c = Conn(p.port)
        r = c.request("GET", target_with(s, "/status/%d" % code),
                      headers=fields_with(s))
        c.close()
        assert r.status == code
        sampled += 1

    # 3. the upstream down
    c = Conn(p.fmt["port_down"])
    r = c.request("POST", target_with(s), headers=fields_with(s), body=b"x")
    c.close()
    assert r.status == 502
    sampled += 1

    # 4. malformed heads: answered 400 and logged with a hex sample
    bad = malformed_heads(s)
    for head in bad:
        reply = raw_exchange(p.port, head)
        assert reply.startswith(b"HTTP/1.1 4"), (head, reply[:40])

    # every sampled request's span written (start and stop each)
    wait_for(lambda: metrics(p)["tracebridge_spans_recorded_total"] >= sampled,
             30, "the spans")
    wait_for(lambda: "bad request head" in p.logtext() and
             p.logtext().count("bad request head") >= len(bad),
             10, "every rejected head logged")

    texts = {
        "error log": p.logtext(),
        "access log": open(p.access_path, encoding="latin-1").read(),
        "redis": redis_dump(redis_server.db),
        "/metrics": metrics_text(p),
        "/sampling": admin_get(p, "/sampling").body.decode("latin-1"),
    }
    for name, text in texts.items():
        assert leaks(text, s.all) == [], name

    # and the test is not vacuous: what was recorded instead is there
    assert "[debug]" in texts["error log"]
    assert "<withheld>" in texts["error log"]
    acc = texts["access log"]
    assert acc.count("\n") >= sampled
    assert "temp_url_sig=REDACTED" in acc and "My-Extra-Param=REDACTED" in acc
    assert "limit=10" in acc and "marker=x" in acc
    # an absolute-form target is logged in the origin-form it was sent in
    assert "http://" not in acc.replace("https://REDACTED:REDACTED@swift", "")
    assert "https://REDACTED:REDACTED@swift.example" in acc
    assert " 500 " in acc and " 503 " in acc and " 502 " in acc
    assert "temp_url_sig=REDACTED" in texts["redis"]
    assert "osprofiler_error:" in texts["redis"]
