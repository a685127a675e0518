//! The streams this origin serves: one live session per stream at a time, timelines kept
//! across sessions (publisher reconnects) and restored from disk (worker restarts). Each live
//! stream's entry knows its source, its publisher (and how to disconnect it), when it started,
//! what it produced ([`StreamStats`]) and how to end it: what the API shows and acts on.

use super::session::{Announce, NetworkSource, SessionContext, SessionError, run_session};
use super::stats::{RenditionFigures, StreamStats};
use super::timeline::StreamTimeline;
use crate::Shutdown;
use crate::config::{Config, StreamSource};
use crate::http::metrics::{Counter, Family, Registry};
use crate::ingest::rtmp::{FlvReceiver, Publisher};
use crate::ingest::rtp::RtpCounters;
use crate::plan::PlannedStream;
use crate::store::Janitor;
use crate::transcode::Templates;
use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Labels of the `zoomate_rendition_*` series (bounded: live streams × their ladder).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenditionLabels {
    stream: String,
    rendition: String,
}

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
    fn of(source: &StreamSource) -> LiveSourceKind {
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
    /// RTMP: the publisher's address.
    pub publisher: Option<std::net::SocketAddr>,
    /// When the current session started (none when offline).
    pub started_at: Option<SystemTime>,
    pub uptime: Option<Duration>,
    /// Per rendition, what the current session produced.
    pub renditions: Vec<(String, RenditionFigures)>,
}

/// Why a stream could not be kicked or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndError {
    #[error("no live stream named {0:?}")]
    NotLive(String),
    #[error("stream {0:?} has no publisher to kick (a configured source); end it instead")]
    NoPublisher(String),
}

/// A live stream's entry.
struct LiveEntry {
    source: LiveSourceKind,
    publisher: Option<Publisher>,
    started_at: SystemTime,
    started: Instant,
    stats: Arc<Mutex<StreamStats>>,
    end: CancellationToken,
}

