//! Hot reload: re-read the configuration the process started with, check it with the code
//! that checked it at start, and apply what can change while publishers and viewers stay
//! connected ([`plan`] decides what that is). An invalid file is refused with the reason (the
//! key and the value) and the running configuration is kept.
//!
//! [`Reloader`] is the one entry point, cheap to clone and callable from any task: the SIGHUP
//! handler in `main.rs` calls it, and so can an HTTP handler (`POST /api/v1/reload`). Reloads
//! are serialised. Each live part of the process is reached through its own handle, read by
//! that part when it starts something new (a session, a publish, a request):
//! - `log.level` — the tracing filter's reload handle;
//! - `ladder` — the stream registry's config (an `ArcSwap`), read when a session starts;
//! - `rtmp.stream_keys` — the RTMP listener's [`StreamKeys`], read at each publish request;
//! - `edge.origins` — the edge's origin set (rebuilt, keeping the state of the ones that stay)
//!   and the bus allow-list its heartbeats are judged against;
//! - `edge.cache_bytes` — the edge cache, rebuilt at the new size (moka cannot resize);
//! - the API's copy of the config, so `GET /api/v1/config` shows what runs.

pub mod plan;

pub use plan::{LiveChange, ReloadPlan};

use crate::config::{Config, ConfigError};
use crate::edge::EdgeReloadHandle;
use crate::ingest::rtmp::StreamKeys;
use crate::stream::StreamRegistry;
use std::sync::Arc;

/// Loads the configuration as at start: the same file, environment overrides and command-line
/// options, parsed and validated.
pub type ConfigLoader = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Installs a new tracing filter (a validated `log.level`).
pub type LogLevelSetter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The running parts a reload can reach; `None` where this process does not run that part.
#[derive(Clone, Default)]
pub struct ReloadTargets {
    pub registry: Option<Arc<StreamRegistry>>,
    pub stream_keys: Option<StreamKeys>,
    pub edge: Option<EdgeReloadHandle>,
    pub log_level: Option<LogLevelSetter>,
    /// The API's view of the config (`GET /api/v1/config`). Weak: the API holds the
    /// reloader for `POST /api/v1/reload`.
    pub api: Option<std::sync::Weak<crate::api::Api>>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Keys applied to the running process.
    pub applied: Vec<&'static str>,
    /// Keys that differ but need a restart: ignored, the running values stay.
    pub needs_restart: Vec<&'static str>,
}

/// Why a reload was refused (nothing was applied).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not load or validate: the error names the key and the value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("log.level: {0}")]
    LogLevel(String),
    #[error("reload task failed: {0}")]
    Task(String),
}

/// The handle every reload goes through.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    load: ConfigLoader,
    /// The configuration as loaded (live changes applied); the lock serialises reloads.
    running: tokio::sync::Mutex<Config>,
    targets: ReloadTargets,
}

impl Reloader {
    /// `running` is the configuration the process started from, as `load` returns it.
    pub fn new(load: ConfigLoader, running: Config, targets: ReloadTargets) -> Reloader {
        Reloader {
            inner: Arc::new(Inner {
                load,
                running: tokio::sync::Mutex::new(running),
                targets,
            }),
        }
    }

    /// Loads and checks the configuration again and applies its live changes. `Err`: nothing
    /// changed.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let mut running = self.inner.running.lock().await;
        let load = self.inner.load.clone();
        // Reading the file (and the SDP files streams name) is blocking I/O.
        let new = tokio::task::spawn_blocking(move || load())
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        let plan = plan::plan(&running, &new)?;
        let t = &self.inner.targets;
        // The one change that can fail goes first, so a failure leaves everything as it was.
        for change in &plan.changes {
            if let (LiveChange::LogLevel(level), Some(set)) = (change, &t.log_level) {
                set(level).map_err(ReloadError::LogLevel)?;
            }
        }
        for change in &plan.changes {
            match change {
                LiveChange::LogLevel(_) => {}
                LiveChange::Ladder(ladder) => {
                    if let Some(r) = &t.registry {
                        r.set_ladder(ladder.clone());
                    }
                }
                LiveChange::StreamKeys => {
                    if let Some(k) = &t.stream_keys {
                        k.replace(plan.next.rtmp.stream_keys.clone());
                    }
                }
                LiveChange::StaticOrigins(origins) => {
                    if let Some(e) = &t.edge {
                        e.set_static_origins(origins);
                    }
                }
                LiveChange::CacheBytes(bytes) => {
                    if let Some(e) = &t.edge {
                        e.set_cache_bytes(*bytes).await;
                    }
                }
            }
        }
        if let Some(api) = t.api.as_ref().and_then(std::sync::Weak::upgrade) {
            api.config_reloaded(&plan.next);
        }
        let report = ReloadReport {
            applied: plan.changes.iter().map(LiveChange::key).collect(),
            needs_restart: plan.needs_restart.clone(),
        };
        *running = plan.next;
        Ok(report)
    }

    /// [`Reloader::reload`], with its outcome logged: one line saying what changed, what needs
    /// a restart, or why the file was refused. Never logs values (stream keys are secrets).
    pub async fn reload_and_log(&self, trigger: &'static str) -> Result<ReloadReport, ReloadError> {
        let result = self.reload().await;
        match &result {
            Ok(r) if r.needs_restart.is_empty() => {
                tracing::info!(trigger, applied = ?r.applied, "config reloaded")
            }
            Ok(r) => tracing::warn!(
                trigger,
                applied = ?r.applied,
                needs_restart = ?r.needs_restart,
                "config reloaded; changes to needs_restart keys are ignored until a restart"
            ),
            Err(e) => tracing::error!(
                trigger,
                error = %e,
                "config reload refused; the running config is kept"
            ),
        }
        result
    }
}

/// An HTTP handler can hold a `Reloader` and await `reload()` on any runtime thread.
#[allow(dead_code)]
fn reloader_is_shareable_and_its_reload_is_send(r: &Reloader) {
    fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    shareable(r);
    send(r.reload());
}
