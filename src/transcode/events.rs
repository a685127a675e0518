//! What a pipeline tells its session: typed [`PipelineEvent`]s in one bounded channel.
//!
//! Code that runs on GStreamer's streaming threads (the ladder builder, codec probes, the CMAF
//! fragment writer) sends events directly through an [`EventSender`]; the GStreamer bus bridge
//! ([`super::bus_bridge`]) adds what only the bus knows (splitmuxsink's fragments, EOS, errors).
//! Nothing travels as a GStreamer message to be parsed back, and no rendition is read out of an
//! element's name. One channel keeps the order a session relies on: a streaming thread's event
//! is in the channel before anything it causes downstream can reach the bus.

use super::PlannedRendition;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Capacity of the pipeline → session channel. Fragment events arrive about once per segment
/// per rendition, so this is minutes of slack; a full channel holds the streaming thread
/// (backpressure), never drops.
pub const EVENT_CHANNEL_CAPACITY: usize = 256;

/// What a pipeline reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineEvent {
    LadderPlanned {
        renditions: Vec<PlannedRendition>,
        source_width: u32,
        source_height: u32,
        /// Wall-clock milliseconds at running time 0: PDT = anchor + a segment's running time.
        anchor_wall_ms: i64,
        /// CMAF with audio: segments of an extra `audio` rendition follow.
        separate_audio: bool,
        /// Wall-clock timing: the media sequence number of the session's first segment
        /// (its start / the segment duration, the same on every origin).
        first_sequence: Option<u64>,
    },
    /// CMAF: the init segment of `rendition` is at `location` (staging directory).
    InitSegment {
        rendition: String,
        location: PathBuf,
    },
    VideoCodec {
        rendition: String,
        codec: String,
    },
    AudioCodec {
        codec: String,
    },
    FragmentOpened {
        rendition: String,
        running_time_ns: u64,
    },
    /// LL-HLS: part `index` of the open fragment of `rendition` is complete at `location`
    /// (staging directory); its fragment is the one most recently opened.
    PartWritten {
        rendition: String,
        location: PathBuf,
        index: u32,
        /// Running time of the part's first frame, nanoseconds.
        start_ns: u64,
        duration_ns: u64,
        independent: bool,
        byte_size: u64,
    },
    /// A segment file is complete at `location` (still in the staging directory).
    /// `running_time_ns` is the fragment's exact end when `exact_end`, else (splitmuxsink) the
    /// start of its last frame.
    FragmentClosed {
        rendition: String,
        location: PathBuf,
        running_time_ns: u64,
        exact_end: bool,
    },
    Eos,
    Failed(String),
    /// A sink could not write for want of space (`ENOSPC`): terminal like `Failed`, but the
    /// stream is `store_full`, not broken, and is restarted until space returns.
    StoreFull(String),
}

/// The sending end for GStreamer threads. Blocking: a streaming thread waits for room rather
/// than drop an event. The session drops its receiver before tearing a pipeline down, so a
/// waiting thread is released (its send fails) instead of holding the state change.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: mpsc::Sender<PipelineEvent>,
}

impl EventSender {
    pub fn channel() -> (EventSender, mpsc::Receiver<PipelineEvent>) {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        (EventSender { tx }, rx)
    }

    /// From a GStreamer streaming thread (never from async code). Returns false when the
    /// session is gone.
    pub fn emit(&self, event: PipelineEvent) -> bool {
        self.tx.blocking_send(event).is_ok()
    }

    /// From async code (the bus bridge).
    pub async fn send(&self, event: PipelineEvent) -> bool {
        self.tx.send(event).await.is_ok()
    }

    /// Resolves when the session dropped its receiver.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}
