//! Response semantics shared by the origin and the edge, over an in-memory body: Cache-Control
//! per resource kind, CORS, ETag/If-None-Match → 304, Last-Modified, single Range → 206 (only
//! while an `If-Range` validator, if any, still matches), HEAD.

use super::Body;
use super::paths::ResourceKind;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use std::time::SystemTime;

/// One representation of a resource, ready to answer any GET/HEAD for it.
#[derive(Debug, Clone)]
pub struct Representation {
    pub body: Bytes,
    pub content_type: &'static str,
    pub cache_control: String,
    pub etag: String,
    pub last_modified: SystemTime,
}

impl Representation {
    pub fn new(
        body: Bytes,
        content_type: &'static str,
        cache_control: String,
        last_modified: SystemTime,
    ) -> Representation {
        let etag = strong_etag(&body);
        Representation {
            body,
            content_type,
            cache_control,
            etag,
            last_modified,
        }
    }
}

/// A strong validator from the content itself: identical bytes on any origin → same ETag, so
/// an edge can revalidate against whichever origin it picks. XXH3-64 is a specified algorithm
/// (unlike `std`'s `DefaultHasher`), so origins and edges built at different times agree.
pub fn strong_etag(body: &[u8]) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(body);
    format!("\"{:x}-{h:016x}\"", body.len())
}

/// Cache-Control for a kind. Segment names are never reused, so they are immutable; live
/// playlists change every segment, so at most half a target duration (`live_max_age_s`).
pub fn cache_control(kind: ResourceKind, live: bool, live_max_age_s: u64) -> String {
    match (kind.is_playlist(), live) {
        (true, true) => format!("public, max-age={}", live_max_age_s.max(1)),
        (true, false) => "public, max-age=86400".into(),
        (false, _) => "public, max-age=31536000, immutable".into(),
    }
}

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Adds the CORS headers browser players (hls.js, dash.js, shaka) need.
pub fn add_cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "Content-Length, Content-Range, Accept-Ranges, ETag, Age, X-Cache",
        ),
    );
}

/// A plain-text response (errors, health), never cached.
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_cors(r.headers_mut());
    r
}

/// The routes every zoomate HTTP listener shares, answered before media routing: CORS
/// preflight, `/healthz`, `/metrics` (text from `metrics`), the clock players synchronise to
/// (`/time`, the live MPD's `UTCTiming`), and 405 for methods other than GET/HEAD. `None` means: a GET/HEAD for the caller to route.
pub fn common_routes(
    method: &Method,
    path: &str,
    metrics: impl FnOnce() -> String,
) -> Option<Response<Body>> {
    match (method, path) {
        (&Method::OPTIONS, _) => Some(preflight()),
        (&Method::GET | &Method::HEAD, "/healthz") => Some(text(StatusCode::OK, "ok")),
        (&Method::GET | &Method::HEAD, crate::layout::TIME_PATH) => Some(clock()),
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, metrics().trim_end());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(super::metrics::CONTENT_TYPE),
            );
            Some(r)
        }
        (&Method::GET | &Method::HEAD, _) => None,
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            Some(r)
        }
    }
}

/// `/time`: this server's clock as ISO 8601 with milliseconds (`urn:mpeg:dash:utc:http-iso:2014`),
/// never cached. Every zoomate node writes segment times from its wall clock, so a player that
/// synchronises to it sees the live edge where the origin put it.
fn clock() -> Response<Body> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut r = Response::new(full(Bytes::from(crate::packaging::hls::rfc3339_millis(
        now_ms,
    ))));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_cors(h);
    r
}

/// CORS preflight.
pub fn preflight() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    add_cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Range, If-None-Match, If-Modified-Since"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// A single satisfiable byte range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    None,
    Satisfiable(u64, u64),
    Unsatisfiable,
}

