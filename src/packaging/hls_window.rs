//! Moving the front of a media playlist's window: dropping its oldest segments so that it starts
//! at a given media sequence number.
//!
//! Why: RFC 8216bis 6.2.1 forbids a playlist's `EXT-X-MEDIA-SEQUENCE` to decrease, and players
//! rely on it. hls.js aligns a playlist that starts earlier than the one before it with that
//! one's first segment, so everything lands a few segments off on its timeline and it loops
//! over parts it already has (a stall of seconds). Two redundant origins list the same segments
//! under the same names, but not always the same window: one restarted lists fewer, and at a
//! segment boundary one may be a segment ahead of the other. The edge, which is the one server
//! a player sees, uses this to keep every playlist's window from going backwards when it fails
//! over (`edge::sequence_floor`).
//!
//! Hand-written rather than through a playlist crate: it edits the text zoomate's own writer
//! ([`super::hls`]) produced, line for line, and must leave every other line byte-identical
//! (part and preload-hint names, rendition reports), which a parse-and-render round trip does
//! not promise. Pure code; anything unexpected is `None`, never a panic.

/// Where a media playlist's window starts: the first two header numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStart {
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
}

/// The header tags that come before a playlist's first segment (RFC 8216bis 4.4.2–4.4.3).
const HEADER_TAGS: [&str; 12] = [
    "#EXTM3U",
    "#EXT-X-VERSION:",
    "#EXT-X-TARGETDURATION:",
    "#EXT-X-SERVER-CONTROL:",
    "#EXT-X-PART-INF:",
    "#EXT-X-MEDIA-SEQUENCE:",
    "#EXT-X-DISCONTINUITY-SEQUENCE:",
    "#EXT-X-PLAYLIST-TYPE:",
    "#EXT-X-INDEPENDENT-SEGMENTS",
    "#EXT-X-START:",
    "#EXT-X-DEFINE:",
    "#EXT-X-I-FRAMES-ONLY",
];
const SKIP: &str = "#EXT-X-SKIP:SKIPPED-SEGMENTS=";
const MAP: &str = "#EXT-X-MAP:";
const DISCONTINUITY: &str = "#EXT-X-DISCONTINUITY";

fn is_header(line: &str) -> bool {
    HEADER_TAGS.iter().any(|t| line.starts_with(t))
}

fn is_uri(line: &str) -> bool {
    !line.is_empty() && !line.starts_with('#')
}

/// The window's start, from the header. `None`: no `EXT-X-MEDIA-SEQUENCE` or unreadable.
pub fn window_start(text: &str) -> Option<WindowStart> {
    let (mut media_sequence, mut discontinuity_sequence) = (None, 0);
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_sequence = Some(v.parse().ok()?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            discontinuity_sequence = v.parse().ok()?;
        } else if !line.is_empty() && !is_header(line) {
            break;
        }
    }
    Some(WindowStart {
        media_sequence: media_sequence?,
        discontinuity_sequence,
    })
}

