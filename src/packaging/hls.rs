//! HLS media playlists (RFC 8216 / draft-pantos-hls-rfc8216bis), live sliding window and VOD,
//! with Low-Latency HLS parts (rules in [`super::ll_hls`]).
//!
//! Our own writer rather than `m3u8-rs`: that crate has no LL-HLS tags (parts, preload hints,
//! rendition reports, skips) in the version we can use, and the reader below only needs to
//! read back what this writer wrote. Tests check the output with the third-party Python `m3u8`
//! parser.

use super::ll_hls::{LowLatency, Part, PlaylistEnd, seconds};
use std::collections::VecDeque;
use std::fmt::Write as _;

pub use super::datetime::{parse_rfc3339_millis, rfc3339_millis};
pub use super::hls_reader::{
    ResumeState, newest_sequence, parse_media_playlist_state, playlist_end,
};

/// One listed media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub sequence: u64,
    pub duration_ms: u64,
    /// URI relative to the playlist.
    pub uri: String,
    pub byte_size: u64,
    /// Wall-clock time of the first frame, milliseconds since the Unix epoch.
    pub program_date_time_ms: i64,
    /// Starts a new encoding session: EXT-X-DISCONTINUITY precedes it.
    pub discontinuity: bool,
    /// fMP4/CMAF: the init segment this segment needs (`EXT-X-MAP`), relative to the playlist.
    /// A new encoding session gets a new init segment, so this can change at a discontinuity.
    pub init_uri: Option<String>,
    /// LL-HLS: the segment's parts (empty when low latency is off).
    pub parts: Vec<Part>,
}

/// The segment being written, of which only parts exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenSegment {
    parts: Vec<Part>,
    program_date_time_ms: i64,
    discontinuity: bool,
    init_uri: Option<String>,
}

/// Another rendition's end, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// URI relative to this playlist, e.g. `../480p/index.m3u8`.
    pub uri: String,
    pub end: PlaylistEnd,
}

/// How one rendering of a playlist differs from the plain one.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// `_HLS_skip=YES`: a delta update (§6.2.5.1).
    pub skip: bool,
    pub rendition_reports: Vec<RenditionReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// Sliding window, no playlist type.
    Live,
    /// Grows only (`EXT-X-PLAYLIST-TYPE:EVENT`).
    Event,
    /// Complete and immutable (`EXT-X-PLAYLIST-TYPE:VOD`, ends with `EXT-X-ENDLIST`).
    Vod,
}

/// A media playlist's state; `render` produces the text.
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    kind: PlaylistKind,
    target_duration_s: u64,
    /// 0 = unbounded.
    window_segments: usize,
    segments: VecDeque<Segment>,
    next_sequence: u64,
    /// Sequence of the first listed segment when the window is empty.
    media_sequence: u64,
    discontinuity_sequence: u64,
    init_uri: Option<String>,
    ended: bool,
    low_latency: Option<LowLatency>,
    open: Option<OpenSegment>,
    /// The writing session's part tag (names the hinted part).
    part_tag: String,
}

impl MediaPlaylist {
    pub fn new(
        kind: PlaylistKind,
        target_duration_s: u64,
        window_segments: usize,
    ) -> MediaPlaylist {
        MediaPlaylist {
            kind,
            target_duration_s: target_duration_s.max(1),
            window_segments: if kind == PlaylistKind::Live {
                window_segments
            } else {
                0
            },
            segments: VecDeque::new(),
            next_sequence: 0,
            media_sequence: 0,
            discontinuity_sequence: 0,
            init_uri: None,
            ended: false,
            low_latency: None,
            open: None,
            part_tag: "0".into(),
        }
    }

    /// The tag of the session now writing parts ([`crate::layout::part_file`]).
    pub fn set_part_tag(&mut self, tag: &str) {
        self.part_tag = tag.to_string();
    }

    /// Lists parts (`EXT-X-PART`), with blocking reload, delta updates and preload hints.
    pub fn with_low_latency(mut self, ll: LowLatency) -> MediaPlaylist {
        self.low_latency = Some(ll);
        self
    }

