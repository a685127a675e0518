//! VOD publishing: a file in, an asset out (`{vod.dir}/{asset}/master.m3u8`,
//! `{rendition}/index.m3u8`, `{rendition}/{n}.ts`), with the live path's aligned ladder.
//! `cmaf` assets have `{rendition}/init.mp4` + `{n}.m4s`, audio as its own `audio` rendition,
//! and a static DASH `manifest.mpd` beside the HLS master: one set of files for both.
//!
//! The asset is built in a hidden directory beside its final place and renamed into place only
//! when complete: a failed or interrupted job leaves nothing half-written.

use crate::config::{Config, SegmentFormat};
use crate::layout;
use crate::packaging::dash::{
    DashAdaptation, DashManifest, DashRepresentation, DashSegment, MediaKind, Presentation,
    render_mpd,
};
use crate::packaging::{
    AudioMedia, BandwidthMeter, MediaPlaylist, PlaylistKind, Segment, VariantStream,
    render_multivariant_with_audio,
};
use crate::stream::assembler::AssembledSegment;
use crate::stream::timeline::{AUDIO_CHANNELS, AUDIO_SAMPLE_RATE};
use crate::transcode::{
    AUDIO_RENDITION, DEFAULT_VOD_QUEUE_FRAMES, LadderSpec, LivePipeline, PipelineEvent,
    PlannedRendition, RawVideoQueue, ScaleMethod, Templates,
};
use gst_pbutils::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// No pipeline event for this long means the job is stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A VOD pipeline's start and teardown: past this it is abandoned on its own thread.
const VOD_STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum VodError {
    #[error("{path}: no such file")]
    Missing { path: PathBuf },
    #[error("{path}: not a media file GStreamer can read ({reason})")]
    NotMedia { path: PathBuf, reason: String },
    #[error("{path}: has no video stream")]
    NoVideo { path: PathBuf },
    #[error("{path}: transcoding failed: {reason}")]
    Transcode { path: PathBuf, reason: String },
    #[error("invalid asset name {0:?}: use 1-64 characters of A-Z a-z 0-9 _ -")]
    BadName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the Discoverer sees in a file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MediaInfo {
    pub path: PathBuf,
    pub container: Option<String>,
    pub duration_ms: u64,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub video_codec: Option<String>,
    pub video_bitrate_bps: u32,
    pub audio_codec: Option<String>,
    pub audio_channels: u32,
    pub audio_sample_rate: u32,
    pub audio_bitrate_bps: u32,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VodError + '_ {
    move |source| VodError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Probes `path` with gstreamer-pbutils' Discoverer. Blocking.
pub fn probe(path: &Path) -> Result<MediaInfo, VodError> {
    if !path.is_file() {
        return Err(VodError::Missing {
            path: path.to_path_buf(),
        });
    }
    crate::transcode::init().map_err(|e| VodError::NotMedia {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let abs = std::fs::canonicalize(path).map_err(io(path))?;
    let uri = gst::glib::filename_to_uri(&abs, None).map_err(|e| VodError::NotMedia {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let discoverer =
        gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(15)).map_err(|e| {
            VodError::NotMedia {
                path: path.into(),
                reason: e.to_string(),
            }
        })?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| VodError::NotMedia {
            path: path.into(),
            reason: e.to_string(),
        })?;
    if info.result() != gst_pbutils::DiscovererResult::Ok {
        return Err(VodError::NotMedia {
            path: path.into(),
            reason: format!("{:?}", info.result()),
        });
    }
    let video = info
        .video_streams()
        .into_iter()
        .next()
        .ok_or_else(|| VodError::NoVideo { path: path.into() })?;
    let audio = info.audio_streams().into_iter().next();
    let caps_name = |s: &gst_pbutils::DiscovererStreamInfo| {
        s.caps()
            .and_then(|c| c.structure(0).map(|st| st.name().to_string()))
    };
    let fr = video.framerate();
    Ok(MediaInfo {
        path: path.to_path_buf(),
        container: info.stream_info().and_then(|s| caps_name(&s)),
        duration_ms: info.duration().map(|d| d.mseconds()).unwrap_or(0),
        width: video.width(),
        height: video.height(),
        frame_rate: if fr.denom() > 0 {
            fr.numer() as f64 / fr.denom() as f64
        } else {
            0.0
        },
        video_codec: caps_name(video.upcast_ref()),
        video_bitrate_bps: video.bitrate(),
        audio_codec: audio.as_ref().and_then(|a| caps_name(a.upcast_ref())),
        audio_channels: audio.as_ref().map(|a| a.channels()).unwrap_or(0),
        audio_sample_rate: audio.as_ref().map(|a| a.sample_rate()).unwrap_or(0),
        audio_bitrate_bps: audio.as_ref().map(|a| a.bitrate()).unwrap_or(0),
    })
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct VodSummary {
    pub asset_dir: PathBuf,
    pub renditions: Vec<String>,
    pub segments: usize,
    pub duration_ms: u64,
    pub elapsed: Duration,
}

/// Reports progress: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total_ms: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(total_ms: u64) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total_ms.max(1));
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg} ETA {eta}")
            {
                b.set_style(style);
            }
            b
        });
        Progress {
            bar,
            total_ms: total_ms.max(1),
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, done_ms: u64) {
        let speed = done_ms as f64 / 1000.0 / self.started.elapsed().as_secs_f64().max(0.001);
        match &self.bar {
            Some(b) => {
                b.set_position(done_ms.min(self.total_ms));
                b.set_message(format!("{speed:.2}x realtime"));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(1) => {
                self.last_line = Instant::now();
                let pct = (done_ms * 100 / self.total_ms).min(100);
                let eta = if speed > 0.0 {
                    (self.total_ms.saturating_sub(done_ms)) as f64 / 1000.0 / speed
                } else {
                    0.0
                };
                eprintln!("progress: {pct}% ({speed:.2}x realtime, ETA {eta:.0}s)");
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Publishes `input` as asset `name` under `out_dir`.
pub async fn publish(
    config: &Config,
    input: &Path,
    out_dir: &Path,
    name: &str,
    format: SegmentFormat,
) -> Result<VodSummary, VodError> {
    if !crate::config::is_valid_name(name) {
        return Err(VodError::BadName(name.to_string()));
    }
    let input_owned = input.to_path_buf();
    let info = tokio::task::spawn_blocking(move || probe(&input_owned))
        .await
        .map_err(|e| VodError::NotMedia {
            path: input.into(),
            reason: e.to_string(),
        })??;
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let work = out_dir.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let result = build(config, &info, &work, format).await;
    match result {
        Ok((renditions, segments)) => {
            let final_dir = out_dir.join(name);
            if final_dir.exists() {
                let old = out_dir.join(format!(".{name}.old-{}", std::process::id()));
                std::fs::rename(&final_dir, &old).map_err(io(&final_dir))?;
                std::fs::rename(&work, &final_dir).map_err(io(&final_dir))?;
                let _ = std::fs::remove_dir_all(&old);
            } else {
                std::fs::rename(&work, &final_dir).map_err(io(&final_dir))?;
            }
            Ok(VodSummary {
                asset_dir: final_dir,
                renditions,
                segments,
                duration_ms: info.duration_ms,
                elapsed: Duration::ZERO,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            Err(e)
        }
    }
}

/// Transcodes into `work` and writes the playlists; returns (renditions, segment count).
async fn build(
    config: &Config,
    info: &MediaInfo,
    work: &Path,
    format: SegmentFormat,
) -> Result<(Vec<String>, usize), VodError> {
    let path = info.path.clone();
    let fail = |reason: String| VodError::Transcode {
        path: path.clone(),
        reason,
    };
    let templates = Templates::new(&config.pipelines.dir);
    let location = std::fs::canonicalize(&info.path).map_err(io(&info.path))?;
    let location = location
        .to_str()
        .ok_or_else(|| fail("path is not UTF-8".into()))?
        .replace('"', "\\\"");
    let template = if info.audio_codec.is_some() {
        "source-file"
    } else {
        "source-file-video-only"
    };
    let source = templates
        .render(template, &[("location", location)])
        .map_err(|e| fail(e.to_string()))?;
    let spec = LadderSpec {
        part_duration_ms: None, // VOD: whole segments only
        keyframe_interval_ms: None,
        stream: "vod".into(),
        source_description: source,
        ladder: config.ladder.clone(),
        templates,
        staging_dir: work.join(".staging"),
        format,
        wall_clock_timestamps: false,
        timing: crate::config::StreamTiming::Session,
        // A file source runs ahead of the encoders: time-deep queues would only fill memory.
        raw_video_queue: RawVideoQueue::Frames(DEFAULT_VOD_QUEUE_FRAMES),
        // Quality equal to ffmpeg's bicubic ladder; a file job can spend the extra CPU.
        scale_method: ScaleMethod::CatmullRom,
        rtp_guard: None,
        srt_listener: None,
        whep_feed: None,
    };
    let (pipeline, mut events) =
        crate::transcode::run_bounded("start", VOD_STATE_CHANGE_TIMEOUT, move || {
            LivePipeline::start(spec)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
    let frame_ns = 1_000_000_000 / config.ladder.frame_rate.max(1) as u64;
    let mut planned = Vec::new();
    let mut separate_audio = false;
    let mut inits: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut video_codecs: BTreeMap<String, String> = BTreeMap::new();
    let mut audio_codec = None;
    let mut assembler = crate::stream::assembler::SegmentAssembler::default();
    let mut fragments: BTreeMap<String, Vec<AssembledSegment>> = BTreeMap::new();
    let mut progress = Progress::new(info.duration_ms);
    let outcome = loop {
        let ev = match tokio::time::timeout(STALL_TIMEOUT, events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => break Err(fail("pipeline ended without EOS".into())),
            Err(_) => break Err(fail(format!("no progress for {STALL_TIMEOUT:?}"))),
        };
        match ev {
            // VOD asks for no parts; a part file would only be left in staging.
            PipelineEvent::PartWritten { location, .. } => {
                let _ = std::fs::remove_file(location);
            }
            PipelineEvent::LadderPlanned {
                renditions,
                separate_audio: audio,
                ..
            } => {
                planned = renditions;
                separate_audio = audio;
            }
            PipelineEvent::InitSegment {
                rendition,
                location,
            } => {
                inits.insert(rendition, location);
            }
            PipelineEvent::VideoCodec { rendition, codec } => {
                video_codecs.insert(rendition, codec);
            }
            PipelineEvent::AudioCodec { codec } => audio_codec = Some(codec),
            PipelineEvent::FragmentOpened {
                rendition,
                running_time_ns,
            } => {
                if let Some(done) = assembler.opened(&rendition, running_time_ns) {
                    fragments.entry(rendition).or_default().push(done);
                }
            }
            PipelineEvent::FragmentClosed {
                rendition,
                location,
                running_time_ns,
                exact_end,
            } => {
                progress.update(running_time_ns / 1_000_000);
                if let Some(done) =
                    assembler.closed(&rendition, location, running_time_ns, exact_end)
                {
                    fragments.entry(rendition).or_default().push(done);
                }
            }
            PipelineEvent::Eos => break Ok(()),
            PipelineEvent::Failed(reason) | PipelineEvent::StoreFull(reason) => {
                break Err(fail(reason));
            }
        }
    };
    progress.finish();
    for done in assembler.finish(frame_ns) {
        fragments
            .entry(done.rendition.clone())
            .or_default()
            .push(done);
    }
    // Release any streaming thread waiting for room in the event channel first: teardown
    // joins those threads.
    drop(events);
    if let Err(e) =
        crate::transcode::run_bounded("teardown", VOD_STATE_CHANGE_TIMEOUT, move || drop(pipeline))
            .await
    {
        tracing::warn!(error = %e, "VOD pipeline teardown");
    }
    outcome?;
    if planned.is_empty() || fragments.is_empty() {
        return Err(fail(
            "no segments were produced (truncated or corrupt file?)".into(),
        ));
    }
    // Playlists: VOD type, ENDLIST, every segment kept.
    let target_s = config.ladder.segment_duration_ms.div_ceil(1000);
    let ext = format.segment_extension();
    let cmaf = format == SegmentFormat::Cmaf;
    let mut outputs: Vec<(String, Option<&PlannedRendition>)> =
        planned.iter().map(|r| (r.name.clone(), Some(r))).collect();
    if separate_audio {
        outputs.push((AUDIO_RENDITION.to_string(), None));
    }
    let first_start_ns = fragments
        .values()
        .filter_map(|f| f.first())
        .map(|f| f.start_ns)
        .min()
        .unwrap_or(0);
    let mut variants = Vec::new();
    let mut audio_media = None;
    let mut dash_video = Vec::new();
    let mut dash_audio = Vec::new();
    let mut count = 0;
    for (name, rendition) in &outputs {
        let Some(frags) = fragments.get(name) else {
            continue;
        };
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut playlist = MediaPlaylist::new(PlaylistKind::Vod, target_s, 0);
        if cmaf {
            let staged = inits
                .get(name)
                .ok_or_else(|| fail(format!("no init segment for {name}")))?;
            let public = dir.join(layout::VOD_INIT_SEGMENT);
            crate::store::promote(staged, &public).map_err(io(&public))?;
            playlist = playlist.with_init_segment(layout::VOD_INIT_SEGMENT.into());
        }
        let estimate = rendition
            .map(|r| r.video_bitrate_kbps)
            .unwrap_or(config.ladder.audio_bitrate_kbps) as u64
            * 1000;
        let mut meter = BandwidthMeter::with_estimate(estimate);
        let mut dash_segments = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let public = dir.join(format!("{i}.{ext}"));
            let bytes = crate::store::promote(&f.location, &public).map_err(io(&public))?;
            // Milliseconds between rounded endpoints: consecutive segments tile the timeline
            // exactly (a DASH SegmentTimeline then needs no restated `t`).
            let start_ms = f.start_ns.saturating_sub(first_start_ns) / 1_000_000;
            let duration_ms =
                (f.end_ns.saturating_sub(first_start_ns) / 1_000_000).saturating_sub(start_ms);
            meter.record(bytes, duration_ms);
            playlist.push(Segment {
                sequence: 0,
                duration_ms,
                uri: format!("{i}.{ext}"),
                byte_size: bytes,
                program_date_time_ms: 0,
                discontinuity: false,
                init_uri: None,
                parts: Vec::new(),
            });
            dash_segments.push(DashSegment {
                number: i as u64,
                start_ms: start_ms as i64,
                duration_ms,
                init: format!("{name}/init.mp4"),
            });
            count += 1;
        }
        crate::store::write_atomic(
            &dir.join(layout::MEDIA_PLAYLIST),
            playlist.render().as_bytes(),
        )
        .map_err(io(&dir))?;
        let mut dash_rep = DashRepresentation {
            id: name.clone(),
            bandwidth_bps: meter.peak_bps(),
            codecs: String::new(),
            width: 0,
            height: 0,
            frame_rate: config.ladder.frame_rate,
            audio_sampling_rate: AUDIO_SAMPLE_RATE,
            audio_channels: AUDIO_CHANNELS,
            media_template: format!("{name}/$Number$.m4s"),
            segments: dash_segments,
        };
        match rendition {
            Some(r) => {
                let video = video_codecs
                    .get(&r.name)
                    .cloned()
                    .unwrap_or_else(|| "avc1.640028".into());
                variants.push(VariantStream {
                    uri: layout::rendition_playlist(&r.name),
                    bandwidth_bps: meter.peak_bps(),
                    average_bandwidth_bps: meter.average_bps(),
                    codecs: match (&audio_codec, separate_audio) {
                        (Some(a), false) => format!("{video},{a}"),
                        _ => video.clone(),
                    },
                    width: r.width,
                    height: r.height,
                    frame_rate: config.ladder.frame_rate as f64,
                });
                dash_rep.codecs = video;
                (dash_rep.width, dash_rep.height) = (r.width, r.height);
                dash_video.push(dash_rep);
            }
            None => {
                let codec = audio_codec.clone().unwrap_or_else(|| "mp4a.40.2".into());
                audio_media = Some(AudioMedia {
                    group_id: "aud".into(),
                    name: "audio".into(),
                    uri: layout::rendition_playlist(AUDIO_RENDITION),
                    codecs: codec.clone(),
                    channels: AUDIO_CHANNELS,
                    bandwidth_bps: meter.peak_bps(),
                    average_bandwidth_bps: meter.average_bps(),
                });
                dash_rep.codecs = codec;
                dash_audio.push(dash_rep);
            }
        }
    }
    let master = render_multivariant_with_audio(&variants, audio_media.as_ref(), true);
    crate::store::write_atomic(&work.join(layout::MASTER_PLAYLIST), master.as_bytes())
        .map_err(io(work))?;
    if cmaf {
        let mut adaptations = vec![DashAdaptation {
            kind: MediaKind::Video,
            representations: dash_video,
        }];
        if !dash_audio.is_empty() {
            adaptations.push(DashAdaptation {
                kind: MediaKind::Audio,
                representations: dash_audio,
            });
        }
        let mpd = render_mpd(&DashManifest {
            presentation: Presentation::Vod,
            segment_duration_ms: config.ladder.segment_duration_ms,
            adaptations,
        });
        crate::store::write_atomic(&work.join(layout::DASH_MANIFEST), mpd.as_bytes())
            .map_err(io(work))?;
    }
    let _ = std::fs::remove_dir_all(work.join(".staging"));
    Ok((planned.iter().map(|r| r.name.clone()).collect(), count))
}
