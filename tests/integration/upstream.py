#!/usr/bin/python3
"""A real HTTP/1.1 upstream for the integration tests.

Plain sockets and threads, so that the tests control framing exactly
(chunked with trailers, read-until-close, resets, slow answers). Each
connection gets a number, sent back as X-Conn-Id, so tests can see keep-alive
reuse. Run: upstream.py PORT [STATEFILE_DIR] [--tls CERT KEY [--client-ca CA]]

With --tls, accepted connections are TLS (Python's ssl, server side, TLS 1.2
and 1.3, session tickets and cache on so clients can resume); everything
else behaves the same. --client-ca CA asks for a client certificate and
requires one that CA signed; its subject is then sent back in the JSON
answer ("client_subject"). Closes the upstream decides on (/close,
Connection: close, the connection dropped after /arm-drop) send a TLS
close_notify first; /reset does not.

/bulk serves large deterministic bodies (see bulk_response); the same
functions here let a test compute what it should receive, or send the same
stream as an upload.
"""
import functools
import hashlib
import json
import math
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

conn_counter = 0
conn_lock = threading.Lock()
STATE_DIR = None
TLS_CTX = None


def read_line(f, limit=65536):
    line = f.readline(limit)
    if not line:
        raise EOFError
    return line


def read_head(f):
    line = read_line(f)
    while line in (b"\r\n", b"\n"):
        line = read_line(f)
    method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = read_line(f)
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name, value.strip()))
    return method, target, version, headers


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def body_chunks(f, headers, on_first=None):
    """Yield the request body in pieces (Content-Length or chunked)."""
    te = hget(headers, "Transfer-Encoding")
    first = True
    if te and te.lower() == "chunked":
        while True:
            size_line = read_line(f).split(b";")[0].strip()
            size = int(size_line, 16)
            if size == 0:
                while read_line(f) not in (b"\r\n", b"\n"):
                    pass
                return
            left = size
            while left:
                d = f.read(min(left, 1 << 20))
                if not d:
                    raise EOFError
                if first and on_first:
                    on_first()
                    first = False
                left -= len(d)
                yield d
            read_line(f)
    else:
        left = int(hget(headers, "Content-Length") or 0)
        while left:
            d = f.read1(min(left, 1 << 20)) if hasattr(f, "read1") else f.read(min(left, 1 << 20))
            if not d:
                raise EOFError
            if first and on_first:
                on_first()
                first = False
            left -= len(d)
            yield d


def send(sock, status, body=b"", headers=(), reason="OK"):
    head = "HTTP/1.1 %d %s\r\n" % (status, reason)
    hs = list(headers)
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs):
        hs.append(("Content-Length", str(len(body))))
    for k, v in hs:
        head += "%s: %s\r\n" % (k, v)
    sock.sendall(head.encode("latin-1") + b"\r\n" + body)


def close(sock):
    """Close a connection the server decided to end: with a TLS close_notify
    first (without waiting long for the peer's), so that a read-until-close
    body is not a truncation."""
    if isinstance(sock, ssl.SSLSocket):
        try:
            sock.settimeout(1.0)
            sock.unwrap()
        except (OSError, ValueError):
            pass
    sock.close()


def client_subject(sock):
    """The verified client certificate's subject as "CN=a,O=b" (RFC 2253
    order: last RDN first), or None."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    cert = sock.getpeercert()
    if not cert:
        return None
    rdns = [",".join("%s=%s" % (ATTR.get(k, k), v) for k, v in rdn)
            for rdn in cert.get("subject", ())]
    return ",".join(reversed(rdns))


ATTR = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
        "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


# --- /bulk: big deterministic bodies -------------------------------------------

# The stream of seed S is bulk_block(S) repeated: 1 MiB + 7 bytes, so it is
# not periodic at 1 MiB or any power of two (a proxy that dropped or doubled
# a pipe's or buffer's worth of bytes changes the hash).
BULK_BLOCK = (1 << 20) + 7
MIB = 1 << 20


@functools.lru_cache(maxsize=8)
def bulk_block(seed):
    return random.Random(seed).randbytes(BULK_BLOCK)


def bulk_pieces(seed, start, n):
    """Bytes [start, start + n) of seed's stream, as memoryviews of at most
    one block (no copy)."""
    block = memoryview(bulk_block(seed))
    pos, end = start, start + n
    while pos < end:
        off = pos % BULK_BLOCK
        k = min(BULK_BLOCK - off, end - pos)
        yield block[off:off + k]
        pos += k


@functools.lru_cache(maxsize=16)
def bulk_sha256(seed, size):
    """SHA-256 (hex) of the first size bytes of seed's stream."""
    h = hashlib.sha256()
    for piece in bulk_pieces(seed, 0, size):
        h.update(piece)
    return h.hexdigest()


