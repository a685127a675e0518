//! A live stream's lifecycle: a session per publisher (or configured source), and a timeline
//! that outlives sessions so media sequences continue across reconnects and restarts.

pub mod assembler;
pub mod health;
pub mod phase;
mod publish;
pub mod publisher_feed;
pub mod registry;
pub mod session;
pub mod stats;
pub mod timeline;

pub use health::{Health, StreamHealth, UnhealthyReason};
pub use registry::{
    EndError, LiveSourceKind, PublishRefusal, StreamInfo, StreamRegistry, StreamState,
    WebrtcPublish,
};
pub use session::{Announce, SessionContext, SessionError};
pub use timeline::StreamTimeline;
