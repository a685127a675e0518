//! WHIP (and WHEP) through the edge: `POST /whip/{stream}` and its session's `DELETE` are relayed to the
//! origin that serves (or, for a new stream, would serve) the stream, so publishers need only
//! the edge's address (`zoomate run` takes `http://HOST:8080/whip/{stream}`). Signalling only:
//! the media goes from the publisher to the origin's ICE candidates directly.
//!
//! A POST goes to the first candidate of the balancer for the stream. The session it creates
//! (its `Location`) is remembered with the origin that answered, so the session's `PATCH`
//! (trickle ICE) and `DELETE` reach that origin whatever the balance policy (round-robin or
//! least-connections would pick another) and however the origin set changed since; a session
//! the edge does not know (it restarted) goes to the first candidate, as the POST did. No
//! retry on another origin: a POST starts a session and is not idempotent.

use super::balancer::OriginSet;
use crate::http::Body;
use crate::http::headers;
use crate::http::signalling::Signalling;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::Duration;

/// Sessions whose origin is remembered (a publisher's session lives as long as it publishes).
const MAX_SESSIONS: u64 = 100_000;
/// A session not PATCHed or DELETEd for this long is forgotten (its publisher may still be
/// live: a DELETE after that goes to the first candidate, as without the memory).
const SESSION_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Largest body relayed either way (an SDP offer or answer; the origin has its own, smaller, limit).
const MAX_RELAY_BYTES: usize = 1 << 20;

/// Headers passed to the origin and back (everything else is hop-by-hop or ours).
const REQUEST_HEADERS: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    header::IF_MATCH,
];
const RESPONSE_HEADERS: [header::HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::RETRY_AFTER,
    header::LOCATION,
    header::ETAG,
    header::ALLOW,
    header::WWW_AUTHENTICATE,
    header::LINK,
];

pub struct WhipRelay {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Session resource path (the POST's `Location`) → id of the origin that created it.
    sessions: moka::sync::Cache<String, String>,
    /// Negotiation at the origin includes ICE gathering: a longer bound than a segment fetch.
    timeout: Duration,
}

impl WhipRelay {
    pub fn new(timeout: Duration) -> WhipRelay {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        WhipRelay {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(SESSION_MEMORY)
                .build(),
            timeout,
        }
    }

    /// Relays one WHIP request for `path` (already known to start with `/whip/`).
    pub async fn relay<B>(&self, origins: &OriginSet, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        let kind = if path.starts_with(crate::whep::WHEP_PREFIX) {
            Signalling::Whep
        } else {
            Signalling::Whip
        };
        let Some(stream) = path
            .strip_prefix(crate::layout::WHIP_PREFIX)
            .or_else(|| path.strip_prefix(crate::whep::WHEP_PREFIX))
            .and_then(|rest| rest.split('/').next())
            .filter(|s| crate::config::is_valid_name(s))
            .map(str::to_string)
        else {
            return kind.text(StatusCode::NOT_FOUND, "no such WHIP resource");
        };
        let is_post = req.method() == http::Method::POST;
        let pinned = (!is_post)
            .then(|| self.sessions.get(&path))
            .flatten()
            .map(|id| origins.snapshot().iter().find(|o| o.id == id).cloned());
        let origin = match pinned {
            Some(Some(origin)) => origin,
            // The origin that holds the session left the set: nobody else knows the session.
            Some(None) => return kind.text(StatusCode::NOT_FOUND, "no such WHIP session"),
            None => match origins.candidates(&stream).into_iter().next() {
                Some(origin) => origin,
                None => return kind.text(StatusCode::SERVICE_UNAVAILABLE, "no origin available"),
            },
        };
        let method = req.method().clone();
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_RELAY_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return kind.text(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        };
        let uri: http::Uri = match format!("{}{}", origin.base_url, path).parse() {
            Ok(u) => u,
            Err(_) => return kind.text(StatusCode::BAD_GATEWAY, "bad origin URL"),
        };
        let mut out = Request::builder().method(parts.method).uri(uri);
        for name in REQUEST_HEADERS {
            if let Some(v) = parts.headers.get(&name) {
                out = out.header(name, v);
            }
        }
        // The origin counts failed publishes per address (and tells the auth callback the
        // address): it is told the publisher's, or every publisher behind this edge would share
        // one budget. The origin believes this only from its `webrtc.trusted_relays`.
        if let Some(client) = parts.extensions.get::<crate::http::ClientAddr>() {
            out = out.header(
                crate::http::signalling::FORWARDED_FOR,
                client.0.ip().to_canonical().to_string(),
            );
        }
        let Ok(out) = out.body(Full::new(body)) else {
            return kind.text(StatusCode::BAD_REQUEST, "bad request");
        };
        let _in_flight = origin.start_request();
        let resp = match tokio::time::timeout(self.timeout, self.client.request(out)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(origin = %origin.id, stream, error = %e, "WHIP relay failed");
                return kind.text(StatusCode::BAD_GATEWAY, "origin unreachable");
            }
            Err(_) => {
                return kind.text(StatusCode::GATEWAY_TIMEOUT, "origin did not answer in time");
            }
        };
        let (rparts, rbody) = resp.into_parts();
        self.remember(&method, &path, &origin.id, &rparts);
        let body = match tokio::time::timeout(
            self.timeout,
            Limited::new(rbody, MAX_RELAY_BYTES).collect(),
        )
        .await
        {
            Ok(Ok(b)) => b.to_bytes(),
            _ => return kind.text(StatusCode::BAD_GATEWAY, "origin's answer was cut short"),
        };
        let mut r = Response::new(headers::full(body));
        *r.status_mut() = rparts.status;
        let h = r.headers_mut();
        for name in RESPONSE_HEADERS {
            if let Some(v) = rparts.headers.get(&name) {
                h.insert(name, v.clone());
            }
        }
        kind.cors(h);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// A created session is pinned to `origin`; an ended one is forgotten.
    fn remember(
        &self,
        method: &http::Method,
        path: &str,
        origin: &str,
        resp: &http::response::Parts,
    ) {
        if *method == http::Method::POST && resp.status == StatusCode::CREATED {
            // The origin's Location is a path on the origin, which the edge relays as is.
            let location = resp
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| l.split('?').next().unwrap_or(l));
            if let Some(l) = location.filter(|l| l.starts_with('/')) {
                self.sessions.insert(l.to_string(), origin.to_string());
            }
        } else if *method == http::Method::DELETE && resp.status.is_success() {
            self.sessions.invalidate(path);
        }
    }

