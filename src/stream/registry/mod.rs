//! The streams this origin serves: one live session per stream at a time, timelines kept
//! across sessions (publisher reconnects) and restored from disk (worker restarts). Each live
//! stream's entry knows its source, its publisher (and how to disconnect it), when it started,
//! what it produced ([`StreamStats`]) and how to end it: what the API shows and acts on.
//!
//! This file holds the registry's state and the live set (going live, kicking, ending); the
//! rest is split by job: [`starts`] (RTMP, WHIP and configured-source sessions), [`views`] (what
//! the API and the heartbeat read), [`metrics`] (the per-scrape Prometheus series) and
//! [`restart`] (the configured sources' restart policy, pure).

mod metrics;
mod restart;
mod starts;
mod views;

pub use restart::{RESTART_BACKOFF, Restart, restart_policy};
pub use starts::{PublishRefusal, WebrtcPublish};
pub use views::{LiveSourceKind, StreamInfo, StreamState};

use super::session::{Announce, SessionContext};
use super::stats::StreamStats;
use super::timeline::StreamTimeline;
use crate::Shutdown;
use crate::config::Config;
use crate::ingest::rtmp::Publisher;
use crate::ingest::rtp::RtpCounters;
use crate::store::Janitor;
use crate::transcode::Templates;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

    fn live_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LiveEntry>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Disconnects the stream's RTMP or WHIP publisher; its stream then ends as when a publisher
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

    /// Waits until every session has finished (after shutdown was signalled).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
