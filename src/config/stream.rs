//! `[[streams]]`: streams that exist without an RTMP publisher (test pattern, RTP, SRT), and the
//! typed source each resolves to (see [`crate::plan`]).

use super::{Secret, SegmentFormat};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a configured stream's media comes from (derived from [`StreamConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamSource {
    /// Built-in moving test pattern with a tone.
    TestPattern { width: u32, height: u32 },
    /// MPEG-TS over RTP on a UDP port (`ffmpeg -f rtp_mpegts`).
    RtpMpegts { listen: SocketAddr, rtp: RtpOptions },
    /// H.264 (+ AAC or Opus) RTP as an SDP file describes it (ports, payload types, codecs).
    RtpSdp {
        sdp: PathBuf,
        has_audio: bool,
        rtp: RtpOptions,
    },
    /// MPEG-TS over SRT: a listener on `listen` that one caller at a time pushes to.
    Srt {
        listen: SocketAddr,
        srt: SrtOptions,
        /// No video for this long ends the stream, as for RTP.
        silence_timeout_ms: u64,
    },
}

/// An SRT listener's settings (`[[streams]] source = "srt"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtOptions {
    /// SRT's receiver latency (its retransmission window), milliseconds.
    pub latency_ms: u64,
    /// AES passphrase a caller must use (10..=79 characters); `None`: unencrypted.
    pub passphrase: Option<Secret>,
}

/// `latency_ms` of an SRT source that does not set it (libsrt's own default is 120).
pub const DEFAULT_SRT_LATENCY_MS: u64 = 120;

/// Network-source behaviour shared by the RTP kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpOptions {
    /// No video for this long ends the stream (segments finished and listed, stream-ended
    /// announced); a returning source is a new session on the same timeline.
    pub silence_timeout_ms: u64,
    /// Jitter buffer: how long packets wait for late or reordered ones.
    pub jitter_latency_ms: u64,
}

/// `silence_timeout_ms` of an RTP source that does not set it.
pub const DEFAULT_SILENCE_TIMEOUT_MS: u64 = 5_000;
/// `jitter_latency_ms` of an RTP source that does not set it.
pub const DEFAULT_JITTER_LATENCY_MS: u64 = 200;

impl StreamSource {
    /// The RTP options of an RTP source.
    pub fn rtp_options(&self) -> Option<RtpOptions> {
        match self {
            StreamSource::TestPattern { .. } | StreamSource::Srt { .. } => None,
            StreamSource::RtpMpegts { rtp, .. } | StreamSource::RtpSdp { rtp, .. } => Some(*rtp),
        }
    }

    /// The silence timeout of a network source (RTP, SRT); `None` for self-timed sources.
    pub fn silence_timeout_ms(&self) -> Option<u64> {
        match self {
            StreamSource::TestPattern { .. } => None,
            StreamSource::RtpMpegts { rtp, .. } | StreamSource::RtpSdp { rtp, .. } => {
                Some(rtp.silence_timeout_ms)
            }
            StreamSource::Srt {
                silence_timeout_ms, ..
            } => Some(*silence_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    TestPattern,
    RtpMpegts,
    RtpSdp,
    Srt,
}

/// A stream that exists without an RTMP publisher (`[[streams]]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    /// `test-pattern`, `rtp-mpegts`, `rtp-sdp` or `srt`.
    pub source: SourceKind,
    /// test-pattern: picture size (default 1280x720).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// rtp-mpegts, srt: UDP address to receive on.
    pub listen: Option<SocketAddr>,
    /// rtp-sdp: the SDP file (ports and codecs come from it).
    pub sdp: Option<PathBuf>,
    /// rtp-*, srt: milliseconds without video before the stream ends (default 5000).
    pub silence_timeout_ms: Option<u64>,
    /// rtp-*: jitter buffer latency in milliseconds (default 200).
    pub jitter_latency_ms: Option<u64>,
    /// srt: SRT receiver latency in milliseconds (default 120).
    pub latency_ms: Option<u64>,
    /// srt: passphrase the caller must encrypt with (10..=79 characters; default none).
    /// Redacted in the API's config view.
    pub passphrase: Option<Secret>,
    /// Segment format of this stream; default `ladder.format`.
    pub format: Option<SegmentFormat>,
    /// `session` (default): each session's timeline starts where the stream's last one ended.
    /// `wallclock`: segment boundaries, media sequence numbers, part names, `tfdt` and
    /// PROGRAM-DATE-TIME all come from the wall clock, so two origins fed the same source
    /// publish the same names for the same media (origin redundancy, see README).
    #[serde(default)]
    pub timing: StreamTiming,
}

/// Where a live stream's timeline comes from (`[[streams]] timing`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StreamTiming {
    /// The origin's own session: sequence numbers continue from the stream's last session.
    #[default]
    Session,
    /// The wall clock (unix time): deterministic across origins (see [`crate::transcode::wallclock`]).
    Wallclock,
}
