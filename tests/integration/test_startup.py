"""Start-up and the listening sockets: the listen backlog, the log files -t
checks, overlapping listeners, the pid file lock and ports another process
holds (issue 13, Reliability)."""
import os
import signal
import socket
import subprocess

import pytest

from conftest import BINARY, BASIC_CONF, Conn, free_port, wait_for


def listen_queues(port):
    """[(Recv-Q, Send-Q)] of every listening TCP socket on port, from ss:
    for a listener, Recv-Q is the accept queue now, Send-Q its backlog."""
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                         capture_output=True, text=True, check=True).stdout
    return [(int(f[1]), int(f[2])) for f in
            (line.split() for line in out.splitlines())]


def get_status(port, path):
    """The status of GET path on a new connection to port."""
    c = Conn(port)
    try:
        return c.request("GET", path).status
    finally:
        c.close()


def somaxconn():
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


def stopped(pid):
    """Every thread of pid is stopped (SIGSTOP is delivered asynchronously)."""
    d = "/proc/%d/task" % pid
    for t in os.listdir(d):
        with open(os.path.join(d, t, "stat")) as f:
            if f.read().rpartition(")")[2].split()[0] != "T":
                return False
    return True


def test_backlog_is_the_configured_one(make_proxy, upstream):
    """libevent's evconnlistener_new(..., -1, fd) listened again with 128
    over our 1024 (ss -ltn showed Send-Q 128): the option, and no relisten."""
    conf = BASIC_CONF.replace("workers = 2", "workers = 2\nbacklog = 300")
    p = make_proxy(conf, upstream=upstream.url)
    assert [q[1] for q in listen_queues(p.port)] == [300, 300]
    # a reload resizes the queue of the sockets it keeps
    p.write_conf(conf.replace("backlog = 300", "backlog = 500"))
    p.signal(signal.SIGHUP)
    wait_for(lambda: [q[1] for q in listen_queues(p.port)] == [500, 500], 5,
             "backlog 500 after the reload")
    assert get_status(p.port, "/after") == 200


def test_backlog_default_1024(make_proxy, upstream):
    p = make_proxy(upstream=upstream.url)
    want = min(1024, somaxconn())
    assert [q[1] for q in listen_queues(p.port)] == [want, want]


def test_backlog_capped_by_somaxconn(make_proxy, upstream):
    top = somaxconn()
    if top >= 65535:
        pytest.skip("net.core.somaxconn is not below 65535")
    conf = BASIC_CONF.replace("workers = 2", "workers = 1\nbacklog = 65535")
    p = make_proxy(conf, upstream=upstream.url)
    assert [q[1] for q in listen_queues(p.port)] == [top]
    assert ("backlog = 65535 is above net.core.somaxconn (%d)" % top
            in p.logtext())
    r = run("-t", "-c", p.conf_path)
    assert r.returncode == 0 and "net.core.somaxconn" in r.stderr


def test_connect_burst_waits_in_the_backlog(make_proxy, upstream):
    """200 connects while the one worker cannot accept (SIGSTOP): the kernel
    queues every one of them (backlog 256; 128 held 129), and once the
    process runs again each gets its answer."""
    n = 200
    conf = BASIC_CONF.replace("workers = 2", "workers = 1\nbacklog = 256")
    p = make_proxy(conf, upstream=upstream.url)
    socks = []
    p.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: stopped(p.pid), 5, "the proxy to stop")
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", p.port))
            socks.append(s)
        # the accept queue seen from the server side: a client whose final
        # ACK was dropped believes it is connected, so don't ask the clients
        # (>=: wait_port's probe may not have been accepted yet)
        wait_for(lambda: listen_queues(p.port)[0][0] >= n, 3,
                 "%d connections in the accept queue" % n)
    finally:
        p.signal(signal.SIGCONT)
    try:
        for i, s in enumerate(socks):
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(b"GET /burst/%d HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n" % i)
        for i, s in enumerate(socks):
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            assert data.startswith(b"HTTP/1.1 200 "), (i, data[:100])
    finally:
        for s in socks:
            s.close()


# --- log files: -t checks them, the start names the file and errno ---------

def run(*args):
    return subprocess.run([BINARY] + list(args), capture_output=True,
                          text=True, timeout=20)


