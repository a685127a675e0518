//! How sessions start: an RTMP publisher, a WebRTC (WHIP) publisher, or a configured source
//! (test pattern, RTP, SRT) supervised and restarted until shutdown.

use super::StreamRegistry;
use super::restart::{RESTART_BACKOFF, Restart, restart_policy};
use super::views::LiveSourceKind;
use crate::Shutdown;
use crate::config::StreamSource;
use crate::ingest::rtmp::{FlvReceiver, Publisher};
use crate::ingest::rtp::RtpCounters;
use crate::plan::PlannedStream;
use crate::stream::health::{Transition, UnhealthyReason};
use crate::stream::publisher_feed::PublisherFeed;
use crate::stream::session::{NetworkSource, SessionError, run_session};
use std::sync::Arc;

/// What a WebRTC publish needs from its signalling side.
pub struct WebrtcPublish {
    /// Who sent the offer (behind the edge's relay, the publisher the edge names).
    pub peer: std::net::SocketAddr,
    /// The offer sends Opus audio.
    pub has_audio: bool,
    pub latency_ms: u64,
    /// No video this long ends the session (the publisher left without DELETE).
    pub silence_timeout_ms: u64,
    /// Fired to end the session (DELETE, peer gone); fired by the session when it ends.
    pub stop: Shutdown,
    /// Gets the running pipeline once (negotiation).
    pub on_pipeline: Box<dyn FnOnce(&gst::Pipeline) + Send>,
    /// Called when the session is over, however it ended.
    pub on_end: Box<dyn FnOnce() + Send>,
}

/// Why a publisher may not publish now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("stream name is reserved by a configured source")]
    Reserved,
    #[error("stream is already live")]
    AlreadyLive,
    #[error("cannot build the source: {0}")]
    Template(String),
}

impl PublishRefusal {
    /// The HTTP status a WHIP publisher gets for it.
    pub fn status(&self) -> http::StatusCode {
        match self {
            PublishRefusal::ShuttingDown | PublishRefusal::Template(_) => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            PublishRefusal::Reserved => http::StatusCode::FORBIDDEN,
            PublishRefusal::AlreadyLive => http::StatusCode::CONFLICT,
        }
    }
}

