//! The segment bus: Cap'n Proto messages over ZeroMQ pub/sub.

pub mod event;
pub use event::{BusEvent, RenditionInfo};
