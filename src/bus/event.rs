//! The bus's messages as plain Rust values. `codec` turns them into Cap'n Proto bytes and back;
//! everything else in zoomate (origin, edge) speaks only these types.

/// A rendition as announced when a stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionInfo {
    pub name: String,
    /// Peak bandwidth, bits per second (the configured target until segments are measured).
    pub bandwidth_bps: u64,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codecs string, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
}

/// One message on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum BusEvent {
    /// A segment and the playlist listing it are durable and fetchable.
    SegmentReady {
        stream: String,
        rendition: String,
        media_sequence: u64,
        duration_ms: u64,
        /// URL path, e.g. `/live/demo/720p/42.ts`.
        uri: String,
        byte_size: u64,
        /// Program date time of the segment's first frame, milliseconds since the Unix epoch.
        program_date_time_ms: i64,
        discontinuity: bool,
        origin_id: String,
    },
    /// An LL-HLS part and the playlist listing it are durable and fetchable.
    PartReady {
        stream: String,
        rendition: String,
        /// The parent segment's media sequence number.
        media_sequence: u64,
        part_index: u32,
        duration_ms: u64,
        independent: bool,
        /// URL path, e.g. `/live/demo/720p/42.3.m4s`.
        uri: String,
        byte_size: u64,
        origin_id: String,
    },
    /// A media playlist was rewritten.
    PlaylistUpdated {
        stream: String,
        rendition: String,
        media_sequence: u64,
        uri: String,
    },
    StreamStarted {
        stream: String,
        origin_id: String,
        renditions: Vec<RenditionInfo>,
    },
    StreamEnded {
        stream: String,
        origin_id: String,
    },
    OriginHeartbeat {
        origin_id: String,
        /// Base URL edges use, e.g. `http://127.0.0.1:8081`.
        http_base_url: String,
        streams: Vec<String>,
        /// Live pipelines on this origin.
        load_streams: u32,
        /// Encoder speed as a fraction of realtime (1.0 = keeping up; 0 when idle).
        load_encoder_speed: f32,
        /// Milliseconds between heartbeats, so subscribers know when one is overdue.
        interval_ms: u32,
    },
}

impl BusEvent {
    /// The ZeroMQ topic frame: subscribers filter by prefix.
    pub fn topic(&self) -> String {
        match self {
            BusEvent::SegmentReady {
                stream, rendition, ..
            } => format!("seg/{stream}/{rendition}"),
            BusEvent::PartReady {
                stream, rendition, ..
            } => format!("part/{stream}/{rendition}"),
            BusEvent::PlaylistUpdated {
                stream, rendition, ..
            } => format!("pl/{stream}/{rendition}"),
            BusEvent::StreamStarted { stream, .. } | BusEvent::StreamEnded { stream, .. } => {
                format!("stream/{stream}")
            }
            BusEvent::OriginHeartbeat { origin_id, .. } => format!("hb/{origin_id}"),
        }
    }
}
