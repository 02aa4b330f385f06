"""Sampling policies through the real proxy (issue 5), end to end.

The real tracebridge binary with [profiler] enabled, a real redis-server
(span sink and policy source), the policy in a real file and conftest's
upstream.py, which echoes the request headers it got. A request counts as
sampled when the upstream saw X-Trace-Info; every response is also checked
for agreement: traceparent flags towards the upstream, Server-Timing flags
towards the client and X-Trace-Info presence all say the same.

Run: TB_BUILDDIR=/tmp/build /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        tests/integration/test_sampling_e2e.py
"""
import base64
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import Conn, admin_get, metrics_text

if shutil.which("redis-server") is None:
    pytest.skip("redis-server not installed", allow_module_level=True)

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import redis as redis_py  # noqa: E402  (python3-redis)
from osprofiler import _utils as osp_utils  # noqa: E402  (python3-osprofiler)

KEY = "SECRET_KEY"


# --- fixtures ---------------------------------------------------------------

@pytest.fixture
def redis(redis_server):
    return redis_server


CONF = """
[DEFAULT]
workers = {workers}
log_level = info
access_log = off
drain_timeout = 2

[admin]
listen = 127.0.0.1:{admin}

[listener:api]
listen = 127.0.0.1:{port}
upstream = {upstream}
service = {service}
trust_incoming_sampling = {trust}
upstream_timeout = 5
client_header_timeout = 5

[profiler]
enabled = {enabled}
hmac_keys = SECRET_KEY
connection_string = {redis}

[tracing]
{tracing}

[sampling]
{sampling}
"""


@pytest.fixture
def tb(make_proxy, upstream, redis):
    """tb(sampling="...", tracing="...", trust="true", service="api").
    Afterwards every proxy must still run, its log free of sanitizer
    reports (for builds with -fsanitize)."""
    made = []

    def start(sampling="", tracing="", trust="true", service="api",
              enabled="true", workers=2, upstream_url=None):
        p = make_proxy(CONF, upstream=upstream_url or upstream.url, redis=redis.url,
                       sampling=sampling, tracing=tracing, trust=trust,
                       service=service, enabled=enabled, workers=workers)
        made.append(p)
        return p
    yield start
    for p in made:
        log = p.logtext()
        assert "Sanitizer" not in log and "runtime error:" not in log, log[-3000:]
        assert p.proc.poll() is None, "tracebridge exited: %s" % log[-3000:]


def write_policy(path, doc):
    text = doc if isinstance(doc, str) else json.dumps(doc)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def prob(p, **extra):
    d = {"default_strategy": {"type": "probabilistic", "param": p}}
    d.update(extra)
    return d


# --- requests and what came of them ------------------------------------------

def traceparent(trace_hex, flags="01"):
    return "00-%s-%016x-%s" % (trace_hex, random.getrandbits(64) | 1, flags)


def outcome(resp):
    """(sampled, trace id hex) of one proxied response, after checking that
    the upstream's headers, traceparent and Server-Timing agree."""
    assert resp.status == 200, resp.raw_head
    seen = dict((k.lower(), v) for k, v in resp.json()["headers"])
    tp = seen["traceparent"].split("-")
    st = resp.header("Server-Timing")
    assert st.startswith("trace;desc=00-"), st
    st = st[len("trace;desc="):].split("-")
    assert st[1] == tp[1], (st, tp)      # same trace id both ways
    flag = int(tp[3], 16) & 1
    assert int(st[3], 16) & 1 == flag
    has_osp = "x-trace-info" in seen
    assert has_osp == bool(flag), (seen, flag)
    assert ("x-trace-hmac" in seen) == has_osp
    if has_osp:
        info = json.loads(base64.urlsafe_b64decode(seen["x-trace-info"]))
        assert info["base_id"] == str(uuid.UUID(tp[1]))
    return bool(flag), tp[1]


def run_parallel(port, reqs, threads=4):
    """Send reqs ([(method, path, headers)]) over `threads` keep-alive
    connections; returns [(sampled, trace_hex, t_sent)] in reqs' order."""
    out = [None] * len(reqs)
    errors = []

    def work(k):
        try:
            c = Conn(port)
            for i in range(k, len(reqs), threads):
                m, p, h = reqs[i]
                t = time.monotonic()
                out[i] = outcome(c.request(m, p, headers=h)) + (t,)
            c.close()
        except Exception as e:  # surfaced in the main thread
            errors.append(e)
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[0]
    return out


