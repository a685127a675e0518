//! Whether each stream is producing, and the fault counters behind it.
//!
//! A stream is *healthy* once a session of it listed a segment, and *unhealthy* with a typed
//! [`UnhealthyReason`] from the moment a session of it fails until a later session lists a
//! segment again. An unhealthy stretch is one *episode*: it is logged once when it begins and
//! once when it ends (with how long it lasted), however many restarts fail in between; a full
//! disk makes every restart fail until space returns, and the log must not say so every two
//! seconds. Read by `/metrics` (`zoomate_stream_healthy{stream}`), the origin's `/streams`, and the
//! log.
//!
//! Bounded: one entry per configured stream, plus one per live publish (removed when the
//! publish ends).

use super::session::SessionError;
use crate::http::metrics::{Counter, Family, Gauge, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a stream is unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnhealthyReason {
    /// A segment, part or playlist could not be written for want of space (`ENOSPC`/`EDQUOT`).
    StoreFull,
    /// Another store write failed.
    StoreError,
    /// A watchdog fired: no segment in time, EOS never completed, or the pipeline never reached
    /// PLAYING.
    Stalled,
    /// The pipeline reported an error.
    PipelineFailed,
}

impl UnhealthyReason {
    pub fn label(self) -> &'static str {
        match self {
            UnhealthyReason::StoreFull => "store_full",
            UnhealthyReason::StoreError => "store_error",
            UnhealthyReason::Stalled => "stalled",
            UnhealthyReason::PipelineFailed => "pipeline_failed",
        }
    }

    /// The reason a failed session gives its stream; `None` for an outcome that is not a fault
    /// (a source sending no audio restarts video-only).
    pub fn of(error: &SessionError) -> Option<UnhealthyReason> {
        match error {
            SessionError::StoreFull(_) => Some(UnhealthyReason::StoreFull),
            SessionError::Store(_) => Some(UnhealthyReason::StoreError),
            SessionError::Transcode(crate::transcode::TranscodeError::Staging {
                source, ..
            }) if crate::store::is_no_space(source) => Some(UnhealthyReason::StoreFull),
            SessionError::Stalled(_)
            | SessionError::EosTimeout(_)
            | SessionError::StartTimeout(_) => Some(UnhealthyReason::Stalled),
            SessionError::Transcode(_) | SessionError::Pipeline(_) => {
                Some(UnhealthyReason::PipelineFailed)
            }
            SessionError::NoAudio(_) => None,
        }
    }
}

/// A stream's health now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No segment listed yet, no failure either.
    Starting,
    Healthy,
    Unhealthy {
        reason: UnhealthyReason,
        since: Instant,
    },
}

/// What a call changed, for the caller's one log line per episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing new to say.
    Unchanged,
    /// An episode began (or its reason changed).
    BecameUnhealthy(UnhealthyReason),
    /// The episode that began `after` ago with `reason` is over.
    Recovered {
        reason: UnhealthyReason,
        after: Duration,
    },
}

/// Labels of `zoomate_stream_healthy`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

/// Labels of `zoomate_watchdog_fired_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    /// `launching`, `starting`, `running`, `draining`, `tearing_down` ([`super::phase::Phase::name`]).
    phase: &'static str,
}

/// Labels of `zoomate_store_write_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    /// `no_space` or `other`.
    reason: &'static str,
}

/// Every stream's health and the fault counters, shared by the registry and its sessions.
#[derive(Default)]
pub struct StreamHealth {
    streams: Mutex<BTreeMap<String, Health>>,
    watchdog: Family<PhaseLabels, Counter>,
    store_errors: Family<StoreErrorLabels, Counter>,
}

impl StreamHealth {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Health>) -> T) -> T {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    /// A session of `stream` begins (an entry exists from now on; its health is kept).
    pub fn session_started(&self, stream: &str) {
        self.with(|m| {
            m.entry(stream.to_string()).or_insert(Health::Starting);
        });
    }

    /// A session of `stream` listed a segment at `now`.
    pub fn segment_listed(&self, stream: &str, now: Instant) -> Transition {
        self.with(|m| {
            let before = m.insert(stream.to_string(), Health::Healthy);
            match before {
                Some(Health::Unhealthy { reason, since }) => Transition::Recovered {
                    reason,
                    after: now.saturating_duration_since(since),
                },
                _ => Transition::Unchanged,
            }
        })
    }

    /// A session of `stream` ended with `error` at `now`. Also counts store write errors.
    pub fn session_failed(&self, stream: &str, error: &SessionError, now: Instant) -> Transition {
        let Some(reason) = UnhealthyReason::of(error) else {
            return Transition::Unchanged;
        };
        match reason {
            UnhealthyReason::StoreFull => self.count_store_error("no_space"),
            UnhealthyReason::StoreError => self.count_store_error("other"),
            _ => {}
        }
        self.with(|m| {
            let entry = m.entry(stream.to_string()).or_insert(Health::Starting);
            match *entry {
                Health::Unhealthy { reason: was, .. } if was == reason => Transition::Unchanged,
                Health::Unhealthy { since, .. } => {
                    // Same episode, new cause: keep when it began.
                    *entry = Health::Unhealthy { reason, since };
                    Transition::BecameUnhealthy(reason)
                }
                Health::Starting | Health::Healthy => {
                    *entry = Health::Unhealthy { reason, since: now };
                    Transition::BecameUnhealthy(reason)
                }
            }
        })
    }

