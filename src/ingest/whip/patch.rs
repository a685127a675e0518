//! The `PATCH` of a WebRTC session resource, shared by WHIP publishers and WHEP viewers:
//! trickle ICE (RFC 9725 §4.3.1, the WHEP draft's §4.3): an `application/trickle-ice-sdpfrag`
//! body brings candidates the peer gathered after its offer, which go to the session's
//! `webrtcbin`. 204 on success; 412 for a stale `If-Match`, 422 for an ICE restart (not
//! supported), 415 for another content type, 400 for a bad fragment or an unknown mid, 404 for
//! no such session, 409 before the session is negotiated.

use super::trickle;
use crate::http::Body;
use crate::http::signalling::Signalling;
use bytes::Bytes;
use gst::prelude::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::{Arc, OnceLock};

/// What a session keeps so that its `PATCH` can be applied.
#[derive(Clone)]
pub struct TrickleTarget {
    /// The offer's ICE username fragment (a fragment with another one asks for an ICE restart).
    pub ice_ufrag: Option<String>,
    /// The offer's media sections' mids, in order (trickled candidates name theirs).
    pub mids: Vec<String>,
    /// The session's `webrtcbin`, once negotiated.
    pub webrtc: Arc<OnceLock<gst::Element>>,
}

impl TrickleTarget {
    /// From the peer's offer; the `webrtcbin` is set once the session is negotiated.
    pub fn from_offer(offer: &gst_sdp::SDPMessageRef) -> TrickleTarget {
        let (ice_ufrag, mids) = trickle::offer_ice(offer);
        TrickleTarget {
            ice_ufrag,
            mids,
            webrtc: Arc::new(OnceLock::new()),
        }
    }
}

/// The session's entity tag (RFC 9725 §4.3.1): it would change with an ICE restart, which we
/// do not do.
pub fn etag(session: &str) -> String {
    format!("\"{session}\"")
}

/// Whether the request's `Content-Type` is `media_type` (parameters ignored).
pub fn has_content_type(headers: &http::HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media_type))
}

/// Applies one trickle `PATCH` to `session` (`None`: there is no such session).
pub async fn trickle<B>(
    kind: Signalling,
    session_id: &str,
    session: Option<TrickleTarget>,
    req: Request<B>,
    max_bytes: usize,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !has_content_type(req.headers(), "application/trickle-ice-sdpfrag") {
        return kind.text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/trickle-ice-sdpfrag",
        );
    }
    let Some(target) = session else {
        return kind.text(StatusCode::NOT_FOUND, "no such session");
    };
    if let Some(tag) = req.headers().get(header::IF_MATCH)
        && tag.as_bytes() != b"*"
        && tag.as_bytes() != etag(session_id).as_bytes()
    {
        return kind.text(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the session's ETag",
        );
    }
    let body = match http_body_util::Limited::new(req.into_body(), max_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return kind.text(StatusCode::PAYLOAD_TOO_LARGE, "fragment too large"),
    };
    let fragment = match trickle::parse_fragment(&body) {
        Ok(f) => f,
        Err(e) => return kind.text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if trickle::is_ice_restart(&fragment, target.ice_ufrag.as_deref()) {
        // RFC 9725 §4.3.2: trickle supported, ICE restart not: 422.
        return kind.text(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restarts are not supported; start a new session",
        );
    }
    let mut candidates = Vec::with_capacity(fragment.candidates.len());
    for c in fragment.candidates {
        let Some(index) = trickle::mline_index(&target.mids, c.mid.as_deref()) else {
            return kind.text(StatusCode::BAD_REQUEST, "candidate for an unknown mid");
        };
        candidates.push((index, c.candidate));
    }
    let Some(webrtc) = target.webrtc.get().cloned() else {
        return kind.text(StatusCode::CONFLICT, "the session is not negotiated yet");
    };
    let added = candidates.len();
    // webrtcbin's signal takes its lock: off the tokio workers.
    let _ = tokio::task::spawn_blocking(move || {
        for (index, candidate) in candidates {
            webrtc.emit_by_name::<()>("add-ice-candidate", &[&index, &candidate]);
        }
    })
    .await;
    tracing::debug!(session = session_id, added, "trickled ICE candidates added");
    let mut r = Response::new(crate::http::headers::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    kind.cors(r.headers_mut());
    r
}
