//! Fetching from origins: one GET, tried on the balancer's candidates in order. A failure
//! before a usable response (connect error, no headers in time, a 5xx status) is retried on the
//! next origin and counted against the one that failed (passive ejection). So is a body cut
//! short (the connection ended before the declared length: an origin killed mid-response),
//! because the edge holds the whole body before it answers, so the viewer sees nothing of the
//! failed attempt, and with redundant origins (`timing = "wallclock"`) the next origin has the
//! same object under the same name. A body that is too slow or too large is not retried
//! ([`AttemptError::retry_safe`]), as nginx's `proxy_next_upstream` does not: the origin is
//! alive and answering, and a retry would double the load of a struggling tier for one object.
//! A 404 is an answer, not a failure, but another origin is asked too; so is an LL-HLS
//! blocking request an origin refused at once with 503 (it does not have the stream live)
//! rather than after holding it.
//!
//! A body is only ever accepted whole: its length must be what the origin declared
//! (`Content-Length`, or chunked framing through to the last chunk). A response with neither
//! (close-delimited, HTTP/1.0 style) is refused: an origin dying mid-body would look exactly
//! like its end, and the edge would cache and serve the truncated object for good.

use super::balancer::{Origin, OriginSet};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::Arc;
use std::time::Duration;

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Origins one request may try (the best candidates first): a failover needs one or two more,
/// and a request must not fan out over every origin the edge knows.
pub const MAX_ORIGIN_ATTEMPTS: usize = 3;

/// An origin's successful answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub body: Bytes,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub origin: String,
}

/// What went wrong with one attempt at one origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    #[error("bad origin URL: {0}")]
    BadUrl(String),
    /// Connecting or sending failed: nothing reached the origin's application.
    #[error("request: {0}")]
    Request(String),
    #[error("no response headers within {0:?}")]
    HeadersTimeout(Duration),
    /// The origin answered with an error status (5xx, or another non-2xx but 404).
    #[error("status {0}")]
    Status(u16),
    /// Headers arrived, the body did not (in time, within the size limit, or framed).
    #[error("body: {0}")]
    Body(String),
    /// Headers arrived, then the connection ended before the body's declared end.
    #[error("body cut short: {0}")]
    BodyCut(String),
}

/// How an origin's response says where its body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`: the decoder fails on a body that stops before its last chunk.
    Chunked,
    /// Neither: the body ends when the connection closes, whether or not it was complete.
    CloseDelimited,
}

impl Framing {
    /// From the response headers (RFC 9112 §6.3: chunked wins over a length).
    pub fn of(headers: &http::HeaderMap) -> Framing {
        let chunked = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return Framing::Chunked;
        }
        match headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
        {
            Some(n) => Framing::Length(n),
            None => Framing::CloseDelimited,
        }
    }

    /// Whether `received` bytes are the whole body this framing declared. (hyper already fails
    /// a short body; this is the edge's own rule, and the one place close-delimited is refused.)
    pub fn complete(self, received: usize) -> Result<(), String> {
        match self {
            Framing::Length(n) if n == received as u64 => Ok(()),
            Framing::Length(n) => Err(format!("{received} of {n} bytes")),
            Framing::Chunked => Ok(()),
            Framing::CloseDelimited => Err(format!(
                "{received} bytes without Content-Length or chunked framing: an early close cannot be told from the end"
            )),
        }
    }
}

impl AttemptError {
    /// Whether another origin may be tried: before a response, or after the connection broke
    /// mid-body; not when a live origin was too slow or sent too much.
    pub fn retry_safe(&self) -> bool {
        !matches!(self, AttemptError::Body(_))
    }
}

/// Why a fetch produced nothing cacheable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The origin that has the stream says there is no such object (not cached; retried next time).
    #[error("not found at origin")]
    NotFound,
    #[error("no origin answered: {0}")]
    Unavailable(String),
    /// LL-HLS: the origin could not answer a blocking request in time (its 503): an answer,
    /// passed on to the viewer, not a failure of the origin.
    #[error("the origin's blocking request timed out")]
    HoldTimeout,
    /// The origin refused the request (a 4xx other than 404, e.g. LL-HLS directives beyond its
    /// playlist): the viewer's fault, passed on, never counted against the origin.
    #[error("refused by the origin with {0}")]
    Refused(u16),
}

