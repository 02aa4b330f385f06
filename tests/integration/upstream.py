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
"""
import hashlib
import json
import os
import socket
import ssl
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
        if path == "/chunked":
            parts = int(q.get("parts", "3"))
            sock.sendall(("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Conn-Id: %d\r\n"
                          "Trailer: X-Checksum\r\n\r\n" % cid).encode())
            for i in range(parts):
                data = ("part-%d;" % i).encode()
                sock.sendall(b"%x;ext=1\r\n%s\r\n" % (len(data), data))
            sock.sendall(b"0\r\nX-Checksum: abc\r\n\r\n")
            continue
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
