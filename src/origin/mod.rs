//! The origin: serves the store (live streams and VOD assets) over HTTP/1.1.
//!
//! Request path: parse + validate the path (400/404 before touching the disk) → read the file
//! → answer with the shared HTTP semantics (`http::headers`). Everything on disk is complete:
//! the store only ever renames finished files into place.
//!
//! Live media playlists are answered from memory ([`LivePlaylists`], the newest version a
//! session published), which is also where LL-HLS blocking requests wait (§6.2.5.2): a
//! `_HLS_msn`/`_HLS_part` request is held on the playlist's `watch` channel until it lists that
//! part, then answered with the whole playlist (or the delta update for `_HLS_skip=YES`); 400 at
//! once for directives beyond the limits, 503 after 3 target durations. A request for the
//! preload-hinted part waits the same way for its file.

use crate::Shutdown;
use crate::config::{Config, HttpLimits};
use crate::http::Body;
use crate::http::headers::{self, Representation};
use crate::http::held::HeldBudget;
use crate::http::metrics::{Counter, Family, HeldLabels, Histogram, Registry, RequestLabels};
use crate::http::paths::{MediaPath, PathError, ResourceKind, parse_media_path};
use crate::packaging::{Directives, Verdict};
use crate::store::live::{LivePlaylists, PlaylistSnapshot};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest file the origin reads into memory for one response.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The origin's `/metrics` counters, in its own registry.
pub struct OriginMetrics {
    registry: Registry,
    by_kind_status: Family<RequestLabels, Counter>,
    segment_requests: Counter,
    held: Family<HeldLabels, Counter>,
    held_wake: Histogram,
    /// The listener's connection slots (`zoomate_origin_http_connections_*`).
    connections: crate::http::slots::ConnectionMetrics,
}

impl Default for OriginMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let connections = crate::http::slots::ConnectionMetrics::default();
        connections.register(&mut registry, "zoomate_origin");
        let by_kind_status = Family::<RequestLabels, Counter>::default();
        // prometheus-client appends `_total` to counters: names here are without it.
        registry.register(
            "zoomate_origin_http_requests",
            "Origin HTTP requests by resource kind and status",
            by_kind_status.clone(),
        );
        let segment_requests = Counter::default();
        registry.register(
            "zoomate_origin_segment_requests",
            "Segment and init segment requests (any status)",
            segment_requests.clone(),
        );
        let held = Family::<HeldLabels, Counter>::default();
        registry.register(
            "zoomate_origin_held_requests",
            "LL-HLS blocking requests (playlist reloads, hinted parts) by outcome",
            held.clone(),
        );
        let held_wake = crate::http::metrics::wake_histogram();
        registry.register(
            "zoomate_origin_held_wake_seconds",
            "A playlist version published to the answer of a request held for it",
            held_wake.clone(),
        );
        OriginMetrics {
            registry,
            by_kind_status,
            segment_requests,
            held,
            held_wake,
            connections,
        }
    }
}

impl OriginMetrics {
    /// One request answered with `status` (any code).
    fn record(&self, kind: Option<ResourceKind>, status: StatusCode) {
        self.by_kind_status
            .get_or_create(&RequestLabels::new(kind, status))
            .inc();
        if matches!(
            kind,
            Some(ResourceKind::Segment | ResourceKind::InitSegment)
        ) {
            self.segment_requests.inc();
        }
    }

    /// The origin's own counters, plus whatever `extra` registers (ingest counters).
    pub fn render(&self, extra: Option<&IngestMetrics>, held_now: usize) -> String {
        let mut scrape = Registry::default();
        let gauge = crate::http::metrics::Gauge::<i64>::default();
        gauge.set(i64::try_from(held_now).unwrap_or(i64::MAX));
        scrape.register(
            "zoomate_origin_held_requests_now",
            "LL-HLS blocking requests being held",
            gauge,
        );
        if let Some(register) = extra {
            register(&mut scrape);
        }
        crate::http::metrics::encode(&[&self.registry, &scrape])
    }
}

