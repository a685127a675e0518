//! A live media playlist's window never moves backwards at the edge.
//!
//! The edge is the one server a player sees, and RFC 8216bis 6.2.1 forbids a playlist's media
//! sequence number to decrease. Behind the edge, redundant origins (`timing = "wallclock"`)
//! list the same segments under the same names but not always the same window: an origin that
//! restarted lists only the segments it made since, and at a segment boundary one origin can be
//! a segment ahead of the other. A failover between them would hand a player a playlist that
//! starts earlier than the last one; hls.js then aligns it by its first segment, lands segments
//! off on its timeline and loops over parts it already has (measured: stalls of 1.6–4 s).
//!
//! So the edge remembers, per playlist, where the newest window it served starts, and a
//! playlist from an origin that starts earlier is served from there on
//! ([`crate::packaging::hls_window::start_at`]). A playlist that ends before that start is a
//! new numbering (a store wiped, a stream recreated), not a lagging origin: it replaces the
//! memory. Bounded like the other playlist memories: entries, and forgotten when idle.

use crate::packaging::hls_reader::playlist_end;
use crate::packaging::hls_window::{WindowStart, start_at, window_start};
use moka::ops::compute::Op;
use std::time::Duration;

/// Playlists whose window start is remembered.
const MAX_TRACKED: u64 = 100_000;
/// A playlist nobody fetched for this long is forgotten.
const MEMORY: Duration = Duration::from_secs(600);

/// What the edge may serve for a playlist an origin sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// As the origin sent it.
    AsIs,
    /// The origin's playlist started before the window already served: from there on.
    Trimmed { body: String, dropped: u64 },
}

pub struct SequenceFloors {
    starts: moka::sync::Cache<String, WindowStart>,
}

impl Default for SequenceFloors {
    fn default() -> Self {
        SequenceFloors {
            starts: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(MEMORY)
                .build(),
        }
    }
}

impl SequenceFloors {
    /// `text`, the live media playlist at `path` (its query, a blocking or delta request's
    /// directives, is not part of the key: they are one playlist) as an origin sent it.
    pub fn serve(&self, path: &str, text: &str) -> Served {
        let key = path.split('?').next().unwrap_or(path);
        let Some(start) = window_start(text) else {
            return Served::AsIs;
        };
        // One atomic step per playlist: concurrent fetches of it (plain, blocking, delta: one
        // playlist under several cache keys) must never lower the floor.
        let mut trim_to = None;
        self.starts
            .entry_by_ref(key)
            .and_compute_with(|entry| match entry.map(|e| *e.value()) {
                Some(floor) if start.media_sequence < floor.media_sequence => {
                    let ends_before_floor = playlist_end(text)
                        .is_none_or(|end| end.last_complete_segment() < Some(floor.media_sequence));
                    if ends_before_floor {
                        // Not behind: renumbered. It replaces the old floor.
                        Op::Put(start)
                    } else {
                        trim_to = Some(floor);
                        Op::Nop
                    }
                }
                Some(floor) if start.media_sequence == floor.media_sequence => Op::Nop,
                _ => Op::Put(start),
            });
        let Some(floor) = trim_to else {
            return Served::AsIs;
        };
        match start_at(text, floor) {
            Some(body) => Served::Trimmed {
                body,
                dropped: floor.media_sequence - start.media_sequence,
            },
            None => Served::AsIs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playlist(first: u64, last: u64) -> String {
        let mut t = format!(
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-MAP:URI=\"init.mp4\"\n"
        );
        for n in first..=last {
            t.push_str(&format!("#EXTINF:1.600,\n{n}.m4s\n"));
        }
        t
    }

    #[test]
    fn a_window_that_would_move_back_is_served_from_where_the_last_one_started() {
        let floors = SequenceFloors::default();
        let p = "/live/cam/180p/index.m3u8";
        // The restarted origin's short window first, then the other origin's longer one.
        assert_eq!(floors.serve(p, &playlist(403, 405)), Served::AsIs);
        match floors.serve(
            &format!("{p}?_HLS_msn=406&_HLS_part=0"),
            &playlist(400, 406),
        ) {
            Served::Trimmed { body, dropped } => {
                assert_eq!(dropped, 3);
                assert_eq!(window_start(&body).unwrap().media_sequence, 403);
                assert!(body.contains("#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.600,\n403.m4s\n"));
                assert!(body.ends_with("406.m4s\n"));
            }
            other => panic!("{other:?}"),
        }
        // Moving forward is as the origin sent it, and moves the floor.
        assert_eq!(floors.serve(p, &playlist(404, 407)), Served::AsIs);
        assert!(matches!(
            floors.serve(p, &playlist(403, 407)),
            Served::Trimmed { dropped: 1, .. }
        ));
        // Other playlists have their own floor.
        assert_eq!(
            floors.serve("/live/cam/audio/index.m3u8", &playlist(400, 407)),
            Served::AsIs
        );
    }

    #[test]
    fn a_playlist_that_ends_before_the_floor_is_a_new_numbering() {
        let floors = SequenceFloors::default();
        let p = "/live/cam/180p/index.m3u8";
        assert_eq!(floors.serve(p, &playlist(900, 905)), Served::AsIs);
        assert_eq!(floors.serve(p, &playlist(0, 3)), Served::AsIs);
        // ... and it is the floor from now on.
        assert_eq!(floors.serve(p, &playlist(1, 4)), Served::AsIs);
        assert!(matches!(
            floors.serve(p, &playlist(0, 4)),
            Served::Trimmed { dropped: 1, .. }
        ));
        // Unreadable text is passed on untouched.
        assert_eq!(floors.serve(p, "not a playlist"), Served::AsIs);
    }
}
