#!/usr/bin/python3
"""The viewer's OpenStack-like service: osprofiler's real WsgiMiddleware and
redis notifier around an app that makes one `db` child span per request
(with a hostile-looking statement, to see it escaped) and answers with a
fresh X-OpenStack-Request-ID. Under /fail the db call raises: an error span.

  viewer_app.py PORT REDIS_URL
"""
import json
import sys
import uuid

from oslo_config import cfg
from osprofiler import notifier, opts, profiler, web

from wsgi_serve import serve

PORT = int(sys.argv[1])
REDIS = sys.argv[2]
STATEMENT = "SELECT * FROM servers WHERE name = '<script>alert(\"db\")</script>'"


def app(environ, start_response):
    status = "200 OK"
    try:
        with profiler.Trace("db", info={"db": {"statement": STATEMENT, "params": {}}}):
            if environ.get("PATH_INFO", "").startswith("/fail"):
                raise RuntimeError("the database went away")
    except RuntimeError:
        status = "500 Internal Server Error"
    req_id = "req-" + str(uuid.uuid4())
    body = json.dumps({"request_id": req_id}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))),
                            ("X-OpenStack-Request-ID", req_id)])
    return [body]


def main():
    opts.set_defaults(cfg.CONF, enabled=True, hmac_keys="SECRET_KEY")
    cfg.CONF([])
    notifier.set(notifier.create(REDIS, project="nova", service="osapi_compute",
                                 host="compute-1", conf=cfg.CONF))
    web.enable("SECRET_KEY")
    serve(web.WsgiMiddleware(app, hmac_keys="SECRET_KEY", enabled=True), PORT)


if __name__ == "__main__":
    main()
