//! The edge's memory: cached responses (moka, weighed in bytes) and what the bus announced
//! about them, which decides whether a cached playlist is still fresh.
//!
//! Segments are immutable (their names are never reused); VOD playlists never change; a live
//! playlist is fresh until the bus announces a newer segment for it (then it is refetched at
//! once) or, if the bus is silent, for `playlist_ttl_ms`.
//!
//! The last good copy of every live playlist is also kept aside for `stale_if_error_ms`
//! (RFC 5861 stale-if-error): when every origin fails, a viewer gets a playlist a few seconds
//! old (players keep playing what it lists) instead of an error; past that bound, the error.

use crate::http::headers::Representation;
use crate::http::metrics::Counter;
use crate::http::paths::ResourceKind;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Playlists whose latest announced sequence is remembered.
const MAX_TRACKED_PLAYLISTS: u64 = 100_000;
/// Announced segment sizes remembered (to refuse an origin answer that disagrees).
const MAX_TRACKED_SEGMENT_SIZES: u64 = 100_000;
/// How long an announcement (sequence, size) is remembered without being renewed.
const ANNOUNCEMENT_MEMORY: Duration = Duration::from_secs(600);
/// Bytes charged per entry on top of its key and body (headers, bookkeeping).
const ENTRY_OVERHEAD_BYTES: usize = 256;
/// Bytes of last good live playlists kept for stale-if-error (their bodies are shared with
/// the main cache while both hold them).
const MAX_STALE_COPY_BYTES: u64 = 64 * 1024 * 1024;

fn weigh(key: &str, obj: &CachedObject) -> u32 {
    (key.len() + obj.rep.body.len() + ENTRY_OVERHEAD_BYTES).min(u32::MAX as usize) as u32
}

/// One cached response body and what is needed to answer any request for it.
pub struct CachedObject {
    pub rep: Representation,
    pub kind: ResourceKind,
    pub fetched_at: Instant,
    /// Media playlists: sequence of the newest listed segment.
    pub newest_sequence: Option<u64>,
    /// The gzip variant of a playlist, made on first demand.
    pub gzipped: OnceLock<Option<Representation>>,
    /// Requests answered from this copy (the API's most requested objects).
    pub hits: std::sync::atomic::AtomicU64,
}

