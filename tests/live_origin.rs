//! Issue #2 end to end: real ffmpeg publishes RTMP into the real zoomate binary; a real HTTP
//! client and ffprobe check what viewers would get.

mod common;
use common::*;
use std::collections::HashMap;
use std::time::Duration;

/// Fetches every segment listed in `rendition`'s playlist into `dir`; returns (seq, path).
fn download_segments(
    z: &Zoomate,
    stream: &str,
    rendition: &str,
    dir: &std::path::Path,
) -> Vec<(u64, std::path::PathBuf)> {
    let origin = z.origin.expect("origin");
    let pl = get(origin, &format!("/live/{stream}/{rendition}/index.m3u8"));
    assert_eq!(pl.status, 200);
    let view = parse_media_playlist(&pl.text());
    let mut out = Vec::new();
    for (i, (_, uri, _)) in view.segments.iter().enumerate() {
        let seq = view.media_sequence + i as u64;
        let resp = get(origin, &format!("/live/{stream}/{rendition}/{uri}"));
        assert_eq!(resp.status, 200, "segment {uri}");
        let path = dir.join(format!("{rendition}-{seq}.ts"));
        std::fs::write(&path, &resp.body).unwrap();
        out.push((seq, path));
    }
    out
}

/// First video frame of a segment: (is keyframe, pts seconds).
fn first_video_frame(path: &std::path::Path) -> (bool, f64) {
    let v = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_frames",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame,pts_time,pict_type",
        ],
    );
    let f = &v["frames"][0];
    let key = f["key_frame"].as_i64() == Some(1);
    let pts = f["pts_time"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("pts_time");
    (key, pts)
}

