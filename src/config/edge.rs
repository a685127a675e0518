//! `[edge]`: the caching, stream-aware proxy (owned by the edge module).

use super::bus::{insecure, parse_key};
use super::{ConfigError, HttpLimits, Secret};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One `[edge] bus_connect` entry. In TOML either a plain endpoint, `"tcp://10.0.0.5:5556"`,
/// or a table naming the publisher's CURVE public key,
/// `{ endpoint = "tcp://10.0.0.5:5556", server_key = "Z85…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "BusConnectToml")]
pub struct BusConnect {
    /// ZeroMQ endpoint of an origin's PUB socket or a bus proxy backend.
    pub endpoint: String,
    /// The publisher's CURVE public key (Z85): the edge only talks to a peer proving it holds
    /// the matching secret key.
    pub server_key: Option<String>,
    /// The key this edge authenticates with. Not read from `[edge]`: `app` copies
    /// `[bus] curve_secret_key` here; `None` with a `server_key` means an ephemeral key.
    pub client_secret_key: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BusConnectToml {
    Endpoint(String),
    Table(BusConnectTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BusConnectTable {
    endpoint: String,
    server_key: Option<String>,
}

impl From<BusConnectToml> for BusConnect {
    fn from(t: BusConnectToml) -> Self {
        match t {
            BusConnectToml::Endpoint(endpoint) => BusConnect::plain(endpoint),
            BusConnectToml::Table(t) => BusConnect {
                endpoint: t.endpoint,
                server_key: t.server_key,
                client_secret_key: None,
            },
        }
    }
}

impl BusConnect {
    /// An entry without CURVE.
    pub fn plain(endpoint: impl Into<String>) -> Self {
        BusConnect {
            endpoint: endpoint.into(),
            server_key: None,
            client_secret_key: None,
        }
    }
}

impl From<String> for BusConnect {
    fn from(endpoint: String) -> Self {
        BusConnect::plain(endpoint)
    }
}

impl From<&str> for BusConnect {
    fn from(endpoint: &str) -> Self {
        BusConnect::plain(endpoint)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BalancePolicy {
    ConsistentHash,
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
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
    /// Bus endpoints to subscribe to (origins' PUB sockets or a bus proxy backend), each a
    /// plain endpoint or `{ endpoint, server_key }` (CURVE).
    pub bus_connect: Vec<BusConnect>,
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
    /// LL-HLS blocking requests (playlist reloads and preload-hinted parts) held at once;
    /// more are answered 503 at once.
    pub max_held_requests: usize,
    /// …of which for one stream.
    pub max_held_requests_per_stream: usize,
    /// Longest a blocking request is held before 503 (3 target durations of a 2 s ladder).
    pub held_request_timeout_ms: u64,
    /// Live playlists: when every origin fails, the last good copy is served while it is at
    /// most this old (RFC 5861 stale-if-error), in milliseconds; 0 = never (the error at once).
    /// Blocking LL-HLS requests are never answered stale.
    pub stale_if_error_ms: u64,
    pub limits: HttpLimits,
    pub signed_urls: SignedUrlsConfig,
}

/// `[edge.signed_urls]`: playback URLs carrying an HMAC-SHA256 token with an expiry
/// (`edge::signed_url`), checked by the edge before anything else of a media request.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignedUrlsConfig {
    /// The HMAC key, at least 32 bytes (`openssl rand -base64 48`); also
    /// `ZOOMATE_EDGE_SIGNED_URL_SECRET`. With a secret, signed URLs (`/t/{expires}/{token}/…`)
    /// are accepted; without one they are not recognised (404).
    pub secret: Option<Secret>,
    /// Refuse (403) media requests without a valid token. Needs `secret`.
    pub required: bool,
}

impl SignedUrlsConfig {
    /// The signer for the configured secret, if one is set and long enough (validated).
    pub fn signer(&self) -> Option<crate::edge::signed_url::Signer> {
        self.secret
            .as_ref()
            .and_then(|s| crate::edge::signed_url::Signer::new(s.expose().as_bytes()))
    }
}

impl Default for EdgeConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        super::Config::defaults().edge.clone()
    }
}

impl EdgeConfig {
    /// `allow_insecure_network` is `[bus] allow_insecure_network`.
    pub fn validate(&self, allow_insecure_network: bool) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        use crate::http::base_url::{BaseUrl, OriginPattern};
        for (i, c) in self.bus_connect.iter().enumerate() {
            let key = format!("edge.bus_connect[{i}]");
            if !(c.endpoint.starts_with("tcp://") || c.endpoint.starts_with("ipc://")) {
                errors.push(ConfigError::invalid(
                    &key,
                    &c.endpoint,
                    "must be tcp://HOST:PORT or ipc://PATH",
                ));
            }
            match &c.server_key {
                Some(k) => {
                    errors.extend(parse_key(&format!("{key}.server_key"), k, false).err());
                }
                None if self.enabled
                    && !allow_insecure_network
                    && !crate::bus::engine::is_local_endpoint(&c.endpoint) =>
                {
                    errors.push(insecure(
                        &key,
                        &c.endpoint,
                        "write it as { endpoint = \"…\", server_key = \"<publisher's public key>\" }",
                    ));
                }
                None => {}
            }
        }
        for (i, o) in self.origins.iter().enumerate() {
            if let Err(e) = BaseUrl::parse(o) {
                errors.push(ConfigError::invalid(
                    format!("edge.origins[{i}]"),
                    o,
                    format!("must be an http:// URL: {e}"),
                ));
            }
        }
        for (i, p) in self.origin_allow.iter().enumerate() {
            if let Err(e) = OriginPattern::parse(p) {
                errors.push(ConfigError::invalid(
                    format!("edge.origin_allow[{i}]"),
                    p,
                    format!("{e} (a host label or the port may be *)"),
                ));
            }
        }
        if self.cache_bytes < 1024 * 1024 {
            errors.push(ConfigError::invalid(
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
            (
                "edge.max_held_requests",
                self.max_held_requests as u64,
                1,
                1_000_000,
            ),
            (
                "edge.max_held_requests_per_stream",
                self.max_held_requests_per_stream as u64,
                1,
                self.max_held_requests.max(1) as u64,
            ),
            (
                "edge.held_request_timeout_ms",
                self.held_request_timeout_ms,
                500,
                60_000,
            ),
            ("edge.stale_if_error_ms", self.stale_if_error_ms, 0, 60_000),
        ] {
            super::check_range(&mut errors, key, v, lo..=hi);
        }
        if self.health_rise == 0 || self.health_fall == 0 {
            errors.push(ConfigError::invalid(
                "edge.health_rise/health_fall",
                0,
                "must be at least 1",
            ));
        }
        super::check_range(
            &mut errors,
            "edge.bus_queue_capacity",
            self.bus_queue_capacity,
            16..=1_000_000,
        );
        errors.extend(super::validate_limits("edge.limits", &self.limits).err());
        let min = crate::edge::signed_url::MIN_SECRET_BYTES;
        match &self.signed_urls.secret {
            // The value is a secret: named, never shown.
            Some(s) if s.len() < min => errors.push(ConfigError::invalid(
                "edge.signed_urls.secret",
                format!("<{} bytes>", s.len()),
                format!("must be at least {min} bytes (e.g. `openssl rand -base64 48`)"),
            )),
            None if self.signed_urls.required => errors.push(ConfigError::invalid(
                "edge.signed_urls.required",
                true,
                "needs edge.signed_urls.secret (or ZOOMATE_EDGE_SIGNED_URL_SECRET)",
            )),
            _ => {}
        }
        ConfigError::all(errors)
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::engine::KeyPair;
    use crate::config::{BusConnect, Config};

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

    #[test]
    fn bus_connect_takes_plain_endpoints_and_curve_tables() {
        let key = KeyPair::generate().expect("curve").public.to_z85();
        let c = Config::parse(&format!(
            "[edge]\nbus_connect = [\"tcp://127.0.0.1:5556\", {{ endpoint = \"tcp://10.0.0.5:5556\", server_key = \"{key}\" }}]\n"
        ))
        .expect("parses");
        assert_eq!(
            c.edge.bus_connect[0],
            BusConnect::plain("tcp://127.0.0.1:5556")
        );
        assert_eq!(
            c.edge.bus_connect[1].server_key.as_deref(),
            Some(key.as_str())
        );
        c.validate().expect("CURVE off loopback is fine");

        let bad = Config::parse(
            "[edge]\nbus_connect = [{ endpoint = \"tcp://10.0.0.5:5556\", server_key = \"short\" }]\n",
        )
        .expect("parses");
        let err = bad.validate().expect_err("bad key").to_string();
        assert!(
            err.contains("edge.bus_connect[0].server_key") && err.contains("short"),
            "{err}"
        );

        let plain_remote =
            Config::parse("[edge]\nbus_connect = [\"tcp://10.0.0.5:5556\"]\n").expect("parses");
        let err = plain_remote
            .validate()
            .expect_err("plaintext off host")
            .to_string();
        assert!(err.contains("zoomate bus keygen"), "{err}");
        let mut allowed = plain_remote;
        allowed.bus.allow_insecure_network = true;
        allowed.validate().expect("explicitly allowed");

        assert!(
            Config::parse("[edge]\nbus_connect = [{ endpoint = \"tcp://x:1\", typo = 1 }]\n")
                .is_err()
        );
    }

    #[test]
    fn signed_url_secret_is_validated_but_never_shown() {
        let c = Config::parse("[edge.signed_urls]\nsecret = \"tooshort-secret\"\n").unwrap();
        let err = c.validate().expect_err("short secret").to_string();
        assert!(err.contains("edge.signed_urls.secret"), "{err}");
        assert!(!err.contains("tooshort-secret"), "{err}");
        assert!(!format!("{:?}", c.edge).contains("tooshort-secret"));
        let c = Config::parse("[edge.signed_urls]\nrequired = true\n").unwrap();
        let err = c.validate().expect_err("required, no secret").to_string();
        assert!(err.contains("edge.signed_urls.required"), "{err}");
        let c = Config::parse(
            "[edge.signed_urls]\nrequired = true\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        c.validate().expect("valid");
        assert!(c.edge.signed_urls.signer().is_some());
    }

    #[test]
    fn secret_keys_are_named_but_never_shown() {
        let c =
            Config::parse("[bus]\ncurve_secret_key = \"not-a-key-but-secret\"\n").expect("parses");
        let err = c.validate().expect_err("bad secret").to_string();
        assert!(err.contains("bus.curve_secret_key"), "{err}");
        assert!(!err.contains("not-a-key-but-secret"), "{err}");
        assert!(!format!("{:?}", c.bus).contains("not-a-key-but-secret"));
    }
}
