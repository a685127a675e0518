#!/usr/bin/env python3
"""A publish-authorisation callback (nginx-rtmp on_publish style) for tests, counting calls.
usage: auth_callback.py PORT
POST (form: call, app, name, key, addr, protocol): a name starting with "slow" is answered
200 after 3 s; otherwise 200 when key == "letmein", else 403.
GET /calls returns JSON {name: number of POSTs}; GET /last returns the last form as JSON."""
import http.server, json, sys, threading, time, urllib.parse

port = int(sys.argv[1])
calls, last = {}, {}
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass

    def reply(self, status, body=b""):
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # zoomate gave up waiting (the slow case): expected

    def do_GET(self):
        with lock:
            body = json.dumps(calls if self.path == "/calls" else last).encode()
        self.reply(200, body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True).items()}
        name = form.get("name", "")
        with lock:
            calls[name] = calls.get(name, 0) + 1
            last.clear(); last.update(form)
            last["content_type"] = self.headers.get("Content-Type", "")
        if name.startswith("slow"):
            time.sleep(3)
            self.reply(200)
        elif form.get("key") == "letmein":
            self.reply(200)
        else:
            self.reply(403)

http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
