//! One live session: a source's pipeline from start to EOS, its events driving the phase
//! machine, and its fragments and parts handed to [`super::publish`] to become listed
//! segments and parts.

use super::assembler::SegmentAssembler;
use super::phase::{Action, EosReason, SessionMachine, SessionRules, Stimulus};
use super::publish::{
    WrittenPart, flush_pending, lock, publish_assembled, publish_part, unlist_open_parts,
};
use super::publisher_feed::{FeedPiece, PublisherFeed};
use super::timeline::StreamTimeline;
use crate::Shutdown;
use crate::bus::BusEvent;
use crate::config::{Config, SegmentFormat};
use crate::layout;
use crate::transcode::{LadderSpec, LivePipeline, PipelineEvent, Templates};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Where bus announcements go (the app wires this to the bus publisher; tests may collect).
pub type Announce = Arc<dyn Fn(BusEvent) + Send + Sync>;

/// How a session ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Transcode(#[from] crate::transcode::TranscodeError),
    #[error("pipeline failed: {0}")]
    Pipeline(String),
    #[error("watchdog: no segment for {0:?}; pipeline torn down")]
    Stalled(Duration),
    #[error("watchdog: EOS did not complete within {0:?}; pipeline torn down")]
    EosTimeout(Duration),
    #[error("watchdog: the pipeline did not reach PLAYING within {0:?}; abandoned")]
    StartTimeout(Duration),
    #[error("store: {0}")]
    Store(std::io::Error),
    /// A write failed for want of space (the session's own, or a sink's in the pipeline).
    #[error("store full: {0}")]
    StoreFull(String),
    /// A network source's template expects audio (the SDP lists it, or the transport stream
    /// is assumed to carry it) and none arrived: restart video-only.
    #[error("no audio within {0:?} of the first video although the source describes audio")]
    NoAudio(Duration),
}

impl From<std::io::Error> for SessionError {
    fn from(e: std::io::Error) -> SessionError {
        if crate::store::is_no_space(&e) {
            SessionError::StoreFull(e.to_string())
        } else {
            SessionError::Store(e)
        }
    }
}

/// Everything a session needs from its surroundings.
#[derive(Clone)]
pub struct SessionContext {
    pub stream: String,
    pub config: Arc<Config>,
    pub templates: Templates,
    pub timeline: Arc<Mutex<StreamTimeline>>,
    pub announce: Announce,
    pub janitor: crate::store::Janitor,
    /// Where every new playlist version goes (the origin answers and wakes from it).
    pub live_playlists: Arc<crate::store::live::LivePlaylists>,
    pub session_id: u64,
    /// Network sources (RTP): the silence rule and the datagram counters.
    pub network: Option<NetworkSource>,
    /// Publish-delay histograms, shared by every session of the registry.
    pub delays: Arc<PublishDelays>,
    /// Every stream's health and the watchdog and store-error counters.
    pub health: Arc<super::health::StreamHealth>,
    /// What this session produced per rendition (the API and `/metrics` read it).
    pub stats: Arc<Mutex<super::stats::StreamStats>>,
    /// Cancelled when an operator ends the stream (the API's `end`): EOS, as on shutdown.
    pub end: tokio_util::sync::CancellationToken,
    /// Called once with the running pipeline (WHIP: negotiate its webrtcbin).
    pub on_pipeline: Option<PipelineHook>,
    /// WHEP viewers' feed of this stream (`webrtc.enabled`).
    pub whep_feed: Option<Arc<crate::whep::feed::WhepFeed>>,
}

/// What a [`PipelineHook`] calls.
pub type PipelineCallback = Box<dyn FnOnce(&gst::Pipeline) + Send>;

/// A one-shot callback with a session's running pipeline.
#[derive(Clone)]
pub struct PipelineHook(Arc<Mutex<Option<PipelineCallback>>>);

impl PipelineHook {
    pub fn new(f: PipelineCallback) -> PipelineHook {
        PipelineHook(Arc::new(Mutex::new(Some(f))))
    }

    fn take(&self) -> Option<PipelineCallback> {
        self.0.lock().ok().and_then(|mut f| f.take())
    }
}