struct OriginState {
    live_dir: PathBuf,
    vod_dir: PathBuf,
    live_playlist_max_age_s: u64,
    /// LL-HLS: how far past the newest part a blocking request may ask (RFC 8216bis 6.2.5.2).
    advance_part_limit: u32,
    metrics: OriginMetrics,
    /// More `/metrics` text from the ingest side (RTP and RTMP counters), set once before serving.
    ingest_metrics: std::sync::OnceLock<IngestMetrics>,
    /// The sessions' newest playlists (set once before serving; absent: disk only).
    live_playlists: std::sync::OnceLock<Arc<LivePlaylists>>,
    /// Every stream's health, answered at `/streams` (set once before serving).
    stream_health: std::sync::OnceLock<Arc<crate::stream::StreamHealth>>,
    held: Arc<HeldBudget>,
    /// The operators' API and console on this listener (set once before serving).
    api: std::sync::OnceLock<Arc<crate::api::Api>>,
    /// Whether this listener is bound to a loopback address (the API's access rule).
    loopback: bool,
    /// WHIP ingest on this listener (`webrtc.enabled`; set once before serving).
    whip: std::sync::OnceLock<Arc<crate::ingest::whip::WhipService>>,
    /// WHEP playback on this listener.
    whep: std::sync::OnceLock<Arc<crate::whep::WhepService>>,
}

/// Registers the ingest side's metrics (RTP and RTMP counters), read at scrape time, into a registry.
pub type IngestMetrics = Arc<dyn Fn(&mut Registry) + Send + Sync>;

/// A bound, not yet running origin server.
pub struct OriginServer {
    listener: TcpListener,
    limits: HttpLimits,
    state: Arc<OriginState>,
}

