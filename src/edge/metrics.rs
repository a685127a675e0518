//! The edge's `/metrics`: counters it owns live in one `prometheus-client` registry for the
//! process; state owned elsewhere (cache size, the origin set, the bus subscriber) is read at
//! scrape time into a second, per-scrape registry. Names are the ones dashboards use.

use super::balancer::OriginSet;
use crate::bus::subscriber::SubscriberStats;
use crate::http::metrics::{
    Counter, Family, Gauge, HeldLabels, Histogram, KindHistograms, KindLabels, Registry,
    RequestLabels,
};
use crate::http::paths::ResourceKind;
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    /// Bus origin id or configured URL: text from config or a peer, escaped by the encoder.
    origin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Counters the edge increments on its request path and in its background services.
pub struct EdgeMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    pub hits: Counter,
    pub misses: Counter,
    pub coalesced_waiters: Counter,
    pub evictions: Counter,
    pub prefetches: Counter,
    pub prefetch_skipped: Counter,
    pub stale_playlist_refreshes: Counter,
    /// Waiters whose shared fill failed and who fetched once more themselves.
    pub fill_retries: Counter,
    /// Blocking requests asked again because the origin that answered refused a part the bus
    /// says exists (it is behind: a failover's survivor).
    pub lagging_origin_retries: Counter,
    /// Live playlists answered from their last good copy because every origin failed.
    pub stale_served: Counter,
    /// Live playlists served from a later start than the origin's: the window would have moved
    /// backwards (a failover to an origin listing more old segments).
    pub windows_held: Counter,
    bus_rejected: Family<ReasonLabels, Counter>,
    signed_url_rejected: Family<ReasonLabels, Counter>,
    held: Family<HeldLabels, Counter>,
    /// Bus announcement → a woken held request's response is ready, seconds.
    pub held_wake: Histogram,
    /// A viewer's request arrived → its response head is ready, by resource kind.
    first_byte: KindHistograms,
    /// A segment or part announcement arrived → the object is in the cache (prefetch), by kind.
    announce_to_cached: KindHistograms,
    /// The listener's connection slots (`zoomate_edge_http_connections_*`).
    pub connections: crate::http::slots::ConnectionMetrics,
}

/// What a scrape reads from the rest of the edge.
pub struct ScrapeState<'a> {
    pub cache_bytes: u64,
    pub origins: &'a OriginSet,
    pub bus: Option<SubscriberStats>,
    pub now_ms: i64,
    /// LL-HLS blocking requests held now.
    pub held_now: usize,
    /// Viewers per stream now (streams with none are absent: no series for them).
    pub viewers: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

