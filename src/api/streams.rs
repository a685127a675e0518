//! `/api/v1/streams…`: the origin's streams (from the registry) with the edge's viewer counts
//! when this process runs one; kick a publisher, end a stream.

use super::dto;
use crate::config::Config;
use crate::stream::{EndError, LiveSourceKind, StreamInfo, StreamState};
use std::collections::BTreeMap;

pub fn list(
    infos: Vec<StreamInfo>,
    config: &Config,
    viewers: Option<&BTreeMap<String, u64>>,
) -> dto::StreamList {
    dto::StreamList {
        streams: infos.into_iter().map(|s| one(s, config, viewers)).collect(),
    }
}

pub fn one(s: StreamInfo, config: &Config, viewers: Option<&BTreeMap<String, u64>>) -> dto::Stream {
    let dash = (config.format_for(&s.name) == crate::config::SegmentFormat::Cmaf)
        .then(|| crate::layout::live_manifest_uri(&s.name));
    dto::Stream {
        viewers: viewers.map(|v| v.get(&s.name).copied().unwrap_or(0)),
        urls: dto::StreamUrls {
            hls: crate::layout::live_master_uri(&s.name),
            dash,
        },
        state: match s.state {
            StreamState::Live => "live",
            StreamState::Ending => "ending",
            StreamState::Offline => "offline",
        },
        source: dto::Source {
            kind: match s.source {
                LiveSourceKind::Rtmp => "rtmp",
                LiveSourceKind::TestPattern => "test-pattern",
                LiveSourceKind::RtpMpegts => "rtp-mpegts",
                LiveSourceKind::RtpSdp => "rtp-sdp",
                LiveSourceKind::Srt => "srt",
                LiveSourceKind::Whip => "whip",
            },
            publisher: s.publisher.map(|p| p.to_string()),
        },
        started_at: s.started_at.map(|t| {
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            crate::packaging::datetime::rfc3339_millis(ms)
        }),
        uptime_seconds: s.uptime.map(|d| round3(d.as_secs_f64())),
        renditions: s
            .renditions
            .into_iter()
            .map(|(name, f)| dto::Rendition {
                name,
                bitrate_bits_per_second: f.bitrate_bps,
                encode_speed_ratio: f.encode_speed.map(round3),
                segments: f.segments,
                parts: f.parts,
                discontinuities: f.discontinuities,
                bytes: f.bytes,
                media_seconds: f.media_ms as f64 / 1000.0,
            })
            .collect(),
        name: s.name,
    }
}

/// 404 or 409 for a refused kick or end.
pub fn refusal(e: &EndError) -> (http::StatusCode, &'static str) {
    match e {
        EndError::NotLive(_) => (http::StatusCode::NOT_FOUND, "not_found"),
        EndError::NoPublisher(_) => (http::StatusCode::CONFLICT, "conflict"),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
