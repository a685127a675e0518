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
//! Colour: every branch fixes the same colorimetry in its caps after scaling (the source's, or
//! BT.709 for an RGB/untagged one: [`super::colorimetry`]), so no rendition gets a colour-matrix
//! conversion and the encoder tags each SPS VUI with the same value.
//!
//! Alignment (TS): every splitmuxsink asks its own encoder for a keyframe at the same running times
//! (`send-keyframe-requests`, multiples of the segment duration from the shared start), all
//! encoders see the same frames from one tee, so segment N of every rendition starts on the same
//! frame with an IDR. The source's GOP does not matter: it is decoded and re-encoded.

use super::{PlannedRendition, Templates, TranscodeError, plan_ladder};
use crate::config::{LadderConfig, SegmentFormat};
use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Capacity of the pipeline → session event channel. Fragment messages arrive about once per
/// segment per rendition, so this is minutes of slack; GStreamer's own bus queues behind it.
const EVENT_CHANNEL_CAPACITY: usize = 256;

const MSG_LADDER: &str = "zoomate-ladder-planned";
const MSG_VIDEO_CODEC: &str = "zoomate-video-codec";
const MSG_AUDIO_CODEC: &str = "zoomate-audio-codec";
const MSG_LADDER_FAILED: &str = "zoomate-ladder-failed";

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
    /// Live: timestamps (fMP4 `tfdt`) on the wall clock. VOD: from zero.
    pub wall_clock_timestamps: bool,
    /// RTP sources: guard every RTP socket, counting what it drops here.
    pub rtp_guard: Option<Arc<crate::ingest::rtp::RtpCounters>>,
}

/// Name of the separate audio rendition of CMAF output.
pub const AUDIO_RENDITION: &str = "audio";

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
}

