//! Connection slots of one HTTP listener, shared fairly.
//!
//! A listener serves at most `max_connections` connections. Keep-alive makes that easy to
//! exhaust without any load: thousands of connections that each send a request every few
//! seconds hold every slot, and new viewers would wait, unanswered, in the accept queue. So,
//! as nginx does with its reusable connections, when every slot is taken a new client gets the
//! slot of the **longest-idle** connection (no request in flight): that one is asked to close
//! (an HTTP/1 connection between requests closes at once, an HTTP/2 one gets GOAWAY), and the
//! newcomer takes its place. A connection serving a request is never cut for this.
//!
//! Per client address (IPv6: per /64) there are at most `max_connections_per_address`: over that, the
//! address's own longest-idle connection makes room, or, if all of them are busy, the new one
//! is refused, so one address cannot take the slots of others. And a connection serves at most
//! `max_requests_per_connection` requests (nginx `keepalive_requests`), then closes after the
//! last answer, so no connection is held for ever.
//!
//! The table is touched (under a mutex) when a connection opens or closes and when the listener
//! is full; each request only updates its connection's atomics.

use crate::http::metrics::{Counter, Family, Gauge, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A connection idle for less than this is not evicted: it was accepted a moment ago, or has
/// just been answered, and its next request may be on the wire.
pub const MIN_EVICTABLE_IDLE: Duration = Duration::from_millis(250);

/// An evicted connection is expected to be gone within this; one that is not (an HTTP/2 peer
/// slow to acknowledge GOAWAY) no longer counts as making room, and another is picked.
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// What bounds the slots.
#[derive(Debug, Clone, Copy)]
pub struct SlotLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub max_requests_per_connection: u32,
}

/// Why a connection closed or was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Closed while idle to admit a new client.
    Evicted,
    /// Closed after its last request within `max_requests_per_connection`.
    RequestBudget,
    /// Refused: its address holds `max_connections_per_address` busy connections.
    PerAddress,
    /// Refused: no slot became free within the admission wait.
    Full,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Evicted => "idle_evicted",
            Reason::RequestBudget => "request_budget",
            Reason::PerAddress => "per_address",
            Reason::Full => "full",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The listener's connection counters, registered under a role prefix
/// (`zoomate_edge_http_connections_*`, `zoomate_origin_http_connections_*`).
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    closed: Family<ReasonLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
}

impl ConnectionMetrics {
    /// Registers the counters as `{prefix}_http_connections_{open,closed_total,refused_total}`.
    pub fn register(&self, registry: &mut Registry, prefix: &str) {
        registry.register(
            format!("{prefix}_http_connections_open"),
            "HTTP connections holding a slot",
            self.open.clone(),
        );
        registry.register(
            format!("{prefix}_http_connections_closed"),
            "HTTP connections the server closed: idle_evicted (to admit a new client), request_budget",
            self.closed.clone(),
        );
        registry.register(
            format!("{prefix}_http_connections_refused"),
            "HTTP connections refused: per_address (its address's limit), full (no slot in time)",
            self.refused.clone(),
        );
    }

    pub fn refused(&self, reason: Reason) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    fn closed(&self, reason: Reason) {
        self.closed
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }
}

/// One connection as the table and its own task see it.
pub struct Connection {
    addr: IpAddr,
    in_flight: AtomicU32,
    requests: AtomicU32,
    /// When it last had nothing in flight, in ms since the table's epoch.
    idle_since_ms: AtomicU64,
    /// When it was asked to close to make room (ms since the epoch; 0: never).
    evicted_at_ms: AtomicU64,
    /// Asked to close: finish what is in flight, accept nothing more.
    close: CancellationToken,
}

impl Connection {
    /// Fires when the connection should close gracefully (evicted, its request budget spent,
    /// or the server shutting down).
    pub fn close_requested(&self) -> &CancellationToken {
        &self.close
    }

    /// Asked to make room within the last [`EVICTION_GRACE`]: a slot about to be freed.
    fn making_room(&self, now_ms: u64) -> bool {
        let at = self.evicted_at_ms.load(Ordering::Acquire);
        at != 0 && now_ms.saturating_sub(at) < EVICTION_GRACE.as_millis() as u64
    }

