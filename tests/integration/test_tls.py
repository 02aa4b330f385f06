"""TLS (issue 6): termination on listeners (certificates, SNI, protocol
versions, ALPN, client certificates, resumption, plain HTTP on a TLS port,
handshake timeout, reload), https:// upstreams (verification, keep-alive,
resumption, client certificate), streaming 1 GiB through TLS both sides and
down through a TLS listener, the configuration check and the metrics. Certificates are made at test time by
tls_certs.py with the openssl command. Clients: Python's ssl module, curl and
openssl s_client.

Metrics are compared as deltas: the fixtures' readiness probe (a plain TCP
connect to the listener) already counts as a `closed` handshake failure."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from bulk import BulkConn, bulk_sha256, request_head
from conftest import BINARY, HERE, PY, Conn, free_port, kill, metrics, wait_for, wait_port
from tls_certs import pki  # noqa: F401  (the session fixture)

SUBJECT_HEADER = "X-SSL-Client-Subject"
CLIENT1_SUBJECT = "CN=client1,O=Example"

# {port} {admin} {access} {upstream} are filled in by make_proxy; {tls} by
# tls_conf() with the listener's TLS lines.
TLS_CONF = """
[DEFAULT]
workers = 1
log_level = debug
access_log = {access}
drain_timeout = 5

[admin]
listen = 127.0.0.1:{admin}

[listener:api]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = api
upstream_timeout = 5
upstream_connect_timeout = 2
client_header_timeout = 2
{tls}
"""


def tls_conf(cert, *more, conf=TLS_CONF):
    """TLS_CONF with tls_certificate/tls_key from cert (a tls_certs.Cert, or
    None for a plain listener) and more option lines."""
    lines = []
    if cert is not None:
        lines += ["tls_certificate = " + cert.cert, "tls_key = " + cert.key]
    lines += list(more)
    return conf.replace("{tls}", "\n".join(lines))


def client_ctx(pki, cert=None, verify=True, version=None, alpn=None, check_hostname=True):
    """A client SSLContext trusting pki.ca; cert: a client certificate to
    present; version "1.1" / "1.2" / "1.3" pins the protocol (1.1 also
    lowers the security level, as OpenSSL 3 needs for it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(pki.ca.cert)
        ctx.check_hostname = check_hostname
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if version is not None:
        v = {"1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
             "1.3": ssl.TLSVersion.TLSv1_3}[version]
        ctx.minimum_version = ctx.maximum_version = v
        if version == "1.1":
            ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TlsConn(Conn):
    """conftest.Conn over TLS: request()/response() as for plain ones.
    sni: server_hostname (SNI and the name checked; an IP sends no SNI)."""

    def __init__(self, port, ctx, sni="localhost", session=None, timeout=5.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=sni, session=session)
        except BaseException:
            raw.close()
            raise
        self.buf = b""

    def closed(self, timeout=2.0):
        try:
            return super().closed(timeout)
        except ssl.SSLError:
            return True

    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)


REFUSED = (ssl.SSLError, OSError, EOFError)


def refused(port, ctx, sni="localhost"):
    """True if the server refuses this client: the handshake fails, or (TLS
    1.3, where the client's side of the handshake ends before the server has
    checked the client's certificate) the first request gets an alert or EOF
    instead of an answer. Returns the exception."""
    try:
        c = TlsConn(port, ctx, sni)
    except REFUSED as e:
        return e
    try:
        c.request("GET", "/must-not-arrive")
    except REFUSED as e:
        return e
    finally:
        c.close()
    return None


def upstream_headers(resp):
    """The request head the upstream saw, from its JSON answer."""
    return resp.json()["headers"]


def header_values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


# --- metrics -----------------------------------------------------------------

def metric(proxy, name):
    return metrics(proxy).get(name, 0.0)


def failures(reason, listener="api"):
    return 'tracebridge_tls_handshake_failures_total{listener="%s",reason="%s"}' % (listener, reason)


def handshakes(listener="api"):
    return 'tracebridge_tls_handshakes_total{listener="%s"}' % listener


def resumed(listener="api"):
    return 'tracebridge_tls_resumed_total{listener="%s"}' % listener


UP_TLS_ERRORS = 'tracebridge_upstream_errors_total{kind="tls_handshake"}'
UP_HANDSHAKES = "tracebridge_upstream_tls_handshakes_total"
UP_RESUMED = "tracebridge_upstream_tls_resumed_total"


def wait_delta(proxy, name, before, delta=1, timeout=5):
    """Wait until metric name has grown by at least delta from before; returns
    the new value (the counter is bumped when the connection ends, which may be
    a moment after the client saw it end)."""
    return wait_for(lambda: metric(proxy, name) >= before + delta and metric(proxy, name),
                    timeout, "%s to reach %s" % (name, before + delta))


def log_lines(proxy, *parts):
    """Lines of the proxy's error log that contain every one of parts."""
    return [l for l in proxy.logtext().splitlines() if all(p in l for p in parts)]


def conf_line(path, prefix):
    """1-based number of the first line of file path that starts with prefix."""
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.startswith(prefix):
                return i
    raise AssertionError("%s: no line starting with %r" % (path, prefix))


# --- TLS upstreams (upstream.py --tls) ---------------------------------------

class TlsUpstream:
    """tests/integration/upstream.py in TLS mode serving cert (its cert file
    as given: leaf + CA, or cert.leaf_only with leaf_only=True); client_ca:
    require client certificates from that CA."""

    def __init__(self, tmpdir, cert, leaf_only=False, client_ca=None):
        self.port = free_port()
        self.state = tempfile.mkdtemp(dir=tmpdir)
        args = [PY, os.path.join(HERE, "upstream.py"), str(self.port), self.state,
                "--tls", cert.leaf_only if leaf_only else cert.cert, cert.key]
        if client_ca is not None:
            args += ["--client-ca", client_ca.cert]
        self.proc = subprocess.Popen(args)
        wait_port(self.port, proc=self.proc)
        self.url = "https://127.0.0.1:%d" % self.port

    def stop(self):
        kill(self.proc)


