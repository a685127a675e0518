//! The ladder bin's gst-launch description: text from the `pipelines/` templates plus the
//! fixed glue (tee, queues, scaling, colorimetry, muxers). Pure apart from template loading.

use super::{AUDIO_RENDITION, LadderSpec, PlannedRendition};
use crate::config::SegmentFormat;

/// How much raw video each of the ladder's video queues may hold: the input queue before the
/// tee and the queue at the head of every rendition branch (the branch's encoder thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawVideoQueue {
    /// Live sources arrive in real time: 3 s per queue lets a branch ride out an encoder
    /// hiccup (a slow keyframe, a CPU spike) without pushing back on the source, which would
    /// stall the publisher or drop packets. The queues stay near empty while encoders keep up.
    Live,
    /// A file is read as fast as the encoders allow, so every queue is always full and a time
    /// bound only sets how much memory that takes: 3 s is 90 raw 720p I420 frames (~125 MiB)
    /// per queue. Back-pressure costs a file nothing, so a few frames (enough to keep every
    /// branch's encoder thread fed) is all VOD needs.
    Frames(u32),
}

/// Raw frames per video queue for a file source (VOD): enough for the encoder threads to
/// overlap, small enough that queued frames are not most of the job's memory.
pub const DEFAULT_VOD_QUEUE_FRAMES: u32 = 2;

/// How every rendition branch scales the source (`videoscale method=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleMethod {
    /// videoscale's default 2-tap bilinear: the cheapest. Live keeps it, for CPU headroom.
    Bilinear,
    /// Catmull-Rom cubic, close to ffmpeg's default (bicubic) scaler. 2-tap bilinear aliases on
    /// the 2/3 and 1/2 downscales of a 720p ladder: against the source scaled by ffmpeg, 480p and
    /// 360p read 42.6 / 43.7 dB PSNR bilinear and 45.8 / 46.0 dB cubic (ffmpeg's own ladder:
    /// 45.7 / 46.4). It costs more CPU in the scaled branches (GStreamer's cubic resampler is
    /// about twice the bilinear one), which a file job, not bound to real time, can spend.
    CatmullRom,
}

impl ScaleMethod {
    fn gst_name(self) -> &'static str {
        match self {
            ScaleMethod::Bilinear => "bilinear",
            ScaleMethod::CatmullRom => "catrom",
        }
    }
}

impl RawVideoQueue {
    /// The queue element's limit properties.
    fn limits(self) -> String {
        match self {
            RawVideoQueue::Live => {
                "max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000".to_string()
            }
            RawVideoQueue::Frames(n) => {
                format!(
                    "max-size-buffers={} max-size-bytes=0 max-size-time=0",
                    n.max(1)
                )
            }
        }
    }
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
    let chunk_ns = spec.part_duration_ms.map(|ms| ms * 1_000_000);
    let frames_per_segment = (l.segment_duration_ms * fps as u64).div_ceil(1000).max(1);
    // IDRs are forced at every segment boundary; the encoder's own interval is the maximum
    // between them: twice a segment (never reached), or LL-HLS's keyframe interval, so parts
    // players can start from come more often than segments.
    let gop_frames = match spec.keyframe_interval_ms {
        Some(ms) => (ms * fps as u64).div_ceil(1000).max(1),
        None => frames_per_segment * 2,
    };
    let mut d = String::new();
    let vq = spec.raw_video_queue.limits();
    // Audio queues stay time-bound in every mode: compressed or 48 kHz audio is small, and each
    // muxer needs audio up to the end of a GOP before it closes a segment.
    // Wall-clock timing stamps the first frame far from the segment's start: videorate must
    // begin there, not fill the span before it with copies.
    let skip = if spec.timing == crate::config::StreamTiming::Wallclock {
        " skip-to-first=true"
    } else {
        ""
    };
    d.push_str(&format!(
        "queue name=vin {vq} ! videorate{skip} ! video/x-raw,framerate={fps}/1 ! tee name=vt\n"
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
            if cmaf { cmaf_tail(AUDIO_RENDITION, seg_ns, chunk_ns.map(audio_chunk_ns), tfdt_offset_ns) } else { "tee name=at".to_string() }
        ));
    }
    let mut tap_branch = String::new();
    for (index, r) in planned.iter().enumerate() {
        // WHEP: the first (top) rendition's H.264 is also tapped for viewers, as byte-stream
        // access units with SPS/PPS before every IDR (a viewer joins at any keyframe).
        let tap = if index == 0 && spec.whep_feed.is_some() {
            tap_branch.push_str("whep_tee. ! queue leaky=downstream max-size-buffers=60 max-size-bytes=0 max-size-time=0 ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=whep_tap sync=false async=false emit-signals=false max-buffers=8 drop=true\n");
            " ! tee name=whep_tee"
        } else {
            ""
        };
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
                    ("gop_frames", gop_frames.to_string()),
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
            "vt. ! queue {vq} ! videoscale method={scale} ! videoconvert ! video/x-raw,width={w},height={h},format=I420,pixel-aspect-ratio=1/1,colorimetry={colorimetry} ! {video} ! h264parse name=parse_{name}",
            name = r.name,
            w = r.width,
            h = r.height,
            scale = spec.scale_method.gst_name(),
            video = video.trim(),
        );
        if cmaf {
            d.push_str(&format!(
                "{scaled}{tap} ! video/x-h264,stream-format=avc,alignment=au ! {}\n",
                cmaf_tail(&r.name, seg_ns, chunk_ns, tfdt_offset_ns)
            ));
            continue;
        }
        let location = spec.staging_dir.join(&r.name).join("%08d.ts");
        let location = location.to_str().ok_or("staging path is not UTF-8")?;
        d.push_str(&format!(
            "splitmuxsink name=mux_{name} muxer-factory=mpegtsmux max-size-time={seg_ns} send-keyframe-requests=true location=\"{location}\"\n\
             {scaled} config-interval=-1{tap} ! video/x-h264,stream-format=byte-stream,alignment=au ! mux_{name}.video\n",
            name = r.name,
        ));
        if with_audio {
            d.push_str(&format!("at. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! mux_{}.audio_%u\n", r.name));
        }
    }
    d.push_str(&tap_branch);
    Ok(d)
}

/// `cmafmux ! appsink` for one rendition. The appsink never syncs to the clock (a file writer)
/// and never blocks preroll (the ladder is added to an already playing pipeline).
/// One AAC frame at the ladder's 48 kHz: 1024 samples.
const AAC_FRAME_NS: u64 = 1024 * 1_000_000_000 / 48_000;

/// Audio chunks: cmafmux ends a chunk on a frame boundary at or after its chunk duration, so an
/// AAC chunk can run up to one frame over (24 frames = 512 ms for a 500 ms part). Asking one
/// frame less keeps every audio part within the stream's PART-TARGET.
fn audio_chunk_ns(part_ns: u64) -> u64 {
    part_ns.saturating_sub(AAC_FRAME_NS).max(AAC_FRAME_NS)
}

/// With `chunk_ns`, every fragment is sent in chunks of that duration (LL-HLS parts).
pub fn cmaf_tail(name: &str, seg_ns: u64, chunk_ns: Option<u64>, tfdt_offset_ns: i64) -> String {
    let chunk = chunk_ns
        .map(|ns| format!(" chunk-duration={ns}"))
        .unwrap_or_default();
    format!(
        "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! cmafmux name=cmaf_{name} fragment-duration={seg_ns}{chunk} decode-time-offset={tfdt_offset_ns} ! appsink name=mux_{name} sync=false async=false emit-signals=false max-buffers=64"
    )
}
