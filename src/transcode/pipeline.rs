//! One live ladder pipeline and its bridge into tokio.
//!
//! Shape (text from `pipelines/` templates):
//!
//! ```text
//! source template … ! videoconvert name=vsrc          (raw video)
//! source template … ! audioconvert name=asrc          (raw audio)
//!   ── on vsrc's first CAPS event, the ladder bin is planned, added and linked: ──
//! vsrc → queue ! videorate ! tee ─┬─ queue ! videoscale ! I420 WxH colorimetry ! {video encoder} ! h264parse ─┐
//!                                 └─ … one branch per rendition                                               │
//! asrc → queue ! audioresample ! {audio encoder} ! aacparse ! tee ── queue ───────────────────────── splitmuxsink per rendition
//! ```
//!
//! CMAF (`format = "cmaf"`): each video branch ends in `cmafmux ! appsink` instead of a
//! splitmuxsink, and audio gets its own `cmafmux ! appsink` (CMAF: one track per file), written
//! by [`super::fragment_writer`] as the `audio` rendition. cmafmux requests the keyframes at its
//! fragment boundaries itself; every branch's muxer sees its first frame at the same running
//! time, so the boundaries are the same everywhere. In live pipelines the `tfdt` is put on the
//! wall clock (`decode-time-offset` = wall-clock time at running time 0), which is what the
//! DASH timeline and EXT-X-PROGRAM-DATE-TIME both use.
//!
//! Cost: the raw-video queues (`vin` and the head of each branch) are bounded by
//! [`LadderSpec::raw_video_queue`]: 3 s for live, a few frames for a file, which is read faster
//! than real time and would otherwise keep every queue full. Branches scale with
//! [`LadderSpec::scale_method`]: bilinear live, cubic for VOD (quality level with ffmpeg's ladder).
//!
//! Colour: every branch fixes the same colorimetry in its caps after scaling (the source's, or
//! BT.709 for an RGB/untagged one: [`super::colorimetry`]), so no rendition gets a colour-matrix
//! conversion and the encoder tags each SPS VUI with the same value.
//!
//! Alignment (TS): every splitmuxsink asks its own encoder for a keyframe at the same running times
//! (`send-keyframe-requests`, multiples of the segment duration from the shared start), all
//! encoders see the same frames from one tee, so segment N of every rendition starts on the same
//! frame with an IDR. The source's GOP does not matter: it is decoded and re-encoded.

use super::bus_bridge::{MuxerRenditions, bridge_bus};
use super::events::{EventSender, PipelineEvent};
use super::{Templates, TranscodeError, plan_ladder};
use crate::config::{LadderConfig, SegmentFormat};
use gst::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What one pipeline needs to know.
#[derive(Debug, Clone)]
pub struct LadderSpec {
    pub stream: String,
    /// Rendered source template: must contain elements named `vsrc` and (optionally) `asrc`.
    pub source_description: String,
    pub ladder: LadderConfig,
    pub templates: Templates,
    /// Where segments are written before they are promoted into the store.
    pub staging_dir: PathBuf,
    pub format: SegmentFormat,
    /// CMAF with LL-HLS: fragments are sent in chunks of this duration, each one a part.
    pub part_duration_ms: Option<u64>,
    /// LL-HLS: an IDR at least this often (a multiple of the part duration, dividing the
    /// segment), so independent parts come more often than segments. `None`: per segment.
    pub keyframe_interval_ms: Option<u64>,
    /// Live: timestamps (fMP4 `tfdt`) on the wall clock. VOD: from zero.
    pub wall_clock_timestamps: bool,
    /// `Wallclock`: running time is wall-clock time and the ladder starts on a wall-clock
    /// segment boundary ([`super::wallclock`]), for origin redundancy.
    pub timing: crate::config::StreamTiming,
    /// Bound of the ladder's raw-video queues: time-deep for live, a few frames for a file.
    pub raw_video_queue: super::description::RawVideoQueue,
    /// How rendition branches scale: bilinear for live (CPU headroom), cubic for a file.
    pub scale_method: super::description::ScaleMethod,
    /// RTP sources: guard every RTP socket, counting what it drops here.
    pub rtp_guard: Option<Arc<crate::ingest::rtp::RtpCounters>>,
    /// SRT sources: passphrase and stream-id check on the template's `srtsrc`.
    pub srt_listener: Option<crate::ingest::srt::SrtListener>,
    /// WHEP: the top rendition's H.264 is tapped into this feed (no encode per viewer).
    pub whep_feed: Option<Arc<crate::whep::feed::WhepFeed>>,
}