@pytest.fixture
def tls_upstream(tmp_path):
    """tls_upstream(cert, leaf_only=False, client_ca=None): a TlsUpstream,
    killed after the test."""
    made = []

    def make(*a, **kw):
        u = TlsUpstream(str(tmp_path), *a, **kw)
        made.append(u)
        return u
    yield make
    for u in made:
        u.stop()


# --- handshake and a request, with each client ---------------------------------

def test_python_client_request_over_tls(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    before = metric(p, handshakes())
    c = TlsConn(p.port, client_ctx(pki))
    assert c.sock.version() == "TLSv1.3"
    assert c.sock.selected_alpn_protocol() is None
    r = c.request("GET", "/hello?x=1", headers=[("X-Forwarded-Proto", "http")])
    assert r.status == 200
    got = r.json()
    assert got["target"] == "/hello?x=1"
    assert header_values(got["headers"], "X-Forwarded-Proto") == ["https"]
    # keep-alive over TLS: a second request on the same connection
    r = c.request("POST", "/second", body=b"over tls")
    assert r.status == 200
    assert r.json()["body_sha256"] == hashlib.sha256(b"over tls").hexdigest()
    c.close()
    wait_delta(p, handshakes(), before)


def test_curl_request_over_tls(pki, make_proxy, upstream, tmp_path):
    """curl offers ALPN h2,http/1.1: the server picks http/1.1; the
    certificate verifies both for the IP and for a DNS name."""
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    for url, extra in (("https://127.0.0.1:%d/curl-ip" % p.port, []),
                       ("https://localhost:%d/curl-name" % p.port,
                        ["--resolve", "localhost:%d:127.0.0.1" % p.port])):
        out = str(tmp_path / "body")
        cp = subprocess.run(["curl", "-sS", "--cacert", pki.ca.cert, "-o", out,
                             "-w", "%{http_code} %{http_version} %{ssl_verify_result}"]
                            + extra + [url], capture_output=True, text=True, timeout=20)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout == "200 1.1 0"
        got = json.load(open(out))
        assert got["path"] == "/" + url.rsplit("/", 1)[1]
        assert header_values(got["headers"], "X-Forwarded-Proto") == ["https"]


def test_s_client_request_over_tls(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    cp = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port, "-servername", "localhost",
         "-verify_hostname", "localhost", "-CAfile", pki.ca.cert, "-verify_return_error",
         "-ign_eof"],
        input=b"GET /s-client HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        capture_output=True, timeout=20)
    out = cp.stdout.decode("latin-1")
    assert "Verify return code: 0 (ok)" in out
    assert "HTTP/1.1 200 OK" in out
    assert '"path": "/s-client"' in out


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_default_certificate_rsa_and_ecdsa(pki, make_proxy, upstream, kind):
    """Each key type works as the default certificate, under TLS 1.3 and 1.2
    (where the negotiated suite names the key type)."""
    cert = getattr(pki, kind)
    p = make_proxy(tls_conf(cert), upstream=upstream.url)
    c = TlsConn(p.port, client_ctx(pki))
    assert c.peer_der() == cert.der()
    assert c.request("GET", "/13").status == 200
    c = TlsConn(p.port, client_ctx(pki, version="1.2"))
    assert c.sock.version() == "TLSv1.2"
    assert c.peer_der() == cert.der()
    assert c.sock.cipher()[0].startswith("ECDHE-RSA-" if kind == "rsa" else "ECDHE-ECDSA-")
    assert "GCM" in c.sock.cipher()[0] or "CHACHA20" in c.sock.cipher()[0]
    assert c.request("GET", "/12").status == 200


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_sni_picks_certificate(pki, make_proxy, upstream, version):
    sni = "tls_sni_certificates = " + ",\n    ".join(
        "%s:%s" % (c.cert, c.key) for c in (pki.sni_a, pki.sni_wild, pki.sni_exact, pki.sni_cn))
    p = make_proxy(tls_conf(pki.rsa, sni), upstream=upstream.url)
    # names checked by hand: the default certificate does not carry the unknown ones
    ctx = client_ctx(pki, version=version, check_hostname=False)
    cases = [
        ("a.example", pki.sni_a),
        ("x.wild.example", pki.sni_wild),
        ("exact.wild.example", pki.sni_exact),     # exact beats the wildcard
        ("cn-only.example", pki.sni_cn),           # no SAN: its CN
        ("a.b.wild.example", pki.rsa),             # a wildcard is one label
        ("unknown.example", pki.rsa),
        ("localhost", pki.rsa),
        ("127.0.0.1", pki.rsa),                    # an IP: no SNI at all
    ]
    for name, want in cases:
        c = TlsConn(p.port, ctx, sni=name)
        assert c.peer_der() == want.der(), "SNI %s: got the wrong certificate" % name
        assert c.request("GET", "/sni").status == 200
        c.close()


# --- protocol versions and ALPN --------------------------------------------------

@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls11_refused_python(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    before = metric(p, failures("unsupported_protocol"))
    with pytest.raises(ssl.SSLError):
        TlsConn(p.port, client_ctx(pki, version="1.1"))
    wait_delta(p, failures("unsupported_protocol"), before)
    assert wait_for(lambda: log_lines(p, "api: client 127.0.0.1", "TLS handshake failed"),
                    3, "the debug log line of the failure")


def test_tls11_refused_s_client(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    before = metric(p, failures("unsupported_protocol"))
    cp = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port,
                         "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
                        input=b"", capture_output=True, timeout=20)
    assert cp.returncode != 0
    assert b"Cipher is (NONE)" in cp.stdout or b"alert protocol version" in cp.stderr
    wait_delta(p, failures("unsupported_protocol"), before)


def test_min_version_13_refuses_tls12(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa, "tls_min_version = 1.3"), upstream=upstream.url)
    before = metric(p, failures("unsupported_protocol"))
    with pytest.raises(ssl.SSLError):
        TlsConn(p.port, client_ctx(pki, version="1.2"))
    wait_delta(p, failures("unsupported_protocol"), before)
    assert TlsConn(p.port, client_ctx(pki)).request("GET", "/13").status == 200


def test_alpn_selection(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    for offer, want in ((["h2", "http/1.1"], "http/1.1"), (["http/1.0"], "http/1.0"),
                        (["http/1.1", "http/1.0"], "http/1.1")):
        c = TlsConn(p.port, client_ctx(pki, alpn=offer))
        assert c.sock.selected_alpn_protocol() == want, offer
        assert c.request("GET", "/alpn").status == 200
        c.close()
    before = metric(p, failures("no_application_protocol"))
    with pytest.raises(ssl.SSLError):
        TlsConn(p.port, client_ctx(pki, alpn=["h2"]))
    wait_delta(p, failures("no_application_protocol"), before)


def test_cipher_options(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.ecdsa, "tls_ciphersuites = TLS_CHACHA20_POLY1305_SHA256",
                            "tls_ciphers = ECDHE-ECDSA-AES256-GCM-SHA384"), upstream=upstream.url)
    c = TlsConn(p.port, client_ctx(pki, version="1.3"))
    assert c.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    c = TlsConn(p.port, client_ctx(pki, version="1.2"))
    assert c.sock.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert c.request("GET", "/ciphers").status == 200


def test_no_shared_cipher_and_peer_alert(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    # a TLS 1.2 client offering only static-RSA CBC suites: none is in tls_ciphers
    before = metric(p, failures("no_shared_cipher"))
    ctx = client_ctx(pki, version="1.2")
    ctx.set_ciphers("AES128-SHA:AES256-SHA")
    with pytest.raises(ssl.SSLError):
        TlsConn(p.port, ctx)
    wait_delta(p, failures("no_shared_cipher"), before)
    # a client that does not trust the certificate ends the handshake with an alert
    before = metric(p, failures("peer_alert"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca2.cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        TlsConn(p.port, ctx)
    wait_delta(p, failures("peer_alert"), before)


# --- not TLS at all on a TLS port; nothing at all ----------------------------

def test_plain_http_on_tls_port_gets_400(pki, make_proxy, upstream, conn_to):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    before = metric(p, failures("plain_http"))
    c = conn_to(p.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.response()
    assert (r.version, r.status, r.reason) == ("HTTP/1.1", 400, "Bad Request")
    assert r.header("Connection") == "close"
    assert r.body == b"plain HTTP request sent to a TLS port\n"
    assert c.closed()
    wait_delta(p, failures("plain_http"), before)
    # and the port still speaks TLS
    assert TlsConn(p.port, client_ctx(pki)).request("GET", "/").status == 200


def test_non_tls_bytes_on_tls_port_closed(pki, make_proxy, upstream, conn_to):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    before = metric(p, failures("not_tls"))
    c = conn_to(p.port)
    c.send(b"\x00\x01\x02\x03 binary junk\r\n\r\n")
    assert c.closed()
    assert c.buf == b""
    wait_delta(p, failures("not_tls"), before)
    # a client that connects and goes away is counted as closed
    before = metric(p, failures("closed"))
    socket.create_connection(("127.0.0.1", p.port)).close()
    wait_delta(p, failures("closed"), before)


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01"], ids=["nothing", "partial-hello"])
def test_handshake_timeout(pki, make_proxy, upstream, conn_to, sent):
    conf = tls_conf(pki.rsa).replace("client_header_timeout = 2", "client_header_timeout = 1")
    p = make_proxy(conf, upstream=upstream.url)
    before = metric(p, failures("timeout"))
    c = conn_to(p.port)
    t = time.time()
    if sent:
        c.send(sent)
    assert c.closed(timeout=5)
    took = time.time() - t
    assert 0.8 < took < 3, took
    wait_delta(p, failures("timeout"), before)


# --- client certificates ---------------------------------------------------------

def mtls_conf(pki, mode):
    return tls_conf(pki.rsa, "tls_client_ca = " + pki.ca.cert, "tls_verify_client = " + mode,
                    "tls_client_subject_header = " + SUBJECT_HEADER)


@pytest.mark.parametrize("client", ["client1", "client1_ec"])
def test_mtls_require_accepts_client_cert(pki, make_proxy, upstream, client):
    """The verified subject reaches the upstream, exactly once: a forged copy
    from the client is removed."""
    p = make_proxy(mtls_conf(pki, "require"), upstream=upstream.url)
    c = TlsConn(p.port, client_ctx(pki, cert=getattr(pki, client)))
    r = c.request("GET", "/mtls", headers=[(SUBJECT_HEADER, "CN=admin"),
                                           (SUBJECT_HEADER.lower(), "CN=root")])
    assert r.status == 200
    assert header_values(upstream_headers(r), SUBJECT_HEADER) == [CLIENT1_SUBJECT]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mtls_require_without_cert_refused(pki, make_proxy, upstream, version):
    p = make_proxy(mtls_conf(pki, "require"), upstream=upstream.url)
    before = metric(p, failures("no_client_certificate"))
    assert refused(p.port, client_ctx(pki, version=version)) is not None
    wait_delta(p, failures("no_client_certificate"), before)
    if os.path.exists(p.access_path):
        assert not [l for l in open(p.access_path) if "/must-not-arrive" in l]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mtls_require_cert_from_other_ca_refused(pki, make_proxy, upstream, version):
    p = make_proxy(mtls_conf(pki, "require"), upstream=upstream.url)
    before = metric(p, failures("bad_client_certificate"))
    assert refused(p.port, client_ctx(pki, cert=pki.client_other, version=version)) is not None
    wait_delta(p, failures("bad_client_certificate"), before)


def test_mtls_optional(pki, make_proxy, upstream):
    p = make_proxy(mtls_conf(pki, "optional"), upstream=upstream.url)
    # no certificate: served, and a forged subject does not get through
    r = TlsConn(p.port, client_ctx(pki)).request("GET", "/anon", headers=[(SUBJECT_HEADER, "CN=admin")])
    assert r.status == 200
    assert header_values(upstream_headers(r), SUBJECT_HEADER) == []
    # a good one: its subject
    r = TlsConn(p.port, client_ctx(pki, cert=pki.client1)).request("GET", "/known")
    assert r.status == 200
    assert header_values(upstream_headers(r), SUBJECT_HEADER) == [CLIENT1_SUBJECT]
    # a certificate that does not verify is refused, even though none is required
    before = metric(p, failures("bad_client_certificate"))
    assert refused(p.port, client_ctx(pki, cert=pki.client_other)) is not None
    wait_delta(p, failures("bad_client_certificate"), before)


@pytest.mark.parametrize("mode", ["drop", "allow"])
def test_subject_header_underscore_twin_never_passes(pki, make_proxy, upstream, mode):
    """WSGI reads X_SSL_Client_Subject as HTTP_X_SSL_CLIENT_SUBJECT too: with
    underscore_headers = allow the twin is removed like the header itself."""
    conf = mtls_conf(pki, "optional").replace(
        "[admin]", "underscore_headers = %s\n[admin]" % mode, 1)
    p = make_proxy(conf, upstream=upstream.url)
    for cert in (None, pki.client1):
        r = TlsConn(p.port, client_ctx(pki, cert=cert)).request("GET", "/twin", headers=[
            ("X_SSL_Client_Subject", "CN=admin"), ("x-ssl_client-subject", "CN=root")])
        assert r.status == 200
        hs = upstream_headers(r)
        got = [v for k, v in hs if k.lower().replace("_", "-") == SUBJECT_HEADER.lower()]
        assert got == ([] if cert is None else [CLIENT1_SUBJECT]), got


def test_subject_header_stripped_without_client_verification(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa, "tls_client_subject_header = " + SUBJECT_HEADER),
                   upstream=upstream.url)
    r = TlsConn(p.port, client_ctx(pki)).request("GET", "/forged", headers=[
        (SUBJECT_HEADER, CLIENT1_SUBJECT), ("X-Other", "kept")])
    assert r.status == 200
    hs = upstream_headers(r)
    assert header_values(hs, SUBJECT_HEADER) == []
    assert header_values(hs, "X-Other") == ["kept"]


# --- session resumption -----------------------------------------------------------

RESUMPTION_CASES = [
    # id, protocol, extra options, resumed?
    ("tls13-tickets", "1.3", [], True),
    ("tls12-tickets", "1.2", [], True),
    ("tls13-tickets-no-cache", "1.3", ["tls_session_cache_size = 0"], True),
    ("tls12-session-id-cache", "1.2", ["tls_session_tickets = false"], True),
    ("tls13-off", "1.3", ["tls_session_tickets = false", "tls_session_cache_size = 0"], False),
    ("tls12-off", "1.2", ["tls_session_tickets = false", "tls_session_cache_size = 0"], False),
]


@pytest.mark.parametrize("version,extra,want", [c[1:] for c in RESUMPTION_CASES],
                         ids=[c[0] for c in RESUMPTION_CASES])
def test_resumption_python_session_reuse(pki, make_proxy, upstream, version, extra, want):
    """The client closes without a close_notify, as most HTTP clients do: that
    must not cost the session (OpenSSL 3 treats such an EOF as a fatal error,
    which removes the session from the server's cache, unless told to ignore
    it; tls12-session-id-cache is the regression test)."""
    p = make_proxy(tls_conf(pki.rsa, *extra), upstream=upstream.url)
    ctx = client_ctx(pki, version=version)
    c = TlsConn(p.port, ctx)
    # reading an answer also reads the TLS 1.3 tickets sent after the handshake
    assert c.request("GET", "/first").status == 200
    sess = c.sock.session
    c.close()
    hs, res = metric(p, handshakes()), metric(p, resumed())
    c = TlsConn(p.port, ctx, session=sess)
    assert c.request("GET", "/again").status == 200
    assert c.sock.session_reused is want
    c.close()
    wait_delta(p, handshakes(), hs)
    assert metric(p, resumed()) == res + (1 if want else 0)


@pytest.mark.parametrize("version,extra", [("1.3", []), ("1.2", ["tls_session_tickets = false"])],
                         ids=["tickets", "session-id-cache"])
def test_resumption_across_workers(pki, make_proxy, upstream, version, extra):
    """Two workers (SO_REUSEPORT spreads connections): ticket keys and the
    session cache are the listener's, not a worker's. The client closes with
    a close_notify here, see test_resumption_python_session_reuse for
    clients that do not."""
    conf = tls_conf(pki.rsa, *extra).replace("workers = 1", "workers = 2")
    p = make_proxy(conf, upstream=upstream.url)
    ctx = client_ctx(pki, version=version)
    c = TlsConn(p.port, ctx)
    assert c.request("GET", "/first").status == 200
    sess = c.sock.session
    c.sock.unwrap()
    c.close()
    reused = []
    for i in range(12):
        c = TlsConn(p.port, ctx, session=sess)
        assert c.request("GET", "/n%d" % i).status == 200
        reused.append(c.sock.session_reused)
        c.sock.unwrap()
        c.close()
    assert all(reused), reused


def test_resumption_s_client_reconnect_tls12(pki, make_proxy, upstream):
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    res = metric(p, resumed())
    cp = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port,
                         "-servername", "localhost", "-CAfile", pki.ca.cert, "-tls1_2",
                         "-reconnect"], input=b"", capture_output=True, timeout=20)
    out = cp.stdout.decode("latin-1")
    assert out.count("New, TLSv1.2") == 1
    assert out.count("Reused, TLSv1.2") == 5
    wait_delta(p, resumed(), res, 5)


def test_resumption_s_client_session_file_tls13(pki, make_proxy, upstream, tmp_path):
    """s_client -reconnect does not wait for TLS 1.3 tickets; -sess_out after
    a whole exchange, then -sess_in, does."""
    p = make_proxy(tls_conf(pki.rsa), upstream=upstream.url)
    sess = str(tmp_path / "sess.pem")
    base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port, "-servername",
            "localhost", "-CAfile", pki.ca.cert, "-ign_eof"]
    req = b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = subprocess.run(base + ["-sess_out", sess], input=req, capture_output=True,
                         timeout=20).stdout.decode("latin-1")
    assert "New, TLSv1.3" in out and "HTTP/1.1 200 OK" in out
    res = metric(p, resumed())
    out = subprocess.run(base + ["-sess_in", sess], input=req, capture_output=True,
                         timeout=20).stdout.decode("latin-1")
    assert "Reused, TLSv1.3" in out and "HTTP/1.1 200 OK" in out
    wait_delta(p, resumed(), res)


def test_tickets_survive_reload(pki, make_proxy, upstream):
    """Ticket keys are process-wide and kept across reloads."""
    p = make_proxy(tls_conf(pki.rsa, "tls_session_cache_size = 0"), upstream=upstream.url)
    ctx = client_ctx(pki)
    c = TlsConn(p.port, ctx)
    assert c.request("GET", "/first").status == 200
    sess = c.sock.session
    c.close()
    reload_and_wait(p)
    c = TlsConn(p.port, ctx, session=sess)
    assert c.request("GET", "/after-reload").status == 200
    assert c.sock.session_reused


def ticket_key_name(sess):
    """The key name of the ticket in an s_client session file: its first 16
    bytes (the server's key name, see tls.c's ticket_cb)."""
    out = subprocess.run(["openssl", "sess_id", "-in", sess, "-noout", "-text"],
                         capture_output=True, check=True).stdout.decode()
    m = re.search(r"TLS session ticket:\s*\n\s*0000 - ((?:[0-9a-f]{2}[ -]){15}[0-9a-f]{2})", out)
    assert m, out
    return m.group(1).replace("-", " ")


def rotate_ticket_key(proxy):
    """POST /tls/rotate-ticket-key on the admin listener; the number of ticket
    keys that decrypt afterwards."""
    c = Conn(proxy.admin)
    try:
        r = c.request("POST", "/tls/rotate-ticket-key")
    finally:
        c.close()
    assert r.status == 200, r.body
    return r.json()["ticket_keys"]


def test_ticket_key_rotation_on_the_wire(pki, make_proxy, upstream, tmp_path):
    """Rotations driven by the test through the admin endpoint (the timer is an
    hour away, so none comes unasked): after one, new tickets are under a new
    key and a ticket from before still resumes, renewed under the new key.
    After a second rotation right behind the first, that ticket still resumes:
    a retired key decrypts until its tickets expire (300 s here), however soon
    the next rotation comes (it used to be forgotten, see test_tls.c). The
    session cache is off, so only tickets resume."""
    p = make_proxy(tls_conf(pki.rsa, "tls_session_cache_size = 0"), upstream=upstream.url)
    base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port, "-servername",
            "localhost", "-CAfile", pki.ca.cert, "-ign_eof"]
    req = b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    def s_client(*args):
        out = subprocess.run(base + list(args), input=req, capture_output=True,
                             timeout=20).stdout.decode("latin-1")
        assert "HTTP/1.1 200 OK" in out
        return out

    a, b, c, d, e = (str(tmp_path / (n + ".pem")) for n in "abcde")
    assert "New, TLSv1.3" in s_client("-sess_out", a)
    assert rotate_ticket_key(p) == 2
    res = metric(p, resumed())
    assert "Reused, TLSv1.3" in s_client("-sess_in", a, "-sess_out", b)
    res = wait_delta(p, resumed(), res)
    assert "New, TLSv1.3" in s_client("-sess_out", c)
    old, renewed, fresh = (ticket_key_name(f) for f in (a, b, c))
    assert old != fresh
    assert renewed == fresh

    assert rotate_ticket_key(p) == 3
    assert "Reused, TLSv1.3" in s_client("-sess_in", a, "-sess_out", d)
    wait_delta(p, resumed(), res)
    assert "New, TLSv1.3" in s_client("-sess_out", e)
    newest = ticket_key_name(e)
    assert newest not in (old, fresh)
    assert ticket_key_name(d) == newest
    assert len(log_lines(p, "session ticket key rotated by the admin endpoint")) == 2

    # an action is POST only, a page GET/HEAD only
    for method, path, allow in (("GET", "/tls/rotate-ticket-key", "POST"),
                                ("POST", "/metrics", "GET, HEAD"),
                                ("POST", "/sampling", "GET, HEAD")):
        conn = Conn(p.admin)
        try:
            r = conn.request(method, path)
        finally:
            conn.close()
        assert (r.status, r.header("Allow")) == (405, allow), (method, path)


