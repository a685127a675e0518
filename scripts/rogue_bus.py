#!/usr/bin/env python3
"""A hostile bus peer for tests: a libzmq (pyzmq) PUB that forges zoomate announcements, and an
HTTP server standing for the attacker's (or an internal) service, counting every request.

usage:
  rogue_bus.py STREAM RENDITION REAL_ORIGIN_ID REAL_BASE_URL

Prints two lines, `bus ENDPOINT` and `http PORT`, then forges, every 100 ms until killed:
  - a heartbeat from a new origin whose base URL is the attacker's server, claiming STREAM;
  - a heartbeat whose base URL is an internal URL with a query (SSRF);
  - a heartbeat claiming REAL_ORIGIN_ID with the attacker's URL, and one with REAL_BASE_URL;
  - a SegmentReady for a future segment of STREAM/RENDITION in the real origin's name,
    and one in the forged origin's name;
  - a PlaylistUpdated with sequence 2^64-1;
  - 200 heartbeats from distinct forged origins (2000 within the first second);
  - a SegmentReady payload on a heartbeat topic.
GET /count on the HTTP server answers how many other requests it has seen.

Run from the project's test venv (scripts/setup-test-venv).
"""
import http.server
import os
import sys
import threading
import time

import capnp  # pycapnp
import zmq

SCHEMA = capnp.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schema", "zoomate_bus.capnp"))

HITS = 0
HITS_LOCK = threading.Lock()


class Attacker(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global HITS
        if self.path == "/count":
            with HITS_LOCK:
                body = str(HITS).encode()
        else:
            with HITS_LOCK:
                HITS += 1
            body = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\nevil.ts\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def envelope(kind):
    env = SCHEMA.Envelope.new_message(version=1, sentAtMs=int(time.time() * 1000))
    return env, env.init(kind)


def heartbeat(origin_id, base_url, streams):
    env, hb = envelope("originHeartbeat")
    hb.originId = origin_id
    hb.httpBaseUrl = base_url
    s = hb.init("streams", len(streams))
    for i, name in enumerate(streams):
        s[i] = name
    hb.loadStreams = len(streams)
    hb.intervalMs = 300
    return (f"hb/{origin_id}".encode(), env.to_bytes())


def segment(stream, rendition, seq, origin_id, topic=None):
    env, g = envelope("segmentReady")
    g.stream = stream
    g.rendition = rendition
    g.mediaSequence = seq
    g.durationMs = 1000
    g.uri = f"/live/{stream}/{rendition}/{seq}.ts"
    g.byteSize = 100
    g.programDateTimeMs = int(time.time() * 1000)
    g.originId = origin_id
    return ((topic or f"seg/{stream}/{rendition}").encode(), env.to_bytes())


def playlist_updated(stream, rendition, seq):
    env, p = envelope("playlistUpdated")
    p.stream = stream
    p.rendition = rendition
    p.mediaSequence = seq
    p.uri = f"/live/{stream}/{rendition}/index.m3u8"
    return (f"pl/{stream}/{rendition}".encode(), env.to_bytes())


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 64
    stream, rendition, real_id, real_url = sys.argv[1:]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    attacker = f"http://127.0.0.1:{port}"

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    print(f"bus {sock.getsockopt_string(zmq.LAST_ENDPOINT)}", flush=True)
    print(f"http {port}", flush=True)

    round_no = 0
    while True:
        future = 1_000_000 + round_no
        messages = [
            heartbeat("evil", attacker, [stream]),
            heartbeat("ssrf", f"{attacker}/internal/admin?x=", [stream]),
            heartbeat(real_id, attacker, [stream]),
            heartbeat(real_id, real_url, [stream]),
            segment(stream, rendition, future, real_id),
            segment(stream, rendition, future, "evil"),
            playlist_updated(stream, rendition, 2**64 - 1),
            segment(stream, rendition, future, real_id, topic="hb/x"),
        ]
        messages += [heartbeat(f"evil{round_no % 10}-{i}", attacker, [stream]) for i in range(200)]
        for frames in messages:
            sock.send_multipart(frames)
        round_no += 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
