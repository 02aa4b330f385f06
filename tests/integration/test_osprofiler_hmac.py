"""tracebridge's X-Trace-Info / X-Trace-HMAC against osprofiler itself.

Both directions, with osprofiler's own code (run under /usr/bin/python3):
- what tracebridge signs (tests/unit/tb_trace_tool sign) is accepted by
  osprofiler._utils.signed_unpack and by web.WsgiMiddleware (the trace
  really starts, with tracebridge's base_id and parent_id);
- what osprofiler._utils.signed_pack makes is accepted by tracebridge
  (tb_trace_tool verify), with several keys, rotation, and refused when
  tampered, signed with another key, or carrying extra JSON keys.

The tool comes from $TB_BUILDDIR/tests/unit/tb_trace_tool (default: the
repository root); when it is not built there it is compiled from the
sources into a temporary directory.
"""
import base64
import json
import os
import shutil
import subprocess
import uuid

import pytest

osprofiler = pytest.importorskip("osprofiler")
from osprofiler import _utils  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tool(tmp_path_factory):
    builddir = os.environ.get("TB_BUILDDIR", TOP)
    path = os.path.join(builddir, "tests", "unit", "tb_trace_tool")
    if os.access(path, os.X_OK):
        return path
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("tb_trace_tool not built and no C compiler")
    out = str(tmp_path_factory.mktemp("tool") / "tb_trace_tool")
    src = os.path.join(TOP, "src")
    files = [os.path.join(src, f) for f in sorted(os.listdir(src))
             if f.startswith("trace") and f.endswith(".c")]
    files += [os.path.join(src, "hdr.c"),
              os.path.join(TOP, "tests", "unit", "tb_trace_tool.c")]
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-I" + src, "-o", out]
                   + files + ["-lcrypto"], check=True)
    return out


def sign(tool, keys, base_id, parent_id):
    r = subprocess.run([tool, "sign", ",".join(keys), base_id, parent_id],
                       check=True, capture_output=True, text=True)
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    return lines["X-Trace-Info"], lines["X-Trace-HMAC"]