# --- reload ------------------------------------------------------------------------

def reload_and_wait(p, ok=True):
    """SIGHUP p and wait for its log to say the reload is done (ok) or failed."""
    word = "reload done" if ok else "reload failed"
    n = len(log_lines(p, word))
    p.signal(signal.SIGHUP)
    wait_for(lambda: len(log_lines(p, word)) > n, 5, word)


def copy_cert(src, dir):
    """Copy a Cert's files to dir/cert.pem, dir/key.pem (the paths the config
    names, so that a test can replace them before a reload)."""
    from tls_certs import Cert
    c = Cert("live", os.path.join(dir, "cert.pem"), os.path.join(dir, "key.pem"))
    shutil.copyfile(src.cert, c.cert)
    shutil.copyfile(src.key, c.key)
    return c


def test_reload_new_certificate_for_new_connections(pki, make_proxy, upstream, tmp_path):
    live = copy_cert(pki.rsa, str(tmp_path))
    p = make_proxy(tls_conf(live), upstream=upstream.url)
    ctx = client_ctx(pki)
    old = TlsConn(p.port, ctx)
    assert old.peer_der() == pki.rsa.der()
    assert old.request("GET", "/before").status == 200
    copy_cert(pki.rsa2, str(tmp_path))
    reload_and_wait(p)
    c = TlsConn(p.port, ctx)
    assert c.peer_der() == pki.rsa2.der()
    assert c.request("GET", "/new").status == 200
    # the established connection goes on
    assert old.request("GET", "/still-old").status == 200
    assert not log_lines(p, "reload failed")