def conf_with(tmp_path, defaults, port=None):
    """A config file in tmp_path: [DEFAULT] with the lines of defaults
    (from line 2), one listener on port (default: a free one), no admin
    endpoint."""
    conf = tmp_path / "tb.conf"
    conf.write_text("[DEFAULT]\n%s\n[admin]\nlisten = off\n"
                    "[listener:api]\nlisten = 127.0.0.1:%d\n"
                    "upstream = http://127.0.0.1:1\n"
                    % (defaults, port or free_port()))
    return conf


@pytest.mark.parametrize("option", ["error_log", "access_log"])
def test_unopenable_log_fails_check_and_start(tmp_path, option):
    """A log in a missing directory passed -t, then the start said only
    'cannot open logs' and exited 1."""
    path = str(tmp_path / "missing" / "x.log")
    conf = conf_with(tmp_path, "%s = %s" % (option, path))
    r = run("-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert r.stderr.strip() == (
        "%s:2: %s: cannot create %s: %s: No such file or directory"
        % (conf, option, path, os.path.dirname(path)))
    r = run("-f", "-c", str(conf))
    assert r.returncode == 1
    assert ("cannot open %s %s: No such file or directory" % (option, path)
            in r.stderr), r.stderr


def test_check_creates_no_log(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "error.log").write_text("old lines\n")
    conf = conf_with(tmp_path, "error_log = %s/error.log\naccess_log = "
                     "%s/access.log\npid_file = %s/tb.pid" % (logs, logs, logs))
    r = run("-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(str(logs))) == ["error.log"]
    assert (logs / "error.log").read_text() == "old lines\n"


# --- overlapping listeners --------------------------------------------------

@pytest.mark.parametrize("first,second", [
    ("*:{p}", "127.0.0.1:{p}"),
    ("[::1]:{p}", "[::]:{p}"),
    ("127.0.0.1:{p}", "[::ffff:127.0.0.1]:{p}"),
])
def test_overlapping_listeners_are_a_config_error(tmp_path, first, second):
    """*:P and 127.0.0.1:P both bound (SO_REUSEPORT) and the specific one
    took its connections: now -t and the start refuse the file."""
    p = free_port()
    conf = tmp_path / "tb.conf"
    conf.write_text("[admin]\nlisten = off\n"
                    "[listener:a]\nlisten = %s\nupstream = http://127.0.0.1:1\n"
                    "[listener:b]\nlisten = %s\nupstream = http://127.0.0.1:1\n"
                    % (first.format(p=p), second.format(p=p)))
    for args in (["-t"], ["-f"]):
        r = run(*(args + ["-c", str(conf)]))
        assert r.returncode == 2
        assert r.stderr.startswith("%s:7: listen: " % conf), r.stderr


# --- one instance per port: the pid file lock, the port probe -------------

def second_conf(p, **over):
    """p's config text with its ports (listener, admin) replaced by over's."""
    fmt = dict(p.fmt)
    fmt.update(over)
    with open(p.conf_path) as f:
        text = f.read()
    return text.replace(":%d\n" % p.port, ":%d\n" % fmt["port"]).replace(
        ":%d\n" % p.admin, ":%d\n" % fmt["admin"])


def start_fails(tmp_path, text):
    """Start tracebridge -f on text; it must exit 1 (not serve): stderr."""
    conf = tmp_path / ("second%d.conf" % len(os.listdir(str(tmp_path))))
    conf.write_text(text)
    r = run("-f", "-c", str(conf))
    assert r.returncode == 1, r
    return r.stderr


PID_CONF = BASIC_CONF.replace("drain_timeout = 5", "drain_timeout = 5\npid_file = {pid}")


def test_second_instance_same_pid_file(make_proxy, upstream, tmp_path):
    pidf = str(tmp_path / "tb.pid")
    a = make_proxy(PID_CONF, upstream=upstream.url, pid=pidf)
    wait_for(lambda: open(pidf).read() == "%d\n" % a.pid, 5, "the pid file")
    err = start_fails(tmp_path, second_conf(a, port=free_port(), admin=free_port()))
    assert "already running (pid %d): %s is locked" % (a.pid, pidf) in err
    assert open(pidf).read() == "%d\n" % a.pid
    assert get_status(a.port, "/still") == 200
    a.signal(signal.SIGTERM)
    assert a.proc.wait(timeout=10) == 0
    assert not os.path.exists(pidf)


def test_stale_pid_file_is_taken_over(make_proxy, upstream, tmp_path):
    """A pid file a crash left (no lock on it) does not stop a start."""
    pidf = tmp_path / "tb.pid"
    pidf.write_text("999999\n")
    a = make_proxy(PID_CONF, upstream=upstream.url, pid=str(pidf))
    wait_for(lambda: pidf.read_text() == "%d\n" % a.pid, 5, "our pid")
    # a SIGKILL leaves the file; the lock goes with the process
    a.proc.kill()
    a.proc.wait()
    assert pidf.exists()
    b = make_proxy(PID_CONF, upstream=upstream.url, pid=str(pidf))
    wait_for(lambda: pidf.read_text() == "%d\n" % b.pid, 5, "the new pid")


def test_second_instance_same_ports_refused(make_proxy, upstream, tmp_path):
    """Without a pid file, a second instance on the same listener port bound
    beside the first (SO_REUSEPORT, same user) and took half of the
    connections; on the same admin port likewise."""
    a = make_proxy(upstream=upstream.url)
    err = start_fails(tmp_path, second_conf(a, admin=free_port()))
    assert ("listener api: 127.0.0.1:%d is in use by another process" % a.port
            in err), err
    err = start_fails(tmp_path, second_conf(a, port=free_port()))
    assert "admin: 127.0.0.1:%d is in use by another process" % a.admin in err
    # a start that fails after taking its pid file removes it
    pidf = tmp_path / "second.pid"
    start_fails(tmp_path, second_conf(a, admin=free_port()).replace(
        "drain_timeout = 5", "drain_timeout = 5\npid_file = %s" % pidf))
    assert not pidf.exists()
    # every connection still reaches the first instance
    for i in range(20):
        assert get_status(a.port, "/first/%d" % i) == 200
    assert a.proc.poll() is None


def reuseport_listener(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(8)
    return s


def test_port_held_by_another_program_refused(tmp_path):
    """Any listening socket counts, even one that would share (same user,
    SO_REUSEPORT) and a wildcard one covering our address."""
    port = free_port()
    for host in ("127.0.0.1", "0.0.0.0"):
        held = reuseport_listener(host, port)
        try:
            err = start_fails(tmp_path, conf_with(tmp_path, "", port).read_text())
            assert "127.0.0.1:%d is in use by another process" % port in err
        finally:
            held.close()


def test_reload_onto_a_held_port_keeps_running(make_proxy, upstream):
    p = make_proxy(upstream=upstream.url)
    port = free_port()
    held = reuseport_listener("127.0.0.1", port)
    try:
        p.write_conf(BASIC_CONF + "[listener:more]\nlisten = 127.0.0.1:%d\n"
                     "upstream = %s\n" % (port, upstream.url))
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in p.logtext(), 5, "the reload to fail")
        assert ("listener more: 127.0.0.1:%d is in use by another process"
                % port in p.logtext())
        assert get_status(p.port, "/kept") == 200
    finally:
        held.close()


def test_reload_widens_own_listener(make_proxy, upstream):
    """127.0.0.1:P -> *:P on reload: the probe would only find our own
    socket, so the wider one is bound beside it, then the old one closed."""
    p = make_proxy(upstream=upstream.url)
    p.write_conf(BASIC_CONF.replace("listen = 127.0.0.1:{port}", "listen = *:{port}"))
    p.signal(signal.SIGHUP)
    wait_for(lambda: "reload done" in p.logtext(), 5, "the reload")
    wait_for(lambda: [q for q in subprocess.run(
        ["ss", "-Hltn", "sport = :%d" % p.port], capture_output=True,
        text=True).stdout.split() if q.startswith("0.0.0.0:")], 5, "*:P")
    assert get_status(p.port, "/wide") == 200
    s = socket.create_connection(("127.0.0.2", p.port), timeout=5)
    s.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200 ")
    s.close()
    assert "in use" not in p.logtext()
