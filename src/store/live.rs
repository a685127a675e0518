//! The store's in-memory side: the newest text of every live media playlist, and a way to wait
//! for the next one. Sessions publish a [`PlaylistSnapshot`] after every part and segment (the
//! files it lists are durable by then); the origin answers playlist requests from here and holds
//! LL-HLS blocking requests on the snapshot's `watch` channel, so a waiting request wakes the
//! instant its part exists, with no polling and no disk read per request.
//!
//! Bounded: one entry per (stream, rendition) a session has published, and sessions are
//! bounded by the registry.

use crate::packaging::PlaylistEnd;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use tokio::sync::watch;

/// One version of a live media playlist.
#[derive(Debug, Clone)]
pub struct PlaylistSnapshot {
    /// Where it ends (newest part or segment).
    pub end: PlaylistEnd,
    /// The whole playlist.
    pub full: Bytes,
    /// LL-HLS: the delta update (`_HLS_skip=YES`); `None` when low latency is off.
    pub delta: Option<Bytes>,
    /// EXT-X-TARGETDURATION, milliseconds: blocking requests wait at most 3 × this.
    pub target_duration_ms: u64,
    /// When this version was made (Last-Modified).
    pub modified: SystemTime,
}

type Key = (String, String);

/// The newest playlist of every live rendition.
#[derive(Default)]
pub struct LivePlaylists {
    entries: RwLock<HashMap<Key, watch::Sender<Arc<PlaylistSnapshot>>>>,
}

impl LivePlaylists {
    /// Replaces the playlist of `stream`/`rendition` and wakes everyone waiting on it.
    pub fn publish(&self, stream: &str, rendition: &str, snapshot: PlaylistSnapshot) {
        let snapshot = Arc::new(snapshot);
        {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = entries.get(&(stream.to_string(), rendition.to_string())) {
                tx.send_replace(snapshot);
                return;
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries
            .entry((stream.to_string(), rendition.to_string()))
            .and_modify(|tx| {
                tx.send_replace(snapshot.clone());
            })
            .or_insert_with(|| watch::channel(snapshot.clone()).0);
    }

    /// Forgets every rendition of `stream`: a wall-clock session that starts afresh lists
    /// nothing until it holds enough segments, and the last session's playlist must not be
    /// served meanwhile (an edge asks another origin instead). Requests held on the old
    /// playlists end at once (their channel closes: 503).
    pub fn withdraw(&self, stream: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(s, _), _| s != stream);
    }

    /// The newest playlist and a receiver that sees every later one; `None` when no session
    /// published this rendition.
    pub fn watch(
        &self,
        stream: &str,
        rendition: &str,
    ) -> Option<watch::Receiver<Arc<PlaylistSnapshot>>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&(stream.to_string(), rendition.to_string()))
            .map(|tx| tx.subscribe())
    }

    /// Where every published rendition of `stream` ends, by rendition name.
    pub fn ends_of(&self, stream: &str) -> Vec<(String, PlaylistEnd)> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, PlaylistEnd)> = entries
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|((_, r), tx)| (r.clone(), tx.borrow().end))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_withdrawn_stream_has_no_playlist_and_its_waiters_end() {
        let live = LivePlaylists::default();
        let end = PlaylistEnd::segment(3, 0);
        live.publish("cam", "360p", snap(end));
        live.publish("other", "360p", snap(end));
        let mut rx = live.watch("cam", "360p").unwrap();
        live.withdraw("cam");
        assert!(live.watch("cam", "360p").is_none());
        assert!(live.watch("other", "360p").is_some());
        assert!(
            rx.changed().await.is_err(),
            "a held request wakes to a closed channel"
        );
    }

    fn snap(end: PlaylistEnd) -> PlaylistSnapshot {
        PlaylistSnapshot {
            end,
            full: Bytes::from_static(b"#EXTM3U\n"),
            delta: None,
            target_duration_ms: 2000,
            modified: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_the_next_publish() {
        let live = LivePlaylists::default();
        assert!(live.watch("demo", "720p").is_none());
        live.publish("demo", "720p", snap(PlaylistEnd::part(3, 0)));
        let mut rx = live.watch("demo", "720p").unwrap();
        assert_eq!(rx.borrow_and_update().end, PlaylistEnd::part(3, 0));
        let waiter = tokio::spawn(async move {
            rx.wait_for(|s| s.end.satisfies(3, Some(1)))
                .await
                .map(|s| s.end)
        });
        live.publish("demo", "720p", snap(PlaylistEnd::part(3, 1)));
        assert_eq!(waiter.await.unwrap().unwrap(), PlaylistEnd::part(3, 1));
        live.publish("demo", "480p", snap(PlaylistEnd::segment(2, 10)));
        let ends = live.ends_of("demo");
        assert_eq!(ends.len(), 2);
        assert_eq!(ends[0].0, "480p");
    }
}
