//! What a live session has produced, per rendition: segment and part counts, discontinuities,
//! measured bitrate and encoder speed. Pure bookkeeping, fed where segments and parts are
//! published ([`super::publish`]) with the instant they were listed; read by the API
//! (`/api/v1/streams`) and `/metrics` (`zoomate_rendition_*`).
//!
//! - **bitrate**: segment bytes × 8 / segment media duration, over the last
//!   [`WINDOW_SEGMENTS`] segments (what a player downloading this rendition needs now);
//! - **encoder speed**: media time produced / wall time taken, over the same window: the media
//!   duration of the segments listed after the window's first, divided by the wall time between
//!   the first's listing and the last's. 1.0 keeps up with a live source; below 1.0 the
//!   encoder falls behind (a live stream then drifts away from real time).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Segments the bitrate and speed are measured over (about 10–20 s of a 1–2 s ladder).
pub const WINDOW_SEGMENTS: usize = 10;

/// One listed segment, as measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    listed_at: Instant,
    duration_ms: u64,
    bytes: u64,
}

/// One rendition's counters and measuring window.
#[derive(Debug, Default, Clone)]
pub struct RenditionStats {
    segments: u64,
    parts: u64,
    discontinuities: u64,
    bytes: u64,
    media_ms: u64,
    window: VecDeque<Sample>,
}

impl RenditionStats {
    /// A segment of `duration_ms` and `bytes` was listed at `listed_at`.
    pub fn segment(
        &mut self,
        listed_at: Instant,
        duration_ms: u64,
        bytes: u64,
        discontinuity: bool,
    ) {
        self.segments += 1;
        self.discontinuities += u64::from(discontinuity);
        self.bytes += bytes;
        self.media_ms += duration_ms;
        if self.window.len() == WINDOW_SEGMENTS {
            self.window.pop_front();
        }
        self.window.push_back(Sample {
            listed_at,
            duration_ms,
            bytes,
        });
    }

    /// An LL-HLS part was listed.
    pub fn part(&mut self) {
        self.parts += 1;
    }

    /// Bits per second of media over the window; `None` before any segment.
    pub fn bitrate_bps(&self) -> Option<u64> {
        let media_ms: u64 = self.window.iter().map(|s| s.duration_ms).sum();
        let bytes: u64 = self.window.iter().map(|s| s.bytes).sum();
        (media_ms > 0).then(|| bytes.saturating_mul(8_000) / media_ms)
    }

    /// Media time produced per wall time over the window; `None` until two segments were
    /// listed apart in time.
    pub fn encode_speed(&self) -> Option<f64> {
        let (first, last) = (self.window.front()?, self.window.back()?);
        let wall = last.listed_at.saturating_duration_since(first.listed_at);
        if wall < Duration::from_millis(1) {
            return None;
        }
        let produced_ms: u64 = self.window.iter().skip(1).map(|s| s.duration_ms).sum();
        Some(produced_ms as f64 / wall.as_secs_f64() / 1000.0)
    }

    pub fn figures(&self) -> RenditionFigures {
        RenditionFigures {
            segments: self.segments,
            parts: self.parts,
            discontinuities: self.discontinuities,
            bytes: self.bytes,
            media_ms: self.media_ms,
            bitrate_bps: self.bitrate_bps(),
            encode_speed: self.encode_speed(),
        }
    }
}

/// A rendition's figures at one moment (what the API and `/metrics` show).
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionFigures {
    pub segments: u64,
    pub parts: u64,
    pub discontinuities: u64,
    pub bytes: u64,
    pub media_ms: u64,
    pub bitrate_bps: Option<u64>,
    pub encode_speed: Option<f64>,
}

/// Every rendition of one live session (bounded by the ladder: names come from the plan).
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    renditions: BTreeMap<String, RenditionStats>,
}

impl StreamStats {
    pub fn rendition(&mut self, name: &str) -> &mut RenditionStats {
        self.renditions.entry(name.to_string()).or_default()
    }

    /// Every rendition's figures, by name.
    pub fn figures(&self) -> Vec<(String, RenditionFigures)> {
        self.renditions
            .iter()
            .map(|(name, r)| (name.clone(), r.figures()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_and_speed_come_from_the_window() {
        let t0 = Instant::now();
        let mut r = RenditionStats::default();
        assert_eq!(r.bitrate_bps(), None);
        assert_eq!(r.encode_speed(), None);
        // 2 s segments of 500 000 bytes = 2 Mbit/s, listed every 2 s: speed 1.0.
        r.segment(t0, 2000, 500_000, false);
        assert_eq!(r.bitrate_bps(), Some(2_000_000));
        assert_eq!(r.encode_speed(), None, "one segment measures no speed");
        r.segment(t0 + Duration::from_secs(2), 2000, 500_000, true);
        r.part();
        assert_eq!(r.encode_speed(), Some(1.0));
        // A backlog encoded at twice real time.
        let mut fast = RenditionStats::default();
        for i in 0..5 {
            fast.segment(t0 + Duration::from_secs(i), 2000, 250_000, false);
        }
        assert_eq!(fast.encode_speed(), Some(2.0));
        assert_eq!(fast.bitrate_bps(), Some(1_000_000));
        let f = r.figures();
        assert_eq!((f.segments, f.parts, f.discontinuities), (2, 1, 1));
        assert_eq!((f.bytes, f.media_ms), (1_000_000, 4000));
    }

    #[test]
    fn the_window_forgets_old_segments() {
        let t0 = Instant::now();
        let mut r = RenditionStats::default();
        for i in 0..WINDOW_SEGMENTS as u64 {
            r.segment(t0 + Duration::from_secs(i), 1000, 1_000_000, false);
        }
        assert_eq!(r.bitrate_bps(), Some(8_000_000));
        // The encoder slows to half speed and the bitrate drops: after a full window only the
        // new figures count; the totals keep everything.
        for i in 0..WINDOW_SEGMENTS as u64 {
            let at = t0 + Duration::from_secs(WINDOW_SEGMENTS as u64 + 2 * i);
            r.segment(at, 1000, 125_000, false);
        }
        assert_eq!(r.bitrate_bps(), Some(1_000_000));
        assert_eq!(r.encode_speed(), Some(0.5));
        assert_eq!(r.figures().segments, 2 * WINDOW_SEGMENTS as u64);
    }
}