@pytest.mark.parametrize("what", ["garbage-cert", "missing-key", "mismatched-key"])
def test_reload_with_broken_certificate_keeps_old(pki, make_proxy, upstream, tmp_path, what):
    live = copy_cert(pki.rsa, str(tmp_path))
    p = make_proxy(tls_conf(live), upstream=upstream.url)
    if what == "garbage-cert":
        shutil.copyfile(pki.garbage, live.cert)
        option, line = "tls_certificate", conf_line(p.conf_path, "tls_certificate")
    elif what == "missing-key":
        os.unlink(live.key)
        option, line = "tls_key", conf_line(p.conf_path, "tls_key")
    else:
        shutil.copyfile(pki.rsa2.key, live.key)
        option, line = "tls_key", conf_line(p.conf_path, "tls_key")
    reload_and_wait(p, ok=False)
    assert log_lines(p, "reload failed, keeping the running configuration: %s:%d: %s: "
                     % (p.conf_path, line, option))
    c = TlsConn(p.port, client_ctx(pki))
    assert c.peer_der() == pki.rsa.der()
    assert c.request("GET", "/old-cert").status == 200


# --- the configuration check ---------------------------------------------------

CHECK_CONF = """
[DEFAULT]
workers = 1

[admin]
listen = 127.0.0.1:1

[listener:api]
listen = 127.0.0.1:2
upstream = http://127.0.0.1:3
"""