def one(port, method="GET", path="/v2.1/servers", headers=()):
    c = Conn(port)
    try:
        return outcome(c.request(method, path, headers=list(headers)))[0]
    finally:
        c.close()


def status(p):
    return admin_get(p, "/sampling").json()


def counts(p, service, op):
    return status(p)["decisions"].get(service, {}).get(op, {})


def wait_for(pred, timeout, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


# OpenTelemetry TraceIdRatioBased, as sampling.h documents: sampled iff the
# low 56 bits of the trace id >= (1 - p) * 2^56.
def ratio_sampled(trace_hex, p):
    return int(trace_hex, 16) & ((1 << 56) - 1) >= round((1 - p) * (1 << 56))


# --- 1. probabilistic policy: 25 % of random ids, the same ids everywhere ---

def test_probabilistic_quarter_same_ids_on_two_proxies(tb, tmp_path, redis):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, {"service_strategies": [], "default_strategy":
                       {"type": "probabilistic", "param": 0.25}})
    conf = dict(sampling="policy_file = %s" % pol, trust="false")
    a, b = tb(**conf), tb(**conf)
    rnd = random.Random(5)
    ids = ["%032x" % rnd.getrandbits(128) for _ in range(4000)]
    # the incoming flag says "sampled" for half and "not" for the other half;
    # with trust_incoming_sampling = false only the policy decides
    reqs = [("GET", "/v2.1/servers/detail",
             [("traceparent", traceparent(t, "01" if i % 2 else "00"))])
            for i, t in enumerate(ids)]
    ra = run_parallel(a.port, reqs)
    rb = run_parallel(b.port, reqs)
    # the trace id is kept even though the flag is not trusted
    assert [r[1] for r in ra] == ids
    assert [r[1] for r in rb] == ids
    sa = set(t for s, t, _ in ra if s)
    sb = set(t for s, t, _ in rb if s)
    assert abs(len(sa) / 4000.0 - 0.25) <= 0.03, len(sa)
    assert sa == sb
    assert sa == set(t for t in ids if ratio_sampled(t, 0.25))
    for p in (a, b):
        c = counts(p, "api", "GET /v2.1/servers/detail")
        assert c == {"probabilistic": {"sampled": len(sa),
                                       "unsampled": 4000 - len(sa)}}
    # each sampled trace holds exactly the two edge spans of each proxy
    want = set("osprofiler_opt:%s" % uuid.UUID(t) for t in sa)

    def stored():
        keys = set(k.decode() for k in redis.db.scan_iter("osprofiler_opt:*", count=1000))
        return keys == want and all(redis.db.llen(k) == 4 for k in want)
    assert wait_for(stored, 5, 0.1)


# --- 2. ratelimiting 20/s for the listener's service -------------------------

def test_ratelimiting_20_per_second(tb, tmp_path):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, {"service_strategies": [
        {"service": "nova", "type": "ratelimiting", "param": 20}],
        "default_strategy": {"type": "probabilistic", "param": 1.0}})
    p = tb(sampling="policy_file = %s" % pol, service="nova")
    # ~3 s of steady traffic, no incoming context, at a few hundred per second
    results = []
    lock = threading.Lock()
    end = time.monotonic() + 3.0

    def work():
        c = Conn(p.port)
        while time.monotonic() < end:
            t = time.monotonic()
            s, _ = outcome(c.request("GET", "/v2.1/flavors"))
            with lock:
                results.append((t, s))
            time.sleep(0.002)
        c.close()
    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    results.sort()
    n = len(results)
    dur = results[-1][0] - results[0][0]
    assert n / dur > 100, (n, dur)       # well over 20/s
    sampled = sum(1 for _, s in results if s)
    # the bucket starts full: burst max(1, rate) = 20, then 20 per second
    want = 20 + 20 * dur
    assert abs(sampled - want) <= 0.1 * want, (sampled, want, n, dur)
    # and after the first second, the steady rate alone
    t1 = results[0][0] + 1.0
    late = [s for t, s in results if t >= t1]
    late_dur = results[-1][0] - t1
    assert abs(sum(late) - 20 * late_dur) <= 0.1 * 20 * late_dur + 1, (sum(late), late_dur)
    c = counts(p, "nova", "GET /v2.1/flavors")
    assert c == {"ratelimiting": {"sampled": sampled, "unsampled": n - sampled}}


# --- 3. a policy published through Redis -------------------------------------

REDIS_SAMPLING = """policy_redis_key = tb:policy
policy_channel = tb:policy:changed"""


def publish(redis, doc):
    redis.db.set("tb:policy", doc if isinstance(doc, str) else json.dumps(doc))
    redis.db.publish("tb:policy:changed", "x")


