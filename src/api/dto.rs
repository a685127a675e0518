//! The API's wire types (JSON), apart from the internal state they are made from: renaming an
//! internal field never changes the API, and every field here is in `docs/openapi.yaml`
//! (the `api` integration test validates real responses against it).

use serde::Serialize;

/// `{"error": "...", "message": "..."}` on every non-2xx answer.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// A fixed word: `unauthorized`, `forbidden`, `not_found`, `not_served`,
    /// `method_not_allowed`, `conflict`.
    pub error: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct StreamList {
    pub streams: Vec<Stream>,
}

#[derive(Debug, Serialize)]
pub struct Stream {
    pub name: String,
    /// `live`, `ending` or `offline`.
    pub state: &'static str,
    pub source: Source,
    /// RFC 3339, when the current session started.
    pub started_at: Option<String>,
    pub uptime_seconds: Option<f64>,
    /// Viewers counted at this process's edge; `null` when it runs no edge.
    pub viewers: Option<u64>,
    pub renditions: Vec<Rendition>,
    pub urls: StreamUrls,
}

#[derive(Debug, Serialize)]
pub struct Source {
    /// `rtmp`, `test-pattern`, `rtp-mpegts` or `rtp-sdp`.
    pub kind: &'static str,
    /// RTMP: the publisher's address (`ip:port`).
    pub publisher: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Rendition {
    pub name: String,
    pub bitrate_bits_per_second: Option<u64>,
    pub encode_speed_ratio: Option<f64>,
    pub segments: u64,
    pub parts: u64,
    pub discontinuities: u64,
    pub bytes: u64,
    pub media_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct StreamUrls {
    pub hls: String,
    /// CMAF streams only.
    pub dash: Option<String>,
}

/// What `reload` answers: the keys applied live, and the changed keys that wait for a restart.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    pub applied: Vec<&'static str>,
    pub needs_restart: Vec<&'static str>,
}

/// What `kick` and `end` answer (202: the stream ends in the background).
#[derive(Debug, Serialize)]
pub struct ActionAccepted {
    pub stream: String,
    /// `kick` or `end`.
    pub action: &'static str,
    /// The publisher that was disconnected, if any.
    pub publisher: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OriginList {
    pub origins: Vec<Origin>,
}

#[derive(Debug, Serialize)]
pub struct Origin {
    pub id: String,
    pub base_url: String,
    /// From `[edge] origins` (true) or learned from bus heartbeats (false).
    #[serde(rename = "static")]
    pub is_static: bool,
    pub healthy: bool,
    pub usable: bool,
    /// Requests this edge has in flight to it: its load as the edge sees it.
    pub in_flight: u64,
    pub streams: Vec<String>,
    pub heartbeat_age_seconds: Option<f64>,
    /// Live pipelines the origin announced in its last heartbeat (bus `loadStreams`).
    pub load_streams: Option<u32>,
    /// Its slowest encoder's speed as a fraction of real time, from its last heartbeat (bus
    /// `loadEncoderSpeed`; 0 when idle).
    pub load_encoder_speed: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Cache {
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses); `null` before any request.
    pub hit_ratio: Option<f64>,
    pub top_objects: Vec<CachedObject>,
}

#[derive(Debug, Serialize)]
pub struct CachedObject {
    pub path: String,
    pub kind: &'static str,
    pub bytes: u64,
    pub hits: u64,
}

#[derive(Debug, Serialize)]
pub struct ViewerCounts {
    /// How long one media playlist fetch keeps a viewer counted.
    pub window_seconds: f64,
    pub streams: Vec<StreamViewers>,
}

#[derive(Debug, Serialize)]
pub struct StreamViewers {
    pub stream: String,
    pub viewers: u64,
}
