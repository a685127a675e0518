//! What the edge believes of the bus: every announcement is checked before it changes anything.
//! Pure: the bus listener owns one [`Judge`] and feeds it deliveries with the time; tests do
//! the same without sockets.
//!
//! The bus is what lets origins and edges run on different hosts, so it must be as
//! trustworthy as the HTTP it replaces, even from a peer that authenticated (a compromised or
//! misconfigured origin, a bus proxy in between). The rules:
//!
//! - **Topic = payload.** The topic frame must be exactly the one the payload implies
//!   (`seg/{stream}/{rendition}` …): subscribers filter on topics, so a payload on a foreign
//!   topic would reach consumers that never asked for it.
//! - **Origins are allow-listed.** A heartbeat's base URL must be a plain `http://host:port`
//!   ([`BaseUrl`]) matching the allow-list (the origins named in config, plus
//!   `edge.origin_allow` patterns); anything else is ignored, so a forged heartbeat can neither
//!   steer viewers to another server nor make the edge fetch an internal URL (SSRF).
//! - **An origin is bound to the connection it was learned on.** An origin id first heard on
//!   one bus endpoint (with CURVE: one authenticated server key) is not believed from another
//!   until it has expired; announcements about segments name their origin, which must be
//!   learned and bound to the endpoint they arrived on.
//! - **URIs follow the layout.** A `SegmentReady` URI must be the origin's URI for that stream,
//!   rendition and sequence ([`layout::is_live_segment_uri`]), a `PlaylistUpdated` URI the
//!   rendition's playlist: a forged name cannot reach the cache.
//! - **Sequences move by bounded steps** ([`MAX_SEQUENCE_JUMP`]) from the last one believed.
//! - **Everything learned is bounded and expires**: origins, tracked playlists, streams per
//!   heartbeat, renditions per stream.

use crate::bus::BusEvent;
use crate::http::base_url::{BaseUrl, OriginPattern};
use crate::layout;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest forward step of a playlist's sequence believed from one announcement. Sequences
/// advance by one per segment; a gap only comes from lost bus messages or an origin that was
/// away (its timeline continues where it stopped), both far below this.
pub const MAX_SEQUENCE_JUMP: u64 = 1_000;
/// Playlists whose last believed sequence is tracked.
pub const MAX_TRACKED_PLAYLISTS: usize = 100_000;
/// A tracked playlist not announced for this long is forgotten (its stream is gone).
pub const PLAYLIST_EXPIRY_MS: i64 = 10 * 60 * 1000;
/// Streams one heartbeat may list.
pub const MAX_STREAMS_PER_HEARTBEAT: usize = 10_000;
/// Renditions one `StreamStarted` may list.
pub const MAX_RENDITIONS: usize = 64;
/// Heartbeat intervals believed, in milliseconds (`bus.heartbeat_interval_ms` has the same
/// range; an interval of 0 would make a dead origin look alive forever).
pub const HEARTBEAT_INTERVAL_MS: std::ops::RangeInclusive<u32> = 100..=60_000;

/// Why an announcement was not believed (the `reason` label of
/// `zoomate_edge_bus_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The topic frame is not the one the payload implies.
    Topic,
    /// A stream, rendition or origin name that is not a valid path component.
    Name,
    /// A heartbeat base URL that is not a plain `http://host:port`.
    BaseUrl,
    /// A heartbeat base URL outside the allow-list.
    NotAllowed,
    /// An origin id already bound to another bus endpoint.
    Identity,
    /// An announcement naming an origin (or arriving on an endpoint) with no live heartbeat.
    UnknownOrigin,
    /// A URI that is not the layout's URI for what the announcement describes.
    Uri,
    /// A sequence too far ahead of the last one believed.
    SequenceJump,
    /// The learned-origin limit is reached.
    TooManyOrigins,
    /// The tracked-playlist limit, streams per heartbeat or renditions per stream.
    TooManyStreams,
    /// A heartbeat interval outside [`HEARTBEAT_INTERVAL_MS`].
    HeartbeatInterval,
    /// A fetched segment whose size disagrees with its announcement (counted by the fetch).
    Size,
}

