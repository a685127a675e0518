//! Viewers counted at the edge without cookies: a viewer is a distinct (client address,
//! User-Agent) pair that fetched a media playlist (or the live MPD) of the stream within the last
//! [`WINDOW_TARGET_DURATIONS`] target durations (a playing client reloads its playlist about
//! once per target duration, an LL-HLS client more often). Players behind one NAT with the
//! same browser count once; that is the price of counting without identifiers.
//!
//! Bounded: a moka cache of at most `api.max_viewer_sessions` entries with that TTL; beyond
//! it the least recently seen are forgotten (and so not counted).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// How many target durations a playlist fetch keeps a viewer counted.
pub const WINDOW_TARGET_DURATIONS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ViewerKey {
    stream: String,
    address: IpAddr,
    /// XXH3-64 of the User-Agent: the key stays small whatever a client sends.
    user_agent: u64,
}

/// The edge's recent viewers.
pub struct Viewers {
    seen: moka::sync::Cache<ViewerKey, ()>,
    window: Duration,
}

impl Viewers {
    /// `target_duration`: the streams' segment duration; `max_sessions`: entries held at most.
    pub fn new(target_duration: Duration, max_sessions: u64) -> Viewers {
        let window = target_duration * WINDOW_TARGET_DURATIONS;
        Viewers {
            seen: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .time_to_live(window)
                .build(),
            window,
        }
    }

    /// How long a playlist fetch counts.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// A media playlist of `stream` was fetched by `address` with `user_agent`.
    pub fn saw(&self, stream: &str, address: IpAddr, user_agent: &[u8]) {
        self.seen.insert(
            ViewerKey {
                stream: stream.to_string(),
                address,
                user_agent: xxhash_rust::xxh3::xxh3_64(user_agent),
            },
            (),
        );
    }

    /// Viewers per stream now (streams without viewers are absent).
    pub fn per_stream(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (key, ()) in self.seen.iter() {
            *out.entry(key.stream.clone()).or_insert(0) += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_address_and_agent_pairs_are_viewers_and_expire() {
        let v = Viewers::new(Duration::from_millis(40), 100);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        v.saw("demo", a, b"hls.js");
        v.saw("demo", a, b"hls.js"); // a reload: the same viewer
        v.saw("demo", a, b"Safari");
        v.saw("demo", b, b"hls.js");
        v.saw("other", b, b"hls.js");
        let now = v.per_stream();
        assert_eq!(now.get("demo"), Some(&3));
        assert_eq!(now.get("other"), Some(&1));
        // Gone once the window has passed (polled: moka expires lazily, on its own clock).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !v.per_stream().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "viewers never expired"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
