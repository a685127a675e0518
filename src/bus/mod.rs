//! The segment bus: Cap'n Proto messages over ZeroMQ pub/sub (libzmq).
//!
//! Origins publish (`publisher`), edges and tools subscribe (`subscriber`), `proxy` joins many
//! of each at one address, `tail` prints messages for operators; `engine` owns the libzmq
//! context, socket limits, CURVE keys and the ZAP handler. Every message is two frames,
//! `[topic, payload]`; see `schema/zoomate_bus.capnp` for the payload.

pub mod codec;
pub mod engine;
pub mod event;
pub mod heartbeat;
pub mod proxy;
pub mod publisher;
pub mod subscriber;
pub mod tail;

pub use event::{BusEvent, RenditionInfo};

/// One message as a subscriber received it: the endpoint it arrived on (the peer the edge
/// connected to), the CURVE server key that peer proved it holds (when CURVE is on for that
/// endpoint), its topic frame as sent, and the decoded payload. The edge checks them against
/// each other before believing any.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub endpoint: std::sync::Arc<str>,
    /// Z85 public key the publisher (or proxy) authenticated with; `None` without CURVE.
    pub server_key: Option<std::sync::Arc<str>>,
    pub topic: String,
    pub event: BusEvent,
}

#[allow(clippy::all, dead_code, unused_parens)]
pub mod zoomate_bus_capnp {
    include!(concat!(env!("OUT_DIR"), "/zoomate_bus_capnp.rs"));
}

/// Bus errors.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("zeromq {endpoint}: {source}")]
    Zmq {
        endpoint: String,
        source: zmq::Error,
    },
    #[error("{what}: {source}")]
    Key {
        what: String,
        source: engine::KeyError,
    },
    #[error("config: {0}")]
    Config(String),
    #[error("ZAP handler: {0}")]
    Zap(String),
    #[error("bus thread: {0}")]
    Thread(String),
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}
