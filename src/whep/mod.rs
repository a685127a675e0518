//! WHEP playback (IETF draft-ietf-wish-whep): `POST /whep/{stream}` with a browser's
//! receive-only offer → `201 Created` with the answer and `Location: /whep/{stream}/{session}`;
//! `PATCH` brings trickled ICE candidates (as for WHIP: [`crate::ingest::whip::patch`]);
//! `DELETE` ends it. Sub-second latency: the viewer gets the top rendition's H.264 as it leaves
//! the encoder ([`feed`]), over its own `webrtcbin` ([`viewer`]), with no encode per viewer.
//! Video only (the ladder's audio is AAC, which WebRTC does not carry).
//!
//! Bounded: `webrtc.max_viewers_per_stream` and `webrtc.max_viewers` (503 beyond), the offer
//! size, negotiation time. Viewers per stream are `zoomate_whep_viewers{stream}`.

pub mod feed;
pub mod viewer;

use crate::config::Config;
use crate::http::Body;
use crate::http::signalling::Signalling;
use crate::ingest::whip::media::IceSettings;
use crate::ingest::whip::patch::{self, TrickleTarget};
use bytes::Bytes;
use feed::WhepFeeds;
use gst::prelude::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WHEP: Signalling = Signalling::Whep;

/// URL prefix of WHEP endpoints.
pub const WHEP_PREFIX: &str = "/whep/";

struct ViewerEntry {
    stream: String,
    stop: crate::Shutdown,
    /// What its trickle `PATCH` needs (the offer's ICE ufrag and mids, the `webrtcbin`).
    trickle: TrickleTarget,
}

/// The WHEP endpoint of one origin.
pub struct WhepService {
    config: Arc<Config>,
    feeds: Arc<WhepFeeds>,
    viewers: Mutex<HashMap<String, ViewerEntry>>,
    next_viewer: AtomicU64,
    shutdown: crate::Shutdown,
}