impl Rejection {
    pub const ALL: [Rejection; 12] = [
        Rejection::Topic,
        Rejection::Name,
        Rejection::BaseUrl,
        Rejection::NotAllowed,
        Rejection::Identity,
        Rejection::UnknownOrigin,
        Rejection::Uri,
        Rejection::SequenceJump,
        Rejection::TooManyOrigins,
        Rejection::TooManyStreams,
        Rejection::HeartbeatInterval,
        Rejection::Size,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::Topic => "topic",
            Rejection::Name => "name",
            Rejection::BaseUrl => "base_url",
            Rejection::NotAllowed => "not_allowed",
            Rejection::Identity => "identity",
            Rejection::UnknownOrigin => "unknown_origin",
            Rejection::Uri => "uri",
            Rejection::SequenceJump => "sequence_jump",
            Rejection::TooManyOrigins => "too_many_origins",
            Rejection::TooManyStreams => "too_many_streams",
            Rejection::HeartbeatInterval => "heartbeat_interval",
            Rejection::Size => "size",
        }
    }
}

/// What the judge is told at start.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Base URLs heartbeats may name (replaced on a hot reload: [`Judge::set_allow`]).
    pub allow: Vec<OriginPattern>,
    /// Origins learned from heartbeats at once.
    pub max_origins: usize,
    /// An origin with no heartbeat for this long is forgotten (binding included).
    pub origin_expiry_ms: i64,
}

/// An origin believed from its heartbeats.
#[derive(Debug)]
struct Learned {
    endpoint: Arc<str>,
    /// The base URL its last heartbeat named (checked again when the allow-list changes).
    base_url: BaseUrl,
    last_heartbeat_ms: i64,
}

/// The last believed sequence of one playlist.
#[derive(Debug)]
struct Tracked {
    sequence: u64,
    at_ms: i64,
}

/// Checks announcements against the policy and what it has believed so far.
#[derive(Debug)]
pub struct Judge {
    policy: TrustPolicy,
    origins: HashMap<String, Learned>,
    playlists: HashMap<String, Tracked>,
}

/// Origin ids travel in topics and logs: printable, no separators, bounded.
fn valid_origin_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

use crate::packaging::ll_hls::MAX_PARTS_PER_SEGMENT;

/// Stream and rendition names: what the origin's config accepts.
fn valid_name(name: &str) -> bool {
    layout::valid_name(name)
}

impl Judge {
    pub fn new(policy: TrustPolicy) -> Judge {
        Judge {
            policy,
            origins: HashMap::new(),
            playlists: HashMap::new(),
        }
    }

    /// Whether `event`, received as `topic` on `endpoint` at `now_ms`, is believed. A believed
    /// announcement updates what the judge knows (origin bindings, sequences).
    pub fn judge(
        &mut self,
        endpoint: &Arc<str>,
        topic: &str,
        event: &BusEvent,
        now_ms: i64,
    ) -> Result<(), Rejection> {
        self.expire(now_ms);
        if topic != event.topic() {
            return Err(Rejection::Topic);
        }
        match event {
            BusEvent::OriginHeartbeat {
                origin_id,
                http_base_url,
                streams,
                interval_ms,
                ..
            } => self.heartbeat(
                endpoint,
                origin_id,
                http_base_url,
                streams,
                *interval_ms,
                now_ms,
            ),
            BusEvent::SegmentReady {
                stream,
                rendition,
                media_sequence,
                uri,
                origin_id,
                ..
            } => {
                if !valid_name(stream) || !valid_name(rendition) {
                    return Err(Rejection::Name);
                }
                self.bound(endpoint, origin_id)?;
                if !layout::is_live_segment_uri(uri, stream, rendition, *media_sequence) {
                    return Err(Rejection::Uri);
                }
                self.advance(
                    layout::live_playlist_uri(stream, rendition),
                    *media_sequence,
                    now_ms,
                )
            }
            BusEvent::PartReady {
                stream,
                rendition,
                media_sequence,
                part_index,
                uri,
                origin_id,
                ..
            } => {
                if !valid_name(stream) || !valid_name(rendition) {
                    return Err(Rejection::Name);
                }
                self.bound(endpoint, origin_id)?;
                if *part_index >= MAX_PARTS_PER_SEGMENT
                    || !layout::is_live_part_uri(
                        uri,
                        stream,
                        rendition,
                        *media_sequence,
                        *part_index,
                    )
                {
                    return Err(Rejection::Uri);
                }
                self.advance(
                    layout::live_playlist_uri(stream, rendition),
                    *media_sequence,
                    now_ms,
                )
            }
            BusEvent::PlaylistUpdated {
                stream,
                rendition,
                media_sequence,
                uri,
            } => {
                if !valid_name(stream) || !valid_name(rendition) {
                    return Err(Rejection::Name);
                }
                // No origin id in this message: it must come from an endpoint that has a live,
                // allowed origin on it.
                if !self.origins.values().any(|o| o.endpoint == *endpoint) {
                    return Err(Rejection::UnknownOrigin);
                }
                if *uri != layout::live_playlist_uri(stream, rendition) {
                    return Err(Rejection::Uri);
                }
                self.advance(uri.clone(), *media_sequence, now_ms)
            }
            BusEvent::StreamStarted {
                stream,
                origin_id,
                renditions,
            } => {
                if !valid_name(stream) || renditions.iter().any(|r| !valid_name(&r.name)) {
                    return Err(Rejection::Name);
                }
                if renditions.len() > MAX_RENDITIONS {
                    return Err(Rejection::TooManyStreams);
                }
                self.bound(endpoint, origin_id)
            }
            BusEvent::StreamEnded { stream, origin_id } => {
                if !valid_name(stream) {
                    return Err(Rejection::Name);
                }
                self.bound(endpoint, origin_id)
            }
        }
    }

