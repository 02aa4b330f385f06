"""The request-smuggling matrix (issue 13): for each vector, the bytes a
client sends, what the upstream may receive (nothing, exactly these
requests, or at most a prefix of one request before the proxy hangs up) and
what the client gets; then the response side, the bytes an upstream sends
and exactly what the client gets. One proxy (one worker, no X-Forwarded-*,
no tracing: the forwarded bytes are predictable) and one recording upstream
serve each table. Then the pooled-connection cases: stray bytes an upstream
sends after a complete response never reach the next client."""
import collections
import re
import socket
import threading
import time

import pytest

from conftest import BASIC_CONF, Conn, Proxy, metrics, wait_for

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Recorder:
    """A raw HTTP/1.1 upstream. Every request is recorded byte for byte,
    ("req", bytes), framed the only ways the proxy forwards a body
    (Content-Length or chunked); bytes left when a connection closes
    mid-request are recorded as ("partial", bytes). Each request is answered
    with what answers[path] says (bytes, or a function of the socket), else
    200 "ok"."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.records = []
        self.answers = {}
        self.conns = 0
        self.lock = threading.Condition()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def record(self, kind, data):
        with self.lock:
            self.records.append((kind, data))
            self.lock.notify_all()

    def serve(self, c):
        buf = b""
        try:
            while True:
                n = request_end(buf)
                if n is None:
                    d = c.recv(65536)
                    if not d:
                        break
                    buf += d
                    continue
                req, buf = buf[:n], buf[n:]
                self.record("req", req)
                path = req.split(b" ", 2)[1].decode("latin-1")
                answer = self.answers.get(path.split("?")[0], OK)
                if callable(answer):
                    answer(c)
                else:
                    c.sendall(answer)
        except OSError:
            pass
        if buf:
            self.record("partial", buf)
        c.close()

    def clear(self):
        with self.lock:
            self.records = []

    def wait_for_path(self, path, timeout=5.0):
        """The records up to and without the first request for path."""
        end = time.time() + timeout
        with self.lock:
            while True:
                for i, (kind, data) in enumerate(self.records):
                    if kind == "req" and data.split(b" ", 2)[1] == path:
                        return self.records[:i]
                left = end - time.time()
                assert left > 0, "upstream never got %r: %r" % (path, self.records)
                self.lock.wait(left)

    def close(self):
        self.sock.close()


def request_end(buf):
    """Length of the first complete request in buf, or None. The proxy's
    forwarded framing only: Content-Length, or chunked with trailers."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    head, pos = buf[:i], i + 4
    cl = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    if cl:
        n = pos + int(cl.group(1))
        return n if len(buf) >= n else None
    if not re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I):
        return pos
    while True:
        e = buf.find(b"\r\n", pos)
        if e < 0:
            return None
        size = int(buf[pos:e].split(b";")[0], 16)
        pos = e + 2
        if size == 0:
            while True:
                e = buf.find(b"\r\n", pos)
                if e < 0:
                    return None
                pos, line = e + 2, buf[pos:e]
                if not line:
                    return pos
        pos += size + 2
        if len(buf) < pos:
            return None


CONF = BASIC_CONF.replace("workers = 2", "workers = 1") + "x_forwarded = false\n"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    up = Recorder()
    p = Proxy(str(tmp_path_factory.mktemp("smuggling")), CONF, upstream=up.url)
    yield p, up
    p.stop()
    up.close()


# --- the request matrix -------------------------------------------------------

class Partial(bytes):
    """The upstream may get at most a prefix of these bytes (the proxy had
    started forwarding when the body went bad), never a complete request."""


V = collections.namedtuple("V", "name sent upstream client")
# sent: the client's bytes; upstream: None (nothing reaches it), a list of
# the exact requests it gets, or Partial; client: the statuses it gets, in
# order; "close" last when the proxy must close the connection after them.

H = b"Host: h\r\n"


