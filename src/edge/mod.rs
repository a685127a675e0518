//! The edge: viewers' HTTP server in front of origin workers.
//!
//! Request path, in order (pingora-style phases):
//! 1. **route** — health/metrics, CORS preflight, or a media path (400/404 before anything else),
//!    made canonical (decoded once): every spelling of a URL is one cache key and one fetch;
//! 2. **hold** (LL-HLS, [`blocking`]) — a blocking playlist reload or a request for a part that
//!    does not exist yet waits until the bus announces it (bounded in count and time);
//!    the cache key is the path plus the canonical `_HLS_` directives, nothing else of the query;
//! 3. **cache lookup** — segments are immutable; playlists are fresh until the bus announces a
//!    newer segment (or, if the bus is silent, a short TTL passes);
//! 4. **pick origin** — [`balancer`]: origins serving the stream first, by policy, healthy first;
//! 5. **fetch, coalesced** — concurrent misses for one key share one origin fetch (moka's
//!    `try_get_with`), waiters are woken when it completes; failures are not cached, and a
//!    waiter whose shared fetch failed tries once more itself; only a whole body is cached;
//!    when every origin fails, a live playlist's last good copy is served for a bounded age;
//! 6. **respond** — ETag/304, Range/206, HEAD, CORS, gzip for playlists, `Age`, `X-Cache`.
//!
//! Background services: the bus listener (origin discovery, freshness, prefetch) and the
//! active health checker.

pub mod balancer;
pub mod blocking;
pub mod cache;
pub mod discovery;
mod held;
pub mod metrics;
pub mod sequence_floor;
pub mod signed_url;
pub mod trust;
pub mod upstream;
pub mod view;
pub mod viewers;
pub mod whip_relay;

use crate::Shutdown;
use crate::config::{Config, EdgeConfig};
use crate::http::Body;
use crate::http::headers::{self, Representation};
use crate::http::metrics::Counter;
use crate::http::paths::{MediaPath, PathError, ResourceKind, parse_media_path};
use balancer::OriginSet;
use cache::{CachedObject, EdgeCache};
use held::{LlRequest, hold, unavailable_in_time};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use metrics::EdgeMetrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use upstream::{FetchError, Upstream};

/// Prefetches running at once; beyond this, announcements are skipped (viewers still fetch).
const MAX_CONCURRENT_PREFETCHES: usize = 32;

/// Everything one request or background service needs, shared behind an `Arc`.
struct Edge {
    config: EdgeConfig,
    cache: EdgeCache,
    upstream: Upstream,
    metrics: EdgeMetrics,
    prefetch_permits: Arc<tokio::sync::Semaphore>,
    bus_stats: OnceLock<crate::bus::subscriber::BusSubscriber>,
    /// Background work (bus listener, health checks, prefetches), waited for on shutdown.
    tasks: tokio_util::task::TaskTracker,
    /// Refusals per reason (indexed as `trust::Rejection::ALL`), for rate-limited logging.
    rejections_logged: [AtomicU64; trust::Rejection::ALL.len()],
    /// LL-HLS: where each live playlist ends (from the bus), and the budget of held requests.
    ends: blocking::PlaylistEnds,
    /// Where each live media playlist's newest served window starts (it never moves back).
    floors: sequence_floor::SequenceFloors,
    held: Arc<crate::http::held::HeldBudget>,
    /// Who fetched which stream's playlists lately (the API's and `/metrics`' viewer counts).
    viewers: viewers::Viewers,
    /// The operators' API and console on this listener (set once before serving).
    api: OnceLock<Arc<crate::api::Api>>,
    /// Whether this listener is bound to a loopback address (the API's access rule).
    loopback: bool,
    /// WHIP signalling relayed to the stream's origin (`webrtc.enabled`).
    whip: Option<whip_relay::WhipRelay>,
    /// Signed playback URLs: the signer when a secret is configured.
    signer: Option<signed_url::Signer>,
    /// The base URLs origin heartbeats may name: set at bind, replaced by a hot reload of
    /// `edge.origins`, read by the bus listener's judge when it changes.
    allow: tokio::sync::watch::Sender<Vec<crate::http::base_url::OriginPattern>>,
}

/// A bound, not yet running edge.
pub struct EdgeServer {
    listener: TcpListener,
    edge: Arc<Edge>,
}

