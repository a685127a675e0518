//! Publish authorisation: is this stream name allowed, with this key, and (when
//! `rtmp.auth_callback.url` is set) does the operator's service agree? [`Authorizer::authorize`]
//! is the one decision every ingest calls (RTMP; WHIP takes the same path), behind one
//! key-guessing throttle ([`super::throttle`]) for all of them. The key check
//! ([`authorize_publish`]) is pure: the config and the request in, the bare stream name or a
//! [`PublishRejection`] out; the callback ([`super::auth_callback`]) runs after it passes.
//! Keys are compared in constant time, and no rejection carries the presented key (rejections
//! are logged).

use super::admission::AddressKey;
use super::auth_callback::{AuthCallback, CallbackRequest, CallbackVerdict};
use super::throttle::{KeyThrottle, ThrottlePolicy};
use crate::config::{RtmpConfig, Secret};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Why a publish request was refused. Never carries the presented key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRejection {
    #[error("invalid stream name")]
    InvalidName,
    #[error("stream is not in rtmp.stream_keys")]
    NotAllowed,
    #[error("missing stream key")]
    MissingKey,
    #[error("wrong stream key")]
    WrongKey,
    #[error("handler refused: {0}")]
    Handler(String),
    /// The auth callback answered this non-2xx status.
    #[error("denied by the auth callback (HTTP {0})")]
    CallbackDenied(u16),
    /// The auth callback did not answer in time or could not be reached: denied (fail closed).
    #[error("auth callback unavailable: {0}")]
    CallbackUnavailable(String),
}

impl PublishRejection {
    /// Whether this looks like guessing (a name or key that does not match the config): such
    /// failures count towards the address's backoff. A refusal by the handler (stream already
    /// live, shutting down) does not.
    pub fn is_guess(&self) -> bool {
        !matches!(
            self,
            PublishRejection::Handler(_) | PublishRejection::CallbackUnavailable(_)
        )
    }
}

/// A publish attempt, as any ingest sees it.
#[derive(Debug, Clone, Copy)]
pub struct PublishAttempt<'a> {
    /// `rtmp`, `whip`: told to the callback.
    pub protocol: &'a str,
    /// The application (`live`).
    pub app: &'a str,
    /// Whatever followed `?` in the application name (may hold `key=`); empty if nothing.
    pub app_query: &'a str,
    /// The requested name, possibly with its query (`cam?key=SECRET`).
    pub publish_name: &'a str,
    pub client: IpAddr,
}

/// An ingest that asks the [`Authorizer`] (the `protocol` label of
/// `zoomate_publish_throttled_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    Rtmp,
    Whip,
}

impl Ingest {
    pub const ALL: [Ingest; 2] = [Ingest::Rtmp, Ingest::Whip];

    pub fn label(self) -> &'static str {
        match self {
            Ingest::Rtmp => "rtmp",
            Ingest::Whip => "whip",
        }
    }
}

/// The publish-authorisation decision: the key-guessing throttle, the stream keys, then the
/// callback.
pub struct Authorizer {
    /// The listener's keys, replaced by a hot reload (read at each attempt).
    keys: super::StreamKeys,
    callback: Option<AuthCallback>,
    /// Failed attempts per address, one table for every ingest: an address guessing keys over
    /// RTMP waits over WHIP too.
    throttle: Mutex<KeyThrottle>,
    /// Attempts refused unchecked by the throttle, per [`Ingest::ALL`] index.
    throttled: [AtomicU64; 2],
}

impl Authorizer {
    pub fn new(config: &RtmpConfig, keys: super::StreamKeys) -> Authorizer {
        let ms = Duration::from_millis;
        Authorizer {
            keys,
            callback: AuthCallback::from_config(&config.auth_callback),
            throttle: Mutex::new(KeyThrottle::new(ThrottlePolicy {
                free_failures: config.auth_failures_before_backoff,
                initial_backoff: ms(config.auth_backoff_initial_ms),
                max_backoff: ms(config.auth_backoff_max_ms),
                forget_after: ms(config.auth_forget_after_ms),
                max_addresses: config.auth_max_addresses,
            })),
            throttled: Default::default(),
        }
    }

