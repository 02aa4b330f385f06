"""Serve a WSGI app on 127.0.0.1 with wsgiref, one thread per request and
no access log: the test WSGI services (wsgi_app.py, proxy_wsgi_app.py)."""
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *a):
        pass


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve(app, port):
    make_server("127.0.0.1", port, app, server_class=ThreadingWSGIServer,
                handler_class=QuietHandler).serve_forever()
