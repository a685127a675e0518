//! Which origin serves a request: the origin set (read without locks: `ArcSwap`), what each
//! origin serves (learned from bus heartbeats), its health, and the selection policy.

use crate::config::BalancePolicy;
use arc_swap::ArcSwap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// What the edge knows of one origin worker beyond its identity: health, requests in flight
/// and heartbeat liveness. Shared (`Arc`) by every `Origin` the set is rebuilt into, so guards
/// and health updates made through an older snapshot still land on the current counters.
#[derive(Debug)]
pub struct OriginState {
    pub healthy: AtomicBool,
    pub consecutive_ok: AtomicU32,
    pub consecutive_fail: AtomicU32,
    pub in_flight: AtomicUsize,
    /// Last heartbeat (ms since epoch) and its promised interval; 0 = never (static).
    pub last_heartbeat_ms: AtomicI64,
    pub heartbeat_interval_ms: AtomicU64,
    /// The load its last heartbeat announced (bus schema `loadStreams`, `loadEncoderSpeed` as
    /// `f32` bits); shown by the API, not used for selection.
    pub load_streams: AtomicU32,
    pub load_encoder_speed_bits: AtomicU32,
}

impl Default for OriginState {
    fn default() -> Self {
        OriginState {
            healthy: AtomicBool::new(true),
            consecutive_ok: AtomicU32::new(0),
            consecutive_fail: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            last_heartbeat_ms: AtomicI64::new(0),
            heartbeat_interval_ms: AtomicU64::new(0),
            load_streams: AtomicU32::new(0),
            load_encoder_speed_bits: AtomicU32::new(0),
        }
    }
}

/// One origin worker as the edge sees it.
#[derive(Debug)]
pub struct Origin {
    /// Bus origin id, or the URL for static origins.
    pub id: String,
    /// `http://host:port`, no trailing slash.
    pub base_url: String,
    /// Streams it announced in its last heartbeat (empty for static origins).
    pub streams: BTreeSet<String>,
    /// From config (true) or discovered on the bus (false).
    pub is_static: bool,
    /// Carried over when the set is rebuilt (see [`OriginState`]).
    pub state: Arc<OriginState>,
}

/// One request in flight to an origin; decrements the shared count however the fetch ends.
#[derive(Debug)]
pub struct InFlight(Arc<OriginState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Origin {
    pub fn new(id: String, base_url: String, is_static: bool) -> Origin {
        Origin {
            id,
            base_url: base_url.trim_end_matches('/').to_string(),
            streams: BTreeSet::new(),
            is_static,
            state: Arc::new(OriginState::default()),
        }
    }

    /// Counts a request to this origin until the returned guard is dropped.
    pub fn start_request(&self) -> InFlight {
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.state.clone())
    }

    /// Requests to this origin in flight now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::Relaxed)
    }

    /// What its last heartbeat announced: (live pipelines, slowest encoder speed); `None`
    /// when it never sent one (a static origin not on the bus).
    pub fn announced_load(&self) -> Option<(u32, f32)> {
        (self.state.last_heartbeat_ms.load(Ordering::Relaxed) > 0).then(|| {
            (
                self.state.load_streams.load(Ordering::Relaxed),
                f32::from_bits(self.state.load_encoder_speed_bits.load(Ordering::Relaxed)),
            )
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.state.healthy.load(Ordering::Relaxed)
    }

    /// Heartbeats missed for 3 intervals → treated as gone, whatever /healthz says.
    pub fn heartbeat_lost(&self, now_ms: i64) -> bool {
        let last = self.state.last_heartbeat_ms.load(Ordering::Relaxed);
        let interval = self.state.heartbeat_interval_ms.load(Ordering::Relaxed) as i64;
        last > 0 && interval > 0 && now_ms - last > 3 * interval
    }

    pub fn usable(&self, now_ms: i64) -> bool {
        self.is_healthy() && !self.heartbeat_lost(now_ms)
    }

    /// A success (health check or request); `rise` in a row brings an ejected origin back.
    pub fn record_success(&self, rise: u32) {
        let s = &self.state;
        s.consecutive_fail.store(0, Ordering::Relaxed);
        let ok = s.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
        if ok >= rise && !s.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(origin = %self.id, "origin healthy again");
        }
    }

    /// A failure; `fall` in a row ejects the origin.
    pub fn record_failure(&self, fall: u32) {
        let s = &self.state;
        s.consecutive_ok.store(0, Ordering::Relaxed);
        let failed = s.consecutive_fail.fetch_add(1, Ordering::Relaxed) + 1;
        if failed >= fall && s.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(origin = %self.id, "origin ejected");
        }
    }
}

