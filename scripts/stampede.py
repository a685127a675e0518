#!/usr/bin/env python3
"""N simultaneous GETs for one URL; prints p50/p99 latency (ms) and failures as JSON."""
import json, sys, threading, time, urllib.request

url, n = sys.argv[1], int(sys.argv[2])
barrier = threading.Barrier(n)
lat, fails = [], []
lock = threading.Lock()

def one():
    barrier.wait()
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
            ok = r.status == 200
    except Exception as e:  # noqa: BLE001
        ok = False
    dt = (time.perf_counter() - t) * 1000
    with lock:
        (lat if ok else fails).append(dt)

ts = [threading.Thread(target=one) for _ in range(n)]
for t in ts: t.start()
for t in ts: t.join()
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None
print(json.dumps({"ok": len(lat), "failed": len(fails), "p50_ms": round(q(0.5), 1), "p99_ms": round(q(0.99), 1)}))
