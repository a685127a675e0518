//! What the edge knows, read for the operators' API (`/api/v1/origins`, `cache`, `viewers`):
//! the origin set with its health and load, the cache's size, hit ratio and most requested
//! objects, and the viewers per stream. Read-only snapshots in the edge's own terms; the api
//! module turns them into its wire types.

use super::Edge;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Objects listed by [`EdgeView::cache`] at most.
pub const TOP_OBJECTS: usize = 10;

/// A handle on a running edge's state.
#[derive(Clone)]
pub struct EdgeView(pub(super) Arc<Edge>);

/// One origin as the edge sees it now.
#[derive(Debug, Clone)]
pub struct OriginStatus {
    pub id: String,
    pub base_url: String,
    pub is_static: bool,
    /// Passing health checks (or not yet failed).
    pub healthy: bool,
    /// Healthy and its heartbeats (if it sends any) are not lost: a candidate for requests.
    pub usable: bool,
    /// Requests this edge has in flight to it now.
    pub in_flight: usize,
    /// Streams it announced in its last heartbeat.
    pub streams: Vec<String>,
    /// Since its last heartbeat (none for a static origin that never sent one).
    pub heartbeat_age: Option<Duration>,
    /// The load its last heartbeat announced: live pipelines and the slowest encoder's speed
    /// (fraction of real time); none without a heartbeat.
    pub announced_load: Option<(u32, f32)>,
}

/// One cached object.
#[derive(Debug, Clone)]
pub struct CachedEntry {
    pub path: String,
    pub kind: &'static str,
    pub bytes: u64,
    pub hits: u64,
}

/// The cache now.
#[derive(Debug, Clone)]
pub struct CacheStatus {
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    /// Most hit objects first, at most [`TOP_OBJECTS`].
    pub top_objects: Vec<CachedEntry>,
}

impl EdgeView {
    pub fn origins(&self) -> Vec<OriginStatus> {
        let now_ms = super::unix_now_ms();
        self.0
            .upstream
            .origins
            .snapshot()
            .iter()
            .map(|o| {
                let last = o.state.last_heartbeat_ms.load(Ordering::Relaxed);
                OriginStatus {
                    id: o.id.clone(),
                    base_url: o.base_url.clone(),
                    is_static: o.is_static,
                    healthy: o.is_healthy(),
                    usable: o.usable(now_ms),
                    in_flight: o.in_flight(),
                    streams: o.streams.iter().cloned().collect(),
                    heartbeat_age: (last > 0)
                        .then(|| Duration::from_millis(now_ms.saturating_sub(last).max(0) as u64)),
                    announced_load: o.announced_load(),
                }
            })
            .collect()
    }

    /// Size, counters and the most hit objects: one walk over the cache's entries holding
    /// only `Arc`s (no copy of any path or body), then the top [`TOP_OBJECTS`] picked by
    /// partial selection; an operator's request, not the viewers' path.
    pub fn cache(&self) -> CacheStatus {
        let edge = &self.0;
        let mut all: Vec<(u64, Arc<String>, Arc<super::cache::CachedObject>)> = edge
            .cache
            .objects()
            .iter()
            .map(|(key, obj)| (obj.hits.load(Ordering::Relaxed), key, obj))
            .collect();
        let most_hit_first = |a: &(u64, Arc<String>, _), b: &(u64, Arc<String>, _)| {
            b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1))
        };
        if all.len() > TOP_OBJECTS {
            all.select_nth_unstable_by(TOP_OBJECTS - 1, most_hit_first);
            all.truncate(TOP_OBJECTS);
        }
        all.sort_by(most_hit_first);
        CacheStatus {
            bytes: edge.cache.weighted_size(),
            // The cache's own limit: a hot reload may have rebuilt it at another size.
            capacity_bytes: edge
                .cache
                .objects()
                .policy()
                .max_capacity()
                .unwrap_or(edge.config.cache_bytes),
            entries: edge.cache.objects().entry_count(),
            hits: edge.metrics.hits.get(),
            misses: edge.metrics.misses.get(),
            top_objects: all
                .into_iter()
                .map(|(hits, path, obj)| CachedEntry {
                    path: path.as_ref().clone(),
                    kind: obj.kind.label(),
                    bytes: obj.rep.body.len() as u64,
                    hits,
                })
                .collect(),
        }
    }

    /// Viewers per stream now.
    pub fn viewers(&self) -> BTreeMap<String, u64> {
        self.0.viewers.per_stream()
    }

    /// How long one playlist fetch keeps a viewer counted.
    pub fn viewer_window(&self) -> Duration {
        self.0.viewers.window()
    }
}
