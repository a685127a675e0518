//! RTMP ingest counters for the origin's `/metrics`: every connection or publish refused by a
//! limit, by reason (`zoomate_rtmp_rejected_total{reason}`), the bytes held against the
//! ingest budget, the connections by phase, and the media bytes each live publisher sent.
//! Counted as they happen (atomics), read at scrape time.

use crate::http::metrics::{Counter, Family, Gauge, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was closed or a publish refused by one of the ingest limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `rtmp.max_connections_per_address` connections from the address already.
    AddressLimit,
    /// Cut in its handshake to make room for a newer connection (`rtmp.max_handshakes`).
    HandshakeCut,
    /// Publish refused: `rtmp.max_connections` publishers already.
    PublisherLimit,
    /// A message announced over `rtmp.max_unpublished_message_bytes` before a publish.
    MessageTooLargeBeforePublish,
    /// A message announced over `rtmp.max_message_bytes` while publishing.
    MessageTooLarge,
    /// Chunk framing the guard refuses (interleaved messages, too many chunk streams, …).
    ChunkProtocol,
    /// `rtmp.max_ingest_bytes` exhausted.
    IngestBudget,
    /// The publisher queue stayed full for `rtmp.idle_timeout_ms` (the pipeline is stuck).
    QueueStalled,
    /// Publish refused: wrong or missing key, unlisted stream, invalid name.
    BadKey,
    /// Publish refused unchecked: the address failed too often and must wait.
    Throttled,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::AddressLimit,
        RejectReason::HandshakeCut,
        RejectReason::PublisherLimit,
        RejectReason::MessageTooLargeBeforePublish,
        RejectReason::MessageTooLarge,
        RejectReason::ChunkProtocol,
        RejectReason::IngestBudget,
        RejectReason::QueueStalled,
        RejectReason::BadKey,
        RejectReason::Throttled,
    ];

    /// The `reason` label (and the `reason` field of the log line).
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::AddressLimit => "address_limit",
            RejectReason::HandshakeCut => "handshake_cut",
            RejectReason::PublisherLimit => "publisher_limit",
            RejectReason::MessageTooLargeBeforePublish => "message_too_large_before_publish",
            RejectReason::MessageTooLarge => "message_too_large",
            RejectReason::ChunkProtocol => "chunk_protocol",
            RejectReason::IngestBudget => "ingest_budget",
            RejectReason::QueueStalled => "queue_stalled",
            RejectReason::BadKey => "bad_key",
            RejectReason::Throttled => "throttled",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// Media bytes received from each live publisher, for `zoomate_rtmp_publisher_received_bytes_total
/// {stream}` (`rate()` × 8 = the publisher's bitrate): only publishers live now are listed, so
/// the series are bounded by `rtmp.max_connections`. `zoomate_rtmp_received_bytes_total` counts
/// every publisher's bytes ever.
#[derive(Debug, Default)]
pub struct PublisherBytes {
    live: Mutex<BTreeMap<u64, (String, Arc<AtomicU64>)>>,
    next_id: AtomicU64,
    total: AtomicU64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

impl PublisherBytes {
    /// A publisher of `stream` starts: its meter counts until it is dropped.
    pub fn start(self: &Arc<Self>, stream: &str) -> PublisherMeter {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(AtomicU64::new(0));
        self.lock().insert(id, (stream.to_string(), bytes.clone()));
        PublisherMeter {
            owner: self.clone(),
            id,
            bytes,
            started: std::time::Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (String, Arc<AtomicU64>)>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, registry: &mut Registry) {
        let per_stream = Family::<StreamLabels, Counter>::default();
        for (stream, bytes) in self.lock().values() {
            per_stream
                .get_or_create(&StreamLabels {
                    stream: stream.clone(),
                })
                .inc_by(bytes.load(Ordering::Relaxed));
        }
        registry.register(
            "zoomate_rtmp_publisher_received_bytes",
            "Media bytes (FLV audio/video tag bodies) received from each publisher live now, by stream",
            per_stream,
        );
        let total = Counter::<u64>::default();
        total.inc_by(self.total.load(Ordering::Relaxed));
        registry.register(
            "zoomate_rtmp_received_bytes",
            "Media bytes received from every RTMP publisher since start",
            total,
        );
    }
}

/// One live publisher's byte count; leaves the listing when dropped.
#[derive(Debug)]
pub struct PublisherMeter {
    owner: Arc<PublisherBytes>,
    id: u64,
    bytes: Arc<AtomicU64>,
    started: std::time::Instant,
}

impl PublisherMeter {
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.owner.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes received and seconds since the publish started, for its closing log line.
    pub fn figures(&self) -> (u64, f64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64(),
        )
    }
}

impl Drop for PublisherMeter {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.id);
    }
}