    pub fn low_latency(&self) -> Option<LowLatency> {
        self.low_latency
    }

    /// Adds a part of the segment being written (the playlist's next sequence); the first part
    /// carries that segment's date, discontinuity and init segment. Returns where the playlist
    /// now ends.
    pub fn push_part(
        &mut self,
        part: Part,
        program_date_time_ms: i64,
        discontinuity: bool,
        init_uri: Option<String>,
    ) -> PlaylistEnd {
        let open = self.open.get_or_insert_with(|| OpenSegment {
            parts: Vec::new(),
            program_date_time_ms,
            discontinuity,
            init_uri,
        });
        open.parts.push(part);
        self.end_position()
    }

    /// Forgets the segment being written (it will not be listed); returns its part URIs.
    pub fn discard_open_parts(&mut self) -> Vec<String> {
        self.open
            .take()
            .map(|o| o.parts.into_iter().map(|p| p.uri).collect())
            .unwrap_or_default()
    }

    /// Parts of the segment being written (its sequence is [`Self::next_sequence`]).
    pub fn open_parts(&self) -> usize {
        self.open.as_ref().map(|o| o.parts.len()).unwrap_or(0)
    }

    /// Where the playlist ends now: the segment being written when it has parts, else the
    /// newest complete segment (`None`: nothing listed).
    pub fn end_position(&self) -> PlaylistEnd {
        match (&self.open, self.segments.back()) {
            (Some(o), _) if !o.parts.is_empty() => {
                PlaylistEnd::part(self.next_sequence, o.parts.len() as u32 - 1)
            }
            (_, Some(last)) => PlaylistEnd::segment(last.sequence, last.parts.len() as u32),
            _ => PlaylistEnd::default(),
        }
    }

    /// fMP4/CMAF: the init segment (`EXT-X-MAP`, version 6+) of segments that name none.
    pub fn with_init_segment(mut self, uri: String) -> MediaPlaylist {
        self.init_uri = Some(uri);
        self
    }

    /// Continue a timeline: the next pushed segment gets `next_sequence`. Never moves backwards
    /// (RFC 8216bis 6.2.2: the media sequence number never decreases).
    pub fn resume_from(&mut self, next_sequence: u64, discontinuity_sequence: u64) {
        self.next_sequence = self.next_sequence.max(next_sequence);
        if self.segments.is_empty() {
            self.media_sequence = self.next_sequence;
        }
        self.discontinuity_sequence = self.discontinuity_sequence.max(discontinuity_sequence);
    }

