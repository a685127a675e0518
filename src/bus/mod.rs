//! The segment bus: Cap'n Proto messages over ZeroMQ pub/sub.
//!
//! Origins publish (`publisher`), edges and tools subscribe (`subscriber`), `proxy` joins many
//! of each at one address, `tail` prints messages for operators. Every message is two frames,
//! `[topic, payload]`; see `schema/zoomate_bus.capnp` for the payload.

pub mod codec;
pub mod event;
pub mod proxy;
pub mod publisher;
pub mod subscriber;
pub mod tail;

pub use event::{BusEvent, RenditionInfo};

/// One message as a subscriber received it: the endpoint it arrived on (the peer the edge
/// connected to, so the identity it authenticated when CURVE is on), its topic frame as sent,
/// and the decoded payload. The edge checks the three against each other before believing any.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub endpoint: std::sync::Arc<str>,
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
        source: zeromq::ZmqError,
    },
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}
