//! Wires the roles together and owns the one shutdown signal.
//!
//! `zoomate run` = origin (ingest + transcode + store + origin HTTP + bus publisher) and edge in
//! one process; `zoomate origin` and `zoomate edge` run one side each. Every listener is bound
//! before anything starts, so a port conflict fails the start instead of half-running.
//!
//! Shutdown is one signal, carried out in stages so that nothing is cut off by what it needs
//! ([`RunningApp::wait`]):
//! 1. **ingest stops**: the RTMP listener closes, publishers are disconnected, configured
//!    sources get EOS;
//! 2. **sessions finish**: open segments are closed, listed and announced, then `StreamEnded`;
//! 3. **the bus flushes**: the publisher sends what is queued and closes;
//! 4. **HTTP drains**: origin and edge stop accepting, in-flight requests get a grace period.
//!
//! Until stage 4 the HTTP listeners keep serving, so edges and players can still fetch the final
//! segments that stage 2 announced. Every task the app starts is tracked by the stage that
//! stops it.

use crate::Shutdown;
use crate::bus::BusEvent;
use crate::config::Config;
use crate::plan::Plan;
use crate::stream::{Announce, StreamRegistry};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// Which parts run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    All,
    Origin,
    Edge,
}

impl Roles {
    fn origin(self) -> bool {
        matches!(self, Roles::All | Roles::Origin)
    }
    fn edge(self) -> bool {
        matches!(self, Roles::All | Roles::Edge)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("bus: {0}")]
    Bus(String),
    #[error("media framework: {0}")]
    Transcode(#[from] crate::transcode::TranscodeError),
}

/// Addresses actually bound (port 0 in config becomes a real port here).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BoundAddrs {
    pub rtmp: Option<SocketAddr>,
    pub origin_http: Option<SocketAddr>,
    pub edge_http: Option<SocketAddr>,
    pub bus: Option<String>,
}

/// A started zoomate; `wait` returns once shutdown has drained everything.
pub struct RunningApp {
    pub addrs: BoundAddrs,
    pub registry: Option<Arc<StreamRegistry>>,
    /// What a hot reload can change in this process (without the log filter, which `main`
    /// owns).
    pub reload_targets: crate::reload::ReloadTargets,
    /// The operators' API (one per process), to hand it the reloader once `main` has built it.
    pub api: Option<Arc<crate::api::Api>>,
    /// Stage 1: ingest listeners, stopped by the shutdown signal itself.
    ingest: TaskTracker,
    /// Stage 4: HTTP servers and the edge's background services, stopped by `http_stop`.
    serving: TaskTracker,
    http_stop: Shutdown,
    publisher: Option<PublisherHandle>,
}

/// The bus publisher and its own stop signal, fired last (see [`RunningApp::wait`]).
struct PublisherHandle {
    publisher: Arc<crate::bus::publisher::BusPublisher>,
    stop: Shutdown,
}

impl RunningApp {
    /// Waits for the shutdown signal, then drains in stages (see the module doc): ingest,
    /// sessions (which announce their final segments and `StreamEnded` as they finish), the
    /// bus publisher, and only then HTTP, so those last announcements reach the edges and the
    /// segments they name can still be fetched.
    pub async fn wait(mut self, shutdown: Shutdown) {
        shutdown.cancelled().await;
        self.ingest.close();
        self.ingest.wait().await;
        tracing::debug!("shutdown: ingest stopped");
        if let Some(r) = &self.registry {
            r.drain().await;
            tracing::debug!("shutdown: sessions finished");
        }
        if let Some(p) = self.publisher.take() {
            p.stop.cancel();
            p.publisher.finished().await;
            tracing::debug!("shutdown: bus flushed");
        }
        self.http_stop.cancel();
        self.serving.close();
        self.serving.wait().await;
        tracing::debug!("shutdown: HTTP drained");
    }
}

