//! The edge: viewers' HTTP server in front of origin workers.
//!
//! Request path, in order (pingora-style phases):
//! 1. **route** — health/metrics, CORS preflight, or a media path (400/404 before anything else);
//! 2. **cache lookup** — segments are immutable; playlists are fresh until the bus announces a
//!    newer segment (or, if the bus is silent, a short TTL passes);
//! 3. **pick origin** — [`balancer`]: origins serving the stream first, by policy, healthy first;
//! 4. **fetch, coalesced** — concurrent misses for one key share one origin fetch (moka's
//!    `try_get_with`), waiters are woken when it completes; failures are not cached;
//! 5. **respond** — ETag/304, Range/206, HEAD, CORS, gzip for playlists, `Age`, `X-Cache`.
//!
//! Background services: the bus listener (origin discovery, freshness, prefetch) and the
//! active health checker.

pub mod balancer;
pub mod metrics;
pub mod trust;
pub mod upstream;

use crate::Shutdown;
use crate::bus::BusEvent;
use crate::config::{Config, EdgeConfig};
use crate::http::Body;
use crate::http::headers::{self, Representation};
use crate::http::metrics::Counter;
use crate::http::paths::{MediaPath, PathError, ResourceKind, parse_media_path};
use balancer::OriginSet;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use metrics::EdgeMetrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use upstream::{FetchError, Upstream};

/// Prefetches running at once; beyond this, announcements are skipped (viewers still fetch).
const MAX_CONCURRENT_PREFETCHES: usize = 32;
/// Bus silence after which the edge's subscriber reconnects (origins heartbeat every ~1 s).
const BUS_IDLE_RECONNECT: Duration = Duration::from_secs(10);
/// Playlists whose latest announced sequence is remembered.
const MAX_TRACKED_PLAYLISTS: u64 = 100_000;
/// Announced segment sizes remembered (to refuse an origin answer that disagrees).
const MAX_TRACKED_SEGMENT_SIZES: u64 = 100_000;
/// How long an announcement (sequence, size) is remembered without being renewed.
const ANNOUNCEMENT_MEMORY: Duration = Duration::from_secs(600);

/// The newest segment the bus announced for a playlist, and when it was believed.
#[derive(Debug, Clone, Copy)]
struct Announced {
    sequence: u64,
    at: Instant,
}

/// One cached response body and what is needed to answer any request for it.
pub struct CachedObject {
    rep: Representation,
    kind: ResourceKind,
    fetched_at: Instant,
    /// Media playlists: sequence of the newest listed segment.
    newest_sequence: Option<u64>,
    gzipped: OnceLock<Option<Representation>>,
}

/// Newest segment's sequence in a media playlist (media sequence + segments − 1).
pub fn newest_sequence(playlist: &str) -> Option<u64> {
    let ms: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .trim()
        .parse()
        .ok()?;
    let n = playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF:"))
        .count() as u64;
    (ms + n).checked_sub(1)
}

struct Edge {
    config: EdgeConfig,
    cache: moka::future::Cache<String, Arc<CachedObject>>,
    announced: moka::sync::Cache<String, Announced>,
    /// Segment URI → announced byte size.
    announced_sizes: moka::sync::Cache<String, u64>,
    upstream: Upstream,
    metrics: EdgeMetrics,
    prefetch_permits: Arc<tokio::sync::Semaphore>,
    bus_stats: OnceLock<crate::bus::subscriber::BusSubscriber>,
    /// Refusals per reason (indexed as `trust::Rejection::ALL`), for rate-limited logging.
    rejections_logged: [AtomicU64; trust::Rejection::ALL.len()],
}

/// A bound, not yet running edge.
pub struct EdgeServer {
    listener: TcpListener,
    edge: Arc<Edge>,
}

