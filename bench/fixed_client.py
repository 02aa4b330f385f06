#!/usr/bin/python3
"""The benchmarks' fixed-count client (bench/span_instructions.sh,
bench/adaptive_instructions.sh): CONNECTIONS keep-alive connections, one
GET /v3 in flight on each, until COUNT responses have been read; exits 1 on
anything but 200. Usage: fixed_client.py PORT COUNT CONNECTIONS"""
import selectors, socket, sys
port, count, nconn = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = ("GET /v3 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port).encode()
sel = selectors.DefaultSelector()
sent = done = 0
for _ in range(min(nconn, count)):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(req)
    sent += 1
    sel.register(s, selectors.EVENT_READ, bytearray())
while done < count:
    for key, _ in sel.select():
        s, buf = key.fileobj, key.data
        data = s.recv(65536)
        if not data:
            sys.exit("connection closed after %d responses" % done)
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            if head[0].split()[1] != "200":
                sys.exit("answer: " + head[0])
            cl = [int(l.split(":", 1)[1]) for l in head[1:]
                  if l.lower().startswith("content-length:")]
            if not cl or len(buf) < end + 4 + cl[0]:
                break
            del buf[:end + 4 + cl[0]]
            done += 1
            if sent < count:
                s.sendall(req)
                sent += 1
