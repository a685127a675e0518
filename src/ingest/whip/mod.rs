//! WHIP ingest (RFC 9725): browsers and OBS publish over WebRTC.
//!
//! `POST /whip/{stream}` with an SDP offer (`Content-Type: application/sdp`, `Authorization:
//! Bearer KEY` where `[rtmp.stream_keys]` has keys: the same check as RTMP's) → `201 Created`
//! with the answer and `Location: /whip/{stream}/{session}`; `DELETE` on that location ends the
//! session; `PATCH` with an `application/trickle-ice-sdpfrag` body brings trickled candidates
//! (our answer holds all of ours, so we send none). Each session is a publish session of the
//! stream registry with the `source-webrtc` template, so the ladder, timeline and continuity
//! rules are RTMP's: a second publisher to a live stream gets 409, a reconnecting one continues
//! the media sequence after a discontinuity, the API's kick ends the session. Key guessing
//! backs off per address in RTMP's table ([`crate::ingest::rtmp::Authorizer`]): a throttled
//! address gets 429 with `Retry-After`, unchecked. The HTTP answers (CORS, preflight, 201) are
//! [`crate::http::signalling`]'s, shared with WHEP.
//!
//! - [`signalling`]: pure: paths, bearer token, offer checks, session ids, candidate filter;
//! - [`trickle`]: pure: trickle-ICE fragments;
//! - [`patch`]: the trickle `PATCH` of a session, shared with WHEP viewers;
//! - [`media`]: webrtcbin negotiation and the depayload/decode chains (GStreamer).

pub mod media;
pub mod patch;
pub mod signalling;
pub mod trickle;

use crate::config::Config;
use crate::http::Body;
use crate::http::signalling::Signalling;
use crate::ingest::rtmp::Ingest;
use crate::stream::{StreamRegistry, WebrtcPublish};
use bytes::Bytes;
use gst::prelude::*;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use patch::{TrickleTarget, etag, has_content_type};
use signalling::{OfferError, WhipPath};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WHIP: Signalling = Signalling::Whip;

/// A live WHIP session, as its DELETE finds it.
struct SessionEntry {
    stream: String,
    stop: crate::Shutdown,
    /// What its trickle `PATCH` needs (the offer's ICE ufrag and mids, the `webrtcbin`).
    trickle: TrickleTarget,
}

/// The WHIP endpoint of one origin: its sessions, bounded by `webrtc.max_sessions`.
pub struct WhipService {
    config: Arc<Config>,
    registry: Arc<StreamRegistry>,
    /// The RTMP listener's publish decision: its keys (replaced by a hot reload), then the
    /// auth callback. One decision for every ingest.
    authorizer: Arc<crate::ingest::rtmp::Authorizer>,
    sessions: Mutex<HashMap<String, SessionEntry>>,
}