/// Binds every listener, then starts every service. Returns once all are running.
pub async fn start(plan: Plan, roles: Roles, shutdown: Shutdown) -> Result<RunningApp, AppError> {
    let ingest = TaskTracker::new();
    let serving = TaskTracker::new();
    let http_stop = Shutdown::new();
    let mut config = plan.config.clone();
    let mut addrs = BoundAddrs {
        rtmp: None,
        origin_http: None,
        edge_http: None,
        bus: None,
    };
    let mut registry = None;
    let mut publisher_handle = None;
    let mut reload_targets = crate::reload::ReloadTargets::default();
    // One API for the process: both listeners answer what either side knows (module doc of
    // `api`). Set up with the final config (bound addresses filled in) below.
    let mut api: Option<Arc<crate::api::Api>> = None;

    if roles.origin() {
        crate::transcode::init()?;
        // Peers make the origin allocate large blocks: give them back when freed.
        crate::ingest::memory::map_large_blocks();
        let origin = crate::origin::OriginServer::bind(&config)
            .await
            .map_err(|source| AppError::Bind {
                what: "origin HTTP",
                addr: config.origin.http_listen.to_string(),
                source,
            })?;
        let origin_addr = origin.local_addr();
        addrs.origin_http = Some(origin_addr);
        if config.origin.public_url.is_empty() {
            config.origin.public_url = format!("http://{origin_addr}");
        }
        let rtmp = if config.rtmp.enabled {
            let server = crate::ingest::rtmp::RtmpServer::bind(&config.rtmp)
                .await
                .map_err(|source| AppError::Bind {
                    what: "RTMP",
                    addr: config.rtmp.listen.to_string(),
                    source,
                })?;
            addrs.rtmp = Some(server.local_addr());
            Some(server)
        } else {
            None
        };
        // The publisher outlives `shutdown`: `wait` stops it after the sessions drained.
        let publisher_stop = Shutdown::new();
        let (announce, publisher, heartbeat) =
            bus_announcer(&config, &mut addrs, publisher_stop.clone()).await?;
        let config = Arc::new(config.clone());
        // Before any session writes: what a crash left in the store goes now.
        let leftovers = sweep_store(&config).await;
        let reg = StreamRegistry::new(config.clone(), announce.clone(), shutdown.clone());
        if !leftovers.is_empty() {
            reg.schedule_expiry(leftovers);
        }
        for planned in plan.streams.iter().cloned() {
            reg.start_configured(planned);
        }
        let rtmp_metrics = rtmp.as_ref().map(|server| server.metrics());
        // One set of keys for every ingest (RTMP, WHIP), replaced by a hot reload.
        let stream_keys = rtmp.as_ref().map_or_else(
            || crate::ingest::rtmp::StreamKeys::new(config.rtmp.stream_keys.clone()),
            |server| server.stream_keys(),
        );
        reload_targets.stream_keys = Some(stream_keys.clone());
        let authorizer = rtmp.as_ref().map_or_else(
            || {
                Arc::new(crate::ingest::rtmp::Authorizer::new(
                    &config.rtmp,
                    stream_keys.clone(),
                ))
            },
            |server| server.authorizer(),
        );
        reload_targets.registry = Some(reg.clone());
        if let Some(server) = rtmp {
            let handler: Arc<dyn crate::ingest::rtmp::PublishHandler> =
                Arc::new(RegistryPublishHandler(reg.clone()));
            ingest.spawn(server.run(handler, shutdown.clone()));
        }
        if let Some(publisher) = publisher {
            // Heartbeats go on while sessions drain: edges keep the origin in rotation for the
            // final segments. They stop with the publisher.
            spawn_heartbeat(
                &config,
                reg.clone(),
                publisher.clone(),
                &heartbeat,
                publisher_stop.clone(),
            );
            publisher_handle = Some(PublisherHandle {
                publisher,
                stop: publisher_stop,
            });
        }
        let throttle_metrics = authorizer.clone();
        let whip = config.webrtc.enabled.then(|| {
            crate::ingest::whip::WhipService::new(config.clone(), reg.clone(), authorizer)
        });
        if let Some(w) = &whip {
            origin.set_whip(w.clone());
        }
        let whep = config.webrtc.enabled.then(|| {
            crate::whep::WhepService::new(config.clone(), reg.whep_feeds(), shutdown.clone())
        });
        if let Some(w) = &whep {
            origin.set_whep(w.clone());
        }
        let metrics_registry = reg.clone();
        origin.set_ingest_metrics(Arc::new(move |r| {
            metrics_registry.register_metrics(r);
            if let Some(w) = &whip {
                let g = crate::http::metrics::Gauge::<i64>::default();
                g.set(i64::try_from(w.session_count()).unwrap_or(i64::MAX));
                r.register("zoomate_whip_sessions", "WHIP publishing sessions now", g);
            }
            if let Some(w) = &whep {
                let viewers = crate::http::metrics::Family::<
                    StreamLabel,
                    crate::http::metrics::Gauge<i64>,
                >::default();
                for (stream, n) in w.viewer_counts() {
                    viewers.get_or_create(&StreamLabel { stream }).set(n as i64);
                }
                r.register(
                    "zoomate_whep_viewers",
                    "WHEP viewers now, by stream",
                    viewers,
                );
            }
            if let Some(m) = &rtmp_metrics {
                m.register(r);
            }
            let throttled = crate::http::metrics::Family::<
                ProtocolLabel,
                crate::http::metrics::Counter,
            >::default();
            for (ingest, n) in throttle_metrics.throttled_counts() {
                throttled
                    .get_or_create(&ProtocolLabel {
                        protocol: ingest.label(),
                    })
                    .inc_by(n);
            }
            // prometheus-client appends `_total`.
            r.register(
                "zoomate_publish_throttled",
                "Publish attempts refused unchecked (key-guessing backoff), by protocol",
                throttled,
            );
        }));
        origin.set_live_playlists(reg.live_playlists());
        origin.set_stream_health(reg.health());
        let process_api = crate::api::Api::new(config.clone());
        process_api.set_registry(reg.clone());
        origin.set_api(process_api.clone());
        api = Some(process_api);
        serving.spawn(origin.run(http_stop.clone()));
        registry = Some(reg);
    }

    if roles.edge() && config.edge.enabled {
        let mut edge_config = config.clone();
        if roles.origin() {
            // All-in-one: the edge fronts this process's own origin and bus.
            if let Some(o) = addrs.origin_http {
                edge_config.edge.origins.push(format!("http://{o}"));
            }
            if let Some(b) = &addrs.bus {
                // Our own publisher: authenticate it by our own public key when CURVE is on.
                let own = config.bus.key_pair().ok().flatten();
                let mut entry = crate::config::BusConnect::plain(b.clone());
                entry.server_key = own.map(|p| p.public.to_z85());
                edge_config.edge.bus_connect.push(entry);
            }
        }
        // The edge connects with this node's key (ephemeral when it has none).
        for entry in &mut edge_config.edge.bus_connect {
            entry.client_secret_key = config.bus.curve_secret_key.clone();
        }
        let edge = crate::edge::EdgeServer::bind(&edge_config)
            .await
            .map_err(|source| AppError::Bind {
                what: "edge HTTP",
                addr: config.edge.listen.to_string(),
                source,
            })?;
        addrs.edge_http = Some(edge.local_addr());
        let own_origins = match (roles.origin(), addrs.origin_http) {
            (true, Some(o)) => vec![format!("http://{o}")],
            _ => Vec::new(),
        };
        reload_targets.edge = Some(edge.reload_handle(own_origins));
        let process_api = api
            .clone()
            .unwrap_or_else(|| crate::api::Api::new(Arc::new(config.clone())));
        process_api.set_edge(edge.view());
        edge.set_api(process_api.clone());
        api = Some(process_api);
        serving.spawn(edge.run(http_stop.clone()));
    }

    Ok(RunningApp {
        addrs,
        registry,
        reload_targets: crate::reload::ReloadTargets {
            api: api.as_ref().map(Arc::downgrade),
            ..reload_targets
        },
        api,
        ingest,
        serving,
        http_stop,
        publisher: publisher_handle,
    })
}