/// Name of the separate audio rendition of CMAF output.
pub use crate::layout::AUDIO_RENDITION;

/// A running pipeline. Dropping it tears the pipeline down, which waits for every streaming
/// thread: drop it (or call [`LivePipeline::stop`]) only off the tokio workers
/// ([`super::off_runtime`]).
pub struct LivePipeline {
    pipeline: gst::Pipeline,
    appsrc: Option<gst_app::AppSrc>,
    started: Instant,
    /// Milliseconds after `started` of the newest raw video frame at `vsrc`; 0 = none yet.
    last_video_ms: Arc<AtomicU64>,
    /// Whether raw audio reached `asrc`; `None` when the source has no audio branch.
    audio_seen: Option<Arc<AtomicBool>>,
}

impl LivePipeline {
    /// Parses the source, arms the ladder builder and sets the pipeline PLAYING.
    /// Call from a blocking context (state changes may wait on GStreamer threads).
    pub fn start(
        spec: LadderSpec,
    ) -> Result<(LivePipeline, mpsc::Receiver<PipelineEvent>), TranscodeError> {
        super::init()?;
        let stream = spec.stream.clone();
        let build_err = |reason: String| TranscodeError::Build {
            stream: stream.clone(),
            reason,
        };
        let element = gst::parse::launch(&spec.source_description)
            .map_err(|e| build_err(format!("source: {e}")))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| build_err("source is not a pipeline".into()))?;
        pipeline.set_property("name", format!("stream-{}", spec.stream));
        let vsrc = pipeline
            .by_name("vsrc")
            .ok_or_else(|| build_err("source template has no element named vsrc".into()))?;
        let vsrc_pad = vsrc
            .static_pad("src")
            .ok_or_else(|| build_err("vsrc has no src pad".into()))?;
        let asrc_pad = pipeline.by_name("asrc").and_then(|a| a.static_pad("src"));
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
        std::fs::create_dir_all(&spec.staging_dir).map_err(|source| TranscodeError::Staging {
            stream: stream.clone(),
            source,
        })?;
        if let Some(counters) = &spec.rtp_guard {
            crate::ingest::rtp::guard_udp_sources(&pipeline, counters.clone());
        }
        if let Some(listener) = &spec.srt_listener {
            crate::ingest::srt::prepare_listener(&pipeline, &spec.stream, listener);
        }
        // Source liveness: a network source can go quiet without any error or EOS.
        let started = Instant::now();
        let last_video_ms = Arc::new(AtomicU64::new(0));
        {
            let last_video_ms = last_video_ms.clone();
            vsrc_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let ms = started.elapsed().as_millis() as u64;
                last_video_ms.store(ms.max(1), Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        // Audio that a source template expects but the sender never sends holds the muxers:
        // the session watches for it (see `audio_seen`).
        let audio_seen = asrc_pad.as_ref().map(|pad| {
            let seen = Arc::new(AtomicBool::new(false));
            let flag = seen.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                flag.store(true, Ordering::Relaxed);
                gst::PadProbeReturn::Remove
            });
            seen
        });

