//! Live input. Each source ends as raw media inside a transcode pipeline:
//! - [`rtmp`]: publishers (ffmpeg, OBS, GStreamer `rtmp2sink`) → FLV bytes → `appsrc ! flvdemux`,
//!   within memory budgets and connection slots no one peer can exhaust;
//! - [`rtp`]: MPEG-TS over RTP and H.264 (+AAC/Opus) RTP described by an SDP file are pipeline
//!   sources in `pipelines/`; this module checks SDP files and guards the RTP sockets;
//! - [`srt`]: MPEG-TS from an SRT caller to a listener per stream (`srtsrc` in a pipeline
//!   source); this module sets the passphrase and checks the caller's stream id;
//! - [`whip`]: WebRTC publishers (browsers, OBS) over WHIP: HTTP signalling, then `webrtcbin`
//!   in a pipeline source;
//! - the test pattern is a pure pipeline source;
//! - [`memory`]: freed memory handed back to the system after a peer made us hold a lot.

pub mod flv;
pub mod memory;
pub mod rtmp;
pub mod rtp;
pub mod srt;
pub mod whip;