/// Bounds on the origins learned from bus heartbeats (static origins are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedOriginLimits {
    /// Learned origins held at once; heartbeats from further new origins are ignored.
    pub max_origins: usize,
    /// A learned origin silent for this long (and for 3 of its intervals) is forgotten.
    pub expiry_ms: u64,
}

impl Default for LearnedOriginLimits {
    fn default() -> Self {
        LearnedOriginLimits {
            max_origins: 64,
            expiry_ms: 30_000,
        }
    }
}

/// What a heartbeat did to the origin set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// A known origin, same streams: liveness refreshed in place.
    Refreshed,
    /// A new origin, or a known one with new streams: the set was rebuilt.
    Rebuilt,
    /// A new origin beyond `max_origins`: ignored (and counted).
    Rejected,
}

/// The current origin set; replaced whole (copy-on-write) when discovery changes it.
pub struct OriginSet {
    origins: ArcSwap<Vec<Arc<Origin>>>,
    round_robin: AtomicUsize,
    policy: BalancePolicy,
    limits: LearnedOriginLimits,
    /// Heartbeats ignored because `limits.max_origins` learned origins were held.
    rejected_heartbeats: AtomicU64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn learned_count(list: &[Arc<Origin>]) -> usize {
    list.iter().filter(|o| !o.is_static).count()
}

impl OriginSet {
    pub fn new(static_origins: &[String], policy: BalancePolicy) -> OriginSet {
        OriginSet::with_limits(static_origins, policy, LearnedOriginLimits::default())
    }

