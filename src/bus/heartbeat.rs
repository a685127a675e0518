//! When an origin heartbeats. An edge believes a stream's announcements only from an origin
//! whose heartbeat it has heard ([`crate::edge::trust`]), and a PUB socket drops whatever it
//! sends before a subscriber has joined (ZeroMQ's slow joiner): a heartbeat sent at start,
//! before the edge's subscription arrived, is lost, and every part announced until the next
//! interval was refused as `unknown_origin` (about 17 in the first second of `zoomate run`).
//! So besides every interval (the first at once), the origin heartbeats right before the
//! first announcement of each stream session, in the same queue, so a subscriber hears the
//! heartbeat before anything the stream announces. An edge that joins mid-stream still waits
//! up to one interval: a PUB socket cannot tell when a subscriber joins.

use super::BusEvent;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The stream an announcement is about (`None` for a heartbeat).
fn stream_of(event: &BusEvent) -> Option<&str> {
    match event {
        BusEvent::SegmentReady { stream, .. }
        | BusEvent::PartReady { stream, .. }
        | BusEvent::PlaylistUpdated { stream, .. }
        | BusEvent::StreamStarted { stream, .. }
        | BusEvent::StreamEnded { stream, .. } => Some(stream),
        BusEvent::OriginHeartbeat { .. } => None,
    }
}

/// Which streams have announced since their session started (pure). Bounded by the live
/// streams: a stream leaves at its `StreamEnded`, and [`FirstAnnouncements::retain`] drops
/// any whose end was never announced.
#[derive(Debug, Default)]
pub struct FirstAnnouncements {
    announced: Mutex<BTreeSet<String>>,
}

impl FirstAnnouncements {
    /// Whether `event` is its stream's first announcement (a heartbeat must go first).
    pub fn is_first(&self, event: &BusEvent) -> bool {
        let Some(stream) = stream_of(event) else {
            return false;
        };
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(event, BusEvent::StreamEnded { .. }) {
            // The next session of this stream starts afresh.
            return !announced.remove(stream);
        }
        announced.insert(stream.to_string())
    }

    /// Keeps only `live` streams (called with each periodic heartbeat).
    pub fn retain(&self, live: &[String]) {
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        announced.retain(|s| live.contains(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(stream: &str) -> BusEvent {
        BusEvent::PartReady {
            stream: stream.into(),
            rendition: "720p".into(),
            media_sequence: 1,
            part_index: 0,
            duration_ms: 200,
            uri: format!("/live/{stream}/720p/1.0.m4s"),
            byte_size: 1,
            independent: true,
            origin_id: "o".into(),
        }
    }

    #[test]
    fn a_heartbeat_goes_first_once_per_stream_session() {
        let first = FirstAnnouncements::default();
        assert!(first.is_first(&part("a")));
        assert!(!first.is_first(&part("a")));
        assert!(first.is_first(&part("b")));
        let ended = BusEvent::StreamEnded {
            stream: "a".into(),
            origin_id: "o".into(),
        };
        assert!(!first.is_first(&ended));
        assert!(first.is_first(&part("a")), "a new session of a");
        first.retain(&["a".to_string()]);
        assert!(first.is_first(&part("b")), "b left with the live set");
        let hb = BusEvent::OriginHeartbeat {
            origin_id: "o".into(),
            http_base_url: "http://127.0.0.1:1".into(),
            streams: vec![],
            load_streams: 0,
            load_encoder_speed: 0.0,
            interval_ms: 1000,
        };
        assert!(!first.is_first(&hb));
    }
}
