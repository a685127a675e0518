//! The HTTP side of WebRTC signalling shared by WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep),
//! at the origin and through the edge's relay: CORS for browser pages on other origins, plain
//! text answers, the preflight, the `201 Created` SDP answer with its `Location`, and `405` with
//! `Allow`. One place, so the two endpoints cannot drift apart; they differ only in the
//! headers a browser may send (WHIP's `If-Match` for ICE restarts) and read (WHIP's
//! `Accept-Post`, `Retry-After` on a throttled publish).

use super::Body;
use super::headers;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// Which signalling protocol answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalling {
    Whip,
    Whep,
}

impl Signalling {
    /// Response headers a cross-origin page may read (RFC 9725 §4.1: `Location` at least).
    fn exposed_headers(self) -> &'static str {
        match self {
            Signalling::Whip => "Location, ETag, Link, Accept-Post, Retry-After",
            Signalling::Whep => "Location, ETag, Link",
        }
    }

    /// Request headers a cross-origin page may send.
    fn allowed_headers(self) -> &'static str {
        match self {
            Signalling::Whip => "Authorization, Content-Type, If-Match",
            Signalling::Whep => "Authorization, Content-Type, If-Match",
        }
    }

    /// CORS headers on every answer of this endpoint.
    pub fn cors(self, h: &mut HeaderMap) {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(self.exposed_headers()),
        );
    }

    /// A plain-text answer (errors, "session ended"), with CORS.
    pub fn text(self, status: StatusCode, msg: &str) -> Response<Body> {
        let mut r = headers::text(status, msg);
        self.cors(r.headers_mut());
        r
    }

    /// `405` naming the methods the resource takes.
    pub fn method_not_allowed(self, msg: &str, allow: &'static str) -> Response<Body> {
        let mut r = self.text(StatusCode::METHOD_NOT_ALLOWED, msg);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        r
    }

    /// The CORS preflight (`OPTIONS`).
    pub fn preflight(self) -> Response<Body> {
        let mut r = Response::new(headers::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        self.cors(h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(self.allowed_headers()),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        if self == Signalling::Whip {
            // RFC 9725 §4.2: an OPTIONS answer may say what POST takes.
            h.insert("accept-post", HeaderValue::from_static("application/sdp"));
        }
        r
    }

    /// `201 Created` with the SDP answer and the session's `Location`.
    pub fn created(self, answer: String, location: &str) -> Response<Body> {
        let mut r = Response::new(headers::full(Bytes::from(answer)));
        *r.status_mut() = StatusCode::CREATED;
        let h = r.headers_mut();
        self.cors(h);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/sdp"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(location) {
            h.insert(header::LOCATION, v);
        }
        r
    }

    /// `429` for a publisher that must wait (`Retry-After` in whole seconds, rounded up).
    pub fn too_many_requests(self, wait: std::time::Duration, msg: &str) -> Response<Body> {
        let mut r = self.text(StatusCode::TOO_MANY_REQUESTS, msg);
        let secs = wait.as_millis().div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// The header the edge's relay names the publisher in. One address, set by the relay (any
/// such header from the publisher is not relayed), so no list to walk.
pub const FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");

/// The address a signalling request is from: the TCP peer, unless the peer is a trusted relay
/// (a zoomate edge) that named the client in [`FORWARDED_FOR`]. A relay's header that is not
/// exactly one IP address is ignored (the relay is then the client).
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    is_trusted_relay: impl Fn(std::net::IpAddr) -> bool,
) -> std::net::IpAddr {
    if !is_trusted_relay(peer) {
        return peer;
    }
    headers
        .get(&FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::Duration;

    #[test]
    fn only_a_trusted_relay_names_the_client() {
        let relay: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.7".parse().unwrap();
        let trusted = |ip: IpAddr| ip == relay;
        let mut h = HeaderMap::new();
        h.insert(FORWARDED_FOR, HeaderValue::from_static("198.51.100.9"));
        assert_eq!(
            client_address(relay, &h, trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(stranger, &h, trusted), stranger);
        h.insert(
            FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.9, 10.0.0.1"),
        );
        assert_eq!(client_address(relay, &h, trusted), relay);
        assert_eq!(client_address(relay, &HeaderMap::new(), trusted), relay);
    }

    #[test]
    fn whip_and_whep_differ_only_in_their_headers() {
        let whip = Signalling::Whip.preflight();
        let whep = Signalling::Whep.preflight();
        assert_eq!(whip.status(), StatusCode::NO_CONTENT);
        assert_eq!(whep.status(), StatusCode::NO_CONTENT);
        let allowed = |r: &Response<Body>| {
            r.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .to_string()
        };
        assert!(allowed(&whip).contains("If-Match"));
        assert!(
            allowed(&whep).contains("If-Match"),
            "a WHEP PATCH carries If-Match too"
        );
        assert!(whip.headers().contains_key("accept-post"));
        assert!(!whep.headers().contains_key("accept-post"));
        let created = Signalling::Whep.created("v=0\r\n".into(), "/whep/a/b");
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(created.headers()[header::LOCATION], "/whep/a/b");
        assert_eq!(created.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = Signalling::Whip.too_many_requests(Duration::from_millis(1500), "wait");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = Signalling::Whip.too_many_requests(Duration::from_millis(10), "wait");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