def test_redis_published_policy_applies_within_1s(tb, redis):
    redis.db.set("tb:policy", json.dumps(prob(0.0)))
    p = tb(sampling=REDIS_SAMPLING)
    assert wait_for(lambda: status(p)["source"] == "redis:tb:policy", 5)
    assert status(p)["policy"]["default_strategy"]["param"] == 0.0
    assert not any(one(p.port) for _ in range(20))
    gen = status(p)["generation"]
    for want in (1.0, 0.0, 1.0):
        publish(redis, prob(want))
        t0 = time.monotonic()
        assert wait_for(lambda: one(p.port) == bool(want), 1.0, 0.005), want
        assert time.monotonic() - t0 < 1.0
        # and it stays: every new trace follows the new policy
        assert all(one(p.port) == bool(want) for _ in range(20))
        gen += 1
        assert status(p)["generation"] == gen
    assert "policy from redis:tb:policy in force" in p.logtext()


def test_redis_policy_and_spans_over_unix_socket(make_proxy, upstream, servers,
                                                tmp_path):
    """The one connection string, unix:// with a db, serves the policy
    source and the span sink alike (it used to be redis:// only for the
    policy)."""
    sock = str(tmp_path / "r.sock")
    r = servers("unix", extra=["--unixsocket", sock])
    db1 = r.client(db=1)
    db1.set("tb:policy", json.dumps(prob(0.0)))
    p = make_proxy(CONF, upstream=upstream.url, redis="unix://%s?db=1" % sock,
                   sampling=REDIS_SAMPLING, tracing="", trust="true",
                   service="api", enabled="true", workers=1)
    assert wait_for(lambda: status(p)["source"] == "redis:tb:policy", 5)
    assert not any(one(p.port) for _ in range(10))
    db1.set("tb:policy", json.dumps(prob(1.0)))
    db1.publish("tb:policy:changed", "x")
    assert wait_for(lambda: one(p.port), 1.0, 0.005)
    assert wait_for(lambda: db1.keys("osprofiler_opt:*"), 5)
    assert not r.client(db=0).keys("osprofiler_opt:*")
    assert "needs a redis://" not in p.logtext()


# --- 4. broken policies are rejected, the old one stays ----------------------

BROKEN = [
    ('{"default_strategy": {"type": "probabilistic", "param": 1.0}',
     None),   # bad JSON: the reason is jansson's, checked loosely
    (json.dumps(prob(2.0)), "outside [0,1]"),
    (json.dumps({"service_strategies": [{
        "service": "api", "type": "probabilistic", "param": 1.0,
        "operation_strategies": [{"operation": "GET /v2.1/servers",
                                  "type": "ratelimiting", "param": 5}]}]}),
     "operation_strategies[0]"),
]


def test_broken_policy_rejected_old_stays(tb, redis):
    redis.db.set("tb:policy", json.dumps(prob(1.0)))
    p = tb(sampling=REDIS_SAMPLING)
    assert wait_for(lambda: status(p)["source"] == "redis:tb:policy", 5)
    before = status(p)
    assert before["last_rejected"] is None
    assert one(p.port)
    for n, (doc, why) in enumerate(BROKEN, 1):
        publish(redis, doc)
        assert wait_for(lambda: "tracebridge_sampling_policy_rejected_total %d\n" % n
                        in metrics_text(p), 2), "rejection %d not seen" % n
        st = status(p)
        rej = st["last_rejected"]
        assert rej["source"] == "redis:tb:policy"
        if why:
            assert why in rej["reason"], rej
        assert rej["reason"]
        # the old policy stays, untouched
        assert st["policy"] == before["policy"]
        assert st["generation"] == before["generation"]
        assert st["source"] == before["source"]
        # the log says why
        assert "sampling: policy from redis:tb:policy rejected" in p.logtext()
        assert rej["reason"] in p.logtext()
        # decisions unchanged
        assert all(one(p.port) for _ in range(10))
    assert "tracebridge_sampling_policy_rejected_total 3" in metrics_text(p)


# --- 5. reload of policy_file: SIGHUP and file change ------------------------

