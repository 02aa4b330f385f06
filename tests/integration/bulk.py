"""The client side of big bodies for the integration tests: responses are
hashed as they arrive, never kept whole (conftest.Conn keeps a body in
memory), and uploads are upstream.py's deterministic /bulk streams, so the
test knows the SHA-256 either end must see (upstream.bulk_sha256)."""
import hashlib
import json
import socket

from upstream import MIB, bulk_chunk_sizes, bulk_pieces, bulk_sha256, chunked_frames  # noqa: F401

KEEP = 1 << 16          # response bodies up to this size are kept, to read JSON


class BulkResp:
    """A response as a BulkConn read it: the head, then the body's length
    and SHA-256 (and the body itself when at most KEEP bytes). complete:
    the framing said the body ended (False: EOF or reset came first);
    reset: the connection was reset rather than closed."""

    def __init__(self, version, status, reason, headers):
        self.version, self.status, self.reason, self.headers = version, status, reason, headers
        self.nbytes = 0
        self.sha = hashlib.sha256()
        self.kept = bytearray()
        self.trailers = []
        self.complete = False
        self.reset = False

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def sha256(self):
        return self.sha.hexdigest()

    @property
    def body(self):
        assert self.nbytes <= KEEP, "body of %d bytes not kept" % self.nbytes
        return bytes(self.kept)

    def json(self):
        return json.loads(self.body)

    def add(self, data):
        self.sha.update(data)
        self.nbytes += len(data)
        if self.nbytes <= KEEP:
            self.kept += data


class BulkConn:
    """A plain (or, given sock, TLS) client connection reading responses of
    any size in bounded memory. Every socket operation has the timeout.
    recv_size bounds each read; on_recv(total_body_bytes) runs after each
    read of body bytes (a slow reader sleeps there)."""

    def __init__(self, port=None, timeout=30.0, sock=None, rcvbuf=None):
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
        sock.settimeout(timeout)
        self.sock = sock
        # Fixed buffers, never reallocated: on this VM a page touched for
        # the first time costs microseconds, so fresh 1 MiB objects per
        # read would make the client, not the proxy, the bottleneck.
        self._buf = bytearray(2 << 20)      # read, unparsed: [_start, _end)
        self._mv = memoryview(self._buf)
        self._start = self._end = 0
        self.scratch = memoryview(bytearray(1 << 20))   # body bytes past the buffer
        self.recv_size = 1 << 20
        self.on_recv = None

    def send(self, data):
        self.sock.sendall(data)

    @property
    def buf(self):
        """The bytes read and not yet parsed."""
        return bytes(self._mv[self._start:self._end])

    def _fill(self):
        """Read more into the buffer; 0 at EOF."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf):
            n = self._end - self._start
            assert n < len(self._buf), "buffer full"
            self._mv[:n] = self._mv[self._start:self._end]
            self._start, self._end = 0, n
        room = min(self.recv_size, len(self._buf) - self._end)
        n = self.sock.recv_into(self._mv[self._end:self._end + room])
        self._end += n
        return n

    def _recv(self):
        if self._fill() == 0:
            raise EOFError("connection closed")

    def line(self, limit=1 << 16):
        while True:
            i = self._buf.find(b"\r\n", self._start, self._end)
            if i >= 0:
                line = bytes(self._mv[self._start:i])
                self._start = i + 2
                return line
            assert self._end - self._start <= limit, "line longer than %d bytes" % limit
            self._recv()

    def _take(self, r, n):
        """Up to n buffered bytes into r; how many."""
        k = min(n, self._end - self._start)
        if k:
            r.add(self._mv[self._start:self._start + k])
            self._start += k
        return k

    def _body(self, r, n):
        """n body bytes into r (fewer on EOF, which raises EOFError)."""
        n -= self._take(r, n)
        mv = self.scratch
        while n:
            k = self.sock.recv_into(mv, min(n, self.recv_size))
            if k == 0:
                raise EOFError("connection closed mid-body")
            r.add(mv[:k])
            n -= k
            if self.on_recv is not None:
                self.on_recv(r.nbytes)

    def _until_eof(self, r):
        self._take(r, self._end - self._start)
        mv = self.scratch
        while True:
            k = self.sock.recv_into(mv, self.recv_size)
            if k == 0:
                return
            r.add(mv[:k])
            if self.on_recv is not None:
                self.on_recv(r.nbytes)

    def head(self):
        """The next response's head; its body is still to read (body())."""
        line = self.line().decode("latin-1")
        version, status, reason = (line.split(" ", 2) + [""])[:3]
        headers = []
        while True:
            h = self.line().decode("latin-1")
            if h == "":
                break
            k, _, v = h.partition(":")
            headers.append((k, v.strip()))
        return BulkResp(version, int(status), reason, headers)

    def read_some(self, r, n):
        """n bytes of r's body as they come, whatever the framing of a
        Content-Length or read-until-close body (to stop mid-body)."""
        self._body(r, n)

    def body(self, r, head_request=False):
        """The rest of r's body. A body cut by EOF or a reset is not an
        error: r.complete says whether it ended as its framing said."""
        if head_request or r.status in (204, 304) or 100 <= r.status < 200:
            r.complete = True
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        cl = r.header("Content-Length")
        try:
            if te == "chunked":
                while True:
                    size = int(self.line().split(b";")[0], 16)
                    if size == 0:
                        while True:
                            t = self.line()
                            if not t:
                                break
                            r.trailers.append(t.decode("latin-1"))
                        break
                    self._body(r, size)
                    assert self.line() == b"", "no CRLF after chunk data"
            elif cl is not None:
                self._body(r, int(cl) - r.nbytes)
            else:
                self._until_eof(r)
            r.complete = True
        except EOFError:
            pass
        except ConnectionResetError:
            r.reset = True
        return r

    def response(self, head_request=False):
        """The next response, head and body (see body())."""
        return self.body(self.head(), head_request)

    def request(self, method, path, headers=(), body=b""):
        self.send(request_head(method, path, headers, len(body) if body else None) + body)
        return self.response(head_request=(method == "HEAD"))

    def closed(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout; bytes read
        meanwhile stay in the buffer (self.buf)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if self._fill() == 0:
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def request_head(method, path, headers=(), length=None, chunked=False, version="1.1"):
    hs = [("Host", "example.test")] if version == "1.1" else []
    hs += list(headers)
    if length is not None:
        hs.append(("Content-Length", str(length)))
    if chunked:
        hs.append(("Transfer-Encoding", "chunked"))
    return ("%s %s HTTP/%s\r\n" % (method, path, version) +
            "".join("%s: %s\r\n" % kv for kv in hs) + "\r\n").encode("latin-1")


def upload_frames(seed, size, mode, maxchunk=MIB, trailers=(("X-Up-Trailer", "t"),)):
    """The body of an upload of seed's first size bytes: Content-Length
    (mode "length") or chunked with chunk sizes 1..maxchunk."""
    if mode == "chunked":
        return chunked_frames(seed, size, maxchunk, trailers=trailers)
    return bulk_pieces(seed, 0, size)


def send_upload(conn, path, seed, size, mode, maxchunk=MIB, headers=()):
    """PUT path with seed's stream as the body; the response is not read."""
    conn.send(request_head("PUT", path, headers, size if mode == "length" else None,
                           chunked=(mode == "chunked")))
    for frame in upload_frames(seed, size, mode, maxchunk):
        conn.send(frame)
