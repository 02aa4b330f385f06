"""Fleet-wide adaptive sampling through Redis (issue 15), end to end.

Three real tracebridge processes on one real redis-server in front of an
osprofiler-wrapped WSGI service (wsgi_app.py: osprofiler's real
WsgiMiddleware, which answers with the profiler state it ran the request
under): a request counts as traced when the middleware accepted the signed
trace the proxy sent and traced it, so the rates below are what the service
behind the proxies actually traced. A hot
operation (~100 req/s over the three) and a cold one (~10 req/s), target 2
traces/s each, calculation_interval 2s.

The machine running this may be slow and shared: rates are measured over
long windows, waits are wait_for loops with generous bounds.

Run: TB_BUILDDIR=$PWD/_build nice /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider tests/integration/test_adaptive.py
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import Conn, admin_get, metrics, wait_for

if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)

sys.path.insert(0, "/usr/lib/python3/dist-packages")

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
KEY = "tb:policy"
CHANNEL = "tb:policy:changed"
HOT = "/v2.1/servers/detail"
COLD = "/v3/auth/tokens"
HOT_OP = "GET /v2.1/servers/detail"
COLD_OP = "GET /v3/auth/tokens"
TARGET = 2.0

CONF = """
[DEFAULT]
workers = 1
log_level = info
access_log = off
drain_timeout = 1

[admin]
listen = 127.0.0.1:{admin}

[listener:api]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = nova
upstream_timeout = 5
client_header_timeout = 5

[profiler]
enabled = true
hmac_keys = SECRET_KEY
connection_string = {redis}

[tracing]
span_ttl = 60