    pub fn with_limits(
        static_origins: &[String],
        policy: BalancePolicy,
        limits: LearnedOriginLimits,
    ) -> OriginSet {
        let list = static_origins
            .iter()
            .map(|u| {
                Arc::new(Origin::new(
                    u.trim_end_matches('/').to_string(),
                    u.clone(),
                    true,
                ))
            })
            .collect();
        OriginSet {
            origins: ArcSwap::from_pointee(list),
            round_robin: AtomicUsize::new(0),
            policy,
            limits,
            rejected_heartbeats: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> Arc<Vec<Arc<Origin>>> {
        self.origins.load_full()
    }

    /// Heartbeats from new origins ignored because the learned-origin cap was reached.
    pub fn rejected_heartbeats(&self) -> u64 {
        self.rejected_heartbeats.load(Ordering::Relaxed)
    }

    /// [`OriginSet::heartbeat_at`] now.
    pub fn heartbeat(&self, id: &str, base_url: &str, streams: &[String], interval_ms: u32) {
        self.heartbeat_at(id, base_url, streams, interval_ms, now_ms());
    }

    /// Applies a heartbeat received at `now_ms`: adds a new origin (unless `max_origins` learned
    /// ones are held), or refreshes its streams and liveness. A static origin with the same base
    /// URL adopts the heartbeat (same worker, now known by id).
    pub fn heartbeat_at(
        &self,
        id: &str,
        base_url: &str,
        streams: &[String],
        interval_ms: u32,
        now_ms: i64,
    ) -> HeartbeatOutcome {
        let base = base_url.trim_end_matches('/');
        let same_worker = |o: &Origin| o.id == id || o.base_url == base;
        let mark_alive = |o: &Origin| {
            o.state.last_heartbeat_ms.store(now_ms, Ordering::Relaxed);
            o.state
                .heartbeat_interval_ms
                .store(interval_ms as u64, Ordering::Relaxed);
        };
        let current = self.origins.load();
        let existing = current.iter().find(|o| same_worker(o));
        // Same id too: a static origin announcing no streams must still be adopted by id.
        let unchanged = existing
            .map(|o| {
                o.id == id
                    && o.streams
                        .iter()
                        .eq(streams.iter().collect::<BTreeSet<_>>().into_iter())
            })
            .unwrap_or(false);
        if let (Some(o), true) = (existing, unchanged) {
            mark_alive(o);
            return HeartbeatOutcome::Refreshed;
        }
        drop(current);
        // Membership or streams changed: rebuild (rare; the request path never waits on it).
        let mut rejected = false;
        self.origins.rcu(|list| {
            let prev = list.iter().find(|o| same_worker(o));
            rejected = prev.is_none() && learned_count(list) >= self.limits.max_origins;
            if rejected {
                return Vec::clone(list);
            }
            let mut next: Vec<Arc<Origin>> =
                list.iter().filter(|o| !same_worker(o)).cloned().collect();
            let mut o = Origin::new(
                id.to_string(),
                base.to_string(),
                prev.map(|p| p.is_static).unwrap_or(false),
            );
            o.streams = streams.iter().cloned().collect();
            if let Some(p) = prev {
                // Same worker: keep its counters, so in-flight guards taken from the old
                // snapshot decrement the count the new one reads.
                o.state = p.state.clone();
            }
            mark_alive(&o);
            next.push(Arc::new(o));
            next
        });
        if rejected {
            let before = self.rejected_heartbeats.fetch_add(1, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(
                    origin = id,
                    max = self.limits.max_origins,
                    "learned-origin limit reached; ignoring heartbeats from new origins"
                );
            }
            HeartbeatOutcome::Rejected
        } else {
            HeartbeatOutcome::Rebuilt
        }
    }

    /// Records the load origin `id` announced in the heartbeat just applied.
    pub fn record_load(&self, id: &str, streams: u32, encoder_speed: f32) {
        if let Some(o) = self.snapshot().iter().find(|o| o.id == id) {
            o.state.load_streams.store(streams, Ordering::Relaxed);
            o.state
                .load_encoder_speed_bits
                .store(encoder_speed.to_bits(), Ordering::Relaxed);
        }
    }

    /// Hot reload: the configured (static) origins become `urls`. One still configured keeps
    /// its state (health, requests in flight, adopted heartbeats); one no longer configured
    /// goes (its worker comes back as a learned origin with its next heartbeat, if the
    /// allow-list and `max_learned_origins` let it); a learned origin now configured becomes
    /// static; new ones start healthy, as at start.
    pub fn replace_static(&self, urls: &[String]) {
        let wanted: Vec<&str> = urls.iter().map(|u| u.trim_end_matches('/')).collect();
        self.origins.rcu(|list| {
            let mut next: Vec<Arc<Origin>> = Vec::with_capacity(list.len() + wanted.len());
            for o in list.iter() {
                let configured = wanted.contains(&o.base_url.as_str());
                match (o.is_static, configured) {
                    (true, true) | (false, false) => next.push(o.clone()),
                    (true, false) => {}
                    (false, true) => {
                        let mut adopted = Origin::new(o.id.clone(), o.base_url.clone(), true);
                        adopted.streams = o.streams.clone();
                        adopted.state = o.state.clone();
                        next.push(Arc::new(adopted));
                    }
                }
            }
            for url in &wanted {
                if !next.iter().any(|o| o.base_url == *url) {
                    next.push(Arc::new(Origin::new(
                        url.to_string(),
                        url.to_string(),
                        true,
                    )));
                }
            }
            next
        });
    }

    /// Forgets learned origins whose last heartbeat is older than the expiry (and than 3 of
    /// their intervals) at `now_ms`: they stop being candidates and being health-checked. A
    /// static origin that had adopted heartbeats goes back to its configured identity (known
    /// by URL, no streams, liveness from health checks alone). Returns how many changed.
    pub fn expire_learned(&self, now_ms: i64) -> usize {
        let expiry = self.limits.expiry_ms as i64;
        let silent = |o: &Origin| {
            let last = o.state.last_heartbeat_ms.load(Ordering::Relaxed);
            let interval = o.state.heartbeat_interval_ms.load(Ordering::Relaxed) as i64;
            last > 0 && now_ms - last > expiry.max(3 * interval)
        };
        if !self.origins.load().iter().any(|o| silent(o)) {
            return 0; // the common case: no rebuild
        }
        let mut changed = 0;
        self.origins.rcu(|list| {
            changed = 0;
            let mut next = Vec::with_capacity(list.len());
            for o in list.iter() {
                if !silent(o) {
                    next.push(o.clone());
                    continue;
                }
                changed += 1;
                if o.is_static {
                    tracing::info!(origin = %o.id, url = %o.base_url, "static origin's heartbeats stopped; back to its configured state");
                    let mut back = Origin::new(o.base_url.clone(), o.base_url.clone(), true);
                    back.state = o.state.clone();
                    back.state.last_heartbeat_ms.store(0, Ordering::Relaxed);
                    back.state.heartbeat_interval_ms.store(0, Ordering::Relaxed);
                    next.push(Arc::new(back));
                } else {
                    tracing::info!(origin = %o.id, url = %o.base_url, "learned origin expired: no heartbeat");
                }
            }
            next
        });
        changed
    }

    /// Origins to try for `stream`, best first: the policy's pick among usable origins that
    /// serve the stream (all usable origins if none claims it), then the other usable ones, then
    /// the unusable ones as a last resort.
    pub fn candidates(&self, stream: &str) -> Vec<Arc<Origin>> {
        let snapshot = self.snapshot();
        let now = now_ms();
        let views: Vec<OriginView> = snapshot
            .iter()
            .map(|o| OriginView {
                id: &o.id,
                usable: o.usable(now),
                serves: o.streams.contains(stream),
                in_flight: o.in_flight(),
            })
            .collect();
        let rr = self.round_robin.fetch_add(1, Ordering::Relaxed);
        order(self.policy, stream, &views, rr)
            .into_iter()
            .map(|i| snapshot[i].clone())
            .collect()
    }
}

/// What selection needs to know of an origin (pure, for tests).
#[derive(Debug, Clone)]
pub struct OriginView<'a> {
    pub id: &'a str,
    pub usable: bool,
    pub serves: bool,
    pub in_flight: usize,
}

/// Rendezvous weight of (stream, origin id): XXH3-64 over the stream's length (u64 LE), the
/// stream and the id. A specified hash, so edges built at different times (or with another
/// Rust release, whose `DefaultHasher` may differ) send a stream to the same origin. The
/// length prefix keeps ("ab", "c") and ("a", "bc") apart.
fn rendezvous_score(stream: &str, id: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(stream.len() as u64).to_le_bytes());
    h.update(stream.as_bytes());
    h.update(id.as_bytes());
    h.digest()
}

/// Indices into `origins` in the order to try them. Pure.
///
/// Consistent hashing is rendezvous (highest random weight) hashing on (stream, origin id):
/// each stream sticks to one origin, and losing an origin moves only its streams.
pub fn order(
    policy: BalancePolicy,
    stream: &str,
    origins: &[OriginView<'_>],
    round_robin: usize,
) -> Vec<usize> {
    let any_serves = origins.iter().any(|o| o.serves && o.usable);
    let tier = |o: &OriginView<'_>| -> u8 {
        match (o.usable, o.serves || !any_serves) {
            (true, true) => 0,
            (true, false) => 1,
            (false, _) => 2,
        }
    };
    let mut idx: Vec<usize> = (0..origins.len()).collect();
    match policy {
        BalancePolicy::ConsistentHash => {
            idx.sort_by_key(|&i| {
                (
                    tier(&origins[i]),
                    std::cmp::Reverse(rendezvous_score(stream, origins[i].id)),
                )
            });
        }
        BalancePolicy::LeastConnections => {
            idx.sort_by_key(|&i| {
                (
                    tier(&origins[i]),
                    origins[i].in_flight,
                    rendezvous_score(stream, origins[i].id),
                )
            });
        }
        BalancePolicy::RoundRobin => {
            let n = origins.len().max(1);
            idx.sort_by_key(|&i| (tier(&origins[i]), (i + n - round_robin % n) % n));
        }
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_static_origins_keeps_the_state_of_those_still_configured() {
        let set = OriginSet::new(
            &["http://a:1".into(), "http://b:1/".into()],
            BalancePolicy::RoundRobin,
        );
        set.heartbeat_at("w9", "http://c:1", &["s".into()], 1000, 1);
        let a = set
            .snapshot()
            .iter()
            .find(|o| o.base_url == "http://a:1")
            .unwrap()
            .clone();
        a.record_failure(1);
        set.replace_static(&[
            "http://a:1/".into(),
            "http://c:1".into(),
            "http://d:1".into(),
        ]);
        let now = set.snapshot();
        let mut urls: Vec<(&str, bool)> = now
            .iter()
            .map(|o| (o.base_url.as_str(), o.is_static))
            .collect();
        urls.sort();
        assert_eq!(
            urls,
            [
                ("http://a:1", true),
                ("http://c:1", true),
                ("http://d:1", true)
            ]
        );
        let a2 = now.iter().find(|o| o.base_url == "http://a:1").unwrap();
        assert!(
            Arc::ptr_eq(&a.state, &a2.state) && !a2.is_healthy(),
            "a kept its health"
        );
        let c = now.iter().find(|o| o.base_url == "http://c:1").unwrap();
        assert_eq!(
            (c.id.as_str(), c.streams.len()),
            ("w9", 1),
            "c adopted as static"
        );
    }

    fn v<'a>(id: &'a str, usable: bool, serves: bool, in_flight: usize) -> OriginView<'a> {
        OriginView {
            id,
            usable,
            serves,
            in_flight,
        }
    }