#[test]
fn rtmp_publish_yields_aligned_abr_ladder_over_http() {
    let z = Zoomate::start("origin", TEST_LADDER);
    let origin = z.origin.unwrap();
    // The publisher's own GOP is 10 s: zoomate's 1 s segments must not depend on it.
    let mut ff = ffmpeg_publish(&z.rtmp_url("cam"), "1280x720", 8, 300);

    let master = wait_for(Duration::from_secs(30), "master playlist", || {
        let r = get(origin, "/live/cam/master.m3u8");
        (r.status == 200).then(|| r.text())
    });
    // Media sequence never decreases across reloads while live.
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    for _ in 0..8 {
        for r in ["360p", "240p", "180p"] {
            let resp = get(origin, &format!("/live/cam/{r}/index.m3u8"));
            if resp.status != 200 {
                continue;
            }
            let v = parse_media_playlist(&resp.text());
            let prev = last_seq
                .insert(r.to_string(), v.media_sequence)
                .unwrap_or(0);
            assert!(
                v.media_sequence >= prev,
                "{r}: media sequence went from {prev} to {}",
                v.media_sequence
            );
        }
        // Pacing: a player reloads the live playlist about this often.
        std::thread::sleep(Duration::from_millis(400));
    }
    let status = ff.wait().expect("ffmpeg");
    assert!(status.success(), "ffmpeg publisher failed");

    // Master: every rendition, with the attributes players need, CODECS from the real stream.
    let variants = parse_master(&master);
    let names: Vec<&str> = variants
        .iter()
        .map(|(_, uri)| uri.split('/').next().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "master: {master}");
    for (attrs, uri) in &variants {
        let bw: u64 = attrs["BANDWIDTH"].parse().unwrap();
        let avg: u64 = attrs["AVERAGE-BANDWIDTH"].parse().unwrap();
        assert!(
            bw > 0 && avg > 0 && avg <= bw,
            "{uri}: BANDWIDTH {bw} AVERAGE {avg}"
        );
        assert!(
            attrs["CODECS"].starts_with("avc1.") && attrs["CODECS"].contains("mp4a.40.2"),
            "{uri}: {:?}",
            attrs["CODECS"]
        );
        assert!(
            attrs.contains_key("RESOLUTION") && attrs.contains_key("FRAME-RATE"),
            "{uri}: {attrs:?}"
        );
    }
    let res: Vec<&str> = variants
        .iter()
        .map(|(a, _)| a["RESOLUTION"].as_str())
        .collect();
    assert!(
        res.contains(&"640x360") && res.contains(&"426x240") && res.contains(&"320x180"),
        "{res:?}"
    );

    // Let the last segments land after EOS.
    z.wait_sessions_over("cam", 1);
    let tmp = tempfile::tempdir().unwrap();
    let mut starts: HashMap<u64, Vec<f64>> = HashMap::new();
    for r in ["360p", "240p", "180p"] {
        let text = get(origin, &format!("/live/cam/{r}/index.m3u8")).text();
        let v = parse_media_playlist(&text);
        assert_eq!(v.target_duration, 1, "{text}");
        for (d, uri, _) in &v.segments {
            // RFC 8216bis 4.4.3.1: EXTINF rounded to the nearest integer <= TARGETDURATION.
            assert!(
                d.round() as u64 <= v.target_duration,
                "{r}/{uri}: EXTINF {d} > {}",
                v.target_duration
            );
        }
        assert!(
            v.segments.len() >= 5,
            "{r}: only {} segments:\n{text}",
            v.segments.len()
        );
        // Every segment but the last is exactly one segment duration (IDRs at each boundary).
        for (d, uri, _) in &v.segments[..v.segments.len() - 1] {
            assert!(
                (d - 1.0).abs() <= 1.0 / 30.0 + 1e-6,
                "{r}/{uri}: EXTINF {d}, expected 1.000:\n{text}"
            );
        }
        for (seq, path) in download_segments(&z, "cam", r, tmp.path()) {
            let probe = ffprobe(&path, &[]);
            let kinds: Vec<&str> = probe["streams"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["codec_type"].as_str())
                .collect();
            assert!(
                kinds.contains(&"video") && kinds.contains(&"audio"),
                "{r} #{seq}: {kinds:?}"
            );
            let (key, pts) = first_video_frame(&path);
            assert!(key, "{r} segment {seq} does not start with a keyframe");
            starts.entry(seq).or_default().push(pts);
        }
    }
    // Segment N starts at the same time in every rendition (within one frame).
    let frame = 1.0 / 30.0;
    let mut compared = 0;
    for (seq, pts) in &starts {
        if pts.len() == 3 {
            let (min, max) = pts
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &p| (a.min(p), b.max(p)));
            assert!(
                max - min <= frame + 1e-6,
                "segment {seq} starts differ: {pts:?}"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 5,
        "only {compared} segments present in all renditions"
    );
}

#[test]
fn reconnect_continues_media_sequence_with_discontinuity() {
    let z = Zoomate::start("origin", TEST_LADDER);
    let origin = z.origin.unwrap();
    let mut first = ffmpeg_publish(&z.rtmp_url("re"), "640x360", 3, 30);
    assert!(first.wait().unwrap().success());
    let before = wait_for(Duration::from_secs(15), "first session's segments", || {
        let r = get(origin, "/live/re/180p/index.m3u8");
        (r.status == 200)
            .then(|| parse_media_playlist(&r.text()))
            .filter(|v| v.segments.len() >= 2)
    });
    // The publisher is gone; let the session finish, then reconnect.
    z.wait_sessions_over("re", 1);
    let mut second = ffmpeg_publish(&z.rtmp_url("re"), "640x360", 3, 30);
    assert!(
        second.wait().unwrap().success(),
        "second publish rejected; log:\n{}",
        z.log()
    );
    z.wait_sessions_over("re", 2);
    for r in ["360p", "240p", "180p"] {
        let text = get(origin, &format!("/live/re/{r}/index.m3u8")).text();
        let v = parse_media_playlist(&text);
        assert!(
            v.media_sequence >= before.media_sequence,
            "{r}: sequence went backwards:\n{text}"
        );
        let disc: Vec<usize> = v
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.2)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            disc.len(),
            1,
            "{r}: expected exactly one EXT-X-DISCONTINUITY:\n{text}"
        );
        assert!(
            disc[0] > 0 && disc[0] < v.segments.len(),
            "{r}: discontinuity must join the two sessions:\n{text}"
        );
    }
    // Renditions stay in step: same media sequence and count everywhere.
    let views: Vec<_> = ["360p", "240p", "180p"]
        .iter()
        .map(|r| parse_media_playlist(&get(origin, &format!("/live/re/{r}/index.m3u8")).text()))
        .collect();
    assert!(
        views
            .windows(2)
            .all(|w| w[0].media_sequence == w[1].media_sequence
                && w[0].segments.len() == w[1].segments.len())
    );
}