        // Hold audio until the ladder exists: an unlinked pad would fail the stream with not-linked.
        let audio_block = asrc_pad.as_ref().and_then(|p| {
            p.add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| {
                gst::PadProbeReturn::Ok
            })
        });
        let audio_block = Arc::new(Mutex::new(audio_block));

        let spec = Arc::new(spec);
        let (events, rx) = EventSender::channel();
        let muxers = MuxerRenditions::default();
        let weak_pipeline = pipeline.downgrade();
        let (ladder_events, ladder_muxers) = (events.clone(), muxers.clone());
        vsrc_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
            let Some(event) = info.event() else {
                return gst::PadProbeReturn::Ok;
            };
            let gst::EventView::Caps(caps) = event.view() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pipeline) = weak_pipeline.upgrade() else {
                return gst::PadProbeReturn::Remove;
            };
            let source = caps.caps().structure(0);
            let dims = source
                .and_then(|s| Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?)));
            let result = match (source, dims) {
                (Some(source), Some((w, h))) if w > 0 && h > 0 => build_ladder(
                    &pipeline,
                    &spec,
                    pad,
                    asrc_pad.as_ref(),
                    &audio_block,
                    &ladder_events,
                    &ladder_muxers,
                    SourceVideo {
                        width: w as u32,
                        height: h as u32,
                        colorimetry: super::colorimetry::ladder_colorimetry(source),
                    },
                ),
                _ => Err(format!("video caps without a size: {}", caps.caps())),
            };
            if let Err(reason) = result {
                ladder_events.emit(PipelineEvent::Failed(format!("ladder: {reason}")));
            }
            gst::PadProbeReturn::Remove
        });

        let bus = pipeline
            .bus()
            .ok_or_else(|| build_err("pipeline has no bus".into()))?;
        let stream_name = pipeline.name().to_string();
        tokio::spawn(bridge_bus(bus, events, muxers, stream_name));

        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            // Elements that did start have streaming threads: stop them before the last ref goes.
            let _ = pipeline.set_state(gst::State::Null);
            return Err(TranscodeError::Start {
                stream: pipeline.name().to_string(),
                reason: format!("{e} (see the error on the bus log line)"),
            });
        }
        Ok((
            LivePipeline {
                pipeline,
                appsrc,
                started,
                last_video_ms,
                audio_seen,
            },
            rx,
        ))
    }

    /// The GStreamer pipeline itself (for a source that needs configuring once it runs).
    pub fn gst_pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// The `appsrc name=src` of a push source (RTMP), if the source has one.
    pub fn appsrc(&self) -> Option<gst_app::AppSrc> {
        self.appsrc.clone()
    }

    /// What asks the pipeline to finish (open segments are closed and reported before `Eos`),
    /// to be sent off the runtime: sending an event into a pipeline takes its state lock.
    pub fn eos_signal(&self) -> EosSignal {
        EosSignal {
            pipeline: self.pipeline.clone(),
            appsrc: self.appsrc.clone(),
        }
    }

    /// Sets the pipeline to NULL, waiting for its streaming threads: call off the runtime.
    pub fn stop(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }

    /// `Some(false)` while a source with an audio branch has delivered no audio yet.
    pub fn audio_seen(&self) -> Option<bool> {
        self.audio_seen
            .as_ref()
            .map(|seen| seen.load(Ordering::Relaxed))
    }

    /// How long since the source's last video frame; `None` before the first one.
    pub fn video_idle(&self) -> Option<Duration> {
        match self.last_video_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Current running time of the pipeline (for the encoder-speed figure).
    pub fn running_time(&self) -> Option<gst::ClockTime> {
        self.pipeline.current_running_time()
    }
}

impl Drop for LivePipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

/// EOS for a pipeline; [`EosSignal::send`] may block (see [`LivePipeline::eos_signal`]).
pub struct EosSignal {
    pipeline: gst::Pipeline,
    appsrc: Option<gst_app::AppSrc>,
}

impl EosSignal {
    pub fn send(self) {
        match &self.appsrc {
            Some(src) => {
                let _ = src.end_of_stream();
            }
            None => {
                self.pipeline.send_event(gst::event::Eos::new());
            }
        }
    }
}

/// What the ladder is planned from: the source's first raw video caps.
struct SourceVideo {
    width: u32,
    height: u32,
    /// Every rendition's colorimetry (see [`super::colorimetry`]).
    colorimetry: gst_video::VideoColorimetry,
}