impl WhipService {
    pub fn new(
        config: Arc<Config>,
        registry: Arc<StreamRegistry>,
        authorizer: Arc<crate::ingest::rtmp::Authorizer>,
    ) -> Arc<WhipService> {
        Arc::new(WhipService {
            config,
            registry,
            authorizer,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// WHIP sessions now (for `/metrics`).
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers a request whose path starts with `/whip/`.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(path) = signalling::parse_path(req.uri().path()) else {
            return WHIP.text(StatusCode::NOT_FOUND, "no such WHIP resource");
        };
        match (req.method().clone(), path) {
            (Method::OPTIONS, _) => WHIP.preflight(),
            (Method::POST, WhipPath::Endpoint { stream }) => self.publish(stream, req).await,
            (Method::DELETE, WhipPath::Session { stream, session }) => self.end(&stream, &session),
            (Method::PATCH, WhipPath::Session { stream, session }) => {
                self.trickle(&stream, &session, req).await
            }
            (_, WhipPath::Endpoint { .. }) => {
                WHIP.method_not_allowed("POST an SDP offer", "POST, OPTIONS")
            }
            (_, WhipPath::Session { .. }) => {
                WHIP.method_not_allowed("DELETE ends the session", "DELETE, PATCH, OPTIONS")
            }
        }
    }

    async fn publish<B>(self: &Arc<Self>, stream: String, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let w = &self.config.webrtc;
        if !has_content_type(req.headers(), "application/sdp") {
            return WHIP.text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/sdp",
            );
        }
        let token = signalling::bearer_token(req.headers()).map(str::to_string);
        let tcp_peer = req
            .extensions()
            .get::<crate::http::ClientAddr>()
            .map_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        // Behind the edge's relay, the publisher the edge names (a trusted relay only).
        let client = crate::http::signalling::client_address(tcp_peer.ip(), req.headers(), |ip| {
            w.is_trusted_relay(ip)
        });
        let peer = if client == tcp_peer.ip() {
            tcp_peer
        } else {
            std::net::SocketAddr::new(client, 0)
        };
        // Key guessing: the same per-address backoff as RTMP, one table for both. An address
        // that must wait is not checked at all (429; RFC 9725 §4.2 leaves the status open,
        // RFC 6585 gives 429 and Retry-After).
        let now = std::time::Instant::now();
        if let Err(wait) = self.authorizer.throttle_check(Ingest::Whip, client, now) {
            tracing::warn!(
                stream,
                wait_ms = wait.as_millis() as u64,
                "WHIP publish refused unchecked: too many failed attempts from this address"
            );
            return WHIP.too_many_requests(
                wait,
                "too many failed publish attempts from this address; retry later",
            );
        }
        if let Err(why) = self
            .authorizer
            .authorize_key("whip", &stream, token.as_deref(), client)
            .await
        {
            if why.is_guess() {
                self.authorizer.throttle_failed(client, now);
            }
            tracing::warn!(stream, reason = %why, "WHIP publish refused");
            if let crate::ingest::rtmp::PublishRejection::CallbackUnavailable(_) = why {
                return WHIP.text(StatusCode::SERVICE_UNAVAILABLE, &why.to_string());
            }
            let mut r = WHIP.text(StatusCode::UNAUTHORIZED, &why.to_string());
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        self.authorizer.throttle_succeeded(client);
        // The body, bounded before it is read whole.
        let limited = http_body_util::Limited::new(req.into_body(), w.max_offer_bytes);
        let body = match limited.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return WHIP.text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &OfferError::TooLarge(w.max_offer_bytes).to_string(),
                );
            }
        };
        let (offer, summary) = match signalling::check_offer(&body, w.max_offer_bytes) {
            Ok(ok) => ok,
            Err(e) => return WHIP.text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let trickle_target = TrickleTarget::from_offer(&offer);
        let webrtc_slot = trickle_target.webrtc.clone();
        let id = signalling::new_session_id();
        let stop = {
            let mut sessions = self.lock();
            if sessions.len() >= w.max_sessions {
                return WHIP.text(StatusCode::SERVICE_UNAVAILABLE, "too many WHIP sessions");
            }
            let stop = self.registry.session_stop();
            sessions.insert(
                id.clone(),
                SessionEntry {
                    stream: stream.clone(),
                    stop: stop.clone(),
                    trickle: trickle_target,
                },
            );
            stop
        };
        let ice = media::IceSettings {
            port_range: (w.ice_port_min != 0).then_some((w.ice_port_min, w.ice_port_max)),
            address: w.ice_address(),
            stun_server: (!w.stun_server.is_empty()).then(|| w.stun_server.clone()),
            turn_server: (!w.turn_server.is_empty()).then(|| w.turn_server.clone()),
        };
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let answer_timeout = Duration::from_millis(w.answer_timeout_ms);
        let connect_timeout = Duration::from_millis(w.connect_timeout_ms);
        let hook_stop = stop.clone();
        let hook_stream = stream.clone();
        let hook = move |pipeline: &gst::Pipeline| {
            let pipeline = pipeline.clone();
            std::thread::spawn(move || {
                let gone = hook_stop.clone();
                let result = media::negotiate(&pipeline, offer, &ice, answer_timeout, move || {
                    gone.cancel()
                });
                // No video within the connect timeout (ICE never connected, nothing sent):
                // the session ends rather than holding the stream.
                let seen = Arc::new(AtomicBool::new(false));
                if let Some(pad) = pipeline.by_name("vsrc").and_then(|v| v.static_pad("src")) {
                    let seen = seen.clone();
                    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                        seen.store(true, Ordering::Relaxed);
                        gst::PadProbeReturn::Remove
                    });
                }
                let negotiated = result.is_ok();
                if negotiated && let Some(webrtc) = pipeline.by_name("webrtc") {
                    let _ = webrtc_slot.set(webrtc);
                }
                let _ = answer_tx.send(result);
                if negotiated {
                    let stop = hook_stop;
                    let stream = hook_stream;
                    std::thread::spawn(move || {
                        std::thread::sleep(connect_timeout);
                        if !seen.load(Ordering::Relaxed) && !stop.is_cancelled() {
                            tracing::warn!(
                                stream,
                                "WHIP publisher sent no video in time; session ended"
                            );
                            stop.cancel();
                        }
                    });
                }
            });
        };
        let me = self.clone();
        let ended_id = id.clone();
        let publish = WebrtcPublish {
            peer,
            has_audio: summary.audio,
            latency_ms: w.jitter_latency_ms,
            silence_timeout_ms: w.silence_timeout_ms,
            stop: stop.clone(),
            on_pipeline: Box::new(hook),
            on_end: Box::new(move || {
                me.lock().remove(&ended_id);
            }),
        };
        if let Err(refusal) = self.registry.start_webrtc(&stream, publish) {
            self.lock().remove(&id);
            stop.cancel();
            tracing::info!(stream, reason = %refusal, "WHIP publish refused");
            return WHIP.text(refusal.status(), &refusal.to_string());
        }
        // The pipeline starts, then negotiation: both bounded.
        let answer =
            match tokio::time::timeout(answer_timeout + Duration::from_secs(5), answer_rx).await {
                Ok(Ok(Ok(answer))) => answer,
                Ok(Ok(Err(e))) => {
                    stop.cancel();
                    tracing::warn!(stream, error = %e, "WHIP negotiation failed");
                    let status = match e {
                        media::NegotiationError::OfferRefused(_) => StatusCode::BAD_REQUEST,
                        _ => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    return WHIP.text(status, &e.to_string());
                }
                _ => {
                    stop.cancel();
                    tracing::warn!(stream, "WHIP session did not start in time");
                    return WHIP.text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the session did not start in time",
                    );
                }
            };
        tracing::info!(stream, codecs = ?summary.video, audio = summary.audio, "WHIP publisher answered");
        let mut r = WHIP.created(answer, &crate::layout::whip_session_path(&stream, &id));
        if let Ok(v) = http::HeaderValue::from_str(&etag(&id)) {
            r.headers_mut().insert(header::ETAG, v);
        }
        r
    }

    /// Trickle ICE (RFC 9725 §4.3.1): the publisher's later candidates, to the session's
    /// `webrtcbin` ([`patch::trickle`]).
    async fn trickle<B>(&self, stream: &str, session: &str, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let target = {
            let sessions = self.lock();
            sessions
                .get(session)
                .filter(|e| e.stream == stream)
                .map(|e| e.trickle.clone())
        };
        let max = self.config.webrtc.max_offer_bytes;
        patch::trickle(WHIP, session, target, req, max).await
    }

    fn end(&self, stream: &str, session: &str) -> Response<Body> {
        let entry = {
            let mut sessions = self.lock();
            match sessions.get(session) {
                Some(e) if e.stream == stream => sessions.remove(session),
                _ => None,
            }
        };
        match entry {
            Some(e) => {
                tracing::info!(stream, "WHIP session ended by its publisher (DELETE)");
                e.stop.cancel();
                WHIP.text(StatusCode::OK, "session ended")
            }
            None => WHIP.text(StatusCode::NOT_FOUND, "no such WHIP session"),
        }
    }
}
