#!/usr/bin/env python3
"""An origin that answers every media GET with headers for a 64 KiB body, sends 100 bytes of it
and closes the connection (an origin dying mid-response). Counts requests.
usage: truncating_origin.py PORT ; GET /count returns the number of media requests;
GET /healthz answers 200 (so health checks keep it in rotation)."""
import http.server, sys, threading

port = int(sys.argv[1])
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
        self.send_response(200)
        self.send_header("Content-Length", str(64 * 1024))
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        self.wfile.write(b"\x47" * 100)
        self.wfile.flush()
        self.close_connection = True

http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