def test_policy_file_sighup_and_change_reload(tb, tmp_path):
    pol = str(tmp_path / "policy.json")
    zero = json.dumps(prob(0.0))
    one_ = json.dumps(prob(1.0))
    assert len(zero) == len(one_)
    write_policy(pol, zero)
    p = tb(sampling="policy_file = %s" % pol)
    assert not any(one(p.port) for _ in range(10))
    gen = status(p)["generation"]

    # an edit that keeps inode, size and mtime is invisible to the watcher:
    # only SIGHUP picks it up
    st = os.stat(pol)
    with open(pol, "r+") as f:
        f.write(one_)
    os.utime(pol, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(2.2)      # two watcher periods
    assert not any(one(p.port) for _ in range(10))
    assert status(p)["generation"] == gen
    p.signal(signal.SIGHUP)
    assert wait_for(lambda: one(p.port), 2)
    assert all(one(p.port) for _ in range(10))
    s = status(p)
    assert s["generation"] > gen
    assert s["policy"]["default_strategy"]["param"] == 1.0
    assert s["source"] == "file:%s" % pol
    gen = s["generation"]

    # a changed file (new inode) is picked up without a signal
    write_policy(pol, zero)
    assert wait_for(lambda: not one(p.port), 3, 0.05)
    assert not any(one(p.port) for _ in range(10))
    assert status(p)["generation"] == gen + 1
    # so is a change in place
    with open(pol, "w") as f:
        f.write(json.dumps(prob(1)))
    assert wait_for(lambda: one(p.port), 3, 0.05)
    gen = status(p)["generation"]

    # a broken file: rejected on change and on SIGHUP, the policy stays
    write_policy(pol, json.dumps(prob(-1)))
    assert wait_for(lambda: status(p)["last_rejected"], 3, 0.05)
    p.signal(signal.SIGHUP)
    time.sleep(0.3)
    s = status(p)
    assert s["last_rejected"]["source"] == "file:%s" % pol
    assert "outside [0,1]" in s["last_rejected"]["reason"]
    assert s["generation"] == gen
    assert s["policy"]["default_strategy"]["param"] == 1.0
    assert all(one(p.port) for _ in range(10))
    assert "rejected" in p.logtext()


# --- 6. forced osprofiler traces pass a 0 % policy, up to the cap ------------

def osp_headers(key=KEY):
    base = str(uuid.uuid4())
    h = osp_utils.signed_pack({"base_id": base, "parent_id": str(uuid.uuid4())}, key)
    return base, [("X-Trace-Info", h[0].decode() if isinstance(h[0], bytes) else h[0]),
                  ("X-Trace-HMAC", h[1])]


def test_forced_osprofiler_passes_zero_policy_and_is_capped(tb, tmp_path, redis):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, prob(0.0))
    p = tb(sampling="policy_file = %s\nforced_max_per_second = 5" % pol)
    assert not any(one(p.port, path="/v3/projects") for _ in range(10))

    # signed by osprofiler itself: sampled, same trace, reason forced
    base, hs = osp_headers()
    c = Conn(p.port)
    r = c.request("GET", "/v3/projects", headers=hs)
    c.close()
    assert outcome(r)[0]
    assert r.header("X-Trace-Id") == base
    seen = dict((k.lower(), v) for k, v in r.json()["headers"])
    info = json.loads(base64.urlsafe_b64decode(seen["x-trace-info"]))
    assert info["base_id"] == base
    assert seen["x-trace-info"] != hs[0][1]       # re-signed with our span
    assert osp_utils.signed_unpack(seen["x-trace-info"], seen["x-trace-hmac"], [KEY])
    assert wait_for(lambda: redis.db.llen("osprofiler_opt:%s" % base) == 2, 3)
    start = [json.loads(x) for x in redis.db.lrange("osprofiler_opt:%s" % base, 0, -1)
             if json.loads(x)["name"] == "proxy-start"][0]
    assert start["info"]["sampling"] == "forced"
    assert start["info"]["operation"] == "GET /v3/projects"
    assert start["info"]["trace_format"] == "osprofiler"
    assert counts(p, "api", "GET /v3/projects")["forced"] == {"sampled": 1, "unsampled": 0}

    # signed with a key we don't have: not forced, the 0 % policy decides
    _, bad = osp_headers("OTHER_KEY")
    assert not one(p.port, path="/v3/projects", headers=bad)

    # a burst of 40 forced requests: the bucket (burst max(1, 5) = 5, of
    # which one was spent above, refilling at 5/s) lets a handful through
    time.sleep(1.1)     # full again
    t0 = time.monotonic()
    burst = [osp_headers() for _ in range(40)]
    res = run_parallel(p.port, [("GET", "/v3/projects", h) for _, h in burst], threads=4)
    dur = time.monotonic() - t0
    n = sum(1 for s, _, _ in res if s)
    # capped or not, the trace keeps osprofiler's base_id as its trace id
    # (and a capped one reaches the upstream without X-Trace-Info: outcome())
    assert [str(uuid.UUID(t)) for _, t, _ in res] == [b for b, _ in burst]
    assert 5 <= n <= 5 + 5 * dur + 1, (n, dur)
    c = counts(p, "api", "GET /v3/projects")
    assert c["forced"]["sampled"] == 1 + n
    assert c["forced_capped"] == {"sampled": 0, "unsampled": 40 - n}
    assert 'reason="forced_capped",sampled="false"} %d' % (40 - n) in metrics_text(p)