def bulk_chunk_sizes(seed, maxchunk):
    """Endless chunk sizes in 1..maxchunk, log-uniform (seeded): as many
    1-byte chunks as maxchunk ones, every size class between, so bodies mix
    chunks too small to splice with ones far above the threshold."""
    rng = random.Random(seed * 7919 + 1)
    top = math.log2(maxchunk) + 1
    while True:
        yield max(1, min(maxchunk, int(2 ** rng.uniform(0, top))))


def chunked_frames(seed, size, maxchunk, trailers=(), cut=None):
    """The chunked encoding of seed's first size bytes, chunk sizes from
    bulk_chunk_sizes(seed, maxchunk), a chunk extension on every 16th chunk,
    then the last chunk with trailers: (name, value) pairs, or a function
    of the number of chunks returning them. Yields buffers to send in
    order; small frames are coalesced so that 1-byte chunks do not cost a
    syscall each. cut: stop after that many body bytes, mid-chunk, with no
    last chunk."""
    out = bytearray()
    pos = n_chunks = 0
    sizes = bulk_chunk_sizes(seed, maxchunk)
    limit = size if cut is None else min(cut, size)
    while pos < size:
        k = min(next(sizes), size - pos)
        ext = b";n=%d" % n_chunks if n_chunks % 16 == 0 else b""
        out += b"%x%s\r\n" % (k, ext)
        n_chunks += 1
        take = min(k, limit - pos)
        if take < 4096:
            for piece in bulk_pieces(seed, pos, take):
                out += piece
        else:
            yield bytes(out)
            out.clear()
            yield from bulk_pieces(seed, pos, take)
        pos += take
        if cut is not None and pos >= limit:
            if out:
                yield bytes(out)
            return
        out += b"\r\n"
        if len(out) >= 1 << 18:
            yield bytes(out)
            out.clear()
    if callable(trailers):
        trailers = trailers(n_chunks)
    out += b"0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                               for k, v in trailers) + b"\r\n"
    yield bytes(out)


# What /bulk?extra=E sends after the body: a complete response of its own,
# repeated, so a proxy that lets it through shows it (X-Smuggled).
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nX-Smuggled: 1\r\n\r\nSMUGGLED!"