impl CachedObject {
    pub fn new(rep: Representation, kind: ResourceKind) -> CachedObject {
        let newest_sequence = if kind == ResourceKind::MediaPlaylist {
            std::str::from_utf8(&rep.body)
                .ok()
                .and_then(crate::packaging::hls::newest_sequence)
        } else {
            None
        };
        CachedObject {
            rep,
            kind,
            fetched_at: Instant::now(),
            newest_sequence,
            gzipped: OnceLock::new(),
            hits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The gzip-encoded representation (playlists), computed once.
    pub fn gzipped(&self) -> Option<&Representation> {
        self.gzipped.get_or_init(|| gzip(&self.rep)).as_ref()
    }
}

/// The newest segment the bus announced for a playlist, and when it was believed.
#[derive(Debug, Clone, Copy)]
struct Announced {
    sequence: u64,
    at: Instant,
}

pub type Objects = moka::future::Cache<String, Arc<CachedObject>>;

/// Cached objects plus the announcements that judge them.
pub struct EdgeCache {
    /// Replaced whole when `edge.cache_bytes` changes on a hot reload (moka cannot resize).
    objects: ArcSwap<Objects>,
    /// Counts evictions for space, across rebuilds.
    evictions: Counter,
    announced: moka::sync::Cache<String, Announced>,
    /// Segment URI → announced byte size.
    announced_sizes: moka::sync::Cache<String, u64>,
    playlist_ttl: Duration,
    /// Live playlist key → its last good copy, for stale-if-error (`None`: off).
    last_good: Option<moka::sync::Cache<String, Arc<CachedObject>>>,
    stale_if_error: Duration,
}

impl EdgeCache {
    /// A cache of at most `capacity_bytes`; evictions (for space) are counted in `evictions`.
    /// Live playlists' last good copies are kept `stale_if_error` (zero: not kept).
    pub fn new(
        capacity_bytes: u64,
        playlist_ttl: Duration,
        stale_if_error: Duration,
        evictions: Counter,
    ) -> EdgeCache {
        EdgeCache {
            objects: ArcSwap::from_pointee(objects(capacity_bytes, evictions.clone())),
            evictions,
            announced: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_PLAYLISTS)
                .time_to_idle(ANNOUNCEMENT_MEMORY)
                .build(),
            announced_sizes: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_SEGMENT_SIZES)
                .time_to_live(ANNOUNCEMENT_MEMORY)
                .build(),
            playlist_ttl,
            last_good: (!stale_if_error.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(MAX_STALE_COPY_BYTES.min(capacity_bytes))
                    .weigher(|k: &String, v: &Arc<CachedObject>| weigh(k, v))
                    .time_to_live(stale_if_error)
                    .build()
            }),
            stale_if_error,
        }
    }

    /// A live playlist the origin just answered: the copy to fall back on if it fails next.
    pub fn keep_last_good(&self, key: &str, obj: &Arc<CachedObject>) {
        if let Some(last_good) = &self.last_good {
            last_good.insert(key.to_string(), obj.clone());
        }
    }

    /// The last good copy of a live playlist, if it is at most `stale_if_error` old.
    pub fn stale_if_error(&self, key: &str) -> Option<Arc<CachedObject>> {
        let obj = self.last_good.as_ref()?.get(key)?;
        // RFC 5861 §4: stale only within the bound (moka's expiry is lazy about the last ms).
        (obj.fetched_at.elapsed() <= self.stale_if_error).then_some(obj)
    }

    /// Whether a cached object may still be served for `path`.
    pub fn is_fresh(&self, path: &str, obj: &CachedObject, live: bool) -> bool {
        if !obj.kind.is_playlist() || !live {
            return true; // segment names are never reused; VOD playlists never change
        }
        if let (Some(newest), Some(announced)) = (obj.newest_sequence, self.announced.get(path)) {
            // The bus says there is a newer segment: never serve an older list. Only a list
            // fetched before the announcement is stale: one that was fetched after it and still
            // lacks the segment is the origin's answer, so a wrong announcement costs one
            // refetch, not the cache.
            if newest < announced.sequence && obj.fetched_at < announced.at {
                return false;
            }
        }
        obj.fetched_at.elapsed() < self.playlist_ttl
    }

    /// The bus announced segment `sequence` of `playlist` (only a newer one is remembered).
    pub fn announce_sequence(&self, playlist: &str, sequence: u64) {
        let newer = self
            .announced
            .get(playlist)
            .map(|a| sequence > a.sequence)
            .unwrap_or(true);
        if newer {
            self.announced.insert(
                playlist.to_string(),
                Announced {
                    sequence,
                    at: Instant::now(),
                },
            );
        }
    }

    /// The bus announced `uri` with `bytes`: an origin answer of another size is refused.
    pub fn announce_size(&self, uri: &str, bytes: u64) {
        self.announced_sizes.insert(uri.to_string(), bytes);
    }

    pub fn announced_size(&self, uri: &str) -> Option<u64> {
        self.announced_sizes.get(uri)
    }

    /// The cached objects now (one atomic load: the request path takes no lock).
    pub fn objects(&self) -> Arc<Objects> {
        self.objects.load_full()
    }

    pub async fn invalidate(&self, path: &str) {
        self.objects().invalidate(path).await;
    }

    /// Bytes held (as weighed).
    pub fn weighted_size(&self) -> u64 {
        self.objects().weighted_size()
    }

    /// Hot reload of `edge.cache_bytes`. moka has no live resize, so a new cache of the new
    /// capacity replaces the old one, filled with the old one's entries up to the new capacity
    /// (the rest are fetched again when asked for). Fills in flight finish into the old cache
    /// and are lost to the new one: one extra origin fetch each, never a wrong answer.
    /// The stale-if-error copies keep their bound (at most 64 MiB).
    pub async fn set_capacity(&self, capacity_bytes: u64) {
        let old = self.objects();
        let next = objects(capacity_bytes, self.evictions.clone());
        let mut copied = 0u64;
        for (key, obj) in old.iter() {
            let w = u64::from(weigh(&key, &obj));
            if copied + w > capacity_bytes {
                continue;
            }
            copied += w;
            next.insert(String::clone(&key), obj).await;
        }
        self.objects.store(Arc::new(next));
    }
}

/// The object cache: at most `capacity_bytes` as weighed, evictions for space counted.
fn objects(capacity_bytes: u64, evictions: Counter) -> Objects {
    moka::future::Cache::builder()
        .max_capacity(capacity_bytes)
        .weigher(|k: &String, v: &Arc<CachedObject>| weigh(k, v))
        .eviction_listener(move |_k, _v, cause| {
            if cause.was_evicted() {
                evictions.inc();
            }
        })
        .build()
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