/// How long one attempt may wait for response headers, and whether the origin may hold it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// `Some(hold)`: an LL-HLS blocking request the origin may hold up to `hold` (added to
    /// the headers timeout); its 503 is the origin's answer, not a failure.
    pub held: Option<Duration>,
}

pub fn client(timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    connector.set_nodelay(true);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

pub struct Upstream {
    pub client: HttpClient,
    pub origins: Arc<OriginSet>,
    pub timeout: Duration,
    pub max_object_bytes: usize,
    pub fall: u32,
    pub rise: u32,
    /// Origin GETs (retries included) and retries on another origin, for `/metrics`.
    pub fetches: crate::http::metrics::Counter,
    pub failovers: crate::http::metrics::Counter,
}

impl Upstream {
    /// GETs `path` for `stream` from the best origin that answers.
    pub async fn fetch(
        &self,
        stream: &str,
        path: &str,
        attempt_kind: Attempt,
    ) -> Result<Fetched, FetchError> {
        let candidates = self.origins.candidates(stream);
        if candidates.is_empty() {
            return Err(FetchError::Unavailable(
                "no origins configured or discovered".into(),
            ));
        }
        let mut last_error = String::new();
        let mut not_found = false;
        // When the first attempt failed: the failover time is from there to a success.
        let mut first_failure: Option<std::time::Instant> = None;
        let mut refused_hold = false;
        for (attempt, origin) in candidates.into_iter().take(MAX_ORIGIN_ATTEMPTS).enumerate() {
            if attempt > 0 {
                self.failovers.inc();
            }
            self.fetches.inc();
            let _in_flight = origin.start_request();
            let attempt_started = std::time::Instant::now();
            match self.fetch_one(&origin, path, attempt_kind).await {
                Ok(Some(f)) => {
                    origin.record_success(self.rise);
                    if let Some(at) = first_failure {
                        tracing::info!(origin = %origin.id, path,
                            failover_ms = at.elapsed().as_millis() as u64,
                            "served after failing over");
                    }
                    return Ok(f);
                }
                Err(AttemptError::Status(503)) if attempt_kind.held.is_some() => {
                    origin.record_success(self.rise);
                    // A 503 well before the hold ran out is an origin that would not hold (it
                    // does not have the stream live: a restarted redundant origin): another
                    // origin may. One that held and timed out has answered.
                    let hold = attempt_kind.held.unwrap_or_default();
                    if attempt_started.elapsed() >= hold / 2 {
                        return Err(FetchError::HoldTimeout);
                    }
                    refused_hold = true;
                }
                Err(AttemptError::Status(status)) if (400..500).contains(&status) => {
                    origin.record_success(self.rise);
                    return Err(FetchError::Refused(status));
                }
                Ok(None) => {
                    // 404 from a healthy origin: another origin may have it (a stream that just
                    // moved), but it is not a failure of this one.
                    not_found = true;
                }
                Err(e) => {
                    origin.record_failure(self.fall);
                    first_failure.get_or_insert_with(std::time::Instant::now);
                    if !e.retry_safe() {
                        tracing::warn!(origin = %origin.id, path, error = %e, "origin failed mid-response; not retried");
                        return Err(FetchError::Unavailable(format!("{}: {e}", origin.id)));
                    }
                    tracing::warn!(origin = %origin.id, path, error = %e, "origin fetch failed; trying the next origin");
                    last_error = e.to_string();
                }
            }
        }
        if refused_hold {
            Err(FetchError::HoldTimeout)
        } else if not_found {
            Err(FetchError::NotFound)
        } else {
            Err(FetchError::Unavailable(last_error))
        }
    }

    /// GETs `path` from the origin known as `origin_id` only (an announced segment is fetched
    /// from the origin that announced it, nowhere else). No failover: the announcement vouches
    /// for that copy alone.
    pub async fn fetch_from(&self, origin_id: &str, path: &str) -> Result<Fetched, FetchError> {
        let Some(origin) = self
            .origins
            .snapshot()
            .iter()
            .find(|o| o.id == origin_id)
            .cloned()
        else {
            return Err(FetchError::Unavailable(format!(
                "origin {origin_id} is not in the origin set"
            )));
        };
        self.fetches.inc();
        let _in_flight = origin.start_request();
        match self.fetch_one(&origin, path, Attempt { held: None }).await {
            Ok(Some(f)) => {
                origin.record_success(self.rise);
                Ok(f)
            }
            Ok(None) => Err(FetchError::NotFound),
            Err(e) => {
                origin.record_failure(self.fall);
                Err(FetchError::Unavailable(e.to_string()))
            }
        }
    }

    /// Ok(None) = 404.
    async fn fetch_one(
        &self,
        origin: &Origin,
        path: &str,
        attempt_kind: Attempt,
    ) -> Result<Option<Fetched>, AttemptError> {
        let headers_timeout = self.timeout + attempt_kind.held.unwrap_or_default();
        let uri: http::Uri = format!("{}{}", origin.base_url, path)
            .parse()
            .map_err(|e: http::uri::InvalidUri| AttemptError::BadUrl(e.to_string()))?;
        let req = http::Request::get(uri)
            .body(Empty::<Bytes>::new())
            .map_err(|e| AttemptError::BadUrl(e.to_string()))?;
        let resp = tokio::time::timeout(headers_timeout, self.client.request(req))
            .await
            .map_err(|_| AttemptError::HeadersTimeout(headers_timeout))?
            .map_err(|e| AttemptError::Request(e.to_string()))?;
        let status = resp.status();
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(AttemptError::Status(status.as_u16()));
        }
        let header = |n: http::HeaderName| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (
            header(http::header::ETAG),
            header(http::header::LAST_MODIFIED),
        );
        let framing = Framing::of(resp.headers());
        // The body has its own (longer) bound: a segment may take a while on a slow link.
        let body = tokio::time::timeout(
            self.timeout * 4,
            Limited::new(resp.into_body(), self.max_object_bytes).collect(),
        )
        .await
        .map_err(|_| AttemptError::Body(format!("not complete within {:?}", self.timeout * 4)))?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                AttemptError::Body(e.to_string())
            } else {
                AttemptError::BodyCut(e.to_string())
            }
        })?
        .to_bytes();
        framing.complete(body.len()).map_err(|e| match framing {
            Framing::Length(_) => AttemptError::BodyCut(e),
            _ => AttemptError::Body(e),
        })?;
        Ok(Some(Fetched {
            body,
            etag,
            last_modified,
            origin: origin.id.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_before_a_response_and_cut_bodies_are_retried() {
        for e in [
            AttemptError::BadUrl("x".into()),
            AttemptError::Request("refused".into()),
            AttemptError::HeadersTimeout(Duration::from_secs(1)),
            AttemptError::Status(503),
            AttemptError::BodyCut("connection reset".into()),
        ] {
            assert!(e.retry_safe(), "{e}");
        }
        assert!(!AttemptError::Body("too large".into()).retry_safe());
    }

    #[test]
    fn only_a_body_of_the_declared_length_is_complete() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = http::HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let length = Framing::of(&headers(&[("content-length", "65536")]));
        assert_eq!(length, Framing::Length(65536));
        assert!(length.complete(65536).is_ok());
        assert!(length.complete(100).is_err());
        let chunked = Framing::of(&headers(&[
            ("content-length", "5"),
            ("transfer-encoding", "gzip, Chunked"),
        ]));
        assert_eq!(chunked, Framing::Chunked);
        assert!(chunked.complete(100).is_ok());
        let unframed = Framing::of(&headers(&[("content-type", "video/mp2t")]));
        assert_eq!(unframed, Framing::CloseDelimited);
        assert!(unframed.complete(100).is_err());
        assert_eq!(
            Framing::of(&headers(&[("content-length", "x")])),
            Framing::CloseDelimited
        );
    }
}