def bulk_junk(n):
    return (SMUGGLED * (n // len(SMUGGLED) + 1))[:n]


def hard_close(sock):
    """Close with a TCP RST (SO_LINGER 0), no close_notify."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def bulk_response(sock, cid, q):
    """GET /bulk?size=N&seed=S&mode=length|chunked|close&maxchunk=M&cut=K
    &reset=1&extra=E: N bytes of seed S's stream (default seed 1), framed by
    Content-Length (length, the default), chunked with chunk sizes 1..M
    (default 1 MiB) and X-Bulk-Chunks / X-Bulk-Size trailers, or by the
    close of the connection (close). cut=K: only K body bytes, then the
    connection is closed (reset=1: with an RST). extra=E (length): E more
    bytes (bulk_junk) in the same write as the body's end; the connection
    then goes on serving requests. Returns True if the connection goes on."""
    size = int(q.get("size", "0"))
    seed = int(q.get("seed", "1"))
    mode = q.get("mode", "length")
    cut = int(q["cut"]) if "cut" in q else None
    extra = int(q.get("extra", "0"))
    head = "HTTP/1.1 200 OK\r\nX-Conn-Id: %d\r\n" % cid
    if mode == "length":
        head += "Content-Length: %d\r\n" % size
    elif mode == "chunked":
        head += "Transfer-Encoding: chunked\r\nTrailer: X-Bulk-Chunks, X-Bulk-Size\r\n"
    elif mode == "close":
        head += "Connection: close\r\n"
    else:
        send(sock, 400, b"bad mode\n", [("X-Conn-Id", str(cid))], reason="Bad Request")
        return True
    sock.sendall(head.encode() + b"\r\n")
    if mode == "chunked":
        maxchunk = int(q.get("maxchunk", str(MIB)))
        for frame in chunked_frames(seed, size, maxchunk, cut=cut, trailers=lambda n: [
                ("X-Bulk-Chunks", str(n)), ("X-Bulk-Size", str(size))]):
            sock.sendall(frame)
    else:
        last = None
        for piece in bulk_pieces(seed, 0, size if cut is None else min(cut, size)):
            if last is not None:
                sock.sendall(last)
            last = piece
        # the body's last piece and the extra bytes go in one write
        tail = bytes(last) if last is not None else b""
        if extra and mode == "length" and cut is None:
            tail += bulk_junk(extra)
        if tail:
            sock.sendall(tail)
    if cut is not None and q.get("reset") == "1":
        hard_close(sock)
        return False
    if cut is not None or mode == "close":
        close(sock)
        return False
    return True


def handle(sock, cid):
    f = sock.makefile("rb", buffering=1 << 16)
    drop_next = False
    while True:
        try:
            method, target, version, headers = read_head(f)
        except (EOFError, ValueError, ConnectionError):
            return
        url = urllib.parse.urlsplit(target)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        base = [("X-Conn-Id", str(cid)), ("X-OpenStack-Request-ID", "req-%d" % cid)]
        if drop_next:
            # a keep-alive connection the server closes as the next request
            # arrives: what a proxy's reused connection meets in real life
            close(sock)
            return
        if path == "/arm-drop":
            drop_next = True
        if path == "/reset":
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            return
        if path == "/early":
            # answer before reading the body (like a 413), then hang up
            send(sock, 413, b"too big\n", base + [("Connection", "close")], reason="Too Large")
            time.sleep(0.2)
            close(sock)
            return
        marker = q.get("marker")

        def on_first():
            if marker and STATE_DIR:
                open(os.path.join(STATE_DIR, marker), "w").write(repr(time.time()))

        h = hashlib.sha256()
        n = 0
        try:
            for d in body_chunks(f, headers, on_first):
                n += len(d)
                h.update(d)
        except EOFError:
            return
        if "delay" in q:
            time.sleep(float(q["delay"]))
        if path == "/download":
            size = int(q.get("size", "0"))
            head = "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn-Id: %d\r\n\r\n" % (size, cid)
            sock.sendall(head.encode())
            block = b"x" * (1 << 20)
            left = size
            while left:
                k = min(left, len(block))
                sock.sendall(block[:k])
                left -= k
            continue
        if path == "/bulk":
            if bulk_response(sock, cid, q):
                continue
            return
        if path == "/chunked":
            parts = int(q.get("parts", "3"))
            sock.sendall(("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Conn-Id: %d\r\n"
                          "Trailer: X-Checksum\r\n\r\n" % cid).encode())
            for i in range(parts):
                data = ("part-%d;" % i).encode()
                sock.sendall(b"%x;ext=1\r\n%s\r\n" % (len(data), data))
            sock.sendall(b"0\r\nX-Checksum: abc\r\n\r\n")
            continue
        if path == "/close-idle":
            # a keep-alive answer, then the server ends keep-alive while the
            # connection sits idle in the proxy's pool (RFC 9112 9.5)
            send(sock, 200, b"ok", base)
            time.sleep(0.1)
            close(sock)
            return
        if path == "/close":
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Conn-Id: %d\r\n\r\nuntil-close-body" % cid)
            close(sock)
            return
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            if code in (204, 304):
                sock.sendall(b"HTTP/1.1 %d X\r\nX-Conn-Id: %d\r\nETag: \"e\"\r\n\r\n" % (code, cid))
            else:
                send(sock, code, b"status %d\n" % code, base, reason="X")
            continue
        answer = {
            "method": method, "target": target, "path": path, "version": version,
            "headers": headers, "body_len": n, "body_sha256": h.hexdigest(), "conn": cid,
        }
        if isinstance(sock, ssl.SSLSocket):
            answer["tls"] = {"protocol": sock.version(), "cipher": sock.cipher()[0],
                             "resumed": sock.session_reused,
                             "sni": getattr(sock, "tb_sni", None),
                             "client_subject": client_subject(sock)}
        body = json.dumps(answer).encode()
        hs = base + [("Content-Type", "application/json")]
        if method == "HEAD":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn-Id: %d\r\n\r\n" % (len(body), cid))
            continue
        send(sock, 200, body, hs)
        if (hget(headers, "Connection") or "").lower() == "close":
            close(sock)
            return


def serve(port):
    global conn_counter
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(512)
    while True:
        c, _ = s.accept()
        with conn_lock:
            conn_counter += 1
            cid = conn_counter
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=guard, args=(c, cid), daemon=True).start()


def guard(c, cid):
    try:
        if TLS_CTX is not None:
            # the handshake runs here, in the connection's thread, so that a
            # slow or failing client does not hold up accept()
            c.settimeout(10)
            c = TLS_CTX.wrap_socket(c, server_side=True)
            c.settimeout(None)
        handle(c, cid)
    except (OSError, EOFError):
        pass
    finally:
        try:
            c.close()
        except OSError:
            pass


def tls_context(cert, key, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

    def on_sni(sslsock, name, _ctx):
        sslsock.tb_sni = name
    ctx.sni_callback = on_sni
    return ctx


if __name__ == "__main__":
    args = sys.argv[1:]
    tls = client_ca = None
    if "--client-ca" in args:
        i = args.index("--client-ca")
        client_ca = args[i + 1]
        del args[i:i + 2]
    if "--tls" in args:
        i = args.index("--tls")
        tls = args[i + 1:i + 3]
        del args[i:i + 3]
    if len(args) > 1:
        STATE_DIR = args[1]
    if tls:
        TLS_CTX = tls_context(tls[0], tls[1], client_ca)
    serve(int(args[0]))
