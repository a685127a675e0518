//! GStreamer calls that can wait on a streaming thread, kept off the tokio workers.
//!
//! A state change (`set_state`), an event sent into a pipeline (it takes the element's state
//! lock) or a pipeline's last reference (its `Drop` sets it to NULL, which joins every streaming
//! thread) can wait for as long as a streaming thread is stuck: in a sink whose write never
//! returns, in a probe, in an element that sleeps. Such a call runs here on a thread of its own,
//! and the caller awaits its result with a deadline. Past the deadline the call is abandoned:
//! its thread (and whatever it holds, typically the pipeline) is left to finish or hang by
//! itself, and the caller carries on. A dedicated thread rather than `spawn_blocking`: an
//! abandoned call must not hold a slot of the runtime's blocking pool, nor hold the runtime's
//! shutdown (which waits for its blocking tasks).

use std::time::Duration;

/// Why a call made off the runtime gave no result.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OffRuntimeError {
    /// Still running at the deadline: abandoned on its own thread.
    #[error("{what} did not finish within {:.0} ms; abandoned on its own thread", after.as_secs_f64() * 1e3)]
    Abandoned { what: &'static str, after: Duration },
    /// The thread could not be started, or the call panicked.
    #[error("{what} failed on its thread: {reason}")]
    Thread { what: &'static str, reason: String },
}

/// Runs `call` on a new thread named `gst-{what}` (inside the current tokio runtime's context, so
/// it may spawn tasks) and waits at most `deadline` for its result.
pub async fn run_bounded<T, F>(
    what: &'static str,
    deadline: Duration,
    call: F,
) -> Result<T, OffRuntimeError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name(format!("gst-{what}"))
        .spawn(move || {
            let _entered = runtime.as_ref().map(|h| h.enter());
            // A result nobody waits for any more (abandoned) is dropped here, on this thread.
            let _ = tx.send(call());
        })
        .map_err(|e| OffRuntimeError::Thread {
            what,
            reason: e.to_string(),
        })?;
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(OffRuntimeError::Thread {
            what,
            reason: "panicked".into(),
        }),
        Err(_) => Err(OffRuntimeError::Abandoned {
            what,
            after: deadline,
        }),
    }
}

/// Runs `call` on a new thread without waiting for it (a signal such as EOS, whose effect the
/// caller watches for with its own deadline).
pub fn run_detached<F>(what: &'static str, call: F) -> Result<(), OffRuntimeError>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("gst-{what}"))
        .spawn(call)
        .map(|_| ())
        .map_err(|e| OffRuntimeError::Thread {
            what,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_stuck_call_is_abandoned_and_the_one_worker_keeps_running_tasks() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let result = run_bounded("test", Duration::from_millis(200), move || {
            let _ = stuck.recv();
        })
        .await;
        assert!(
            matches!(result, Err(OffRuntimeError::Abandoned { what: "test", .. })),
            "{result:?}"
        );
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) > 1,
            "the only worker ran other tasks while the call was stuck"
        );
        ticker.abort();
        let _ = release.send(());
        assert_eq!(
            run_bounded("test", Duration::from_secs(5), || 7).await,
            Ok(7)
        );
    }
}
