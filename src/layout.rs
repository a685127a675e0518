//! Every name zoomate gives things, in one place: URL paths, store paths, file names and
//! reserved names. Writers (sessions, VOD jobs, packaging) and readers (origin, edge, the
//! announcement checks) call these instead of formatting their own, so the two sides cannot
//! drift apart. Pure.
//!
//! ```text
//! URL                                      store ({store.dir}/…)
//! /live/{stream}/master.m3u8               live/{stream}/master.m3u8
//! /live/{stream}/manifest.mpd              live/{stream}/manifest.mpd          (CMAF)
//! /live/{stream}/{rendition}/index.m3u8    live/{stream}/{rendition}/index.m3u8
//! /live/{stream}/{rendition}/{seq}.ts      live/{stream}/{rendition}/{seq}.ts  (or .m4s)
//! /live/{stream}/{rendition}/{seq}.{i}.{tag}.m4s  (LL-HLS part i, by the session tagged tag)
//! /live/{stream}/{rendition}/init-{n}.mp4  live/{stream}/{rendition}/init-{n}.mp4
//! /vod/{asset}/…                           vod/{asset}/…  (init.mp4, {i}.ts|m4s)
//!                                          live/{stream}/.staging/{session}/… (being written)
//! ```

use std::path::{Path, PathBuf};

/// The separate audio rendition of CMAF output (a name no ladder rendition may take).
pub const AUDIO_RENDITION: &str = "audio";
/// A stream's multivariant playlist.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// A rendition's media playlist.
pub const MEDIA_PLAYLIST: &str = "index.m3u8";
/// A CMAF stream's DASH manifest.
pub const DASH_MANIFEST: &str = "manifest.mpd";
/// A VOD asset's init segment (one per rendition; a VOD asset has one session).
pub const VOD_INIT_SEGMENT: &str = "init.mp4";
/// Where the fragment writer puts a session's init segment while staging.
pub const STAGED_INIT_SEGMENT: &str = "init.mp4";
/// The clock every listener serves (the live MPD's `UTCTiming`, resolved against the MPD).
pub const TIME_PATH: &str = "/time";
/// The origin's stream health (JSON): every stream it runs, healthy or why not.
pub const STREAMS_PATH: &str = "/streams";

/// WHIP endpoints: `/whip/{stream}`; sessions `/whip/{stream}/{session}`.
pub const WHIP_PREFIX: &str = "/whip/";

/// The WHIP session resource of `stream` (the `Location` of a 201).
pub fn whip_session_path(stream: &str, session: &str) -> String {
    format!("{WHIP_PREFIX}{stream}/{session}")
}
/// Hidden per-stream directory of segments being written (never served: names start with `.`).
pub const STAGING_DIR: &str = ".staging";

/// Segment file extensions the origin writes: MPEG-TS, CMAF fragments, packed audio.
pub const SEGMENT_EXTENSIONS: [&str; 3] = ["ts", "m4s", "aac"];

/// A segment's file name: `{sequence}.{ext}`.
pub fn segment_file(sequence: u64, ext: &str) -> String {
    format!("{sequence}.{ext}")
}

/// LL-HLS part `index` of segment `sequence`, written by the session tagged `tag` (CMAF only):
/// `{sequence}.{index}.{tag}.m4s`. Parts are public before their segment is complete, so a
/// session that dies mid-segment leaves parts whose sequence the next session writes again;
/// the tag (random per session) keeps those names distinct, so a cache never serves one
/// session's bytes under another's name.
pub fn part_file(sequence: u64, index: u32, tag: &str) -> String {
    format!("{sequence}.{index}.{tag}.m4s")
}

