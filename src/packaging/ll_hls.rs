//! Low-Latency HLS rules (RFC 8216bis §4.4.3, §6.2.5–6.2.6, Appendix B): parts, where a
//! playlist ends, and the blocking-reload directives a client sends. Pure: the origin and the
//! edge both decide with these functions, the origin against its own playlists, the edge
//! against what the bus announced.

/// One partial segment (`EXT-X-PART`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub duration_ms: u64,
    /// URI relative to the playlist.
    pub uri: String,
    /// Starts with an IDR frame (or is audio): `INDEPENDENT=YES`.
    pub independent: bool,
    pub byte_size: u64,
}

/// A stream's fixed low-latency parameters (fixed per stream: Apple players break when
/// PART-TARGET changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowLatency {
    /// `EXT-X-PART-INF:PART-TARGET`: no part lasts longer.
    pub part_target_ms: u64,
    /// The segment duration the muxer cuts at: once a segment's parts add up to it (within
    /// half a part), the next part is the next segment's first.
    pub segment_duration_ms: u64,
}

impl LowLatency {
    /// `PART-HOLD-BACK`: 3 × PART-TARGET, the spec's SHOULD (its MUST is 2×).
    pub fn part_hold_back_ms(&self) -> u64 {
        self.part_target_ms * 3
    }

    /// Whether a segment whose parts add up to `parts_ms` is complete in parts (its next part
    /// will be the next segment's first).
    pub fn parts_fill_segment(&self, parts_ms: u64) -> bool {
        // Video parts tile the segment exactly; audio parts are whole AAC frames (21.3 ms), so
        // allow an eighth of a part, less than a frame, not half a part (an audio segment's
        // last short part would be skipped by the hint).
        parts_ms + self.part_target_ms / 8 >= self.segment_duration_ms
    }

    /// `CAN-SKIP-UNTIL`: six target durations, the least the spec allows.
    pub fn can_skip_until_ms(target_duration_s: u64) -> u64 {
        target_duration_s * 6 * 1000
    }
}

/// Where a media playlist ends: the newest segment with anything listed, how many of its parts
/// are listed, and whether the segment itself (EXTINF) is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaylistEnd {
    pub msn: u64,
    pub parts: u32,
    pub complete: bool,
}

impl PlaylistEnd {
    /// A complete segment.
    pub fn segment(msn: u64, parts: u32) -> PlaylistEnd {
        PlaylistEnd {
            msn,
            parts,
            complete: true,
        }
    }

    /// Part `index` of segment `msn`, which is still being written.
    pub fn part(msn: u64, index: u32) -> PlaylistEnd {
        PlaylistEnd {
            msn,
            parts: index.saturating_add(1),
            complete: false,
        }
    }

    /// The newest segment listed whole; `None` when the playlist is still on its first.
    pub fn last_complete_segment(&self) -> Option<u64> {
        if self.complete {
            Some(self.msn)
        } else {
            self.msn.checked_sub(1)
        }
    }

    /// Total order: a complete segment is after any of its parts.
    pub fn key(&self) -> (u64, u32) {
        (self.msn, if self.complete { u32::MAX } else { self.parts })
    }

    /// Whether a playlist ending here answers `_HLS_msn=msn[&_HLS_part=part]` (§6.2.5.2).
    /// Without a part, segment `msn` must be complete. A part index beyond the last part of a
    /// complete segment means part 0 of the next one.
    pub fn satisfies(&self, msn: u64, part: Option<u32>) -> bool {
        match part {
            None => self.msn > msn || (self.msn == msn && self.complete),
            Some(p) => self.msn > msn || (self.msn == msn && p < self.parts),
        }
    }
}

/// Delivery directives of a media playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u32>,
    /// `_HLS_skip=YES` (or `v2`): a delta update.
    pub skip: bool,
}

/// The Advance Part Limit (RFC 8216bis 6.2.5.2): a part this many beyond the last one is
/// refused. Three divided by the part target when that is under a second (15 for 200 ms
/// parts), three otherwise. A fixed 3 refused a player that had seen a few parts more on
/// another origin, as after a failover between redundant origins a few parts apart.
pub fn advance_part_limit(part_target_ms: u64) -> u32 {
    match part_target_ms {
        0 | 1000.. => 3,
        ms => 3000u64.div_ceil(ms) as u32,
    }
}

/// The most lenient Advance Part Limit (the shortest part zoomate allows, 100 ms): what the
/// edge applies, which does not know the origin's part target.
pub const MAX_ADVANCE_PART_LIMIT: u32 = 30;

/// Highest part index anything believes (a 60 s segment of 100 ms parts has 600).
pub const MAX_PARTS_PER_SEGMENT: u32 = 1024;

