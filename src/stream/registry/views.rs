//! What the registry shows: every stream (live or configured) as a [`StreamInfo`] for the API,
//! and the slowest encoder speed for the heartbeat.

use super::{LiveEntry, StreamRegistry};
use crate::config::StreamSource;
use crate::stream::stats::RenditionFigures;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// What feeds a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSourceKind {
    Rtmp,
    TestPattern,
    RtpMpegts,
    RtpSdp,
    Srt,
    /// A WebRTC publisher (WHIP).
    Whip,
}

impl LiveSourceKind {
    pub(super) fn of(source: &StreamSource) -> LiveSourceKind {
        match source {
            StreamSource::TestPattern { .. } => LiveSourceKind::TestPattern,
            StreamSource::RtpMpegts { .. } => LiveSourceKind::RtpMpegts,
            StreamSource::RtpSdp { .. } => LiveSourceKind::RtpSdp,
            StreamSource::Srt { .. } => LiveSourceKind::Srt,
        }
    }
}

/// Where a stream is in its life, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// A session runs.
    Live,
    /// An operator ended it: its session is finishing its open segments.
    Ending,
    /// A configured stream with no session now (between restarts, or ended by an operator).
    Offline,
}

/// One stream at one moment (the registry's view; the API turns it into its own types).
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub name: String,
    pub state: StreamState,
    pub source: LiveSourceKind,
    /// RTMP, WHIP: the publisher's address (WHIP through the edge: as the edge names it).
    pub publisher: Option<std::net::SocketAddr>,
    /// When the current session started (none when offline).
    pub started_at: Option<SystemTime>,
    pub uptime: Option<Duration>,
    /// Per rendition, what the current session produced.
    pub renditions: Vec<(String, RenditionFigures)>,
}

impl StreamRegistry {
    /// Streams with a running session.
    pub fn live_streams(&self) -> Vec<String> {
        self.live_map().keys().cloned().collect()
    }

    /// Every live stream and every configured one (offline when it has no session), by name.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let live = self.live_map();
        let mut out: BTreeMap<String, StreamInfo> = live
            .iter()
            .map(|(name, e)| (name.clone(), info(name, e)))
            .collect();
        drop(live);
        let config = self.config.load();
        for sc in &config.streams {
            out.entry(sc.name.clone()).or_insert_with(|| StreamInfo {
                name: sc.name.clone(),
                state: StreamState::Offline,
                source: match sc.source {
                    crate::config::SourceKind::TestPattern => LiveSourceKind::TestPattern,
                    crate::config::SourceKind::RtpMpegts => LiveSourceKind::RtpMpegts,
                    crate::config::SourceKind::RtpSdp => LiveSourceKind::RtpSdp,
                    crate::config::SourceKind::Srt => LiveSourceKind::Srt,
                },
                publisher: None,
                started_at: None,
                uptime: None,
                renditions: Vec::new(),
            });
        }
        out.into_values().collect()
    }

    /// One stream, live or configured.
    pub fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.streams().into_iter().find(|s| s.name == name)
    }

    /// The slowest rendition's encoder speed over every live stream (the heartbeat's
    /// `loadEncoderSpeed`: below 1.0 this origin falls behind real time); `None` when nothing
    /// has been measured.
    pub fn slowest_encode_speed(&self) -> Option<f64> {
        let live = self.live_map();
        live.values()
            .flat_map(|e| {
                let stats = e.stats.lock().unwrap_or_else(|p| p.into_inner());
                stats
                    .figures()
                    .into_iter()
                    .filter_map(|(_, f)| f.encode_speed)
                    .collect::<Vec<_>>()
            })
            .min_by(f64::total_cmp)
    }
}

fn info(name: &str, e: &LiveEntry) -> StreamInfo {
    let renditions = e.stats.lock().unwrap_or_else(|p| p.into_inner()).figures();
    StreamInfo {
        name: name.to_string(),
        state: if e.end.is_cancelled() {
            StreamState::Ending
        } else {
            StreamState::Live
        },
        source: e.source,
        publisher: e.publisher.as_ref().map(|p| p.peer),
        started_at: Some(e.started_at),
        uptime: Some(e.started.elapsed()),
        renditions,
    }
}