    /// A publish is over: its stream is no longer this origin's.
    pub fn forget(&self, stream: &str) {
        self.with(|m| {
            m.remove(stream);
        });
    }

    pub fn health(&self, stream: &str) -> Option<Health> {
        self.with(|m| m.get(stream).copied())
    }

    /// Every stream's health, by name.
    pub fn all(&self) -> Vec<(String, Health)> {
        self.with(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
    }

    /// A watchdog fired in `phase` ([`super::phase::Phase::name`]).
    pub fn watchdog_fired(&self, phase: &'static str) {
        self.watchdog.get_or_create(&PhaseLabels { phase }).inc();
    }

    fn count_store_error(&self, reason: &'static str) {
        self.store_errors
            .get_or_create(&StoreErrorLabels { reason })
            .inc();
    }

    /// The origin's `/streams` answer: every stream's health.
    pub fn to_json(&self, now: Instant) -> serde_json::Value {
        let streams: Vec<serde_json::Value> = self
            .all()
            .into_iter()
            .map(|(stream, health)| match health {
                Health::Starting => serde_json::json!({"stream": stream, "health": "starting"}),
                Health::Healthy => serde_json::json!({"stream": stream, "health": "healthy"}),
                Health::Unhealthy { reason, since } => serde_json::json!({
                    "stream": stream,
                    "health": "unhealthy",
                    "reason": reason,
                    "unhealthy_for_ms": now.saturating_duration_since(since).as_millis() as u64,
                }),
            })
            .collect();
        serde_json::json!({ "streams": streams })
    }

    /// Registers the health gauge (read now) and the fault counters into `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let healthy = Family::<StreamLabels, Gauge>::default();
        for (stream, health) in self.all() {
            healthy
                .get_or_create(&StreamLabels { stream })
                .set(i64::from(matches!(health, Health::Healthy)));
        }
        registry.register(
            "zoomate_stream_healthy",
            "1 while the stream's newest session lists segments; 0 while starting or unhealthy",
            healthy,
        );
        // prometheus-client appends `_total`.
        registry.register(
            "zoomate_watchdog_fired",
            "Session watchdogs fired, by the phase they fired in (tearing_down: pipeline abandoned)",
            self.watchdog.clone(),
        );
        registry.register(
            "zoomate_store_write_errors",
            "Sessions ended by a failed store write, by reason (no_space: ENOSPC/EDQUOT)",
            self.store_errors.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> SessionError {
        SessionError::StoreFull("No space left on device".into())
    }

    #[test]
    fn a_full_disk_is_one_episode_however_many_restarts_fail() {
        let h = StreamHealth::default();
        let t0 = Instant::now();
        h.session_started("demo");
        assert_eq!(h.health("demo"), Some(Health::Starting));
        assert_eq!(h.segment_listed("demo", t0), Transition::Unchanged);
        assert_eq!(
            h.session_failed("demo", &full(), t0),
            Transition::BecameUnhealthy(UnhealthyReason::StoreFull)
        );
        for s in 1..5 {
            h.session_started("demo");
            let later = t0 + Duration::from_secs(2 * s);
            assert_eq!(
                h.session_failed("demo", &full(), later),
                Transition::Unchanged
            );
        }
        assert!(matches!(
            h.health("demo"),
            Some(Health::Unhealthy {
                reason: UnhealthyReason::StoreFull,
                since
            }) if since == t0
        ));
        let back = t0 + Duration::from_secs(11);
        assert_eq!(
            h.segment_listed("demo", back),
            Transition::Recovered {
                reason: UnhealthyReason::StoreFull,
                after: Duration::from_secs(11)
            }
        );
        assert_eq!(h.health("demo"), Some(Health::Healthy));
        let mut r = Registry::default();
        h.register_metrics(&mut r);
        let text = crate::http::metrics::encode(&[&r]);
        assert!(
            text.contains("zoomate_stream_healthy{stream=\"demo\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("zoomate_store_write_errors_total{reason=\"no_space\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_audio_track_is_no_fault_and_a_new_cause_keeps_the_episode() {
        let h = StreamHealth::default();
        let t0 = Instant::now();
        let no_audio = SessionError::NoAudio(Duration::from_secs(3));
        assert_eq!(
            h.session_failed("cam", &no_audio, t0),
            Transition::Unchanged
        );
        h.session_failed("cam", &full(), t0);
        let stalled = SessionError::Stalled(Duration::from_secs(10));
        assert_eq!(
            h.session_failed("cam", &stalled, t0 + Duration::from_secs(1)),
            Transition::BecameUnhealthy(UnhealthyReason::Stalled)
        );
        assert!(matches!(
            h.health("cam"),
            Some(Health::Unhealthy { since, .. }) if since == t0
        ));
        let json = h.to_json(t0 + Duration::from_secs(4));
        assert_eq!(json["streams"][0]["reason"], "stalled");
        assert_eq!(json["streams"][0]["unhealthy_for_ms"], 4000);
        h.forget("cam");
        assert!(h.all().is_empty());
    }
}