/// A running pipeline. Dropping it tears the pipeline down.
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
        std::fs::create_dir_all(&spec.staging_dir)
            .map_err(|e| build_err(format!("staging dir: {e}")))?;
        if let Some(counters) = &spec.rtp_guard {
            crate::ingest::rtp::guard_udp_sources(&pipeline, counters.clone());
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
        let weak_pipeline = pipeline.downgrade();
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
                    SourceVideo {
                        width: w as u32,
                        height: h as u32,
                        colorimetry: super::colorimetry::ladder_colorimetry(source),
                    },
                ),
                _ => Err(format!("video caps without a size: {}", caps.caps())),
            };
            if let Err(reason) = result {
                let s = gst::Structure::builder(MSG_LADDER_FAILED)
                    .field("reason", reason)
                    .build();
                let _ = pipeline
                    .post_message(gst::message::Application::builder(s).src(&pipeline).build());
            }
            gst::PadProbeReturn::Remove
        });

        let bus = pipeline
            .bus()
            .ok_or_else(|| build_err("pipeline has no bus".into()))?;
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let stream_name = pipeline.name().to_string();
        tokio::spawn(bridge_bus(bus, tx, stream_name));

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| TranscodeError::Start {
                stream: pipeline.name().to_string(),
                reason: format!("{e} (see the error on the bus log line)"),
            })?;
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

    /// The `appsrc name=src` of a push source (RTMP), if the source has one.
    pub fn appsrc(&self) -> Option<gst_app::AppSrc> {
        self.appsrc.clone()
    }

    /// Asks the pipeline to finish: open segments are closed and reported before `Eos`.
    pub fn send_eos(&self) {
        match &self.appsrc {
            Some(src) => {
                let _ = src.end_of_stream();
            }
            None => {
                self.pipeline.send_event(gst::event::Eos::new());
            }
        }
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
        let _ = self.pipeline.set_state(gst::State::Null);
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
    let anchor_ns = wall_ns.saturating_sub(running_ns);
    let tfdt_offset_ns = if spec.wall_clock_timestamps {
        anchor_ns as i64
    } else {
        0
    };
    let description = ladder_description(
        spec,
        &planned,
        asrc_pad.is_some(),
        tfdt_offset_ns,
        &colorimetry,
    )?;
    let bin = gst::parse::bin_from_description(&description, false)
        .map_err(|e| format!("ladder: {e}"))?;
    if cmaf {
        for name in &outputs {
            let sink = bin
                .by_name(&format!("mux_{name}"))
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or(format!("ladder has no appsink mux_{name}"))?;
            super::fragment_writer::attach(&sink, spec.staging_dir.join(name));
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
    arm_codec_probes(&bin, &planned, cmaf);
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    vsrc_pad
        .link(&vsink)
        .map_err(|e| format!("link video: {e:?}"))?;
    if let (Some(apad), Some(asink)) = (asrc_pad, asink) {
        apad.link(&asink)
            .map_err(|e| format!("link audio: {e:?}"))?;
        if let Some(id) = audio_block.lock().ok().and_then(|mut g| g.take()) {
            apad.remove_probe(id);
        }
    }
    let names: Vec<String> = planned
        .iter()
        .map(|r| {
            format!(
                "{}:{}x{}:{}",
                r.name, r.width, r.height, r.video_bitrate_kbps
            )
        })
        .collect();
    let s = gst::Structure::builder(MSG_LADDER)
        .field("renditions", names.join(","))
        .field("source-width", source_width)
        .field("source-height", source_height)
        .field("anchor-wall-ms", (anchor_ns / 1_000_000) as i64)
        .field("separate-audio", separate_audio)
        .build();
    let _ = pipeline.post_message(gst::message::Application::builder(s).src(pipeline).build());
    Ok(())
}

/// The ladder bin's gst-launch description. Pure apart from template loading.
pub fn ladder_description(
    spec: &LadderSpec,
    planned: &[PlannedRendition],
    with_audio: bool,
    tfdt_offset_ns: i64,
    colorimetry: &gst_video::VideoColorimetry,
) -> Result<String, String> {
    let cmaf = spec.format == SegmentFormat::Cmaf;
    let l = &spec.ladder;
    let fps = l.frame_rate;
    let seg_ns = l.segment_duration_ms * 1_000_000;
    let frames_per_segment = (l.segment_duration_ms * fps as u64).div_ceil(1000).max(1);
    let mut d = String::new();
    // Deep enough queues to ride out an encoder hiccup; bounded in time, not bytes.
    d.push_str(&format!(
        "queue name=vin max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! videorate ! video/x-raw,framerate={fps}/1 ! tee name=vt\n"
    ));
    if with_audio {
        let audio = spec
            .templates
            .render(
                &format!("audio-{}", l.audio_encoder),
                &[
                    ("bitrate_bps", (l.audio_bitrate_kbps * 1000).to_string()),
                    ("bitrate_kbps", l.audio_bitrate_kbps.to_string()),
                ],
            )
            .map_err(|e| e.to_string())?;
        d.push_str(&format!(
            "queue name=ain max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! {} ! aacparse name=aparse ! {}\n",
            audio.trim(),
            if cmaf { cmaf_tail(AUDIO_RENDITION, seg_ns, tfdt_offset_ns) } else { "tee name=at".to_string() }
        ));
    }
    for r in planned {
        let video = spec
            .templates
            .render(
                &format!("video-{}", l.video_encoder),
                &[
                    ("bitrate_kbps", r.video_bitrate_kbps.to_string()),
                    (
                        "bitrate_bps",
                        (r.video_bitrate_kbps as u64 * 1000).to_string(),
                    ),
                    ("gop_frames", (frames_per_segment * 2).to_string()),
                    ("fps", fps.to_string()),
                    ("width", r.width.to_string()),
                    ("height", r.height.to_string()),
                    ("name", r.name.clone()),
                    ("colorimetry", colorimetry.to_string()),
                ],
            )
            .map_err(|e| e.to_string())?;
        // The same colorimetry in every branch, fixed after scaling: left open, the converters
        // would pick BT.601 for SD sizes and convert the colour matrix (see `colorimetry`).
        let scaled = format!(
            "vt. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! videoscale ! videoconvert ! video/x-raw,width={w},height={h},format=I420,pixel-aspect-ratio=1/1,colorimetry={colorimetry} ! {video} ! h264parse name=parse_{name}",
            name = r.name,
            w = r.width,
            h = r.height,
            video = video.trim(),
        );
        if cmaf {
            d.push_str(&format!(
                "{scaled} ! video/x-h264,stream-format=avc,alignment=au ! {}\n",
                cmaf_tail(&r.name, seg_ns, tfdt_offset_ns)
            ));
            continue;
        }
        let location = spec.staging_dir.join(&r.name).join("%08d.ts");
        let location = location.to_str().ok_or("staging path is not UTF-8")?;
        d.push_str(&format!(
            "splitmuxsink name=mux_{name} muxer-factory=mpegtsmux max-size-time={seg_ns} send-keyframe-requests=true location=\"{location}\"\n\
             {scaled} config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! mux_{name}.video\n",
            name = r.name,
        ));
        if with_audio {
            d.push_str(&format!("at. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! mux_{}.audio_%u\n", r.name));
        }
    }
    Ok(d)
}

/// `cmafmux ! appsink` for one rendition. The appsink never syncs to the clock (a file writer)
/// and never blocks preroll (the ladder is added to an already playing pipeline).
fn cmaf_tail(name: &str, seg_ns: u64, tfdt_offset_ns: i64) -> String {
    format!(
        "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! cmafmux name=cmaf_{name} fragment-duration={seg_ns} decode-time-offset={tfdt_offset_ns} ! appsink name=mux_{name} sync=false async=false emit-signals=false max-buffers=64"
    )
}

/// Reads CODECS from the real encoded stream: SPS of each rendition, AudioSpecificConfig of AAC.
/// CMAF branches carry `stream-format=avc`: the SPS fields are in the caps' avcC.
fn arm_codec_probes(bin: &gst::Bin, planned: &[PlannedRendition], avcc: bool) {
    for r in planned {
        if avcc {
            let Some(pad) = bin
                .by_name(&format!("cmaf_{}", r.name))
                .and_then(|e| e.static_pad("sink"))
            else {
                continue;
            };
            let rendition = r.name.clone();
            pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
                let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view()) else {
                    return gst::PadProbeReturn::Ok;
                };
                let codec = caps
                    .caps()
                    .structure(0)
                    .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
                    .and_then(|b| {
                        b.map_readable().ok().and_then(|m| {
                            crate::packaging::codecs::h264_codec_from_avcc(m.as_slice())
                        })
                    });
                let Some(codec) = codec else {
                    return gst::PadProbeReturn::Ok;
                };
                let s = gst::Structure::builder(MSG_VIDEO_CODEC)
                    .field("rendition", rendition.as_str())
                    .field("codec", codec)
                    .build();
                let _ = pad.post_message(gst::message::Application::builder(s).src(pad).build());
                gst::PadProbeReturn::Remove
            });
            continue;
        }
        let Some(pad) = bin
            .by_name(&format!("parse_{}", r.name))
            .and_then(|e| e.static_pad("src"))
        else {
            continue;
        };
        let rendition = r.name.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let Ok(map) = buffer.map_readable() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(codec) = crate::packaging::codecs::h264_codec_from_annexb(map.as_slice())
            else {
                return gst::PadProbeReturn::Ok; // not a keyframe with SPS yet
            };
            let s = gst::Structure::builder(MSG_VIDEO_CODEC)
                .field("rendition", rendition.as_str())
                .field("codec", codec)
                .build();
            let _ = pad.post_message(gst::message::Application::builder(s).src(pad).build());
            gst::PadProbeReturn::Remove
        });
    }
    if let Some(pad) = bin.by_name("aparse").and_then(|e| e.static_pad("src")) {
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |pad, info| {
            let Some(event) = info.event() else {
                return gst::PadProbeReturn::Ok;
            };
            let gst::EventView::Caps(caps) = event.view() else {
                return gst::PadProbeReturn::Ok;
            };
            let codec = caps
                .caps()
                .structure(0)
                .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
                .and_then(|b| {
                    b.map_readable().ok().and_then(|m| {
                        crate::packaging::codecs::aac_codec_from_audio_specific_config(m.as_slice())
                    })
                });
            if let Some(codec) = codec {
                let s = gst::Structure::builder(MSG_AUDIO_CODEC)
                    .field("codec", codec)
                    .build();
                let _ = pad.post_message(gst::message::Application::builder(s).src(pad).build());
            }
            gst::PadProbeReturn::Remove
        });
    }
}

