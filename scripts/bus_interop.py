#!/usr/bin/env python3
"""A bus peer that is not zoomate's code: libzmq (pyzmq) + pycapnp, loading schema/zoomate_bus.capnp.

usage:
  bus_interop.py sub ENDPOINT TOPIC_PREFIX COUNT
      Connects a SUB socket, prints COUNT decoded messages as JSON lines
      ({"topic", "version", "kind", ...fields}), then exits; exit 2 after 30 s without them.
  bus_interop.py pub SECONDS
      Binds a PUB socket on tcp://127.0.0.1 (random port), prints the endpoint on the first
      line, then publishes a StreamStarted and a SegmentReady built with pycapnp every 20 ms
      for SECONDS (or until killed).

CURVE (optional, from the environment; keys are Z85 text):
  BUS_CURVE_SECRET / BUS_CURVE_PUBLIC   this peer's key pair (pub: makes it a CURVE server;
                                        sub: its client key, else a fresh one)
  BUS_CURVE_SERVER_KEY                  sub only: the publisher's public key

Run from the project's test venv (scripts/setup-test-venv).
"""
import json
import os
import sys
import time

import capnp  # pycapnp
import zmq

SCHEMA = capnp.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schema", "zoomate_bus.capnp"))


def curve(sock, server: bool) -> None:
    """Applies the BUS_CURVE_* environment (nothing when unset)."""
    secret = os.environ.get("BUS_CURVE_SECRET")
    public = os.environ.get("BUS_CURVE_PUBLIC")
    if server:
        if secret:
            sock.curve_server = True
            sock.curve_secretkey = secret.encode()
        return
    server_key = os.environ.get("BUS_CURVE_SERVER_KEY")
    if not server_key:
        return
    if not (secret and public):
        public, secret = (k.decode() for k in zmq.curve_keypair())
    sock.curve_serverkey = server_key.encode()
    sock.curve_publickey = public.encode()
    sock.curve_secretkey = secret.encode()


def sub(endpoint: str, prefix: str, count: int) -> int:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    curve(sock, server=False)
    sock.setsockopt(zmq.RCVTIMEO, 30000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
    sock.connect(endpoint)
    for _ in range(count):
        try:
            topic, payload = sock.recv_multipart()
        except zmq.Again:
            print(f"bus_interop: fewer than {count} messages within 30 s", file=sys.stderr)
            return 2
        with SCHEMA.Envelope.from_bytes(payload) as env:
            kind = env.which()
            body = getattr(env, kind).to_dict()
            print(json.dumps({"topic": topic.decode(), "version": env.version, "kind": kind, **body}), flush=True)
    return 0


def pub(seconds: float) -> int:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    curve(sock, server=True)
    sock.bind("tcp://127.0.0.1:*")
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)

    started = SCHEMA.Envelope.new_message(version=1, sentAtMs=int(time.time() * 1000))
    s = started.init("streamStarted")
    s.stream = "py"
    s.originId = "python-origin"
    r = s.init("renditions", 1)
    r[0].name = "480p"
    r[0].bandwidthBps = 1_400_000
    r[0].width = 854
    r[0].height = 480
    r[0].codecs = "avc1.4d401f,mp4a.40.2"

    seg = SCHEMA.Envelope.new_message(version=1, sentAtMs=int(time.time() * 1000))
    g = seg.init("segmentReady")
    g.stream = "py"
    g.rendition = "480p"
    g.mediaSequence = 7
    g.durationMs = 2002
    g.uri = "/live/py/480p/7.ts"
    g.byteSize = 123_456
    g.programDateTimeMs = 1_764_019_800_000
    g.discontinuity = True
    g.originId = "python-origin"

    messages = [(b"stream/py", started.to_bytes()), (b"seg/py/480p", seg.to_bytes())]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for frames in messages:
            sock.send_multipart(frames)
        time.sleep(0.02)
    return 0


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "sub":
        return sub(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    if len(sys.argv) == 3 and sys.argv[1] == "pub":
        return pub(float(sys.argv[2]))
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
