//! zoomate: an HLS/DASH transcoding origin and a live-aware edge cache.
//!
//! # Layout
//!
//! A segment's life is the architecture; the modules follow it in order:
//!
//! - [`config`]    — the serde tree, embedded default, validation naming key and value.
//! - [`ingest`]    — live input: RTMP publishers, RTP over UDP, the built-in test pattern.
//! - [`transcode`] — GStreamer: decode once, aligned ABR ladder from `pipelines/` templates.
//! - [`packaging`] — pure HLS media/multivariant playlist and DASH manifest writers.
//! - [`stream`]    — a stream's lifecycle: session per publisher, timeline across reconnects.
//! - [`store`]     — atomic segment and playlist files, retention janitor.
//! - [`bus`]       — Cap'n Proto announcements over ZeroMQ pub/sub.
//! - [`origin`]    — serves the store over HTTP.
//! - [`edge`]      — viewers' proxy: route → cache → balance → coalesced origin fetch.
//! - [`http`]      — HTTP pieces shared by origin and edge (paths, headers, limits).
//! - [`layout`]    — every name: URL paths, store paths, file names, reserved names.
//! - [`vod`]       — files in, complete HLS assets out (same aligned ladder as live).
//! - [`app`]       — wires the roles together and owns the one shutdown signal.

pub mod app;
pub mod bus;
pub mod config;
pub mod edge;
pub mod http;
pub mod ingest;
pub mod layout;
pub mod origin;
pub mod packaging;
pub mod store;
pub mod stream;
pub mod transcode;
pub mod vod;

/// The one shutdown signal every task receives.
pub type Shutdown = tokio_util::sync::CancellationToken;