/// Sweeps the live store of a previous run's leftovers (off the runtime) and logs what went;
/// returns the unlisted files still within their retention, for the janitor.
async fn sweep_store(config: &Config) -> Vec<std::path::PathBuf> {
    let dir = config.store.dir.clone();
    // An unlisted segment left its window no sooner than a window after it was written.
    let window_ms = config.ladder.segment_duration_ms * config.hls.window_segments as u64;
    let expired_after =
        std::time::Duration::from_millis(window_ms + config.hls.retain_after_window_ms);
    let report = match tokio::task::spawn_blocking(move || {
        crate::store::leftovers::sweep(&dir, expired_after)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "store sweep did not finish");
            return Vec::new();
        }
    };
    if report.staging_dirs_removed + report.temp_files_removed + report.expired_removed > 0
        || !report.pending.is_empty()
    {
        tracing::info!(
            staging_dirs = report.staging_dirs_removed,
            temp_files = report.temp_files_removed,
            expired_segments = report.expired_removed,
            scheduled = report.pending.len(),
            errors = report.errors,
            "store: removed a previous run's leftovers"
        );
    }
    report.pending
}

/// The `stream` label of per-stream gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StreamLabel {
    stream: String,
}

/// The `protocol` label of `zoomate_publish_throttled_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