/// How long after its last frame was captured a segment or part was announced: encode, mux,
/// write and list, the server's share of glass-to-player latency.
#[derive(Debug)]
pub struct PublishDelays {
    pub segment: crate::http::metrics::Histogram,
    pub part: crate::http::metrics::Histogram,
    /// The writer's "file complete" event received → the bus announcement, by kind
    /// (`segment`, `part`): promote, list, write playlists; the origin's own share.
    pub encode_to_announce: crate::http::metrics::KindHistograms,
}

impl Default for PublishDelays {
    fn default() -> Self {
        PublishDelays {
            segment: crate::http::metrics::wake_histogram(),
            part: crate::http::metrics::wake_histogram(),
            encode_to_announce: crate::http::metrics::kind_histograms(),
        }
    }
}

impl PublishDelays {
    /// Observes `now - (pdt + duration)`: the last frame's capture time to now.
    pub fn observe(h: &crate::http::metrics::Histogram, pdt_ms: i64, duration_ms: u64) {
        let late_ms = now_ms() - (pdt_ms + duration_ms as i64);
        h.observe(late_ms.max(0) as f64 / 1000.0);
    }

    /// Observes the time since the writer reported the file complete (`kind`: segment, part).
    pub fn observe_announce(&self, kind: &'static str, complete_at: Option<Instant>) {
        if let Some(at) = complete_at {
            self.encode_to_announce
                .get_or_create(&crate::http::metrics::KindLabels { kind })
                .observe(at.elapsed().as_secs_f64());
        }
    }
}