    #[test]
    fn rendezvous_scores_and_order_are_pinned() {
        // Edges of different builds must agree on these: a change here moves every stream.
        assert_eq!(rendezvous_score("cam", "origin-a"), PINNED_CAM_ORIGIN_A);
        assert_ne!(rendezvous_score("ab", "c"), rendezvous_score("a", "bc"));
        let all = [
            v("origin-a", true, false, 0),
            v("origin-b", true, false, 0),
            v("origin-c", true, false, 0),
        ];
        let firsts: Vec<usize> = ["cam", "demo", "live", "s1", "s2", "s3"]
            .iter()
            .map(|s| order(BalancePolicy::ConsistentHash, s, &all, 0)[0])
            .collect();
        assert_eq!(firsts, PINNED_FIRSTS);
    }

    const PINNED_CAM_ORIGIN_A: u64 = 0xf2a6_66c9_5fcc_a4f8;
    const PINNED_FIRSTS: [usize; 6] = [0, 0, 2, 1, 1, 2];

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_the_lost_origins_streams() {
        let all = [
            v("a", true, false, 0),
            v("b", true, false, 0),
            v("c", true, false, 0),
        ];
        let streams: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
        let first: Vec<usize> = streams
            .iter()
            .map(|s| order(BalancePolicy::ConsistentHash, s, &all, 0)[0])
            .collect();
        let again: Vec<usize> = streams
            .iter()
            .map(|s| order(BalancePolicy::ConsistentHash, s, &all, 7)[0])
            .collect();
        assert_eq!(first, again, "sticky");
        for k in 0..3 {
            assert!(
                first.iter().filter(|&&i| i == k).count() > 30,
                "spread across origins"
            );
        }
        let b_down = [
            v("a", true, false, 0),
            v("b", false, false, 0),
            v("c", true, false, 0),
        ];
        for (s, before) in streams.iter().zip(&first) {
            let after = order(BalancePolicy::ConsistentHash, s, &b_down, 0)[0];
            if *before != 1 {
                assert_eq!(after, *before, "{s} moved although its origin is up");
            } else {
                assert_ne!(after, 1);
            }
        }
    }

