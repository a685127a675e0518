//! Giving freed memory back to the system after a peer made us hold a lot of it.
//!
//! glibc's malloc keeps freed memory for reuse, and after a large block (a 16 MiB message) has
//! been freed it raises its mmap threshold to that size, so later large blocks come from the
//! heap and stay resident when freed. Two measures, measured (docs/RELIABILITY.md): a fixed
//! mmap threshold ([`map_large_blocks`]), so every large block is its own mapping and goes back
//! when freed (this is what brings RSS back after a flood of big messages), and
//! `malloc_trim(0)` after large frees and after each publish session (it gives back the heap a
//! session's pipeline left, about 10 MiB). The trim walks the heap, so it runs off the runtime's
//! workers and at most once per [`MIN_TRIM_INTERVAL`]; small frees do not ask for it.

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

/// Blocks at least this large get their own mapping, returned to the system when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 1024 * 1024;

/// Makes large blocks (peer messages, FLV tags of big frames) their own mappings from now on:
/// glibc's threshold is otherwise raised to the largest block freed so far (up to 32 MiB), so
/// after one 16 MiB message every later one comes from the heap and stays resident when freed.
/// Setting it fixes it. Process-wide; the origin calls it once at start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn map_large_blocks() {
    // SAFETY: mallopt only changes an allocator parameter; M_MMAP_THRESHOLD takes a byte count.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn map_large_blocks() {}

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
