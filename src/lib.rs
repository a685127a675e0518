//! zoomate: an HLS/DASH transcoding origin and a live-aware edge cache.
//!
//! # Layout
//!
//! A segment's life is the architecture; the modules follow it in order:
//!
//! - [`config`]    — the serde tree, embedded default, validation naming every bad key and value.
//! - [`plan`]      — the validated config resolved once (sources, SDP files) before anything binds.
//! - [`ingest`]    — live input: RTMP publishers, RTP over UDP, the built-in test pattern.
//! - [`transcode`] — GStreamer: decode once, aligned ABR ladder from `pipelines/` templates;
//!   streaming threads report typed events into one bounded channel.
//! - [`stream`]    — a stream's lifecycle: a session per publisher (a phase machine driven by
//!   pipeline events and watchdogs), the segment assembler, the timeline across reconnects,
//!   the registry that supervises sessions.
//! - [`packaging`] — pure HLS media/multivariant playlist and DASH manifest writers (and the one
//!   playlist reader).
//! - [`store`]     — atomic segment and playlist files, retention janitor, start-up sweep of a
//!   crash's leftovers.
//! - [`layout`]    — every name: URL paths, store paths, file names, reserved names.
//! - [`bus`]       — Cap'n Proto announcements over ZeroMQ (libzmq) pub/sub, CURVE, proxy.
//! - [`origin`]    — serves the store over HTTP.
//! - [`edge`]      — viewers' proxy: route → cache → balance → coalesced origin fetch → respond;
//!   discovery and health in the background; every bus announcement checked before it is believed.
//! - [`http`]      — HTTP pieces shared by origin and edge (paths, headers, fair connection slots,
//!   metrics).
//! - [`whep`]      — WebRTC viewers (WHEP): the top rendition's H.264 fanned out to a webrtcbin each.
//! - [`vod`]       — files in, complete HLS/DASH assets out (same aligned ladder as live).
//! - [`api`]       — the operators' JSON API (`/api/v1/`) and the embedded web console
//!   (`/console/`), on the origin's and the edge's listeners.
//! - [`app`]       — wires the roles together and owns the one shutdown, carried out in stages.
//! - [`reload`]    — hot reload (SIGHUP): the config checked again, its live keys applied.

pub mod api;
pub mod app;
pub mod bus;
pub mod config;
pub mod edge;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod layout;
pub mod origin;
pub mod packaging;
pub mod plan;
pub mod reload;
pub mod store;
pub mod stream;
pub mod transcode;
pub mod vod;
pub mod whep;

/// The one shutdown signal every task receives.
pub type Shutdown = tokio_util::sync::CancellationToken;
