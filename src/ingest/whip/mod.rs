//! WHIP ingest (RFC 9725): browsers and OBS publish over WebRTC.
//!
//! `POST /whip/{stream}` with an SDP offer (`Content-Type: application/sdp`, `Authorization:
//! Bearer KEY` where `[rtmp.stream_keys]` has keys: the same check as RTMP's) → `201 Created`
//! with the answer and `Location: /whip/{stream}/{session}`; `DELETE` on that location ends the
//! session; `PATCH` (trickle ICE) is answered 405, as §4.3.1 allows for a server that answers
//! with every candidate. Each session is a publish session of the stream registry with the
//! `source-webrtc` template, so the ladder, timeline and continuity rules are RTMP's: a second
//! publisher to a live stream gets 409, a reconnecting one continues the media sequence after a
//! discontinuity.
//!
//! - [`signalling`]: pure: paths, bearer token, offer checks, session ids, candidate filter;
//! - [`media`]: webrtcbin negotiation and the depayload/decode chains (GStreamer).

pub mod media;
pub mod signalling;

use crate::config::Config;
use crate::http::Body;
use crate::http::headers;
use crate::stream::{StreamRegistry, WebrtcPublish};
use bytes::Bytes;
use gst::prelude::*;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use signalling::{OfferError, WhipPath};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A live WHIP session, as its DELETE finds it.
struct SessionEntry {
    stream: String,
    stop: crate::Shutdown,
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
            return whip_text(StatusCode::NOT_FOUND, "no such WHIP resource");
        };
        match (req.method().clone(), path) {
            (Method::OPTIONS, _) => preflight(),
            (Method::POST, WhipPath::Endpoint { stream }) => self.publish(stream, req).await,
            (Method::DELETE, WhipPath::Session { stream, session }) => self.end(&stream, &session),
            (Method::PATCH, WhipPath::Session { .. }) => {
                // §4.3.1: no trickle; every candidate is in the answer.
                let mut r = whip_text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "trickle ICE is not supported",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
                r
            }
            (_, WhipPath::Endpoint { .. }) => {
                let mut r = whip_text(StatusCode::METHOD_NOT_ALLOWED, "POST an SDP offer");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
                r
            }
            (_, WhipPath::Session { .. }) => {
                let mut r = whip_text(StatusCode::METHOD_NOT_ALLOWED, "DELETE ends the session");
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("DELETE, PATCH, OPTIONS"),
                );
                r
            }
        }
    }

    async fn publish<B>(self: &Arc<Self>, stream: String, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let w = &self.config.webrtc;
        let is_sdp = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/sdp")
            })
            .unwrap_or(false);
        if !is_sdp {
            return whip_text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/sdp",
            );
        }
        let token = signalling::bearer_token(req.headers()).map(str::to_string);
        // Behind the edge's relay this is the edge's address (the callback is told it).
        let client = req
            .extensions()
            .get::<crate::http::ClientAddr>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        if let Err(why) = self
            .authorizer
            .authorize_key("whip", &stream, token.as_deref(), client)
            .await
        {
            tracing::warn!(stream, reason = %why, "WHIP publish refused");
            if let crate::ingest::rtmp::PublishRejection::CallbackUnavailable(_) = why {
                return whip_text(StatusCode::SERVICE_UNAVAILABLE, &why.to_string());
            }
            let mut r = whip_text(StatusCode::UNAUTHORIZED, &why.to_string());
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        // The body, bounded before it is read whole.
        let limited = http_body_util::Limited::new(req.into_body(), w.max_offer_bytes);
        let body = match limited.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return whip_text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &OfferError::TooLarge(w.max_offer_bytes).to_string(),
                );
            }
        };
        let (offer, summary) = match signalling::check_offer(&body, w.max_offer_bytes) {
            Ok(ok) => ok,
            Err(e) => return whip_text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let id = signalling::new_session_id();
        let stop = {
            let mut sessions = self.lock();
            if sessions.len() >= w.max_sessions {
                return whip_text(StatusCode::SERVICE_UNAVAILABLE, "too many WHIP sessions");
            }
            let stop = self.registry.session_stop();
            sessions.insert(
                id.clone(),
                SessionEntry {
                    stream: stream.clone(),
                    stop: stop.clone(),
                },
            );
            stop
        };
        let ice = media::IceSettings {
            port_range: (w.ice_port_min != 0).then_some((w.ice_port_min, w.ice_port_max)),
            address: w.ice_address(),
            stun_server: (!w.stun_server.is_empty()).then(|| w.stun_server.clone()),
            turn_server: (!w.turn_server.is_empty()).then(|| w.turn_server.expose().to_string()),
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
            return whip_text(refusal.status(), &refusal.to_string());
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
                    return whip_text(status, &e.to_string());
                }
                _ => {
                    stop.cancel();
                    tracing::warn!(stream, "WHIP session did not start in time");
                    return whip_text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the session did not start in time",
                    );
                }
            };
        tracing::info!(stream, codecs = ?summary.video, audio = summary.audio, "WHIP publisher answered");
        let mut r = Response::new(headers::full(Bytes::from(answer)));
        *r.status_mut() = StatusCode::CREATED;
        let h = r.headers_mut();
        cors(h);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/sdp"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&crate::layout::whip_session_path(&stream, &id)) {
            h.insert(header::LOCATION, v);
        }
        r
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
                whip_text(StatusCode::OK, "session ended")
            }
            None => whip_text(StatusCode::NOT_FOUND, "no such WHIP session"),
        }
    }
}

/// CORS for browser publishers on other origins (RFC 9725 §4.1: Location must be readable).
fn cors(h: &mut http::HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Post"),
    );
}

fn whip_text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = headers::text(status, msg);
    cors(r.headers_mut());
    r
}

fn preflight() -> Response<Body> {
    let mut r = Response::new(headers::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}