/// What a session of a network source (RTP, SRT) needs beyond the media.
#[derive(Clone)]
pub struct NetworkSource {
    /// No video for this long ends the stream.
    pub silence_timeout_ms: u64,
    /// RTP: the datagram guard's counters.
    pub rtp_counters: Option<Arc<crate::ingest::rtp::RtpCounters>>,
    /// SRT: the listener's settings (passphrase, stream-id check).
    pub srt: Option<crate::ingest::srt::SrtListener>,
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How a session ended, and the publisher's feed when the publisher may still be there (the
/// session failed, not the publisher: another session can read it).
pub struct SessionEnd {
    pub outcome: Result<(), SessionError>,
    pub feed: Option<PublisherFeed>,
}

impl SessionEnd {
    fn failed(error: impl Into<SessionError>, feed: Option<PublisherFeed>) -> SessionEnd {
        SessionEnd {
            outcome: Err(error.into()),
            feed,
        }
    }
}

/// How long a failed session waits for its publisher's feed back from the thread pushing it
/// into the pipeline (the thread notices the pipeline is gone at its next chunk).
const FEED_RETURN_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs a session until its source ends (EOS), it fails, or `shutdown` (then EOS, bounded).
/// `input` feeds an `appsrc name=src` source (RTMP); `None` for self-timed sources.
pub async fn run_session(
    ctx: SessionContext,
    mut source_description: String,
    mut input: Option<PublisherFeed>,
    shutdown: Shutdown,
) -> SessionEnd {
    // However the session ends (a failed start too), its WHEP feed leaves the table.
    let _feed_ended = ctx.whep_feed.clone().map(crate::whep::feed::EndOnDrop);
    // A pushed FLV stream may carry no audio at all; a ladder waiting for audio would stall.
    let mut prebuffer = Vec::new();
    if let Some(rx) = input.as_mut() {
        let (has_audio, chunks) = sniff_flv_audio(rx).await;
        prebuffer = chunks;
        if !has_audio {
            tracing::info!(stream = %ctx.stream, "publisher sends no audio; video-only ladder");
            source_description = match ctx.templates.render("source-rtmp-video-only", &[]) {
                Ok(rendered) => rendered,
                Err(e) => return SessionEnd::failed(e, input),
            };
        }
    }
    let stream_dir = crate::store::live_stream_dir(&ctx.config.store.dir, &ctx.stream);
    let staging = layout::staging_dir(&stream_dir, ctx.session_id);
    let format = ctx.config.format_for(&ctx.stream);
    let spec = LadderSpec {
        stream: ctx.stream.clone(),
        source_description,
        ladder: ctx.config.ladder.clone(),
        templates: ctx.templates.clone(),
        staging_dir: staging.clone(),
        format,
        part_duration_ms: ctx.config.part_duration_for(&ctx.stream),
        keyframe_interval_ms: ctx
            .config
            .part_duration_for(&ctx.stream)
            .map(|_| ctx.config.hls.keyframe_interval_ms),
        wall_clock_timestamps: true,
        timing: ctx.config.timing_for(&ctx.stream),
        raw_video_queue: crate::transcode::RawVideoQueue::Live,
        scale_method: crate::transcode::ScaleMethod::Bilinear,
        rtp_guard: ctx.network.as_ref().and_then(|n| n.rtp_counters.clone()),
        srt_listener: ctx.network.as_ref().and_then(|n| n.srt.clone()),
        whep_feed: ctx.whep_feed.clone(),
    };
    let rules = SessionRules {
        stall: Duration::from_millis(ctx.config.pipelines.stall_timeout_ms),
        eos_timeout: Duration::from_millis(ctx.config.pipelines.eos_timeout_ms),
        state_change: Duration::from_millis(ctx.config.pipelines.state_change_timeout_ms),
        network_silence: ctx
            .network
            .as_ref()
            .map(|n| Duration::from_millis(n.silence_timeout_ms)),
    };
    ctx.health.session_started(&ctx.stream);
    let mut machine = SessionMachine::new(rules, Instant::now());
    // Off the workers: reaching PLAYING waits on GStreamer threads (and a stuck one would hold
    // a worker for good). Past the deadline the start is abandoned on its thread, where the
    // pipeline is torn down if it ever starts.
    let launch_deadline = machine.state_change_deadline().unwrap_or_else(Instant::now);
    let started = crate::transcode::run_bounded(
        "start",
        launch_deadline.saturating_duration_since(Instant::now()),
        move || LivePipeline::start(spec),
    )
    .await;
    let (pipeline, mut events) = match started {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return SessionEnd::failed(e, input);
        }
        Err(crate::transcode::OffRuntimeError::Abandoned { after, .. }) => {
            ctx.health.watchdog_fired(machine.phase().name());
            tracing::warn!(stream = %ctx.stream, timeout_ms = after.as_millis() as u64,
                "pipeline did not reach PLAYING; abandoned on its thread");
            return SessionEnd::failed(SessionError::StartTimeout(after), input);
        }
        Err(e) => return SessionEnd::failed(SessionError::Pipeline(e.to_string()), input),
    };
    machine.launched(Instant::now());
    let pipeline = Arc::new(pipeline);
    if let Some(hook) = ctx.on_pipeline.as_ref().and_then(PipelineHook::take) {
        hook(pipeline.gst_pipeline());
    }

    // Input ended (publisher gone) → EOS into the pipeline, from a blocking thread because
    // appsrc's push blocks when its queue is full (backpressure onto the publisher's TCP).
    // The thread hands the feed back when the pipeline stopped taking it while the publisher
    // was still there.
    let (input_done_tx, mut input_done) = tokio::sync::oneshot::channel::<Option<PublisherFeed>>();
    // Only a pushed source (RTMP) can "end" by itself; self-timed sources end on shutdown.
    let mut input_open = input.is_some();
    let mut returned_feed = None;
    if let (Some(mut feed), Some(appsrc)) = (input, pipeline.appsrc()) {
        tokio::task::spawn_blocking(move || {
            // Each chunk's room in the publisher queue comes back once appsrc has it (appsrc
            // bounds what it holds itself: max-bytes in the pipeline template).
            let push = |piece: FeedPiece| {
                let (bytes, _room) = piece.into_parts();
                appsrc.push_buffer(gst::Buffer::from_slice(bytes)).is_ok()
            };
            let mut pushing = true;
            for piece in prebuffer {
                if pushing {
                    pushing = push(piece);
                }
            }
            let mut publisher_gone = false;
            while pushing {
                match feed.blocking_recv() {
                    // Not pushed: flushing, the pipeline is going down.
                    Some(piece) => pushing = push(piece),
                    None => {
                        publisher_gone = true;
                        break;
                    }
                }
            }
            let _ = appsrc.end_of_stream();
            let _ = input_done_tx.send((!publisher_gone).then_some(feed));
        });
    } else {
        drop(input_done_tx);
    }

