#!/usr/bin/python3
"""A small OpenStack-like WSGI service wrapped by osprofiler's real
WsgiMiddleware, with osprofiler's real redis notifier.

  wsgi_app.py PORT REDIS_URL [HMAC_KEYS] [PROJECT] [SERVICE] [HOST]

Every response is JSON describing what the service saw: its request headers
and the osprofiler profiler state (base_id, parent span) while handling it.
Used by the demo (scripts/demo) and the trace/span integration tests.
"""
import json
import sys

from oslo_config import cfg
from osprofiler import notifier, opts, profiler, web

from wsgi_serve import serve

PORT = int(sys.argv[1])
REDIS = sys.argv[2]
KEYS = sys.argv[3] if len(sys.argv) > 3 else "SECRET_KEY"
PROJECT = sys.argv[4] if len(sys.argv) > 4 else "demo"
SERVICE = sys.argv[5] if len(sys.argv) > 5 else "api"
HOST = sys.argv[6] if len(sys.argv) > 6 else "app-host"


def app(environ, start_response):
    p = profiler.get()
    seen = {
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING"),
        "headers": {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                    if k.startswith("HTTP_")},
        "profiler": None,
    }
    if p is not None:
        seen["profiler"] = {"base_id": p.get_base_id(), "parent_id": p.get_parent_id(),
                            "span_id": p.get_id()}
    status = "200 OK"
    if environ.get("PATH_INFO", "").startswith("/fail"):
        status = "500 Internal Server Error"
    body = json.dumps(seen).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))),
                            ("X-OpenStack-Request-ID", "req-00000000-0000-4000-8000-000000000001")])
    return [body]


def main():
    opts.set_defaults(cfg.CONF, enabled=True, hmac_keys=KEYS)
    cfg.CONF([])
    notifier.set(notifier.create(REDIS, project=PROJECT, service=SERVICE, host=HOST,
                                 conf=cfg.CONF))
    web.enable(KEYS)
    wrapped = web.WsgiMiddleware(app, hmac_keys=KEYS, enabled=True)
    serve(wrapped, PORT)


if __name__ == "__main__":
    main()
