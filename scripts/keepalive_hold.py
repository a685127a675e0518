#!/usr/bin/env python3
"""Issue #14's slot attack, measured: N keep-alive connections that each send a request every
INTERVAL_S seconds (and reconnect at once when closed), while VIEWERS new clients, one every
second, each open a fresh connection and ask once.

    keepalive_hold.py HOST:PORT N INTERVAL_S VIEWERS [PATH]

Prints one JSON object: how many holders got a slot, how often they were closed and came back,
and for the viewers: served, failed (with why), latency p50/max in ms (a viewer gives up
after 8 s, as the issue's did)."""
import asyncio
import json
import sys
import time


async def request(reader, writer, hostport, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def main():
    hostport, n, interval, viewers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    path = sys.argv[5] if len(sys.argv) > 5 else "/healthz"
    host, port = hostport.rsplit(":", 1)
    stop = asyncio.Event()
    held, renewed = set(), [0]

    async def holder(i):
        await asyncio.sleep(interval * i / n)  # spread the requests over the interval
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
                await asyncio.wait_for(request(*conn, hostport, path), 10)
                held.add(i)
            except Exception:  # noqa: BLE001 - closed to make room (or refused): come back
                if conn is not None:
                    conn[1].close()
                    renewed[0] += 1
                conn = None
                await asyncio.sleep(0.05)
                continue
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass
        if conn is not None:
            conn[1].close()

    tasks = [asyncio.create_task(holder(i)) for i in range(n)]
    # Let every holder get its slot and settle into its rhythm.
    deadline = time.monotonic() + 30
    while len(held) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    holding = len(held)
    await asyncio.sleep(interval)
    served, failed, lat = 0, [], []
    for _ in range(viewers):
        t = time.perf_counter()
        try:
            conn = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 8)
            status = await asyncio.wait_for(request(*conn, hostport, path), 8)
            conn[1].close()
            if status == 200:
                served += 1
                lat.append((time.perf_counter() - t) * 1000)
            else:
                failed.append(f"status {status}")
        except Exception as e:  # noqa: BLE001
            failed.append(f"{type(e).__name__} after {time.perf_counter() - t:.1f} s")
        await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat.sort()
    print(json.dumps({
        "holders": n, "holding_a_slot": holding, "interval_s": interval,
        "holders_closed_and_renewed": renewed[0],
        "viewers": viewers, "served": served, "failed": failed,
        "latency_p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
        "latency_max_ms": round(lat[-1], 1) if lat else None,
    }))


asyncio.run(main())
