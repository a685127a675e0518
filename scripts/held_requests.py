#!/usr/bin/env python3
"""N concurrent LL-HLS blocking reloads for one future part, over N HTTP/1.1 connections.

    held_requests.py HOST:PORT PLAYLIST_PATH N [PARTS_AHEAD [HINT_HOST:PORT]]

Opens N keep-alive connections (each warmed with one `GET /healthz`, as a player's connection
is), reads the playlist's preload hint (from HINT_HOST:PORT, default the
same server: give the origin to keep that read out of the edge's counters), asks every
connection for the part PARTS_AHEAD (default 2) beyond the hint, and waits for all answers. Prints one JSON object:
statuses, whether every answer lists the part, and the completion spread (first answer to
each answer, ms: all were woken by the same bus event, so this is the fan-out cost).
"""
import asyncio
import json
import re
import sys
import time
import urllib.request


async def main():
    hostport, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ahead = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    hint_from = sys.argv[5] if len(sys.argv) > 5 else hostport
    host, port = hostport.rsplit(":", 1)
    conns = []
    for _ in range(n):
        conns.append(await asyncio.open_connection(host, int(port)))

    async def response(r):
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await r.readexactly(length)
        return head + body

    warm = f"GET /healthz HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode()
    for _, w in conns:
        w.write(warm)
    await asyncio.gather(*(response(r) for r, _ in conns))
    text = urllib.request.urlopen(f"http://{hint_from}{path}", timeout=10).read().decode()
    m = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.[0-9a-f]+\.m4s"', text)
    msn, part = int(m.group(1)), int(m.group(2))
    parts = re.findall(r'#EXT-X-PART:DURATION=[0-9.]+,URI="(\d+)\.(\d+)\.[0-9a-f]+\.m4s"', text)
    # Parts per segment: the highest index of a complete segment's parts, plus one.
    complete = {}
    for s, p in parts:
        complete[int(s)] = max(complete.get(int(s), 0), int(p) + 1)
    per_segment = max(v for k, v in complete.items() if k < msn) if any(k < msn for k in complete) else 10
    idx = msn * per_segment + part + ahead
    tm, tp = idx // per_segment, idx % per_segment
    want = f'URI="{tm}.{tp}.'
    req = f"GET {path}?_HLS_msn={tm}&_HLS_part={tp} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode()
    sent = time.monotonic()
    for _, w in conns:
        w.write(req)
    await asyncio.gather(*(w.drain() for _, w in conns))
    send_ms = (time.monotonic() - sent) * 1000

    async def answer(r):
        data = await response(r)
        return time.monotonic(), data

    results = await asyncio.gather(*(answer(r) for r, _ in conns))
    for _, w in conns:
        w.close()
    times = sorted(t for t, _ in results)
    first = times[0]
    spread = [(t - first) * 1000 for t in times]
    statuses = {}
    listed = 0
    for _, data in results:
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "none"
        statuses[status] = statuses.get(status, 0) + 1
        listed += want.encode() in data
    pct = lambda q: spread[min(len(spread) - 1, int(q * len(spread)))]
    print(json.dumps({
        "n": n, "target": f"{tm}.{tp}", "statuses": statuses, "listing_the_part": listed,
        "send_ms": round(send_ms, 2), "held_ms": round((first - sent) * 1000, 1),
        "spread_p50_ms": round(pct(0.5), 3), "spread_p99_ms": round(pct(0.99), 3),
        "spread_max_ms": round(spread[-1], 3),
    }))


asyncio.run(main())
