"""The trace viewer on the admin endpoint (issue 16): real requests through
tracebridge to a real osprofiler-wrapped WSGI app (viewer_app.py: a `wsgi`
span and a `db` child), all writing to a real redis-server; then
/traces/<id>.json compared with `osprofiler trace show --json`, the HTML
page read as text and in a real headless browser (Debian's chromium), the
list and its search, and [admin] auth_token.

Run: TB_BUILDDIR=... /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_viewer.py
The browser's screenshot is kept in $TB_ARTIFACTS (default
$TB_BUILDDIR/test-artifacts)/viewer.png.
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import (BUILDDIR, HERE, PY, Conn, free_port, kill, osprofiler,
                      wait_for, wait_port)

redis = pytest.importorskip("redis")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BASE_ID = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
TOKEN = "s3cr3t-t0ken-for-the-admin-endpoint"


def conf(redis_url, admin_extra=""):
    return """
[DEFAULT]
workers = 1
access_log = {access}
drain_timeout = 1

[admin]
listen = 127.0.0.1:{admin}
%s

[listener:compute]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = compute
upstream_timeout = 5

[profiler]
enabled = true
hmac_keys = SECRET_KEY
connection_string = %s

[tracing]
project = tracebridge
host = edge-1

[sampling]
default_probability = 1
max_traces_per_second = 0
""" % (admin_extra, redis_url)


class ViewerApp:
    def __init__(self, redis_url):
        self.port = free_port()
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "viewer_app.py"),
                                      str(self.port), redis_url])
        wait_port(self.port, timeout=20, proc=self.proc)
        self.url = "http://127.0.0.1:%d" % self.port


@pytest.fixture
def setup(servers, make_proxy):
    """(redis server, proxy) with the viewer app behind the proxy."""
    r = servers("redis")
    app = ViewerApp(r.url)
    p = make_proxy(conf(r.url), upstream=app.url)
    yield r, p
    kill(app.proc)


def get(port, path, headers=()):
    c = Conn(port, 10.0)
    try:
        return c.request("GET", path, headers=list(headers))
    finally:
        c.close()


def traced_request(r, p, path="/v2.1/servers", traceparent=TRACEPARENT,
                   base=BASE_ID):
    resp = get(p.port, path, [("traceparent", traceparent)])
    c = r.client()
    # proxy, wsgi, db: a start and a stop each
    wait_for(lambda: c.llen("osprofiler_opt:" + base) == 6, 15, "6 notifications")
    return resp


def names_in_page(html):
    """(name, depth, trace id, parent id) of every span row, in page order."""
    return re.findall(r'<li class="span[^"]*" id="span-\d+" data-depth="(\d+)" '
                      r'data-trace-id="([^"]*)" data-parent-id="([^"]*)" '
                      r'data-name="([^"]*)"', html)


# ---- 1. the JSON tree is osprofiler's ----

def test_json_is_osprofiler_report(setup):
    r, p = setup
    traced_request(r, p)
    ours = get(p.admin, "/traces/%s.json" % BASE_ID)
    assert ours.status == 200
    assert ours.header("Content-Type") == "application/json"
    theirs = json.loads(osprofiler("trace", "show", "--connection-string", r.url,
                                   BASE_ID, "--json"))
    assert ours.json() == theirs
    root = theirs["children"][0]
    assert root["info"]["name"] == "proxy"
    assert [c["info"]["name"] for c in root["children"]] == ["wsgi"]
    assert [c["info"]["name"] for c in root["children"][0]["children"]] == ["db"]
    # every id form reaches the same trace
    for form in (BASE_ID.upper(), BASE_ID.replace("-", ""), "a3ce929d0e0e4736"):
        again = get(p.admin, "/traces/%s.json" % form)
        assert again.status == 200, form
        assert again.json() == theirs


# ---- 2. the server-rendered page ----

def test_page_waterfall_and_escaping(setup):
    r, p = setup
    traced_request(r, p, "/v2.1/servers/<b>x</b>")
    resp = get(p.admin, "/traces/" + BASE_ID)
    assert resp.status == 200
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    assert "script-src 'self'" in resp.header("Content-Security-Policy")
    html = resp.body.decode()
    rows = names_in_page(html)
    assert [(n, d) for d, _, _, n in rows] == [("proxy", "0"), ("wsgi", "1"), ("db", "2")]
    # nesting: each row's parent is the row above
    assert rows[1][2] == rows[0][1] and rows[2][2] == rows[1][1]
    # the db statement and the path are shown, escaped
    assert "&lt;script&gt;alert(\\&quot;db\\&quot;)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert "<b>x</b>" not in html
    assert "nova</span>/<span class=\"service\">osapi_compute</span>" in html
    # the caller, above the proxy span
    assert re.search(r'<li class="caller">caller <code>127\.0\.0\.1:\d+</code>, w3c span '
                     r'<code>00f067aa0ba902b7</code>', html)
    # no external URL anywhere: only this origin's files
    assert not re.search(r'(src|href)="(https?:)?//', html)
    css = get(p.admin, "/traces/static/viewer.css")
    js = get(p.admin, "/traces/static/viewer.js")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert js.status == 200 and b"innerHTML" not in js.body.replace(b"(no innerHTML)", b"")
    assert get(p.admin, "/traces/static/nope.js").status == 404


def test_error_span_stands_out(setup):
    r, p = setup
    resp = traced_request(r, p, "/fail")
    assert resp.status == 500
    html = get(p.admin, "/traces/" + BASE_ID).body.decode()
    assert re.search(r'<li class="span error" [^>]*data-name="db"', html)
    assert "error: RuntimeError" in html
    # the proxy span: upstream 5xx
    assert re.search(r'<li class="span error" [^>]*data-name="proxy"', html)


def test_unfinished_and_growing_trace(setup):
    r, p = setup
    c = r.client()
    base = "11111111-2222-4333-8444-555555555555"
    key = "osprofiler_opt:" + base

    def note(name, tid, parent, ts):
        return json.dumps({"name": name, "base_id": base, "trace_id": tid,
                           "parent_id": parent, "timestamp": "2026-12-03T10:00:" + ts,
                           "info": {"host": "h"}, "project": "nova", "service": "api"})
    c.lpush(key, note("wsgi-start", "a", base, "00.100000"))
    html = get(p.admin, "/traces/" + base).body.decode()
    assert re.search(r'<li class="span unfinished"[^>]*data-name="wsgi"', html)
    assert ">unfinished<" in html
    c.lpush(key, note("db-start", "b", "a", "00.200000"))
    c.lpush(key, note("db-stop", "b", "a", "00.300000"))
    html = get(p.admin, "/traces/" + base).body.decode()
    assert [(n, d) for d, _, _, n in names_in_page(html)] == [("wsgi", "0"), ("db", "1")]
    # a trace longer than one LRANGE page, read in osprofiler's order
    c.delete(key)
    for i in range(2500):
        c.lpush(key, note("db-start", "s%d" % i, "root", "01.%06d" % i))
    ours = get(p.admin, "/traces/%s.json" % base).json()
    theirs = json.loads(osprofiler("trace", "show", "--connection-string", r.url,
                                   base, "--json"))
    assert ours == theirs
    assert len(ours["children"]) == 2500


def test_large_notifications(setup):
    # pages of LRANGE well past the Redis client's 1 MiB default reply limit
    r, p = setup
    c = r.client()
    base = "22222222-2222-4333-8444-555555555555"
    stmt = "SELECT '" + "x" * 8000 + "'"
    for i in range(600):
        c.lpush("osprofiler_opt:" + base, json.dumps({
            "name": "db-start", "base_id": base, "trace_id": "s%d" % i,
            "parent_id": base, "timestamp": "2026-12-03T10:00:01.%06d" % i,
            "info": {"host": "h", "db": {"statement": stmt}},
            "project": "nova", "service": "api"}))
    resp = get(p.admin, "/traces/%s.json" % base)
    assert resp.status == 200
    assert len(resp.json()["children"]) == 600


# ---- 3. the list and the search ----

def test_list_and_search(setup):
    r, p = setup
    resp = traced_request(r, p)
    req_id = resp.header("X-OpenStack-Request-ID")
    assert req_id.startswith("req-")
    html = get(p.admin, "/traces").body.decode()
    assert 'href="/traces/%s"' % BASE_ID in html
    assert "compute" in html and "GET" in html and "<td>200</td>" in html
    # the Server-Timing desc of the response, whole
    timing = resp.header("Server-Timing").split("desc=", 1)[1]
    for q in (BASE_ID, BASE_ID.upper(), BASE_ID.replace("-", ""), "a3ce929d0e0e4736",
              "  %s  " % BASE_ID, timing):
        s = get(p.admin, "/traces?q=" + q.replace(" ", "+"))
        assert s.status == 303, q
        assert s.header("Location") == "/traces/" + BASE_ID
    s = get(p.admin, "/traces?q=" + req_id)
    assert s.status == 200 and 'href="/traces/%s"' % BASE_ID in s.body.decode()
    s = get(p.admin, "/traces?q=req-nothing-like-it")
    assert s.status == 200 and 'href="/traces/%s"' % BASE_ID not in s.body.decode()
    assert "No recent trace" in s.body.decode()
    # hostile search text is shown escaped
    s = get(p.admin, "/traces?q=%22%3E%3Cscript%3Ex%3C/script%3E")
    assert b"<script>x" not in s.body and b"&lt;script&gt;x" in s.body


def test_unknown_trace_is_404(setup):
    r, p = setup
    for path in ("/traces/99999999-9999-4999-8999-999999999999",
                 "/traces/99999999999949998999999999999999.json",
                 "/traces/not-an-id", "/traces/<script>"):
        resp = get(p.admin, path)
        assert resp.status == 404, path
    assert "Not Found" in get(p.admin, "/traces/not-an-id").body.decode()
    assert get(p.admin, "/traces/not-an-id.json").json() == {"error": "Not Found"}


def test_redis_down_is_503(servers, make_proxy, upstream):
    p = make_proxy(conf("redis://127.0.0.1:%d" % free_port()), upstream=upstream.url)
    resp = get(p.admin, "/traces/" + BASE_ID)
    assert resp.status == 503
    assert get(p.admin, "/healthz").status == 200


def test_reload_follows_connection_string(servers, make_proxy, upstream):
    # the viewer's Redis client follows [profiler] connection_string on
    # SIGHUP, and auth_token takes effect (or goes) with the reload
    a, b = servers("a"), servers("b")
    base = "33333333-2222-4333-8444-555555555555"
    for r, host in ((a, "in-a"), (b, "in-b")):
        r.client().lpush("osprofiler_opt:" + base, json.dumps({
            "name": "wsgi-start", "base_id": base, "trace_id": "x", "parent_id": base,
            "timestamp": "2026-12-03T10:00:00.1", "info": {"host": host},
            "project": "p", "service": "s"}))
    p = make_proxy(conf(a.url), upstream=upstream.url)
    assert "in-a" in get(p.admin, "/traces/" + base).body.decode()
    p.write_conf(conf(b.url, "auth_token = " + TOKEN))
    p.signal(signal.SIGHUP)
    wait_for(lambda: get(p.admin, "/traces").status == 401, 10, "the reload")
    resp = get(p.admin, "/traces/" + base, [("Authorization", "Bearer " + TOKEN)])
    assert resp.status == 200 and "in-b" in resp.body.decode()
    p.write_conf(conf(b.url))
    p.signal(signal.SIGHUP)
    wait_for(lambda: get(p.admin, "/traces").status == 200, 10, "the second reload")


# ---- 4. [admin] auth_token ----

def test_auth_token(servers, make_proxy, upstream):
    r = servers("redis")
    p = make_proxy(conf(r.url, "auth_token = " + TOKEN), upstream=upstream.url)
    for path in ("/traces", "/traces/" + BASE_ID, "/metrics", "/sampling",
                 "/traces/static/viewer.css"):
        resp = get(p.admin, path)
        assert resp.status == 401, path
        assert "Basic" in resp.header("WWW-Authenticate")
        assert get(p.admin, path, [("Authorization", "Bearer wrong")]).status == 401
        assert get(p.admin, path, [("Authorization", "Bearer " + TOKEN + "x")]).status == 401
        assert get(p.admin, path, [("Authorization", "Bearer " + TOKEN[:-1])]).status == 401
    assert get(p.admin, "/healthz").status == 200      # probes need no token
    assert get(p.admin, "/traces", [("Authorization", "Bearer " + TOKEN)]).status == 200
    assert get(p.admin, "/metrics", [("Authorization", "bearer " + TOKEN)]).status == 200
    basic = base64.b64encode(("admin:" + TOKEN).encode()).decode()
    assert get(p.admin, "/traces", [("Authorization", "Basic " + basic)]).status == 200
    bad = base64.b64encode(b"admin:nope").decode()
    assert get(p.admin, "/traces", [("Authorization", "Basic " + bad)]).status == 401
    assert get(p.admin, "/traces", [("Authorization", "Basic !!!!")]).status == 401
    with open(p.log_path) as f:
        assert TOKEN not in f.read()


# ---- 5. a real browser ----

def chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def browser(*args):
    home = tempfile.mkdtemp()
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--user-data-dir=" + home] + list(args),
                          capture_output=True, timeout=90, env=dict(os.environ, HOME=home))


@pytest.mark.skipif(chromium() is None, reason="chromium not installed "
                    "(scripts/install-deps installs it: apt-get install chromium)")
def test_headless_browser(setup):
    r, p = setup
    traced_request(r, p)
    url = "http://127.0.0.1:%d/traces/%s" % (p.admin, BASE_ID)
    out = browser("--dump-dom", url)
    dom = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    rows = names_in_page(dom)
    assert [(n, d) for d, _, _, n in rows] == [("proxy", "0"), ("wsgi", "1"), ("db", "2")]
    assert rows[1][2] == rows[0][1] and rows[2][2] == rows[1][1]
    # viewer.js ran (CSP allowed our own script) and added its tools
    assert 'class="tools"' in dom
    # a span's details (its notifications: the db statement) are in the
    # page, and the hostile statement is text in the DOM, never an element
    assert '<dl class="info">' in dom
    assert "SELECT * FROM servers WHERE name = " in dom
    assert "<script>alert" not in dom
    art = os.environ.get("TB_ARTIFACTS", os.path.join(BUILDDIR, "test-artifacts"))
    os.makedirs(art, exist_ok=True)
    shot = os.path.join(art, "viewer.png")
    if os.path.exists(shot):
        os.unlink(shot)
    out = browser("--screenshot=" + shot, "--window-size=1200,520", url)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    list_dom = browser("--dump-dom", "http://127.0.0.1:%d/traces" % p.admin).stdout.decode()
    assert 'href="/traces/%s"' % BASE_ID in list_dom