impl WhepService {
    pub fn new(config: Arc<Config>, feeds: Arc<WhepFeeds>, shutdown: crate::Shutdown) -> Arc<Self> {
        Arc::new(WhepService {
            config,
            feeds,
            viewers: Mutex::new(HashMap::new()),
            next_viewer: AtomicU64::new(1),
            shutdown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ViewerEntry>> {
        self.viewers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Viewers per stream now (for `zoomate_whep_viewers{stream}`).
    pub fn viewer_counts(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for v in self.lock().values() {
            *counts.entry(v.stream.clone()).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        let Some(rest) = path.strip_prefix(WHEP_PREFIX) else {
            return WHEP.text(StatusCode::NOT_FOUND, "no such WHEP resource");
        };
        let mut parts = rest.split('/');
        let stream = parts.next().unwrap_or("");
        let session = parts.next().filter(|s| !s.is_empty());
        if !crate::config::is_valid_name(stream) || parts.next().is_some() {
            return WHEP.text(StatusCode::NOT_FOUND, "no such WHEP resource");
        }
        match (req.method().clone(), session) {
            (Method::OPTIONS, _) => WHEP.preflight(),
            (Method::POST, None) => self.play(stream.to_string(), req).await,
            (Method::DELETE, Some(id)) => self.end(stream, id),
            (Method::PATCH, Some(id)) => {
                let target = self
                    .lock()
                    .get(id)
                    .filter(|e| e.stream == stream)
                    .map(|e| e.trickle.clone());
                let max = self.config.webrtc.max_offer_bytes;
                patch::trickle(WHEP, id, target, req, max).await
            }
            (_, None) => WHEP.method_not_allowed(
                "POST an offer to /whep/{stream}; DELETE its Location",
                "POST, OPTIONS",
            ),
            (_, Some(_)) => WHEP.method_not_allowed(
                "POST an offer to /whep/{stream}; DELETE its Location",
                "DELETE, PATCH, OPTIONS",
            ),
        }
    }

    async fn play<B>(self: &Arc<Self>, stream: String, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let w = &self.config.webrtc;
        let body = match http_body_util::Limited::new(req.into_body(), w.max_offer_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return WHEP.text(StatusCode::PAYLOAD_TOO_LARGE, "offer too large"),
        };
        let (offer, payload_type) = match viewer::check_offer(&body, w.max_offer_bytes) {
            Ok(ok) => ok,
            Err(why) => return WHEP.text(StatusCode::BAD_REQUEST, &why),
        };
        let Some(feed) = self.feeds.live(&stream) else {
            return WHEP.text(StatusCode::NOT_FOUND, "stream is not live");
        };
        let trickle = TrickleTarget::from_offer(&offer);
        let webrtc_slot = trickle.webrtc.clone();
        let id = crate::ingest::whip::signalling::new_session_id();
        let stop = self.shutdown.child_token();
        {
            let mut viewers = self.lock();
            let on_stream = viewers.values().filter(|v| v.stream == stream).count();
            if viewers.len() >= w.max_viewers || on_stream >= w.max_viewers_per_stream {
                return WHEP.text(StatusCode::SERVICE_UNAVAILABLE, "too many WHEP viewers");
            }
            viewers.insert(
                id.clone(),
                ViewerEntry {
                    stream: stream.clone(),
                    stop: stop.clone(),
                    trickle,
                },
            );
        }
        let ice = IceSettings {
            port_range: (w.ice_port_min != 0).then_some((w.ice_port_min, w.ice_port_max)),
            address: w.ice_address(),
            stun_server: (!w.stun_server.is_empty()).then(|| w.stun_server.clone()),
            turn_server: (!w.turn_server.is_empty()).then(|| w.turn_server.clone()),
        };
        let viewer_id = self.next_viewer.fetch_add(1, Ordering::Relaxed);
        let timeout = Duration::from_millis(w.answer_timeout_ms);
        let started = {
            let (feed, stop) = (feed.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                viewer::start(viewer_id, &feed, offer, payload_type, &ice, timeout, stop)
            })
            .await
        };
        let (pipeline, answer) = match started {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => {
                self.lock().remove(&id);
                tracing::warn!(stream, error = %e, "WHEP negotiation failed");
                return WHEP.text(StatusCode::SERVICE_UNAVAILABLE, &e);
            }
            Err(_) => {
                self.lock().remove(&id);
                return WHEP.text(StatusCode::INTERNAL_SERVER_ERROR, "viewer start failed");
            }
        };
        if let Some(webrtc) = pipeline.by_name("webrtc") {
            let _ = webrtc_slot.set(webrtc);
        }
        // The viewer's life: until DELETE, its connection fails, the stream ends or shutdown.
        let me = self.clone();
        let (vid, vstream) = (id.clone(), stream.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            feed.remove(viewer_id);
            let _ = tokio::task::spawn_blocking(move || {
                let _ = pipeline.set_state(gst::State::Null);
            })
            .await;
            me.lock().remove(&vid);
            tracing::info!(stream = vstream, "WHEP viewer left");
        });
        tracing::info!(stream, "WHEP viewer answered");
        let mut r = WHEP.created(answer, &format!("{WHEP_PREFIX}{stream}/{id}"));
        if let Ok(v) = http::HeaderValue::from_str(&patch::etag(&id)) {
            r.headers_mut().insert(http::header::ETAG, v);
        }
        r
    }

    fn end(&self, stream: &str, id: &str) -> Response<Body> {
        // Out of the table at once (as a WHIP session is): the session no longer exists for a
        // PATCH or a second DELETE while its pipeline is torn down.
        let entry = {
            let mut viewers = self.lock();
            match viewers.get(id) {
                Some(e) if e.stream == stream => viewers.remove(id).map(|e| e.stop),
                _ => None,
            }
        };
        match entry {
            Some(stop) => {
                stop.cancel();
                WHEP.text(StatusCode::OK, "session ended")
            }
            None => WHEP.text(StatusCode::NOT_FOUND, "no such WHEP session"),
        }
    }
}
