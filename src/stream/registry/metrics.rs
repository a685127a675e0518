//! The registry's Prometheus series, built per scrape from the live sessions: stream health,
//! announce delays, per-rendition figures and RTP datagram counters.

use super::StreamRegistry;
use crate::http::metrics::{Counter, Family, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use std::sync::atomic::Ordering;

/// Labels of the `zoomate_rendition_*` series (bounded: live streams × their ladder).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenditionLabels {
    stream: String,
    rendition: String,
}

/// Labels of `zoomate_rtp_datagrams_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RtpLabels {
    stream: String,
    outcome: &'static str,
}

impl StreamRegistry {
    /// Registers the RTP streams' datagram counters (accepted and dropped, by reason) into
    /// `registry`, read now: call it once per scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.health.register_metrics(registry);
        registry.register(
            "zoomate_origin_segment_ready_delay_seconds",
            "A segment's last frame captured to the segment listed and announced",
            self.delays.segment.clone(),
        );
        registry.register(
            "zoomate_origin_part_ready_delay_seconds",
            "An LL-HLS part's last frame captured to the part listed and announced",
            self.delays.part.clone(),
        );
        registry.register(
            "zoomate_origin_encode_to_announce_seconds",
            "A segment or part file reported complete by its writer to its bus announcement \
             (promote, list, playlists written), by kind",
            self.delays.encode_to_announce.clone(),
        );
        self.register_rendition_metrics(registry);
        let map = self.rtp_counters.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return;
        }
        let datagrams = Family::<RtpLabels, Counter>::default();
        for (stream, c) in map.iter() {
            for (outcome, v) in [
                ("accepted", &c.accepted),
                ("malformed", &c.malformed),
                ("wrong_payload_type", &c.wrong_payload_type),
            ] {
                datagrams
                    .get_or_create(&RtpLabels {
                        stream: stream.clone(),
                        outcome,
                    })
                    .inc_by(v.load(Ordering::Relaxed));
            }
        }
        // prometheus-client appends `_total`: exposed as zoomate_rtp_datagrams_total.
        registry.register(
            "zoomate_rtp_datagrams",
            "RTP datagrams received by stream and outcome",
            datagrams,
        );
    }

    /// `zoomate_rendition_*{stream,rendition}` of the live sessions, read now: a stream that
    /// ended has no series (the registry is built per scrape).
    fn register_rendition_metrics(&self, registry: &mut Registry) {
        use crate::http::metrics::Gauge;
        type Ratio = Gauge<f64, std::sync::atomic::AtomicU64>;
        let speed = Family::<RenditionLabels, Ratio>::default();
        let bitrate = Family::<RenditionLabels, Gauge>::default();
        let segments = Family::<RenditionLabels, Counter>::default();
        for s in self.streams() {
            for (rendition, f) in &s.renditions {
                let labels = RenditionLabels {
                    stream: s.name.clone(),
                    rendition: rendition.clone(),
                };
                segments.get_or_create(&labels).inc_by(f.segments);
                if let Some(x) = f.encode_speed {
                    speed.get_or_create(&labels).set(x);
                }
                if let Some(bps) = f.bitrate_bps {
                    bitrate
                        .get_or_create(&labels)
                        .set(i64::try_from(bps).unwrap_or(i64::MAX));
                }
            }
        }
        registry.register(
            "zoomate_rendition_encode_speed_ratio",
            "Media time produced per wall time over the last segments (1.0 keeps up with live)",
            speed,
        );
        registry.register(
            "zoomate_rendition_bitrate_bits_per_second",
            "Measured bitrate: segment bytes x 8 / media duration over the last segments",
            bitrate,
        );
        // prometheus-client appends `_total`: exposed as zoomate_rendition_segments_total.
        registry.register(
            "zoomate_rendition_segments",
            "Segments listed by the current session",
            segments,
        );
    }
}