# a chunked POST's head, as sent and as forwarded
TE_HEAD = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"


def get(target=b"/", host=b"h", extra=b""):
    """A GET as the proxy forwards it."""
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"


MATRIX = [
    # baseline: forwarded as received
    V("plain GET", b"GET /a?b=c HTTP/1.1\r\n" + H + b"\r\n", [get(b"/a?b=c")], [200]),
    V("POST with CL", b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc",
      [b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"], [200]),

    V("long extension method", b"AVERYLONGEXTENSIONMETHODNAME /m HTTP/1.1\r\n" + H + b"\r\n",
      [b"AVERYLONGEXTENSIONMETHODNAME /m HTTP/1.1\r\n" + H + b"\r\n"], [200]),

    # Connection naming a field the proxy needs end to end
    V("Connection: close, Host", b"GET / HTTP/1.1\r\n" + H +
      b"Connection: close, Host\r\n\r\n", None, [400, "close"]),
    V("Connection: Host before Host", b"GET / HTTP/1.1\r\nConnection: host\r\n" + H +
      b"\r\n", None, [400, "close"]),
    V("Connection names Content-Length", b"POST / HTTP/1.1\r\n" + H +
      b"Content-Length: 5\r\nConnection: Content-Length\r\n\r\nhello", None, [400, "close"]),
    V("Connection names Transfer-Encoding", b"POST / HTTP/1.1\r\n" + H +
      b"Transfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n0\r\n\r\n",
      None, [400, "close"]),
    V("Connection names a plain field", b"GET / HTTP/1.1\r\n" + H +
      b"Connection: X-Hop\r\nX-Hop: 1\r\nX-Keep: 2\r\n\r\n",
      [get(extra=b"X-Keep: 2\r\n")], [200]),

    # Host: uri-host [ ":" port ]
    V("Host a b/c@d", b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n", None, [400, "close"]),
    V("Host with path", b"GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", None, [400, "close"]),
    V("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", None, [400, "close"]),
    V("Host two ports", b"GET / HTTP/1.1\r\nHost: h:1:2\r\n\r\n", None, [400, "close"]),
    V("Host bad IPv6", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", None, [400, "close"]),
    V("Host comma list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", None, [400, "close"]),
    V("two Host", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", None, [400, "close"]),
    V("no Host", b"GET / HTTP/1.1\r\n\r\n", None, [400, "close"]),
    V("Host IPv6 and port", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
      [get(host=b"[::1]:8080")], [200]),
    V("Host empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", [get(host=b"")], [200]),

    # request-target forms
    V("absolute-form", b"GET http://nova:8774/v2.1?x=1 HTTP/1.1\r\nHost: other\r\n\r\n",
      [get(b"/v2.1?x=1", b"nova:8774")], [200]),
    V("absolute-form, userinfo dropped", b"GET http://admin:pw@nova/s HTTP/1.1\r\n" + H +
      b"\r\n", [get(b"/s", b"nova")], [200]),
    V("absolute-form, empty path", b"GET HTTP://nova?q HTTP/1.1\r\n" + H + b"\r\n",
      [get(b"/?q", b"nova")], [200]),
    V("absolute-form OPTIONS", b"OPTIONS http://nova HTTP/1.1\r\n" + H + b"\r\n",
      [b"OPTIONS * HTTP/1.1\r\nHost: nova\r\n\r\n"], [200]),
    V("absolute-form, HTTP/1.0 without Host", b"GET http://nova:1/x HTTP/1.0\r\n\r\n",
      [get(b"/x", b"nova:1")], [200, "close"]),
    V("absolute-form, bad authority", b"GET http://a b/ HTTP/1.1\r\n" + H + b"\r\n",
      None, [400, "close"]),
    V("absolute-form, empty host", b"GET http:///x HTTP/1.1\r\n" + H + b"\r\n",
      None, [400, "close"]),
    V("absolute-form, two @", b"GET http://a@b@c/ HTTP/1.1\r\n" + H + b"\r\n",
      None, [400, "close"]),
    V("absolute-form ftp", b"GET ftp://h/ HTTP/1.1\r\n" + H + b"\r\n", None, [400, "close"]),
    V("neither origin- nor absolute-form", b"GET evil.example/x HTTP/1.1\r\n" + H + b"\r\n",
      None, [400, "close"]),
    V("GET *", b"GET * HTTP/1.1\r\n" + H + b"\r\n", None, [400, "close"]),
    V("OPTIONS *", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
      [b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"], [200]),
    V("CONNECT", b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", None, [405]),
    V("CONNECT origin-form", b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", None, [400, "close"]),

    # CL / TE
    V("CL + TE", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", None, [400, "close"]),
    V("TE + CL", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
      b"Content-Length: 5\r\n\r\n0\r\n\r\n", None, [400, "close"]),
    V("TE + CL 0", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
      b"Content-Length: 0\r\n\r\n0\r\n\r\n", None, [400, "close"]),
    V("TE chunked", TE_HEAD + b"3\r\nabc\r\n0\r\n\r\n",
      [TE_HEAD + b"3\r\nabc\r\n0\r\n\r\n"], [200]),
    V("TE CHUNKED, OWS", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\t CHUNKED \r\n\r\n"
      b"0\r\n\r\n", [TE_HEAD + b"0\r\n\r\n"], [200]),
    V("TE gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
      None, [501, "close"]),
    V("TE gzip, chunked", b"POST / HTTP/1.1\r\n" + H +
      b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", None, [501, "close"]),
    V("TE chunked, identity", b"POST / HTTP/1.1\r\n" + H +
      b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", None, [501, "close"]),
    V("TE chunked twice", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", None, [501, "close"]),
    V("TE xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n",
      None, [501, "close"]),
    V("TE chunked with VT", b"POST / HTTP/1.1\r\n" + H +
      b"Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", None, [400, "close"]),
    V("TE empty", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n\r\n",
      None, [400, "close"]),
    V("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      None, [400, "close"]),
    V("TE space before colon", b"POST / HTTP/1.1\r\n" + H +
      b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", None, [400, "close"]),
    V("TE obs-fold", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n"
      b"0\r\n\r\n", None, [400, "close"]),

    # duplicate and conflicting Content-Length
    V("CL 5, 5", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello",
      [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"], [200]),
    V("CL twice, equal", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
      b"content-length: 5\r\n\r\nhello",
      [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"], [200]),
    V("CL leading zeros", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 005\r\n\r\nhello",
      [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"], [200]),
    V("CL twice, different", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
      b"Content-Length: 6\r\n\r\nhello!", None, [400, "close"]),
    V("CL 5, 6", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
      None, [400, "close"]),
    V("CL +5", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
      None, [400, "close"]),
    V("CL -1", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", None, [400, "close"]),
    V("CL 0x5", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello",
      None, [400, "close"]),
    V("CL 5 5", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5 5\r\n\r\nhello",
      None, [400, "close"]),
    V("CL 5,", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5,\r\n\r\nhello",
      None, [400, "close"]),
    V("CL empty", b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n", None, [400, "close"]),
    V("CL 2^63", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 9223372036854775808\r\n\r\n",
      None, [400, "close"]),
    V("CL 2^64", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 18446744073709551616\r\n\r\n",
      None, [400, "close"]),
    V("CL 1e3", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1e3\r\n\r\n", None, [400, "close"]),
    V("CL space before colon", b"POST / HTTP/1.1\r\n" + H +
      b"Content-Length : 5\r\n\r\nhello", None, [400, "close"]),
    V("CL obs-fold", b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n 5\r\n\r\nhello",
      None, [400, "close"]),

    # chunk-size oddities (the head is forwarded before the body goes bad)
    V("chunk size 0x5", TE_HEAD + b"0x5\r\nhello\r\n0\r\n\r\n",
      Partial(TE_HEAD), [400, "close"]),
    V("chunk size -1", TE_HEAD + b"-1\r\n\r\n",
      Partial(TE_HEAD), [400, "close"]),
    V("chunk size 2^63", TE_HEAD + b"8000000000000000\r\n",
      Partial(TE_HEAD), [400, "close"]),
    V("chunk size 17 digits", TE_HEAD + b"00000000000000001\r\nx\r\n0\r\n\r\n",
      Partial(TE_HEAD), [400, "close"]),
    V("chunk size bare LF", TE_HEAD + b"5\nhello\r\n0\r\n\r\n",
      Partial(TE_HEAD), [400, "close"]),
    V("chunk data too long", TE_HEAD + b"3\r\nhello\r\n0\r\n\r\n",
      Partial(TE_HEAD + b"3\r\nhel"), [400, "close"]),
    V("chunk ext bare LF", TE_HEAD + b"3;a=b\nabc\r\n0\r\n\r\n",
      Partial(TE_HEAD), [400, "close"]),
    V("chunk size leading space", TE_HEAD + b" 3\r\nabc\r\n0\r\n\r\n",
      Partial(TE_HEAD), [400, "close"]),
    V("chunked upper hex, ext, last-chunk 000",
      TE_HEAD + b"A;x=\"y\"\r\n0123456789\r\n000\r\n\r\n",
      [TE_HEAD + b"A;x=\"y\"\r\n0123456789\r\n000\r\n\r\n"], [200]),

    # trailers: what no trailer may carry is not forwarded (RFC 9110 6.5.1)
    V("trailers filtered", TE_HEAD + b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nContent-Length: 5\r\n"
      b"Host: evil\r\nAuthorization: Basic eA==\r\nTransfer-Encoding: chunked\r\n"
      b"Trailer: X-Sum\r\nConnection: close\r\nTE: trailers\r\nKeep-Alive: 1\r\n"
      b"Upgrade: h2c\r\nProxy-Authorization: y\r\nX-B: 2\r\n\r\n",
      [TE_HEAD + b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n"], [200]),
    V("trailer named by Connection", b"POST / HTTP/1.1\r\n" + H + b"Connection: X-Hop\r\n"
      b"Transfer-Encoding: chunked\r\n\r\n0\r\nx-hop: 1\r\nX-Keep: 2\r\n\r\n",
      [TE_HEAD + b"0\r\nX-Keep: 2\r\n\r\n"], [200]),
    V("trailers, all dropped", TE_HEAD + b"0\r\nHost: evil\r\n\r\n",
      [TE_HEAD + b"0\r\n\r\n"], [200]),
    V("trailer obs-fold", TE_HEAD + b"0\r\nX-A: 1\r\n 2\r\n\r\n",
      Partial(TE_HEAD + b"0\r\n"), [400, "close"]),
    V("trailer space before colon", TE_HEAD + b"0\r\nHost : evil\r\n\r\n",
      Partial(TE_HEAD + b"0\r\n"), [400, "close"]),
    V("trailer bare LF", TE_HEAD + b"0\r\nX-A: 1\n\r\n",
      Partial(TE_HEAD + b"0\r\n"), [400, "close"]),
    V("trailer NUL", TE_HEAD + b"0\r\nX-A: 1\x00\r\n\r\n",
      Partial(TE_HEAD + b"0\r\n"), [400, "close"]),
    V("trailer section too long", TE_HEAD + b"0\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
      Partial(TE_HEAD + b"0\r\n"), [400, "close"]),

    # whitespace before colon, obs-fold, line endings, NUL
    V("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", None, [400, "close"]),
    V("tab before colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n", None, [400, "close"]),
    V("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n 2\r\n\r\n", None, [400, "close"]),
    V("space after start line", b"GET / HTTP/1.1\r\n " + H + b"\r\n", None, [400, "close"]),
    V("bare LF request line", b"GET / HTTP/1.1\n" + H + b"\r\n", None, [400, "close"]),
    V("bare LF in fields", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\n\r\n", None, [400, "close"]),
    V("bare LF head end", b"GET / HTTP/1.1\r\n" + H + b"\n", None, [400, "close"]),
    V("all bare LF", b"GET / HTTP/1.1\nHost: h\n\n", None, [400, "close"]),
    V("bare CR in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r2\r\n\r\n", None, [400, "close"]),
    V("bare CR request line", b"GET / HTTP/1.1\rHost: h\r\n\r\n", None, [400, "close"]),
    V("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\x002\r\n\r\n", None, [400, "close"]),
    V("NUL in name", b"GET / HTTP/1.1\r\n" + H + b"X\x00A: 1\r\n\r\n", None, [400, "close"]),
    V("NUL in target", b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n", None, [400, "close"]),
    V("NUL in CL", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\x00\r\n\r\nx",
      None, [400, "close"]),
    V("empty line before request", b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", None, [400, "close"]),
    V("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", None, [400, "close"]),
    V("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", None, [505, "close"]),
    V("two spaces in request line", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", None, [400, "close"]),

    # pipelining: each request is framed on its own
    V("pipelined after CL body", b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\n"
      b"abcGET /b HTTP/1.1\r\n" + H + b"\r\n",
      [b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc", get(b"/b")], [200, 200]),
    V("pipelined after chunked body", b"POST /a HTTP/1.1\r\n" + H +
      b"Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n",
      [b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
       get(b"/b")], [200, 200]),
    V("pipelined bad second request", b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
      b"GET /b HTTP/1.1\r\nHost: a b\r\n\r\n", [get(b"/a")], [200, 400, "close"]),
]


def exchange(port, sent, client):
    """Send, read the responses; the statuses and whether it closed."""
    c = Conn(port)
    try:
        try:
            c.send(sent)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = []
        want = [s for s in client if s != "close"]
        for _ in want:
            got.append(c.response().status)
        if "close" in client:
            got.append("close" if c.closed() else "open")
        return got
    finally:
        c.close()


def upstream_saw(rig, mark):
    """What the upstream got until now: a sentinel request from a fresh
    connection marks the end."""
    p, up = rig
    c = Conn(p.port)
    assert c.request("GET", mark).status == 200
    c.close()
    return up.wait_for_path(mark.encode())


@pytest.mark.parametrize("v", MATRIX, ids=[v.name for v in MATRIX])
def test_request_matrix(rig, v):
    p, up = rig
    up.clear()
    assert exchange(p.port, v.sent, v.client) == list(v.client)
    got = upstream_saw(rig, "/sentinel")
    if v.upstream is None:
        assert got == []
    elif isinstance(v.upstream, Partial):
        assert all(kind == "partial" for kind, _ in got), got
        for _, data in got:
            assert v.upstream.startswith(data), got
    else:
        assert got == [("req", r) for r in v.upstream]


def test_trailers_split_anywhere(rig):
    """The trailer section is held until whole, however it arrives."""
    p, up = rig
    up.clear()
    trailers = b"X-Sum: 1\r\nHost: evil\r\nX-B: 2\r\n\r\n"
    c = Conn(p.port)
    c.send(TE_HEAD + b"3\r\nabc\r\n0\r\n")
    for i in range(len(trailers)):
        time.sleep(0.01)
        c.send(trailers[i:i + 1])
    assert c.response().status == 200
    c.close()
    assert upstream_saw(rig, "/sentinel") == [
        ("req", TE_HEAD + b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n")]


def test_matrix_is_big_enough():
    assert len(MATRIX) + len(RESPONSES) > 50 and len(MATRIX) > 50


# --- the response side ---------------------------------------------------------

R = collections.namedtuple("R", "name method answer client usable")
# method: the client's (GET or HEAD); answer: the upstream's bytes;
# client: exactly what the client gets; usable: the client connection then
# serves the next request.

BAD_GATEWAY = (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 16\r\n\r\n502 Bad Gateway\n")

RESPONSES = [
    R("200 with CL", "GET", OK, OK, True),
    R("204 with CL", "GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
      b"HTTP/1.1 204 No Content\r\n\r\n", True),
    R("204 chunked", "GET", b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
      b"HTTP/1.1 204 No Content\r\n\r\n", True),
    R("304 with CL", "GET", b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
      b"Content-Length: 100\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
      b"Content-Length: 100\r\n\r\n", True),
    R("HEAD with CL", "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
      b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", True),
    R("CL 5, 5", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
      b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True),
    R("CL 2^63", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
      BAD_GATEWAY, True),
    R("CL 2^64", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
      BAD_GATEWAY, True),
    R("CL + TE", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BAD_GATEWAY, True),
    R("CL twice, different", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
      b"Content-Length: 3\r\n\r\nok!", BAD_GATEWAY, True),
    R("chunked twice", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
      b"0\r\n\r\n", BAD_GATEWAY, True),
    R("space before colon", "GET", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
      BAD_GATEWAY, True),
    R("obs-fold", "GET", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok",
      BAD_GATEWAY, True),
    R("bare LF", "GET", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", BAD_GATEWAY, True),
    R("NUL in value", "GET", b"HTTP/1.1 200 OK\r\nX-A: \x00\r\nContent-Length: 2\r\n\r\nok",
      BAD_GATEWAY, True),
    R("status 600", "GET", b"HTTP/1.1 600 X\r\nContent-Length: 2\r\n\r\nok", BAD_GATEWAY, True),
    R("101", "GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
      BAD_GATEWAY, True),
    R("reserved Close field", "GET", b"HTTP/1.1 200 OK\r\nClose: 1\r\nContent-Length: 2\r\n\r\nok",
      OK, True),
    R("100 then 200", "GET", b"HTTP/1.1 100 Continue\r\n\r\n" + OK, OK, True),
    R("trailers filtered", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      b"2\r\nok\r\n0\r\nX-Sum: 1\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n"
      b"Host: h\r\nAuthorization: x\r\nTrailer: X-Sum\r\nConnection: close\r\nX-B: 2\r\n\r\n",
      b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      b"2\r\nok\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", True),
    R("trailer named by Connection", "GET", b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\n"
      b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-Hop: 1\r\nX-Keep: 2\r\n\r\n",
      b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Keep: 2\r\n\r\n", True),
    R("bytes after the CL body", "GET", OK + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"
      b"smuggled", OK, True),
]


def read_exactly(c, n, timeout=5.0):
    """n bytes from c, then a short look for more (there must be none)."""
    c.sock.settimeout(timeout)
    while len(c.buf) < n:
        d = c.sock.recv(65536)
        if not d:
            break
        c.buf += d
    c.sock.settimeout(0.2)
    try:
        c.buf += c.sock.recv(65536)
    except (socket.timeout, ConnectionResetError):
        pass
    got, c.buf = c.buf, b""
    return got


@pytest.mark.parametrize("v", RESPONSES, ids=[v.name for v in RESPONSES])
def test_response_matrix(rig, v):
    p, up = rig
    path = "/r/%d" % RESPONSES.index(v)
    up.answers[path] = v.answer
    c = Conn(p.port)
    try:
        c.send(("%s %s HTTP/1.1\r\nHost: h\r\n\r\n" % (v.method, path)).encode())
        assert read_exactly(c, len(v.client)) == v.client
        if v.usable:
            c.send(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_exactly(c, len(OK)) == OK
        else:
            assert c.closed()
    finally:
        c.close()


def test_absolute_form_authority_is_host_userinfo_never_recorded(make_proxy, upstream, conn_to):
    p = make_proxy(upstream=upstream.url)
    c = conn_to(p.port)
    c.send(b"GET http://admin:s3cr3t@keystone.example:5000/v3?x=1 HTTP/1.1\r\n"
           b"Host: evil.example\r\n\r\n")
    r = c.response()
    assert r.status == 200
    got = r.json()
    hdr = {k.lower(): v for k, v in got["headers"]}
    assert got["target"] == "/v3?x=1"
    assert hdr["host"] == "keystone.example:5000"
    assert hdr["x-forwarded-host"] == "keystone.example:5000"
    assert [k.lower() for k, _ in got["headers"]].count("host") == 1
    assert b"s3cr3t" not in r.raw_head.encode() + r.body
    # the access log has the origin-form target, never the userinfo
    line = wait_for(lambda: [l for l in open(p.access_path) if "/v3?x=1" in l], 5,
                    "the access log line")[0]
    assert '"GET /v3?x=1 HTTP/1.1" 200' in line
    assert "s3cr3t" not in open(p.access_path).read() + p.logtext()


def test_x_forwarded_host_is_the_whole_host(make_proxy, upstream, conn_to):
    host = "h" * 300 + ".example:8080"      # longer than what logs keep
    r = conn_to(make_proxy(upstream=upstream.url).port).request(
        "GET", "/", headers=[("Host", host)])
    hdr = {k.lower(): v for k, v in r.json()["headers"]}
    assert hdr["host"] == host and hdr["x-forwarded-host"] == host


# --- stray bytes on pooled upstream connections --------------------------------

SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: 1\r\n\r\nsmuggled"


def answer_then(delay, extra):
    """An answer: 200 "ok", then after delay seconds the extra bytes."""
    def answer(sock):
        sock.sendall(OK)
        time.sleep(delay)
        sock.sendall(extra)
    return answer


def mine(path):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path.encode())


@pytest.mark.parametrize("gap", [0.05, 0.2])
def test_stray_bytes_on_idle_connection_never_reach_the_next_client(make_proxy, gap):
    """Seen: stray bytes sent 50 ms after a response reached the next client
    as its response, and responses then shifted by one for three clients."""
    up = Recorder()
    try:
        p = make_proxy(CONF, upstream=up.url)
        up.answers["/first"] = answer_then(gap, SMUGGLED)
        for i in range(3):
            up.answers["/c%d" % i] = mine("/c%d" % i)
        stray0 = metrics(p)["tracebridge_upstream_pool_stray_total"]
        c = Conn(p.port)
        c.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_exactly(c, len(OK)) == OK
        c.close()
        # the stray bytes reach the pooled connection: closed at once
        wait_for(lambda: metrics(p)["tracebridge_upstream_pool_stray_total"] == stray0 + 1,
                 5, "the stray bytes counted")
        for i in range(3):
            c = Conn(p.port)
            c.send(b"GET /c%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
            assert read_exactly(c, len(mine("/c%d" % i))) == mine("/c%d" % i)
            c.close()
        assert up.conns == 2        # the poisoned connection was not reused
        assert "upstream 127.0.0.1:%d: bytes on an idle connection" % up.port in p.logtext()
    finally:
        up.close()


def test_server_closing_an_idle_connection_is_not_stray(make_proxy):
    up = Recorder()
    try:
        p = make_proxy(CONF, upstream=up.url)

        def answer_and_close(sock):
            sock.sendall(OK)
            time.sleep(0.05)
            sock.shutdown(socket.SHUT_RDWR)
        up.answers["/bye"] = answer_and_close
        c = Conn(p.port)
        assert c.request("GET", "/bye").status == 200
        time.sleep(0.3)
        assert c.request("GET", "/next").status == 200
        assert up.conns == 2
        assert metrics(p)["tracebridge_upstream_pool_stray_total"] == 0
        assert "bytes on an idle connection" not in p.logtext()
    finally:
        up.close()
