//! Transcode: GStreamer decodes the source once and encodes an aligned ABR ladder.
//!
//! The pipeline is built from `pipelines/` templates ([`templates`]). The ladder is planned
//! ([`ladder`], pure) only when the first decoded video caps arrive, because a publisher's
//! resolution is not known before then. GStreamer runs on its own threads and reports typed
//! [`PipelineEvent`]s into one bounded channel ([`events`]).
//!
//! By job: [`pipeline`] starts a pipeline and builds the ladder into it on the first video
//! caps; [`description`] writes the ladder's gst-launch text; [`codec_probe`] reads CODECS from
//! the encoded streams; [`fragment_writer`] turns CMAF output into fragment files;
//! [`off_runtime`] runs the calls that can wait on a streaming thread off the tokio workers;
//! [`bus_bridge`] forwards what only the GStreamer bus knows; [`colorimetry`] picks the
//! ladder's one colorimetry; [`wallclock`] puts a redundant stream's timeline on the wall clock.

pub mod bus_bridge;
pub mod codec_probe;
pub mod colorimetry;
pub mod description;
pub mod events;
pub mod fmp4;
pub mod fragment_writer;
pub mod ladder;
pub mod off_runtime;
pub mod pipeline;
pub mod templates;
pub mod wallclock;

pub use description::{DEFAULT_VOD_QUEUE_FRAMES, RawVideoQueue, ScaleMethod};
pub use events::PipelineEvent;
pub use ladder::{PlannedRendition, plan_ladder};
pub use off_runtime::{OffRuntimeError, run_bounded, run_detached};
pub use pipeline::{AUDIO_RENDITION, EosSignal, LadderSpec, LivePipeline};
pub use templates::Templates;

/// Errors building or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("pipeline template `{name}`: {reason}")]
    Template { name: String, reason: String },
    #[error("GStreamer initialisation failed: {0}")]
    Init(String),
    #[error("building pipeline for stream `{stream}`: {reason}")]
    Build { stream: String, reason: String },
    #[error("pipeline for stream `{stream}` refused to start: {reason}")]
    Start { stream: String, reason: String },
    #[error("staging directory for stream `{stream}`: {source}")]
    Staging {
        stream: String,
        source: std::io::Error,
    },
}

/// Initialises GStreamer once per process and registers the in-process fMP4 plugin.
pub fn init() -> Result<(), TranscodeError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().map_err(|e| e.to_string())?;
        gstfmp4::plugin_register_static().map_err(|e| e.to_string())?;
        Ok(())
    })
    .clone()
    .map_err(TranscodeError::Init)
}