    fn idle_for(&self, now_ms: u64) -> Option<Duration> {
        (self.in_flight.load(Ordering::Acquire) == 0 && !self.close.is_cancelled()).then(|| {
            Duration::from_millis(now_ms.saturating_sub(self.idle_since_ms.load(Ordering::Acquire)))
        })
    }
}

struct Table {
    conns: HashMap<u64, Arc<Connection>>,
    per_address: HashMap<IpAddr, usize>,
    next_id: u64,
    /// Admissions waiting for a slot: each needs one evicted connection, no more.
    waiting: usize,
}

/// The slots of one listener.
pub struct Slots {
    limits: SlotLimits,
    epoch: Instant,
    table: Mutex<Table>,
    /// Woken whenever a slot is freed.
    freed: Notify,
    metrics: ConnectionMetrics,
    /// Parent of every connection's close token: the server's shutdown.
    shutdown: CancellationToken,
}

/// What [`Slots::try_admit`] decided.
pub enum Admission {
    Admitted(Slot),
    /// No slot now (an idle connection may have been asked to make room): wait for one.
    Wait,
    Refused(Reason),
}

/// A held slot; freed when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    conn: Arc<Connection>,
}

impl Slots {
    pub fn new(
        limits: SlotLimits,
        metrics: ConnectionMetrics,
        shutdown: CancellationToken,
    ) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            epoch: Instant::now(),
            table: Mutex::new(Table {
                conns: HashMap::new(),
                per_address: HashMap::new(),
                next_id: 0,
                waiting: 0,
            }),
            freed: Notify::new(),
            metrics,
            shutdown,
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Connections holding a slot.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `addr` if a slot is free; otherwise asks the longest-idle
    /// connection (of `addr` when it is the address's limit that is reached) to make room,
    /// unless enough are already making room for the admissions waiting.
    pub fn try_admit(self: &Arc<Self>, addr: IpAddr) -> Admission {
        let addr = client_key(addr);
        let now_ms = self.now_ms();
        let mut table = self.lock();
        let of_address = table.per_address.get(&addr).copied().unwrap_or(0);
        let waiting = table.waiting.max(1);
        if of_address >= self.limits.max_per_address {
            let making_room = making_room(&table, now_ms, Some(addr));
            if making_room >= waiting {
                return Admission::Wait;
            }
            return match longest_idle(&table, now_ms, Some(addr)) {
                Some(victim) => {
                    self.evict(&victim, now_ms);
                    Admission::Wait
                }
                None if making_room > 0 => Admission::Wait,
                None => Admission::Refused(Reason::PerAddress),
            };
        }
        if table.conns.len() >= self.limits.max_connections {
            if making_room(&table, now_ms, None) < waiting
                && let Some(victim) = longest_idle(&table, now_ms, None)
            {
                self.evict(&victim, now_ms);
            }
            return Admission::Wait;
        }
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Connection {
            addr,
            in_flight: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(now_ms),
            evicted_at_ms: AtomicU64::new(0),
            close: self.shutdown.child_token(),
        });
        table.conns.insert(id, conn.clone());
        *table.per_address.entry(addr).or_insert(0) += 1;
        self.metrics.open.inc();
        Admission::Admitted(Slot {
            slots: self.clone(),
            id,
            conn,
        })
    }

    fn evict(&self, victim: &Connection, now_ms: u64) {
        tracing::debug!(peer = %victim.addr, "connection slots full; closing the longest-idle connection");
        self.metrics.closed(Reason::Evicted);
        victim.evicted_at_ms.store(now_ms.max(1), Ordering::Release);
        victim.close.cancel();
    }

    /// Waits (at most `within`) for a slot for a connection from `addr`; shutdown ends the wait.
    pub async fn admit(self: &Arc<Self>, addr: IpAddr, within: Duration) -> Result<Slot, Reason> {
        let deadline = Instant::now() + within;
        self.lock().waiting += 1;
        let _waiting = Waiting(self.as_ref());
        loop {
            // Registered before the check, so a slot freed in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_admit(addr) {
                Admission::Admitted(slot) => return Ok(slot),
                Admission::Refused(reason) => return Err(reason),
                Admission::Wait => {}
            }
            if Instant::now() >= deadline {
                return Err(Reason::Full);
            }
            // Woken by a freed slot, or a moment later to look again: a connection that was
            // busy or only just accepted may be evictable by then (request ends notify nobody,
            // to keep the request path off the table).
            let look_again = (Instant::now() + MIN_EVICTABLE_IDLE).min(deadline);
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Reason::Full),
                _ = tokio::time::timeout_at(look_again, freed) => {}
            }
        }
    }
}