    /// Hot reload (`edge.origins` changed): heartbeats are judged against `allow` from now on,
    /// and an origin learned under the old list whose base URL `allow` no longer matches is
    /// forgotten at once, so its announcements stop being believed (not only after expiry).
    pub fn set_allow(&mut self, allow: Vec<OriginPattern>) {
        self.origins
            .retain(|_, o| allow.iter().any(|p| p.matches(&o.base_url)));
        self.policy.allow = allow;
    }

    /// Origins learned and not expired (for tests and metrics).
    pub fn learned_origins(&self) -> usize {
        self.origins.len()
    }

    fn heartbeat(
        &mut self,
        endpoint: &Arc<str>,
        origin_id: &str,
        base_url: &str,
        streams: &[String],
        interval_ms: u32,
        now_ms: i64,
    ) -> Result<(), Rejection> {
        if !valid_origin_id(origin_id) {
            return Err(Rejection::Name);
        }
        let url = BaseUrl::parse(base_url).map_err(|_| Rejection::BaseUrl)?;
        if !self.policy.allow.iter().any(|p| p.matches(&url)) {
            return Err(Rejection::NotAllowed);
        }
        if !HEARTBEAT_INTERVAL_MS.contains(&interval_ms) {
            return Err(Rejection::HeartbeatInterval);
        }
        if streams.len() > MAX_STREAMS_PER_HEARTBEAT {
            return Err(Rejection::TooManyStreams);
        }
        if streams.iter().any(|s| !valid_name(s)) {
            return Err(Rejection::Name);
        }
        let learned = self.origins.len();
        match self.origins.get_mut(origin_id) {
            Some(o) if o.endpoint != *endpoint => Err(Rejection::Identity),
            Some(o) => {
                o.last_heartbeat_ms = now_ms;
                o.base_url = url;
                Ok(())
            }
            None if learned >= self.policy.max_origins => Err(Rejection::TooManyOrigins),
            None => {
                self.origins.insert(
                    origin_id.to_string(),
                    Learned {
                        endpoint: endpoint.clone(),
                        base_url: url,
                        last_heartbeat_ms: now_ms,
                    },
                );
                Ok(())
            }
        }
    }

    /// `origin_id` is learned and was learned on `endpoint`.
    fn bound(&self, endpoint: &Arc<str>, origin_id: &str) -> Result<(), Rejection> {
        match self.origins.get(origin_id) {
            None => Err(Rejection::UnknownOrigin),
            Some(o) if o.endpoint != *endpoint => Err(Rejection::Identity),
            Some(_) => Ok(()),
        }
    }

    /// Believes `sequence` for `playlist` if it is not too far ahead of the last one.
    fn advance(&mut self, playlist: String, sequence: u64, now_ms: i64) -> Result<(), Rejection> {
        if let Some(t) = self.playlists.get_mut(&playlist) {
            if sequence > t.sequence.saturating_add(MAX_SEQUENCE_JUMP) {
                return Err(Rejection::SequenceJump);
            }
            t.sequence = t.sequence.max(sequence);
            t.at_ms = now_ms;
            return Ok(());
        }
        if self.playlists.len() >= MAX_TRACKED_PLAYLISTS {
            self.playlists
                .retain(|_, t| now_ms - t.at_ms < PLAYLIST_EXPIRY_MS);
            if self.playlists.len() >= MAX_TRACKED_PLAYLISTS {
                return Err(Rejection::TooManyStreams);
            }
        }
        self.playlists.insert(
            playlist,
            Tracked {
                sequence,
                at_ms: now_ms,
            },
        );
        Ok(())
    }