[sampling]
policy_redis_key = {key}
policy_channel = {channel}
adaptive = true
target_traces_per_second = {target}
calculation_interval = 2s
initial_sampling_probability = {initial}
{extra}
"""


class Load:
    """Steady traffic: for each (proxy, path, rate) one thread sending
    GET path at rate req/s over one keep-alive connection, recording
    (time, path, traced). A thread whose proxy dies stops quietly."""

    def __init__(self, plan):
        self.rec = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=a, daemon=True)
                        for a in plan]
        for t in self.threads:
            t.start()

    def run(self, proxy, path, rate):
        period = 1.0 / rate
        nxt = time.monotonic()
        try:
            c = Conn(proxy.port)
            while not self.stop_ev.is_set():
                r = c.request("GET", path)
                if r.status != 200:
                    continue
                traced = r.json().get("profiler") is not None
                with self.lock:
                    self.rec.append((time.monotonic(), path, traced))
                nxt += period
                d = nxt - time.monotonic()
                if d > 0:
                    time.sleep(d)
                else:
                    nxt = time.monotonic()   # late: do not burst to catch up
        except Exception:
            return

    def rates(self, t0, t1):
        """{path: (requests/s, traced/s)} between t0 and t1."""
        out = {}
        with self.lock:
            rec = [r for r in self.rec if t0 <= r[0] < t1]
        for path in set(r[1] for r in rec):
            n = [r for r in rec if r[1] == path]
            out[path] = (len(n) / (t1 - t0),
                         sum(1 for r in n if r[2]) / (t1 - t0))
        return out

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)


@pytest.fixture
def fleet(make_proxy, wsgi, redis_server):
    """fleet(n=3, extra=""): n proxies on one Redis, in front of one
    osprofiler-wrapped WSGI service. Afterwards every log must be free of
    sanitizer reports (for builds with -fsanitize)."""
    made = []
    app = wsgi(redis_server.url)

    def start(n=3, extra="", target=TARGET, initial=0.05):
        ps = [make_proxy(CONF, upstream=app.url, redis=redis_server.url,
                         key=KEY, channel=CHANNEL, extra=extra, target=target,
                         initial=initial)
              for _ in range(n)]
        made.extend(ps)
        return ps
    yield start
    for p in made:
        log = p.logtext()
        assert "Sanitizer" not in log and "runtime error:" not in log, log[-3000:]


def adaptive(p):
    return admin_get(p, "/sampling").json()["adaptive"]


def leader_pid(redis):
    v = redis.db.get(KEY + ":adaptive:leader")
    return int(v.decode().split(":")[-2]) if v else None


def measure(load, secs):
    t0 = time.monotonic()
    time.sleep(secs)
    return load.rates(t0, time.monotonic())


def assert_on_target(r, what):
    for path in (HOT, COLD):
        qps, traced = r[path]
        assert abs(traced - TARGET) <= 0.3 * TARGET, \
            "%s: %s at %.1f req/s traced %.2f/s, want %.1f +-30%%: %r" % (
                what, path, qps, traced, TARGET, r)


def test_fleet_on_target_and_leader_takeover(fleet, redis_server):
    procs = fleet(3)
    load = Load([(p, HOT, 33.0) for p in procs] +
                [(p, COLD, 3.4) for p in procs])
    try:
        # one leader, and every proxy follows its documents
        pid = wait_for(lambda: leader_pid(redis_server), 20, "a leader")
        assert pid in [p.pid for p in procs]
        wait_for(lambda: all(HOT_OP in (adaptive(p).get("operations") or {})
                             .get("nova", {}) and
                             COLD_OP in adaptive(p)["operations"]["nova"]
                             for p in procs), 30,
                 "every proxy to have both operations computed")
        st = adaptive(procs[0])
        assert st["leader"].split(":")[-2] == str(pid)
        assert st["target_traces_per_second"] == TARGET
        ops = st["operations"]["nova"]
        for op in (HOT_OP, COLD_OP):
            assert set(ops[op]) == {"probability", "qps", "traced_per_second"}
        # the hot operation's probability is far below the cold one's
        time.sleep(16)                        # warm-up: ~8 rounds
        ops = adaptive(procs[1])["operations"]["nova"]
        assert ops[HOT_OP]["probability"] < ops[COLD_OP]["probability"]
        assert 60 < ops[HOT_OP]["qps"] < 140, ops
        assert_on_target(measure(load, 30), "3 proxies")

        # the leader dies: another one takes the lease within two
        # intervals (plus a slow machine's slack) and rates stay on target
        dead = [p for p in procs if p.pid == pid][0]
        dead.proc.send_signal(signal.SIGKILL)
        dead.proc.wait()
        t_kill = time.monotonic()
        new = wait_for(lambda: (leader_pid(redis_server) or pid) != pid and
                       leader_pid(redis_server), 15, "a new leader")
        took = time.monotonic() - t_kill
        assert new in [p.pid for p in procs if p is not dead]
        assert took < 8, took
        alive = [p for p in procs if p is not dead]
        wait_for(lambda: adaptive(alive[0])["leader"].split(":")[-2] == str(new),
                 15, "documents from the new leader")
        # 2/3 of the traffic is left: the probabilities rise to match
        time.sleep(16)
        r = measure(load, 30)
        assert 40 < r[HOT][0] < 80, r
        assert_on_target(r, "2 proxies after the takeover")
        for p in alive:
            loc = adaptive(p)["local"]
            assert loc["enabled"] and loc["redis_connected"]
            assert loc["is_leader"] == (p.pid == new)
            m = metrics(p)
            assert m["tracebridge_adaptive_leader"] == (1 if p.pid == new else 0)
            assert m["tracebridge_adaptive_flushes_total"] > 10
            assert (m["tracebridge_adaptive_computations_total"] > 0) == \
                (p.pid == new)
    finally:
        load.stop()


def test_explicit_operation_policy_beats_adaptive(fleet, tmp_path,
                                                  redis_server):
    pol = str(tmp_path / "policy.json")
    with open(pol, "w") as f:
        json.dump({"service_strategies": [{
            "service": "nova", "type": "probabilistic", "param": 0.5,
            "operation_strategies": [{"operation": COLD_OP,
                                      "type": "probabilistic",
                                      "param": 1.0}]}]}, f)
    (p,) = fleet(1, extra="policy_file = %s" % pol)
    load = Load([(p, HOT, 30.0), (p, COLD, 5.0)])
    try:
        wait_for(lambda: HOT_OP in (adaptive(p).get("operations") or {})
                 .get("nova", {}), 30, "the hot operation computed")
        time.sleep(10)
        r = measure(load, 15)
        # the named operation keeps its policy: everything traced
        assert r[COLD][1] == pytest.approx(r[COLD][0], rel=0.01), r
        # the service strategy (0.5) is not "named": adaptive decides
        assert abs(r[HOT][1] - TARGET) <= 0.35 * TARGET, r
        st = admin_get(p, "/sampling").json()
        dec = st["decisions"]["nova"]
        assert set(dec[COLD_OP]) == {"probabilistic"}
        assert set(dec[HOT_OP]) <= {"adaptive", "adaptive_lower_bound"}
        # and the leader does not compute a probability for it
        assert COLD_OP not in adaptive(p)["operations"]["nova"]
        # the edge spans say how each trace was chosen (Jaeger's tags)
        infos = []
        for k in redis_server.db.scan_iter("osprofiler_opt:*", count=1000):
            for item in redis_server.db.lrange(k, 0, -1):
                d = json.loads(item)
                if d["name"].endswith("-start"):
                    infos.append(d["info"])
        hot = [i for i in infos if i.get("operation") == HOT_OP]
        cold = [i for i in infos if i.get("operation") == COLD_OP]
        assert hot and cold, infos[:3]
        for i in hot:
            # the ratio, or min_traces_per_second's token (Jaeger's names)
            assert (i["sampling"], i["sampler.type"]) in (
                ("adaptive", "probabilistic"),
                ("adaptive_lower_bound", "lowerbound")), i
            assert 0 < i["sampler.param"] < 1, i
        assert any(i["sampling"] == "adaptive" for i in hot), hot
        for i in cold:
            assert (i["sampling"], i["sampler.type"], i["sampler.param"]) == \
                ("probabilistic", "probabilistic", 1), i
    finally:
        load.stop()


def test_redis_down_keeps_probabilities(fleet, redis_server):
    (p,) = fleet(1)
    load = Load([(p, HOT, 30.0)])
    try:
        wait_for(lambda: HOT_OP in (adaptive(p).get("operations") or {})
                 .get("nova", {}), 30, "the hot operation computed")
        before = adaptive(p)["operations"]["nova"][HOT_OP]["probability"]
        redis_server.stop(signal.SIGKILL)
        wait_for(lambda: not adaptive(p)["local"]["redis_connected"], 10,
                 "the proxy to notice")
        time.sleep(3)
        # requests still flow, at the last probability
        r = measure(load, 4)
        assert r[HOT][0] > 15, r
        assert adaptive(p)["operations"]["nova"][HOT_OP]["probability"] == before
        redis_server.start()
        wait_for(lambda: adaptive(p)["local"]["redis_connected"], 20,
                 "reconnect")
        c0 = adaptive(p)["computed_at_unix"]
        wait_for(lambda: adaptive(p)["computed_at_unix"] > c0, 20,
                 "computations to resume")
        # and the traced rate is on target again, from the new Redis's
        # counts (a 30 s window: ~60 traces, 2.5 standard deviations)
        time.sleep(8)
        r = measure(load, 30)
        assert abs(r[HOT][1] - TARGET) <= 0.35 * TARGET, \
            "after the Redis restart: traced %.2f/s, want %.1f: %r" % (
                r[HOT][1], TARGET, r)
    finally:
        load.stop()


@pytest.fixture(scope="module")
def node_remote_sampler():
    """run(endpoint, service, n, ops) -> {"response", "rates"} from the real
    @opentelemetry/sampler-jaeger-remote (node/remote_sampler.js)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: cannot run the Jaeger remote sampler")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@opentelemetry",
                                      "sampler-jaeger-remote")):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       check=True, stdout=subprocess.DEVNULL, timeout=300)

    def run(endpoint, service, n, ops):
        out = subprocess.run([node, os.path.join(NODE_DIR, "remote_sampler.js"),
                              endpoint, service, str(n)] + list(ops),
                             check=True, capture_output=True, text=True,
                             timeout=120).stdout
        return json.loads(out)
    return run


