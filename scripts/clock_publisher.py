#!/usr/bin/python3
"""A live RTMP publisher whose frames carry the wall-clock time they were made, machine-readable.

Each 640x360 frame (I420, 30 fps, grey) gets two identical rows of 32 blocks at the top, 20x20
pixels each, black (Y=16) for 0 and white (Y=235) for 1, most significant bit first: the low 32
bits of the unix time in milliseconds taken just before the frame enters the pipeline (the
"capture"). A player reads the rows back from a presented frame (scripts/browser/glass.mjs) and
subtracts: glass-to-glass latency on one host and one clock. Two rows so a reader can throw
away a frame caught mid-transition (the rows disagree).

The frame then goes through x264 (zerolatency, like OBS's low-latency presets) and FLV to
rtmp://HOST:PORT/live/NAME, with silent AAC audio (the ladder expects audio from RTMP).

Runs with Debian's python3 (python3-gi, gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0; see
scripts/install-deps): `/usr/bin/python3 scripts/clock_publisher.py rtmp://127.0.0.1:1935/live/clk`
until killed. Stdout: one line "publishing" once the pipeline plays.
"""
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 30
BITS, BLOCK, ROWS = 32, 20, 2
BLACK, WHITE, GREY = 16, 235, 128


def frame_bytes(base: bytearray, ms: int) -> bytes:
    """`base` (a grey I420 frame) with the low 32 bits of `ms` burned into its top rows."""
    f = bytearray(base)
    low = ms & 0xFFFFFFFF
    spans = [bytes([WHITE if (low >> (BITS - 1 - i)) & 1 else BLACK]) * BLOCK for i in range(BITS)]
    line = b"".join(spans)
    for y in range(ROWS * BLOCK):
        f[y * WIDTH:y * WIDTH + BITS * BLOCK] = line
    return bytes(f)


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].startswith("rtmp://"):
        sys.stderr.write("usage: clock_publisher.py rtmp://HOST:PORT/live/NAME\n")
        return 1
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"appsrc name=src is-live=true do-timestamp=true format=time "
        f"caps=video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={FPS}/1 "
        "! queue max-size-buffers=2 leaky=downstream "
        f"! x264enc tune=zerolatency speed-preset=veryfast bitrate=1500 key-int-max={FPS} "
        "! video/x-h264,profile=main ! h264parse config-interval=1 ! queue ! flvmux name=m streamable=true "
        f"! rtmp2sink location={sys.argv[1]} sync=false "
        "audiotestsrc is-live=true wave=silence ! audioconvert ! audio/x-raw,rate=48000,channels=2 "
        "! avenc_aac ! aacparse ! queue ! m."
    )
    src = pipeline.get_by_name("src")
    y_size = WIDTH * HEIGHT
    base = bytearray([GREY]) * (y_size + y_size // 2)
    running = threading.Event()
    running.set()

    def produce():
        # Paced on the monotonic clock; the stamp is the wall clock at the moment of push.
        period = 1.0 / FPS
        next_at = time.monotonic()
        while running.is_set():
            ms = int(time.time() * 1000)
            if src.emit("push-buffer", Gst.Buffer.new_wrapped(frame_bytes(base, ms))) != Gst.FlowReturn.OK:
                break
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    loop = GLib.MainLoop()
    bus = pipeline.get_bus()
    bus.add_signal_watch()

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            sys.stderr.write(f"clock_publisher: {err.message} ({dbg})\n")
            loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            loop.quit()

    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    print("publishing", flush=True)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    running.clear()
    pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