/// The counters of one RTMP listener.
#[derive(Debug, Default)]
pub struct RtmpCounters {
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl RtmpCounters {
    pub fn rejected(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected_count(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }

    /// Registers the counters and the current levels into `registry` (once per scrape).
    pub fn register(
        &self,
        registry: &mut Registry,
        ingest_bytes: u64,
        handshakes: usize,
        publishers: usize,
        publisher_bytes: &PublisherBytes,
    ) {
        publisher_bytes.register(registry);
        let rejected = Family::<ReasonLabels, Counter>::default();
        for reason in RejectReason::ALL {
            rejected
                .get_or_create(&ReasonLabels {
                    reason: reason.label(),
                })
                .inc_by(self.rejected_count(reason));
        }
        // prometheus-client appends `_total`: exposed as zoomate_rtmp_rejected_total.
        registry.register(
            "zoomate_rtmp_rejected",
            "RTMP connections closed and publishes refused by an ingest limit, by reason",
            rejected,
        );
        let held = Gauge::<i64>::default();
        held.set(i64::try_from(ingest_bytes).unwrap_or(i64::MAX));
        registry.register(
            "zoomate_rtmp_ingest_bytes",
            "Bytes RTMP ingest holds now against rtmp.max_ingest_bytes (partial messages, queues)",
            held,
        );
        let connections = Family::<PhaseLabels, Gauge<i64>>::default();
        for (phase, n) in [("handshake", handshakes), ("publishing", publishers)] {
            connections
                .get_or_create(&PhaseLabels { phase })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        registry.register(
            "zoomate_rtmp_connections",
            "RTMP connections now, by phase",
            connections,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exposed_with_its_count() {
        let c = RtmpCounters::default();
        c.rejected(RejectReason::Throttled);
        c.rejected(RejectReason::Throttled);
        c.rejected(RejectReason::AddressLimit);
        let mut r = Registry::default();
        let publishers = Arc::new(PublisherBytes::default());
        let meter = publishers.start("cam");
        meter.add(1000);
        let gone = publishers.start("old");
        gone.add(5);
        drop(gone);
        c.register(&mut r, 42, 3, 1, &publishers);
        let text = crate::http::metrics::encode(&[&r]);
        assert!(
            text.contains("zoomate_rtmp_rejected_total{reason=\"throttled\"} 2"),
            "{text}"
        );
        // Live publishers only, each by stream; the total keeps the departed one's bytes.
        assert!(
            text.contains("zoomate_rtmp_publisher_received_bytes_total{stream=\"cam\"} 1000")
                && !text.contains("stream=\"old\""),
            "{text}"
        );
        assert!(
            text.contains("zoomate_rtmp_received_bytes_total 1005"),
            "{text}"
        );
        assert!(
            text.contains("zoomate_rtmp_rejected_total{reason=\"address_limit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("zoomate_rtmp_rejected_total{reason=\"bad_key\"} 0"),
            "{text}"
        );
        assert!(text.contains("zoomate_rtmp_ingest_bytes 42"), "{text}");
        assert!(
            text.contains("zoomate_rtmp_connections{phase=\"handshake\"} 3"),
            "{text}"
        );
        let labels: std::collections::BTreeSet<_> =
            RejectReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), RejectReason::ALL.len());
    }
}