impl EdgeMetrics {
    /// `origin_fetches` and `origin_failovers` are the upstream's counters (it increments them).
    pub fn new(origin_fetches: &Counter, origin_failovers: &Counter) -> EdgeMetrics {
        let mut registry = Registry::default();
        let connections = crate::http::slots::ConnectionMetrics::default();
        connections.register(&mut registry, "zoomate_edge");
        let requests = Family::<RequestLabels, Counter>::default();
        // prometheus-client appends `_total` to counters: names here are without it.
        registry.register(
            "zoomate_edge_requests",
            "Edge requests by resource kind and status",
            requests.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let hits = counter(
            "zoomate_edge_cache_hits",
            "Requests answered from the cache",
        );
        let misses = counter(
            "zoomate_edge_cache_misses",
            "Requests that needed an origin fetch (own or joined)",
        );
        let coalesced_waiters = counter(
            "zoomate_edge_coalesced_waiters",
            "Misses that waited on another request's origin fetch",
        );
        let evictions = counter("zoomate_edge_cache_evictions", "Objects evicted for space");
        let prefetches = counter(
            "zoomate_edge_prefetches",
            "Segments pulled into the cache on a bus announcement",
        );
        let prefetch_skipped = counter(
            "zoomate_edge_prefetches_skipped",
            "Announcements not prefetched (concurrency limit)",
        );
        let stale_playlist_refreshes = counter(
            "zoomate_edge_playlist_refreshes",
            "Cached playlists refetched as stale (bus announcement or TTL)",
        );
        let fill_retries = counter(
            "zoomate_edge_fill_retries",
            "Coalesced waiters whose shared origin fetch failed and who fetched once more",
        );
        let lagging_origin_retries = counter(
            "zoomate_edge_lagging_origin_retries",
            "Blocking LL-HLS requests asked again because an origin behind the stream refused them (a failover's survivor)",
        );
        let stale_served = counter(
            "zoomate_edge_stale_served",
            "Live playlists served from their last good copy: every origin failed (stale-if-error)",
        );
        let windows_held = counter(
            "zoomate_edge_playlist_windows_held",
            "Live playlists an origin sent starting before the window already served, served from there on (their media sequence never decreases)",
        );
        registry.register(
            "zoomate_edge_origin_fetches",
            "Origin GETs, retries included",
            origin_fetches.clone(),
        );
        registry.register(
            "zoomate_edge_origin_failovers",
            "Fetches retried on another origin",
            origin_failovers.clone(),
        );
        let bus_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "zoomate_edge_bus_rejected",
            "Bus events the edge refused, by reason",
            bus_rejected.clone(),
        );
        let signed_url_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "zoomate_edge_signed_url_rejected",
            "Media requests refused (403) for their signed-URL token, by reason",
            signed_url_rejected.clone(),
        );
        let held = Family::<HeldLabels, Counter>::default();
        registry.register(
            "zoomate_edge_held_requests",
            "LL-HLS blocking requests (playlist reloads, hinted parts) by outcome",
            held.clone(),
        );
        let held_wake = crate::http::metrics::wake_histogram();
        registry.register(
            "zoomate_edge_held_wake_seconds",
            "Bus announcement of a part to the response of a request held for it",
            held_wake.clone(),
        );
        let first_byte = crate::http::metrics::kind_histograms();
        registry.register(
            "zoomate_edge_first_byte_seconds",
            "A viewer's request arriving to its response head being ready (the body is in memory \
             and follows at once), by resource kind; held LL-HLS requests included",
            first_byte.clone(),
        );
        let announce_to_cached = crate::http::metrics::kind_histograms();
        registry.register(
            "zoomate_edge_announce_to_cached_seconds",
            "A segment or part announcement arriving at the edge's bus listener to the object \
             being in the edge cache (prefetched from the announcing origin), by kind; from \
             arrival, as bus messages carry no send time",
            announce_to_cached.clone(),
        );
        EdgeMetrics {
            first_byte,
            announce_to_cached,
            held,
            held_wake,
            registry,
            requests,
            hits,
            misses,
            coalesced_waiters,
            evictions,
            prefetches,
            prefetch_skipped,
            stale_playlist_refreshes,
            fill_retries,
            lagging_origin_retries,
            stale_served,
            windows_held,
            bus_rejected,
            signed_url_rejected,
            connections,
        }
    }

    /// One request answered with `status` (any code: each gets its own sample).
    pub fn request(&self, kind: Option<ResourceKind>, status: http::StatusCode) {
        self.requests
            .get_or_create(&RequestLabels::new(kind, status))
            .inc();
    }

    /// A viewer's response of `kind` is ready, `since` its request arrived.
    pub fn first_byte(&self, kind: ResourceKind, since: std::time::Instant) {
        self.first_byte
            .get_or_create(&KindLabels { kind: kind.label() })
            .observe(since.elapsed().as_secs_f64());
    }

    /// A prefetch of a `kind` (`segment` or `part`) announced at `since` is in the cache.
    pub fn announce_to_cached(&self, kind: &'static str, since: std::time::Instant) {
        self.announce_to_cached
            .get_or_create(&KindLabels { kind })
            .observe(since.elapsed().as_secs_f64());
    }

    /// A bus event refused, as `zoomate_edge_bus_rejected_total{reason}`. `reason` should be one
    /// of a few fixed words chosen by the caller (each distinct value is a new series), not text
    /// from the peer.
    pub fn bus_rejected(&self, reason: &str) {
        self.bus_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// `zoomate_edge_bus_rejected_total{reason}` now.
    #[cfg(test)]
    pub(super) fn bus_rejected_count(&self, reason: &str) -> u64 {
        self.bus_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .get()
    }

    /// A media request refused for its token (`missing`, `malformed`, `expired`,
    /// `bad_signature`).
    pub fn signed_url_rejected(&self, why: crate::edge::signed_url::TokenError) {
        self.signed_url_rejected
            .get_or_create(&ReasonLabels {
                reason: why.label().to_string(),
            })
            .inc();
    }

    /// A held request ended with `outcome` (`woken`, `timeout`, `rejected`, or `forwarded`:
    /// the bus said nothing in time and the origin answered).
    pub fn held(&self, outcome: &'static str) {
        self.held.get_or_create(&HeldLabels { outcome }).inc();
    }

    /// The whole `/metrics` body.
    pub fn render(&self, s: ScrapeState<'_>) -> String {
        let mut scrape = Registry::default();
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(s.cache_bytes).unwrap_or(i64::MAX));
        scrape.register("zoomate_edge_cache_bytes", "Bytes held in the cache", gauge);
        let held_now = Gauge::<i64>::default();
        held_now.set(i64::try_from(s.held_now).unwrap_or(i64::MAX));
        scrape.register(
            "zoomate_edge_held_requests_now",
            "LL-HLS blocking requests being held",
            held_now,
        );
        let mirrored = |scrape: &mut Registry, name: &str, help: &str, v: u64| {
            let c: Counter = Counter::default();
            c.inc_by(v);
            scrape.register(name, help, c);
        };
        mirrored(
            &mut scrape,
            "zoomate_edge_origins_rejected",
            "Heartbeats from new origins ignored: edge.max_learned_origins reached",
            s.origins.rejected_heartbeats(),
        );
        if let Some(bus) = s.bus {
            mirrored(
                &mut scrape,
                "zoomate_edge_bus_messages",
                "Bus messages received",
                bus.received,
            );
            mirrored(
                &mut scrape,
                "zoomate_edge_bus_dropped",
                "Bus messages dropped: queue full",
                bus.dropped_full,
            );
            mirrored(
                &mut scrape,
                "zoomate_edge_bus_malformed",
                "Bus messages dropped: malformed",
                bus.malformed,
            );
        }
        let viewers = Family::<StreamLabels, Gauge>::default();
        for (stream, n) in &s.viewers {
            viewers
                .get_or_create(&StreamLabels {
                    stream: stream.clone(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        scrape.register(
            "zoomate_edge_viewers",
            "Distinct (address, User-Agent) pairs that fetched a media playlist of the stream within 3 target durations",
            viewers,
        );
        let up = Family::<OriginLabels, Gauge>::default();
        for o in s.origins.snapshot().iter() {
            up.get_or_create(&OriginLabels {
                origin: o.id.clone(),
            })
            .set(i64::from(o.usable(s.now_ms)));
        }
        scrape.register(
            "zoomate_edge_origin_up",
            "Whether an origin is in rotation (1) or ejected (0)",
            up,
        );
        crate::http::metrics::encode(&[&self.registry, &scrape])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BalancePolicy;

    #[test]
    fn origin_ids_are_escaped_and_every_status_and_reason_is_listed() {
        let (f, fo) = (Counter::default(), Counter::default());
        let m = EdgeMetrics::new(&f, &fo);
        m.request(
            Some(ResourceKind::Segment),
            http::StatusCode::RANGE_NOT_SATISFIABLE,
        );
        m.request(None, http::StatusCode::METHOD_NOT_ALLOWED);
        m.bus_rejected("wrong_endpoint");
        let origins = OriginSet::new(&["http://h/a\"b\\c".into()], BalancePolicy::RoundRobin);
        let text = m.render(ScrapeState {
            cache_bytes: 7,
            origins: &origins,
            bus: None,
            now_ms: 0,
            held_now: 0,
            viewers: [("demo".to_string(), 2)].into(),
        });
        for want in [
            "zoomate_edge_requests_total{kind=\"segment\",status=\"416\"} 1",
            "zoomate_edge_requests_total{kind=\"other\",status=\"405\"} 1",
            "zoomate_edge_bus_rejected_total{reason=\"wrong_endpoint\"} 1",
            "zoomate_edge_origin_up{origin=\"http://h/a\\\"b\\\\c\"} 1",
            "zoomate_edge_cache_bytes 7",
            "zoomate_edge_viewers{stream=\"demo\"} 2",
            "zoomate_edge_cache_hits_total 0",
            "zoomate_edge_origins_rejected_total 0",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