    fn throttle(&self) -> MutexGuard<'_, KeyThrottle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` if `client` failed too often and must wait before an attempt is checked
    /// (counted as throttled for `ingest`).
    pub fn throttle_check(
        &self,
        ingest: Ingest,
        client: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let r = self.throttle().check(AddressKey::from(client), now);
        if r.is_err() {
            let i = Ingest::ALL.iter().position(|x| *x == ingest).unwrap_or(0);
            self.throttled[i].fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// A failed attempt that looks like guessing ([`PublishRejection::is_guess`]) from `client`.
    pub fn throttle_failed(&self, client: IpAddr, now: Instant) {
        self.throttle().failed(AddressKey::from(client), now);
    }

    /// A successful attempt from `client`: its failures are forgotten.
    pub fn throttle_succeeded(&self, client: IpAddr) {
        self.throttle().succeeded(AddressKey::from(client));
    }

    /// Attempts the throttle refused unchecked, per ingest (`zoomate_publish_throttled_total`).
    pub fn throttled_counts(&self) -> [(Ingest, u64); 2] {
        Ingest::ALL.map(|x| {
            let i = Ingest::ALL.iter().position(|y| *y == x).unwrap_or(0);
            (x, self.throttled[i].load(Ordering::Relaxed))
        })
    }

    /// The bare stream name if `attempt` may publish. The key check of [`authorize_publish`]
    /// comes first (an unlisted stream or a wrong key never reaches the callback); with a
    /// callback configured, its answer decides the rest (fail closed).
    pub async fn authorize(
        &self,
        attempt: &PublishAttempt<'_>,
    ) -> Result<String, PublishRejection> {
        let name = authorize_publish(
            &self.keys.current(),
            attempt.app_query,
            attempt.publish_name,
        )?;
        let (_, query) = split_query(attempt.publish_name);
        let key = query_param(query, "key")
            .or_else(|| query_param(attempt.app_query, "key"))
            .unwrap_or("");
        let request = CallbackRequest {
            protocol: attempt.protocol,
            app: attempt.app,
            stream: &name,
            key,
            client: attempt.client,
        };
        self.ask_callback(&request).await?;
        Ok(name)
    }

    /// The same decision for an ingest that presents the key apart from the name (WHIP's
    /// bearer token): the key check, then the callback. `name` must be a valid stream name.
    pub async fn authorize_key(
        &self,
        protocol: &str,
        name: &str,
        key: Option<&str>,
        client: IpAddr,
    ) -> Result<(), PublishRejection> {
        check_stream_key(&self.keys.current(), name, key)?;
        let request = CallbackRequest {
            protocol,
            app: protocol,
            stream: name,
            key: key.unwrap_or(""),
            client,
        };
        self.ask_callback(&request).await
    }

    /// With a callback configured, its answer (fail closed); without one, allowed.
    async fn ask_callback(&self, request: &CallbackRequest<'_>) -> Result<(), PublishRejection> {
        let Some(callback) = &self.callback else {
            return Ok(());
        };
        match callback.decide(request).await {
            CallbackVerdict::Allowed => Ok(()),
            CallbackVerdict::Denied(status) => Err(PublishRejection::CallbackDenied(status)),
            CallbackVerdict::TimedOut => Err(PublishRejection::CallbackUnavailable(
                "no answer within rtmp.auth_callback.timeout_ms".into(),
            )),
            CallbackVerdict::Failed(why) => Err(PublishRejection::CallbackUnavailable(why)),
        }
    }
}

/// Splits `name?query` into the name and the query (empty when absent).
pub(super) fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

/// The value of `param` in an `a=1&b=2` query, if present.
fn query_param<'a>(query: &'a str, param: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == param).then_some(v)
    })
}

