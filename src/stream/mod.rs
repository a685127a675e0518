//! A live stream's lifecycle: a session per publisher (or configured source), and a timeline
//! that outlives sessions so media sequences continue across reconnects and restarts.

pub mod assembler;
pub mod phase;
mod publish;
pub mod registry;
pub mod session;
pub mod timeline;

pub use registry::{PublishRefusal, StreamRegistry, WebrtcPublish};
pub use session::{Announce, SessionContext, SessionError};
pub use timeline::StreamTimeline;