/// `text` starting at `to`: its segments older than `to.media_sequence` dropped (those a delta
/// update skips first, then listed ones), `EXT-X-MEDIA-SEQUENCE` set, and the init segment in
/// effect carried over to the new first segment. `EXT-X-DISCONTINUITY-SEQUENCE` counts the
/// `EXT-X-DISCONTINUITY` tags dropped; when skipped segments are dropped, whose tags the text
/// does not show, it is `to.discontinuity_sequence` (the caller served a playlist starting
/// there). Every other line is kept as it was.
///
/// `None` when `text` is unreadable, already starts at or after `to`, or would keep no complete
/// segment (it is not the same timeline, or far behind: not this function's call).
pub fn start_at(text: &str, to: WindowStart) -> Option<String> {
    let from = window_start(text)?;
    let mut drop = to.media_sequence.checked_sub(from.media_sequence)?;
    if drop == 0 {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    // Trimmed both sides, as the readers do (`window_start`, `playlist_end`).
    let mut lines = text.lines().map(str::trim).peekable();
    // The header's discontinuity sequence is written once the dropped segments are known.
    let mut discontinuity_at = None;
    // Header, with the two numbers replaced.
    while let Some(line) = lines.peek().copied() {
        if line.starts_with(SKIP) || (!line.is_empty() && !is_header(line)) {
            break;
        }
        lines.next();
        if line.starts_with("#EXT-X-MEDIA-SEQUENCE:") {
            out.push_str(&format!("#EXT-X-MEDIA-SEQUENCE:{}\n", to.media_sequence));
        } else if line.starts_with("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            discontinuity_at = Some(out.len());
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let mut skipped_dropped = false;
    // Segments a delta update skipped come first.
    if let Some(skipped) = lines.peek().and_then(|l| l.strip_prefix(SKIP)) {
        let (count, rest) = skipped.split_once(',').unwrap_or((skipped, ""));
        let count: u64 = count.parse().ok()?;
        let rest = rest.to_string();
        lines.next();
        let dropped = drop.min(count);
        drop -= dropped;
        skipped_dropped = dropped > 0;
        if count > dropped {
            out.push_str(SKIP);
            out.push_str(&(count - dropped).to_string());
            if !rest.is_empty() {
                out.push(',');
                out.push_str(&rest);
            }
            out.push('\n');
        }
    }
    // Listed segments: each is its tags up to its URI line.
    let mut map_in_effect: Option<String> = None;
    let mut block: Vec<&str> = Vec::new();
    let mut kept_one = false;
    let mut discontinuities_dropped = 0u64;
    for line in lines {
        if drop == 0 {
            block.push(line);
            if is_uri(line) {
                write_first_or_next(&mut out, &block, kept_one, map_in_effect.as_deref());
                kept_one = true;
                block.clear();
            }
            continue;
        }
        if line.starts_with(MAP) {
            map_in_effect = Some(line.to_string());
        }
        if line == DISCONTINUITY {
            discontinuities_dropped += 1;
        }
        if is_uri(line) {
            drop -= 1;
        }
    }
    if !kept_one {
        return None;
    }
    let discontinuity_sequence = if skipped_dropped {
        to.discontinuity_sequence
    } else {
        from.discontinuity_sequence
            .checked_add(discontinuities_dropped)?
    };
    out.insert_str(
        match discontinuity_at {
            Some(at) => at,
            None => out.find("#EXT-X-MEDIA-SEQUENCE:")?,
        },
        &format!("#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}\n"),
    );
    // The tail: parts of the segment being written, the preload hint, rendition reports.
    for line in block {
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

/// Writes a kept segment's lines; the first one gets the init segment a dropped one set, when
/// it names none itself (after its `EXT-X-DISCONTINUITY`, where the writer puts `EXT-X-MAP`).
fn write_first_or_next(out: &mut String, block: &[&str], kept_before: bool, map: Option<&str>) {
    let needs_map = !kept_before && !block.iter().any(|l| l.starts_with(MAP));
    let mut map = map.filter(|_| needs_map);
    for line in block {
        if let Some(m) = map
            && *line != DISCONTINUITY
        {
            out.push_str(m);
            out.push('\n');
            map = None;
        }
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=0.600
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:400
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init-a.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:00.000Z
#EXTINF:1.600,
400.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:01.600Z
#EXTINF:1.600,
401.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:03.200Z
#EXT-X-PART:DURATION=0.800,URI=\"402.0.c8.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.800,URI=\"402.1.c8.m4s\"
#EXTINF:1.600,
402.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:04.800Z
#EXT-X-PART:DURATION=0.800,URI=\"403.0.c8.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"403.1.c8.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=403,LAST-PART=0
";

    fn at(media_sequence: u64, discontinuity_sequence: u64) -> WindowStart {
        WindowStart {
            media_sequence,
            discontinuity_sequence,
        }
    }

    #[test]
    fn the_window_start_is_read_from_the_header() {
        assert_eq!(window_start(FULL), Some(at(400, 0)));
        assert_eq!(window_start("#EXTM3U\n#EXTINF:1,\na.ts\n"), None);
        assert_eq!(window_start("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n"), None);
    }

    #[test]
    fn dropping_segments_keeps_every_other_line_and_carries_the_init_segment() {
        let t = start_at(FULL, at(402, 0)).unwrap();
        assert_eq!(window_start(&t), Some(at(402, 0)));
        assert!(!t.contains("400.m4s") && !t.contains("401.m4s"), "{t}");
        // The init segment the dropped first segment set applies to the new first one.
        assert!(
            t.contains("#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init-a.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:03.200Z\n"),
            "{t}"
        );
        assert_eq!(t.matches("#EXT-X-MAP:").count(), 1);
        // The rest is byte-identical: the new window is a suffix of the old one.
        let from = FULL
            .find("#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:03.200Z")
            .unwrap();
        assert!(t.ends_with(&FULL[from..]), "{t}");
        // Where the playlist ends is unchanged.
        assert_eq!(
            crate::packaging::hls_reader::playlist_end(&t),
            crate::packaging::hls_reader::playlist_end(FULL)
        );
    }

    #[test]
    fn the_discontinuity_sequence_counts_the_discontinuities_dropped() {
        // A discontinuity on 401: dropping 400 and 401 drops it.
        let on_401 = FULL.replace(
            "#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:01.600Z\n",
            "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:01.600Z\n",
        );
        let t = start_at(&on_401, at(402, 9)).unwrap();
        assert!(
            t.contains("#EXT-X-MEDIA-SEQUENCE:402\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
            "{t}"
        );
        assert!(!t.contains("#EXT-X-DISCONTINUITY\n"), "{t}");
        // Dropping 400 only: the new first segment starts the discontinuity itself.
        let t = start_at(&on_401, at(401, 9)).unwrap();
        assert!(t.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{t}");
        assert!(
            t.contains(
                "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-a.mp4\"\n#EXT-X-PROGRAM-DATE-TIME"
            ),
            "{t}"
        );
        // Indented or CRLF lines read as the readers read them.
        let crlf = FULL
            .replace('\n', "\r\n")
            .replace("#EXT-X-MEDIA-SEQUENCE", "  #EXT-X-MEDIA-SEQUENCE");
        let t = start_at(&crlf, at(402, 0)).unwrap();
        assert_eq!(window_start(&t), Some(at(402, 0)));
        assert!(t.starts_with("#EXTM3U\n") && !t.contains('\r'), "{t}");
    }

    #[test]
    fn a_later_map_is_left_alone() {
        let two = FULL.replace(
            "#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:03.200Z\n",
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-b.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:03.200Z\n",
        );
        let t = start_at(&two, at(402, 7)).unwrap();
        // Not the caller's 7: the text shows every dropped segment, none with a discontinuity.
        assert!(t.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{t}");
        assert!(!t.contains("init-a.mp4"), "{t}");
        assert!(
            t.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-b.mp4\"\n"),
            "{t}"
        );
        // Dropping only the first: the second names no init segment, so it inherits init-a.
        let t = start_at(&two, at(401, 0)).unwrap();
        assert!(
            t.contains("#EXT-X-MAP:URI=\"init-a.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:01.600Z\n#EXTINF:1.600,\n401.m4s"),
            "{t}"
        );
    }

    #[test]
    fn a_delta_update_gives_up_skipped_segments_first() {
        let delta = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:400
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-SKIP:SKIPPED-SEGMENTS=2
#EXT-X-MAP:URI=\"init-a.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:00:03.200Z
#EXTINF:1.600,
402.m4s
";
        let t = start_at(delta, at(401, 4)).unwrap();
        assert!(t.contains("#EXT-X-MEDIA-SEQUENCE:401\n"), "{t}");
        // A skipped segment's tags are not in the text: the caller's discontinuity sequence.
        assert!(t.contains("#EXT-X-DISCONTINUITY-SEQUENCE:4\n"), "{t}");
        assert!(
            t.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n#EXT-X-MAP"),
            "{t}"
        );
        let t = start_at(delta, at(402, 0)).unwrap();
        assert!(!t.contains("EXT-X-SKIP"), "nothing skipped any more: {t}");
        assert!(
            t.contains("#EXT-X-MAP:URI=\"init-a.mp4\"\n#EXT-X-PROGRAM-DATE-TIME"),
            "{t}"
        );
        assert_eq!(
            start_at(delta, at(403, 0)),
            None,
            "no complete segment left"
        );
    }

    #[test]
    fn nothing_to_drop_or_nothing_left_is_none() {
        assert_eq!(start_at(FULL, at(400, 0)), None);
        assert_eq!(start_at(FULL, at(399, 0)), None);
        assert_eq!(start_at(FULL, at(403, 0)), None);
        assert_eq!(start_at("garbage", at(403, 0)), None);
    }
}
