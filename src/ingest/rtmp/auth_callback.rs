//! Publish authorisation by HTTP callback, nginx-rtmp `on_publish` style: before a publish
//! starts, zoomate POSTs what it knows of it to `rtmp.auth_callback.url`; a 2xx answer allows
//! it, anything else denies it. Answers are cached for a while, so a publisher reconnecting (or
//! a flapping encoder) does not call the service every time.
//!
//! Semantics (README "Publish authorisation by callback"):
//! - **fail closed**: a timeout (`timeout_ms` for the whole exchange), a refused connection or
//!   an unreadable answer denies the publish, and is not cached (the next attempt asks again);
//! - **2xx allows, any other status denies**; both answers are cached for `cache_ttl_ms`
//!   (0 = never cached), at most `cache_max_entries` of them (moka, LRU-ish eviction);
//! - the cache is keyed by a keyed hash of stream + key + application, so the key itself is
//!   never stored nor logged.
//!
//! The request body is `application/x-www-form-urlencoded`, as nginx-rtmp sends it, so
//! existing `on_publish` handlers work: `call=publish&app=live&name=cam&key=…&addr=1.2.3.4&
//! protocol=rtmp`. The body of the answer is not read beyond its status.

use crate::config::AuthCallbackConfig;
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::net::IpAddr;
use std::time::Duration;

/// What the callback is told of a publish.
#[derive(Debug, Clone, Copy)]
pub struct CallbackRequest<'a> {
    /// The ingest protocol (`rtmp`, `whip`).
    pub protocol: &'a str,
    /// Application (`live`).
    pub app: &'a str,
    /// The bare stream name.
    pub stream: &'a str,
    /// The presented key (empty when none). Sent to the service; never logged.
    pub key: &'a str,
    /// The publisher's address.
    pub client: IpAddr,
}

/// What the callback decided, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackVerdict {
    Allowed,
    /// The service answered this non-2xx status.
    Denied(u16),
    /// No answer within the timeout: denied (fail closed), not cached.
    TimedOut,
    /// Connection refused, reset, bad answer: denied (fail closed), not cached.
    Failed(String),
}

impl CallbackVerdict {
    pub fn allows(&self) -> bool {
        matches!(self, CallbackVerdict::Allowed)
    }
}

/// The callback client with its cache of answers.
pub struct AuthCallback {
    url: Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Keyed-hash of the request → allowed? (`None` when `cache_ttl_ms` is 0).
    answers: Option<moka::future::Cache<u128, bool>>,
    /// Random per process: the cache key cannot be precomputed for a guessed key.
    hash_seed: u64,
}

impl std::fmt::Debug for AuthCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCallback")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AuthCallback {
    /// `None` when no URL is configured (validated: an invalid one never gets here).
    pub fn from_config(config: &AuthCallbackConfig) -> Option<AuthCallback> {
        if config.url.is_empty() {
            return None;
        }
        let url: Uri = config.url.parse().ok()?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let answers = (config.cache_ttl_ms > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.cache_max_entries)
                .time_to_live(Duration::from_millis(config.cache_ttl_ms))
                .build()
        });
        Some(AuthCallback {
            url,
            timeout,
            client,
            answers,
            hash_seed: rand::random(),
        })
    }

    fn cache_key(&self, r: &CallbackRequest<'_>) -> u128 {
        let mut text = Vec::with_capacity(r.app.len() + r.stream.len() + r.key.len() + 2);
        for part in [r.app, r.stream, r.key] {
            text.extend_from_slice(part.as_bytes());
            text.push(0);
        }
        xxhash_rust::xxh3::xxh3_128_with_seed(&text, self.hash_seed)
    }

    /// The decision for `request`: a cached answer, else the service's.
    pub async fn decide(&self, request: &CallbackRequest<'_>) -> CallbackVerdict {
        let key = self.cache_key(request);
        if let Some(cache) = &self.answers
            && let Some(allowed) = cache.get(&key).await
        {
            tracing::debug!(allowed, "publish callback answer from cache");
            return if allowed {
                CallbackVerdict::Allowed
            } else {
                CallbackVerdict::Denied(StatusCode::FORBIDDEN.as_u16())
            };
        }
        let verdict = match tokio::time::timeout(self.timeout, self.ask(request)).await {
            Err(_) => CallbackVerdict::TimedOut,
            Ok(Err(why)) => CallbackVerdict::Failed(why),
            Ok(Ok(status)) if status.is_success() => CallbackVerdict::Allowed,
            Ok(Ok(status)) => CallbackVerdict::Denied(status.as_u16()),
        };
        if let Some(cache) = &self.answers {
            match verdict {
                CallbackVerdict::Allowed => cache.insert(key, true).await,
                CallbackVerdict::Denied(_) => cache.insert(key, false).await,
                CallbackVerdict::TimedOut | CallbackVerdict::Failed(_) => {}
            }
        }
        verdict
    }

    async fn ask(&self, r: &CallbackRequest<'_>) -> Result<StatusCode, String> {
        let body = form_body(r);
        let request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::USER_AGENT,
                concat!("zoomate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e}"))?;
        // Only the status matters; the body is dropped unread (the connection is not reused
        // unless hyper can drain it).
        Ok(response.status())
    }
}

/// `call=publish&app=…&name=…&key=…&addr=…&protocol=…`, every value percent-encoded.
fn form_body(r: &CallbackRequest<'_>) -> String {
    let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
    format!(
        "call=publish&app={}&name={}&key={}&addr={}&protocol={}",
        enc(r.app),
        enc(r.stream),
        enc(r.key),
        enc(&r.client.to_string()),
        enc(r.protocol)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_encodes_every_value() {
        let r = CallbackRequest {
            protocol: "rtmp",
            app: "live",
            stream: "cam",
            key: "a&b=c d",
            client: "127.0.0.1".parse().unwrap(),
        };
        assert_eq!(
            form_body(&r),
            "call=publish&app=live&name=cam&key=a%26b%3Dc%20d&addr=127%2E0%2E0%2E1&protocol=rtmp"
        );
    }

    #[tokio::test]
    async fn unreachable_service_denies_and_is_not_cached() {
        // A port nothing listens on: connection refused, fail closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let cb = AuthCallback::from_config(&AuthCallbackConfig {
            url: format!("http://127.0.0.1:{port}/auth"),
            timeout_ms: 1000,
            cache_ttl_ms: 60_000,
            cache_max_entries: 10,
        })
        .unwrap();
        let r = CallbackRequest {
            protocol: "rtmp",
            app: "live",
            stream: "cam",
            key: "k",
            client: "127.0.0.1".parse().unwrap(),
        };
        assert!(matches!(cb.decide(&r).await, CallbackVerdict::Failed(_)));
        let cache = cb.answers.as_ref().unwrap();
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 0);
    }
}
