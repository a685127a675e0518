//! `/console/`: the web console's static files, embedded in the binary (`assets/console/`,
//! with hls.js and dash.js vendored by `scripts/vendor-console` at pinned versions), so the
//! console works offline and fetches nothing from a CDN. Each file is one [`Representation`]
//! built once (content type, strong ETag from the bytes, Cache-Control), answered with the
//! shared HTTP semantics (304 on `If-None-Match`, HEAD, Range).

use crate::http::Body;
use crate::http::headers::{self, Representation};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use std::sync::OnceLock;

/// Where the console lives.
pub const CONSOLE_PATH: &str = "/console/";

/// Our own files may change with any release: revalidate (cheap, with the ETag) every time.
const OWN: &str = "no-cache";
/// The player libraries change only when their pins do.
const VENDORED: &str = "public, max-age=86400";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ct:literal, $cc:expr) => {
        Asset {
            name: $name,
            content_type: $ct,
            cache_control: $cc,
            bytes: include_bytes!(concat!("../../assets/console/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8", OWN),
    asset!("console.js", "text/javascript; charset=utf-8", OWN),
    asset!("console.css", "text/css; charset=utf-8", OWN),
    asset!(
        "vendor/hls.min.js",
        "text/javascript; charset=utf-8",
        VENDORED
    ),
    asset!(
        "vendor/dash.all.min.js",
        "text/javascript; charset=utf-8",
        VENDORED
    ),
    asset!(
        "vendor/hls.js-LICENSE",
        "text/plain; charset=utf-8",
        VENDORED
    ),
    asset!(
        "vendor/dashjs-LICENSE.md",
        "text/plain; charset=utf-8",
        VENDORED
    ),
    asset!("vendor/VERSIONS", "text/plain; charset=utf-8", VENDORED),
];

/// Every asset's representation, built on first use (the ETag hashes the bytes once).
fn representations() -> &'static [(&'static str, Representation)] {
    static REPS: OnceLock<Vec<(&'static str, Representation)>> = OnceLock::new();
    REPS.get_or_init(|| {
        // The files cannot change while the process runs: its start is their modification.
        let built = std::time::SystemTime::now();
        ASSETS
            .iter()
            .map(|a| {
                let rep = Representation::new(
                    Bytes::from_static(a.bytes),
                    a.content_type,
                    a.cache_control.to_string(),
                    built,
                );
                (a.name, rep)
            })
            .collect()
    })
}

/// Whether `path` is the console's.
pub fn owns(path: &str) -> bool {
    path == "/console" || path.starts_with(CONSOLE_PATH)
}

/// Answers a console path (see [`owns`]).
pub fn respond(method: &Method, path: &str, request_headers: &HeaderMap) -> Response<Body> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        let mut r = headers::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(name) = path.strip_prefix(CONSOLE_PATH) else {
        // `/console`: relative URLs in the page need the trailing slash.
        let mut r = Response::new(headers::empty());
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static(CONSOLE_PATH));
        return r;
    };
    let name = if name.is_empty() { "index.html" } else { name };
    match representations().iter().find(|(n, _)| *n == name) {
        Some((_, rep)) => {
            let mut r = headers::respond(method, request_headers, rep);
            // The console is ours only: no other site may frame it or guess its types.
            let h = r.headers_mut();
            h.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
            h.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            r
        }
        None => headers::text(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_served_with_types_validators_and_redirects() {
        let index = respond(&Method::GET, "/console/", &HeaderMap::new());
        assert_eq!(index.status(), 200);
        assert_eq!(
            index.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(index.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = index.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            respond(&Method::GET, "/console/index.html", &h).status(),
            304
        );
        let hls = respond(
            &Method::HEAD,
            "/console/vendor/hls.min.js",
            &HeaderMap::new(),
        );
        assert_eq!(hls.status(), 200);
        assert_eq!(
            hls.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let redirect = respond(&Method::GET, "/console", &HeaderMap::new());
        assert_eq!(redirect.status(), 308);
        assert_eq!(redirect.headers()[header::LOCATION], "/console/");
        assert_eq!(
            respond(&Method::GET, "/console/../secret", &HeaderMap::new()).status(),
            404
        );
        assert_eq!(
            respond(&Method::POST, "/console/", &HeaderMap::new()).status(),
            405
        );
        assert!(owns("/console") && owns("/console/x") && !owns("/consoles"));
    }
}