    /// Appends a segment (its sequence is the playlist's next one) and returns what slid out.
    /// The parts written so far become the segment's parts.
    pub fn push(&mut self, mut seg: Segment) -> Vec<Segment> {
        if let Some(open) = self.open.take()
            && seg.parts.is_empty()
        {
            seg.parts = open.parts;
        }
        seg.sequence = self.next_sequence;
        self.next_sequence += 1;
        self.segments.push_back(seg);
        let mut evicted = Vec::new();
        while self.window_segments > 0 && self.segments.len() > self.window_segments {
            if let Some(old) = self.segments.pop_front() {
                // 8216bis 4.4.3.3: the discontinuity sequence counts discontinuities that left.
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                evicted.push(old);
            }
        }
        self.media_sequence = self
            .segments
            .front()
            .map(|s| s.sequence)
            .unwrap_or(self.next_sequence);
        evicted
    }

    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }
    pub fn media_sequence(&self) -> u64 {
        self.media_sequence
    }
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }
    pub fn end(&mut self) {
        self.ended = true;
    }
    pub fn is_ended(&self) -> bool {
        self.ended
    }
    pub fn target_duration_s(&self) -> u64 {
        self.target_duration_s
    }

    /// The playlist text.
    ///
    /// EXT-X-TARGETDURATION is fixed at construction (8216bis 4.4.3.1: it must not change while
    /// live); callers choose `ceil(segment duration)` so every rounded EXTINF fits.
    /// EXT-X-PROGRAM-DATE-TIME is written on every segment: players and edges can map any
    /// segment to wall-clock time without walking back to the first one.
    pub fn render(&self) -> String {
        self.render_with(&RenderOptions::default())
    }

    /// The playlist text, as a delta update and/or with rendition reports (low latency).
    ///
    /// Low latency: parts are listed for segments ending within three target durations of the
    /// playlist's end (§4.4.4.9: older ones SHOULD be dropped), plus every part of the segment
    /// being written, then a preload hint for the next part.
    pub fn render_with(&self, opts: &RenderOptions) -> String {
        let ll = self.low_latency;
        let mut out = String::with_capacity(
            256 + self.segments.len() * 96 * if ll.is_some() { 4 } else { 1 },
        );
        let fmp4 = self.init_uri.is_some() || self.segments.iter().any(|s| s.init_uri.is_some());
        let skip_until_ms = LowLatency::can_skip_until_ms(self.target_duration_s);
        // Segments a delta update leaves out: those wholly older than CAN-SKIP-UNTIL before the end.
        let skipped = match (ll, opts.skip) {
            (Some(_), true) => {
                let total: u64 = self.segments.iter().map(|s| s.duration_ms).sum();
                let mut from_start = 0u64;
                self.segments
                    .iter()
                    .take_while(|s| {
                        from_start += s.duration_ms;
                        total - from_start >= skip_until_ms
                    })
                    .count()
            }
            _ => 0,
        };
        let version = if opts.skip && ll.is_some() {
            9
        } else if fmp4 {
            6
        } else {
            3
        };
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:{version}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration_s);
        if let Some(ll) = ll {
            let live = !self.ended && self.kind != PlaylistKind::Vod;
            if live {
                let _ = writeln!(
                    out,
                    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={}",
                    seconds(skip_until_ms),
                    seconds(ll.part_hold_back_ms())
                );
            }
            let _ = writeln!(
                out,
                "#EXT-X-PART-INF:PART-TARGET={}",
                seconds(ll.part_target_ms)
            );
        }
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence
        );
        match self.kind {
            PlaylistKind::Vod => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
            PlaylistKind::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
            PlaylistKind::Live => {}
        }
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        // Parts are listed for segments that end within 3 target durations of the end.
        let parts_from_ms = self.target_duration_s * 3 * 1000;
        let mut after_ms: u64 = self.segments.iter().map(|s| s.duration_ms).sum();
        // EXT-X-MAP applies to every following segment until the next one (8216bis 4.4.4.5):
        // written before the first segment, and again whenever the init segment changes or a
        // discontinuity starts (players reset their parser there).
        let mut current_map: Option<&str> = None;
        for (i, s) in self.segments.iter().enumerate() {
            after_ms -= s.duration_ms;
            if i < skipped {
                continue;
            }
            self.write_segment_head(
                &mut out,
                &mut current_map,
                s.discontinuity,
                s.init_uri.as_deref(),
                s.program_date_time_ms,
            );
            if ll.is_some() && after_ms < parts_from_ms {
                write_parts(&mut out, &s.parts);
            }
            let _ = writeln!(
                out,
                "#EXTINF:{}.{:03},",
                s.duration_ms / 1000,
                s.duration_ms % 1000
            );
            let _ = writeln!(out, "{}", s.uri);
        }
        if self.ended || self.kind == PlaylistKind::Vod {
            out.push_str("#EXT-X-ENDLIST\n");
            return out;
        }
        if ll.is_some() {
            let next_part = match &self.open {
                Some(o) if !o.parts.is_empty() => {
                    self.write_segment_head(
                        &mut out,
                        &mut current_map,
                        o.discontinuity,
                        o.init_uri.as_deref(),
                        o.program_date_time_ms,
                    );
                    write_parts(&mut out, &o.parts);
                    o.parts.len() as u32
                }
                _ => 0,
            };
            let open_ms: u64 = self
                .open
                .iter()
                .flat_map(|o| o.parts.iter())
                .map(|p| p.duration_ms)
                .sum();
            // The hint names the part that will come next: the next segment's first once this
            // one's parts fill it (cmafmux closes a fragment only when the next one starts).
            let (hint_msn, hint_part) = match ll {
                Some(ll) if next_part > 0 && ll.parts_fill_segment(open_ms) => {
                    (self.next_sequence + 1, 0)
                }
                _ => (self.next_sequence, next_part),
            };
            if !self.segments.is_empty() || next_part > 0 {
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                    crate::layout::part_file(hint_msn, hint_part, &self.part_tag)
                );
            }
            for r in &opts.rendition_reports {
                let _ = write!(
                    out,
                    "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                    r.uri, r.end.msn
                );
                if r.end.parts > 0 {
                    let _ = write!(out, ",LAST-PART={}", r.end.parts - 1);
                }
                out.push('\n');
            }
        }
        out
    }

    fn write_segment_head<'a>(
        &'a self,
        out: &mut String,
        current_map: &mut Option<&'a str>,
        discontinuity: bool,
        init_uri: Option<&'a str>,
        program_date_time_ms: i64,
    ) {
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(init) = init_uri.or(self.init_uri.as_deref()) {
            if discontinuity || *current_map != Some(init) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{init}\"");
                *current_map = Some(init);
            }
        }
        if program_date_time_ms > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                rfc3339_millis(program_date_time_ms)
            );
        }
    }
}