# --- 7. per-operation strategies, counters, operation rules ------------------

def test_operation_strategies_counters_and_rules(tb, tmp_path):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, {
        "service_strategies": [{
            "service": "nova", "type": "probabilistic", "param": 0.0,
            "operation_strategies": [
                {"operation": "POST /v2.1/servers", "type": "probabilistic", "param": 1.0},
                {"operation": "GET healthcheck", "type": "probabilistic", "param": 1.0}]}],
        "default_strategy": {"type": "probabilistic", "param": 1.0}})
    p = tb(sampling="policy_file = %s\noperation_rules =\n    prefix:/healthcheck healthcheck" % pol,
           service="nova")
    reqs = []
    for i in range(30):
        reqs.append(("POST", "/v2.1/servers", []))
        reqs.append(("GET", "/v2.1/servers/%s" % uuid.uuid4(), []))
        reqs.append(("GET", "/healthcheck?x=%d" % i, []))
        reqs.append(("GET", "/v2.1/flavors/%d" % (i + 1), []))
    res = run_parallel(p.port, reqs, threads=3)
    for (m, path, _), (s, _, _) in zip(reqs, res):
        want = (m == "POST" or path.startswith("/healthcheck"))
        assert s == want, (m, path)
    d = status(p)["decisions"]
    assert d == {"nova": {
        "POST /v2.1/servers": {"probabilistic": {"sampled": 30, "unsampled": 0}},
        "GET /v2.1/servers/{id}": {"probabilistic": {"sampled": 0, "unsampled": 30}},
        "GET healthcheck": {"probabilistic": {"sampled": 30, "unsampled": 0}},
        "GET /v2.1/flavors/{id}": {"probabilistic": {"sampled": 0, "unsampled": 30}}}}
    m = metrics_text(p)
    for line in (
            '# TYPE tracebridge_sampling_decisions_total counter',
            'tracebridge_sampling_decisions_total{service="nova",operation="POST /v2.1/servers",'
            'reason="probabilistic",sampled="true"} 30',
            'tracebridge_sampling_decisions_total{service="nova",operation="GET /v2.1/servers/{id}",'
            'reason="probabilistic",sampled="false"} 30',
            'tracebridge_sampling_decisions_total{service="nova",operation="GET healthcheck",'
            'reason="probabilistic",sampled="true"} 30'):
        assert line + "\n" in m, line


# --- 8. sample_new = true without a policy; max_traces_per_second ------------

def test_sample_new_samples_everything(tb):
    p = tb(tracing="sample_new = true")
    assert status(p)["policy"]["default_strategy"] == {"type": "probabilistic", "param": 1.0}
    res = run_parallel(p.port, [("GET", "/v2.1/servers", [])] * 200)
    assert all(s for s, _, _ in res)
    assert len(set(t for _, t, _ in res)) == 200     # 200 new traces
    # incoming unsampled traces keep their caller's word
    tid = "%032x" % random.getrandbits(128)
    assert not one(p.port, headers=[("traceparent", traceparent(tid, "00"))])


def test_max_traces_per_second_caps_a_burst(tb):
    p = tb(tracing="sample_new = true", sampling="max_traces_per_second = 5")
    t0 = time.monotonic()
    res = run_parallel(p.port, [("GET", "/v2.1/servers", [])] * 100)
    dur = time.monotonic() - t0
    n = sum(1 for s, _, _ in res if s)
    assert 5 <= n <= 5 + 5 * dur + 1, (n, dur)
    c = counts(p, "api", "GET /v2.1/servers")
    assert c == {"probabilistic": {"sampled": n, "unsampled": 0},
                 "global_cap": {"sampled": 0, "unsampled": 100 - n}}


# --- regressions -------------------------------------------------------------