/// Checks a publish request against the configuration and returns the bare stream name.
///
/// `publish_name` is the name from the `publish` command (`cam?key=SECRET` with ffmpeg and OBS);
/// `app_query` is whatever followed `?` in the `connect` app name (some clients put the query
/// there: `rtmp://host/live?key=SECRET/cam`). The key in the publish name wins. Keys are
/// compared in constant time.
pub fn authorize_publish(
    stream_keys: &BTreeMap<String, Secret>,
    app_query: &str,
    publish_name: &str,
) -> Result<String, PublishRejection> {
    let (name, query) = split_query(publish_name);
    if !crate::config::is_valid_name(name) {
        return Err(PublishRejection::InvalidName);
    }
    let presented = query_param(query, "key").or_else(|| query_param(app_query, "key"));
    check_stream_key(stream_keys, name, presented)?;
    Ok(name.to_string())
}

/// The one stream-key check every ingest calls (RTMP's `?key=`, WHIP's bearer token): with no
/// keys configured publishing is open; otherwise `name` must be listed and `presented` must be
/// its key, compared in constant time. `name` must already be a valid stream name.
pub fn check_stream_key(
    stream_keys: &BTreeMap<String, Secret>,
    name: &str,
    presented: Option<&str>,
) -> Result<(), PublishRejection> {
    if stream_keys.is_empty() {
        return Ok(());
    }
    // Look the name up first: an unlisted stream is refused whatever key it presents.
    let expected = stream_keys.get(name).ok_or(PublishRejection::NotAllowed)?;
    let presented = presented.ok_or(PublishRejection::MissingKey)?;
    let matches: bool = presented
        .as_bytes()
        .ct_eq(expected.expose().as_bytes())
        .into();
    if !matches {
        return Err(PublishRejection::WrongKey);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RtmpConfig;

    fn keyed() -> RtmpConfig {
        let mut c = RtmpConfig::default();
        c.stream_keys.insert("cam".into(), "s3cret".into());
        c
    }

    #[test]
    fn open_server_accepts_any_valid_name_and_strips_the_query() {
        let c = RtmpConfig::default();
        assert_eq!(authorize_publish(&c.stream_keys, "", "cam").unwrap(), "cam");
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "cam?key=whatever").unwrap(),
            "cam"
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "../etc"),
            Err(PublishRejection::InvalidName)
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", ""),
            Err(PublishRejection::InvalidName)
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "a/b"),
            Err(PublishRejection::InvalidName)
        );
    }

    #[test]
    fn keyed_server_checks_name_then_key() {
        let c = keyed();
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "cam?key=s3cret").unwrap(),
            "cam"
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "cam?foo=1&key=s3cret").unwrap(),
            "cam"
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "cam?key=wrong"),
            Err(PublishRejection::WrongKey)
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "cam?key=s3cre"),
            Err(PublishRejection::WrongKey)
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "cam?key="),
            Err(PublishRejection::WrongKey)
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "cam"),
            Err(PublishRejection::MissingKey)
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "", "other?key=s3cret"),
            Err(PublishRejection::NotAllowed)
        );
    }

    #[test]
    fn key_may_come_with_the_app_name() {
        let c = keyed();
        assert_eq!(
            authorize_publish(&c.stream_keys, "key=s3cret", "cam").unwrap(),
            "cam"
        );
        assert_eq!(
            authorize_publish(&c.stream_keys, "key=wrong", "cam"),
            Err(PublishRejection::WrongKey)
        );
        // The publish name's key wins over the app's.
        assert_eq!(
            authorize_publish(&c.stream_keys, "key=s3cret", "cam?key=wrong"),
            Err(PublishRejection::WrongKey)
        );
    }

    #[test]
    fn rejections_never_show_the_key() {
        let c = keyed();
        for name in ["cam?key=hunter2", "other?key=hunter2"] {
            let e = authorize_publish(&c.stream_keys, "", name).unwrap_err();
            assert!(!e.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn only_name_and_key_failures_count_as_guesses() {
        assert!(PublishRejection::WrongKey.is_guess());
        assert!(PublishRejection::NotAllowed.is_guess());
        assert!(!PublishRejection::Handler("stream is already live".into()).is_guess());
        assert!(PublishRejection::CallbackDenied(403).is_guess());
        assert!(!PublishRejection::CallbackUnavailable("timeout".into()).is_guess());
    }
}