def check_config(tmp_path, lines):
    """tracebridge -t -c on CHECK_CONF + lines: (exit code, output, path, text)."""
    path = str(tmp_path / "check.conf")
    text = CHECK_CONF + "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    cp = subprocess.run([BINARY, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    return cp.returncode, cp.stdout + cp.stderr, path


def test_config_check_accepts_tls_options(pki, tmp_path):
    rc, out, _ = check_config(tmp_path, [
        "tls_certificate = " + pki.rsa.cert, "tls_key = " + pki.rsa.key,
        "tls_sni_certificates = %s:%s,\n    %s:%s" % (pki.sni_a.cert, pki.sni_a.key,
                                                    pki.sni_wild.cert, pki.sni_wild.key),
        "tls_min_version = 1.3", "tls_client_ca = " + pki.ca.cert,
        "tls_verify_client = optional", "tls_client_subject_header = " + SUBJECT_HEADER,
        "tls_session_cache_size = 0", "tls_session_tickets = false",
        "[listener:out]", "listen = 127.0.0.1:4", "upstream = https://127.0.0.1:5/",
        "upstream_tls_ca = " + pki.ca.cert, "upstream_tls_server_name = tb.example",
        "upstream_tls_certificate = " + pki.client1.cert,
        "upstream_tls_key = " + pki.client1.key])
    assert rc == 0, out


