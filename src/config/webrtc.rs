//! `[webrtc]`: WHIP ingest (browsers, OBS) through GStreamer's `webrtcbin`: how many publishers,
//! how long negotiation may take, and where ICE may listen.

use super::{ConfigError, Secret, check_range};
use serde::Deserialize;
use std::net::IpAddr;

/// Entries `webrtc.trusted_relays` may list (edges, not clients).
pub const MAX_TRUSTED_RELAYS: usize = 64;

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebrtcConfig {
    /// Serve `POST /whip/{stream}` on the origin's listener (and relay it from the edge's).
    pub enabled: bool,
    /// WHIP sessions at once (each is a live stream with a full ladder); more get 503.
    pub max_sessions: usize,
    /// WHEP viewers of one stream at once; more get 503.
    pub max_viewers_per_stream: usize,
    /// WHEP viewers in total at once; more get 503.
    pub max_viewers: usize,
    /// Largest SDP offer accepted, in bytes (a browser's is 4-8 KiB).
    pub max_offer_bytes: usize,
    /// From the offer to the answer (ICE gathering included), in milliseconds; then 503.
    pub answer_timeout_ms: u64,
    /// From the answer to the first decoded video frame, in milliseconds; then the session ends.
    pub connect_timeout_ms: u64,
    /// A publisher that sends no video for this long has left: its stream ends, in milliseconds.
    pub silence_timeout_ms: u64,
    /// Receiver jitter buffer latency, in milliseconds.
    pub jitter_latency_ms: u64,
    /// UDP ports ICE may use: `ice_port_min..=ice_port_max`; both 0 = any free port.
    pub ice_port_min: u16,
    pub ice_port_max: u16,
    /// Only host candidates on this address are offered to peers ("" = every interface's).
    pub ice_address: String,
    /// Addresses whose `X-Forwarded-For` names the publisher: zoomate edges relaying WHIP
    /// (`zoomate run` relays over loopback). From anyone else the header is ignored, so a
    /// client cannot pick the address its failed attempts are counted against.
    pub trusted_relays: Vec<String>,
    /// `stun://host:port`, or "" for none (none is needed on one host or a LAN).
    pub stun_server: String,
    /// `turn://user:password@host:port` (or `turns://`), or "" for none. Holds a password:
    /// redacted in the API's config view.
    pub turn_server: Secret,
}

impl WebrtcConfig {
    /// The parsed `ice_address` (validated: `None` when empty).
    pub fn ice_address(&self) -> Option<IpAddr> {
        self.ice_address.parse().ok()
    }

    /// Whether `peer` is a relay whose `X-Forwarded-For` is believed.
    pub fn is_trusted_relay(&self, peer: IpAddr) -> bool {
        self.trusted_relays.iter().any(|r| {
            r.parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical() == peer.to_canonical())
        })
    }

    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_range(
            errors,
            "webrtc.trusted_relays",
            self.trusted_relays.len(),
            0..=MAX_TRUSTED_RELAYS,
        );
        for relay in &self.trusted_relays {
            if relay.parse::<IpAddr>().is_err() {
                errors.push(ConfigError::invalid(
                    "webrtc.trusted_relays",
                    relay,
                    "must be a list of IP addresses (the edges that relay WHIP)",
                ));
            }
        }
        check_range(errors, "webrtc.max_sessions", self.max_sessions, 1..=256);
        check_range(errors, "webrtc.max_viewers", self.max_viewers, 1..=10_000);
        check_range(
            errors,
            "webrtc.max_viewers_per_stream",
            self.max_viewers_per_stream,
            1..=10_000,
        );
        check_range(
            errors,
            "webrtc.max_offer_bytes",
            self.max_offer_bytes,
            1024..=1 << 20,
        );
        check_range(
            errors,
            "webrtc.answer_timeout_ms",
            self.answer_timeout_ms,
            500..=60_000,
        );
        check_range(
            errors,
            "webrtc.connect_timeout_ms",
            self.connect_timeout_ms,
            1000..=120_000,
        );
        check_range(
            errors,
            "webrtc.silence_timeout_ms",
            self.silence_timeout_ms,
            500..=600_000,
        );
        check_range(
            errors,
            "webrtc.jitter_latency_ms",
            self.jitter_latency_ms,
            0..=5000,
        );
        match (self.ice_port_min, self.ice_port_max) {
            (0, 0) => {}
            (min, max) if min < 1024 || max < min => errors.push(ConfigError::invalid(
                "webrtc.ice_port_min",
                format!("{min}..{max}"),
                "ice_port_min..=ice_port_max must be a range of ports from 1024 up (both 0: any)",
            )),
            _ => {}
        }
        if !self.ice_address.is_empty() && self.ice_address.parse::<IpAddr>().is_err() {
            errors.push(ConfigError::invalid(
                "webrtc.ice_address",
                &self.ice_address,
                "must be an IP address or empty",
            ));
        }
        for (key, value, schemes) in [
            (
                "webrtc.stun_server",
                self.stun_server.as_str(),
                &["stun://"][..],
            ),
            (
                "webrtc.turn_server",
                self.turn_server.expose(),
                &["turn://", "turns://"][..],
            ),
        ] {
            let ok = value.is_empty()
                || (schemes.iter().any(|s| value.starts_with(s))
                    && !value.contains(|c: char| c.is_whitespace() || c.is_control()));
            if !ok {
                // A TURN URL holds a password: named, not echoed.
                let shown = if key.ends_with("turn_server") {
                    "(hidden)"
                } else {
                    value
                };
                errors.push(ConfigError::invalid(
                    key,
                    shown,
                    format!("must start with {} (or be empty)", schemes.join(" or ")),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error(toml: &str) -> String {
        Config::parse(toml)
            .and_then(|c| c.validate())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_webrtc_keys_are_named_with_their_values() {
        let e = error("[webrtc]\nice_port_min = 50000\nice_port_max = 40000\n");
        assert!(
            e.contains("webrtc.ice_port_min") && e.contains("50000..40000"),
            "{e}"
        );
        let e = error("[webrtc]\nice_address = \"eth0\"\n");
        assert!(e.contains("webrtc.ice_address = \"eth0\""), "{e}");
        let e = error("[webrtc]\nstun_server = \"stun.example.com:3478\"\n");
        assert!(
            e.contains("webrtc.stun_server") && e.contains("stun://"),
            "{e}"
        );
        let e = error("[webrtc]\nturn_server = \"http://u:secret@x\"\n");
        assert!(
            e.contains("webrtc.turn_server") && !e.contains("secret"),
            "{e}"
        );
        let e = error("[webrtc]\ntrusted_relays = [\"edge-1\"]\n");
        assert!(e.contains("webrtc.trusted_relays = \"edge-1\""), "{e}");
        let e = error("[webrtc]\nmax_sessions = 0\n");
        assert!(e.contains("webrtc.max_sessions = \"0\""), "{e}");
        assert!(Config::parse("[webrtc]\nice_port_min = 40000\nice_port_max = 40100\nice_address = \"127.0.0.1\"\n").unwrap().validate().is_ok());
    }
}
