//! Giving freed memory back to the system after a peer made us hold a lot of it.
//!
//! glibc's malloc keeps freed memory for reuse, and after large blocks (16 MiB messages) have
//! been freed it raises its mmap threshold, so later ones come from the heap as well: after an
//! attack the process stayed hundreds of MiB above where it was, with nothing in use.
//! `malloc_trim(0)` hands the free pages back (docs/RELIABILITY.md has the figures with and
//! without). It walks the heap, so it runs off the runtime's workers and at most once per
//! [`MIN_TRIM_INTERVAL`]; small frees do not ask for it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Frees smaller than this do not ask for a trim.
pub const TRIM_AFTER_BYTES: u64 = 4 * 1024 * 1024;
/// Trims at most this often; a request within it is served once it has passed.
pub const MIN_TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// When the last trim ran, and whether one is already scheduled.
static TRIMS: Mutex<(Option<Instant>, bool)> = Mutex::new((None, false));

/// Asks for the free heap to be given back once `freed_bytes` (what the caller just released,
/// or the most it held) is large. Needs a tokio runtime; without one it does nothing.
pub fn after_large_free(freed_bytes: u64) {
    if freed_bytes < TRIM_AFTER_BYTES {
        return;
    }
    trim_soon();
}

/// Gives the free heap back, off the runtime's workers: now, or once [`MIN_TRIM_INTERVAL`]
/// has passed since the last trim (requests meanwhile share that one).
pub fn trim_soon() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let wait = {
        let mut trims = TRIMS.lock().unwrap_or_else(|p| p.into_inner());
        let (last, scheduled) = &mut *trims;
        if *scheduled {
            return;
        }
        *scheduled = true;
        last.map_or(Duration::ZERO, |t| {
            MIN_TRIM_INTERVAL.saturating_sub(t.elapsed())
        })
    };
    runtime.spawn(async move {
        tokio::time::sleep(wait).await;
        {
            let mut trims = TRIMS.lock().unwrap_or_else(|p| p.into_inner());
            *trims = (Some(Instant::now()), false);
        }
        let _ = tokio::task::spawn_blocking(trim_now).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_now() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free lists; it has no
    // preconditions (glibc >= 2.8, and a zero pad keeps nothing extra).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_now() {}