impl EdgeServer {
    pub async fn bind(config: &Config) -> std::io::Result<EdgeServer> {
        let listener = TcpListener::bind(config.edge.listen).await?;
        let loopback = listener.local_addr()?.ip().is_loopback();
        let ec = config.edge.clone();
        let (fetches, failovers) = (Counter::default(), Counter::default());
        let metrics = EdgeMetrics::new(&fetches, &failovers);
        let cache = EdgeCache::new(
            ec.cache_bytes,
            Duration::from_millis(ec.playlist_ttl_ms),
            Duration::from_millis(ec.stale_if_error_ms),
            metrics.evictions.clone(),
        );
        let origins = Arc::new(OriginSet::with_limits(
            &ec.origins,
            ec.balance,
            balancer::LearnedOriginLimits {
                max_origins: ec.max_learned_origins,
                expiry_ms: ec.learned_origin_expiry_ms,
            },
        ));
        let timeout = Duration::from_millis(ec.origin_timeout_ms);
        let upstream = Upstream {
            client: upstream::client(timeout),
            origins,
            timeout,
            max_object_bytes: ec.max_object_bytes as usize,
            fall: ec.health_fall,
            rise: ec.health_rise,
            fetches,
            failovers,
        };
        Ok(EdgeServer {
            listener,
            edge: Arc::new(Edge {
                cache,
                upstream,
                metrics,
                prefetch_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PREFETCHES)),
                bus_stats: OnceLock::new(),
                tasks: tokio_util::task::TaskTracker::new(),
                rejections_logged: Default::default(),
                ends: blocking::PlaylistEnds::default(),
                floors: sequence_floor::SequenceFloors::default(),
                held: crate::http::held::HeldBudget::new(
                    ec.max_held_requests,
                    ec.max_held_requests_per_stream,
                ),
                viewers: viewers::Viewers::new(
                    Duration::from_millis(config.ladder.segment_duration_ms),
                    config.api.max_viewer_sessions,
                ),
                api: OnceLock::new(),
                loopback,
                signer: ec.signed_urls.signer(),
                allow: tokio::sync::watch::Sender::new(discovery::allow_list(
                    &ec.origins,
                    &ec.origin_allow,
                )),
                config: ec,
                whip: config.webrtc.enabled.then(|| {
                    whip_relay::WhipRelay::new(
                        Duration::from_millis(config.webrtc.answer_timeout_ms) + timeout * 2,
                    )
                }),
            }),
        })
    }

    /// What a hot reload may change while the edge runs. `own_origins` are origins the app
    /// added to the configured ones (`zoomate run`: its own origin); they stay.
    pub fn reload_handle(&self, own_origins: Vec<String>) -> EdgeReloadHandle {
        EdgeReloadHandle {
            edge: self.edge.clone(),
            own_origins,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// What the edge knows, for the API.
    pub fn view(&self) -> view::EdgeView {
        view::EdgeView(self.edge.clone())
    }

    /// Answers `/api/v1/` and `/console/` on this listener.
    pub fn set_api(&self, api: Arc<crate::api::Api>) {
        let _ = self.edge.api.set(api);
    }

    /// Serves viewers and runs the background services until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let edge = self.edge;
        if !edge.config.bus_connect.is_empty() {
            edge.tasks
                .spawn(discovery::bus_listener(edge.clone(), shutdown.clone()));
        }
        edge.tasks
            .spawn(discovery::health_checker(edge.clone(), shutdown.clone()));
        let limits = edge.config.limits.clone();
        let e = edge.clone();
        crate::http::serve(
            self.listener,
            limits,
            edge.metrics.connections.clone(),
            move |req| handle(e.clone(), req),
            shutdown,
        )
        .await;
        // The services saw the same signal; prefetches end within their fetch timeouts.
        edge.tasks.close();
        edge.tasks.wait().await;
    }
}

/// The parts of a running edge a hot reload changes (see `crate::reload`).
#[derive(Clone)]
pub struct EdgeReloadHandle {
    edge: Arc<Edge>,
    own_origins: Vec<String>,
}