impl Directives {
    /// From a request's query string: only the `_HLS_` directives; every other parameter (cache
    /// busters, tokens) is ignored. A malformed directive or `_HLS_part` without `_HLS_msn` is
    /// an error (answer 400).
    pub fn parse(query: Option<&str>) -> Result<Directives, &'static str> {
        let mut d = Directives::default();
        for pair in query.unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "_HLS_msn" => d.msn = Some(v.parse().map_err(|_| "_HLS_msn is not a number")?),
                "_HLS_part" => d.part = Some(v.parse().map_err(|_| "_HLS_part is not a number")?),
                "_HLS_skip" => match v {
                    "YES" | "v2" => d.skip = true,
                    _ => return Err("_HLS_skip must be YES or v2"),
                },
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err("_HLS_part without _HLS_msn");
        }
        if d.part.is_some_and(|p| p >= MAX_PARTS_PER_SEGMENT) {
            return Err("_HLS_part beyond any segment's parts");
        }
        Ok(d)
    }

    /// Whether the request blocks until a part or segment exists.
    pub fn blocks(&self) -> bool {
        self.msn.is_some()
    }

    /// The directives in a fixed order (`?_HLS_msn=..&_HLS_part=..&_HLS_skip=YES`), or `""`:
    /// the part of a query string a cache key keeps.
    pub fn canonical_query(&self) -> String {
        let mut out = String::new();
        let mut add = |s: String| {
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(&s);
        };
        if let Some(m) = self.msn {
            add(format!("_HLS_msn={m}"));
        }
        if let Some(p) = self.part {
            add(format!("_HLS_part={p}"));
        }
        if self.skip {
            add("_HLS_skip=YES".into());
        }
        out
    }

    /// What to do with a blocking request now that the playlist ends at `end`.
    pub fn verdict(&self, end: &PlaylistEnd, advance_part_limit: u32) -> Verdict {
        let Some(msn) = self.msn else {
            return Verdict::Ready;
        };
        if msn > end.msn.saturating_add(2) {
            return Verdict::Refuse("_HLS_msn is more than two segments ahead");
        }
        if let Some(p) = self.part
            && msn == end.msn
            && !end.complete
            && p >= end.parts.saturating_add(advance_part_limit)
        {
            return Verdict::Refuse("_HLS_part is beyond the advance part limit");
        }
        if end.satisfies(msn, self.part) {
            Verdict::Ready
        } else {
            Verdict::Hold
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer with the current playlist.
    Ready,
    /// Wait until the playlist satisfies the directives (or the hold times out: 503).
    Hold,
    /// 400 at once.
    Refuse(&'static str),
}

/// Milliseconds as an HLS decimal-seconds attribute (`0.200`).
pub fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(q: &str) -> Directives {
        Directives::parse(Some(q)).unwrap()
    }

    #[test]
    fn directives_parse_and_refuse() {
        assert_eq!(
            d("_HLS_msn=12&_HLS_part=3&x=1"),
            Directives {
                msn: Some(12),
                part: Some(3),
                skip: false
            }
        );
        assert!(d("_HLS_skip=YES").skip && d("_HLS_skip=v2").skip);
        assert_eq!(Directives::parse(None), Ok(Directives::default()));
        for bad in [
            "_HLS_part=1",
            "_HLS_msn=-1",
            "_HLS_msn=x",
            "_HLS_msn=1&_HLS_part=",
            "_HLS_skip=no",
            "_HLS_msn=1&_HLS_part=1024",
        ] {
            assert!(Directives::parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            d("b=2&_HLS_skip=YES&_HLS_part=0&_HLS_msn=5").canonical_query(),
            "?_HLS_msn=5&_HLS_part=0&_HLS_skip=YES"
        );
        assert_eq!(d("cb=123").canonical_query(), "");
    }

    #[test]
    fn the_advance_part_limit_is_three_seconds_of_parts_under_a_second() {
        assert_eq!(advance_part_limit(200), 15);
        assert_eq!(advance_part_limit(500), 6);
        assert_eq!(advance_part_limit(350), 9);
        assert_eq!(advance_part_limit(100), MAX_ADVANCE_PART_LIMIT);
        assert_eq!(advance_part_limit(1000), 3);
        assert_eq!(advance_part_limit(0), 3);
        // Audio parts of a 1.6 s segment are 9 (0..=8): a player that saw part 8 on one origin
        // asks another, a few parts behind, for part 9; that is held, not refused.
        let behind = PlaylistEnd::part(633, 5);
        assert_eq!(
            d("_HLS_msn=633&_HLS_part=9").verdict(&behind, advance_part_limit(200)),
            Verdict::Hold
        );
        assert!(matches!(
            d("_HLS_msn=633&_HLS_part=9").verdict(&behind, 3),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn blocking_rules() {
        // Segment 10 has parts 0..=2 listed and is not complete yet.
        let end = PlaylistEnd::part(10, 2);
        let v = |q: &str| d(q).verdict(&end, 3);
        assert_eq!(v("_HLS_msn=9"), Verdict::Ready);
        assert_eq!(v("_HLS_msn=10&_HLS_part=2"), Verdict::Ready);
        assert_eq!(v("_HLS_msn=10&_HLS_part=3"), Verdict::Hold);
        assert_eq!(
            v("_HLS_msn=10"),
            Verdict::Hold,
            "segment 10 is not complete"
        );
        assert_eq!(v("_HLS_msn=12"), Verdict::Hold);
        assert!(matches!(v("_HLS_msn=13"), Verdict::Refuse(_)));
        assert_eq!(v("_HLS_msn=10&_HLS_part=5"), Verdict::Hold);
        assert!(matches!(v("_HLS_msn=10&_HLS_part=6"), Verdict::Refuse(_)));
        assert_eq!(v(""), Verdict::Ready);
        // A complete segment: a part index beyond its last means part 0 of the next one.
        let done = PlaylistEnd::segment(10, 10);
        assert!(done.satisfies(10, Some(9)) && done.satisfies(10, None));
        assert!(!done.satisfies(10, Some(10)));
        assert!(PlaylistEnd::part(11, 0).satisfies(10, Some(10)));
        assert!(done.key() > PlaylistEnd::part(10, 9).key());
        assert!(PlaylistEnd::part(11, 0).key() > done.key());
    }

    #[test]
    fn seconds_are_decimal() {
        assert_eq!(seconds(200), "0.200");
        assert_eq!(seconds(12_000), "12.000");
    }
}