/// A session's part tag: 1..=16 lowercase hex digits.
pub fn valid_part_tag(tag: &str) -> bool {
    (1..=16).contains(&tag.len()) && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The (sequence, index) a part file name stands for, if it is one ([`part_file`] exactly).
pub fn parse_part_file(name: &str) -> Option<(u64, u32)> {
    let mut it = name.strip_suffix(".m4s")?.split('.');
    let (seq, index, tag) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !valid_part_tag(tag) {
        return None;
    }
    let canonical = |s: &str| !s.is_empty() && (s == "0" || !s.starts_with('0'));
    if !canonical(seq) || !canonical(index) {
        return None;
    }
    let found = (seq.parse().ok()?, index.parse().ok()?);
    (part_file(found.0, found.1, tag) == name).then_some(found)
}

/// Whether `uri` is the URL path of part `index` of segment `sequence` of `stream`/`rendition`
/// (any session's tag).
pub fn is_live_part_uri(
    uri: &str,
    stream: &str,
    rendition: &str,
    sequence: u64,
    index: u32,
) -> bool {
    valid_name(stream)
        && valid_name(rendition)
        && uri
            .strip_prefix(&format!("/live/{stream}/{rendition}/"))
            .and_then(parse_part_file)
            == Some((sequence, index))
}

/// URL path of a live part.
pub fn live_part_uri(
    stream: &str,
    rendition: &str,
    sequence: u64,
    index: u32,
    tag: &str,
) -> String {
    format!(
        "/live/{stream}/{rendition}/{}",
        part_file(sequence, index, tag)
    )
}

/// A live session's init segment: `init-{first sequence of the session}.mp4`, the same name in
/// every rendition and distinct per session, so players and caches never see an init segment
/// change under one name.
pub fn session_init_segment(first_sequence: u64) -> String {
    format!("init-{first_sequence}.mp4")
}

/// A wall-clock stream's init segment: `init-{ladder key}.mp4`, where the key hashes what the
/// init segment is made from (the planned ladder, source size, encoder settings). Origins fed
/// the same source make the same bytes (but for the `mvhd` creation time) under the same name,
/// so a player that moves between them, or between sessions of one, loads it once.
pub fn wallclock_init_segment(ladder_key: u64) -> String {
    format!("init-{ladder_key:016x}.mp4")
}

/// A rendition's media playlist relative to its stream (as the multivariant playlist lists it).
pub fn rendition_playlist(rendition: &str) -> String {
    format!("{rendition}/{MEDIA_PLAYLIST}")
}

/// DASH `SegmentTemplate@media` for a rendition (`$Number$` is the HLS media sequence).
pub fn dash_media_template(rendition: &str) -> String {
    format!("{rendition}/$Number$.m4s")
}

/// URL path of a live stream's multivariant playlist.
pub fn live_master_uri(stream: &str) -> String {
    format!("/live/{stream}/{MASTER_PLAYLIST}")
}

/// URL path of a live stream's DASH manifest.
pub fn live_manifest_uri(stream: &str) -> String {
    format!("/live/{stream}/{DASH_MANIFEST}")
}

/// URL path of a live rendition's media playlist.
pub fn live_playlist_uri(stream: &str, rendition: &str) -> String {
    format!("/live/{stream}/{rendition}/{MEDIA_PLAYLIST}")
}

/// URL path of a live segment.
pub fn live_segment_uri(stream: &str, rendition: &str, sequence: u64, ext: &str) -> String {
    format!("/live/{stream}/{rendition}/{}", segment_file(sequence, ext))
}

/// Whether `uri` is exactly the URL path the origin gives segment `sequence` of
/// `stream`/`rendition`, in one of the formats it writes.
pub fn is_live_segment_uri(uri: &str, stream: &str, rendition: &str, sequence: u64) -> bool {
    SEGMENT_EXTENSIONS
        .iter()
        .any(|ext| uri == live_segment_uri(stream, rendition, sequence, ext))
        && valid_name(stream)
        && valid_name(rendition)
}

/// Names that end up in URLs and file paths: `[A-Za-z0-9_-]`, 1..=64 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A live stream's directory in the store.
pub fn live_stream_dir(store_dir: &Path, stream: &str) -> PathBuf {
    store_dir.join("live").join(stream)
}

/// Staging directory of one session of a stream.
pub fn staging_dir(stream_dir: &Path, session_id: u64) -> PathBuf {
    stream_dir.join(STAGING_DIR).join(session_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_files_agree() {
        assert_eq!(live_master_uri("demo"), "/live/demo/master.m3u8");
        assert_eq!(
            live_playlist_uri("demo", "720p"),
            "/live/demo/720p/index.m3u8"
        );
        assert_eq!(
            live_segment_uri("demo", "720p", 42, "ts"),
            "/live/demo/720p/42.ts"
        );
        assert_eq!(rendition_playlist("audio"), "audio/index.m3u8");
        assert_eq!(session_init_segment(10), "init-10.mp4");
        assert_eq!(
            staging_dir(Path::new("/s/live/demo"), 3),
            Path::new("/s/live/demo/.staging/3")
        );
    }

    #[test]
    fn part_names_round_trip_exactly() {
        assert_eq!(part_file(12, 3, "9f"), "12.3.9f.m4s");
        assert_eq!(parse_part_file("12.3.9f.m4s"), Some((12, 3)));
        assert_eq!(parse_part_file("0.0.0.m4s"), Some((0, 0)));
        for bad in [
            "12.m4s",
            "12.3.m4s",
            "012.3.a.m4s",
            "12.03.a.m4s",
            "12.3.a.ts",
            "a.3.a.m4s",
            "1.2.3.4.m4s",
            ".3.a.m4s",
            "1.2.A.m4s",
            "1.2.g.m4s",
            "1.2..m4s",
            "1.2.00000000000000000.m4s",
        ] {
            assert_eq!(parse_part_file(bad), None, "{bad}");
        }
        assert_eq!(
            live_part_uri("demo", "720p", 5, 0, "ab"),
            "/live/demo/720p/5.0.ab.m4s"
        );
        assert!(is_live_part_uri(
            "/live/demo/720p/5.0.ab.m4s",
            "demo",
            "720p",
            5,
            0
        ));
        assert!(!is_live_part_uri(
            "/live/demo/720p/5.0.ab.m4s",
            "demo",
            "720p",
            5,
            1
        ));
        assert!(!is_live_part_uri(
            "/live/demo/480p/5.0.ab.m4s",
            "demo",
            "720p",
            5,
            0
        ));
    }

    #[test]
    fn segment_uris_are_recognised_exactly() {
        assert!(is_live_segment_uri(
            "/live/demo/720p/12.ts",
            "demo",
            "720p",
            12
        ));
        assert!(is_live_segment_uri(
            "/live/demo/audio/12.m4s",
            "demo",
            "audio",
            12
        ));
        for bad in [
            "/live/demo/720p/012.ts",
            "/live/demo/720p/12.ts?x",
            "/live/demo/720p/12.mp4",
            "/live/demo/720p/../12.ts",
            "/live/demo//720p/12.ts",
        ] {
            assert!(!is_live_segment_uri(bad, "demo", "720p", 12), "{bad}");
        }
        assert!(!is_live_segment_uri("/live/../720p/1.ts", "..", "720p", 1));
    }
}