/// RTMP publishes go to the stream registry.
struct RegistryPublishHandler(Arc<StreamRegistry>);

impl crate::ingest::rtmp::PublishHandler for RegistryPublishHandler {
    fn on_publish(
        &self,
        stream: &str,
        media: crate::ingest::rtmp::FlvReceiver,
        publisher: crate::ingest::rtmp::Publisher,
    ) -> Result<(), String> {
        self.0.start_publish(stream, media, publisher)
    }
}

/// An announcer that drops everything (bus disabled).
pub fn silent_announcer() -> Announce {
    Arc::new(|_: BusEvent| {})
}

/// What makes this origin's heartbeat (set once the stream registry exists).
type MakeHeartbeat = Arc<dyn Fn() -> BusEvent + Send + Sync>;

/// The announcer's side of the heartbeat: each stream session's first announcement is
/// preceded by a heartbeat (see [`crate::bus::heartbeat`]).
#[derive(Clone, Default)]
struct HeartbeatHook {
    make: Arc<std::sync::OnceLock<MakeHeartbeat>>,
    first: Arc<crate::bus::heartbeat::FirstAnnouncements>,
}

/// The origin's announcer: the bus publisher when the bus is enabled, else nothing.
async fn bus_announcer(
    config: &Config,
    addrs: &mut BoundAddrs,
    shutdown: Shutdown,
) -> Result<
    (
        Announce,
        Option<Arc<crate::bus::publisher::BusPublisher>>,
        HeartbeatHook,
    ),
    AppError,
> {
    let hook = HeartbeatHook::default();
    if !config.bus.enabled {
        return Ok((silent_announcer(), None, hook));
    }
    let publisher = crate::bus::publisher::BusPublisher::start(&config.bus, shutdown)
        .await
        .map_err(|e| AppError::Bus(e.to_string()))?;
    addrs.bus = Some(publisher.local_endpoint());
    let publisher = Arc::new(publisher);
    let (p, h) = (publisher.clone(), hook.clone());
    let announce = move |ev: BusEvent| {
        if h.first.is_first(&ev)
            && let Some(make) = h.make.get()
        {
            p.publish(make());
        }
        p.publish(ev)
    };
    Ok((Arc::new(announce), Some(publisher), hook))
}

/// Heartbeats: which streams this origin serves and how loaded it is, every interval (the
/// first at once) and before each stream session's first announcement (`hook`).
fn spawn_heartbeat(
    config: &Config,
    registry: Arc<StreamRegistry>,
    publisher: Arc<crate::bus::publisher::BusPublisher>,
    hook: &HeartbeatHook,
    shutdown: Shutdown,
) {
    let origin_id = config.origin.id.clone();
    let base_url = config.origin.public_url.clone();
    let interval_ms = config.bus.heartbeat_interval_ms;
    let make: MakeHeartbeat = Arc::new(move || {
        let streams = registry.live_streams();
        BusEvent::OriginHeartbeat {
            origin_id: origin_id.clone(),
            http_base_url: base_url.clone(),
            load_streams: streams.len() as u32,
            streams,
            load_encoder_speed: registry.slowest_encode_speed().unwrap_or(0.0) as f32,
            interval_ms: interval_ms as u32,
        }
    });
    let _ = hook.make.set(make.clone());
    let first = hook.first.clone();
    publisher.spawn_heartbeat(
        std::time::Duration::from_millis(interval_ms),
        move || {
            let beat = make();
            if let BusEvent::OriginHeartbeat { streams, .. } = &beat {
                first.retain(streams);
            }
            beat
        },
        shutdown,
    );
}
