#!/usr/bin/env python3
"""Reads an LL-HLS media playlist from a URL with the third-party `m3u8` parser and prints what
the tests check, as one JSON object. Exits 1 (with the reason) if the parser cannot read it.

    ll_playlist_summary.py URL
"""
import json
import sys
import urllib.request

import m3u8


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=15) as r:
        text = r.read().decode()
    try:
        p = m3u8.loads(text)
    except Exception as e:  # the parser's own error, whatever it is
        print(f"m3u8 could not parse {url}: {e}\n{text}", file=sys.stderr)
        sys.exit(1)
    sc = p.server_control
    parts = [
        {"uri": part.uri, "duration": part.duration, "independent": part.independent == "YES"}
        for seg in p.segments
        for part in (seg.parts or [])
    ]
    # Parts of the segment being written follow the last segment (m3u8 keeps them on a
    # segment without a URI).
    summary = {
        "version": p.version,
        "target_duration": p.target_duration,
        "media_sequence": p.media_sequence,
        "segments": [s.uri for s in p.segments if s.uri],
        "segment_durations": [s.duration for s in p.segments if s.uri],
        "program_date_times": sum(1 for s in p.segments if s.program_date_time),
        "parts": parts,
        "part_target": p.part_inf.part_target if p.part_inf else None,
        "can_block_reload": bool(sc and sc.can_block_reload == "YES"),
        "part_hold_back": sc.part_hold_back if sc else None,
        "can_skip_until": sc.can_skip_until if sc else None,
        "skipped_segments": p.skip.skipped_segments if p.skip else None,
        "preload_hint": {"type": p.preload_hint.hint_type, "uri": p.preload_hint.uri}
        if p.preload_hint
        else None,
        "rendition_reports": [
            {"uri": r.uri, "last_msn": r.last_msn, "last_part": r.last_part}
            for r in p.rendition_reports
        ],
        "endlist": p.is_endlist,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
