//! `/metrics` for every role: `prometheus-client` registries, encoded in the Prometheus text
//! format 0.0.4 (what every Prometheus version scrapes), and the label sets shared by the origin
//! and the edge. The crate writes names, types, `_total` suffixes and label escaping; zoomate
//! only says what to count.

use crate::http::paths::ResourceKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
pub use prometheus_client::registry::Registry;

/// `Content-Type` of a `/metrics` answer.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Labels of the HTTP request counters (`zoomate_{edge,origin_http}_requests_total`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Resource kind (`ResourceKind::label`), or `other` for anything not a media path.
    pub kind: &'static str,
    /// Any HTTP status code: the family has a sample per code seen.
    pub status: u16,
}

impl RequestLabels {
    pub fn new(kind: Option<ResourceKind>, status: http::StatusCode) -> RequestLabels {
        RequestLabels {
            kind: kind.map(|k| k.label()).unwrap_or("other"),
            status: status.as_u16(),
        }
    }
}

/// Labels of the LL-HLS held-request counters: how a held request ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeldLabels {
    /// `woken` (answered when its part appeared), `timeout` (503 after the hold limit),
    /// `rejected` (503 at once: held-request limit reached), `forwarded` (edge: the bus said
    /// nothing in time, the origin answered).
    pub outcome: &'static str,
}

/// Buckets of wake-latency histograms: 0.1 ms .. ~0.8 s.
pub fn wake_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 14))
}

/// Labels of the per-resource latency histograms: the resource kind (`ResourceKind::label`,
/// or `part` for an LL-HLS part): a fixed handful of values.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// A histogram per resource kind, every one with [`latency_buckets`].
pub type KindHistograms = Family<KindLabels, Histogram, fn() -> Histogram>;

/// Buckets of the per-segment latency histograms (encode → announce, announce → cached,
/// first byte): 0.5 ms .. ~16 s, wide enough for a held LL-HLS request (up to 3 target
/// durations) at the top and a cache hit at the bottom.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// An empty [`KindHistograms`].
pub fn kind_histograms() -> KindHistograms {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

/// Encodes `registries` one after another (each family appears once overall: the registries
/// must not share names).
pub fn encode(registries: &[&Registry]) -> String {
    let mut out = String::new();
    for r in registries {
        // Writing into a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = prometheus_text::encode(&mut out, r) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_status_is_counted_and_names_keep_their_total_suffix() {
        let mut r = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("zoomate_x_requests", "Requests", requests.clone());
        for status in [200u16, 405, 416, 500, 599] {
            let s = http::StatusCode::from_u16(status).unwrap();
            requests.get_or_create(&RequestLabels::new(None, s)).inc();
        }
        let text = encode(&[&r]);
        for status in [200, 405, 416, 500, 599] {
            assert!(
                text.contains(&format!(
                    "zoomate_x_requests_total{{kind=\"other\",status=\"{status}\"}} 1"
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("# TYPE zoomate_x_requests_total counter"),
            "{text}"
        );
    }
}