/// Parses `Range: bytes=a-b | a- | -n`. Multiple ranges → `None` (serve the whole body: allowed
/// by RFC 9110 14.2, and players never ask for them).
pub fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::None;
    };
    if spec.contains(',') {
        return RangeRequest::None;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::None;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            Err(_) => return RangeRequest::None,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return RangeRequest::None;
            };
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(e) => e.min(len.saturating_sub(1)),
                    Err(_) => return RangeRequest::None,
                }
            };
            if !b.is_empty() && b.parse::<u64>().map(|e| e < start).unwrap_or(true) {
                return RangeRequest::None; // syntactically invalid: ignore the header
            }
            (start, end)
        }
        (true, true) => return RangeRequest::None,
    };
    if len == 0 || range.0 >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Satisfiable(range.0, range.1)
    }
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
}

/// Whether the `If-Range` validator `value` still names `rep`, so its `Range` may be honoured
/// (RFC 9110 §13.1.5). An entity tag matches by strong comparison only (a weak tag never does);
/// a date matches only if it is exactly `Last-Modified` and that is a strong validator, i.e. at
/// least a second older than `now` (§8.8.2.2: a resource changed within the second of its
/// `Last-Modified` may have changed again under the same date). Anything else does not match:
/// the client then gets the whole representation, never a range of bytes it cannot splice.
pub fn if_range_matches(value: &str, rep: &Representation, now: SystemTime) -> bool {
    let value = value.trim();
    if value.starts_with("W/") {
        return false;
    }
    if value.starts_with('"') {
        return value == rep.etag && !rep.etag.starts_with("W/");
    }
    let Ok(date) = httpdate::parse_http_date(value) else {
        return false;
    };
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .ok()
    };
    match (secs(date), secs(rep.last_modified), secs(now)) {
        (Some(date), Some(modified), Some(now)) => date == modified && modified < now,
        _ => false,
    }
}

/// Answers GET/HEAD for `rep`, honouring conditional and range headers.
pub fn respond(method: &Method, req: &HeaderMap, rep: &Representation) -> Response<Body> {
    respond_at(method, req, rep, SystemTime::now())
}