impl EdgeServer {
    pub async fn bind(config: &Config) -> std::io::Result<EdgeServer> {
        let listener = TcpListener::bind(config.edge.listen).await?;
        let ec = config.edge.clone();
        let (fetches, failovers) = (Counter::default(), Counter::default());
        let metrics = EdgeMetrics::new(&fetches, &failovers);
        let evictions = metrics.evictions.clone();
        let cache = moka::future::Cache::builder()
            .max_capacity(ec.cache_bytes)
            .weigher(|k: &String, v: &Arc<CachedObject>| {
                (k.len() + v.rep.body.len() + 256).min(u32::MAX as usize) as u32
            })
            .eviction_listener(move |_k, _v, cause| {
                if cause.was_evicted() {
                    evictions.inc();
                }
            })
            .build();
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
                announced: moka::sync::Cache::builder()
                    .max_capacity(MAX_TRACKED_PLAYLISTS)
                    .time_to_idle(ANNOUNCEMENT_MEMORY)
                    .build(),
                announced_sizes: moka::sync::Cache::builder()
                    .max_capacity(MAX_TRACKED_SEGMENT_SIZES)
                    .time_to_live(ANNOUNCEMENT_MEMORY)
                    .build(),
                upstream,
                metrics,
                prefetch_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PREFETCHES)),
                bus_stats: OnceLock::new(),
                rejections_logged: Default::default(),
                config: ec,
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves viewers and runs the background services until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let edge = self.edge;
        if !edge.config.bus_connect.is_empty() {
            tokio::spawn(bus_listener(edge.clone(), shutdown.clone()));
        }
        tokio::spawn(health_checker(edge.clone(), shutdown.clone()));
        let limits = edge.config.limits.clone();
        let e = edge.clone();
        crate::http::serve(
            self.listener,
            limits,
            move |req| handle(e.clone(), req),
            shutdown,
        )
        .await;
    }
}