    let mut silence_check = tokio::time::interval(SILENCE_CHECK_INTERVAL);
    silence_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let frame_ns = 1_000_000_000 / ctx.config.ladder.frame_rate.max(1) as u64;
    let mut state = SessionState {
        assembler: SegmentAssembler::default(),
        anchor_wall_ms: None,
        started_announced: false,
        stream_dir,
        format,
        staged_inits: HashMap::new(),
        inits: HashMap::new(),
        init_name: layout::VOD_INIT_SEGMENT.into(),
        figures: SessionFigures::default(),
        closed_at: HashMap::new(),
    };
    let session_started = Instant::now();
    let result = loop {
        let stall_at = machine.stall_deadline();
        let eos_at = machine.eos_deadline();
        let stimulus = tokio::select! {
            _ = shutdown.cancelled(), if machine.awaits_shutdown() => Stimulus::Shutdown,
            _ = ctx.end.cancelled(), if machine.awaits_shutdown() => Stimulus::EndRequested,
            feed = &mut input_done, if input_open => {
                input_open = false;
                returned_feed = feed.ok().flatten();
                if machine.eos_deadline().is_none() {
                    tracing::info!(stream = %ctx.stream, "publisher ended; finishing open segments");
                }
                Stimulus::InputEnded
            }
            _ = silence_check.tick(), if machine.checks_silence() => Stimulus::SilenceCheck {
                audio_seen: pipeline.audio_seen(),
                video_idle: pipeline.video_idle(),
            },
            _ = sleep_until(stall_at), if stall_at.is_some() => Stimulus::StallTimer {
                video_idle: pipeline.video_idle(),
            },
            _ = sleep_until(eos_at), if eos_at.is_some() => Stimulus::EosTimer,
            ev = events.recv() => match ev {
                Some(ev) => Stimulus::Pipeline(ev),
                None => break Err(SessionError::Pipeline("pipeline bus closed".into())),
            },
        };
        match machine.on(&stimulus, Instant::now()) {
            Action::Continue => {}
            Action::SendEos(reason) => {
                match reason {
                    EosReason::Shutdown => {
                        tracing::info!(stream = %ctx.stream, "shutdown: finishing open segments")
                    }
                    EosReason::EndRequested => {
                        tracing::info!(stream = %ctx.stream, "ended by an operator: finishing open segments")
                    }
                    EosReason::Silence { idle } => {
                        tracing::info!(stream = %ctx.stream, silent_ms = idle.as_millis() as u64, "source silent; ending the stream")
                    }
                }
                // Off the workers: an event into a pipeline takes its state lock. The EOS
                // watchdog covers an EOS that never arrives (or is never sent).
                let signal = pipeline.eos_signal();
                if let Err(e) = crate::transcode::run_detached("eos", move || signal.send()) {
                    tracing::warn!(stream = %ctx.stream, error = %e, "could not send EOS");
                }
            }
            Action::Stop(outcome) => {
                if let Err(SessionError::Stalled(_) | SessionError::EosTimeout(_)) = &outcome {
                    ctx.health.watchdog_fired(machine.phase().name());
                }
                break outcome;
            }
        }
        if let Stimulus::Pipeline(ev) = stimulus
            && let Err(e) = handle_event(&ctx, &mut state, ev).await
        {
            break Err(e);
        }
    };
    // Closed fragments are complete files: list them however the session ended.
    if let Err(e) = flush_pending(&ctx, &mut state, frame_ns).await {
        tracing::warn!(stream = %ctx.stream, error = %e, "could not list the final segments");
    }
    // Parts of a segment that will never be complete leave the playlists now (not at the next
    // session): no player is sent after them.
    unlist_open_parts(&ctx, &state);
    // Tear down off the workers: set_state(Null) joins GStreamer threads, and a stuck one (a
    // sink that never returns) would hold a worker and this stream for good. Past the deadline
    // the pipeline is abandoned on its thread and the stream restarts with a new one.
    // Release any streaming thread waiting for room in the event channel first: teardown
    // joins those threads.
    drop(events);
    if let Some(feed) = &ctx.whep_feed {
        feed.set_live(false);
    }
    let teardown_deadline = machine.tear_down(Instant::now());
    let teardown = crate::transcode::run_bounded(
        "teardown",
        teardown_deadline.saturating_duration_since(Instant::now()),
        move || pipeline.stop(),
    )
    .await;
    if let Err(e) = teardown {
        ctx.health.watchdog_fired(machine.phase().name());
        tracing::warn!(stream = %ctx.stream, session = ctx.session_id, error = %e,
            "pipeline teardown stuck; abandoned, the stream goes on with a new pipeline");
    }
    let _ = tokio::fs::remove_dir_all(&staging).await;
    // The pipeline is down: the pushing thread gives the feed back at its next chunk.
    if input_open && result.is_err() {
        returned_feed = tokio::time::timeout(FEED_RETURN_TIMEOUT, input_done)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
    }
    if state.started_announced {
        (ctx.announce)(BusEvent::StreamEnded {
            stream: ctx.stream.clone(),
            origin_id: ctx.config.origin.id.clone(),
        });
    }
    let f = &state.figures;
    let secs = session_started.elapsed().as_secs_f64();
    tracing::info!(
        stream = %ctx.stream,
        session = ctx.session_id,
        seconds = format!("{secs:.1}"),
        segments = f.segments,
        parts = f.parts,
        megabytes = format!("{:.1}", f.bytes as f64 / 1e6),
        output_kbps = (f.bytes as f64 * 8.0 / secs.max(0.001) / 1000.0) as u64,
        outcome = match &result { Ok(()) => "ended".to_string(), Err(e) => e.to_string() },
        "session figures"
    );
    SessionEnd {
        outcome: result,
        feed: returned_feed,
    }
}

