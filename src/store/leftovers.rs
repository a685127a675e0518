//! What a crash leaves in the live store, cleaned up before any session starts.
//!
//! A process that dies mid-segment leaves its session's `.staging` directory (the half-written
//! segment and parts), temporary files of atomic writes (`.{name}.{pid}.tmp`), and every
//! segment the janitor had not yet deleted: its queue lived in memory. Nothing else will ever
//! remove them, so the store would grow with every crash. At start, with no session running
//! yet, this sweep removes the staging directories and temporary files, and every media file a
//! rendition's playlist no longer lists once it is old enough that the janitor would have
//! deleted it. Younger unlisted files are handed back to be scheduled on the janitor, so players
//! that were fetching them keep the usual grace. Listed files and files zoomate does not name
//! are never touched.
//!
//! [`listed_files`] and [`judge`] are pure; [`sweep`] is the directory walk around them.

use crate::layout;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Young unlisted files handed back for the janitor at most; beyond this they are left (and
/// logged): a later start's sweep removes them.
const MAX_PENDING: usize = 100_000;

/// What the sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// `.staging` directories removed (one per stream that had one).
    pub staging_dirs_removed: usize,
    /// Temporary files of interrupted atomic writes removed.
    pub temp_files_removed: usize,
    /// Unlisted media files removed: past their retention.
    pub expired_removed: usize,
    /// Unlisted media files still within their retention: schedule them for deletion.
    pub pending: Vec<PathBuf>,
    /// Entries that could not be read or removed (each logged).
    pub errors: usize,
}

/// What becomes of one file in a rendition directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Keep,
    /// Remove now.
    Remove,
    /// Unlisted but young: remove after the retention delay.
    RemoveLater,
}

/// The file names a media playlist refers to in its own directory: segment URIs and the `URI`
/// attributes of its tags (`EXT-X-MAP`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`). References to other
/// directories (rendition reports) are not files of this one.
pub fn listed_files(playlist: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut add = |uri: &str| {
        let uri = uri.split(['?', '#']).next().unwrap_or("");
        if !uri.is_empty() && !uri.contains('/') {
            names.insert(uri.to_string());
        }
    };
    for line in playlist.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            add(line);
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("URI=\"") {
            let value = &rest[at + 5..];
            let Some(end) = value.find('"') else { break };
            add(&value[..end]);
            rest = &value[end + 1..];
        }
    }
    names
}

/// Whether `name` is a temporary file of [`super::write_atomic`] (`.{name}.{pid}.tmp`).
fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Whether `name` is a media file a session writes into a rendition directory: a segment, a
/// part or an init segment.
fn is_media_file(name: &str) -> bool {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    !name.starts_with('.')
        && (layout::SEGMENT_EXTENSIONS.contains(&ext) || (name.starts_with("init") && ext == "mp4"))
}

/// The fate of file `name`, `age` old, in a rendition directory whose playlist lists `listed`;
/// a media file unlisted for `expired_after` is past anything the janitor would have kept.
pub fn judge(name: &str, listed: &HashSet<String>, age: Duration, expired_after: Duration) -> Fate {
    if is_temp_file(name) {
        return Fate::Remove;
    }
    if !is_media_file(name) || listed.contains(name) {
        return Fate::Keep;
    }
    if age >= expired_after {
        Fate::Remove
    } else {
        Fate::RemoveLater
    }
}

/// Sweeps `{store_dir}/live`: see the module doc. `expired_after` is how long after it was
/// written an unlisted media file is certainly past its retention (the live window plus
/// `retain_after_window_ms`: a segment leaves the window no sooner than a window after it was
/// written). Blocking: run it off the async runtime, before any session starts.
pub fn sweep(store_dir: &Path, expired_after: Duration) -> SweepReport {
    let mut report = SweepReport::default();
    let live = store_dir.join("live");
    let Some(streams) = read_dir(&live, &mut report) else {
        return report;
    };
    for stream in streams {
        if !stream.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let stream_dir = stream.path();
        let staging = stream_dir.join(layout::STAGING_DIR);
        if staging.is_dir() {
            match std::fs::remove_dir_all(&staging) {
                Ok(()) => report.staging_dirs_removed += 1,
                Err(e) => failed(&mut report, &staging, &e),
            }
        }
        let Some(entries) = read_dir(&stream_dir, &mut report) else {
            continue;
        };
        for entry in entries {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if file_type.is_file() && is_temp_file(&name) {
                remove(&entry.path(), &mut report, |r| r.temp_files_removed += 1);
            } else if file_type.is_dir() && !name.starts_with('.') {
                sweep_rendition(&entry.path(), expired_after, &mut report);
            }
        }
    }
    report
}