def _bad_cases(pki):
    # id: (lines after the listener section, option, what the message says after "PATH: "
    # or None to only check FILE:LINE: OPTION:)
    missing = pki.dir + "/does-not-exist.pem"
    return {
        "missing-key": (["tls_certificate = " + pki.rsa.cert, "tls_key = " + missing],
                        "tls_key", missing + ": "),
        "mismatched-key": (["tls_certificate = " + pki.rsa.cert, "tls_key = " + pki.rsa2.key],
                           "tls_key", "%s: does not match the certificate %s"
                           % (pki.rsa2.key, pki.rsa.cert)),
        "ecdsa-cert-rsa-key": (["tls_certificate = " + pki.ecdsa.cert, "tls_key = " + pki.rsa.key],
                               "tls_key", "%s: does not match the certificate %s"
                               % (pki.rsa.key, pki.ecdsa.cert)),
        "missing-cert": (["tls_certificate = " + missing, "tls_key = " + pki.rsa.key],
                         "tls_certificate", missing + ": "),
        "garbage-cert": (["tls_certificate = " + pki.garbage, "tls_key = " + pki.rsa.key],
                         "tls_certificate", pki.garbage + ": "),
        "key-without-cert": (["tls_key = " + pki.rsa.key], None, None),
        "cert-without-key": (["tls_certificate = " + pki.rsa.cert], None, None),
        "tls11": (["tls_certificate = " + pki.rsa.cert, "tls_key = " + pki.rsa.key,
                   "tls_min_version = 1.1"], "tls_min_version", None),
        "require-without-ca": (["tls_certificate = " + pki.rsa.cert, "tls_key = " + pki.rsa.key,
                                "tls_verify_client = require"], None, None),
        "sni-mismatched-key": (["tls_certificate = " + pki.rsa.cert, "tls_key = " + pki.rsa.key,
                                "tls_sni_certificates = %s:%s" % (pki.sni_a.cert, pki.sni_wild.key)],
                               "tls_sni_certificates", None),
        "upstream-cert-without-key": (["upstream_tls_certificate = " + pki.client1.cert],
                                      None, None),
    }


BAD_IDS = ["missing-key", "mismatched-key", "ecdsa-cert-rsa-key", "missing-cert", "garbage-cert",
           "key-without-cert", "cert-without-key", "tls11", "require-without-ca",
           "sni-mismatched-key", "upstream-cert-without-key"]


@pytest.mark.parametrize("case", BAD_IDS)
def test_config_check_rejects(pki, tmp_path, case):
    lines, option, msg = _bad_cases(pki)[case]
    rc, out, path = check_config(tmp_path, lines)
    assert rc == 2, out
    assert out.startswith(path + ":"), out
    if option is not None:
        line = conf_line(path, option + " =")
        want = "%s:%d: %s: " % (path, line, option)
        assert want in out, out
        if msg is not None:
            assert want + msg in out, out


# --- https:// upstreams -----------------------------------------------------------

def up_conf(u, *more, listener_tls=None):
    return tls_conf(listener_tls, *more).replace("{upstream}", u.url)