def verify(tool, keys, info, hmac):
    if isinstance(info, bytes):
        info = info.decode()
    r = subprocess.run([tool, "verify", ",".join(keys), info, hmac],
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    return r.stdout.split() if r.returncode == 0 else None


def ids():
    return str(uuid.uuid4()), str(uuid.uuid4())


# ---- tracebridge signs, osprofiler verifies ----

def test_worked_example_matches_osprofiler(tool):
    data = {"base_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
            "parent_id": "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24"}
    info, hmac = sign(tool, ["SECRET_KEY"], data["base_id"], data["parent_id"])
    packed = _utils.signed_pack(data, "SECRET_KEY")
    assert info == packed[0].decode()
    assert hmac == packed[1] == "db9b62be0039ccaf42eb56839b3d81962f592048"


@pytest.mark.parametrize("key", ["SECRET_KEY", "k", "x" * 64, "y" * 65,
                                 "a much longer key " * 10, "ключ"])
def test_osprofiler_accepts_tracebridge(tool, key):
    base_id, parent_id = ids()
    info, hmac = sign(tool, [key], base_id, parent_id)
    got = _utils.signed_unpack(info, hmac, [key])
    assert got == {"base_id": base_id, "parent_id": parent_id,
                   "hmac_key": key}


def test_osprofiler_rotation_accepts_first_key(tool):
    base_id, parent_id = ids()
    info, hmac = sign(tool, ["new", "old"], base_id, parent_id)
    assert _utils.signed_unpack(info, hmac, ["old", "new"])["hmac_key"] == "new"
    assert _utils.signed_unpack(info, hmac, ["old"]) is None


def test_wsgi_middleware_starts_the_trace(tool):
    webob = pytest.importorskip("webob")
    from osprofiler import profiler, web

    seen = {}

    def app(environ, start_response):
        p = profiler.get()
        seen["base_id"] = p.get_base_id() if p else None
        seen["parent_id"] = p.get_parent_id() if p else None
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    web.enable("SECRET_KEY")
    try:
        mw = web.WsgiMiddleware(app, hmac_keys="SECRET_KEY", enabled=True)
        base_id, parent_id = ids()
        info, hmac = sign(tool, ["SECRET_KEY"], base_id, parent_id)
        req = webob.Request.blank("/", headers={"X-Trace-Info": info,
                                                "X-Trace-HMAC": hmac})
        req.get_response(mw)
        assert seen["base_id"] == base_id
        # inside the middleware's wsgi span, whose parent is ours
        assert seen["parent_id"] == parent_id
    finally:
        web.disable()


# ---- osprofiler signs, tracebridge verifies ----

def test_tracebridge_accepts_osprofiler(tool):
    base_id, parent_id = ids()
    info, hmac = _utils.signed_pack({"base_id": base_id,
                                     "parent_id": parent_id}, "SECRET_KEY")
    assert verify(tool, ["SECRET_KEY"], info, hmac) == ["ok", base_id, parent_id]


def test_tracebridge_accepts_base_id_only(tool):
    base_id = str(uuid.uuid4())
    info, hmac = _utils.signed_pack({"base_id": base_id}, "SECRET_KEY")
    assert verify(tool, ["SECRET_KEY"], info, hmac) == ["ok", base_id, "-"]


def test_several_keys_and_rotation(tool):
    base_id, parent_id = ids()
    for signer in ("k1", "k2", "k3"):
        info, hmac = _utils.signed_pack({"base_id": base_id,
                                         "parent_id": parent_id}, signer)
        assert verify(tool, ["k1", "k2", "k3"], info, hmac)[0] == "ok"
    info, hmac = _utils.signed_pack({"base_id": base_id,
                                     "parent_id": parent_id}, "retired")
    assert verify(tool, ["k1", "k2", "k3"], info, hmac) is None


def test_tampered_data(tool):
    base_id, parent_id = ids()
    info, hmac = _utils.signed_pack({"base_id": base_id,
                                     "parent_id": parent_id}, "SECRET_KEY")
    info = info.decode()
    other = base64.urlsafe_b64encode(json.dumps(
        {"base_id": str(uuid.uuid4()), "parent_id": parent_id}).encode()).decode()
    assert verify(tool, ["SECRET_KEY"], other, hmac) is None
    flipped = info[:10] + ("A" if info[10] != "A" else "B") + info[11:]
    assert verify(tool, ["SECRET_KEY"], flipped, hmac) is None
    assert _utils.signed_unpack(flipped, hmac, ["SECRET_KEY"]) is None


def test_tampered_hmac(tool):
    base_id, parent_id = ids()
    info, hmac = _utils.signed_pack({"base_id": base_id,
                                     "parent_id": parent_id}, "SECRET_KEY")
    bad = hmac[:-1] + ("0" if hmac[-1] != "0" else "1")
    assert verify(tool, ["SECRET_KEY"], info, bad) is None
    assert verify(tool, ["SECRET_KEY"], info, hmac.upper()) is None
    assert verify(tool, ["SECRET_KEY"], info, hmac[:20]) is None


@pytest.mark.parametrize("extra", [{"sampled": True}, {"foo": "bar"},
                                   {"parent_id": None}, {"base_id": 42}])
def test_extra_or_bad_json_keys_refused(tool, extra):
    data = {"base_id": str(uuid.uuid4()), "parent_id": str(uuid.uuid4())}
    data.update(extra)
    info, hmac = _utils.signed_pack(data, "SECRET_KEY")
    assert verify(tool, ["SECRET_KEY"], info, hmac) is None


def test_bad_base64_refused(tool):
    for text in ["not base64!", "eyJi", "eyJiYXNlX2lkIjogIjRi="]:
        hmac = _utils.generate_hmac(text, "SECRET_KEY")
        assert verify(tool, ["SECRET_KEY"], text, hmac) is None
        assert _utils.signed_unpack(text, hmac, ["SECRET_KEY"]) is None