/// One rendition directory: its playlist says what stays.
fn sweep_rendition(dir: &Path, expired_after: Duration, report: &mut SweepReport) {
    let listed = match std::fs::read_to_string(dir.join(layout::MEDIA_PLAYLIST)) {
        Ok(text) => listed_files(&text),
        // Never listed anything (a crash before the first segment): nothing here is listed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
        // Unreadable: it cannot say what stays, so nothing goes.
        Err(e) => {
            failed(report, &dir.join(layout::MEDIA_PLAYLIST), &e);
            return;
        }
    };
    let Some(entries) = read_dir(dir, report) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|m| now.duration_since(m).unwrap_or_default())
            .unwrap_or_default();
        match judge(&name, &listed, age, expired_after) {
            Fate::Keep => {}
            Fate::Remove if is_temp_file(&name) => {
                remove(&entry.path(), report, |r| r.temp_files_removed += 1);
            }
            Fate::Remove => remove(&entry.path(), report, |r| r.expired_removed += 1),
            Fate::RemoveLater if report.pending.len() < MAX_PENDING => {
                report.pending.push(entry.path());
            }
            Fate::RemoveLater => {}
        }
    }
}

fn read_dir(
    dir: &Path,
    report: &mut SweepReport,
) -> Option<impl Iterator<Item = std::fs::DirEntry> + use<>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Some(entries.filter_map(Result::ok)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            failed(report, dir, &e);
            None
        }
    }
}

fn remove(path: &Path, report: &mut SweepReport, count: impl FnOnce(&mut SweepReport)) {
    match std::fs::remove_file(path) {
        Ok(()) => count(report),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => failed(report, path, &e),
    }
}

fn failed(report: &mut SweepReport, path: &Path, e: &std::io::Error) {
    report.errors += 1;
    tracing::warn!(path = %path.display(), error = %e, "store sweep: could not clean up");
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL_PLAYLIST: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init-5.mp4\"\n\
        #EXTINF:2.0,\n5.m4s\n#EXT-X-PART:DURATION=0.2,URI=\"6.0.ab.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"6.1.ab.m4s\"\n\
        #EXT-X-RENDITION-REPORT:URI=\"../480p/index.m3u8\",LAST-MSN=6\n";

    #[test]
    fn a_playlist_lists_its_segments_parts_hints_and_init() {
        let listed = listed_files(LL_PLAYLIST);
        let mut names: Vec<_> = listed.iter().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["5.m4s", "6.0.ab.m4s", "6.1.ab.m4s", "init-5.mp4"]);
        let ts = listed_files("#EXTM3U\n#EXTINF:1.0,\n41.ts\n#EXTINF:1.0,\n42.ts?x=1\n");
        assert!(ts.contains("41.ts") && ts.contains("42.ts") && ts.len() == 2);
    }

    #[test]
    fn only_unlisted_media_files_go_and_young_ones_later() {
        let listed = listed_files(LL_PLAYLIST);
        let (old, young, after) = (
            Duration::from_secs(3600),
            Duration::from_secs(1),
            Duration::from_secs(42),
        );
        for (name, age, fate) in [
            ("5.m4s", old, Fate::Keep),
            ("init-5.mp4", old, Fate::Keep),
            ("6.0.ab.m4s", old, Fate::Keep),
            ("index.m3u8", old, Fate::Keep),
            ("notes.txt", old, Fate::Keep),
            ("4.m4s", old, Fate::Remove),
            ("4.3.ab.m4s", old, Fate::Remove),
            ("init-3.mp4", old, Fate::Remove),
            ("12.ts", old, Fate::Remove),
            ("12.aac", young, Fate::RemoveLater),
            ("7.m4s", young, Fate::RemoveLater),
            (".index.m3u8.4242.tmp", young, Fate::Remove),
        ] {
            assert_eq!(judge(name, &listed, age, after), fate, "{name}");
        }
    }

    fn touch(path: &Path, age: Duration) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn the_sweep_removes_leftovers_and_keeps_what_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("live/demo");
        let old = Duration::from_secs(3600);
        std::fs::create_dir_all(stream.join("720p")).unwrap();
        std::fs::write(stream.join("720p/index.m3u8"), LL_PLAYLIST).unwrap();
        for name in ["5.m4s", "init-5.mp4", "6.0.ab.m4s", "4.m4s", "init-3.mp4"] {
            touch(&stream.join("720p").join(name), old);
        }
        touch(&stream.join("720p/7.m4s"), Duration::ZERO);
        touch(&stream.join(".staging/17/720p/00000008.m4s"), old);
        touch(&stream.join(".master.m3u8.99.tmp"), Duration::ZERO);
        touch(&stream.join("master.m3u8"), old);
        let report = sweep(dir.path(), Duration::from_secs(42));
        assert_eq!(report.staging_dirs_removed, 1);
        assert_eq!(report.temp_files_removed, 1);
        assert_eq!(report.expired_removed, 2);
        assert_eq!(report.pending, vec![stream.join("720p/7.m4s")]);
        assert_eq!(report.errors, 0);
        assert!(!stream.join(".staging").exists());
        for kept in [
            "master.m3u8",
            "720p/index.m3u8",
            "720p/5.m4s",
            "720p/init-5.mp4",
            "720p/6.0.ab.m4s",
            "720p/7.m4s",
        ] {
            assert!(stream.join(kept).exists(), "{kept}");
        }
        for gone in ["720p/4.m4s", "720p/init-3.mp4", ".master.m3u8.99.tmp"] {
            assert!(!stream.join(gone).exists(), "{gone}");
        }
        // An empty or missing store is nothing to do.
        let empty = tempfile::tempdir().unwrap();
        let r = sweep(empty.path(), Duration::from_secs(42));
        assert_eq!((r.staging_dirs_removed, r.errors), (0, 0));
    }
}