/// What a session produced, for its closing log line.
#[derive(Debug, Default)]
pub(super) struct SessionFigures {
    /// Segments listed (every rendition).
    pub(super) segments: u64,
    /// LL-HLS parts listed (every rendition).
    pub(super) parts: u64,
    /// Bytes of segments listed (parts are the same bytes).
    pub(super) bytes: u64,
}

/// Sleeps until `at`; never returns for `None` (its `select!` arm is disabled then anyway).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How often a network source's silence is checked (the timeout's resolution).
const SILENCE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// FLV tags to look at before deciding a stream has no audio (about 2 s of 30 fps video).
const SNIFF_MAX_VIDEO_TAGS: usize = 60;
/// Longest wait for the first tags.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(3);

/// The audio sniff's decision, fed one FLV chunk at a time (pure). Bounded in tags and in
/// bytes: it holds at most half the publisher queue, so the publisher can always send the
/// tags it is waiting for (what it holds still counts against the queue).
#[derive(Debug)]
struct AudioSniff {
    max_bytes: usize,
    bytes: usize,
    video_tags: usize,
}

impl AudioSniff {
    fn new(queue_bytes: u32) -> AudioSniff {
        AudioSniff {
            max_bytes: queue_bytes as usize / 2,
            bytes: 0,
            video_tags: 0,
        }
    }

    /// Takes a chunk (its first byte is the FLV tag type); `Some(has_audio)` once decided.
    fn push(&mut self, first_byte: Option<u8>, len: usize) -> Option<bool> {
        self.bytes = self.bytes.saturating_add(len);
        match first_byte {
            Some(crate::ingest::flv::TAG_AUDIO) => return Some(true),
            Some(crate::ingest::flv::TAG_VIDEO) => self.video_tags += 1,
            _ => {}
        }
        if self.video_tags >= SNIFF_MAX_VIDEO_TAGS {
            return Some(false);
        }
        // Enough held without audio: decide as on a timeout.
        (self.bytes >= self.max_bytes).then_some(self.video_tags == 0)
    }

    /// The publisher went silent (timeout): audio is assumed unless video came without it.
    fn timed_out(&self) -> bool {
        self.video_tags == 0
    }
}