/// The address a client is counted under: IPv4 as it is (an IPv4-mapped IPv6 address as the
/// IPv4 address it is), IPv6 by its /64 (one host's usual allocation: counted per /128, one
/// host would have 2^64 addresses).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts an admission as waiting while it is.
struct Waiting<'a>(&'a Slots);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut table = self.0.lock();
        table.waiting = table.waiting.saturating_sub(1);
    }
}

/// Connections (of `addr` if given) evicted a moment ago and about to free their slots.
fn making_room(table: &Table, now_ms: u64, addr: Option<IpAddr>) -> usize {
    table
        .conns
        .values()
        .filter(|c| addr.is_none_or(|a| c.addr == a) && c.making_room(now_ms))
        .count()
}

/// The connection idle the longest (at least [`MIN_EVICTABLE_IDLE`]), of `addr` if given.
fn longest_idle(table: &Table, now_ms: u64, addr: Option<IpAddr>) -> Option<Arc<Connection>> {
    table
        .conns
        .values()
        .filter(|c| addr.is_none_or(|a| c.addr == a))
        .filter_map(|c| c.idle_for(now_ms).map(|idle| (idle, c)))
        .filter(|(idle, _)| *idle >= MIN_EVICTABLE_IDLE)
        .max_by_key(|(idle, _)| *idle)
        .map(|(_, c)| c.clone())
}

impl Slot {
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// A request starts on this connection. The guard marks it in flight until dropped (with
    /// the response body, i.e. once the answer is written). `last` is set on the request that
    /// spends the connection's budget: its answer is the connection's last.
    pub fn begin_request(&self) -> RequestGuard {
        let n = self.conn.requests.fetch_add(1, Ordering::AcqRel) + 1;
        self.conn.in_flight.fetch_add(1, Ordering::AcqRel);
        let last = n == self.slots.limits.max_requests_per_connection;
        if last {
            self.slots.metrics.closed(Reason::RequestBudget);
        }
        RequestGuard {
            slots: self.slots.clone(),
            conn: self.conn.clone(),
            last,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut table = self.slots.lock();
            if table.conns.remove(&self.id).is_some() {
                let addr = self.conn.addr;
                if let Some(n) = table.per_address.get_mut(&addr) {
                    *n -= 1;
                    if *n == 0 {
                        table.per_address.remove(&addr);
                    }
                }
            }
        }
        self.slots.metrics.open.dec();
        self.slots.freed.notify_waiters();
    }
}

/// A request in flight on a connection.
pub struct RequestGuard {
    slots: Arc<Slots>,
    conn: Arc<Connection>,
    last: bool,
}