trait PostOnPad {
    fn post_message(&self, msg: gst::Message) -> bool;
}

impl PostOnPad for gst::Pad {
    fn post_message(&self, msg: gst::Message) -> bool {
        self.parent_element()
            .map(|e| e.post_message(msg).is_ok())
            .unwrap_or(false)
    }
}

/// Forwards the GStreamer bus into the bounded event channel until EOS, error or receiver drop.
async fn bridge_bus(bus: gst::Bus, tx: mpsc::Sender<PipelineEvent>, name: String) {
    use futures::StreamExt;
    let mut messages = bus.stream();
    let mut opened: std::collections::HashMap<String, u64> = Default::default();
    while let Some(msg) = messages.next().await {
        let event = match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                let rendition = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                let Some(rendition) = rendition.strip_prefix("mux_").map(str::to_string) else {
                    continue;
                };
                let rt = s.get::<u64>("running-time").unwrap_or(0);
                match s.name().as_str() {
                    "splitmuxsink-fragment-opened" => {
                        opened.insert(rendition.clone(), rt);
                        PipelineEvent::FragmentOpened {
                            rendition,
                            running_time_ns: rt,
                        }
                    }
                    "splitmuxsink-fragment-closed" => {
                        let Ok(location) = s.get::<String>("location") else {
                            continue;
                        };
                        let exact_end = s.get::<bool>("exact-end").unwrap_or(false);
                        PipelineEvent::FragmentClosed {
                            rendition,
                            location: PathBuf::from(location),
                            running_time_ns: rt,
                            exact_end,
                        }
                    }
                    super::fragment_writer::MSG_INIT_SEGMENT => {
                        let Ok(location) = s.get::<String>("location") else {
                            continue;
                        };
                        PipelineEvent::InitSegment {
                            rendition,
                            location: PathBuf::from(location),
                        }
                    }
                    _ => continue,
                }
            }
            gst::MessageView::Application(a) => {
                let Some(s) = a.structure() else { continue };
                match s.name().as_str() {
                    MSG_LADDER => match parse_ladder_message(s) {
                        Some(ev) => ev,
                        None => PipelineEvent::Failed("malformed ladder message".into()),
                    },
                    MSG_VIDEO_CODEC => PipelineEvent::VideoCodec {
                        rendition: s.get::<String>("rendition").unwrap_or_default(),
                        codec: s.get::<String>("codec").unwrap_or_default(),
                    },
                    MSG_AUDIO_CODEC => PipelineEvent::AudioCodec {
                        codec: s.get::<String>("codec").unwrap_or_default(),
                    },
                    MSG_LADDER_FAILED => PipelineEvent::Failed(format!(
                        "ladder: {}",
                        s.get::<String>("reason").unwrap_or_default()
                    )),
                    _ => continue,
                }
            }
            gst::MessageView::Eos(_) => PipelineEvent::Eos,
            gst::MessageView::Error(e) => {
                let src = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                PipelineEvent::Failed(format!(
                    "{src}: {} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                ))
            }
            gst::MessageView::Warning(w) => {
                tracing::warn!(pipeline = %name, warning = %w.error(), "GStreamer warning");
                continue;
            }
            _ => continue,
        };
        let terminal = matches!(event, PipelineEvent::Eos | PipelineEvent::Failed(_));
        if tx.send(event).await.is_err() || terminal {
            break;
        }
    }
    let _ = opened;
}

fn parse_ladder_message(s: &gst::StructureRef) -> Option<PipelineEvent> {
    let list = s.get::<String>("renditions").ok()?;
    let mut renditions = Vec::new();
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let mut parts = item.split(':');
        let name = parts.next()?.to_string();
        let (w, h) = parts.next()?.split_once('x')?;
        let bitrate = parts.next()?.parse().ok()?;
        renditions.push(PlannedRendition {
            name,
            width: w.parse().ok()?,
            height: h.parse().ok()?,
            video_bitrate_kbps: bitrate,
        });
    }
    Some(PipelineEvent::LadderPlanned {
        renditions,
        source_width: s.get::<u32>("source-width").ok()?,
        source_height: s.get::<u32>("source-height").ok()?,
        anchor_wall_ms: s.get::<i64>("anchor-wall-ms").ok()?,
        separate_audio: s.get::<bool>("separate-audio").ok()?,
    })
}

/// Staging directory for one session of a stream.
pub fn staging_dir(stream_dir: &Path, session_id: u64) -> PathBuf {
    stream_dir.join(".staging").join(session_id.to_string())
}