def test_regression_builtin_policy_reference_taken_over_by_hub(tb):
    """tracing.c dropped its reference to the built-in policy after handing
    it to sampling_hub_new()/sampling_hub_publish(), which take it over: the
    policy in force was freed at start, so GET /sampling crashed the proxy and
    a reload that published a new built-in policy freed it twice."""
    p = tb(sampling="default_probability = 0")
    for _ in range(3):
        s = status(p)
        assert s["policy"] == {"service_strategies": [], "default_strategy":
                               {"type": "probabilistic", "param": 0.0}}
        assert s["source"] == "built-in default"
    assert not any(one(p.port) for _ in range(10))
    # a reload that changes the built-in policy publishes a new one
    p.write_conf(CONF.replace("\n{sampling}\n", "\ndefault_probability = 1\n"))
    gen = s["generation"]
    p.signal(signal.SIGHUP)
    assert wait_for(lambda: status(p)["generation"] > gen, 3, 0.05)
    assert all(one(p.port) for _ in range(10))
    s = status(p)
    assert s["policy"]["default_strategy"]["param"] == 1.0
    assert p.proc.poll() is None


# --- incoming decisions, reloads of the [sampling] section, counter bound ---

def test_trusted_incoming_flag_and_its_cap(tb, tmp_path):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, prob(0.0))
    p = tb(sampling="policy_file = %s\nincoming_max_per_second = 5" % pol)
    # the caller's "sampled" beats a 0 % policy, up to the cap
    t0 = time.monotonic()
    res = run_parallel(p.port, [
        ("GET", "/v3/users", [("traceparent", traceparent("%032x" % random.getrandbits(128)))])
        for _ in range(40)])
    dur = time.monotonic() - t0
    n = sum(1 for s, _, _ in res if s)
    assert 5 <= n <= 5 + 5 * dur + 1, (n, dur)
    # the caller's "not sampled" beats a 100 % policy
    write_policy(pol, prob(1.0))
    p.signal(signal.SIGHUP)
    assert wait_for(lambda: status(p)["policy"]["default_strategy"]["param"] == 1.0, 2)
    tid = "%032x" % random.getrandbits(128)
    assert not any(one(p.port, path="/v3/users",
                       headers=[("traceparent", traceparent(tid, "00"))]) for _ in range(5))
    assert one(p.port, path="/v3/users")       # no context: the policy
    c = counts(p, "api", "GET /v3/users")
    assert c["incoming_sampled"] == {"sampled": n, "unsampled": 0}
    assert c["incoming_capped"] == {"sampled": 0, "unsampled": 40 - n}
    assert c["incoming_unsampled"] == {"sampled": 0, "unsampled": 5}
    assert c["probabilistic"] == {"sampled": 1, "unsampled": 0}


def test_sighup_adds_and_removes_policy_file_and_caps(tb, tmp_path):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, prob(1.0))
    p = tb(sampling="default_probability = 0\nmax_traces_per_second = 2")
    assert not any(one(p.port) for _ in range(5))
    # reload with a policy file and no cap: the file is in force, uncapped
    p.write_conf(CONF.replace("\n{sampling}\n", "\npolicy_file = %s\n" % pol))
    p.signal(signal.SIGHUP)
    assert wait_for(lambda: status(p)["source"] == "file:%s" % pol, 3, 0.05)
    assert status(p)["limits"]["max_traces_per_second"] == 0
    res = run_parallel(p.port, [("GET", "/v2.1/servers", [])] * 50)
    assert all(s for s, _, _ in res)
    # reload without it: back to the built-in default_probability (0)
    p.write_conf(CONF.replace("\n{sampling}\n", "\ndefault_probability = 0\n"))
    p.signal(signal.SIGHUP)
    assert wait_for(lambda: status(p)["source"] == "built-in default", 3, 0.05)
    assert not any(one(p.port) for _ in range(10))
    # the file is no longer watched
    write_policy(pol, json.dumps(prob(1)) + " ")
    time.sleep(1.5)
    assert status(p)["source"] == "built-in default"


def test_operation_counters_are_bounded(tb):
    p = tb(workers=1, sampling="default_probability = 0")
    reqs = [("GET", "/v2.1/x%dy/list" % i, []) for i in range(600)]
    run_parallel(p.port, reqs)
    d = status(p)["decisions"]["api"]
    total = sum(v["probabilistic"]["unsampled"] for v in d.values())
    assert total == 600
    assert "other" in d and d["other"]["probabilistic"]["unsampled"] > 0
    assert len(d) < 512