/// Reads the start of an FLV byte stream (one header, then one tag per chunk, as the RTMP
/// ingest sends it) until an audio tag appears, enough video has passed without one (in tags or
/// bytes), or the timeout. Returns whether audio was seen and the chunks read (to be pushed
/// first).
async fn sniff_flv_audio(rx: &mut PublisherFeed) -> (bool, Vec<FeedPiece>) {
    let deadline = Instant::now() + SNIFF_TIMEOUT;
    let mut sniff = AudioSniff::new(rx.max_bytes());
    let mut chunks = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(chunk)) => {
                let decided = sniff.push(chunk.bytes().first().copied(), chunk.bytes().len());
                chunks.push(chunk);
                if let Some(has_audio) = decided {
                    return (has_audio, chunks);
                }
            }
            // Publisher gone: keep the default (audio) layout; nothing to lose.
            Ok(None) => return (true, chunks),
            Err(_) => return (sniff.timed_out(), chunks),
        }
    }
}

pub(super) struct SessionState {
    /// Closed fragments wait here for their exact end.
    pub(super) assembler: SegmentAssembler,
    pub(super) anchor_wall_ms: Option<i64>,
    pub(super) started_announced: bool,
    pub(super) stream_dir: PathBuf,
    pub(super) format: SegmentFormat,
    /// CMAF: this session's init segment per rendition, still in staging.
    pub(super) staged_inits: HashMap<String, PathBuf>,
    /// CMAF: this session's published init segment per rendition.
    pub(super) inits: HashMap<String, String>,
    /// CMAF: the session's init segment file name, the same in every rendition
    /// (`init-{first sequence of the session}.mp4`): distinct per session, so players and
    /// caches never see an init segment change under one name.
    pub(super) init_name: String,
    pub(super) figures: SessionFigures,
    /// When the writer reported each closed fragment complete (by its staging location), for
    /// `zoomate_origin_encode_to_announce_seconds`; taken out when the segment is published.
    pub(super) closed_at: HashMap<PathBuf, Instant>,
}