/// [`respond`] as of `now` (which judges whether `Last-Modified` is a strong validator).
pub fn respond_at(
    method: &Method,
    req: &HeaderMap,
    rep: &Representation,
    now: SystemTime,
) -> Response<Body> {
    let mut r = Response::new(empty());
    {
        let h = r.headers_mut();
        add_cors(h);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(rep.content_type),
        );
        if let Ok(v) = HeaderValue::from_str(&rep.cache_control) {
            h.insert(header::CACHE_CONTROL, v);
        }
        if let Ok(v) = HeaderValue::from_str(&rep.etag) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(rep.last_modified)) {
            h.insert(header::LAST_MODIFIED, v);
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let inm = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let not_modified = match inm {
        Some(v) => etag_matches(v, &rep.etag),
        None => req
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(|since| {
                let lm = rep
                    .last_modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let since = since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                lm <= since
            })
            .unwrap_or(false),
    };
    if not_modified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    let len = rep.body.len() as u64;
    // RFC 9110 §13.1.5: a Range whose If-Range no longer matches is ignored (the whole 200).
    let range_header = req.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range_header = match req.get(header::IF_RANGE) {
        Some(v) if !v.to_str().is_ok_and(|v| if_range_matches(v, rep, now)) => None,
        _ => range_header,
    };
    let (status, body) = match parse_range(range_header, len) {
        RangeRequest::None => (StatusCode::OK, rep.body.clone()),
        RangeRequest::Satisfiable(a, b) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            (
                StatusCode::PARTIAL_CONTENT,
                rep.body.slice(a as usize..=b as usize),
            )
        }
        RangeRequest::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
    };
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if method != Method::HEAD {
        *r.body_mut() = full(body);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep() -> Representation {
        Representation::new(
            Bytes::from_static(b"0123456789"),
            "video/mp2t",
            "public".into(),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        )
    }

    fn req(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn etag_is_pinned_to_xxh3_64() {
        // XXH3-64 of the empty input, from the xxHash specification's reference output.
        assert_eq!(strong_etag(b""), "\"0-2d06800538d394c2\"");
        // Changing the algorithm changes every validator an origin fleet hands out: make it loud.
        assert_eq!(strong_etag(b"0123456789"), PINNED_ETAG_0123456789);
    }

    const PINNED_ETAG_0123456789: &str = "\"a-6de3431b05f7c11f\"";

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range(Some("bytes=2-4"), 10),
            RangeRequest::Satisfiable(2, 4)
        );
        assert_eq!(
            parse_range(Some("bytes=8-"), 10),
            RangeRequest::Satisfiable(8, 9)
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            RangeRequest::Satisfiable(7, 9)
        );
        assert_eq!(
            parse_range(Some("bytes=5-100"), 10),
            RangeRequest::Satisfiable(5, 9)
        );
        assert_eq!(
            parse_range(Some("bytes=10-"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=1-2,4-5"), 10), RangeRequest::None);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeRequest::None);
        assert_eq!(parse_range(Some("items=1-2"), 10), RangeRequest::None);
        assert_eq!(parse_range(Some("bytes=x-y"), 10), RangeRequest::None);
    }

    #[test]
    fn conditional_range_and_head() {
        let r = rep();
        let ok = respond(&Method::GET, &HeaderMap::new(), &r);
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()[header::CONTENT_LENGTH], "10");
        let etag = ok.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(
            respond(&Method::GET, &req(&[(header::IF_NONE_MATCH, &etag)]), &r).status(),
            304
        );
        assert_eq!(
            respond(
                &Method::GET,
                &req(&[(header::IF_NONE_MATCH, "\"other\"")]),
                &r
            )
            .status(),
            200
        );
        let partial = respond(&Method::GET, &req(&[(header::RANGE, "bytes=2-4")]), &r);
        assert_eq!(partial.status(), 206);
        assert_eq!(partial.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(partial.headers()[header::CONTENT_LENGTH], "3");
        assert_eq!(
            respond(&Method::GET, &req(&[(header::RANGE, "bytes=20-")]), &r).status(),
            416
        );
        let head = respond(&Method::HEAD, &HeaderMap::new(), &r);
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "10");
        assert_eq!(head.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn if_range_honours_the_range_only_while_the_validator_matches() {
        let r = rep();
        let lm = httpdate::fmt_http_date(r.last_modified);
        let later = r.last_modified + std::time::Duration::from_secs(60);
        let status = |if_range: &str, now: SystemTime| {
            respond_at(
                &Method::GET,
                &req(&[(header::RANGE, "bytes=2-4"), (header::IF_RANGE, if_range)]),
                &r,
                now,
            )
        };
        // The current strong ETag, or exactly Last-Modified (a second or more ago): the range.
        assert_eq!(status(&r.etag, later).status(), 206);
        assert_eq!(status(&lm, later).status(), 206);
        // Anything else: the whole representation, never a range of other bytes.
        for other in [
            "\"other\"".to_string(),
            format!("W/{}", r.etag),
            httpdate::fmt_http_date(later),
            httpdate::fmt_http_date(r.last_modified - std::time::Duration::from_secs(1)),
            "not a validator".to_string(),
            String::new(),
        ] {
            let full = status(&other, later);
            assert_eq!(full.status(), 200, "If-Range: {other}");
            assert_eq!(full.headers()[header::CONTENT_LENGTH], "10");
            assert!(!full.headers().contains_key(header::CONTENT_RANGE));
        }
        // A Last-Modified within the current second is weak (§8.8.2.2): no range on a date.
        assert_eq!(status(&lm, r.last_modified).status(), 200);
        assert_eq!(status(&r.etag, r.last_modified).status(), 206);
        // A weak entity tag never matches, even the resource's own.
        let mut weak = rep();
        weak.etag = format!("W/{}", weak.etag);
        let w = respond_at(
            &Method::GET,
            &req(&[(header::RANGE, "bytes=2-4"), (header::IF_RANGE, &weak.etag)]),
            &weak,
            later,
        );
        assert_eq!(w.status(), 200);
        // If-Range without Range changes nothing.
        let plain = respond_at(
            &Method::GET,
            &req(&[(header::IF_RANGE, "\"other\"")]),
            &r,
            later,
        );
        assert_eq!(plain.status(), 200);
    }
}