    fn expire(&mut self, now_ms: i64) {
        let expiry = self.policy.origin_expiry_ms;
        self.origins
            .retain(|_, o| now_ms - o.last_heartbeat_ms < expiry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn judge() -> Judge {
        Judge::new(TrustPolicy {
            allow: vec![
                OriginPattern::parse("http://127.0.0.1:8081").unwrap(),
                OriginPattern::parse("http://10.0.0.*:*").unwrap(),
            ],
            max_origins: 3,
            origin_expiry_ms: 30_000,
        })
    }

    fn hb(id: &str, url: &str) -> BusEvent {
        BusEvent::OriginHeartbeat {
            origin_id: id.into(),
            http_base_url: url.into(),
            streams: vec!["demo".into()],
            load_streams: 1,
            load_encoder_speed: 1.0,
            interval_ms: 1000,
        }
    }

    fn seg(seq: u64, uri: &str, origin: &str) -> BusEvent {
        BusEvent::SegmentReady {
            stream: "demo".into(),
            rendition: "720p".into(),
            media_sequence: seq,
            duration_ms: 2000,
            uri: uri.into(),
            byte_size: 1000,
            program_date_time_ms: T0,
            discontinuity: false,
            origin_id: origin.into(),
        }
    }

    fn check(j: &mut Judge, ep: &Arc<str>, ev: &BusEvent, now: i64) -> Result<(), Rejection> {
        j.judge(ep, &ev.topic(), ev, now)
    }

    #[test]
    fn a_new_allow_list_applies_to_heartbeats_and_to_origins_already_learned() {
        let mut j = judge();
        let ep: Arc<str> = Arc::from("tcp://127.0.0.1:5556");
        let (kept, dropped, added) = (
            "http://10.0.0.1:8081",
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8082",
        );
        assert_eq!(check(&mut j, &ep, &hb("kept", kept), T0), Ok(()));
        assert_eq!(check(&mut j, &ep, &hb("dropped", dropped), T0), Ok(()));
        assert_eq!(
            check(&mut j, &ep, &hb("added", added), T0),
            Err(Rejection::NotAllowed)
        );
        j.set_allow(vec![
            OriginPattern::parse(added).unwrap(),
            OriginPattern::parse("http://10.0.0.*:*").unwrap(),
        ]);
        assert_eq!(
            j.learned_origins(),
            1,
            "the origin no longer allowed is forgotten"
        );
        let uri = |seq| format!("/live/demo/720p/{seq}.ts");
        assert_eq!(
            check(&mut j, &ep, &seg(1, &uri(1), "dropped"), T0),
            Err(Rejection::UnknownOrigin)
        );
        assert_eq!(
            check(&mut j, &ep, &hb("dropped", dropped), T0),
            Err(Rejection::NotAllowed)
        );
        assert_eq!(check(&mut j, &ep, &seg(1, &uri(1), "kept"), T0), Ok(()));
        assert_eq!(check(&mut j, &ep, &hb("added", added), T0), Ok(()));
        assert_eq!(check(&mut j, &ep, &seg(2, &uri(2), "added"), T0), Ok(()));
    }

    #[test]
    fn heartbeats_need_an_allowed_plain_base_url() {
        let mut j = judge();
        let ep: Arc<str> = Arc::from("tcp://127.0.0.1:5556");
        assert_eq!(
            check(&mut j, &ep, &hb("o1", "http://127.0.0.1:8081"), T0),
            Ok(())
        );
        assert_eq!(
            check(&mut j, &ep, &hb("o2", "http://10.0.0.9:9000/"), T0),
            Ok(())
        );
        assert_eq!(
            check(&mut j, &ep, &hb("o3", "http://127.0.0.1:18099"), T0),
            Err(Rejection::NotAllowed)
        );
        assert_eq!(
            check(
                &mut j,
                &ep,
                &hb("o3", "http://127.0.0.1:8081/internal/admin?x="),
                T0
            ),
            Err(Rejection::BaseUrl)
        );
        assert_eq!(
            check(&mut j, &ep, &hb("o/3", "http://127.0.0.1:8081"), T0),
            Err(Rejection::Name)
        );
        let mut zero = hb("o4", "http://127.0.0.1:8081");
        if let BusEvent::OriginHeartbeat { interval_ms, .. } = &mut zero {
            *interval_ms = 0;
        }
        assert_eq!(
            check(&mut j, &ep, &zero, T0),
            Err(Rejection::HeartbeatInterval)
        );
    }

    #[test]
    fn the_topic_must_be_the_payloads() {
        let mut j = judge();
        let ep: Arc<str> = Arc::from("tcp://a");
        let ev = hb("o1", "http://127.0.0.1:8081");
        assert_eq!(j.judge(&ep, "hb/other", &ev, T0), Err(Rejection::Topic));
        assert_eq!(
            j.judge(&ep, "seg/demo/720p", &ev, T0),
            Err(Rejection::Topic)
        );
        assert_eq!(j.judge(&ep, "hb/o1", &ev, T0), Ok(()));
    }

    #[test]
    fn an_origin_is_bound_to_its_endpoint_until_it_expires() {
        let mut j = judge();
        let real: Arc<str> = Arc::from("tcp://real");
        let rogue: Arc<str> = Arc::from("tcp://rogue");
        let url = "http://127.0.0.1:8081";
        assert_eq!(check(&mut j, &real, &hb("o1", url), T0), Ok(()));
        assert_eq!(
            check(&mut j, &rogue, &hb("o1", url), T0 + 10),
            Err(Rejection::Identity)
        );
        let s = seg(5, "/live/demo/720p/5.ts", "o1");
        assert_eq!(check(&mut j, &rogue, &s, T0 + 10), Err(Rejection::Identity));
        assert_eq!(check(&mut j, &real, &s, T0 + 10), Ok(()));
        // Silence past the expiry: forgotten, and the binding with it.
        assert_eq!(
            check(
                &mut j,
                &real,
                &seg(6, "/live/demo/720p/6.ts", "o1"),
                T0 + 40_000
            ),
            Err(Rejection::UnknownOrigin)
        );
        assert_eq!(j.learned_origins(), 0);
        assert_eq!(check(&mut j, &rogue, &hb("o1", url), T0 + 40_000), Ok(()));
    }

    #[test]
    fn segments_must_use_the_layouts_uri_and_bounded_steps() {
        let mut j = judge();
        let ep: Arc<str> = Arc::from("tcp://real");
        check(&mut j, &ep, &hb("o1", "http://127.0.0.1:8081"), T0).unwrap();
        assert_eq!(
            check(&mut j, &ep, &seg(10, "/live/demo/720p/10.ts", "o1"), T0),
            Ok(())
        );
        assert_eq!(
            check(&mut j, &ep, &seg(11, "/live/demo/720p/11.m4s", "o1"), T0),
            Ok(())
        );
        for bad in [
            "/live/demo/720p/12.ts?x",
            "/live/demo/480p/12.ts",
            "/live/demo/720p/13.ts",
            "/live/demo/720p/../../x/12.ts",
            "/live/demo/720p/12.mp4",
            "http://evil/live/demo/720p/12.ts",
        ] {
            assert_eq!(
                check(&mut j, &ep, &seg(12, bad, "o1"), T0),
                Err(Rejection::Uri),
                "{bad}"
            );
        }
        assert_eq!(
            check(&mut j, &ep, &seg(12, "/live/demo/720p/12.ts", "nobody"), T0),
            Err(Rejection::UnknownOrigin)
        );
        let far = 11 + MAX_SEQUENCE_JUMP + 1;
        assert_eq!(
            check(
                &mut j,
                &ep,
                &seg(far, &format!("/live/demo/720p/{far}.ts"), "o1"),
                T0
            ),
            Err(Rejection::SequenceJump)
        );
        let pl = |seq: u64| BusEvent::PlaylistUpdated {
            stream: "demo".into(),
            rendition: "720p".into(),
            media_sequence: seq,
            uri: "/live/demo/720p/index.m3u8".into(),
        };
        assert_eq!(
            check(&mut j, &ep, &pl(u64::MAX), T0),
            Err(Rejection::SequenceJump)
        );
        assert_eq!(check(&mut j, &ep, &pl(12), T0), Ok(()));
        let stranger: Arc<str> = Arc::from("tcp://stranger");
        assert_eq!(
            check(&mut j, &stranger, &pl(13), T0),
            Err(Rejection::UnknownOrigin)
        );
    }

    #[test]
    fn learned_origins_are_bounded() {
        let mut j = judge();
        let ep: Arc<str> = Arc::from("tcp://proxy");
        for i in 0..3 {
            let url = format!("http://10.0.0.{i}:8081");
            assert_eq!(check(&mut j, &ep, &hb(&format!("o{i}"), &url), T0), Ok(()));
        }
        assert_eq!(
            check(&mut j, &ep, &hb("o9", "http://10.0.0.9:8081"), T0),
            Err(Rejection::TooManyOrigins)
        );
        // Known origins keep refreshing at the limit.
        assert_eq!(
            check(&mut j, &ep, &hb("o1", "http://10.0.0.1:8081"), T0 + 1),
            Ok(())
        );
    }
}
