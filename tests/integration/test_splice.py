"""Bulk bodies through the splice(2) relay (issue 11): byte-exact SHA-256
both ways with every framing, the relay cut by either side, slow readers,
pipelining and keep-alive after a spliced body, an upstream that sends more
than its Content-Length, splice = auto (responses only) and splice = off.
The relay cases run with splice = all, so request bodies are spliced too.

TB_BULK_SIZE sets the size of the byte-exact transfers (default 1 GiB;
scripts/test runs this file under ASan+UBSan with 64 MiB); the other cases
use at most 64 MiB. Bodies are upstream.py's /bulk streams, so the test
knows every hash without keeping a body in memory."""
import os
import socket
import struct
import time

import pytest

from bulk import (MIB, BulkConn, bulk_chunk_sizes, bulk_pieces, bulk_sha256,
                  request_head, send_upload, upload_frames)
from conftest import metrics, wait_for
from upstream import SMUGGLED

BULK = int(os.environ.get("TB_BULK_SIZE", str(1 << 30)))
MID = min(BULK, 64 * MIB)       # HTTP/1.0, slow readers, client aborts, splice = off
SMALL = min(BULK, 16 * MIB)     # pipelining, keep-alive, upstream cuts
HWM_LIMIT_KIB = 64 * 1024       # peak RSS bound, as in test_proxy.py

SPLICE_CONF = """
[DEFAULT]
workers = 1
log_level = info
access_log = {access}
drain_timeout = 5
splice = {splice}

[admin]
listen = 127.0.0.1:{admin}

[listener:api]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = api
upstream_timeout = {upstream_timeout}
upstream_connect_timeout = 2
client_header_timeout = 5
"""


@pytest.fixture
def splice_proxy(make_proxy, upstream):
    """splice_proxy(splice="all", upstream_timeout=20): a one-worker proxy
    in front of the upstream fixture, its probe connections gone. After the
    test, each must still run, with no sanitizer report in its log."""
    made = []

    def make(splice="all", upstream_timeout=20):
        p = make_proxy(SPLICE_CONF, upstream=upstream.url, splice=splice,
                       upstream_timeout=upstream_timeout)
        made.append(p)
        wait_for(lambda: active(p) == 0, 5, "the readiness probes to close")
        return p
    yield make
    for p in made:
        text = p.logtext()
        assert "Sanitizer" not in text and "runtime error:" not in text, text[-4000:]
        assert p.proc.poll() is None, "tracebridge exited: %s" % text[-4000:]


