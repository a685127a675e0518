//! Live input. Each source ends as raw media inside a transcode pipeline:
//! - [`rtmp`]: publishers (ffmpeg, OBS, GStreamer `rtmp2sink`) → FLV bytes → `appsrc ! flvdemux`;
//! - RTP (MPEG-TS over UDP) and the test pattern are pure pipeline sources in `pipelines/`.

pub mod flv;
pub mod rtmp;
