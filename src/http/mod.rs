//! HTTP pieces shared by the origin and the edge.

pub mod base_url;
pub mod headers;
pub mod held;
pub mod metrics;
pub mod paths;
pub mod server;
pub mod signalling;
pub mod slots;
pub use server::{Body, ClientAddr, serve};
