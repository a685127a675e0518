//! WHIP (and WHEP) through the edge: `POST /whip/{stream}` and its session's `DELETE` are relayed to the
//! origin that serves (or, for a new stream, would serve) the stream, so publishers need only
//! the edge's address (`zoomate run` takes `http://HOST:8080/whip/{stream}`). Signalling only:
//! the media goes from the publisher to the origin's ICE candidates directly.
//!
//! The origin is the first candidate of the balancer for the stream (rendezvous hashing, so a
//! DELETE reaches the origin that took the POST). No retry on another origin: a POST starts a
//! session and is not idempotent.

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
        let Some(origin) = origins.candidates(&stream).into_iter().next() else {
            return kind.text(StatusCode::SERVICE_UNAVAILABLE, "no origin available");
        };
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
}