impl StreamRegistry {
    /// A publisher wants to push `stream`: a session reads `media` (bounded in bytes by the
    /// ingest). `Err` says why not.
    pub fn start_publish(
        self: &Arc<Self>,
        stream: &str,
        media: FlvReceiver,
        publisher: Publisher,
    ) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("server is shutting down".into());
        }
        if self.config.load().streams.iter().any(|s| s.name == stream) {
            return Err("stream name is reserved by a configured source".into());
        }
        let source = self
            .templates
            .render("source-rtmp", &[])
            .map_err(|e| e.to_string())?;
        let live = self
            .try_go_live(stream, LiveSourceKind::Rtmp, Some(publisher))
            .ok_or_else(|| "stream is already live".to_string())?;
        let me = self.clone();
        let stream = stream.to_string();
        self.tasks.spawn(async move {
            me.run_publisher(stream, source, PublisherFeed::new(media), live)
                .await
        });
        Ok(())
    }

    /// An RTMP publisher's sessions: one, unless a session fails for want of space (or another
    /// store error) while the publisher is still connected. Then the stream is unhealthy, the
    /// publisher's media is read and dropped for [`RESTART_BACKOFF`], and a new session starts
    /// at its next keyframe, as configured sources restart, until space returns.
    async fn run_publisher(
        self: Arc<Self>,
        stream: String,
        source: String,
        mut feed: PublisherFeed,
        live: super::GoneLive,
    ) {
        let health = self.health.clone();
        loop {
            let ctx = self.context(&stream, &live);
            let end = run_session(ctx, source.clone(), Some(feed), self.shutdown.clone()).await;
            let e = match end.outcome {
                Ok(()) => {
                    tracing::info!(stream, "publish session ended");
                    break;
                }
                Err(e) => e,
            };
            let reason = UnhealthyReason::of(&e);
            let on_store = |r: Option<UnhealthyReason>| {
                matches!(
                    r,
                    Some(UnhealthyReason::StoreFull | UnhealthyReason::StoreError)
                )
            };
            // Still in a store episode (no segment listed since it began): a restart that fails
            // another way (an element's error racing the sink's ENOSPC, a stall) is part of it.
            let in_store_episode = matches!(
                health.health(&stream),
                Some(crate::stream::Health::Unhealthy { reason: r, .. }) if on_store(Some(r))
            );
            let store_failed = on_store(reason) || in_store_episode;
            let transition = if in_store_episode && !on_store(reason) {
                Transition::Unchanged
            } else {
                health.session_failed(&stream, &e, std::time::Instant::now())
            };
            let resumable = match end.feed {
                Some(f)
                    if store_failed
                        && !self.shutdown.is_cancelled()
                        && !live.end.is_cancelled() =>
                {
                    Some(f)
                }
                _ => None,
            };
            let Some(mut next) = resumable else {
                tracing::error!(stream, error = %e, reason = reason.map(|r| r.label()), "publish session failed");
                break;
            };
            // One line per unhealthy episode: a full disk fails every restart.
            match transition {
                Transition::BecameUnhealthy(reason) => {
                    tracing::error!(stream = %stream, error = %e, reason = reason.label(),
                    "stream unhealthy; the publisher stays connected and its stream restarts until it lists segments again")
                }
                _ => {
                    tracing::debug!(stream = %stream, error = %e, "publish session failed again; restarting")
                }
            }
            crate::ingest::memory::trim_soon();
            let still_there = tokio::select! {
                kept = next.discard_for(RESTART_BACKOFF) => kept,
                _ = self.shutdown.cancelled() => false,
                _ = live.end.cancelled() => false,
            };
            if !still_there {
                tracing::info!(stream = %stream, "publisher left while its stream waited to restart");
                break;
            }
            if let Err(why) = next.restart() {
                tracing::error!(stream = %stream, error = %e, why = %why, "publish session failed; cannot restart mid-stream");
                break;
            }
            if self.shutdown.is_cancelled() || live.end.is_cancelled() {
                break;
            }
            feed = next;
        }
        // The publisher is gone: its stream is no longer this origin's to report on. Forgotten
        // before the stream leaves the live set, so a publisher reconnecting at once keeps the
        // health its new session records.
        health.forget(&stream);
        drop(live.guard);
        // A pipeline torn down frees its buffers (and a publisher may have filled its queue):
        // give the memory back.
        crate::ingest::memory::trim_soon();
    }

    /// A stop signal for one session: fired by its owner (WHIP DELETE) or by shutdown.
    pub fn session_stop(&self) -> Shutdown {
        self.shutdown.child_token()
    }

    /// A WebRTC (WHIP) publisher for `stream`: a session with the `source-webrtc` template
    /// whose running pipeline is handed to `publish.on_pipeline` (to negotiate). Refused like
    /// an RTMP publish (already live, reserved name, shutting down).
    pub fn start_webrtc(
        self: &Arc<Self>,
        stream: &str,
        publish: WebrtcPublish,
    ) -> Result<(), PublishRefusal> {
        if self.shutdown.is_cancelled() {
            return Err(PublishRefusal::ShuttingDown);
        }
        if self.config.load().streams.iter().any(|s| s.name == stream) {
            return Err(PublishRefusal::Reserved);
        }
        // The API's kick fires the session's stop: the peer connection goes down with the
        // pipeline, and the stream ends as when the publisher leaves.
        let publisher = Publisher {
            peer: publish.peer,
            kick: publish.stop.clone(),
        };
        let live = self
            .try_go_live(stream, LiveSourceKind::Whip, Some(publisher))
            .ok_or(PublishRefusal::AlreadyLive)?;
        let template = if publish.has_audio {
            "source-webrtc"
        } else {
            "source-webrtc-video-only"
        };
        let source = self
            .templates
            .render(template, &[("latency_ms", publish.latency_ms.to_string())])
            .map_err(|e| PublishRefusal::Template(e.to_string()))?;
        let mut ctx = self.context(stream, &live);
        let guard = live.guard;
        ctx.network = Some(NetworkSource {
            silence_timeout_ms: publish.silence_timeout_ms,
            rtp_counters: None,
            srt: None,
        });
        ctx.on_pipeline = Some(crate::stream::session::PipelineHook::new(
            publish.on_pipeline,
        ));
        let stream = stream.to_string();
        let stop = publish.stop;
        let on_end = publish.on_end;
        let health = self.health.clone();
        self.tasks.spawn(async move {
            let _guard = guard;
            match run_session(ctx, source, None, stop.clone()).await.outcome {
                Ok(()) => tracing::info!(stream, "publish session ended"),
                Err(e) => {
                    let reason = crate::stream::health::UnhealthyReason::of(&e).map(|r| r.label());
                    health.session_failed(&stream, &e, std::time::Instant::now());
                    tracing::error!(stream, error = %e, reason, "publish session failed")
                }
            }
            // As for RTMP: the publisher is gone, its stream is no longer this origin's.
            health.forget(&stream);
            stop.cancel();
            on_end();
            crate::ingest::memory::trim_soon();
        });
        Ok(())
    }

    /// Runs a configured source (test pattern, RTP) until shutdown, restarting it on failure.
    /// The source was resolved once by the plan (the SDP file read and checked): a restart does
    /// not depend on the file.
    pub fn start_configured(self: &Arc<Self>, planned: PlannedStream) {
        let PlannedStream {
            config: sc, source, ..
        } = planned;
        let me = self.clone();
        self.tasks.spawn(async move {
            // Set when the sender turned out to send no audio; cleared when it goes away (the
            // next sender may send audio again).
            let mut video_only = false;
            while !me.shutdown.is_cancelled() {
                let Some(live) = me.try_go_live(&sc.name, LiveSourceKind::of(&source), None) else { return };
                let only = if video_only { "-video-only" } else { "" };
                let rendered = match &source {
                    StreamSource::TestPattern { width, height } => me.templates.render(
                        "source-test-pattern",
                        &[("width", width.to_string()), ("height", height.to_string()), ("fps", me.config.load().ladder.frame_rate.to_string())],
                    ),
                    StreamSource::RtpMpegts { listen, rtp } => me.templates.render(
                        &format!("source-rtp-mpegts{only}"),
                        &[("port", listen.port().to_string()), ("address", listen.ip().to_string()), ("latency_ms", rtp.jitter_latency_ms.to_string())],
                    ),
                    StreamSource::RtpSdp { sdp, has_audio, rtp } => me.templates.render(
                        &format!("source-rtp-sdp{}", if *has_audio { only } else { "-video-only" }),
                        &[("location", sdp.display().to_string()), ("latency_ms", rtp.jitter_latency_ms.to_string())],
                    ),
                    StreamSource::Srt { listen, srt, .. } => me.templates.render(
                        &format!("source-srt{only}"),
                        &[("port", listen.port().to_string()), ("address", crate::ingest::srt::uri_host(listen)), ("latency_ms", srt.latency_ms.to_string())],
                    ),
                };
                let rendered = match rendered {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(stream = %sc.name, error = %e, "cannot build source; stream disabled");
                        return;
                    }
                };
                let mut ctx = me.context(&sc.name, &live);
                let ended_by_operator = live.end.clone();
                ctx.network = source.silence_timeout_ms().map(|silence_timeout_ms| NetworkSource {
                    silence_timeout_ms,
                    rtp_counters: source.rtp_options().map(|_| me.rtp_counters(&sc.name)),
                    srt: match &source {
                        StreamSource::Srt { srt, .. } => Some(crate::ingest::srt::SrtListener { passphrase: srt.passphrase.clone() }),
                        _ => None,
                    },
                });
                let began = std::time::Instant::now();
                let result = run_session(ctx, rendered, None, me.shutdown.clone())
                    .await
                    .outcome;
                drop(live.guard);
                if ended_by_operator.is_cancelled() {
                    tracing::info!(stream = %sc.name, "source ended by an operator; not restarted until zoomate restarts");
                    return;
                }
                // A source that ended normally after a while (an RTP source gone quiet) listens
                // again at once, so a returning sender loses nothing; a failure, or an end that
                // comes straight away, waits first so a broken source cannot spin.
                let backoff = match restart_policy(
                    &result,
                    began.elapsed(),
                    video_only,
                    me.shutdown.is_cancelled(),
                ) {
                    Restart::Stop => {
                        tracing::info!(stream = %sc.name, "source stopped for shutdown");
                        return;
                    }
                    Restart::After { delay, video_only: v } => {
                        match (&result, v && !video_only) {
                            (Err(SessionError::NoAudio(grace)), true) => tracing::warn!(stream = %sc.name, grace_ms = grace.as_millis() as u64,
                                "the source sends no audio although it describes some; restarting video-only"),
                            // One line per unhealthy episode: a full disk fails every restart.
                            (Err(e), _) => match me.health.session_failed(&sc.name, e, std::time::Instant::now()) {
                                crate::stream::health::Transition::BecameUnhealthy(reason) => tracing::error!(stream = %sc.name, error = %e, reason = reason.label(),
                                    "stream unhealthy; restarting its source until it lists segments again"),
                                _ => tracing::debug!(stream = %sc.name, error = %e, "source failed again; restarting"),
                            },
                            (Ok(()), _) if delay.is_zero() => tracing::info!(stream = %sc.name, "source ended; listening for it again"),
                            (Ok(()), _) => tracing::info!(stream = %sc.name, "source ended"),
                        }
                        video_only = v;
                        delay
                    }
                };
                tokio::select! {
                    _ = me.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        });
    }

    fn rtp_counters(&self, stream: &str) -> Arc<RtpCounters> {
        let mut map = self.rtp_counters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(stream.to_string()).or_default().clone()
    }
}