impl RequestGuard {
    /// This request spent the connection's budget: answer it, then close.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// Closes the connection gracefully after what is in flight.
    pub fn retire(&self) {
        self.conn.close.cancel();
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Idle from now: set before the count drops, so a scan never sees a stale idle time.
        self.conn
            .idle_since_ms
            .store(self.slots.now_ms(), Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_address: usize, budget: u32) -> Arc<Slots> {
        Slots::new(
            SlotLimits {
                max_connections: max,
                max_per_address: per_address,
                max_requests_per_connection: budget,
            },
            ConnectionMetrics::default(),
            CancellationToken::new(),
        )
    }

    fn admitted(a: Admission) -> Slot {
        match a {
            Admission::Admitted(s) => s,
            Admission::Wait => panic!("waits"),
            Admission::Refused(r) => panic!("refused: {r:?}"),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test(start_paused = true)]
    async fn a_full_listener_evicts_its_longest_idle_connection_never_a_busy_one() {
        let s = slots(3, 10, 1000);
        let oldest = admitted(s.try_admit(A));
        assert_eq!(s.open(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        let busy = admitted(s.try_admit(A));
        let _in_flight = busy.begin_request();
        tokio::time::advance(Duration::from_secs(1)).await;
        let recent = admitted(s.try_admit(B));
        tokio::time::advance(Duration::from_secs(1)).await;
        // Full: the oldest idle one is asked to close; the busy one (idle longer than `recent`
        // before its request) is not.
        assert!(matches!(s.try_admit(B), Admission::Wait));
        assert!(oldest.connection().close_requested().is_cancelled());
        assert!(!busy.connection().close_requested().is_cancelled());
        assert!(!recent.connection().close_requested().is_cancelled());
        // Until it is gone the table is still full; then the newcomer gets its slot.
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.admit(B, Duration::from_secs(5)).await.ok() })
        };
        tokio::task::yield_now().await;
        drop(oldest);
        let _newcomer = waiter.await.unwrap().expect("admitted");
        assert_eq!(s.open(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_idle_means_waiting_then_refusal_and_fresh_connections_are_spared() {
        let s = slots(2, 10, 1000);
        let a = admitted(s.try_admit(A));
        let r = a.begin_request();
        let fresh = admitted(s.try_admit(B)); // idle, but only just accepted
        assert!(matches!(s.try_admit(B), Admission::Wait));
        assert!(!fresh.connection().close_requested().is_cancelled());
        // While a newcomer waits, the fresh one ages into the longest-idle and makes room.
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.admit(B, Duration::from_secs(2)).await.ok() })
        };
        tokio::time::sleep(MIN_EVICTABLE_IDLE * 2).await;
        assert!(fresh.connection().close_requested().is_cancelled());
        assert!(!a.connection().close_requested().is_cancelled(), "busy");
        drop(fresh);
        let newcomer = waiter.await.unwrap().expect("admitted in the freed slot");
        let _busy_too = newcomer.begin_request();
        // Nothing idle at all: the wait ends in a refusal at its deadline.
        let t = Instant::now();
        assert!(matches!(
            s.admit(B, Duration::from_secs(2)).await,
            Err(Reason::Full)
        ));
        assert!(t.elapsed() >= Duration::from_secs(2));
        drop(r);
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_makes_room_from_its_own_connections_or_is_refused() {
        let s = slots(10, 2, 1000);
        let a1 = admitted(s.try_admit(A));
        let a2 = admitted(s.try_admit(A));
        let b = admitted(s.try_admit(B));
        tokio::time::advance(Duration::from_secs(1)).await;
        // A's idle connection makes room for A's new one; B's is not touched.
        assert!(matches!(s.try_admit(A), Admission::Wait));
        assert!(
            a1.connection().close_requested().is_cancelled()
                ^ a2.connection().close_requested().is_cancelled()
        );
        assert!(!b.connection().close_requested().is_cancelled());
        drop((a1, a2));
        // Both of A's connections busy: refused at once, B still admitted.
        let (x, y) = (admitted(s.try_admit(A)), admitted(s.try_admit(A)));
        let (_rx, _ry) = (x.begin_request(), y.begin_request());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(
            s.try_admit(A),
            Admission::Refused(Reason::PerAddress)
        ));
        let _b2 = admitted(s.try_admit(B));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_budget_marks_the_last_request() {
        let s = slots(10, 10, 3);
        let c = admitted(s.try_admit(A));
        let lasts: Vec<bool> = (0..4).map(|_| c.begin_request().is_last()).collect();
        assert_eq!(lasts, [false, false, true, false]);
        let r = c.begin_request();
        r.retire();
        assert!(c.connection().close_requested().is_cancelled());
        // A retired or shut-down connection is never picked to make room.
        let shutdown = CancellationToken::new();
        let s = Slots::new(
            SlotLimits {
                max_connections: 1,
                max_per_address: 1,
                max_requests_per_connection: 10,
            },
            ConnectionMetrics::default(),
            shutdown.clone(),
        );
        let only = admitted(s.try_admit(A));
        shutdown.cancel();
        assert!(only.connection().close_requested().is_cancelled());
    }
}
