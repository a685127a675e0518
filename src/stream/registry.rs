//! The streams this origin serves: one live session per stream at a time, timelines kept
//! across sessions (publisher reconnects) and restored from disk (worker restarts).

use super::session::{Announce, NetworkSource, SessionContext, SessionError, run_session};
use super::timeline::StreamTimeline;
use crate::Shutdown;
use crate::config::{Config, StreamSource};
use crate::http::metrics::{Counter, Family, Registry};
use crate::ingest::rtmp::FlvReceiver;
use crate::ingest::rtp::RtpCounters;
use crate::plan::PlannedStream;
use crate::store::Janitor;
use crate::transcode::Templates;
use prometheus_client::encoding::EncodeLabelSet;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Labels of `zoomate_rtp_datagrams_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RtpLabels {
    stream: String,
    outcome: &'static str,
}

/// What a WebRTC publish needs from its signalling side.
pub struct WebrtcPublish {
    /// The offer sends Opus audio.
    pub has_audio: bool,
    pub latency_ms: u64,
    /// No video this long ends the session (the publisher left without DELETE).
    pub silence_timeout_ms: u64,
    /// Fired to end the session (DELETE, peer gone); fired by the session when it ends.
    pub stop: Shutdown,
    /// Gets the running pipeline once (negotiation).
    pub on_pipeline: Box<dyn FnOnce(&gst::Pipeline) + Send>,
    /// Called when the session is over, however it ended.
    pub on_end: Box<dyn FnOnce() + Send>,
}

/// Why a publisher may not publish now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("stream name is reserved by a configured source")]
    Reserved,
    #[error("stream is already live")]
    AlreadyLive,
    #[error("cannot build the source: {0}")]
    Template(String),
}

impl PublishRefusal {
    /// The HTTP status a WHIP publisher gets for it.
    pub fn status(&self) -> http::StatusCode {
        match self {
            PublishRefusal::ShuttingDown | PublishRefusal::Template(_) => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            PublishRefusal::Reserved => http::StatusCode::FORBIDDEN,
            PublishRefusal::AlreadyLive => http::StatusCode::CONFLICT,
        }
    }
}

/// Pause before restarting a configured stream whose pipeline failed.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(2);

pub struct StreamRegistry {
    config: Arc<Config>,
    templates: Templates,
    announce: Announce,
    janitor: Janitor,
    shutdown: Shutdown,
    timelines: Mutex<HashMap<String, Arc<Mutex<StreamTimeline>>>>,
    live: Mutex<HashSet<String>>,
    /// RTP datagram counters per configured RTP stream (bounded by the config).
    rtp_counters: Mutex<BTreeMap<String, Arc<RtpCounters>>>,
    next_session: AtomicU64,
    tasks: TaskTracker,
    /// Every live playlist's newest version, for the origin's blocking reloads.
    live_playlists: Arc<crate::store::live::LivePlaylists>,
    delays: Arc<super::session::PublishDelays>,
    /// WHEP viewers' feeds, one per stream.
    whep_feeds: Arc<crate::whep::feed::WhepFeeds>,
}

/// Removes a stream from the live set when its session ends, however it ends.
struct LiveGuard {
    registry: Arc<StreamRegistry>,
    stream: String,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Ok(mut live) = self.registry.live.lock() {
            live.remove(&self.stream);
        }
    }
}

impl StreamRegistry {
    pub fn new(config: Arc<Config>, announce: Announce, shutdown: Shutdown) -> Arc<StreamRegistry> {
        let janitor = Janitor::spawn(
            Duration::from_millis(config.hls.retain_after_window_ms),
            shutdown.clone(),
        );
        Arc::new(StreamRegistry {
            templates: Templates::new(&config.pipelines.dir),
            config,
            announce,
            janitor,
            shutdown,
            timelines: Mutex::new(HashMap::new()),
            live: Mutex::new(HashSet::new()),
            rtp_counters: Mutex::new(BTreeMap::new()),
            delays: Arc::default(),
            whep_feeds: Arc::default(),
            next_session: AtomicU64::new(now_secs()),
            tasks: TaskTracker::new(),
            live_playlists: Arc::default(),
        })
    }

    /// Deletes `paths` (together) after the retention delay, like segments leaving a window:
    /// what the start-up sweep found unlisted but still within its grace.
    pub fn schedule_expiry(&self, paths: Vec<std::path::PathBuf>) {
        self.janitor.schedule_all(paths);
    }

    /// The newest version of every live media playlist (the origin serves from it).
    pub fn live_playlists(&self) -> Arc<crate::store::live::LivePlaylists> {
        self.live_playlists.clone()
    }

    /// Every stream's WHEP feed.
    pub fn whep_feeds(&self) -> Arc<crate::whep::feed::WhepFeeds> {
        self.whep_feeds.clone()
    }

    /// Streams with a running session.
    pub fn live_streams(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .live
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn try_go_live(self: &Arc<Self>, stream: &str) -> Option<LiveGuard> {
        let mut live = self.live.lock().ok()?;
        if !live.insert(stream.to_string()) {
            return None;
        }
        Some(LiveGuard {
            registry: self.clone(),
            stream: stream.to_string(),
        })
    }

    fn context(&self, stream: &str) -> SessionContext {
        SessionContext {
            stream: stream.to_string(),
            config: self.config.clone(),
            templates: self.templates.clone(),
            timeline: self.timeline(stream),
            announce: self.announce.clone(),
            janitor: self.janitor.clone(),
            live_playlists: self.live_playlists.clone(),
            session_id: self.next_session.fetch_add(1, Ordering::Relaxed),
            network: None,
            delays: self.delays.clone(),
            on_pipeline: None,
            whep_feed: self
                .config
                .webrtc
                .enabled
                .then(|| self.whep_feeds.feed(stream)),
        }
    }

    /// The stream's timeline; on first use, restored from playlists a previous process wrote.
    fn timeline(&self, stream: &str) -> Arc<Mutex<StreamTimeline>> {
        let mut map = self.timelines.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(stream.to_string())
            .or_insert_with(|| {
                let target = self.config.ladder.segment_duration_ms.div_ceil(1000);
                let low_latency = self
                    .config
                    .part_duration_for(stream)
                    .map(|part_target_ms| crate::packaging::LowLatency {
                        part_target_ms,
                        segment_duration_ms: self.config.ladder.segment_duration_ms,
                    });
                let mut t = StreamTimeline::new(target, self.config.hls.window_segments)
                    .with_low_latency(low_latency);
                let dir = crate::store::live_stream_dir(&self.config.store.dir, stream);
                let names = self.config.ladder.renditions.iter().map(|r| r.name.as_str()).chain([crate::transcode::AUDIO_RENDITION]);
                for name in names {
                    if let Ok(text) = std::fs::read_to_string(dir.join(name).join(crate::layout::MEDIA_PLAYLIST)) {
                        if t.restore(name, &text) {
                            tracing::info!(stream, rendition = %name, "timeline restored from disk; continuing media sequence");
                        }
                    }
                }
                Arc::new(Mutex::new(t))
            })
            .clone()
    }

    /// A publisher wants to push `stream`: a session reads `media` (bounded in bytes by the
    /// ingest). `Err` says why not.
    pub fn start_publish(self: &Arc<Self>, stream: &str, media: FlvReceiver) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("server is shutting down".into());
        }
        if self.config.streams.iter().any(|s| s.name == stream) {
            return Err("stream name is reserved by a configured source".into());
        }
        let guard = self
            .try_go_live(stream)
            .ok_or_else(|| "stream is already live".to_string())?;
        let source = self
            .templates
            .render("source-rtmp", &[])
            .map_err(|e| e.to_string())?;
        let ctx = self.context(stream);
        let shutdown = self.shutdown.clone();
        let stream = stream.to_string();
        self.tasks.spawn(async move {
            let _guard = guard;
            match run_session(ctx, source, Some(media), shutdown).await {
                Ok(()) => tracing::info!(stream, "publish session ended"),
                Err(e) => tracing::error!(stream, error = %e, "publish session failed"),
            }
            // A pipeline torn down frees its buffers (and a publisher may have filled its
            // queue): give the memory back.
            crate::ingest::memory::trim_soon();
        });
        Ok(())
    }

    /// A stop signal for one session: fired by its owner (WHIP DELETE) or by shutdown.
    pub fn session_stop(&self) -> Shutdown {
        self.shutdown.child_token()
    }

    /// A WebRTC (WHIP) publisher for `stream`: a session with the `source-webrtc` template
    /// whose running pipeline is handed to `publish.on_pipeline` (to negotiate). Refused like
    /// an RTMP publish (already live, reserved name, shutting down).
    pub fn start_webrtc(
        self: &Arc<Self>,
        stream: &str,
        publish: WebrtcPublish,
    ) -> Result<(), PublishRefusal> {
        if self.shutdown.is_cancelled() {
            return Err(PublishRefusal::ShuttingDown);
        }
        if self.config.streams.iter().any(|s| s.name == stream) {
            return Err(PublishRefusal::Reserved);
        }
        let guard = self
            .try_go_live(stream)
            .ok_or(PublishRefusal::AlreadyLive)?;
        let template = if publish.has_audio {
            "source-webrtc"
        } else {
            "source-webrtc-video-only"
        };
        let source = self
            .templates
            .render(template, &[("latency_ms", publish.latency_ms.to_string())])
            .map_err(|e| PublishRefusal::Template(e.to_string()))?;
        let mut ctx = self.context(stream);
        ctx.network = Some(NetworkSource {
            silence_timeout_ms: publish.silence_timeout_ms,
            rtp_counters: None,
            srt: None,
        });
        ctx.on_pipeline = Some(super::session::PipelineHook::new(publish.on_pipeline));
        let stream = stream.to_string();
        let stop = publish.stop;
        let on_end = publish.on_end;
        self.tasks.spawn(async move {
            let _guard = guard;
            match run_session(ctx, source, None, stop.clone()).await {
                Ok(()) => tracing::info!(stream, "publish session ended"),
                Err(e) => tracing::error!(stream, error = %e, "publish session failed"),
            }
            stop.cancel();
            on_end();
            crate::ingest::memory::trim_soon();
        });
        Ok(())
    }

    /// Runs a configured source (test pattern, RTP) until shutdown, restarting it on failure.
    /// The source was resolved once by the plan (the SDP file read and checked): a restart does
    /// not depend on the file.
    pub fn start_configured(self: &Arc<Self>, planned: PlannedStream) {
        let PlannedStream {
            config: sc, source, ..
        } = planned;
        let me = self.clone();
        self.tasks.spawn(async move {
            // Set when the sender turned out to send no audio; cleared when it goes away (the
            // next sender may send audio again).
            let mut video_only = false;
            while !me.shutdown.is_cancelled() {
                let Some(guard) = me.try_go_live(&sc.name) else { return };
                let only = if video_only { "-video-only" } else { "" };
                let rendered = match &source {
                    StreamSource::TestPattern { width, height } => me.templates.render(
                        "source-test-pattern",
                        &[("width", width.to_string()), ("height", height.to_string()), ("fps", me.config.ladder.frame_rate.to_string())],
                    ),
                    StreamSource::RtpMpegts { listen, rtp } => me.templates.render(
                        &format!("source-rtp-mpegts{only}"),
                        &[("port", listen.port().to_string()), ("address", listen.ip().to_string()), ("latency_ms", rtp.jitter_latency_ms.to_string())],
                    ),
                    StreamSource::RtpSdp { sdp, has_audio, rtp } => me.templates.render(
                        &format!("source-rtp-sdp{}", if *has_audio { only } else { "-video-only" }),
                        &[("location", sdp.display().to_string()), ("latency_ms", rtp.jitter_latency_ms.to_string())],
                    ),
                    StreamSource::Srt { listen, srt, .. } => me.templates.render(
                        &format!("source-srt{only}"),
                        &[("port", listen.port().to_string()), ("address", crate::ingest::srt::uri_host(listen)), ("latency_ms", srt.latency_ms.to_string())],
                    ),
                };
                let rendered = match rendered {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(stream = %sc.name, error = %e, "cannot build source; stream disabled");
                        return;
                    }
                };
                let mut ctx = me.context(&sc.name);
                ctx.network = source.silence_timeout_ms().map(|silence_timeout_ms| NetworkSource {
                    silence_timeout_ms,
                    rtp_counters: source.rtp_options().map(|_| me.rtp_counters(&sc.name)),
                    srt: match &source {
                        StreamSource::Srt { srt, .. } => Some(crate::ingest::srt::SrtListener { passphrase: srt.passphrase.clone() }),
                        _ => None,
                    },
                });
                let began = std::time::Instant::now();
                let result = run_session(ctx, rendered, None, me.shutdown.clone()).await;
                drop(guard);
                // A source that ended normally after a while (an RTP source gone quiet) listens
                // again at once, so a returning sender loses nothing; a failure, or an end that
                // comes straight away, waits first so a broken source cannot spin.
                let backoff = match restart_policy(
                    &result,
                    began.elapsed(),
                    video_only,
                    me.shutdown.is_cancelled(),
                ) {
                    Restart::Stop => {
                        tracing::info!(stream = %sc.name, "source stopped for shutdown");
                        return;
                    }
                    Restart::After { delay, video_only: v } => {
                        match (&result, v && !video_only) {
                            (Err(SessionError::NoAudio(grace)), true) => tracing::warn!(stream = %sc.name, grace_ms = grace.as_millis() as u64,
                                "the source sends no audio although it describes some; restarting video-only"),
                            (Err(e), _) => tracing::error!(stream = %sc.name, error = %e, "source failed; restarting"),
                            (Ok(()), _) if delay.is_zero() => tracing::info!(stream = %sc.name, "source ended; listening for it again"),
                            (Ok(()), _) => tracing::info!(stream = %sc.name, "source ended"),
                        }
                        video_only = v;
                        delay
                    }
                };
                tokio::select! {
                    _ = me.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        });
    }

    fn rtp_counters(&self, stream: &str) -> Arc<RtpCounters> {
        let mut map = self.rtp_counters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(stream.to_string()).or_default().clone()
    }

    /// Registers the RTP streams' datagram counters (accepted and dropped, by reason) into
    /// `registry`, read now: call it once per scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "zoomate_origin_segment_ready_delay_seconds",
            "A segment's last frame captured to the segment listed and announced",
            self.delays.segment.clone(),
        );
        registry.register(
            "zoomate_origin_part_ready_delay_seconds",
            "An LL-HLS part's last frame captured to the part listed and announced",
            self.delays.part.clone(),
        );
        let map = self.rtp_counters.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return;
        }
        let datagrams = Family::<RtpLabels, Counter>::default();
        for (stream, c) in map.iter() {
            for (outcome, v) in [
                ("accepted", &c.accepted),
                ("malformed", &c.malformed),
                ("wrong_payload_type", &c.wrong_payload_type),
            ] {
                datagrams
                    .get_or_create(&RtpLabels {
                        stream: stream.clone(),
                        outcome,
                    })
                    .inc_by(v.load(Ordering::Relaxed));
            }
        }
        // prometheus-client appends `_total`: exposed as zoomate_rtp_datagrams_total.
        registry.register(
            "zoomate_rtp_datagrams",
            "RTP datagrams received by stream and outcome",
            datagrams,
        );
    }

    /// Waits until every session has finished (after shutdown was signalled).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// What the supervisor does after a configured source's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Shutdown: the source is not restarted.
    Stop,
    /// Start it again after `delay`, video-only or not.
    After { delay: Duration, video_only: bool },
}

/// The restart policy of configured sources (pure). A source that ended normally after running
/// a while (an RTP sender gone quiet) listens again at once, so a returning sender loses
/// nothing, and may send audio again; a source that describes audio but sends none restarts at
/// once video-only; a failure, or an end that comes straight away, waits [`RESTART_BACKOFF`] so
/// a broken source cannot spin.
pub fn restart_policy(
    outcome: &Result<(), SessionError>,
    ran_for: Duration,
    video_only: bool,
    shutting_down: bool,
) -> Restart {
    match outcome {
        _ if shutting_down => Restart::Stop,
        Ok(()) if ran_for >= RESTART_BACKOFF => Restart::After {
            delay: Duration::ZERO,
            video_only: false,
        },
        Err(SessionError::NoAudio(_)) if !video_only => Restart::After {
            delay: Duration::ZERO,
            video_only: true,
        },
        _ => Restart::After {
            delay: RESTART_BACKOFF,
            video_only,
        },
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_policy() {
        let long = RESTART_BACKOFF * 3;
        let quick = RESTART_BACKOFF / 4;
        assert_eq!(restart_policy(&Ok(()), long, false, true), Restart::Stop);
        assert_eq!(
            restart_policy(&Err(SessionError::Pipeline("x".into())), long, false, true),
            Restart::Stop
        );
        // A quiet sender went away after a while: listen again at once, with audio again.
        assert_eq!(
            restart_policy(&Ok(()), long, true, false),
            Restart::After {
                delay: Duration::ZERO,
                video_only: false
            }
        );
        // An end straight away, or a failure: back off.
        assert_eq!(
            restart_policy(&Ok(()), quick, false, false),
            Restart::After {
                delay: RESTART_BACKOFF,
                video_only: false
            }
        );
        let failed = Err(SessionError::Stalled(Duration::from_secs(10)));
        assert_eq!(
            restart_policy(&failed, long, true, false),
            Restart::After {
                delay: RESTART_BACKOFF,
                video_only: true
            }
        );
        // Audio described but never sent: once video-only at once; then it is a failure.
        let no_audio = Err(SessionError::NoAudio(Duration::from_secs(3)));
        assert_eq!(
            restart_policy(&no_audio, quick, false, false),
            Restart::After {
                delay: Duration::ZERO,
                video_only: true
            }
        );
        assert_eq!(
            restart_policy(&no_audio, quick, true, false),
            Restart::After {
                delay: RESTART_BACKOFF,
                video_only: true
            }
        );
    }
}