    /// Which origin a session resource is pinned to, if any.
    #[cfg(test)]
    fn pinned_origin(&self, session_path: &str) -> Option<String> {
        self.sessions.get(session_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(status: StatusCode, location: Option<&str>) -> http::response::Parts {
        let mut b = Response::builder().status(status);
        if let Some(l) = location {
            b = b.header(header::LOCATION, l);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_created_session_is_pinned_to_its_origin_until_it_is_deleted() {
        let relay = WhipRelay::new(Duration::from_secs(1));
        let post = http::Method::POST;
        relay.remember(
            &post,
            "/whip/cam",
            "origin-b",
            &parts(StatusCode::CREATED, Some("/whip/cam/s1")),
        );
        assert_eq!(
            relay.pinned_origin("/whip/cam/s1").as_deref(),
            Some("origin-b")
        );
        // A refused POST, or an absolute or missing Location, pins nothing.
        relay.remember(
            &post,
            "/whip/cam",
            "origin-a",
            &parts(StatusCode::CONFLICT, Some("/whip/cam/s2")),
        );
        relay.remember(
            &post,
            "/whip/cam",
            "origin-a",
            &parts(StatusCode::CREATED, Some("http://x/whip/cam/s3")),
        );
        relay.remember(
            &post,
            "/whip/cam",
            "origin-a",
            &parts(StatusCode::CREATED, None),
        );
        assert_eq!(relay.pinned_origin("/whip/cam/s2"), None);
        assert_eq!(relay.pinned_origin("http://x/whip/cam/s3"), None);
        // A PATCH keeps it; a failed DELETE keeps it; a DELETE that ended it forgets it.
        relay.remember(
            &http::Method::PATCH,
            "/whip/cam/s1",
            "origin-b",
            &parts(StatusCode::NO_CONTENT, None),
        );
        relay.remember(
            &http::Method::DELETE,
            "/whip/cam/s1",
            "origin-b",
            &parts(StatusCode::BAD_GATEWAY, None),
        );
        assert_eq!(
            relay.pinned_origin("/whip/cam/s1").as_deref(),
            Some("origin-b")
        );
        relay.remember(
            &http::Method::DELETE,
            "/whip/cam/s1",
            "origin-b",
            &parts(StatusCode::OK, None),
        );
        assert_eq!(relay.pinned_origin("/whip/cam/s1"), None);
    }
}