async fn handle(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    // 1. route
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
    let (stream, kind, live) = match route(&path) {
        Ok(r) => r,
        Err(PathError::Malformed(_)) => {
            return count(
                &edge,
                None,
                headers::text(StatusCode::BAD_REQUEST, "bad request"),
            );
        }
        Err(PathError::NotFound) => {
            return count(
                &edge,
                None,
                headers::text(StatusCode::NOT_FOUND, "not found"),
            );
        }
    };
    // 2. cache lookup (3 + 4 inside `lookup_or_fetch` on a miss)
    let (object, hit) = match lookup_or_fetch(&edge, &stream, &path, kind, live).await {
        Ok(found) => found,
        Err(FetchError::NotFound) => {
            return count(
                &edge,
                Some(kind),
                headers::text(StatusCode::NOT_FOUND, "not found"),
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
    // 5. respond
    let wants_gzip = kind.is_playlist()
        && !req.headers().contains_key(header::RANGE)
        && req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.contains("gzip"))
            .unwrap_or(false);
    let rep = if wants_gzip {
        object
            .gzipped
            .get_or_init(|| gzip(&object.rep))
            .as_ref()
            .unwrap_or(&object.rep)
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
    h.insert(
        "x-cache",
        HeaderValue::from_static(if hit { "HIT" } else { "MISS" }),
    );
    count(&edge, Some(kind), resp)
}

fn route(path: &str) -> Result<(String, ResourceKind, bool), PathError> {
    let (stream, rest, live) = match parse_media_path(path)? {
        MediaPath::Live { stream, rest } => (stream, rest, true),
        MediaPath::Vod { asset, rest } => (asset, rest, false),
    };
    let name = rest.last().ok_or(PathError::NotFound)?;
    let kind = ResourceKind::from_file_name(name).ok_or(PathError::NotFound)?;
    Ok((stream, kind, live))
}

fn count(edge: &Edge, kind: Option<ResourceKind>, resp: Response<Body>) -> Response<Body> {
    edge.metrics.request(kind, resp.status());
    resp
}

fn is_fresh(edge: &Edge, path: &str, obj: &CachedObject, live: bool) -> bool {
    if !obj.kind.is_playlist() || !live {
        return true; // segment names are never reused; VOD playlists never change
    }
    if let (Some(newest), Some(announced)) = (obj.newest_sequence, edge.announced.get(path)) {
        // The bus says there is a newer segment: never serve an older list. Only a list
        // fetched before the announcement is stale: one that was fetched after it and still
        // lacks the segment is the origin's answer, so a wrong announcement costs one refetch,
        // not the cache.
        if newest < announced.sequence && obj.fetched_at < announced.at {
            return false;
        }
    }
    obj.fetched_at.elapsed() < Duration::from_millis(edge.config.playlist_ttl_ms)
}

/// Cache lookup, then a coalesced origin fetch on a miss. Returns (object, was_hit).
async fn lookup_or_fetch(
    edge: &Arc<Edge>,
    stream: &str,
    path: &str,
    kind: ResourceKind,
    live: bool,
) -> Result<(Arc<CachedObject>, bool), FetchError> {
    if let Some(obj) = edge.cache.get(path).await {
        if is_fresh(edge, path, &obj, live) {
            edge.metrics.hits.inc();
            return Ok((obj, true));
        }
        edge.metrics.stale_playlist_refreshes.inc();
        edge.cache.invalidate(path).await;
    }
    edge.metrics.misses.inc();
    let ran = Arc::new(AtomicBool::new(false));
    let result = fetch_into_cache(edge, stream, path, kind, live, None, ran.clone()).await;
    if !ran.load(Ordering::Relaxed) {
        edge.metrics.coalesced_waiters.inc();
    }
    result.map(|o| (o, false))
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
    ran: Arc<AtomicBool>,
) -> Result<Arc<CachedObject>, FetchError> {
    let e = edge.clone();
    let (stream_owned, path_owned) = (stream.to_string(), path.to_string());
    edge.cache
        .try_get_with(path.to_string(), async move {
            ran.store(true, Ordering::Relaxed);
            let f = match &only_origin {
                Some(id) => e.upstream.fetch_from(id, &path_owned).await?,
                None => e.upstream.fetch(&stream_owned, &path_owned).await?,
            };
            if let Some(announced) = e.announced_sizes.get(&path_owned) {
                if f.body.len() as u64 != announced {
                    reject(&e, trust::Rejection::Size, &f.origin, &path_owned);
                    return Err(FetchError::Unavailable(format!(
                        "origin {} sent {} bytes for {path_owned}, announced {announced}",
                        f.origin,
                        f.body.len()
                    )));
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
                f.body,
                kind.content_type(name),
                headers::cache_control(kind, live, max_age),
                last_modified,
            );
            if let Some(etag) = f.etag {
                rep.etag = etag; // keep the origin's validator so 304s agree across tiers
            }
            let newest_sequence = if kind == ResourceKind::MediaPlaylist {
                std::str::from_utf8(&rep.body)
                    .ok()
                    .and_then(newest_sequence)
            } else {
                None
            };
            Ok::<_, FetchError>(Arc::new(CachedObject {
                rep,
                kind,
                fetched_at: Instant::now(),
                newest_sequence,
                gzipped: OnceLock::new(),
            }))
        })
        .await
        .map_err(|e: Arc<FetchError>| (*e).clone())
}

fn gzip(rep: &Representation) -> Option<Representation> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&rep.body).ok()?;
    let body = Bytes::from(enc.finish().ok()?);
    let etag = format!("{}-gz\"", rep.etag.trim_end_matches('"'));
    Some(Representation {
        body,
        content_type: rep.content_type,
        cache_control: rep.cache_control.clone(),
        etag,
        last_modified: rep.last_modified,
    })
}

/// Bus events → origin discovery, playlist freshness, prefetch.
async fn bus_listener(edge: Arc<Edge>, shutdown: Shutdown) {
    // The edge hears every origin's heartbeat, so a long silence means a dead link (a vanished
    // peer without FIN looks idle forever): reconnect after 10 s of it.
    let mut options =
        crate::bus::subscriber::SubscriberOptions::with_capacity(edge.config.bus_queue_capacity);
    options.idle_reconnect = Some(BUS_IDLE_RECONNECT);
    let (sub, mut rx) = crate::bus::subscriber::BusSubscriber::spawn_deliveries(
        edge.config.bus_connect.clone(),
        vec![],
        options,
        shutdown.clone(),
    );
    let _ = edge.bus_stats.set(sub);
    let mut judge = trust::Judge::new(trust_policy(&edge.config));
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = rx.recv() => match d { Some(d) => d, None => return },
        };
        if let Err(reason) = judge.judge(
            &delivery.endpoint,
            &delivery.topic,
            &delivery.event,
            unix_now_ms(),
        ) {
            reject(&edge, reason, &delivery.endpoint, &delivery.topic);
            continue;
        }
        match delivery.event {
            BusEvent::OriginHeartbeat {
                origin_id,
                http_base_url,
                streams,
                interval_ms,
                ..
            } => {
                edge.upstream
                    .origins
                    .heartbeat(&origin_id, &http_base_url, &streams, interval_ms);
            }
            BusEvent::SegmentReady {
                stream,
                rendition,
                media_sequence,
                uri,
                byte_size,
                origin_id,
                ..
            } => {
                announce(
                    &edge,
                    &crate::http::paths::live_playlist_uri(&stream, &rendition),
                    media_sequence,
                );
                edge.announced_sizes.insert(uri.clone(), byte_size);
                // The MPD lists every rendition: it changed with this segment (CMAF streams).
                edge.cache
                    .invalidate(&crate::http::paths::live_manifest_uri(&stream))
                    .await;
                if edge.config.prefetch {
                    prefetch(&edge, stream, uri, origin_id);
                }
            }
            BusEvent::PlaylistUpdated {
                uri,
                media_sequence,
                ..
            } => announce(&edge, &uri, media_sequence),
            BusEvent::StreamStarted { stream, .. } | BusEvent::StreamEnded { stream, .. } => {
                edge.cache
                    .invalidate(&crate::http::paths::live_master_uri(&stream))
                    .await;
            }
        }
    }
}