def test_redis_restart_resubscribes_requests_never_wait(tb, redis):
    redis.db.set("tb:policy", json.dumps(prob(0.0)))
    p = tb(sampling=REDIS_SAMPLING)
    assert wait_for(lambda: status(p)["source"] == "redis:tb:policy", 5)
    redis.proc.kill()
    redis.proc.wait()
    # Redis down: requests are served at once, decided by the policy in force
    t0 = time.monotonic()
    assert not any(one(p.port) for _ in range(20))
    assert time.monotonic() - t0 < 2.0
    time.sleep(0.5)
    redis.start()
    # the new server has no key yet: the policy in force stays; a policy
    # published after the restart is picked up once the source reconnected
    # (backoff 0.1 s doubling, at most 5 s)
    redis.db.set("tb:policy", json.dumps(prob(1.0)))

    def applied():
        redis.db.publish("tb:policy:changed", "x")
        return status(p)["policy"]["default_strategy"]["param"] == 1.0
    assert wait_for(applied, 8, 0.2)
    assert all(one(p.port) for _ in range(10))
    # and the span sink reconnected too: the sampled spans are stored
    assert wait_for(lambda: sum(1 for _ in redis.db.scan_iter("osprofiler_opt:*")) >= 10, 5, 0.1)


# --- a Jaeger remote-sampling endpoint (policy_url) ---------------------------

@pytest.fixture
def sampling_endpoint():
    """Answers GET /api/sampling?service=S with answers[S] (a Jaeger
    remote-sampling response), 404 for unknown services."""
    answers = {}
    asked = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            from urllib.parse import urlparse, parse_qs
            svc = parse_qs(urlparse(self.path).query).get("service", [""])[0]
            asked.append(svc)
            body = answers.get(svc)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.answers, srv.asked = answers, asked
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def remote(rate, ops=None):
    d = {"strategyType": "PROBABILISTIC",
         "probabilisticSampling": {"samplingRate": rate}}
    if ops is not None:
        d["operationSampling"] = {
            "defaultSamplingProbability": rate,
            "defaultLowerBoundTracesPerSecond": 0,
            "perOperationStrategies": [
                {"operation": o, "probabilisticSampling": {"samplingRate": r}}
                for o, r in ops.items()]}
    return d


def test_policy_url_polled_per_service(tb, sampling_endpoint):
    ep = sampling_endpoint
    url = "http://127.0.0.1:%d/api/sampling" % ep.server_port
    ep.answers["keystone"] = remote(0.0, {"POST /v3/auth/tokens": 1.0})
    p = tb(service="keystone",
           sampling="policy_url = %s\npolicy_poll_interval = 1" % url)
    assert wait_for(lambda: status(p)["source"] == "url:%s" % url, 3, 0.05)
    assert "keystone" in ep.asked
    assert one(p.port, "POST", "/v3/auth/tokens")
    assert not one(p.port, "GET", "/v3/users")
    # the endpoint changes its answer: picked up at the next poll
    ep.answers["keystone"] = remote(1.0)
    assert wait_for(lambda: one(p.port, "GET", "/v3/users"), 3, 0.1)
    # the endpoint fails: the last good answer stays
    gen = status(p)["generation"]
    del ep.answers["keystone"]
    n = len(ep.asked)
    assert wait_for(lambda: len(ep.asked) > n, 3, 0.1)
    time.sleep(0.2)
    assert status(p)["generation"] == gen
    assert all(one(p.port, "GET", "/v3/users") for _ in range(5))


def test_pipelined_requests_are_decided_one_by_one(tb, tmp_path):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, {"default_strategy": {
        "type": "probabilistic", "param": 0.0, "operation_strategies": [
            {"operation": "POST /v2.1/servers", "type": "probabilistic", "param": 1.0}]}})
    p = tb(sampling="policy_file = %s" % pol)
    c = Conn(p.port)
    try:
        order = ["POST", "GET", "POST", "GET", "GET", "POST"]
        data = b""
        for i, m in enumerate(order):
            path = "/v2.1/servers" if m == "POST" else "/v2.1/servers/%s" % uuid.uuid4()
            body = b"{}" if m == "POST" else b""
            data += ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % (m, path, len(body))).encode() + body
        c.send(data)     # all at once: one read on the proxy's side
        got = [outcome(c.response()) for _ in order]
    finally:
        c.close()
    assert [s for s, _ in got] == [m == "POST" for m in order]
    assert len(set(t for _, t in got)) == len(order)



# --- with osprofiler's own middleware behind the proxy ------------------------

@pytest.fixture
def wsgi_app(wsgi, redis):
    return wsgi(redis.url, KEY, service="osapi_compute", project="nova").url