impl EdgeReloadHandle {
    /// `edge.origins` (plus the app's own): requests from now on pick among them, and the bus
    /// listener believes heartbeats from them (the allow-list is built from the same list).
    pub fn set_static_origins(&self, configured: &[String]) {
        let mut all = configured.to_vec();
        all.extend(self.own_origins.iter().cloned());
        self.edge.upstream.origins.replace_static(&all);
        self.edge
            .allow
            .send_replace(discovery::allow_list(&all, &self.edge.config.origin_allow));
    }

    /// `edge.cache_bytes` (see [`EdgeCache::set_capacity`]).
    pub async fn set_cache_bytes(&self, bytes: u64) {
        self.edge.cache.set_capacity(bytes).await;
    }
}

/// Times every media request from arrival to its response head
/// (`zoomate_edge_first_byte_seconds`), then handles it.
async fn handle(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let arrived = std::time::Instant::now();
    // The kind from the file name alone: operator routes and unroutable paths have none.
    let kind = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .and_then(ResourceKind::from_file_name);
    let resp = handle_request(edge.clone(), req).await;
    if let Some(kind) = kind {
        edge.metrics.first_byte(kind, arrived);
    }
    resp
}

async fn handle_request(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    // 1. route (the operators' API and console first: they have methods of their own)
    if let Some(api) = edge.api.get()
        && let Some(r) = api.respond(&req, edge.loopback).await
    {
        return r;
    }
    // WHIP/WHEP signalling is relayed to the stream's origin, never cached.
    let path = req.uri().path();
    let whep = path.starts_with(crate::whep::WHEP_PREFIX);
    if (path.starts_with(crate::layout::WHIP_PREFIX) || whep)
        && let Some(relay) = &edge.whip
    {
        // WHEP is playback: where the edge requires signed URLs, it takes no unsigned viewer
        // (WHEP URLs carry no token yet, so it is refused outright).
        if whep && edge.signer.is_some() && edge.config.signed_urls.required {
            return headers::text(
                StatusCode::FORBIDDEN,
                "WHEP playback is not available where signed URLs are required",
            );
        }
        return relay.relay(&edge.upstream.origins, req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if let Some(r) = headers::common_routes(&method, &path, || render_metrics(&edge)) {
        // Health checks and scrapes are not viewer traffic; refusals (405) and preflights are.
        let operator = matches!(path.as_str(), "/healthz" | "/metrics");
        return if operator && r.status().is_success() {
            r
        } else {
            count(&edge, None, r)
        };
    }
    // Every spelling of a resource is one cache key and one origin fetch: from here on the
    // path is the canonical one (percent-decoded once, as the origin decodes it).
    let Routed {
        path,
        stream,
        kind,
        live,
    } = match authorized_route(&edge, &path) {
        Ok(r) => r,
        Err(RouteError::Token(why)) => {
            edge.metrics.signed_url_rejected(why);
            return count(
                &edge,
                None,
                headers::text(StatusCode::FORBIDDEN, &why.to_string()),
            );
        }
        Err(RouteError::Path(e)) => match e {
            PathError::Malformed(_) => {
                return count(
                    &edge,
                    None,
                    headers::text(StatusCode::BAD_REQUEST, "bad request"),
                );
            }
            PathError::NotFound => {
                return count(
                    &edge,
                    None,
                    headers::text(StatusCode::NOT_FOUND, "not found"),
                );
            }
        },
    };
    // 2. hold (LL-HLS)
    let mut request = match LlRequest::classify(&path, req.uri().query(), kind, live) {
        Ok(r) => r,
        Err(why) => {
            tracing::debug!(path, why, "refused LL-HLS directives");
            return count(
                &edge,
                Some(kind),
                headers::text(StatusCode::BAD_REQUEST, why),
            );
        }
    };
    let held = match hold(&edge, &stream, &mut request).await {
        Ok(h) => h,
        Err(resp) => return count(&edge, Some(kind), resp),
    };
    if held.check_origin
        && let Some(w) = request.waits_for.take()
    {
        if w.part {
            // Not announced in time: not there (the origin would only hold it again).
            edge.metrics.held("timeout");
            return count(&edge, Some(kind), unavailable_in_time());
        }
        // Ask for what the origin has now (not held), and answer only if it is there.
        request.key = w.playlist.clone();
        {
            match lookup_or_fetch(&edge, &stream, &request, kind, live).await {
                Ok((obj, _)) => {
                    let satisfied = std::str::from_utf8(&obj.rep.body)
                        .ok()
                        .and_then(crate::packaging::hls::playlist_end)
                        .is_some_and(|e| {
                            e.satisfies(w.directives.msn.unwrap_or(0), w.directives.part)
                        });
                    if !satisfied {
                        edge.metrics.held("timeout");
                        return count(&edge, Some(kind), unavailable_in_time());
                    }
                    if w.directives.skip {
                        request.key = format!("{}{}", w.playlist, w.directives.canonical_query());
                        request.waits_for = None;
                    }
                }
                Err(_) => {
                    edge.metrics.held("timeout");
                    return count(&edge, Some(kind), unavailable_in_time());
                }
            }
        }
    }
    // 3. cache lookup (4 + 5 inside `lookup_or_fetch` on a miss)
    let (object, source) = match lookup_or_fetch(&edge, &stream, &request, kind, live).await {
        Ok(found) => found,
        Err(FetchError::NotFound) => {
            return count(
                &edge,
                Some(kind),
                headers::text(StatusCode::NOT_FOUND, "not found"),
            );
        }
        Err(FetchError::HoldTimeout) => {
            edge.metrics.held("timeout");
            return count(&edge, Some(kind), unavailable_in_time());
        }
        Err(FetchError::Refused(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return count(
                &edge,
                Some(kind),
                headers::text(status, "refused by the origin"),
            );
        }
        Err(FetchError::Unavailable(why)) => {
            tracing::warn!(path, why, "no origin could serve the request");
            return count(
                &edge,
                Some(kind),
                headers::text(StatusCode::BAD_GATEWAY, "origin unavailable"),
            );
        }
    };
    if let Some(at) = held.woken_at {
        edge.metrics.held_wake.observe(at.elapsed().as_secs_f64());
    }
    drop(held);
    // 6. respond
    let wants_gzip = kind.is_playlist()
        && !req.headers().contains_key(header::RANGE)
        && req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.contains("gzip"))
            .unwrap_or(false);
    let rep = if wants_gzip {
        object.gzipped().unwrap_or(&object.rep)
    } else {
        &object.rep
    };
    let mut resp = headers::respond(&method, req.headers(), rep);
    let h = resp.headers_mut();
    if std::ptr::eq(rep, &object.rep) {
        if kind.is_playlist() {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
    } else {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    h.insert(
        header::AGE,
        HeaderValue::from(object.fetched_at.elapsed().as_secs()),
    );
    h.insert("x-cache", HeaderValue::from_static(source.label()));
    if source == Source::Hit {
        object.hits.fetch_add(1, Ordering::Relaxed);
    }
    let reloaded = matches!(
        kind,
        ResourceKind::MediaPlaylist | ResourceKind::DashManifest
    );
    if live
        && reloaded
        && resp.status().is_success()
        && let Some(client) = req.extensions().get::<crate::http::ClientAddr>()
    {
        let agent = req
            .headers()
            .get(header::USER_AGENT)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        edge.viewers.saw(&stream, client.0.ip(), agent);
    }
    count(&edge, Some(kind), resp)
}

/// A media request, routed.
struct Routed {
    /// The canonical path ([`MediaPath::canonical`]): the cache key and what origins are asked.
    path: String,
    stream: String,
    kind: ResourceKind,
    live: bool,
}

/// Why a media request was not routed.
enum RouteError {
    Path(PathError),
    /// 403: the signed-URL token is missing (when required), malformed, expired or forged.
    Token(signed_url::TokenError),
}

/// Route, after taking off and checking a signed-URL prefix (`/t/{expires}/{token}`) when the
/// edge has a secret: what is routed (and cached, and asked of origins) is the path without it.
fn authorized_route(edge: &Edge, raw_path: &str) -> Result<Routed, RouteError> {
    use signed_url::TokenError;
    let Some(signer) = &edge.signer else {
        return route(raw_path).map(|(r, _)| r).map_err(RouteError::Path);
    };
    let signed = signed_url::split_token(raw_path).map_err(RouteError::Token)?;
    let Some(signed) = signed else {
        if edge.config.signed_urls.required {
            return Err(RouteError::Token(TokenError::Missing));
        }
        return route(raw_path).map(|(r, _)| r).map_err(RouteError::Path);
    };
    let (routed, media) = route(&signed.path).map_err(|e| match e {
        // A token in front of garbage is no valid signed URL either.
        PathError::Malformed(_) => RouteError::Token(TokenError::Malformed),
        e => RouteError::Path(e),
    })?;
    signer
        .verify(&signed, &signed_url::scope(&media), unix_now_s())
        .map_err(RouteError::Token)?;
    Ok(routed)
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn route(raw_path: &str) -> Result<(Routed, MediaPath), PathError> {
    let media = parse_media_path(raw_path)?;
    let path = media.canonical();
    let (stream, rest, live) = match &media {
        MediaPath::Live { stream, rest } => (stream.clone(), rest, true),
        MediaPath::Vod { asset, rest } => (asset.clone(), rest, false),
    };
    let name = rest.last().ok_or(PathError::NotFound)?;
    let kind = ResourceKind::from_file_name(name).ok_or(PathError::NotFound)?;
    Ok((
        Routed {
            path,
            stream,
            kind,
            live,
        },
        media,
    ))
}

fn count(edge: &Edge, kind: Option<ResourceKind>, resp: Response<Body>) -> Response<Body> {
    edge.metrics.request(kind, resp.status());
    resp
}

/// Where an answer came from (`X-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Hit,
    Miss,
    /// Every origin failed: the last good copy of a live playlist (stale-if-error).
    Stale,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Hit => "HIT",
            Source::Miss => "MISS",
            Source::Stale => "STALE",
        }
    }
}

/// Cache lookup, then a coalesced origin fetch on a miss.
async fn lookup_or_fetch(
    edge: &Arc<Edge>,
    stream: &str,
    request: &LlRequest,
    kind: ResourceKind,
    live: bool,
) -> Result<(Arc<CachedObject>, Source), FetchError> {
    let key = request.key.as_str();
    if let Some(obj) = edge.cache.objects().get(key).await {
        if edge.cache.is_fresh(key, &obj, live) {
            edge.metrics.hits.inc();
            return Ok((obj, Source::Hit));
        }
        edge.metrics.stale_playlist_refreshes.inc();
        edge.cache.invalidate(key).await;
    }
    edge.metrics.misses.inc();
    // A blocking request the edge could not judge (no announcement yet) is held by the origin.
    let attempt = upstream::Attempt {
        held: request
            .waits_for
            .as_ref()
            .map(|_| Duration::from_millis(edge.config.held_request_timeout_ms)),
    };
    let ran = Arc::new(AtomicBool::new(false));
    let mut result =
        fetch_into_cache(edge, stream, key, kind, live, None, attempt, ran.clone()).await;
    if !ran.load(Ordering::Relaxed) {
        edge.metrics.coalesced_waiters.inc();
        // The fill this request waited on failed. As pingora's cache lock does, a waiter does
        // not inherit the failure: it tries once more itself (the first waiter to ask becomes
        // the fetcher, the others join it). Answers (404, refusals, held timeouts) are shared
        // as they are; once only, so a dead origin costs each waiter one more try at most.
        if matches!(result, Err(FetchError::Unavailable(_))) {
            edge.metrics.fill_retries.inc();
            let again = Arc::new(AtomicBool::new(false));
            result = fetch_into_cache(edge, stream, key, kind, live, None, attempt, again).await;
        }
    }
    // A blocking request the bus says is satisfied, refused by the origin that answered: with
    // redundant origins, that one is behind the one that announced (a failover's survivor).
    // Ask again as it catches up, within the hold. The only origin's refusal is the truth.
    let redundant = || edge.upstream.origins.snapshot().len() > 1;
    if let Some(w) = request.waits_for.as_ref().filter(|_| redundant()) {
        let until = tokio::time::Instant::now()
            + Duration::from_millis(edge.config.held_request_timeout_ms);
        while matches!(
            result,
            Err(FetchError::Refused(400 | 404) | FetchError::NotFound)
        ) && w.refused_by_a_lagging_origin(edge.ends.known(&w.playlist))
            && tokio::time::Instant::now() + held::LAGGING_ORIGIN_RETRY < until
        {
            edge.metrics.lagging_origin_retries.inc();
            tokio::time::sleep(held::LAGGING_ORIGIN_RETRY).await;
            let again = Arc::new(AtomicBool::new(false));
            result = fetch_into_cache(edge, stream, key, kind, live, None, attempt, again).await;
        }
    }
    // Stale-if-error: live playlists a player reloads (never a blocking request, which asks
    // for something newer than any copy the edge has).
    let stale_allowed = live && kind.is_playlist() && request.waits_for.is_none();
    match result {
        Ok(obj) => {
            if stale_allowed {
                edge.cache.keep_last_good(key, &obj);
            }
            Ok((obj, Source::Miss))
        }
        Err(FetchError::Unavailable(why)) if stale_allowed => {
            match edge.cache.stale_if_error(key) {
                Some(obj) => {
                    tracing::debug!(key, why, "every origin failed; serving the last good copy");
                    edge.metrics.stale_served.inc();
                    Ok((obj, Source::Stale))
                }
                None => Err(FetchError::Unavailable(why)),
            }
        }
        Err(e) => Err(e),
    }
}

/// `try_get_with`: the first caller runs the fetch, concurrent callers for the same key wait on
/// it and are woken when it completes. An `Err` is returned to all of them and not cached.
async fn fetch_into_cache(
    edge: &Arc<Edge>,
    stream: &str,
    path: &str,
    kind: ResourceKind,
    live: bool,
    only_origin: Option<String>,
    attempt: upstream::Attempt,
    ran: Arc<AtomicBool>,
) -> Result<Arc<CachedObject>, FetchError> {
    let e = edge.clone();
    let (stream_owned, path_owned) = (stream.to_string(), path.to_string());
    edge.cache
        .objects()
        .try_get_with(path.to_string(), async move {
            ran.store(true, Ordering::Relaxed);
            let f = match &only_origin {
                Some(id) => e.upstream.fetch_from(id, &path_owned).await?,
                None => {
                    e.upstream
                        .fetch(&stream_owned, &path_owned, attempt)
                        .await?
                }
            };
            if let Some(announced) = e.cache.announced_size(&path_owned) {
                if f.body.len() as u64 != announced {
                    discovery::reject(&e, trust::Rejection::Size, &f.origin, &path_owned);
                    return Err(FetchError::Unavailable(format!(
                        "origin {} sent {} bytes for {path_owned}, announced {announced}",
                        f.origin,
                        f.body.len()
                    )));
                }
            }
            let (mut body, mut etag) = (f.body, f.etag);
            if live && kind == ResourceKind::MediaPlaylist {
                let served = std::str::from_utf8(&body)
                    .map(|text| e.floors.serve(&path_owned, text))
                    .unwrap_or(sequence_floor::Served::AsIs);
                if let sequence_floor::Served::Trimmed {
                    body: held,
                    dropped,
                } = served
                {
                    tracing::debug!(
                        path = path_owned,
                        origin = f.origin,
                        dropped,
                        "playlist starts before the window already served; served from there"
                    );
                    e.metrics.windows_held.inc();
                    body = bytes::Bytes::from(held);
                    etag = None; // not the origin's bytes: a validator of our own
                }
            }
            let name = path_owned.rsplit('/').next().unwrap_or("");
            let last_modified = f
                .last_modified
                .as_deref()
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .unwrap_or_else(SystemTime::now);
            let max_age = (e.config.playlist_ttl_ms / 1000).max(1);
            let mut rep = Representation::new(
                body,
                kind.content_type(name),
                headers::cache_control(kind, live, max_age),
                last_modified,
            );
            if let Some(etag) = etag {
                rep.etag = etag; // keep the origin's validator so 304s agree across tiers
            }
            Ok::<_, FetchError>(Arc::new(CachedObject::new(rep, kind)))
        })
        .await
        .map_err(|e: Arc<FetchError>| (*e).clone())
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn render_metrics(edge: &Edge) -> String {
    edge.metrics.render(metrics::ScrapeState {
        viewers: edge.viewers.per_stream(),
        cache_bytes: edge.cache.weighted_size(),
        origins: &edge.upstream.origins,
        bus: edge.bus_stats.get().map(|sub| sub.stats()),
        now_ms: unix_now_ms(),
        held_now: edge.held.held(),
    })
}