def test_jaeger_remote_sampler_follows_tracebridge(fleet, tmp_path,
                                                   node_remote_sampler):
    pol = str(tmp_path / "policy.json")
    with open(pol, "w") as f:
        json.dump({"service_strategies": [{
            "service": "nova", "type": "probabilistic", "param": 0.5,
            "operation_strategies": [{"operation": "GET /fixed",
                                      "type": "probabilistic",
                                      "param": 0.25}]}]}, f)
    (p,) = fleet(1, extra="policy_file = %s" % pol)
    load = Load([(p, HOT, 30.0), (p, COLD, 4.0)])
    try:
        def per_op(resp):
            return dict((o["operation"], o["probabilisticSampling"]["samplingRate"])
                        for o in resp["operationSampling"]["perOperationStrategies"])

        def settled():
            # both paths give the same answer (no computation in between),
            # and it is the leader's: hot below cold
            a = admin_get(p, "/api/sampling?service=nova").json()
            b = admin_get(p, "/sampling?service=nova").json()
            per = per_op(a)
            return a == b and per.get(HOT_OP, 1) < per.get(COLD_OP, 0) and a
        served = wait_for(settled, 40, "hot below cold in the answer")
        assert served["strategyType"] == "PROBABILISTIC"
        assert per_op(served)["GET /fixed"] == 0.25    # explicit, kept
        n = 20000
        base = "http://127.0.0.1:%d" % p.admin
        for endpoint in (base + "/api", base):         # collector, agent
            got = node_remote_sampler(endpoint, "nova", n,
                                      ["GET /fixed", HOT_OP, COLD_OP,
                                       "GET /never-seen"])
            # probabilities move every 2 s: compare with what it was served
            resp = got["response"]
            assert resp["strategyType"] == "PROBABILISTIC"
            want = per_op(resp)
            assert want["GET /fixed"] == 0.25 and HOT_OP in want
            # unknown to both: adaptive's default for the service
            want["GET /never-seen"] = \
                resp["operationSampling"]["defaultSamplingProbability"]
            for op, rate in got["rates"].items():
                sd = math.sqrt(want[op] * (1 - want[op]) / n)
                assert abs(rate - want[op]) <= 5 * sd + 0.002, \
                    (endpoint, op, rate, want[op])
    finally:
        load.stop()


def test_many_operations(fleet, redis_server):
    """400 operations at once (a worker counts at most 448): one interval's
    hash answers HGETALL with 1600 elements or more, past the Redis
    client's default reply limit (1024): every request traced, so two
    fields per operation."""
    (p,) = fleet(1, initial=1)

    def name(i):
        s = ""
        for _ in range(3):
            s += chr(ord("a") + i % 26)
            i //= 26
        return "/x/op-" + s
    paths = [name(i) for i in range(400)]
    c = Conn(p.port)
    try:
        for path in paths:
            assert c.request("GET", path).status == 200
    finally:
        c.close()
    ops = wait_for(lambda: len((adaptive(p).get("operations") or {})
                               .get("nova", {})) >= 400 and
                   adaptive(p)["operations"]["nova"], 30,
                   "all 400 operations computed")
    assert set("GET " + x for x in paths) <= set(ops)
    assert "too_large" not in p.logtext() and "too_many" not in p.logtext()
