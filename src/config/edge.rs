//! `[edge]`: the caching, stream-aware proxy (owned by the edge module).

use super::{ConfigError, HttpLimits};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BalancePolicy {
    ConsistentHash,
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Run the edge in `zoomate run`.
    pub enabled: bool,
    /// Edge HTTP listener for viewers.
    pub listen: SocketAddr,
    /// Static origin base URLs, in addition to those discovered from bus heartbeats.
    pub origins: Vec<String>,
    /// Base URLs, besides `origins`, that origins may announce in bus heartbeats: patterns
    /// `http://HOST[:PORT]` where a whole host label or the port may be `*`
    /// (`http://10.0.0.*:8081`). A heartbeat naming any other base URL is ignored.
    pub origin_allow: Vec<String>,
    /// Bus endpoints to subscribe to (origins' PUB sockets or a bus proxy backend).
    pub bus_connect: Vec<String>,
    pub balance: BalancePolicy,
    /// Cache capacity, in bytes (segments and playlists, weighed by body size).
    pub cache_bytes: u64,
    /// Playlist freshness when the bus is silent, in milliseconds (bus announcements refresh
    /// playlists immediately).
    pub playlist_ttl_ms: u64,
    /// Pull each announced segment into the cache before any viewer asks.
    pub prefetch: bool,
    /// Active health check interval, in milliseconds (`GET /healthz` on every origin).
    pub health_check_interval_ms: u64,
    /// Consecutive successful checks before an origin is used again.
    pub health_rise: u32,
    /// Consecutive failures (checks or requests) before an origin is ejected.
    pub health_fall: u32,
    /// Connect + response-headers timeout for an origin fetch, in milliseconds.
    pub origin_timeout_ms: u64,
    /// Largest origin response accepted, in bytes.
    pub max_object_bytes: u64,
    /// Bus events queued for the edge before new ones are dropped (and counted).
    pub bus_queue_capacity: usize,
    /// An origin learned from heartbeats is forgotten after this long without one, in
    /// milliseconds (never sooner than 3 of its heartbeat intervals). Static origins stay.
    pub learned_origin_expiry_ms: u64,
    /// Origins learned from heartbeats held at once; heartbeats from further new origins are
    /// ignored and counted (`zoomate_edge_origins_rejected_total`).
    pub max_learned_origins: usize,
    pub limits: HttpLimits,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            enabled: true,
            listen: "0.0.0.0:8080".parse().expect("static address"),
            origins: Vec::new(),
            origin_allow: Vec::new(),
            bus_connect: Vec::new(),
            balance: BalancePolicy::ConsistentHash,
            cache_bytes: 512 * 1024 * 1024,
            playlist_ttl_ms: 1_000,
            prefetch: true,
            health_check_interval_ms: 1_000,
            health_rise: 2,
            health_fall: 2,
            origin_timeout_ms: 5_000,
            max_object_bytes: 64 * 1024 * 1024,
            bus_queue_capacity: 4_096,
            learned_origin_expiry_ms: 30_000,
            max_learned_origins: 64,
            limits: HttpLimits::default(),
        }
    }
}

impl EdgeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::http::base_url::{BaseUrl, OriginPattern};
        for (i, o) in self.origins.iter().enumerate() {
            if let Err(e) = BaseUrl::parse(o) {
                return Err(ConfigError::invalid(
                    format!("edge.origins[{i}]"),
                    o,
                    format!("must be an http:// URL: {e}"),
                ));
            }
        }
        for (i, p) in self.origin_allow.iter().enumerate() {
            if let Err(e) = OriginPattern::parse(p) {
                return Err(ConfigError::invalid(
                    format!("edge.origin_allow[{i}]"),
                    p,
                    format!("{e} (a host label or the port may be *)"),
                ));
            }
        }
        if self.cache_bytes < 1024 * 1024 {
            return Err(ConfigError::invalid(
                "edge.cache_bytes",
                self.cache_bytes,
                "must be at least 1048576",
            ));
        }
        for (key, v, lo, hi) in [
            ("edge.playlist_ttl_ms", self.playlist_ttl_ms, 100, 600_000),
            (
                "edge.health_check_interval_ms",
                self.health_check_interval_ms,
                100,
                600_000,
            ),
            (
                "edge.origin_timeout_ms",
                self.origin_timeout_ms,
                100,
                120_000,
            ),
            (
                "edge.max_object_bytes",
                self.max_object_bytes,
                1024,
                4 * 1024 * 1024 * 1024,
            ),
            (
                "edge.learned_origin_expiry_ms",
                self.learned_origin_expiry_ms,
                1_000,
                86_400_000,
            ),
            (
                "edge.max_learned_origins",
                self.max_learned_origins as u64,
                1,
                10_000,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::invalid(key, v, format!("must be {lo}..={hi}")));
            }
        }
        if self.health_rise == 0 || self.health_fall == 0 {
            return Err(ConfigError::invalid(
                "edge.health_rise/health_fall",
                0,
                "must be at least 1",
            ));
        }
        if !(16..=1_000_000).contains(&self.bus_queue_capacity) {
            return Err(ConfigError::invalid(
                "edge.bus_queue_capacity",
                self.bus_queue_capacity,
                "must be 16..=1000000",
            ));
        }
        super::validate_limits("edge.limits", &self.limits)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn learned_origin_bounds_are_validated_naming_key_and_value() {
        for (toml, key, value) in [
            (
                "learned_origin_expiry_ms = 10",
                "edge.learned_origin_expiry_ms",
                "10",
            ),
            ("max_learned_origins = 0", "edge.max_learned_origins", "0"),
        ] {
            let c = crate::config::Config::parse(&format!("[edge]\n{toml}\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value), "{e}");
        }
        let c = crate::config::Config::parse(
            "[edge]\nlearned_origin_expiry_ms = 5000\nmax_learned_origins = 3\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.edge.max_learned_origins, 3);
    }
}
