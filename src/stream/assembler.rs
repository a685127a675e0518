//! Fragments → segments with exact durations. Pure; shared by live sessions and VOD jobs.
//!
//! A segment's duration is the distance between its start and the next segment's start in
//! the same rendition, not the muxer's close time: splitmuxsink reports the start of the last
//! frame (one frame early) and, with audio, can close a frame late (EXTINF 2.033 for 2 s
//! segments). So a closed fragment waits until the next one opens; only the last of a
//! rendition is finished from its close time, plus one frame when that time is the last
//! frame's start.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A complete segment file (still where the pipeline wrote it) and its exact time span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledSegment {
    pub rendition: String,
    pub location: PathBuf,
    /// Running time of the first frame, nanoseconds.
    pub start_ns: u64,
    /// Running time where the next segment starts (or the last frame ends), nanoseconds.
    pub end_ns: u64,
}

impl AssembledSegment {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// Milliseconds between the rounded endpoints, so that consecutive segments tile the
    /// timeline exactly (PDT + duration = the next segment's PDT).
    pub fn duration_ms(&self) -> u64 {
        nearest_ms(self.end_ns).saturating_sub(nearest_ms(self.start_ns))
    }
}

/// Nanoseconds to the nearest millisecond. Nearest, not truncated: two origins on wall-clock
/// timing ([`crate::transcode::wallclock`]) can compute one instant a nanosecond apart (sample
/// counts converted from different session starts), which truncation would turn into 1 ms.
pub fn nearest_ms(ns: u64) -> u64 {
    ns.saturating_add(500_000) / 1_000_000
}

/// A closed fragment waiting for its successor to open.
#[derive(Debug)]
struct Pending {
    location: PathBuf,
    start_ns: u64,
    closed_ns: u64,
    /// `closed_ns` is the exact end (CMAF), not the last frame's start (splitmuxsink).
    exact_end: bool,
}

/// Per rendition: where the open fragment started, and the closed one not yet finished.
#[derive(Debug, Default)]
pub struct SegmentAssembler {
    opened: BTreeMap<String, u64>,
    pending: BTreeMap<String, Pending>,
}

impl SegmentAssembler {
    /// A fragment of `rendition` opened at `running_time_ns`: the pending one ends here.
    pub fn opened(&mut self, rendition: &str, running_time_ns: u64) -> Option<AssembledSegment> {
        let done = self.pending.remove(rendition).map(|p| AssembledSegment {
            rendition: rendition.to_string(),
            location: p.location,
            start_ns: p.start_ns,
            end_ns: running_time_ns.max(p.start_ns),
        });
        self.opened.insert(rendition.to_string(), running_time_ns);
        done
    }

    /// A fragment of `rendition` is complete at `location`. Returns the previous closed
    /// fragment if no open came between (it ends at its own close time).
    pub fn closed(
        &mut self,
        rendition: &str,
        location: PathBuf,
        running_time_ns: u64,
        exact_end: bool,
    ) -> Option<AssembledSegment> {
        let start_ns = self.opened.get(rendition).copied().unwrap_or(0);
        let previous = self.pending.insert(
            rendition.to_string(),
            Pending {
                location,
                start_ns,
                closed_ns: running_time_ns,
                exact_end,
            },
        );
        previous.map(|p| AssembledSegment {
            rendition: rendition.to_string(),
            location: p.location,
            start_ns: p.start_ns,
            end_ns: p.closed_ns.max(p.start_ns),
        })
    }

    /// The session or job ended: finishes the last fragment of every rendition (in rendition
    /// order). A close time that is the last frame's start gets that frame's duration.
    pub fn finish(&mut self, frame_ns: u64) -> Vec<AssembledSegment> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(rendition, p)| {
                let tail = if p.exact_end { 0 } else { frame_ns };
                AssembledSegment {
                    rendition,
                    location: p.location,
                    start_ns: p.start_ns,
                    end_ns: p.closed_ns.max(p.start_ns) + tail,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_segment_lasts_until_the_next_one_opens() {
        let mut a = SegmentAssembler::default();
        assert_eq!(a.opened("720p", 0), None);
        // splitmuxsink closes late with audio: 2.033 s; the next fragment opens at 2.000 s.
        assert_eq!(a.closed("720p", "a".into(), 2_033_000_000, false), None);
        let first = a.opened("720p", 2 * S).expect("first segment");
        assert_eq!((first.start_ns, first.end_ns), (0, 2 * S));
        assert_eq!(first.duration_ms(), 2000);
        assert_eq!(
            a.closed("720p", "b".into(), 4 * S - 33_333_333, false),
            None
        );
        // End of stream: the close time is the last frame's start, plus one frame.
        let last = a.finish(33_333_333);
        assert_eq!(last.len(), 1);
        assert_eq!((last[0].start_ns, last[0].end_ns), (2 * S, 4 * S));
        assert!(a.finish(33_333_333).is_empty(), "finished once");
    }

    #[test]
    fn renditions_are_independent_and_exact_ends_get_no_tail() {
        let mut a = SegmentAssembler::default();
        a.opened("360p", 0);
        a.opened("audio", 0);
        a.closed("360p", "v".into(), 2 * S, true);
        a.closed("audio", "a".into(), 2 * S, true);
        let done = a.finish(33_333_333);
        let names: Vec<&str> = done.iter().map(|s| s.rendition.as_str()).collect();
        assert_eq!(names, ["360p", "audio"]);
        assert!(done.iter().all(|s| s.end_ns == 2 * S));
    }

    #[test]
    fn two_closes_without_an_open_finish_the_first_at_its_close() {
        let mut a = SegmentAssembler::default();
        a.opened("x", S);
        a.closed("x", "1".into(), 3 * S, true);
        let prev = a.closed("x", "2".into(), 5 * S, true).expect("previous");
        assert_eq!((prev.start_ns, prev.end_ns), (S, 3 * S));
        // Milliseconds between endpoints rounded to the nearest (as PDT is) tile the timeline.
        let s = AssembledSegment {
            rendition: "x".into(),
            location: "p".into(),
            start_ns: 1_999_999,
            end_ns: 4_000_001,
        };
        assert_eq!(s.duration_ms(), 2);
        assert_eq!((nearest_ms(1_499_999), nearest_ms(1_500_000)), (1, 2));
    }
}