fn write_parts(out: &mut String, parts: &[Part]) {
    for p in parts {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{}\"",
            seconds(p.duration_ms),
            p.uri
        );
        if p.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(ms: u64, uri: &str, disc: bool) -> Segment {
        Segment {
            sequence: 0,
            duration_ms: ms,
            uri: uri.into(),
            byte_size: 1000,
            program_date_time_ms: 1_700_000_000_000,
            discontinuity: disc,
            init_uri: None,
            parts: Vec::new(),
        }
    }

    #[test]
    fn map_follows_each_sessions_init_segment_and_parses_back() {
        let mut p = MediaPlaylist::new(PlaylistKind::Live, 2, 6);
        for (i, (init, disc)) in [
            ("init-0.mp4", false),
            ("init-0.mp4", false),
            ("init-2.mp4", true),
            ("init-2.mp4", false),
        ]
        .iter()
        .enumerate()
        {
            p.push(Segment {
                init_uri: Some(init.to_string()),
                ..seg(2000, &format!("{i}.m4s"), *disc)
            });
        }
        let t = p.render();
        assert!(t.contains("#EXT-X-VERSION:6"), "{t}");
        assert_eq!(t.matches("#EXT-X-MAP:").count(), 2, "{t}");
        let first_map = t.find("#EXT-X-MAP:URI=\"init-0.mp4\"").unwrap();
        assert!(first_map < t.find("0.m4s").unwrap());
        assert!(
            t.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-2.mp4\"\n"),
            "{t}"
        );
        let st = parse_media_playlist_state(&t).unwrap();
        let inits: Vec<_> = st
            .segments
            .iter()
            .map(|s| s.init_uri.clone().unwrap())
            .collect();
        assert_eq!(
            inits,
            ["init-0.mp4", "init-0.mp4", "init-2.mp4", "init-2.mp4"]
        );
    }

    #[test]
    fn live_window_slides_and_media_sequence_follows() {
        let mut p = MediaPlaylist::new(PlaylistKind::Live, 2, 3);
        for i in 0..5 {
            let evicted = p.push(seg(2000, &format!("{i}.ts"), false));
            assert_eq!(evicted.len(), if i >= 3 { 1 } else { 0 });
        }
        assert_eq!(p.media_sequence(), 2);
        assert_eq!(p.next_sequence(), 5);
        let text = p.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE"));
        assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        assert!(!text.contains("ENDLIST") && !text.contains("PLAYLIST-TYPE"));
        assert_eq!(text.matches("#EXTINF:2.000,").count(), 3);
        assert!(
            text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z"),
            "{text}"
        );
    }

    #[test]
    fn discontinuity_sequence_counts_discontinuities_that_left() {
        let mut p = MediaPlaylist::new(PlaylistKind::Live, 2, 2);
        p.push(seg(2000, "0.ts", false));
        p.push(seg(2000, "1.ts", true));
        assert!(
            p.render()
                .contains("#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME")
        );
        p.push(seg(2000, "2.ts", false));
        assert_eq!(p.discontinuity_sequence(), 0);
        p.push(seg(2000, "3.ts", false));
        assert_eq!(p.discontinuity_sequence(), 1);
        assert!(!p.render().contains("#EXT-X-DISCONTINUITY\n"));
        assert!(p.render().contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"));
    }

    #[test]
    fn resume_never_moves_backwards() {
        let mut p = MediaPlaylist::new(PlaylistKind::Live, 2, 3);
        p.resume_from(100, 4);
        p.push(seg(2000, "100.ts", true));
        p.resume_from(50, 1);
        assert_eq!(p.next_sequence(), 101);
        assert_eq!(p.media_sequence(), 100);
        assert_eq!(p.discontinuity_sequence(), 4);
    }

    #[test]
    fn vod_with_init_segment() {
        let mut p =
            MediaPlaylist::new(PlaylistKind::Vod, 2, 3).with_init_segment("init.mp4".into());
        for i in 0..5 {
            p.push(seg(1999, &format!("{i}.m4s"), false));
        }
        let t = p.render();
        assert!(t.contains("#EXT-X-VERSION:6") && t.contains("#EXT-X-MAP:URI=\"init.mp4\""));
        assert!(t.contains("#EXT-X-PLAYLIST-TYPE:VOD") && t.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(
            t.matches("#EXTINF:1.999,").count(),
            5,
            "VOD keeps every segment"
        );
    }

    #[test]
    fn rendered_state_parses_back() {
        let mut p = MediaPlaylist::new(PlaylistKind::Live, 2, 4);
        p.resume_from(10, 2);
        p.push(seg(2000, "10.ts", true));
        p.push(seg(1500, "11.ts", false));
        let st = parse_media_playlist_state(&p.render()).unwrap();
        assert_eq!(st.next_sequence, 12);
        assert_eq!(st.discontinuity_sequence, 2);
        assert_eq!(st.segments.len(), 2);
        assert_eq!(
            (st.segments[1].sequence, st.segments[1].duration_ms),
            (11, 1500)
        );
        assert!(st.segments[0].discontinuity);
        assert_eq!(st.segments[0].program_date_time_ms, 1_700_000_000_000);
    }

    fn part(uri: &str, independent: bool) -> Part {
        Part {
            duration_ms: 200,
            uri: uri.into(),
            independent,
            byte_size: 100,
        }
    }

    fn ll_playlist(window: usize) -> MediaPlaylist {
        MediaPlaylist::new(PlaylistKind::Live, 2, window).with_low_latency(LowLatency {
            part_target_ms: 200,
            segment_duration_ms: 2000,
        })
    }

    #[test]
    fn low_latency_lists_parts_hints_and_reports() {
        let mut p = ll_playlist(20);
        for msn in 0..10u64 {
            for i in 0..10u32 {
                let end = p.push_part(
                    part(&crate::layout::part_file(msn, i, "0"), i == 0),
                    1_700_000_000_000 + msn as i64 * 2000,
                    false,
                    Some("init-0.mp4".into()),
                );
                assert_eq!(end, PlaylistEnd::part(msn, i));
            }
            p.push(Segment {
                init_uri: Some("init-0.mp4".into()),
                ..seg(2000, &format!("{msn}.m4s"), false)
            });
            assert_eq!(p.end_position(), PlaylistEnd::segment(msn, 10));
        }
        // Three parts of segment 10 so far.
        for i in 0..3 {
            p.push_part(
                part(&format!("10.{i}.0.m4s"), i == 0),
                1,
                false,
                Some("init-0.mp4".into()),
            );
        }
        let t = p.render_with(&RenderOptions {
            skip: false,
            rendition_reports: vec![RenditionReport {
                uri: "../480p/index.m3u8".into(),
                end: PlaylistEnd::part(10, 1),
            }],
        });
        assert!(t.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=0.600\n"), "{t}");
        assert!(t.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"));
        // Parts only for segments ending within 3 target durations (6 s) of the end: 7, 8, 9.
        assert!(!t.contains("URI=\"6.9.0.m4s\""), "{t}");
        assert!(t.contains("#EXT-X-PART:DURATION=0.200,URI=\"7.0.0.m4s\",INDEPENDENT=YES\n"));
        assert!(
            t.contains("#EXT-X-PART:DURATION=0.200,URI=\"9.9.0.m4s\"\n#EXTINF:2.000,\n9.m4s\n")
        );
        assert!(
            t.contains("URI=\"10.2.0.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"10.3.0.m4s\"\n"),
            "{t}"
        );
        assert!(t.ends_with(
            "#EXT-X-RENDITION-REPORT:URI=\"../480p/index.m3u8\",LAST-MSN=10,LAST-PART=1\n"
        ));
        // The delta update skips what is older than 12 s before the end: segments 0..=3.
        let d = p.render_with(&RenderOptions {
            skip: true,
            ..Default::default()
        });
        assert!(
            d.contains("#EXT-X-VERSION:9\n") && d.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n"),
            "{d}"
        );
        assert!(
            !d.contains("\n3.m4s\n")
                && d.contains("#EXT-X-MAP:URI=\"init-0.mp4\"\n#EXT-X-PROGRAM-DATE-TIME")
        );
        assert!(d.contains("\n4.m4s\n"));
        // A full segment's worth of parts: the hint is the next segment's first part.
        for i in 3..10 {
            p.push_part(part(&format!("10.{i}.0.m4s"), false), 1, false, None);
        }
        assert!(
            p.render()
                .contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"11.0.0.m4s\"\n")
        );
        assert_eq!(playlist_end(&p.render()), Some(PlaylistEnd::part(10, 9)));
        assert_eq!(
            playlist_end(&p.render_with(&RenderOptions {
                skip: true,
                ..Default::default()
            })),
            Some(PlaylistEnd::part(10, 9))
        );
        // Restart recovery reads an LL playlist like any other, parts included.
        let st = parse_media_playlist_state(&p.render()).unwrap();
        assert_eq!(st.next_sequence, 10);
        let last = st.segments.last().unwrap();
        assert_eq!(last.parts.len(), 10);
        assert_eq!(
            (last.parts[0].uri.as_str(), last.parts[0].duration_ms),
            ("9.0.0.m4s", 200)
        );
        assert!(last.parts[0].independent && !last.parts[1].independent);
        // Ended: no hint, no server control.
        p.end();
        let e = p.render();
        assert!(
            e.ends_with("#EXT-X-ENDLIST\n")
                && !e.contains("PRELOAD-HINT")
                && !e.contains("SERVER-CONTROL"),
            "{e}"
        );
        // A dropped half segment takes its parts along.
        assert_eq!(p.discard_open_parts().len(), 10);
        assert_eq!(p.end_position(), PlaylistEnd::segment(9, 10));
        assert_eq!(playlist_end(&p.render()), Some(PlaylistEnd::segment(9, 10)));
        assert_eq!(playlist_end("garbage"), None);
    }

    #[test]
    fn garbage_does_not_parse_or_panic() {
        for g in [
            "",
            "#EXTM3U",
            "hello",
            "#EXTM3U\n#EXTINF:abc,\nx.ts",
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:-1\n",
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1.0,\na\n#EXTINF:1.0,\nb",
            "#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2020-13-45T99Z\n",
        ] {
            assert!(parse_media_playlist_state(g).is_none(), "{g:?}");
        }
    }

    #[test]
    fn dates_round_trip() {
        for ms in [0i64, 951_782_400_000, 1_764_019_800_123, 4_102_444_800_999] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(ms)), Some(ms));
        }
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn newest_sequence_of_a_playlist() {
        let p = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:10\n#EXTINF:2.000,\n10.ts\n#EXTINF:2.000,\n11.ts\n";
        assert_eq!(newest_sequence(p), Some(11));
        assert_eq!(newest_sequence("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n"), None);
        assert_eq!(newest_sequence("garbage"), None);
    }
}
