#!/usr/bin/env python3
"""An origin dying mid-response. Counts media requests.

usage: truncating_origin.py PORT [MODE [DELAY_MS]]   (PORT 0: any, printed on stdout)
  (no MODE)  every media GET: headers for a 64 KiB body (Content-Length), 100 bytes of it,
             then the connection closes;
  unframed   every media GET: no Content-Length (the body ends at close), 100 bytes, close:
             an early end the client cannot tell from the real one;
  first      the first media GET waits DELAY_MS, then is cut short as above; every later one
             gets all 64 KiB (a failed fill that the next attempt repairs).
GET /count returns the number of media requests; GET /healthz answers 200 (so health checks
keep it in rotation)."""
import http.server, sys, threading, time

port = int(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "truncate"
delay = int(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0
FULL = 64 * 1024
count = 0
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        global count
        if self.path in ("/count", "/healthz"):
            body = str(count).encode() if self.path == "/count" else b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with lock:
            count += 1
            n = count
        if mode == "first" and n > 1:
            self.send_response(200)
            self.send_header("Content-Length", str(FULL))
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(b"\x47" * FULL)
            return
        if mode == "first":
            time.sleep(delay)
        self.send_response(200)
        if mode != "unframed":
            self.send_header("Content-Length", str(FULL))
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        self.wfile.write(b"\x47" * 100)
        self.wfile.flush()
        self.close_connection = True

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
# PORT 0: the kernel picks a free one, printed on stdout (no race with another test for it).
print(server.server_address[1], flush=True)
server.serve_forever()