def test_upstream_https_good(pki, make_proxy, tls_upstream, conn_to):
    u = tls_upstream(pki.rsa)
    p = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert))
    before = metric(p, UP_HANDSHAKES)
    r = conn_to(p.port).request("GET", "/over-https")
    assert r.status == 200
    got = r.json()
    assert got["path"] == "/over-https"
    assert got["tls"]["protocol"] == "TLSv1.3"
    assert got["tls"]["sni"] is None            # an IP-literal upstream: no SNI
    # the plain listener says http
    assert header_values(got["headers"], "X-Forwarded-Proto") == ["http"]
    assert metric(p, UP_HANDSHAKES) == before + 1


def test_upstream_https_server_name(pki, make_proxy, tls_upstream, conn_to):
    u = tls_upstream(pki.rsa)
    p = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert,
                           "upstream_tls_server_name = tb.example"))
    r = conn_to(p.port).request("GET", "/named")
    assert r.status == 200
    assert r.json()["tls"]["sni"] == "tb.example"


UPSTREAM_BAD = [
    # id, served cert attr, leaf only?, extra option lines (beyond upstream_tls_ca), reason in the log
    ("wrong-host-name", "wronghost", False, ["upstream_tls_server_name = tb.example"],
     "hostname mismatch"),   # OpenSSL 3 spells it in lower case
    ("wrong-host-ip", "wronghost", False, [], "IP address mismatch"),
    ("expired", "expired", False, [], "certificate has expired"),
    ("other-ca-leaf-only", "untrusted", True, [], "unable to get local issuer certificate"),
    ("other-ca-with-chain", "untrusted", False, [], "self-signed certificate in certificate chain"),
]


@pytest.mark.parametrize("attr,leaf_only,extra,reason", [c[1:] for c in UPSTREAM_BAD],
                         ids=[c[0] for c in UPSTREAM_BAD])
def test_upstream_https_verify_failure_is_502(pki, make_proxy, tls_upstream, conn_to,
                                              attr, leaf_only, extra, reason):
    u = tls_upstream(getattr(pki, attr), leaf_only=leaf_only)
    p = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert, *extra))
    before = metric(p, UP_TLS_ERRORS)
    r = conn_to(p.port).request("GET", "/bad-upstream")
    assert r.status == 502
    assert wait_for(lambda: log_lines(p, "api: upstream 127.0.0.1:%d: TLS handshake failed:" % u.port,
                                      reason), 3, "the log line")
    assert metric(p, UP_TLS_ERRORS) == before + 1


def test_upstream_https_private_ca_not_in_system_store(pki, make_proxy, tls_upstream, conn_to):
    """Without upstream_tls_ca the system store is used, which does not know
    the test CA: verification is on by default."""
    u = tls_upstream(pki.rsa)
    p = make_proxy(up_conf(u))
    before = metric(p, UP_TLS_ERRORS)
    assert conn_to(p.port).request("GET", "/system-store").status == 502
    assert log_lines(p, "TLS handshake failed", "certificate")
    assert metric(p, UP_TLS_ERRORS) == before + 1


