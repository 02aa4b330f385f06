#!/usr/bin/python3
"""oslo.middleware's real HTTPProxyToWSGI (Debian's python3-oslo.middleware),
as OpenStack APIs run it with enable_proxy_headers_parsing = true, around an
app that answers what the service then believes: scheme, host, client
address, script name, and every HTTP_* variable of its environ.

  proxy_wsgi_app.py PORT
"""
import json
import sys

from oslo_middleware import http_proxy_to_wsgi

from wsgi_serve import serve


def app(environ, start_response):
    seen = {
        "scheme": environ.get("wsgi.url_scheme"),
        "host": environ.get("HTTP_HOST"),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "script_name": environ.get("SCRIPT_NAME", ""),
        "environ": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
    }
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def main():
    mw = http_proxy_to_wsgi.HTTPProxyToWSGI(
        app, {"enable_proxy_headers_parsing": True})
    serve(mw, int(sys.argv[1]))


if __name__ == "__main__":
    main()