@pytest.fixture
def bulk_conn():
    made = []

    def make(port, **kw):
        c = BulkConn(port, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def metric(p, name):
    return metrics(p).get(name, 0.0)


def active(p):
    return metric(p, "tracebridge_connections_active")


def spliced(p):
    """(relays started, bytes relayed) so far."""
    m = metrics(p)
    return (m.get("tracebridge_splices_total", 0.0),
            m.get("tracebridge_spliced_bytes_total", 0.0))


def check_memory(p, what):
    hwm = p.status("VmHWM")
    print("%s: tracebridge VmHWM %d KiB" % (what, hwm))
    assert hwm < HWM_LIMIT_KIB, "%s: VmHWM %d KiB" % (what, hwm)


def bulk_path(size, seed, mode="length", **more):
    q = "size=%d&seed=%d&mode=%s" % (size, seed, mode)
    return "/bulk?" + q + "".join("&%s=%s" % kv for kv in more.items())


def check_exact(r, size, seed):
    assert r.status == 200
    assert r.complete, "body cut after %d of %d bytes" % (r.nbytes, size)
    assert r.nbytes == size
    assert r.sha256 == bulk_sha256(seed, size)


def check_healthy(p, bulk_conn, not_conn=None):
    """Every client connection gone, and a new one is served; its upstream
    connection is not not_conn. Returns that response."""
    wait_for(lambda: active(p) == 0, 5, "connections_active back to 0")
    r = bulk_conn(p.port, timeout=5).request("GET", "/after")
    assert r.status == 200 and r.json()["path"] == "/after"
    if not_conn is not None:
        assert r.header("X-Conn-Id") != not_conn, "a dead upstream connection was reused"
    assert p.proc.poll() is None
    return r


# --- byte exact, big, every framing ---------------------------------------------

@pytest.mark.parametrize("mode", ["length", "chunked", "close"])
def test_download_byte_exact(splice_proxy, bulk_conn, mode):
    p = splice_proxy()
    n0, b0 = spliced(p)
    c = bulk_conn(p.port, timeout=30)
    c.send(request_head("GET", bulk_path(BULK, 11, mode)))
    r = c.response()
    check_exact(r, BULK, 11)
    if mode == "length":
        assert r.header("Content-Length") == str(BULK)
    elif mode == "chunked":
        assert r.header("Transfer-Encoding") == "chunked"
        assert r.trailers[1:] == ["X-Bulk-Size: %d" % BULK]
        assert r.trailers[0].startswith("X-Bulk-Chunks: ")
    else:
        assert r.header("Content-Length") is None and r.header("Transfer-Encoding") is None
        assert r.header("Connection") == "close"
        assert c.closed()
    n1, b1 = spliced(p)
    print("%s download: %d relays, %d bytes spliced of %d" % (mode, n1 - n0, b1 - b0, BULK))
    assert n1 > n0
    if mode == "chunked":
        # chunks under 128 KiB and the starts of bigger ones go the usual
        # way; bulk_chunk_sizes puts most bytes in chunks far above that
        assert b1 - b0 >= BULK // 4
    else:
        assert b1 - b0 >= BULK * 9 // 10
    check_memory(p, "%s download" % mode)


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_upload_byte_exact(splice_proxy, bulk_conn, mode):
    p = splice_proxy()
    n0, b0 = spliced(p)
    c = bulk_conn(p.port, timeout=30)
    send_upload(c, "/upload", 11, BULK, mode)
    r = c.response()
    assert r.status == 200
    got = r.json()
    assert got["body_len"] == BULK
    assert got["body_sha256"] == bulk_sha256(11, BULK)
    hdr = {k.lower(): v for k, v in got["headers"]}
    if mode == "chunked":
        assert hdr["transfer-encoding"] == "chunked" and "content-length" not in hdr
    else:
        assert hdr["content-length"] == str(BULK)
    n1, b1 = spliced(p)
    print("%s upload: %d relays, %d bytes spliced of %d" % (mode, n1 - n0, b1 - b0, BULK))
    assert n1 > n0
    assert b1 - b0 >= (BULK // 4 if mode == "chunked" else BULK * 9 // 10)
    # the connection goes on
    assert c.request("GET", "/next").json()["path"] == "/next"
    check_memory(p, "%s upload" % mode)


def test_auto_splices_responses_only(splice_proxy, bulk_conn):
    # measured (bench/README.md): request bodies go faster copied through
    # the proxy's large reads, responses spliced
    p = splice_proxy(splice="auto")
    c = bulk_conn(p.port, timeout=30)
    n0, b0 = spliced(p)
    send_upload(c, "/upload", 16, MID, "length")
    got = c.response().json()
    assert got["body_len"] == MID and got["body_sha256"] == bulk_sha256(16, MID)
    assert spliced(p) == (n0, b0), "an upload was spliced with splice = auto"
    c.send(request_head("GET", bulk_path(MID, 16)))
    check_exact(c.response(), MID, 16)
    n1, b1 = spliced(p)
    assert n1 > n0 and b1 - b0 >= MID * 9 // 10
    check_memory(p, "splice = auto")


def test_http10_client_gets_chunked_body_dechunked(splice_proxy, bulk_conn):
    p = splice_proxy()
    n0, b0 = spliced(p)
    c = bulk_conn(p.port, timeout=30)
    c.send(request_head("GET", bulk_path(MID, 12, "chunked"), version="1.0"))
    r = c.response()
    assert r.version == "HTTP/1.1"
    assert r.header("Transfer-Encoding") is None and r.header("Content-Length") is None
    check_exact(r, MID, 12)
    assert r.trailers == []
    assert c.closed()
    n1, b1 = spliced(p)
    assert n1 > n0 and b1 > b0
    check_memory(p, "HTTP/1.0 de-chunked download")


# --- either side goes away mid-splice ----------------------------------------------

def access_line(p, part):
    """(status, bytes sent) from the access log line of the request whose
    target contains part."""
    line = wait_for(lambda: [ln for ln in open(p.access_path) if part in ln], 5,
                    "the access log line of " + part)[0]
    status, nbytes = line.split('" ', 1)[1].split()[:2]
    return int(status), int(nbytes)


def rst_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_spliced_past(p, b0, what):
    wait_for(lambda: spliced(p)[1] > b0, 10, what)


@pytest.mark.parametrize("how", ["close", "rst"])
@pytest.mark.parametrize("direction", ["download", "upload"])
def test_client_closes_mid_splice(splice_proxy, bulk_conn, direction, how):
    # close: close(2); with a download's bytes unread the kernel answers
    # further data with an RST anyway, an upload's close is a plain FIN.
    # rst: SO_LINGER 0, an RST at once.
    p = splice_proxy()
    c = bulk_conn(p.port, timeout=10)
    first = c.request("GET", "/first")
    conn_id = first.header("X-Conn-Id")
    _, b0 = spliced(p)
    if direction == "download":
        c.send(request_head("GET", bulk_path(MID, 13)))
        r = c.head()
        assert r.status == 200 and r.header("X-Conn-Id") == conn_id
        c.read_some(r, 4 * MIB)
        wait_spliced_past(p, b0, "a relay to run")
    else:
        c.send(request_head("PUT", "/upload", length=MID))
        for piece in bulk_pieces(13, 0, MID // 2):
            c.send(piece)
            if spliced(p)[1] > b0:
                break
        wait_spliced_past(p, b0, "a relay to run")
    if how == "rst":
        rst_close(c.sock)
    else:
        c.sock.close()
    # the request is aborted, its upstream connection closed, never pooled
    check_healthy(p, bulk_conn, not_conn=conn_id)
    # and reported with what went out
    status, nbytes = access_line(p, "/upload" if direction == "upload" else "/bulk?")
    if direction == "upload":
        assert status == 499
    else:
        assert status == 200 and nbytes < MID


def mid_chunk(seed, size, after):
    """A body offset past after, in the middle of a chunk of /bulk's chunked
    body that is big enough to be spliced."""
    pos = 0
    for k in bulk_chunk_sizes(seed, MIB):
        if pos >= after and k >= MIB // 2 and pos + k <= size:
            return pos + k // 2
        pos += k
        assert pos < size, "no big chunk past %d" % after


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_upstream_cuts_mid_splice(splice_proxy, bulk_conn, mode, reset):
    p = splice_proxy()
    size = 2 * SMALL
    cut = mid_chunk(14, size, SMALL) if mode == "chunked" else SMALL + 12345
    _, b0 = spliced(p)
    c = bulk_conn(p.port, timeout=10)
    extra = {"cut": cut}
    if reset:
        extra["reset"] = 1
    c.send(request_head("GET", bulk_path(size, 14, mode, **extra)))
    r = c.response()
    assert r.status == 200
    assert not r.complete, "a cut body reached the client as complete"
    if mode == "length":
        assert r.header("Content-Length") == str(size)
    # the bytes that came are the right ones, and the connection is closed.
    # Maybe fewer than cut: what is still queued for the client when the
    # upstream fails mid-body is dropped with the connection (splice = off
    # does the same), and whether bytes were queued is down to timing.
    print("cut at %d, %d received" % (cut, r.nbytes))
    assert r.nbytes <= cut < size
    assert r.sha256 == bulk_sha256(14, r.nbytes)
    assert c.closed()
    assert spliced(p)[1] > b0, "the cut did not happen while splicing"
    check_healthy(p, bulk_conn, not_conn=r.header("X-Conn-Id"))
    assert "failed mid-response" in p.logtext()


# --- slow reader ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_slow_reader(splice_proxy, bulk_conn, mode):
    # a stall longer than upstream_timeout: a slow client is not a slow upstream
    p = splice_proxy(upstream_timeout=1)
    _, b0 = spliced(p)
    hwm0 = p.status("VmHWM")
    c = bulk_conn(p.port, timeout=10, rcvbuf=64 * 1024)
    c.recv_size = 64 * 1024
    stalled = []

    def slow(total):
        if total >= MIB and not stalled:
            stalled.append(total)
            time.sleep(1.5)
        time.sleep(0.002)
    c.on_recv = slow
    t = time.time()
    c.send(request_head("GET", bulk_path(MID, 15, mode)))
    r = c.response()
    print("slow reader (%s): %.1f s" % (mode, time.time() - t))
    check_exact(r, MID, 15)
    assert stalled
    assert spliced(p)[1] > b0
    # bounded: far less than the body was ever held
    hwm = p.status("VmHWM")
    print("slow reader (%s): VmHWM %d KiB, %d before" % (mode, hwm, hwm0))
    assert hwm < HWM_LIMIT_KIB
    assert hwm - hwm0 < MID // 1024 // 2
    assert c.request("GET", "/next").status == 200


# --- what follows a spliced body ---------------------------------------------------

def test_pipelined_downloads_after_spliced_body(splice_proxy, bulk_conn):
    p = splice_proxy()
    _, b0 = spliced(p)
    c = bulk_conn(p.port, timeout=20)
    reqs = [("bulk", SMALL, 21, "length"), ("bulk", SMALL, 22, "chunked"),
            ("small", "/p1"), ("bulk", SMALL, 23, "length"), ("small", "/p2"),
            ("bulk", SMALL, 24, "close")]
    c.send(b"".join(request_head("GET", bulk_path(*q[1:]) if q[0] == "bulk" else q[1])
                    for q in reqs))
    for q in reqs:
        r = c.response()
        if q[0] == "bulk":
            check_exact(r, q[1], q[2])
        else:
            assert r.status == 200 and r.json()["path"] == q[1]
    assert c.closed()
    assert spliced(p)[1] - b0 >= 3 * SMALL


def test_pipelined_uploads_after_spliced_body(splice_proxy, bulk_conn):
    p = splice_proxy()
    _, b0 = spliced(p)
    c = bulk_conn(p.port, timeout=20)
    data = bytearray()
    data += request_head("PUT", "/u1", length=SMALL)
    for piece in upload_frames(25, SMALL, "length"):
        data += piece
    data += request_head("GET", "/g1")
    data += request_head("PUT", "/u2", chunked=True)
    for piece in upload_frames(26, SMALL, "chunked"):
        data += piece
    data += request_head("POST", "/u3", length=3) + b"abc"
    data += request_head("GET", "/g2")
    c.send(bytes(data))         # one write
    want = [("/u1", SMALL, 25), ("/g1", 0, None), ("/u2", SMALL, 26), ("/u3", 3, None),
            ("/g2", 0, None)]
    for path, n, seed in want:
        r = c.response()
        assert r.status == 200
        got = r.json()
        assert got["path"] == path
        assert got["body_len"] == n
        if seed is not None:
            assert got["body_sha256"] == bulk_sha256(seed, n)
    assert spliced(p)[1] - b0 >= SMALL


@pytest.mark.parametrize("what", ["download-length", "download-chunked", "upload-length",
                                  "upload-chunked"])
def test_keepalive_reuse_after_spliced_body(splice_proxy, bulk_conn, what):
    p = splice_proxy()
    direction, mode = what.split("-")
    c = bulk_conn(p.port, timeout=20)
    first = c.request("GET", "/first")
    conn_id = first.header("X-Conn-Id")
    reused0 = metric(p, "tracebridge_upstream_reused_total")
    _, b0 = spliced(p)
    size = 2 * SMALL
    if direction == "download":
        c.send(request_head("GET", bulk_path(size, 27, mode)))
        r = c.response()
        check_exact(r, size, 27)
    else:
        send_upload(c, "/up", 27, size, mode)
        r = c.response()
        assert r.json()["body_sha256"] == bulk_sha256(27, size)
    assert r.header("Connection") is None
    assert r.header("X-Conn-Id") == conn_id
    assert spliced(p)[1] > b0
    # the same client connection, the same pooled upstream connection
    r = c.request("GET", "/after")
    assert r.status == 200 and r.json()["path"] == "/after"
    assert r.header("X-Conn-Id") == conn_id
    assert metric(p, "tracebridge_upstream_reused_total") == reused0 + 2
    assert active(p) == 1


@pytest.mark.parametrize("splice", ["auto", "off"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["sequential", "pipelined"])
def test_upstream_extra_bytes_after_content_length(splice_proxy, bulk_conn, pipelined,
                                                   splice):
    p = splice_proxy(splice=splice)
    _, b0 = spliced(p)
    c = bulk_conn(p.port, timeout=10)
    size = 4 * MIB
    first = request_head("GET", bulk_path(size, 28, extra=3 * len(SMUGGLED)))
    nxt = request_head("GET", "/next")
    if pipelined:
        c.send(first + nxt)
    else:
        c.send(first)
    r = c.response()
    check_exact(r, size, 28)
    if not pipelined:
        c.send(nxt)
    r2 = c.response()
    assert r2.header("X-Smuggled") is None, "the upstream's extra bytes reached the client"
    assert r2.status == 200
    assert r2.json()["path"] == "/next"
    assert r2.header("X-Conn-Id") != r.header("X-Conn-Id"), \
        "an upstream connection with bytes past its response was reused"
    # nothing more arrives
    assert not c.closed(timeout=0.5) and not c.buf
    if splice == "auto":
        assert spliced(p)[1] > b0
    else:
        assert spliced(p)[1] == 0


# --- splice = off ----------------------------------------------------------------

@pytest.mark.parametrize("what", ["download-length", "download-chunked", "download-close",
                                  "upload-length", "upload-chunked"])
def test_splice_off_same_bytes(splice_proxy, bulk_conn, what):
    p = splice_proxy(splice="off")
    direction, mode = what.split("-")
    c = bulk_conn(p.port, timeout=30)
    if direction == "download":
        c.send(request_head("GET", bulk_path(MID, 29, mode)))
        check_exact(c.response(), MID, 29)
    else:
        send_upload(c, "/up", 29, MID, mode)
        got = c.response().json()
        assert got["body_len"] == MID and got["body_sha256"] == bulk_sha256(29, MID)
    assert spliced(p) == (0, 0)
    check_memory(p, "splice = off, %s" % what)
