#!/usr/bin/env python3
"""Observes any zoomate binary on a full disk (docs/RELIABILITY.md, "main" column).

Usage (root: it mounts a 16 MiB tmpfs): python3 scripts/full_disk_cycles.py PATH/TO/zoomate

The same setup and 3 fill/free cycles as tests/faults.rs, but asserting nothing, so it also
runs against builds without the health signals: per cycle, how fast /healthz answered while
the disk was full, and for each rendition how long after the free it listed a new segment
(None: not within 30 s). Counts the ERROR lines of the run's log at the end.
"""
import json, os, subprocess, sys, tempfile, time, urllib.request, threading
binary = sys.argv[1]
d = tempfile.mkdtemp()
store = os.path.join(d, "store"); os.makedirs(store)
subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", store])
cfg = f"""[store]
dir = "{store}"
[vod]
dir = "{store}/vod"
[origin]
http_listen = "127.0.0.1:0"
[rtmp]
listen = "127.0.0.1:0"
[edge]
listen = "127.0.0.1:0"
[bus]
publish_endpoint = "tcp://127.0.0.1:0"
[ladder]
segment_duration_ms = 1000
frame_rate = 30
format = "ts"
[[ladder.renditions]]
name = "180p"
width = 320
height = 180
video_bitrate_kbps = 200
[hls]
retain_after_window_ms = 600000
window_segments = 30
[pipelines]
stall_timeout_ms = 4000
[[streams]]
name = "ts"
source = "test-pattern"
width = 320
height = 180
format = "ts"
[[streams]]
name = "cmaf"
source = "test-pattern"
width = 320
height = 180
format = "cmaf"
"""
open(os.path.join(d, "z.toml"), "w").write(cfg)
log = open(os.path.join(d, "z.log"), "w")
p = subprocess.Popen([binary, "--config", os.path.join(d, "z.toml"), "--print-ready", "origin"], stdout=subprocess.PIPE, stderr=log, env=dict(os.environ, ZOOMATE_LOG="zoomate=debug,info"))
ready = json.loads(p.stdout.readline())
origin = ready["addrs"]["origin_http"]
R = [("ts", "180p"), ("cmaf", "180p"), ("cmaf", "audio")]
def newest(s, r):
    try:
        t = urllib.request.urlopen(f"http://{origin}/live/{s}/{r}/index.m3u8", timeout=5).read().decode()
    except Exception:
        return None
    ms = 0; n = 0
    for l in t.splitlines():
        if l.startswith("#EXT-X-MEDIA-SEQUENCE:"): ms = int(l.split(":")[1])
        elif l and not l.startswith("#"): n += 1
    return ms + n - 1 if n else None
def healthz():
    t0 = time.time()
    try:
        urllib.request.urlopen(f"http://{origin}/healthz", timeout=5).read(); return time.time() - t0
    except Exception as e:
        return f"failed: {e}"
t0 = time.time()
while time.time() - t0 < 30 and not all((newest(s, r) or -1) >= 1 for s, r in R): time.sleep(0.2)
stop = threading.Event()
def fill(path):
    with open(path, "ab") as f:
        try:
            while True: f.write(b"U" * 262144); f.flush()
        except OSError: pass
for cycle in range(3):
    fp = os.path.join(store, f"filler-{cycle}")
    stop.clear()
    def topper():
        while not stop.is_set(): fill(fp); time.sleep(0.02)
    th = threading.Thread(target=topper); th.start()
    time.sleep(10)
    at_full = [newest(s, r) for s, r in R]
    hz = healthz()
    stop.set(); th.join(); os.remove(fp)
    freed = time.time(); got = [None] * len(R)
    while time.time() - freed < 30 and not all(got):
        for i, (s, r) in enumerate(R):
            n = newest(s, r)
            if got[i] is None and n is not None and at_full[i] is not None and n > at_full[i]: got[i] = round(time.time() - freed, 2)
            if got[i] is None and n is not None and at_full[i] is None: got[i] = round(time.time() - freed, 2)
        time.sleep(0.1)
    print(f"cycle {cycle}: healthz while full {hz}; recovered per rendition {got} (None = not within 30 s)", flush=True)
p.terminate()
try: p.wait(20); print("exit", p.returncode)
except Exception: p.kill(); print("did not exit within 20 s of SIGTERM")
subprocess.call(["umount", "-l", store])
log.close()
errors = sum(1 for l in open(os.path.join(d, "z.log"), errors="replace") if " ERROR " in l or "ERROR\x1b" in l)
print("log:", os.path.join(d, "z.log"), "ERROR lines:", errors)