/// Runs in vsrc's streaming thread on the first CAPS event: plan, build, add, link.
fn build_ladder(
    pipeline: &gst::Pipeline,
    spec: &LadderSpec,
    vsrc_pad: &gst::Pad,
    asrc_pad: Option<&gst::Pad>,
    audio_block: &Mutex<Option<gst::PadProbeId>>,
    events: &EventSender,
    muxers: &MuxerRenditions,
    source: SourceVideo,
) -> Result<(), String> {
    let SourceVideo {
        width: source_width,
        height: source_height,
        colorimetry,
    } = source;
    let planned = plan_ladder(&spec.ladder.renditions, source_width, source_height);
    let cmaf = spec.format == SegmentFormat::Cmaf;
    let separate_audio = cmaf && asrc_pad.is_some();
    let mut outputs: Vec<String> = planned.iter().map(|r| r.name.clone()).collect();
    if separate_audio {
        outputs.push(AUDIO_RENDITION.to_string());
    }
    for name in &outputs {
        std::fs::create_dir_all(spec.staging_dir.join(name))
            .map_err(|e| format!("staging dir: {e}"))?;
    }
    // Wall clock at running time 0, taken once for every branch.
    let wall_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let running_ns = pipeline
        .current_running_time()
        .map(|t| t.nseconds())
        .unwrap_or(0);
    let mut anchor_ns = wall_ns.saturating_sub(running_ns);
    // Wall-clock timing: running time is time since the epoch, and the ladder starts at the
    // next common boundary (frames before it are dropped).
    let mut first_sequence = None;
    let mut audio_start_ns = None;
    if spec.timing == crate::config::StreamTiming::Wallclock {
        use super::wallclock;
        let grid = wallclock::Grid {
            segment_ms: spec.ladder.segment_duration_ms,
            fps: spec.ladder.frame_rate as u64,
            audio: asrc_pad.is_some(),
        };
        let first_boundary_ns = grid.first_boundary_ns(wallclock::now_running_ns());
        let offset = Arc::new(wallclock::WallOffset::default());
        wallclock::gate_video(vsrc_pad, grid, first_boundary_ns, offset.clone());
        anchor_ns = wallclock::EPOCH_NS;
        first_sequence = Some(grid.sequence_of(first_boundary_ns));
        audio_start_ns = Some((first_boundary_ns, offset));
    }
    let tfdt_offset_ns = if spec.wall_clock_timestamps {
        anchor_ns as i64
    } else {
        0
    };
    let description = super::description::ladder_description(
        spec,
        &planned,
        asrc_pad.is_some(),
        tfdt_offset_ns,
        &colorimetry,
    )?;
    let bin = gst::parse::bin_from_description(&description, false)
        .map_err(|e| format!("ladder: {e}"))?;
    // The muxers were named by `ladder_description`; from here on they are known by identity.
    for name in &outputs {
        let muxer = bin
            .by_name(&format!("mux_{name}"))
            .ok_or(format!("ladder has no muxer mux_{name}"))?;
        if cmaf {
            let sink = muxer
                .downcast::<gst_app::AppSink>()
                .map_err(|_| format!("mux_{name} is not an appsink"))?;
            super::fragment_writer::attach(
                &sink,
                spec.staging_dir.join(name),
                name.clone(),
                events.clone(),
                spec.part_duration_ms.is_some(),
            );
        } else {
            muxers.register(&muxer, name);
        }
    }
    let ghost = |inner: &str, name: &str| -> Result<gst::GhostPad, String> {
        let target = bin
            .by_name(inner)
            .and_then(|e| e.static_pad("sink"))
            .ok_or(format!("ladder has no {inner}"))?;
        let pad = gst::GhostPad::builder_with_target(&target)
            .map_err(|e| e.to_string())?
            .name(name)
            .build();
        bin.add_pad(&pad).map_err(|e| e.to_string())?;
        Ok(pad)
    };
    let vsink = ghost("vin", "video")?;
    let asink = if asrc_pad.is_some() {
        Some(ghost("ain", "audio")?)
    } else {
        None
    };
    if let Some(feed) = &spec.whep_feed
        && let Some(tap) = bin
            .by_name("whep_tap")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
    {
        feed.attach(&tap);
        feed.set_live(true);
    }
    super::codec_probe::arm_codec_probes(&bin, &planned, cmaf, events);
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    vsrc_pad
        .link(&vsink)
        .map_err(|e| format!("link video: {e:?}"))?;
    // Reported before any audio flows (it is held until below) and before this probe returns
    // and lets video through: the session knows the ladder before any fragment of it.
    events.emit(PipelineEvent::LadderPlanned {
        renditions: planned,
        source_width,
        source_height,
        anchor_wall_ms: (anchor_ns / 1_000_000) as i64,
        separate_audio,
        first_sequence,
    });
    if let (Some(apad), Some(asink)) = (asrc_pad, asink) {
        if let Some((start_ns, offset)) = audio_start_ns {
            super::wallclock::gate_audio(apad, start_ns, offset);
        }
        apad.link(&asink)
            .map_err(|e| format!("link audio: {e:?}"))?;
        if let Some(id) = audio_block.lock().ok().and_then(|mut g| g.take()) {
            apad.remove_probe(id);
        }
    }
    Ok(())
}
