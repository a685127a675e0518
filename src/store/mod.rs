//! The store: segments and playlists on disk, written so a reader never sees a partial file,
//! and deleted a configured time after they leave the live window.
//!
//! Layout: `{store.dir}/live/{stream}/master.m3u8`, `…/{rendition}/index.m3u8`,
//! `…/{rendition}/{sequence}.ts`. Segments are produced in `…/.staging/` on the same file
//! system and renamed into place; playlists are written to a temporary name and renamed.
//! What a crash leaves behind (staging, temporary files, segments the janitor never got to) is
//! swept at the next start ([`leftovers`]).

pub mod leftovers;
pub mod live;

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Pending deletions queued before new ones are deleted at once instead (and logged).
const DEFAULT_JANITOR_QUEUE: usize = 65_536;

/// Directory of a live stream.
pub use crate::layout::live_stream_dir;

/// Whether a write failed for want of space: `ENOSPC` (a full file system) or `EDQUOT` (a full
/// quota). Such a failure makes a stream unhealthy (`store_full`) until a segment is listed again.
pub fn is_no_space(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Writes `bytes` to `path` atomically: temporary file in the same directory, fsync, rename.
/// On failure (a full disk) the temporary file is removed: nothing half-written is left.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("bad file name"))?;
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_data()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Moves a finished segment from staging into its public name (same file system: atomic).
pub fn promote(staging: &Path, public: &Path) -> std::io::Result<u64> {
    if let Some(dir) = public.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::File::open(staging)?;
    f.sync_data()?;
    let len = f.metadata()?.len();
    drop(f);
    std::fs::rename(staging, public)?;
    Ok(len)
}

/// Deletes files a fixed time after they were scheduled: segments that left the live window
/// stay downloadable for `retain_after_window_ms` (players still fetching them), then go.
#[derive(Clone)]
pub struct Janitor {
    /// One entry per segment: its file and its LL-HLS parts go together.
    tx: mpsc::Sender<(tokio::time::Instant, Vec<PathBuf>)>,
    delay: Duration,
}

impl Janitor {
    /// Starts the janitor service; it runs until `shutdown`, then deletes nothing more (files
    /// still pending are kept: the next start's cleanup or a restart's window will own them).
    pub fn spawn(delay: Duration, shutdown: crate::Shutdown) -> Janitor {
        let (tx, mut rx) =
            mpsc::channel::<(tokio::time::Instant, Vec<PathBuf>)>(DEFAULT_JANITOR_QUEUE);
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    item = rx.recv() => item,
                };
                let Some((due, paths)) = item else { break };
                // Items arrive in due order (constant delay), so sleeping on each in turn is exact.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(due) => {}
                }
                for path in paths {
                    if let Err(e) = tokio::fs::remove_file(&path).await {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(path = %path.display(), error = %e, "could not delete expired segment");
                        }
                    }
                }
            }
        });
        Janitor { tx, delay }
    }

    /// Schedules `path` for deletion after the retention delay.
    pub fn schedule(&self, path: PathBuf) {
        self.schedule_all(vec![path]);
    }

    /// Schedules files that expire together (a segment and its parts) as one entry.
    pub fn schedule_all(&self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        let due = tokio::time::Instant::now() + self.delay;
        if let Err(mpsc::error::TrySendError::Full((_, paths))) = self.tx.try_send((due, paths)) {
            tracing::warn!(path = %paths[0].display(), "janitor queue full; deleting expired segment now");
            for path in paths {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/index.m3u8");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn janitor_deletes_after_the_delay_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1.ts");
        std::fs::write(&p, b"x").unwrap();
        let shutdown = crate::Shutdown::new();
        let j = Janitor::spawn(Duration::from_secs(30), shutdown.clone());
        j.schedule(p.clone());
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(p.exists());
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The deletion runs on a worker; give it a few turns.
        for _ in 0..50 {
            if !p.exists() {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!p.exists());
        shutdown.cancel();
    }
}
