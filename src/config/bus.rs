//! `[bus]`: the ZeroMQ segment bus (owned by the bus module).

use super::{ConfigError, Secret};
use crate::bus::engine::{self, CurveKey, KeyPair};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Smallest and largest accepted `bus.max_message_bytes`.
pub const MAX_MESSAGE_BYTES_RANGE: std::ops::RangeInclusive<u64> = 4096..=64 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Publish announcements from this origin.
    pub enabled: bool,
    /// ZeroMQ endpoint the origin's PUB socket binds (or connects to, with `publish_connect`).
    pub publish_endpoint: String,
    /// Connect the PUB socket to a `zoomate bus proxy` frontend instead of binding.
    pub publish_connect: bool,
    /// Interval between origin heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Messages queued for the publisher task before new ones are dropped (and counted); also
    /// the sockets' high-water marks (messages per peer).
    pub queue_capacity: usize,
    /// Largest frame any bus socket accepts, in bytes (`ZMQ_MAXMSGSIZE`): a peer announcing a
    /// larger one is disconnected before anything is allocated for it.
    pub max_message_bytes: u64,
    /// This node's CURVE secret key (Z85, 40 characters; `zoomate bus keygen`). Turns CURVE on
    /// for every socket this node binds, and is the identity it connects with.
    pub curve_secret_key: Option<Secret>,
    /// Public keys (Z85) of the clients allowed on this node's bound bus sockets (the edges
    /// subscribing to an origin). Anyone else is refused in the handshake.
    pub curve_accept_keys: Vec<String>,
    /// With `publish_connect`: the proxy frontend's public key (Z85). Turns CURVE on for the
    /// connection; without `curve_secret_key` an ephemeral client key is used.
    pub publish_server_key: Option<String>,
    /// Allow plaintext, unauthenticated bus traffic on non-loopback addresses.
    pub allow_insecure_network: bool,
    /// `zoomate bus proxy` only.
    pub proxy: BusProxyConfig,
}

/// `[bus.proxy]`: keys for `zoomate bus proxy` (its own secret key is `bus.curve_secret_key`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusProxyConfig {
    /// Public keys (Z85) of the origins allowed to publish into the frontend.
    pub frontend_accept_keys: Vec<String>,
    /// Public keys (Z85) of the edges allowed to subscribe on the backend.
    pub backend_accept_keys: Vec<String>,
}

impl Default for BusConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        super::Config::defaults().bus.clone()
    }
}

/// Decodes one Z85 key, naming `key` and (for public keys) the value on error.
pub fn parse_key(key: &str, text: &str, secret: bool) -> Result<CurveKey, ConfigError> {
    CurveKey::from_z85(text).map_err(|e| {
        let shown = if secret { "<secret>" } else { text };
        ConfigError::invalid(
            key,
            shown,
            format!("{e}; make keys with `zoomate bus keygen`"),
        )
    })
}

/// Decodes a list of public keys (`key[i]` named on error).
pub fn parse_keys(key: &str, texts: &[String]) -> Result<HashSet<CurveKey>, ConfigError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| parse_key(&format!("{key}[{i}]"), t, false))
        .collect()
}

/// The refusal for plaintext bus traffic leaving the host.
pub fn insecure(key: &str, endpoint: &str, fix: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        endpoint,
        format!(
            "the bus would carry unauthenticated plaintext off this host; {fix} \
             (make keys with `zoomate bus keygen`), or set bus.allow_insecure_network = true"
        ),
    )
}

