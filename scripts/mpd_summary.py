#!/usr/bin/env python3
"""Test peer: parse a DASH MPD with the third-party `mpegdash` package and print what a player
would use, as JSON: MPD type and timing, and per Period the AdaptationSets, Representations and
their segments expanded from SegmentTimeline (number, t, d).

Usage: mpd_summary.py FILE_OR_URL
"""
import json
import sys
import urllib.request

from mpegdash.parser import MPEGDASHParser


def expand(template):
    segments = []
    number = template.start_number if template.start_number is not None else 1
    t = 0
    for s in template.segment_timelines[0].Ss:
        if s.t is not None:
            t = s.t
        for _ in range((s.r or 0) + 1):
            segments.append({"number": number, "t": t, "d": s.d})
            number += 1
            t += s.d
    return segments


def main():
    src = sys.argv[1]
    if src.startswith("http://"):
        with urllib.request.urlopen(src, timeout=10) as r:
            text = r.read().decode()
    else:
        with open(src) as f:
            text = f.read()
    mpd = MPEGDASHParser.parse(text)
    out = {
        "type": mpd.type,
        "availability_start_time": mpd.availability_start_time,
        "publish_time": mpd.publish_time,
        "media_presentation_duration": mpd.media_presentation_duration,
        "minimum_update_period": mpd.minimum_update_period,
        "time_shift_buffer_depth": mpd.time_shift_buffer_depth,
        "periods": [],
    }
    for p in mpd.periods:
        period = {"id": p.id, "start": p.start, "adaptation_sets": []}
        for a in p.adaptation_sets:
            aset = {"content_type": a.content_type, "mime_type": a.mime_type, "representations": []}
            for r in a.representations:
                st = r.segment_templates[0]
                aset["representations"].append({
                    "id": r.id,
                    "bandwidth": r.bandwidth,
                    "codecs": r.codecs,
                    "width": r.width,
                    "height": r.height,
                    "frame_rate": r.frame_rate,
                    "initialization": st.initialization,
                    "media": st.media,
                    "timescale": st.timescale,
                    "presentation_time_offset": st.presentation_time_offset,
                    "segments": expand(st),
                })
            period["adaptation_sets"].append(aset)
        out["periods"].append(period)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