def test_upstream_tls_handshake_counts_against_connect_timeout(pki, make_proxy, conn_to):
    """An upstream that accepts TCP but never answers the ClientHello: 504
    after upstream_connect_timeout, not upstream_timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)        # the kernel completes the TCP handshake; nobody reads
    try:
        conf = tls_conf(None).replace("upstream_connect_timeout = 2", "upstream_connect_timeout = 1")
        p = make_proxy(conf, upstream="https://127.0.0.1:%d" % silent.getsockname()[1])
        t = time.time()
        r = conn_to(p.port, timeout=10).request("GET", "/silent")
        took = time.time() - t
        assert r.status == 504
        assert 0.8 < took < 3, took
    finally:
        silent.close()


def test_upstream_https_verify_false(pki, make_proxy, tls_upstream, conn_to):
    u = tls_upstream(pki.untrusted, leaf_only=True)
    p = make_proxy(up_conf(u, "upstream_tls_verify = false"))
    assert conn_to(p.port).request("GET", "/lab").status == 200


def test_upstream_https_client_certificate(pki, make_proxy, tls_upstream, conn_to):
    u = tls_upstream(pki.rsa, client_ca=pki.ca)
    p = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert,
                           "upstream_tls_certificate = " + pki.client1.cert,
                           "upstream_tls_key = " + pki.client1.key))
    r = conn_to(p.port).request("GET", "/as-client1")
    assert r.status == 200
    assert r.json()["tls"]["client_subject"] == CLIENT1_SUBJECT
    # without one, the upstream refuses
    p2 = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert))
    assert conn_to(p2.port).request("GET", "/anonymous").status == 502


def test_upstream_https_keepalive_reuse(pki, make_proxy, tls_upstream, conn_to):
    u = tls_upstream(pki.rsa)
    p = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert))
    before = metric(p, UP_HANDSHAKES)
    c = conn_to(p.port)
    a = c.request("GET", "/one")
    b = c.request("GET", "/two")
    assert a.status == b.status == 200
    assert a.header("X-Conn-Id") == b.header("X-Conn-Id")
    assert metric(p, UP_HANDSHAKES) == before + 1


def test_upstream_tls_resumption_after_upstream_close(pki, make_proxy, tls_upstream, conn_to):
    """The pooled connection ends (the upstream closes it with a close_notify);
    its session must stay resumable: freeing the SSL without a shutdown state
    makes OpenSSL mark the session not resumable."""
    u = tls_upstream(pki.rsa)
    p = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert))
    c = conn_to(p.port)
    first = c.request("GET", "/first")
    assert first.status == 200 and first.json()["tls"]["resumed"] is False
    hs, res = metric(p, UP_HANDSHAKES), metric(p, UP_RESUMED)
    # the upstream ends the pooled connection (a read-until-close answer:
    # the client connection ends with it)...
    r = c.request("GET", "/close")
    assert r.status == 200 and r.body == b"until-close-body"
    # ...so the next request makes a new one, resuming the session
    after = conn_to(p.port).request("GET", "/after")
    assert after.status == 200
    assert after.header("X-Conn-Id") != first.header("X-Conn-Id")
    assert after.json()["tls"]["resumed"] is True
    assert metric(p, UP_HANDSHAKES) == hs + 1
    assert metric(p, UP_RESUMED) == res + 1


def test_upstream_tls_resumption_concurrent_requests(pki, make_proxy, tls_upstream, conn_to):
    u = tls_upstream(pki.rsa)
    p = make_proxy(up_conf(u, "upstream_tls_ca = " + pki.ca.cert))
    assert conn_to(p.port).request("GET", "/warm").status == 200
    res = metric(p, UP_RESUMED)
    out = []

    def one(i):
        out.append(conn_to(p.port).request("GET", "/slow-%d?delay=0.5" % i))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [r.status for r in out] == [200, 200]
    assert len({r.header("X-Conn-Id") for r in out}) == 2
    assert any(r.json()["tls"]["resumed"] for r in out)
    assert metric(p, UP_RESUMED) >= res + 1


# --- both sides TLS: a 1 GiB upload streams ---------------------------------------

GIB = 1 << 30


def test_1gib_upload_tls_in_tls_out_bounded_memory(pki, make_proxy, tls_upstream):
    u = tls_upstream(pki.rsa)
    conf = tls_conf(pki.ecdsa, "upstream_tls_ca = " + pki.ca.cert).replace(
        "upstream_timeout = 5", "upstream_timeout = 30")
    p = make_proxy(conf, upstream=u.url)
    c = TlsConn(p.port, client_ctx(pki), timeout=60)
    marker = os.path.join(u.state, "tls1g")
    c.send(b"PUT /upload?marker=tls1g HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB)
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    seen_before_end = False
    for i in range(1024):
        if i == 1023:
            seen_before_end = os.path.exists(marker)
        c.send(block)
        h.update(block)
    r = c.response()
    assert r.status == 200
    got = r.json()
    assert got["body_len"] == GIB
    assert got["body_sha256"] == h.hexdigest()
    assert got["tls"]["protocol"] == "TLSv1.3"
    assert header_values(got["headers"], "X-Forwarded-Proto") == ["https"]
    assert seen_before_end, "upstream saw no byte before the upload ended"
    hwm = p.status("VmHWM")
    print("1 GiB TLS upload: tracebridge VmHWM %d KiB" % hwm)
    assert hwm < 64 * 1024


def test_1gib_download_over_tls_listener_bounded_memory(pki, make_proxy, upstream):
    # a plain upstream behind a TLS listener: byte exact, and never spliced
    # (splice(2) moves ciphertext only between two plain sockets)
    conf = tls_conf(pki.ecdsa).replace("upstream_timeout = 5", "upstream_timeout = 30")
    p = make_proxy(conf, upstream=upstream.url)
    before = metric(p, "tracebridge_splices_total")
    c = TlsConn(p.port, client_ctx(pki), timeout=60)
    b = BulkConn(sock=c.sock, timeout=60)
    b.send(request_head("GET", "/bulk?size=%d&seed=31&mode=length" % GIB))
    r = b.response()
    assert r.status == 200
    assert r.header("Content-Length") == str(GIB)
    assert r.complete and r.nbytes == GIB
    assert r.sha256 == bulk_sha256(31, GIB)
    assert c.sock.version() == "TLSv1.3"
    # the connection goes on
    assert b.request("GET", "/after").json()["path"] == "/after"
    assert metric(p, "tracebridge_splices_total") == before
    hwm = p.status("VmHWM")
    print("1 GiB TLS download: tracebridge VmHWM %d KiB" % hwm)
    assert hwm < 64 * 1024


# --- the edge span says how the client connected ----------------------------------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACEPARENT2 = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def start_info(client, trace_id):
    """The `info` of the edge span's start notification in Redis for the W3C
    trace id (as osprofiler's base_id uuid)."""
    t = trace_id
    base = "%s-%s-%s-%s-%s" % (t[:8], t[8:12], t[12:16], t[16:20], t[20:])
    key = "osprofiler_opt:" + base
    wait_for(lambda: client.llen(key) == 2, 10, "the span of " + base)
    notes = [json.loads(x) for x in client.lrange(key, 0, -1)]
    return [n for n in notes if n["name"].endswith("-start")][0]["info"]


def test_span_records_tls_info(pki, make_proxy, upstream, servers):
    pytest.importorskip("redis")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    r = servers("redis")
    plain_port = free_port()
    conf = tls_conf(pki.rsa, "tls_client_ca = " + pki.ca.cert, "tls_verify_client = optional",
                    "tls_sni_certificates = %s:%s" % (pki.sni_a.cert, pki.sni_a.key))
    conf += """
[listener:plain]
listen = 127.0.0.1:%d
upstream = {upstream}
service = api

[profiler]
enabled = true
hmac_keys = SECRET_KEY
connection_string = %s

[tracing]
project = tlsproj
host = tls-host
""" % (plain_port, r.url)
    p = make_proxy(conf, upstream=upstream.url)
    c = TlsConn(p.port, client_ctx(pki, cert=pki.client1, version="1.3"), sni="a.example")
    assert c.request("GET", "/spanned", headers=[("traceparent", TRACEPARENT)]).status == 200
    cipher = c.sock.cipher()[0]
    wait_port(plain_port)
    assert Conn(plain_port).request("GET", "/plain", headers=[("traceparent", TRACEPARENT2)]).status == 200
    db = r.client()
    info = start_info(db, TRACEPARENT.split("-")[1])
    assert info["request"]["scheme"] == "https"
    assert info["tls"] == {"protocol": "TLSv1.3", "cipher": cipher, "sni": "a.example",
                           "client_subject": CLIENT1_SUBJECT}
    info = start_info(db, TRACEPARENT2.split("-")[1])
    assert info["request"]["scheme"] == "http"
    assert "tls" not in info