/// The allow-list: every configured origin (for `zoomate run`, its own), plus the operator's
/// `edge.origin_allow` patterns. Validated at config time; an entry that does not parse here
/// cannot occur, and is skipped rather than allowing anything.
fn trust_policy(config: &EdgeConfig) -> trust::TrustPolicy {
    use crate::http::base_url::{BaseUrl, OriginPattern};
    let allow = config
        .origins
        .iter()
        .filter_map(|o| BaseUrl::parse(o).ok().map(|u| OriginPattern::exact(&u)))
        .chain(
            config
                .origin_allow
                .iter()
                .filter_map(|p| OriginPattern::parse(p).ok()),
        )
        .collect();
    trust::TrustPolicy {
        allow,
        max_origins: config.max_learned_origins,
        origin_expiry_ms: config.learned_origin_expiry_ms as i64,
    }
}

/// Counts a refused announcement and logs it, rate-limited (the 1st, 2nd, 4th, 8th… of each
/// reason): a flood of forgeries must not become a flood of log lines.
fn reject(edge: &Edge, reason: trust::Rejection, source: &str, what: &str) {
    edge.metrics.bus_rejected(reason.label());
    let i = trust::Rejection::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0);
    let n = edge.rejections_logged[i].fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(
            reason = reason.label(),
            source,
            what = %what.escape_debug(),
            rejected = n,
            "bus announcement not believed"
        );
    }
}

fn announce(edge: &Edge, playlist: &str, sequence: u64) {
    let newer = edge
        .announced
        .get(playlist)
        .map(|a| sequence > a.sequence)
        .unwrap_or(true);
    if newer {
        edge.announced.insert(
            playlist.to_string(),
            Announced {
                sequence,
                at: Instant::now(),
            },
        );
    }
}

/// Pulls an announced segment into the cache from the origin that announced it (never from
/// another: the announcement vouches only for its own origin's copy).
fn prefetch(edge: &Arc<Edge>, stream: String, uri: String, origin_id: String) {
    let Ok(permit) = edge.prefetch_permits.clone().try_acquire_owned() else {
        edge.metrics.prefetch_skipped.inc();
        return;
    };
    let e = edge.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let Ok((stream, kind, live)) = route(&uri).map(|(_, k, l)| (stream, k, l)) else {
            return;
        };
        if e.cache.contains_key(&uri) {
            return;
        }
        e.metrics.prefetches.inc();
        if let Err(err) = fetch_into_cache(
            &e,
            &stream,
            &uri,
            kind,
            live,
            Some(origin_id),
            Arc::new(AtomicBool::new(false)),
        )
        .await
        {
            tracing::debug!(uri, error = %err, "prefetch failed");
        }
    });
}

/// Active health checks: `GET /healthz` on every origin each interval, after forgetting the
/// learned origins whose heartbeats stopped (so the dead are not checked forever).
async fn health_checker(edge: Arc<Edge>, shutdown: Shutdown) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(edge.config.health_check_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        edge.upstream.origins.expire_learned(unix_now_ms());
        for origin in edge.upstream.origins.snapshot().iter() {
            let uri: Result<http::Uri, _> = format!("{}/healthz", origin.base_url).parse();
            let Ok(uri) = uri else { continue };
            let Ok(req) = http::Request::get(uri).body(http_body_util::Empty::<Bytes>::new())
            else {
                continue;
            };
            let ok = matches!(
                tokio::time::timeout(edge.upstream.timeout, edge.upstream.client.request(req)).await,
                Ok(Ok(r)) if r.status().is_success()
            );
            if ok {
                origin.record_success(edge.config.health_rise)
            } else {
                origin.record_failure(edge.config.health_fall)
            }
        }
    }
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn render_metrics(edge: &Edge) -> String {
    edge.metrics.render(metrics::ScrapeState {
        cache_bytes: edge.cache.weighted_size(),
        origins: &edge.upstream.origins,
        bus: edge.bus_stats.get().map(|sub| sub.stats()),
        now_ms: unix_now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_sequence_of_a_playlist() {
        let p = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:10\n#EXTINF:2.000,\n10.ts\n#EXTINF:2.000,\n11.ts\n";
        assert_eq!(newest_sequence(p), Some(11));
        assert_eq!(newest_sequence("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n"), None);
        assert_eq!(newest_sequence("garbage"), None);
    }
}