def test_osprofiler_service_traces_only_what_the_proxy_sampled(tb, tmp_path, redis, wsgi_app):
    pol = str(tmp_path / "policy.json")
    write_policy(pol, {"service_strategies": [{
        "service": "nova", "type": "probabilistic", "param": 0.0,
        "operation_strategies": [
            {"operation": "POST /v2.1/servers", "type": "probabilistic", "param": 1.0}]}]})
    p = tb(sampling="policy_file = %s" % pol, service="nova", upstream_url=wsgi_app)
    c = Conn(p.port)
    try:
        post = c.request("POST", "/v2.1/servers", body=b"{}")
        get = c.request("GET", "/v2.1/servers/%s" % uuid.uuid4())
    finally:
        c.close()
    assert post.status == 200 and get.status == 200
    sampled, unsampled = post.json(), get.json()
    # sampled: the service joined the proxy's trace, below the proxy's span
    base = post.header("X-Trace-Id")
    assert sampled["profiler"]["base_id"] == base
    assert int(post.header("Server-Timing")[-2:], 16) & 1 == 1
    # not sampled: osprofiler's middleware saw nothing to trace
    assert unsampled["profiler"] is None
    assert "x-trace-info" not in unsampled["headers"]
    assert int(unsampled["headers"]["traceparent"][-2:], 16) & 1 == 0
    assert int(get.header("Server-Timing")[-2:], 16) & 1 == 0

    def trace_complete():
        return redis.db.llen("osprofiler_opt:%s" % base) == 4
    assert wait_for(trace_complete, 5, 0.05)
    notes = [json.loads(x) for x in redis.db.lrange("osprofiler_opt:%s" % base, 0, -1)]
    names = sorted(n["name"] for n in notes)
    assert names == ["proxy-start", "proxy-stop", "wsgi-start", "wsgi-stop"]
    proxy_span = [n for n in notes if n["name"] == "proxy-start"][0]
    wsgi_span = [n for n in notes if n["name"] == "wsgi-start"][0]
    assert wsgi_span["parent_id"] == proxy_span["trace_id"]
    assert proxy_span["info"]["sampling"] == "probabilistic"
    # the unsampled request left nothing in Redis at all
    keys = set(k.decode() for k in redis.db.scan_iter("osprofiler_opt:*"))
    assert keys == {"osprofiler_opt:%s" % base}
    # and osprofiler's own report draws one tree: proxy above wsgi
    out = subprocess.run(["osprofiler", "trace", "show", "--connection-string",
                          redis.url, base, "--json"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    assert [ch["info"]["name"] for ch in tree["children"]] == ["proxy"]
    assert [ch["info"]["name"] for ch in tree["children"][0]["children"]] == ["wsgi"]


def test_policy_swaps_and_reloads_under_load(tb, redis):
    """Policies published every few ms and config reloads (SIGHUP) while
    four clients keep requests flowing: no request fails, every response
    agrees with itself (outcome()), the proxy survives (run this under a
    sanitizer build too)."""
    redis.db.set("tb:policy", json.dumps(prob(0.0)))
    p = tb(sampling=REDIS_SAMPLING)
    assert wait_for(lambda: status(p)["source"] == "redis:tb:policy", 5)
    gen0 = status(p)["generation"]
    stop = time.monotonic() + 2.0
    seen = []
    errors = []

    def client():
        try:
            c = Conn(p.port)
            n = 0
            while time.monotonic() < stop:
                s, _ = outcome(c.request("GET", "/v2.1/servers/detail?n=%d" % n))
                seen.append(s)
                n += 1
                if n % 50 == 0:      # fresh connections pick up new configs
                    c.close()
                    c = Conn(p.port)
            c.close()
        except Exception as e:
            errors.append(e)
    ts = [threading.Thread(target=client) for _ in range(4)]
    for t in ts:
        t.start()
    k = 0
    alt = ["", "\noperation_rules =\n    prefix:/v2.1/servers servers"]
    while time.monotonic() < stop:
        k += 1
        publish(redis, prob(k % 2))
        if k % 10 == 0:
            p.write_conf(CONF.replace("\n{sampling}\n", "\n" + REDIS_SAMPLING + alt[(k // 10) % 2] + "\n"))
            p.signal(signal.SIGHUP)
        time.sleep(0.01)
    for t in ts:
        t.join(30)
    assert not errors, errors[0]
    assert len(seen) > 200 and any(seen) and not all(seen)
    publish(redis, prob(1))
    assert wait_for(lambda: status(p)["generation"] > gen0 + k // 2, 3, 0.05)
    assert wait_for(lambda: one(p.port), 2, 0.05)
    assert p.proc.poll() is None
