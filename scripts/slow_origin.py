#!/usr/bin/env python3
"""An origin that answers every GET after DELAY_MS with a 1 MiB body and counts requests.
usage: slow_origin.py PORT DELAY_MS (PORT 0: any, printed on stdout); GET /count returns the number of media requests."""
import http.server, sys, threading, time

port, delay = int(sys.argv[1]), int(sys.argv[2]) / 1000
count = 0
lock = threading.Lock()
BODY = b"\x47" * (1024 * 1024)

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        global count
        if self.path == "/count":
            body = str(count).encode()
        elif self.path == "/healthz":
            body = b"ok"
        else:
            with lock:
                count += 1
            time.sleep(delay)
            body = BODY
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
# PORT 0: the kernel picks a free one, printed on stdout (no race with another test for it).
print(server.server_address[1], flush=True)
server.serve_forever()