    #[test]
    fn origins_serving_the_stream_come_first_and_unusable_last() {
        let o = [
            v("a", true, false, 0),
            v("b", false, true, 0),
            v("c", true, true, 0),
        ];
        for p in [
            BalancePolicy::ConsistentHash,
            BalancePolicy::RoundRobin,
            BalancePolicy::LeastConnections,
        ] {
            assert_eq!(order(p, "s", &o, 3), vec![2, 0, 1], "{p:?}");
        }
    }

    #[test]
    fn least_connections_and_round_robin() {
        let o = [
            v("a", true, false, 5),
            v("b", true, false, 1),
            v("c", true, false, 3),
        ];
        assert_eq!(
            order(BalancePolicy::LeastConnections, "s", &o, 0),
            vec![1, 2, 0]
        );
        let firsts: Vec<usize> = (0..3)
            .map(|rr| order(BalancePolicy::RoundRobin, "s", &o, rr)[0])
            .collect();
        assert_eq!(firsts, vec![0, 1, 2]);
    }

    #[test]
    fn heartbeats_discover_origins_and_their_streams() {
        let set = OriginSet::new(
            &["http://127.0.0.1:1".into()],
            BalancePolicy::ConsistentHash,
        );
        set.heartbeat("w2", "http://127.0.0.1:2", &["cam".into()], 1000);
        assert_eq!(set.snapshot().len(), 2);
        assert_eq!(set.candidates("cam")[0].id, "w2");
        // The static origin announces itself: adopted, not duplicated.
        set.heartbeat("w1", "http://127.0.0.1:1/", &["other".into()], 1000);
        assert_eq!(set.snapshot().len(), 2);
        assert_eq!(set.candidates("other")[0].id, "w1");
        let w1 = set.candidates("other")[0].clone();
        w1.state.last_heartbeat_ms.store(1, Ordering::Relaxed);
        assert!(
            !w1.usable(now_ms()),
            "heartbeat loss makes an origin unusable"
        );
    }

