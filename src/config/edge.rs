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
    /// Bus endpoints to subscribe to (origins' PUB sockets or a bus proxy backend).
    pub bus_connect: Vec<String>,
    pub balance: BalancePolicy,
    /// Cache capacity, in bytes (segments and playlists, weighed by body size).
    pub cache_bytes: u64,
    pub limits: HttpLimits,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            enabled: true,
            listen: "0.0.0.0:8080".parse().expect("static address"),
            origins: Vec::new(),
            bus_connect: Vec::new(),
            balance: BalancePolicy::ConsistentHash,
            cache_bytes: 512 * 1024 * 1024,
            limits: HttpLimits::default(),
        }
    }
}

impl EdgeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, o) in self.origins.iter().enumerate() {
            if !o.starts_with("http://") {
                return Err(ConfigError::invalid(format!("edge.origins[{i}]"), o, "must be an http:// URL"));
            }
        }
        if self.cache_bytes < 1024 * 1024 {
            return Err(ConfigError::invalid("edge.cache_bytes", self.cache_bytes, "must be at least 1048576"));
        }
        super::validate_limits("edge.limits", &self.limits)
    }
}
