"""Fixtures for tracebridge integration tests: real binary, real upstreams,
free loopback ports, everything torn down after the test."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.environ.get("TB_BUILDDIR", SRCDIR)
BINARY = os.path.join(BUILDDIR, "tracebridge")
PY = "/usr/bin/python3"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d not listening" % port)


class Upstream:
    def __init__(self, tmpdir):
        self.port = free_port()
        self.state = tempfile.mkdtemp(dir=tmpdir)
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "upstream.py"),
                                      str(self.port), self.state])
        wait_port(self.port, proc=self.proc)
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        kill(self.proc)


def kill(proc):
    """SIGKILL proc unless it has exited; reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture
def upstream(tmp_path):
    u = Upstream(str(tmp_path))
    yield u
    u.stop()


class Proxy:
    """tracebridge started from a config text ({upstream}, {port}, {admin}
    placeholders are filled in)."""

    def __init__(self, tmpdir, conf, **fmt):
        self.tmpdir = tmpdir
        self.port = fmt.setdefault("port", free_port())
        self.admin = fmt.setdefault("admin", free_port())
        self.fmt = fmt
        self.conf_path = os.path.join(tmpdir, "tracebridge.conf")
        self.log_path = os.path.join(tmpdir, "error.log")
        self.access_path = os.path.join(tmpdir, "access.log")
        fmt.setdefault("access", self.access_path)
        self.write_conf(conf)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BINARY, "-f", "-c", self.conf_path],
                                     stdout=self.log, stderr=self.log)
        try:
            wait_port(self.port, proc=self.proc)
            wait_port(self.admin, proc=self.proc)
        except BaseException:
            self.stop()	# the fixture never saw it: do not leave it running
            raise

    def write_conf(self, conf):
        with open(self.conf_path, "w") as f:
            f.write(conf.format(**self.fmt))

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.proc.send_signal(sig)

    def status(self, field):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return None

    def logtext(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()


BASIC_CONF = """
[DEFAULT]
workers = 2
log_level = info
access_log = {access}
drain_timeout = 5

[admin]
listen = 127.0.0.1:{admin}

[listener:api]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = api
upstream_timeout = 2
upstream_connect_timeout = 1
client_header_timeout = 2
"""


@pytest.fixture
def make_proxy(tmp_path):
    made = []

    def make(conf=BASIC_CONF, **fmt):
        d = tempfile.mkdtemp(dir=str(tmp_path))
        p = Proxy(d, conf, **fmt)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


@pytest.fixture
def proxy(make_proxy, upstream):
    return make_proxy(upstream=upstream.url)


# --- a tiny raw HTTP client: tests need exact bytes, not a library's view ---

class Resp:
    def __init__(self, status, reason, headers, body, raw_head, version):
        self.status, self.reason, self.headers = status, reason, headers
        self.body, self.raw_head, self.version = body, raw_head, version

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        import json
        return json.loads(self.body)


class Conn:
    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def closed(self, timeout=2.0):
        """True if the peer closes the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def response(self, head_request=False):
        line = self._line().decode("latin-1")
        version, status, reason = (line.split(" ", 2) + [""])[:3]
        status = int(status)
        headers = []
        raw = line + "\r\n"
        while True:
            h = self._line().decode("latin-1")
            raw += h + "\r\n"
            if h == "":
                break
            k, _, v = h.partition(":")
            headers.append((k, v.strip()))
        r = Resp(status, reason, headers, b"", raw, version)
        if 100 <= status < 200:
            return r
        if head_request or status in (204, 304):
            return r
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if te and te.lower() == "chunked":
            body = b""
            trailers = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while True:
                        t = self._line()
                        if not t:
                            break
                        trailers.append(t.decode())
                    break
                body += self._exact(size)
                self._exact(2)
            r.body = body
            r.trailers = trailers
        elif cl is not None:
            r.body = self._exact(int(cl))
        else:
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            r.body, self.buf = self.buf, b""
        return r

    def request(self, method="GET", path="/", headers=(), body=b"", version="1.1"):
        hs = list(headers)
        if not any(k.lower() == "host" for k, _ in hs) and version == "1.1":
            hs.insert(0, ("Host", "example.test"))
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs):
            hs.append(("Content-Length", str(len(body))))
        data = "%s %s HTTP/%s\r\n" % (method, path, version)
        data += "".join("%s: %s\r\n" % kv for kv in hs) + "\r\n"
        self.send(data.encode("latin-1") + body)
        return self.response(head_request=(method == "HEAD"))

    def close(self):
        self.sock.close()


@pytest.fixture
def conn_to():
    made = []

    def make(port, timeout=5.0):
        c = Conn(port, timeout)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


# --- reading a proxy's admin listener ---------------------------------------

def admin_get(proxy, path):
    """GET path from the proxy's admin listener; asserts a 200."""
    c = Conn(proxy.admin)
    try:
        r = c.request("GET", path)
    finally:
        c.close()
    assert r.status == 200
    return r


def metrics_text(proxy):
    """The proxy's /metrics page as text."""
    return admin_get(proxy, "/metrics").body.decode()


def metrics(proxy):
    """The proxy's /metrics as {name with labels: float value}."""
    out = {}
    for line in metrics_text(proxy).splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def wait_for(cond, timeout, what):
    """cond()'s first true value within timeout seconds (exceptions count as
    false: a server may be in the middle of restarting), else fail."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


# --- real redis-server / redis-sentinel, osprofiler's WSGI app and CLI ------

class RedisServer:
    """redis-server (or redis-sentinel, given sentinel_conf) on a free or
    given loopback port, in its own directory: SHUTDOWN SAVE and start()
    again keep the data. Output goes to DIR/log."""

    def __init__(self, dir, extra=(), sentinel_conf=None, port=None):
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.extra = list(extra)
        self.sentinel_conf = sentinel_conf
        self.proc = None
        self._db = None
        self.start()

    def start(self):
        if self.sentinel_conf is not None:
            conf = os.path.join(self.dir, "sentinel.conf")
            if not os.path.exists(conf):
                with open(conf, "w") as f:
                    f.write("port %d\nbind 127.0.0.1\ndir %s\n%s" % (
                        self.port, self.dir, self.sentinel_conf))
            args = ["redis-sentinel", conf]
        else:
            args = ["redis-server", "--port", str(self.port),
                    "--bind", "127.0.0.1", "--dir", self.dir,
                    "--save", "", "--appendonly", "no",
                    "--daemonize", "no"] + self.extra
        with open(os.path.join(self.dir, "log"), "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        wait_port(self.port, proc=self.proc)

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def client(self, db=0, **kw):
        """A new redis-py client."""
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, **kw)

    @property
    def db(self):
        """One shared redis-py client (db 0), closed by stop()."""
        if self._db is None:
            self._db = self.client()
        return self._db

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                              check=True, capture_output=True).stdout

    def shutdown_save(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "SHUTDOWN", "SAVE"],
                       capture_output=True)
        self.proc.wait(timeout=10)

    def stop(self, sig=signal.SIGTERM):
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def servers(tmp_path):
    """servers(name, extra=(), sentinel_conf=None, port=None): a RedisServer
    in tmp_path/name; all killed after the test."""
    made = []

    def make(name, *a, **kw):
        s = RedisServer(tmp_path / name, *a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop(signal.SIGKILL)


@pytest.fixture
def redis_server(servers):
    """One redis-server in tmp_path/redis."""
    return servers("redis")


def sentinel_conf(master_port):
    return ("sentinel monitor mymaster 127.0.0.1 %d 1\n"
            "sentinel down-after-milliseconds mymaster 500\n"
            "sentinel failover-timeout mymaster 3000\n"
            "sentinel parallel-syncs mymaster 1\n" % master_port)


def sentinel_setup(servers):
    """master + replica + one sentinel watching them as "mymaster"."""
    if shutil.which("redis-sentinel") is None:
        pytest.skip("redis-sentinel not installed")
    m = servers("master")
    rep = servers("replica", extra=["--replicaof", "127.0.0.1", str(m.port)])
    wait_for(lambda: m.client().info("replication")["connected_slaves"] == 1,
             10, "replica to attach")
    s = servers("sentinel", sentinel_conf=sentinel_conf(m.port))
    sc = s.client()
    wait_for(lambda: len(sc.execute_command("SENTINEL", "REPLICAS",
                                            "mymaster")) == 1,
             10, "sentinel to see the replica")
    return m, rep, s


class WsgiApp:
    """tests/integration/wsgi_app.py: osprofiler's WsgiMiddleware and redis
    notifier (host "app-host") around a small JSON app (answers 500 under
    /fail)."""

    def __init__(self, redis_url, keys="SECRET_KEY", service="api",
                 project="demo"):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [PY, os.path.join(HERE, "wsgi_app.py"), str(self.port), redis_url,
             keys, project, service, "app-host"])
        wait_port(self.port, timeout=20, proc=self.proc)
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        kill(self.proc)


@pytest.fixture
def wsgi():
    """wsgi(redis_url, keys="SECRET_KEY", service="api", project="demo"): a
    WsgiApp, killed after the test."""
    made = []

    def make(*a, **kw):
        a = WsgiApp(*a, **kw)
        made.append(a)
        return a
    yield make
    for a in made:
        a.stop()


def osprofiler(*args):
    """Run osprofiler's CLI; its stdout."""
    p = subprocess.run(["osprofiler"] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


# --- faulty peers for the Redis client (issue 13) ---------------------------

def resp_command(buf):
    """(command as a list of bytes, rest) for the first complete RESP array
    in buf, or (None, buf) when it is not all there yet."""
    if not buf.startswith(b"*") or b"\r\n" not in buf:
        return None, buf
    head, rest = buf.split(b"\r\n", 1)
    args = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None, buf
        ln, rest = rest.split(b"\r\n", 1)
        n = int(ln[1:])
        if len(rest) < n + 2:
            return None, buf
        args.append(rest[:n])
        rest = rest[n + 2:]
    return args, rest


class FakeResp:
    """A RESP server on a free loopback port, one thread per connection,
    that answers as answer(fake, conn_no, args, sock) says (it sends what
    it likes on sock; returning False closes the connection). Connections
    numbered relay_after and later are instead relayed, byte for byte, to
    the loopback port relay_to (a real redis-server)."""

    def __init__(self, answer, relay_to=None, relay_after=0):
        self.answer, self.relay_to = answer, relay_to
        self.relay_after = relay_after
        self.commands = []          # [args] in arrival order
        self.conns = 0
        self.lock = threading.Lock()
        self.socks = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                n = self.conns
                self.conns += 1
                self.socks.append(s)
            target = self._relay if self.relay_to is not None and \
                n >= self.relay_after else self._serve
            threading.Thread(target=target, args=(s, n), daemon=True).start()

    def _serve(self, s, n):
        buf = b""
        try:
            while True:
                args, buf = resp_command(buf)
                if args is None:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                    continue
                with self.lock:
                    self.commands.append(args)
                if self.answer(self, n, args, s) is False:
                    return
        except OSError:
            pass
        finally:
            s.close()

    def _relay(self, s, n):
        try:
            up = socket.create_connection(("127.0.0.1", self.relay_to))
        except OSError:
            s.close()
            return
        with self.lock:
            self.socks.append(up)

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=pump, args=(up, s), daemon=True).start()
        pump(s, up)

    def asked(self, name):
        """How many commands named name (bytes, any case) came."""
        with self.lock:
            return sum(1 for a in self.commands if a[0].upper() == name)

    def stop(self):
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


def resp_bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


class FakeSentinel(FakeResp):
    """A sentinel that answers SENTINEL get-master-addr-by-name with the
    next of answers (raw RESP; a list shared by several fakes pops in the
    order they are asked) and, once they are used up, with 127.0.0.1 and
    master_port; SUBSCRIBE is confirmed, then silence."""

    def __init__(self, answers, master_port):
        self.answers, self.master_port = answers, master_port
        super().__init__(FakeSentinel._answer)

    @staticmethod
    def _answer(fake, n, args, s):
        cmd = args[0].upper()
        if cmd == b"SENTINEL":
            with fake.lock:
                bad = fake.answers.pop(0) if fake.answers else None
            s.sendall(bad if bad is not None else b"*2\r\n" +
                      resp_bulk(b"127.0.0.1") +
                      resp_bulk(b"%d" % fake.master_port))
        elif cmd == b"SUBSCRIBE":
            s.sendall(b"*3\r\n" + resp_bulk(b"subscribe") + resp_bulk(args[1])
                      + b":1\r\n")
        else:
            s.sendall(b"-ERR unknown command\r\n")


# One of each way a sentinel's answer was unusable in issue 13; the reason
# label each is counted under in /metrics.
BAD_SENTINEL_ANSWERS = [
    (b"*2\r\n" + resp_bulk(b"127.0.0.1") + resp_bulk(b"0"), "port"),
    (b"*2\r\n" + resp_bulk(b"127.0.0.1") + resp_bulk(b"-1"), "port"),
    (b"*2\r\n" + resp_bulk(b"127.0.0.1") + resp_bulk(b"70000"), "port"),
    (b"*2\r\n" + resp_bulk(b"127.0.0.1") + resp_bulk(b"63x79"), "port"),
    (b"*2\r\n" + resp_bulk(b"127.0.0.1") + resp_bulk(b"9" * 10240), "port"),
    (b"*2\r\n" + resp_bulk(b"h" * 10240) + resp_bulk(b"6379"), "host"),
    (b"+OK\r\n", "reply_type"),
    (b"*3\r\n" + resp_bulk(b"127.0.0.1") + resp_bulk(b"6379") +
     resp_bulk(b"x"), "element_count"),
]


@pytest.fixture
def fakes():
    """fakes(cls, *args, **kw): a FakeResp (or subclass), stopped after the
    test."""
    made = []

    def make(cls, *a, **kw):
        f = cls(*a, **kw)
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()
