#!/usr/bin/env python3
"""A bus subscriber that is not zoomate's code: libzmq (pyzmq) + pycapnp with the same schema.

usage: bus_interop_sub.py ENDPOINT TOPIC_PREFIX COUNT
Prints COUNT decoded messages as JSON lines, then exits (exit 2 after 30 s without them).
"""
import json
import os
import sys

import capnp  # pycapnp
import zmq

endpoint, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
schema = capnp.load(os.path.join(os.path.dirname(__file__), "..", "schema", "zoomate_bus.capnp"))
ctx = zmq.Context()
sock = ctx.socket(zmq.SUB)
sock.setsockopt(zmq.RCVTIMEO, 30000)
sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
sock.connect(endpoint)
for _ in range(count):
    try:
        topic, payload = sock.recv_multipart()
    except zmq.Again:
        sys.exit(2)
    with schema.Envelope.from_bytes(payload) as env:
        kind = env.which()
        body = getattr(env, kind).to_dict()
        print(json.dumps({"topic": topic.decode(), "version": env.version, "kind": kind, **body}), flush=True)
