//! `[bus]`: the ZeroMQ segment bus (owned by the bus module).

use super::ConfigError;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// Publish announcements from this origin.
    pub enabled: bool,
    /// ZeroMQ endpoint the origin's PUB socket binds (or connects to, with `publish_connect`).
    pub publish_endpoint: String,
    /// Connect the PUB socket to a `zoomate bus proxy` frontend instead of binding.
    pub publish_connect: bool,
    /// Interval between origin heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Messages queued for the publisher task before new ones are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            enabled: true,
            publish_endpoint: "tcp://127.0.0.1:5556".into(),
            publish_connect: false,
            heartbeat_interval_ms: 1_000,
            queue_capacity: 4_096,
        }
    }
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
        if !(100..=60_000).contains(&self.heartbeat_interval_ms) {
            return Err(ConfigError::invalid(
                "bus.heartbeat_interval_ms",
                self.heartbeat_interval_ms,
                "must be 100..=60000",
            ));
        }
        if !(16..=1_000_000).contains(&self.queue_capacity) {
            return Err(ConfigError::invalid(
                "bus.queue_capacity",
                self.queue_capacity,
                "must be 16..=1000000",
            ));
        }
        Ok(())
    }
}
