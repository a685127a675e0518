//! LL-HLS at the edge: where each live playlist ends, as the bus tells it (`PartReady`,
//! `SegmentReady`), and the blocking requests held until it gets there.
//!
//! A blocking playlist reload (`_HLS_msn`/`_HLS_part`) or a request for the preload-hinted part
//! waits on its playlist's `watch` channel, not on the origin: no origin connection is held and
//! nothing polls. When the bus announces the part, every waiter wakes at once, and all of them
//! ask the cache for one key (the path plus the canonical directives), so they share one origin
//! fetch (moka's coalescing). The edge never believes the bus about content, only about timing:
//! the playlist a waiter gets is always the origin's.

use crate::packaging::PlaylistEnd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Playlists whose end is remembered (like the cache's announcement memory).
const MAX_TRACKED: u64 = 100_000;
/// A playlist not announced for this long is forgotten (its waiters time out normally).
const MEMORY: Duration = Duration::from_secs(600);

/// Where a playlist ends and when the bus said so.
#[derive(Debug, Clone, Copy)]
pub struct Announced {
    pub end: PlaylistEnd,
    pub at: Instant,
}

/// Every live playlist's end, by playlist URL path.
pub struct PlaylistEnds {
    ends: moka::sync::Cache<String, Arc<watch::Sender<Announced>>>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The playlist got there; the instant the bus said so.
    Ready(Instant),
    TimedOut,
}

impl Default for PlaylistEnds {
    fn default() -> Self {
        PlaylistEnds {
            ends: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(MEMORY)
                .build(),
        }
    }
}

impl PlaylistEnds {
    /// The bus says `playlist` now ends at `end` (an older end is ignored). A segment's
    /// announcement keeps the part count its parts' announcements gave.
    pub fn announce(&self, playlist: &str, mut end: PlaylistEnd) {
        let now = Instant::now();
        let tx = self.ends.get_with_by_ref(playlist, || {
            Arc::new(watch::channel(Announced { end, at: now }).0)
        });
        tx.send_if_modified(|cur| {
            if end.complete && cur.end.msn == end.msn {
                end.parts = end.parts.max(cur.end.parts);
            }
            if end.key() > cur.end.key() {
                *cur = Announced { end, at: now };
                true
            } else {
                false
            }
        });
    }

    /// Where the bus last said `playlist` ends; `None` when it said nothing (yet).
    pub fn known(&self, playlist: &str) -> Option<PlaylistEnd> {
        self.ends.get(playlist).map(|tx| tx.borrow().end)
    }

    /// Waits until `ready` holds for `playlist`'s end, at most `timeout`.
    pub async fn wait(
        &self,
        playlist: &str,
        timeout: Duration,
        ready: impl Fn(&PlaylistEnd) -> bool,
    ) -> Waited {
        let Some(tx) = self.ends.get(playlist) else {
            return Waited::TimedOut;
        };
        let mut rx = tx.subscribe();
        drop(tx); // forgetting the playlist ends the wait (as a timeout), not a leak
        match tokio::time::timeout(timeout, rx.wait_for(|a| ready(&a.end))).await {
            Ok(Ok(a)) => Waited::Ready(a.at),
            _ => Waited::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_the_announcement_and_ends_only_advance() {
        let ends = Arc::new(PlaylistEnds::default());
        let pl = "/live/demo/720p/index.m3u8";
        assert_eq!(ends.known(pl), None);
        ends.announce(pl, PlaylistEnd::part(5, 1));
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let ends = ends.clone();
                tokio::spawn(async move {
                    ends.wait(pl, Duration::from_secs(10), |e| e.satisfies(5, Some(2)))
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        ends.announce(pl, PlaylistEnd::part(5, 0)); // older: ignored
        assert_eq!(ends.known(pl), Some(PlaylistEnd::part(5, 1)));
        ends.announce(pl, PlaylistEnd::part(5, 2));
        for w in waiters {
            assert!(matches!(w.await.unwrap(), Waited::Ready(_)));
        }
        // The segment keeps its part count.
        ends.announce(pl, PlaylistEnd::segment(5, 0));
        assert_eq!(ends.known(pl), Some(PlaylistEnd::segment(5, 3)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_times_out() {
        let ends = PlaylistEnds::default();
        let pl = "/p";
        assert_eq!(
            ends.wait(pl, Duration::from_secs(1), |_| true).await,
            Waited::TimedOut,
            "unknown playlist"
        );
        ends.announce(pl, PlaylistEnd::part(1, 0));
        assert_eq!(
            ends.wait(pl, Duration::from_secs(6), |e| e.satisfies(2, None))
                .await,
            Waited::TimedOut
        );
    }
}