#[test]
fn stream_keys_reject_wrong_and_missing_keys() {
    let z = Zoomate::start(
        "origin",
        &format!("{TEST_LADDER}\n[rtmp.stream_keys]\nsecure = \"correct-horse-battery\"\n"),
    );
    let origin = z.origin.unwrap();
    for url in [
        z.rtmp_url("secure?key=wrong-key-value"),
        z.rtmp_url("secure"),
        z.rtmp_url("other?key=correct-horse-battery"),
    ] {
        let mut ff = ffmpeg_publish(&url, "320x180", 2, 30);
        let ok = ff.wait().unwrap().success();
        assert!(!ok, "publish to {url} should have been rejected");
    }
    assert_eq!(get(origin, "/live/secure/master.m3u8").status, 404);
    assert!(
        !z.store().join("live/secure").exists(),
        "a rejected publish wrote files"
    );
    assert!(
        !z.log().contains("correct-horse-battery") && !z.log().contains("wrong-key-value"),
        "a key was logged"
    );
    // The right key works.
    let mut ff = ffmpeg_publish(
        &z.rtmp_url("secure?key=correct-horse-battery"),
        "320x180",
        3,
        30,
    );
    assert!(ff.wait().unwrap().success(), "log:\n{}", z.log());
    wait_for(Duration::from_secs(15), "keyed stream's playlist", || {
        (get(origin, "/live/secure/180p/index.m3u8").status == 200).then_some(())
    });
    assert!(
        !z.log().contains("correct-horse-battery"),
        "the key was logged"
    );
}

#[test]
fn second_publisher_to_a_live_stream_is_rejected() {
    let z = Zoomate::start("origin", TEST_LADDER);
    let mut first = ffmpeg_publish(&z.rtmp_url("dup"), "320x180", 6, 30);
    wait_for(Duration::from_secs(15), "first publisher live", || {
        (get(z.origin.unwrap(), "/live/dup/180p/index.m3u8").status == 200).then_some(())
    });
    let mut second = ffmpeg_publish(&z.rtmp_url("dup"), "320x180", 2, 30);
    assert!(
        !second.wait().unwrap().success(),
        "second publisher was accepted"
    );
    assert!(
        first.wait().unwrap().success(),
        "first publisher was disturbed"
    );
}

#[test]
fn a_faster_than_realtime_publisher_is_drained_completely_not_cut_by_the_watchdog() {
    // EOS watchdog of 1 s; the publisher sends 8 s of 720p in far less time, leaving a backlog
    // that takes longer than 1 s to encode after the publisher has gone.
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[pipelines]\neos_timeout_ms = 1000\n[hls]\nwindow_segments = 100\n"
        ),
    );
    let mut ff = ffmpeg_publish_paced(&z.rtmp_url("fast"), "1280x720", 8, 30, false);
    assert!(ff.wait().unwrap().success());
    let total = wait_for(Duration::from_secs(60), "all 8 s listed", || {
        let r = get(z.origin.unwrap(), "/live/fast/360p/index.m3u8");
        let total: f64 = parse_media_playlist(&r.text())
            .segments
            .iter()
            .map(|s| s.0)
            .sum();
        (r.status == 200 && total >= 7.5).then_some(total)
    });
    assert!(total <= 8.5, "{total}");
    assert!(
        !z.log().contains("EOS did not complete"),
        "watchdog cut a draining pipeline"
    );
}

#[test]
fn a_publisher_without_audio_gets_a_video_only_ladder() {
    let z = Zoomate::start("origin", TEST_LADDER);
    let mut ff = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-t",
            "5",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-an",
            "-f",
            "flv",
        ])
        .arg(z.rtmp_url("mute"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(ff.wait().unwrap().success());
    let master = wait_for(Duration::from_secs(20), "video-only master", || {
        let r = get(z.origin.unwrap(), "/live/mute/master.m3u8");
        (r.status == 200).then(|| r.text())
    });
    for (attrs, _) in parse_master(&master) {
        assert!(
            attrs["CODECS"].starts_with("avc1.") && !attrs["CODECS"].contains("mp4a"),
            "{master}"
        );
    }
    z.wait_sessions_over("mute", 1);
    let v = parse_media_playlist(&get(z.origin.unwrap(), "/live/mute/180p/index.m3u8").text());
    let total: f64 = v.segments.iter().map(|s| s.0).sum();
    assert!(total >= 4.5, "only {total} s listed");
    assert!(!z.log().contains("watchdog"), "the ladder stalled");
}