impl BusConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled
            && !(self.publish_endpoint.starts_with("tcp://")
                || self.publish_endpoint.starts_with("ipc://"))
        {
            return Err(ConfigError::invalid(
                "bus.publish_endpoint",
                &self.publish_endpoint,
                "must be tcp://HOST:PORT or ipc://PATH",
            ));
        }
        // Ranges first, all reported at once; the key checks below need valid keys to go on.
        let mut errors = Vec::new();
        super::check_range(
            &mut errors,
            "bus.heartbeat_interval_ms",
            self.heartbeat_interval_ms,
            100..=60_000,
        );
        super::check_range(
            &mut errors,
            "bus.queue_capacity",
            self.queue_capacity,
            16..=1_000_000,
        );
        super::check_range(
            &mut errors,
            "bus.max_message_bytes",
            self.max_message_bytes,
            MAX_MESSAGE_BYTES_RANGE,
        );
        ConfigError::all(errors)?;
        let pair = self.key_pair()?;
        let accepted = parse_keys("bus.curve_accept_keys", &self.curve_accept_keys)?;
        let server_key = self.publish_server_key()?;
        parse_keys(
            "bus.proxy.frontend_accept_keys",
            &self.proxy.frontend_accept_keys,
        )?;
        parse_keys(
            "bus.proxy.backend_accept_keys",
            &self.proxy.backend_accept_keys,
        )?;
        let curve_wanted = pair.is_some() || server_key.is_some() || !accepted.is_empty();
        if curve_wanted && !engine::has_curve() {
            return Err(ConfigError::invalid(
                "bus.curve_secret_key",
                "<secret>",
                "this libzmq was built without CURVE (install Debian's libzmq5)",
            ));
        }
        if self.enabled && !self.publish_connect {
            if pair.is_none() && !accepted.is_empty() {
                return Err(ConfigError::invalid(
                    "bus.curve_secret_key",
                    "",
                    "bus.curve_accept_keys needs this node's own secret key",
                ));
            }
            if pair.is_none()
                && !self.allow_insecure_network
                && !engine::is_local_endpoint(&self.publish_endpoint)
            {
                return Err(insecure(
                    "bus.publish_endpoint",
                    &self.publish_endpoint,
                    "set bus.curve_secret_key and bus.curve_accept_keys",
                ));
            }
        }
        if self.enabled
            && self.publish_connect
            && server_key.is_none()
            && !self.allow_insecure_network
            && !engine::is_local_endpoint(&self.publish_endpoint)
        {
            return Err(insecure(
                "bus.publish_endpoint",
                &self.publish_endpoint,
                "set bus.publish_server_key to the proxy's public key",
            ));
        }
        Ok(())
    }

    /// This node's key pair, from `curve_secret_key`.
    pub fn key_pair(&self) -> Result<Option<KeyPair>, ConfigError> {
        let Some(secret) = &self.curve_secret_key else {
            return Ok(None);
        };
        let secret = parse_key("bus.curve_secret_key", secret.expose(), true)?;
        KeyPair::from_secret(secret)
            .map(Some)
            .map_err(|e| ConfigError::invalid("bus.curve_secret_key", "<secret>", e.to_string()))
    }

    /// `curve_accept_keys`, decoded.
    pub fn accepted_keys(&self) -> Result<HashSet<CurveKey>, ConfigError> {
        parse_keys("bus.curve_accept_keys", &self.curve_accept_keys)
    }

    /// `publish_server_key`, decoded.
    pub fn publish_server_key(&self) -> Result<Option<CurveKey>, ConfigError> {
        self.publish_server_key
            .as_deref()
            .map(|t| parse_key("bus.publish_server_key", t, false))
            .transpose()
    }

    /// `zoomate bus proxy`: refuses plaintext on non-loopback endpoints and half-configured
    /// keys, before anything binds.
    pub fn validate_proxy(&self, frontend: &str, backend: &str) -> Result<(), ConfigError> {
        let pair = self.key_pair()?;
        for (key, endpoint, list, list_key) in [
            (
                "--frontend",
                frontend,
                &self.proxy.frontend_accept_keys,
                "bus.proxy.frontend_accept_keys",
            ),
            (
                "--backend",
                backend,
                &self.proxy.backend_accept_keys,
                "bus.proxy.backend_accept_keys",
            ),
        ] {
            let accepted = parse_keys(list_key, list)?;
            match (&pair, accepted.is_empty()) {
                (Some(_), true) => {
                    return Err(ConfigError::invalid(
                        list_key,
                        "[]",
                        "with bus.curve_secret_key set, list the public keys allowed on this side",
                    ));
                }
                (None, false) => {
                    return Err(ConfigError::invalid(
                        "bus.curve_secret_key",
                        "",
                        format!("{list_key} needs the proxy's own secret key"),
                    ));
                }
                (None, true)
                    if !self.allow_insecure_network && !engine::is_local_endpoint(endpoint) =>
                {
                    return Err(insecure(
                        key,
                        endpoint,
                        &format!(
                            "give the proxy a config with bus.curve_secret_key and {list_key}"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
