//! Packaging: zoomate's own playlist and manifest writers. Pure code: no GStreamer, sockets or
//! disk, so every rule is unit-tested here.

pub mod codecs;
pub mod dash;
pub mod datetime;
pub mod hls;
pub mod hls_reader;
pub mod hls_window;
pub mod ll_hls;
pub mod multivariant;

pub use dash::{
    DashAdaptation, DashManifest, DashRepresentation, DashSegment, MediaKind, render_mpd,
};
pub use hls::{
    MediaPlaylist, PlaylistKind, RenderOptions, RenditionReport, ResumeState, Segment,
    parse_media_playlist_state,
};
pub use ll_hls::{Directives, LowLatency, Part, PlaylistEnd, Verdict};
pub use multivariant::{
    AudioMedia, BandwidthMeter, VariantStream, render_multivariant, render_multivariant_with_audio,
};