    fn set_with(max_origins: usize) -> OriginSet {
        OriginSet::with_limits(
            &["http://127.0.0.1:1".into()],
            BalancePolicy::ConsistentHash,
            LearnedOriginLimits {
                max_origins,
                expiry_ms: 10_000,
            },
        )
    }

    fn ids(set: &OriginSet) -> Vec<String> {
        let mut v: Vec<String> = set.snapshot().iter().map(|o| o.id.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn learned_origins_expire_after_their_heartbeats_stop_and_static_ones_stay() {
        let set = set_with(8);
        let t0 = 1_000_000;
        set.heartbeat_at("w2", "http://127.0.0.1:2", &["cam".into()], 1000, t0);
        // The static origin adopts heartbeats too.
        set.heartbeat_at("w1", "http://127.0.0.1:1", &["other".into()], 1000, t0);
        assert_eq!(ids(&set), ["w1", "w2"]);
        assert_eq!(set.expire_learned(t0 + 10_000), 0, "not yet expired");
        // w1 keeps beating; w2 falls silent.
        set.heartbeat_at(
            "w1",
            "http://127.0.0.1:1",
            &["other".into()],
            1000,
            t0 + 9_000,
        );
        assert_eq!(set.expire_learned(t0 + 10_001), 1);
        assert_eq!(ids(&set), ["w1"]);
        assert!(set.candidates("cam").iter().all(|o| o.id != "w2"));
        // w1 falls silent too: it is static, so it stays, back under its configured URL.
        assert_eq!(set.expire_learned(t0 + 19_001), 1);
        let snap = set.snapshot();
        assert_eq!(snap.len(), 1);
        let o = &snap[0];
        assert_eq!(
            (o.id.as_str(), o.is_static, o.streams.len()),
            ("http://127.0.0.1:1", true, 0)
        );
        assert!(
            !o.heartbeat_lost(t0 + 100_000),
            "static: health checks decide"
        );
        assert_eq!(set.expire_learned(t0 + 100_000), 0);
        // It may come back on the bus later.
        set.heartbeat_at(
            "w1",
            "http://127.0.0.1:1/",
            &["x".into()],
            1000,
            t0 + 100_000,
        );
        assert_eq!(ids(&set), ["w1"]);
    }

    #[test]
    fn expiry_is_never_sooner_than_three_heartbeat_intervals() {
        let set = set_with(8);
        set.heartbeat_at("slow", "http://127.0.0.1:9", &[], 20_000, 1);
        assert_eq!(set.expire_learned(60_001), 0);
        assert_eq!(set.expire_learned(60_002), 1);
    }

    #[test]
    fn learned_origins_beyond_the_cap_are_ignored_and_counted() {
        let set = set_with(2);
        let t = 1_000;
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            let url = format!("http://127.0.0.1:{}", 10 + i);
            set.heartbeat_at(id, &url, &["s".into()], 1000, t);
        }
        assert_eq!(
            ids(&set),
            ["a", "b", "http://127.0.0.1:1"],
            "static + 2 learned"
        );
        assert_eq!(set.rejected_heartbeats(), 2);
        // Known origins still update at the cap; the static one adopting is not a new origin.
        assert_eq!(
            set.heartbeat_at("a", "http://127.0.0.1:10", &["t".into()], 1000, t),
            HeartbeatOutcome::Rebuilt
        );
        assert_eq!(
            set.heartbeat_at("w1", "http://127.0.0.1:1", &[], 1000, t),
            HeartbeatOutcome::Rebuilt
        );
        assert_eq!(
            set.heartbeat_at("c", "http://127.0.0.1:12", &["s".into()], 1000, t),
            HeartbeatOutcome::Rejected
        );
        // Once one expires, there is room again.
        set.heartbeat_at("a", "http://127.0.0.1:10", &["t".into()], 1000, t + 5_000);
        set.heartbeat_at("w1", "http://127.0.0.1:1", &[], 1000, t + 5_000);
        assert_eq!(set.expire_learned(t + 10_001), 1, "b expired");
        assert_eq!(
            set.heartbeat_at("c", "http://127.0.0.1:12", &["s".into()], 1000, t + 10_001),
            HeartbeatOutcome::Rebuilt
        );
        assert_eq!(set.rejected_heartbeats(), 3);
    }

    #[test]
    fn passive_ejection_and_rise() {
        let o = Origin::new("a".into(), "http://x".into(), true);
        o.record_failure(2);
        assert!(o.is_healthy());
        o.record_failure(2);
        assert!(!o.is_healthy());
        o.record_success(2);
        assert!(!o.is_healthy());
        o.record_success(2);
        assert!(o.is_healthy());
    }

    #[test]
    fn in_flight_count_survives_a_rebuild_of_the_origin_set() {
        let set = OriginSet::new(&[], BalancePolicy::LeastConnections);
        set.heartbeat("w1", "http://127.0.0.1:1", &["a".into()], 1000);
        let guard = set.snapshot()[0].start_request();
        // New streams → the set is rebuilt with a new `Origin` for w1.
        set.heartbeat("w1", "http://127.0.0.1:1", &["a".into(), "b".into()], 1000);
        assert_eq!(set.snapshot()[0].in_flight(), 1);
        drop(guard);
        assert_eq!(set.snapshot()[0].in_flight(), 0, "count drifted up");
    }

    #[test]
    fn health_survives_a_rebuild_of_the_origin_set() {
        let set = OriginSet::new(&[], BalancePolicy::LeastConnections);
        set.heartbeat("w1", "http://127.0.0.1:1", &["a".into()], 1000);
        let old = set.snapshot()[0].clone();
        set.heartbeat("w1", "http://127.0.0.1:1", &["b".into()], 1000);
        // A failure recorded through the old snapshot (a fetch that began before the rebuild).
        old.record_failure(1);
        assert!(!set.snapshot()[0].is_healthy());
    }
}