async fn handle_event(
    ctx: &SessionContext,
    st: &mut SessionState,
    ev: PipelineEvent,
) -> Result<(), SessionError> {
    match ev {
        PipelineEvent::LadderPlanned {
            renditions,
            source_width,
            source_height,
            anchor_wall_ms,
            separate_audio,
            first_sequence,
        } => {
            tracing::info!(stream = %ctx.stream, source = %format!("{source_width}x{source_height}"), format = st.format.as_str(),
                renditions = %renditions.iter().map(|r| format!("{}@{}kbps", r.name, r.video_bitrate_kbps)).collect::<Vec<_>>().join(","), "ladder planned");
            // The same clock the pipeline put into the fMP4 tfdt: PDT and DASH time agree.
            st.anchor_wall_ms = Some(anchor_wall_ms);
            let audio = separate_audio.then_some(ctx.config.ladder.audio_bitrate_kbps);
            let first_sequence_of_clock = first_sequence;
            let renditions_key = format!("{renditions:?}");
            let (first_sequence, orphans) = {
                let mut t = lock(&ctx.timeline);
                let fps = ctx.config.ladder.frame_rate;
                let first = match first_sequence {
                    Some(sequence) => {
                        let tag = crate::transcode::wallclock::part_tag(
                            ctx.config.part_duration_for(&ctx.stream),
                        );
                        t.begin_session_at(&renditions, fps, audio, sequence, &tag)
                    }
                    None => t.begin_session(&renditions, fps, audio),
                };
                (first, t.take_orphaned_parts())
            };
            // A wall-clock session starts afresh: the last session's playlists (in memory and
            // on disk) are withdrawn until this one lists enough, so an edge asks another
            // origin rather than being held at a frozen end.
            if first_sequence_of_clock.is_some() {
                ctx.live_playlists.withdraw(&ctx.stream);
                for rendition in lock(&ctx.timeline).rendition_names() {
                    let path = st.stream_dir.join(&rendition).join(layout::MEDIA_PLAYLIST);
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(stream = %ctx.stream, rendition, error = %e, "stale playlist not removed");
                    }
                }
            }
            // Parts of the last session's unfinished segments: listed no more, deleted later
            // (players may still be fetching them).
            for (rendition, uri) in orphans {
                ctx.janitor
                    .schedule(st.stream_dir.join(rendition).join(uri));
            }
            st.init_name = match first_sequence_of_clock {
                // Every origin and every session of this ladder: one name (see layout).
                Some(_) => {
                    let key = format!(
                        "{renditions_key}|{source_width}x{source_height}|{:?}|{:?}|{:?}",
                        ctx.config.ladder,
                        st.format,
                        ctx.config.part_duration_for(&ctx.stream)
                    );
                    layout::wallclock_init_segment(xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
                }
                None => layout::session_init_segment(first_sequence),
            };
        }
        PipelineEvent::InitSegment {
            rendition,
            location,
        } => {
            st.staged_inits.insert(rendition, location);
        }
        PipelineEvent::VideoCodec { rendition, codec } => {
            lock(&ctx.timeline).set_video_codec(&rendition, codec)
        }
        PipelineEvent::AudioCodec { codec } => lock(&ctx.timeline).set_audio_codec(codec),
        PipelineEvent::FragmentOpened {
            rendition,
            running_time_ns,
        } => {
            if st.anchor_wall_ms.is_none() {
                st.anchor_wall_ms = Some(now_ms() - (running_time_ns / 1_000_000) as i64);
            }
            if let Some(done) = st.assembler.opened(&rendition, running_time_ns) {
                publish_assembled(ctx, st, done).await?;
            }
        }
        PipelineEvent::FragmentClosed {
            rendition,
            location,
            running_time_ns,
            exact_end,
        } => {
            st.closed_at.insert(location.clone(), Instant::now());
            if let Some(done) =
                st.assembler
                    .closed(&rendition, location, running_time_ns, exact_end)
            {
                publish_assembled(ctx, st, done).await?;
            }
        }
        PipelineEvent::PartWritten {
            rendition,
            location,
            index,
            start_ns,
            duration_ns,
            independent,
            byte_size,
        } => {
            let pdt = st.anchor_wall_ms.unwrap_or_else(now_ms)
                + super::assembler::nearest_ms(start_ns) as i64;
            let written = WrittenPart {
                location,
                index,
                duration_ms: super::assembler::nearest_ms(duration_ns),
                independent,
                byte_size,
                program_date_time_ms: pdt,
                written_at: Instant::now(),
            };
            publish_part(ctx, st, &rendition, written).await?;
        }
        PipelineEvent::Eos | PipelineEvent::Failed(_) | PipelineEvent::StoreFull(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::flv::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

    #[test]
    fn the_sniff_decides_on_audio_on_enough_video_or_on_bytes() {
        let mut s = AudioSniff::new(1000);
        assert_eq!(s.push(Some(b'F'), 13), None, "the FLV header");
        assert_eq!(s.push(Some(TAG_SCRIPT), 50), None);
        assert_eq!(s.push(Some(TAG_VIDEO), 50), None);
        assert_eq!(s.push(Some(TAG_AUDIO), 10), Some(true));

        let mut s = AudioSniff::new(u32::MAX);
        let decided: Vec<_> = (0..SNIFF_MAX_VIDEO_TAGS)
            .map(|_| s.push(Some(TAG_VIDEO), 10))
            .collect();
        assert_eq!(
            decided.last(),
            Some(&Some(false)),
            "60 video tags, no audio"
        );
        assert!(
            decided[..SNIFF_MAX_VIDEO_TAGS - 1]
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn the_sniff_holds_at_most_half_the_queue() {
        // Two 16 MiB video tags in a 32 MiB queue: decided at the first, which fills half.
        let mut s = AudioSniff::new(32 << 20);
        assert_eq!(s.push(Some(TAG_VIDEO), 16 << 20), Some(false));
        // Bytes without any video: nothing learnt, audio assumed.
        let mut s = AudioSniff::new(100);
        assert_eq!(s.push(Some(TAG_SCRIPT), 60), Some(true));
        assert!(AudioSniff::new(100).timed_out());
    }
}
