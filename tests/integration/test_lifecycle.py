"""Process lifecycle: config check, reload, drain, command line, nginx upstream."""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BINARY, BASIC_CONF, Conn, Upstream, free_port, wait_port


def run(*args, **kw):
    return subprocess.run([BINARY] + list(args), capture_output=True, text=True, timeout=20, **kw)


def test_version_and_help():
    r = run("-V")
    assert r.returncode == 0 and r.stdout.startswith("tracebridge ")
    r = run("--help")
    assert r.returncode == 0 and "--upstream" in r.stdout


def test_check_config_ok(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text(BASIC_CONF.format(port=1, admin=2, upstream="http://127.0.0.1:3",
                                      access="off"))
    r = run("-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr


BAD = [
    ("[DEFAULT]\nworkers = many\n", 2, "workers"),
    ("[nonsense]\n", 1, "nonsense"),
    ("[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\nbogus = 1\n", 4, "bogus"),
    ("[listener:a]\nlisten = 127.0.0.1:99999\nupstream = http://127.0.0.1:2\n", 2, "listen"),
    ("[listener:a]\nlisten = 127.0.0.1:1\nupstream = ftp://x\n", 3, "upstream"),
    ("[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n"
     "[listener:a]\nlisten = 127.0.0.1:3\nupstream = http://127.0.0.1:2\n", 4, "listener"),
    ("[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n"
     "[profiler]\nenabled = maybe\n", 5, "enabled"),
]


@pytest.mark.parametrize("text,line,option", BAD, ids=range(len(BAD)))
def test_check_config_errors(tmp_path, text, line, option):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    r = run("-t", "-c", str(conf))
    assert r.returncode == 2
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("%s:%d: %s" % (conf, line, option)), first


def test_shipped_config_checks():
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = run("-t", "-c", os.path.join(src, "etc", "tracebridge.conf"))
    assert r.returncode == 0, r.stderr


def test_command_line_shorthand(upstream, tmp_path):
    port = free_port()
    p = subprocess.Popen([BINARY, "-f", "--listen", "127.0.0.1:%d" % port,
                          "--upstream", upstream.url], stderr=subprocess.PIPE)
    try:
        wait_port(port, proc=p)
        c = Conn(port)
        assert c.request("GET", "/hello").json()["path"] == "/hello"
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0


def test_sighup_reload_changes_upstream_keeps_connections(make_proxy, upstream, tmp_path):
    p = make_proxy(upstream=upstream.url)
    kept = Conn(p.port)
    assert kept.request("GET", "/1").status == 200
    other = Upstream(str(tmp_path))
    try:
        newport = free_port()
        conf = BASIC_CONF.replace("{upstream}", other.url) + """
[listener:extra]
listen = 127.0.0.1:%d
upstream = %s
""" % (newport, upstream.url)
        p.write_conf(conf)
        p.signal(signal.SIGHUP)
        wait_port(newport, timeout=5)
        # the established connection survives the reload
        r = kept.request("GET", "/2")
        assert r.status == 200
        # new connections go to the new upstream
        time.sleep(0.2)
        for _ in range(4):
            c = Conn(p.port)
            r = c.request("GET", "/3")
            c.close()
            assert r.status == 200
        assert os.path.exists(other.state)
        c = Conn(newport)
        assert c.request("GET", "/extra").status == 200
        c.close()
        # a broken file is refused and the running config kept
        p.write_conf("[listener:broken\n")
        p.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert p.proc.poll() is None
        c = Conn(p.port)
        assert c.request("GET", "/4").status == 200
        c.close()
        assert "reload failed" in p.logtext()
    finally:
        kept.close()
        other.stop()


def test_reload_upstream_switch_is_visible(make_proxy, upstream, tmp_path):
    p = make_proxy(upstream=upstream.url)
    other = Upstream(str(tmp_path))
    try:
        p.write_conf(BASIC_CONF.replace("{upstream}", other.url))
        p.signal(signal.SIGHUP)
        time.sleep(0.5)
        # upstream.py answers X-Conn-Id; tell them apart by port via the target echo
        c = Conn(p.port)
        r = c.request("GET", "/which")
        c.close()
        assert r.status == 200
        # kill the old upstream: new requests must not need it
        upstream.stop()
        c = Conn(p.port)
        assert c.request("GET", "/which2").status == 200
        c.close()
    finally:
        other.stop()


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigusr1_reopens_logs_after_rotation(make_proxy, upstream, tmp_path):
    """What logrotate does (debian/tracebridge.logrotate): move both log
    files away and send SIGUSR1. The files are opened again at their paths
    (created, so their appearance says the reopen happened), new lines land
    there, and the configuration is not reloaded."""
    errlog = str(tmp_path / "error-file.log")
    conf = BASIC_CONF.replace("access_log = {access}",
                              "access_log = {access}\nerror_log = %s" % errlog)
    p = make_proxy(conf, upstream=upstream.url)
    c = Conn(p.port)
    assert c.request("GET", "/before-rotation").status == 200
    c.close()
    _wait(lambda: "/before-rotation" in open(p.access_path).read())
    assert "started" in open(errlog).read()
    os.rename(p.access_path, p.access_path + ".1")
    os.rename(errlog, errlog + ".1")
    p.signal(signal.SIGUSR1)
    _wait(lambda: os.path.exists(p.access_path) and os.path.exists(errlog))
    c = Conn(p.port)
    assert c.request("GET", "/after-rotation").status == 200
    c.close()
    _wait(lambda: "/after-rotation" in open(p.access_path).read())
    assert "/after-rotation" not in open(p.access_path + ".1").read()
    assert "/before-rotation" not in open(p.access_path).read()
    p.signal(signal.SIGTERM)
    p.proc.wait(timeout=10)
    assert "stopped" in open(errlog).read()
    assert "stopped" not in open(errlog + ".1").read()
    for f in (errlog, errlog + ".1"):
        assert "reloading" not in open(f).read()


def test_sigterm_drains_in_flight_requests(make_proxy, upstream):
    p = make_proxy(upstream=upstream.url)
    result = {}

    def slow():
        c = Conn(p.port, timeout=10)
        result["r"] = c.request("GET", "/slow?delay=1")
        c.close()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    p.signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/healthz" % p.admin, timeout=2)
        health = 200
    except urllib.error.HTTPError as e:
        health = e.code
    assert health == 503
    with pytest.raises(OSError):
        Conn(p.port, timeout=1).request("GET", "/new")
    t.join(10)
    assert result["r"].status == 200
    assert p.proc.wait(timeout=10) == 0


def test_drain_timeout_cuts_long_requests(make_proxy, upstream):
    conf = BASIC_CONF.replace("drain_timeout = 5", "drain_timeout = 0.5").replace(
        "upstream_timeout = 2", "upstream_timeout = 30")
    p = make_proxy(conf, upstream=upstream.url)
    c = Conn(p.port, timeout=10)
    c.send(b"GET /slow?delay=8 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    t = time.time()
    p.signal(signal.SIGTERM)
    assert p.proc.wait(timeout=5) == 0
    assert time.time() - t < 3
    c.close()


@pytest.fixture
def nginx(tmp_path):
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx not installed")
    port = free_port()
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.txt").write_bytes(b"n" * 100000)
    conf = tmp_path / "nginx.conf"
    conf.write_text("""
daemon off;
user root;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx-error.log;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  keepalive_requests 10000;
  server {
    listen 127.0.0.1:%(port)d;
    root %(d)s/www;
    location /echo { return 200 "echo $request_method $http_x_forwarded_for\\n"; }
  }
}
""" % {"d": tmp_path, "port": port})
    p = subprocess.Popen(["/usr/sbin/nginx", "-c", str(conf), "-p", str(tmp_path)])
    wait_port(port, proc=p)
    yield "http://127.0.0.1:%d" % port
    p.kill()
    p.wait()


def test_nginx_upstream(make_proxy, nginx):
    p = make_proxy(upstream=nginx)
    c = Conn(p.port)
    for _ in range(3):
        r = c.request("GET", "/file.txt")
        assert r.status == 200 and len(r.body) == 100000
    r = c.request("GET", "/echo")
    assert r.body == b"echo GET 127.0.0.1\n"
    r = c.request("HEAD", "/file.txt")
    assert r.status == 200 and r.header("Content-Length") == "100000"
    r = c.request("GET", "/missing")
    assert r.status == 404
    assert c.request("GET", "/file.txt").status == 200
    c.close()