impl OriginServer {
    pub async fn bind(config: &Config) -> std::io::Result<OriginServer> {
        let listener = TcpListener::bind(config.origin.http_listen).await?;
        let loopback = listener.local_addr()?.ip().is_loopback();
        Ok(OriginServer {
            listener,
            limits: config.origin.limits.clone(),
            state: Arc::new(OriginState {
                live_dir: config.store.dir.join("live"),
                vod_dir: config.vod.dir.clone(),
                // Live playlists: at most half a target duration (whole seconds, at least 1).
                live_playlist_max_age_s: (config.ladder.segment_duration_ms / 2000).max(1),
                advance_part_limit: crate::packaging::ll_hls::advance_part_limit(
                    config.hls.part_duration_ms,
                ),
                metrics: OriginMetrics::default(),
                ingest_metrics: std::sync::OnceLock::new(),
                live_playlists: std::sync::OnceLock::new(),
                stream_health: std::sync::OnceLock::new(),
                whip: std::sync::OnceLock::new(),
                whep: std::sync::OnceLock::new(),
                held: HeldBudget::new(
                    config.hls.max_held_requests,
                    config.hls.max_held_requests_per_stream,
                ),
                api: std::sync::OnceLock::new(),
                loopback,
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Adds ingest counters to this origin's `/metrics`.
    pub fn set_ingest_metrics(&self, render: IngestMetrics) {
        let _ = self.state.ingest_metrics.set(render);
    }

    /// Answers live playlists (and holds LL-HLS blocking requests) from the sessions' newest
    /// versions.
    pub fn set_live_playlists(&self, live: Arc<LivePlaylists>) {
        let _ = self.state.live_playlists.set(live);
    }

    /// Answers `/streams` with every stream's health.
    pub fn set_stream_health(&self, health: Arc<crate::stream::StreamHealth>) {
        let _ = self.state.stream_health.set(health);
    }

    /// Answers `/api/v1/` and `/console/` on this listener.
    pub fn set_api(&self, api: Arc<crate::api::Api>) {
        let _ = self.state.api.set(api);
    }

    /// Serves WHEP (`/whep/…`) on this listener.
    pub fn set_whep(&self, whep: Arc<crate::whep::WhepService>) {
        let _ = self.state.whep.set(whep);
    }

    /// Serves WHIP (`/whip/…`) on this listener.
    pub fn set_whip(&self, whip: Arc<crate::ingest::whip::WhipService>) {
        let _ = self.state.whip.set(whip);
    }

    pub async fn run(self, shutdown: Shutdown) {
        let state = self.state;
        crate::http::serve(
            self.listener,
            self.limits,
            state.metrics.connections.clone(),
            move |req| handle(state.clone(), req),
            shutdown,
        )
        .await;
    }
}

async fn handle(state: Arc<OriginState>, req: Request<Incoming>) -> Response<Body> {
    // The operators' API and console first: they have methods of their own.
    if let Some(api) = state.api.get()
        && let Some(r) = api.respond(&req, state.loopback).await
    {
        return r;
    }
    if req.uri().path().starts_with(crate::layout::WHIP_PREFIX)
        && let Some(whip) = state.whip.get()
    {
        return whip.handle(req).await;
    }
    if req.uri().path().starts_with(crate::whep::WHEP_PREFIX)
        && let Some(whep) = state.whep.get()
    {
        return whep.handle(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if let Some(r) = headers::common_routes(&method, &path, || {
        state
            .metrics
            .render(state.ingest_metrics.get(), state.held.held())
    }) {
        // Health checks and scrapes are not media traffic; refusals (405) and preflights are.
        if !(matches!(path.as_str(), "/healthz" | "/metrics") && r.status().is_success()) {
            state.metrics.record(None, r.status());
        }
        return r;
    }
    if path == crate::layout::STREAMS_PATH
        && let Some(health) = state.stream_health.get()
    {
        let body = health.to_json(std::time::Instant::now()).to_string();
        let mut r = headers::text(StatusCode::OK, &body);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let (file, kind, live) = match locate(&state, &path) {
        Ok(found) => found,
        Err(PathError::Malformed(why)) => {
            state.metrics.record(None, StatusCode::BAD_REQUEST);
            tracing::debug!(path = %path, why, "rejected path");
            return headers::text(StatusCode::BAD_REQUEST, "bad request");
        }
        Err(PathError::NotFound) => {
            state.metrics.record(None, StatusCode::NOT_FOUND);
            return headers::text(StatusCode::NOT_FOUND, "not found");
        }
    };
    if live {
        let query = req.uri().query();
        match live_response(&state, &path, query, kind, &method, req.headers()).await {
            Live::Answered(r) => {
                state.metrics.record(Some(kind), r.status());
                return r;
            }
            Live::FromDisk => {}
        }
    }
    let response = match read_file(&file).await {
        Ok((body, mtime)) => {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let rep = Representation::new(
                body,
                kind.content_type(name),
                headers::cache_control(kind, live, state.live_playlist_max_age_s),
                mtime,
            );
            headers::respond(&method, req.headers(), &rep)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            headers::text(StatusCode::NOT_FOUND, "not found")
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "read failed");
            headers::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    };
    state.metrics.record(Some(kind), response.status());
    response
}

/// What the live side made of a request.
enum Live {
    Answered(Response<Body>),
    /// Not (or no longer) a session's: read the file.
    FromDisk,
}

/// Live media playlists from memory, with LL-HLS blocking; hinted parts held until written.
async fn live_response(
    state: &OriginState,
    path: &str,
    query: Option<&str>,
    kind: ResourceKind,
    method: &http::Method,
    request_headers: &http::HeaderMap,
) -> Live {
    let Some(live) = state.live_playlists.get() else {
        return Live::FromDisk;
    };
    // `/live/{stream}/{rendition}/{name}` (checked by `locate` already).
    let Ok(MediaPath::Live { stream, rest }) = parse_media_path(path) else {
        return Live::FromDisk;
    };
    let (Some(rendition), Some(name)) = (rest.first(), rest.get(1)) else {
        return Live::FromDisk;
    };
    let directives = match kind {
        ResourceKind::MediaPlaylist => match Directives::parse(query) {
            Ok(d) => d,
            Err(why) => return Live::Answered(headers::text(StatusCode::BAD_REQUEST, why)),
        },
        ResourceKind::Segment => match crate::layout::parse_part_file(name) {
            Some((msn, part)) => Directives {
                msn: Some(msn),
                part: Some(part),
                skip: false,
            },
            None => return Live::FromDisk,
        },
        _ => return Live::FromDisk,
    };
    let Some(mut rx) = live.watch(&stream, rendition) else {
        // No session has published this rendition since the process started (a restart,
        // before the source is back): the playlist on disk cannot block, and answering a
        // blocking request with it at once would send the player round in a tight loop.
        if kind == ResourceKind::MediaPlaylist && directives.blocks() {
            return Live::Answered(unavailable("stream not live"));
        }
        return Live::FromDisk;
    };
    let current = rx.borrow_and_update().clone();
    let is_part = kind == ResourceKind::Segment;
    let snapshot = match directives.verdict(&current.end, state.advance_part_limit) {
        Verdict::Ready => current,
        Verdict::Refuse(_) if is_part => return Live::FromDisk, // not a part we will write soon
        Verdict::Refuse(why) => {
            return Live::Answered(headers::text(StatusCode::BAD_REQUEST, why));
        }
        Verdict::Hold => {
            let Some(_slot) = state.held.try_hold(&stream) else {
                state
                    .metrics
                    .held
                    .get_or_create(&HeldLabels {
                        outcome: "rejected",
                    })
                    .inc();
                return Live::Answered(unavailable("too many held requests"));
            };
            // §6.2.5.2: answer within three target durations, or 503.
            let timeout = std::time::Duration::from_millis(current.target_duration_ms * 3);
            let (msn, part) = (directives.msn.unwrap_or(0), directives.part);
            match tokio::time::timeout(timeout, rx.wait_for(|s| s.end.satisfies(msn, part))).await {
                Ok(Ok(s)) => {
                    let s = s.clone();
                    state
                        .metrics
                        .held
                        .get_or_create(&HeldLabels { outcome: "woken" })
                        .inc();
                    if let Ok(age) = s.modified.elapsed() {
                        state.metrics.held_wake.observe(age.as_secs_f64());
                    }
                    s
                }
                _ => {
                    state
                        .metrics
                        .held
                        .get_or_create(&HeldLabels { outcome: "timeout" })
                        .inc();
                    return Live::Answered(unavailable("not available in time"));
                }
            }
        }
    };
    if is_part {
        return Live::FromDisk; // the part file exists now
    }
    Live::Answered(playlist_response(
        state,
        &snapshot,
        directives.skip,
        method,
        request_headers,
    ))
}

fn playlist_response(
    state: &OriginState,
    snapshot: &PlaylistSnapshot,
    skip: bool,
    method: &http::Method,
    request_headers: &http::HeaderMap,
) -> Response<Body> {
    let body = match (&snapshot.delta, skip) {
        (Some(delta), true) => delta.clone(),
        _ => snapshot.full.clone(),
    };
    let rep = Representation::new(
        body,
        ResourceKind::MediaPlaylist.content_type(crate::layout::MEDIA_PLAYLIST),
        headers::cache_control(
            ResourceKind::MediaPlaylist,
            true,
            state.live_playlist_max_age_s,
        ),
        snapshot.modified,
    );
    headers::respond(method, request_headers, &rep)
}

/// 503 that no cache keeps.
fn unavailable(why: &'static str) -> Response<Body> {
    let mut r = headers::text(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    r
}

/// Maps a request path to a file under the store, or why not.
fn locate(state: &OriginState, path: &str) -> Result<(PathBuf, ResourceKind, bool), PathError> {
    let (base, rest, live) = match parse_media_path(path)? {
        MediaPath::Live { stream, rest } => (state.live_dir.join(stream), rest, true),
        MediaPath::Vod { asset, rest } => (state.vod_dir.join(asset), rest, false),
    };
    let name = rest.last().ok_or(PathError::NotFound)?;
    let kind = ResourceKind::from_file_name(name).ok_or(PathError::NotFound)?;
    // `/{stream}/master.m3u8` | `/{stream}/manifest.mpd` | `/{stream}/{rendition}/{file}`.
    let shape_ok = match (kind, rest.len()) {
        (ResourceKind::MasterPlaylist | ResourceKind::DashManifest, 1) => true,
        (ResourceKind::MediaPlaylist | ResourceKind::Segment | ResourceKind::InitSegment, 2) => {
            true
        }
        _ => false,
    };
    if !shape_ok {
        return Err(PathError::NotFound);
    }
    let mut file = base;
    for part in &rest {
        file.push(part);
    }
    Ok((file, kind, live))
}

async fn read_file(path: &std::path::Path) -> std::io::Result<(Bytes, std::time::SystemTime)> {
    let meta = tokio::fs::metadata(path).await?;
    if !meta.is_file() {
        return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::other(
            "file exceeds the origin's response size limit",
        ));
    }
    let body = tokio::fs::read(path).await?;
    Ok((
        Bytes::from(body),
        meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
    ))
}
