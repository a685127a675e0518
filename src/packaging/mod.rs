//! Packaging: zoomate's own playlist and manifest writers. Pure code: no GStreamer, sockets or
//! disk, so every rule is unit-tested here.

pub mod codecs;
pub mod hls;
pub mod multivariant;

pub use hls::{MediaPlaylist, PlaylistKind, ResumeState, Segment, parse_media_playlist_state};
pub use multivariant::{BandwidthMeter, VariantStream, render_multivariant};