/// What a session gets from going live: its guard and the handles the registry keeps.
struct GoneLive {
    guard: LiveGuard,
    stats: Arc<Mutex<StreamStats>>,
    end: CancellationToken,
}

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
    /// Read when a session starts: a hot reload ([`StreamRegistry::set_ladder`]) changes what
    /// the next sessions get; running sessions keep the config they started with.
    config: ArcSwap<Config>,
    templates: Templates,
    announce: Announce,
    janitor: Janitor,
    shutdown: Shutdown,
    timelines: Mutex<HashMap<String, Arc<Mutex<StreamTimeline>>>>,
    live: Mutex<BTreeMap<String, LiveEntry>>,
    /// RTP datagram counters per configured RTP stream (bounded by the config).
    rtp_counters: Mutex<BTreeMap<String, Arc<RtpCounters>>>,
    next_session: AtomicU64,
    tasks: TaskTracker,
    /// Every live playlist's newest version, for the origin's blocking reloads.
    live_playlists: Arc<crate::store::live::LivePlaylists>,
    delays: Arc<super::session::PublishDelays>,
    health: Arc<super::health::StreamHealth>,
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
            config: ArcSwap::new(config),
            announce,
            janitor,
            shutdown,
            timelines: Mutex::new(HashMap::new()),
            live: Mutex::new(BTreeMap::new()),
            rtp_counters: Mutex::new(BTreeMap::new()),
            delays: Arc::default(),
            health: Arc::default(),
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

    /// Every stream's health (the origin's `/streams`, `/metrics`).
    pub fn health(&self) -> Arc<super::health::StreamHealth> {
        self.health.clone()
    }

    /// Every stream's WHEP feed.
    pub fn whep_feeds(&self) -> Arc<crate::whep::feed::WhepFeeds> {
        self.whep_feeds.clone()
    }

    /// Streams with a running session.
    pub fn live_streams(&self) -> Vec<String> {
        self.live_map().keys().cloned().collect()
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LiveEntry>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Disconnects the stream's RTMP publisher; its stream then ends as when a publisher
    /// leaves (open segments finished and listed, `StreamEnded`).
    pub fn kick(&self, name: &str) -> Result<std::net::SocketAddr, EndError> {
        let live = self.live_map();
        let entry = live
            .get(name)
            .ok_or_else(|| EndError::NotLive(name.to_string()))?;
        let publisher = entry
            .publisher
            .as_ref()
            .ok_or_else(|| EndError::NoPublisher(name.to_string()))?;
        tracing::info!(stream = name, publisher = %publisher.peer, "kicking the publisher (API)");
        publisher.kick.cancel();
        Ok(publisher.peer)
    }

    /// Ends the stream's session cleanly (EOS: open segments finished and listed, then
    /// `StreamEnded`); an RTMP publisher is disconnected too. A configured source is not
    /// restarted afterwards (until zoomate restarts).
    pub fn end(&self, name: &str) -> Result<(), EndError> {
        let live = self.live_map();
        let entry = live
            .get(name)
            .ok_or_else(|| EndError::NotLive(name.to_string()))?;
        tracing::info!(stream = name, "ending the stream (API)");
        entry.end.cancel();
        if let Some(p) = &entry.publisher {
            p.kick.cancel();
        }
        Ok(())
    }

    fn try_go_live(
        self: &Arc<Self>,
        stream: &str,
        source: LiveSourceKind,
        publisher: Option<Publisher>,
    ) -> Option<GoneLive> {
        let mut live = self.live_map();
        if live.contains_key(stream) {
            return None;
        }
        let (stats, end) = (
            Arc::<Mutex<StreamStats>>::default(),
            CancellationToken::new(),
        );
        live.insert(
            stream.to_string(),
            LiveEntry {
                source,
                publisher,
                started_at: SystemTime::now(),
                started: Instant::now(),
                stats: stats.clone(),
                end: end.clone(),
            },
        );
        Some(GoneLive {
            guard: LiveGuard {
                registry: self.clone(),
                stream: stream.to_string(),
            },
            stats,
            end,
        })
    }

    fn context(&self, stream: &str, live: &GoneLive) -> SessionContext {
        SessionContext {
            stream: stream.to_string(),
            config: self.config.load_full(),
            templates: self.templates.clone(),
            timeline: self.timeline(stream),
            announce: self.announce.clone(),
            janitor: self.janitor.clone(),
            live_playlists: self.live_playlists.clone(),
            session_id: self.next_session.fetch_add(1, Ordering::Relaxed),
            network: None,
            delays: self.delays.clone(),
            health: self.health.clone(),
            stats: live.stats.clone(),
            end: live.end.clone(),
            on_pipeline: None,
            whep_feed: self
                .config
                .load()
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
                let config = self.config.load();
                let target = config.ladder.segment_duration_ms.div_ceil(1000);
                let low_latency = config
                    .part_duration_for(stream)
                    .map(|part_target_ms| crate::packaging::LowLatency {
                        part_target_ms,
                        segment_duration_ms: config.ladder.segment_duration_ms,
                    });
                let mut t = StreamTimeline::new(target, config.hls.window_segments)
                    .with_low_latency(low_latency);
                let dir = crate::store::live_stream_dir(&config.store.dir, stream);
                let names = config.ladder.renditions.iter().map(|r| r.name.as_str()).chain([crate::transcode::AUDIO_RENDITION]);
                for name in names {
                    let path = dir.join(name).join(crate::layout::MEDIA_PLAYLIST);
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        if t.restore(name, &text) {
                            tracing::info!(stream, rendition = %name, "timeline restored from disk; continuing media sequence");
                        }
                    }
                    // Wall-clock timing: the last process's playlist is stale and its numbering
                    // will not be continued (the session starts afresh at the clock's next
                    // boundary, deleting what it lists): served meanwhile, it would hold players
                    // at its end; gone, an edge asks another origin (a 404 is tried elsewhere).
                    if config.timing_for(stream) == crate::config::StreamTiming::Wallclock {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Arc::new(Mutex::new(t))
            })
            .clone()
    }

    /// A publisher wants to push `stream`: a session reads `media` (bounded in bytes by the
    /// ingest). `Err` says why not.
    pub fn start_publish(
        self: &Arc<Self>,
        stream: &str,
        media: FlvReceiver,
        publisher: Publisher,
    ) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("server is shutting down".into());
        }
        if self.config.load().streams.iter().any(|s| s.name == stream) {
            return Err("stream name is reserved by a configured source".into());
        }
        let source = self
            .templates
            .render("source-rtmp", &[])
            .map_err(|e| e.to_string())?;
        let live = self
            .try_go_live(stream, LiveSourceKind::Rtmp, Some(publisher))
            .ok_or_else(|| "stream is already live".to_string())?;
        let ctx = self.context(stream, &live);
        let guard = live.guard;
        let shutdown = self.shutdown.clone();
        let stream = stream.to_string();
        let health = self.health.clone();
        self.tasks.spawn(async move {
            let _guard = guard;
            match run_session(ctx, source, Some(media), shutdown).await {
                Ok(()) => tracing::info!(stream, "publish session ended"),
                Err(e) => {
                    let reason = super::health::UnhealthyReason::of(&e).map(|r| r.label());
                    health.session_failed(&stream, &e, std::time::Instant::now());
                    tracing::error!(stream, error = %e, reason, "publish session failed")
                }
            }
            // The publisher is gone: its stream is no longer this origin's to report on.
            health.forget(&stream);
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
        if self.config.load().streams.iter().any(|s| s.name == stream) {
            return Err(PublishRefusal::Reserved);
        }
        // No RTMP-style publisher to kick: an operator ends a WHIP stream with `end`.
        let live = self
            .try_go_live(stream, LiveSourceKind::Whip, None)
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
        let mut ctx = self.context(stream, &live);
        let guard = live.guard;
        ctx.network = Some(NetworkSource {
            silence_timeout_ms: publish.silence_timeout_ms,
            rtp_counters: None,
            srt: None,
        });
        ctx.on_pipeline = Some(super::session::PipelineHook::new(publish.on_pipeline));
        let stream = stream.to_string();
        let stop = publish.stop;
        let on_end = publish.on_end;
        let health = self.health.clone();
        self.tasks.spawn(async move {
            let _guard = guard;
            match run_session(ctx, source, None, stop.clone()).await {
                Ok(()) => tracing::info!(stream, "publish session ended"),
                Err(e) => {
                    let reason = super::health::UnhealthyReason::of(&e).map(|r| r.label());
                    health.session_failed(&stream, &e, std::time::Instant::now());
                    tracing::error!(stream, error = %e, reason, "publish session failed")
                }
            }
            // As for RTMP: the publisher is gone, its stream is no longer this origin's.
            health.forget(&stream);
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
                let Some(live) = me.try_go_live(&sc.name, LiveSourceKind::of(&source), None) else { return };
                let only = if video_only { "-video-only" } else { "" };
                let rendered = match &source {
                    StreamSource::TestPattern { width, height } => me.templates.render(
                        "source-test-pattern",
                        &[("width", width.to_string()), ("height", height.to_string()), ("fps", me.config.load().ladder.frame_rate.to_string())],
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
                let mut ctx = me.context(&sc.name, &live);
                let ended_by_operator = live.end.clone();
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
                drop(live.guard);
                if ended_by_operator.is_cancelled() {
                    tracing::info!(stream = %sc.name, "source ended by an operator; not restarted until zoomate restarts");
                    return;
                }
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
                            // One line per unhealthy episode: a full disk fails every restart.
                            (Err(e), _) => match me.health.session_failed(&sc.name, e, std::time::Instant::now()) {
                                super::health::Transition::BecameUnhealthy(reason) => tracing::error!(stream = %sc.name, error = %e, reason = reason.label(),
                                    "stream unhealthy; restarting its source until it lists segments again"),
                                _ => tracing::debug!(stream = %sc.name, error = %e, "source failed again; restarting"),
                            },
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
        self.health.register_metrics(registry);
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
        registry.register(
            "zoomate_origin_encode_to_announce_seconds",
            "A segment or part file reported complete by its writer to its bus announcement \
             (promote, list, playlists written), by kind",
            self.delays.encode_to_announce.clone(),
        );
        self.register_rendition_metrics(registry);
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

    /// Hot reload: sessions started from now on plan `ladder`; running ones keep theirs. The
    /// caller keeps what cannot change under a stream's playlists (segment duration, frame
    /// rate, format) as it was.
    pub fn set_ladder(&self, ladder: crate::config::LadderConfig) {
        self.config.rcu(|c| {
            let mut next = Config::clone(c);
            next.ladder = ladder.clone();
            next
        });
    }

    /// `zoomate_rendition_*{stream,rendition}` of the live sessions, read now: a stream that
    /// ended has no series (the registry is built per scrape).
    fn register_rendition_metrics(&self, registry: &mut Registry) {
        use crate::http::metrics::Gauge;
        type Ratio = Gauge<f64, std::sync::atomic::AtomicU64>;
        let speed = Family::<RenditionLabels, Ratio>::default();
        let bitrate = Family::<RenditionLabels, Gauge>::default();
        let segments = Family::<RenditionLabels, Counter>::default();
        for s in self.streams() {
            for (rendition, f) in &s.renditions {
                let labels = RenditionLabels {
                    stream: s.name.clone(),
                    rendition: rendition.clone(),
                };
                segments.get_or_create(&labels).inc_by(f.segments);
                if let Some(x) = f.encode_speed {
                    speed.get_or_create(&labels).set(x);
                }
                if let Some(bps) = f.bitrate_bps {
                    bitrate
                        .get_or_create(&labels)
                        .set(i64::try_from(bps).unwrap_or(i64::MAX));
                }
            }
        }
        registry.register(
            "zoomate_rendition_encode_speed_ratio",
            "Media time produced per wall time over the last segments (1.0 keeps up with live)",
            speed,
        );
        registry.register(
            "zoomate_rendition_bitrate_bits_per_second",
            "Measured bitrate: segment bytes x 8 / media duration over the last segments",
            bitrate,
        );
        // prometheus-client appends `_total`: exposed as zoomate_rendition_segments_total.
        registry.register(
            "zoomate_rendition_segments",
            "Segments listed by the current session",
            segments,
        );
    }

    /// Waits until every session has finished (after shutdown was signalled).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
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
