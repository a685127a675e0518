//! CMAF segments and DASH manifests (issue #5): one set of fMP4 files serves HLS (EXT-X-MAP)
//! and DASH. Checked with the clients users have: ffprobe decodes init + media segments, the
//! third-party Python `mpegdash` parser reads the MPDs (scripts/mpd_summary.py), HTTP through
//! the real origin.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const VIDEO: [&str; 3] = ["360p", "240p", "180p"];

/// The MPD as the `mpegdash` parser sees it (segments expanded from the SegmentTimeline).
fn mpd_summary(mpd: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "test peer missing: run scripts/setup-test-venv (make test does)"
    );
    let out = Command::new(python)
        .arg(root.join("scripts/mpd_summary.py"))
        .arg(mpd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mpegdash could not parse {}: {}",
        mpd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("summary JSON")
}

/// Representation id → (codecs, width, segments[(number, t, d)], initialization), over all periods.
fn representations(
    summary: &Value,
    content_type: &str,
) -> BTreeMap<String, (String, u64, Vec<(u64, i64, u64)>, Vec<String>)> {
    let mut reps: BTreeMap<String, (String, u64, Vec<(u64, i64, u64)>, Vec<String>)> =
        BTreeMap::new();
    for p in summary["periods"].as_array().unwrap() {
        let sets: Vec<&Value> = p["adaptation_sets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["content_type"] == content_type)
            .collect();
        assert!(
            sets.len() <= 1,
            "one AdaptationSet per media type per period: {p}"
        );
        for a in sets {
            for r in a["representations"].as_array().unwrap() {
                let e = reps
                    .entry(r["id"].as_str().unwrap().to_string())
                    .or_default();
                e.0 = r["codecs"].as_str().unwrap_or_default().to_string();
                e.1 = r["height"].as_u64().unwrap_or(0);
                e.3.push(r["initialization"].as_str().unwrap().to_string());
                assert_eq!(r["timescale"].as_u64(), Some(1000));
                for s in r["segments"].as_array().unwrap() {
                    e.2.push((
                        s["number"].as_u64().unwrap(),
                        s["t"].as_i64().unwrap(),
                        s["d"].as_u64().unwrap(),
                    ));
                }
            }
        }
    }
    reps
}

/// init + media segment joined, as a player's source buffer sees them, then ffprobe'd.
fn probe_fmp4(dir: &Path, init: &[u8], segment: &[u8], name: &str) -> Value {
    let path = dir.join(name);
    let mut bytes = init.to_vec();
    bytes.extend_from_slice(segment);
    std::fs::write(&path, bytes).unwrap();
    ffprobe(&path, &["-show_frames", "-read_intervals", "%+#1"])
}

/// EXT-X-MAP URIs and (PDT ms, URI) of each segment, in order.
fn playlist_maps_and_pdts(text: &str) -> (Vec<String>, Vec<(i64, String)>) {
    let mut maps = Vec::new();
    let mut segs = Vec::new();
    let mut pdt = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            maps.push(v.trim_end_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(zoomate::packaging::hls::parse_rfc3339_millis(v).expect("PDT"));
        } else if !line.starts_with('#') && !line.is_empty() {
            assert!(
                !maps.is_empty(),
                "segment {line} before any EXT-X-MAP:\n{text}"
            );
            segs.push((pdt.take().unwrap_or(0), line.to_string()));
        }
    }
    (maps, segs)
}

#[test]
fn live_cmaf_serves_hls_and_dash_from_the_same_files() {
    let extra = format!(
        "{TEST_LADDER}\n[[streams]]\nname = \"cam\"\nsource = \"test-pattern\"\nwidth = 640\nheight = 360\nformat = \"cmaf\"\n"
    );
    let z = Zoomate::start("origin", &extra);
    let origin = z.origin.expect("origin bound");
    let work = tempfile::tempdir().unwrap();

    wait_for(
        Duration::from_secs(40),
        "4 segments in every rendition",
        || {
            VIDEO
                .iter()
                .chain(["audio"].iter())
                .all(|r| {
                    let p = get(origin, &format!("/live/cam/{r}/index.m3u8"));
                    p.status == 200 && p.text().matches("#EXTINF").count() >= 4
                })
                .then_some(())
        },
    );

    // Master: audio is its own rendition group, referenced by every variant.
    let master = get(origin, "/live/cam/master.m3u8").text();
    assert!(
        master.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\"")
            && master.contains("URI=\"audio/index.m3u8\""),
        "{master}"
    );
    let variants = parse_master(&master);
    assert_eq!(variants.len(), 3, "{master}");
    for (attrs, _) in &variants {
        assert_eq!(attrs.get("AUDIO").map(String::as_str), Some("aud"));
        assert!(
            attrs["CODECS"].starts_with("avc1.") && attrs["CODECS"].ends_with(",mp4a.40.2"),
            "{master}"
        );
    }

    // MPD, fetched like a player would.
    let mpd = get(origin, "/live/cam/manifest.mpd");
    assert_eq!(mpd.status, 200);
    assert_eq!(mpd.header("content-type"), Some("application/dash+xml"));
    let mpd_path = work.path().join("manifest.mpd");
    std::fs::write(&mpd_path, &mpd.body).unwrap();
    let summary = mpd_summary(&mpd_path);
    assert_eq!(summary["type"], "dynamic");
    assert_eq!(
        summary["availability_start_time"],
        "1970-01-01T00:00:00.000Z"
    );
    assert!(
        summary["minimum_update_period"].is_string()
            && summary["time_shift_buffer_depth"].is_string()
            && summary["publish_time"].is_string()
    );
    let video = representations(&summary, "video");
    let audio = representations(&summary, "audio");
    assert_eq!(
        video.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["180p", "240p", "360p"]
    );
    assert_eq!(
        audio.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["audio"]
    );
    assert_eq!(audio["audio"].0, "mp4a.40.2");

    for r in VIDEO {
        let (codecs, height, segments, _) = &video[r];
        assert!(
            master.contains(&format!("CODECS=\"{codecs},mp4a.40.2\"")),
            "{r}: MPD codecs {codecs} not in master"
        );
        // HLS and DASH describe the same files at the same times: segment N's DASH `t` is its
        // HLS program date time.
        let text = get(origin, &format!("/live/cam/{r}/index.m3u8")).text();
        assert!(text.contains("#EXT-X-VERSION:6"), "{text}");
        let (maps, hls) = playlist_maps_and_pdts(&text);
        let hls_by_number: BTreeMap<u64, i64> = hls
            .iter()
            .map(|(pdt, uri)| (uri.trim_end_matches(".m4s").parse().unwrap(), *pdt))
            .collect();
        let mut matched = 0;
        for (number, t, _) in segments {
            if let Some(pdt) = hls_by_number.get(number) {
                assert_eq!(t, pdt, "{r} segment {number}: DASH t vs HLS PDT");
                matched += 1;
            }
        }
        assert!(
            matched >= 3,
            "{r}: HLS and MPD share too few segments ({matched})"
        );

        // The newest listed segment decodes with its init segment, starts on a keyframe, has the
        // rendition's size, and its tfdt is the DASH time (wall clock).
        let init = get(origin, &format!("/live/cam/{r}/{}", maps.last().unwrap()));
        assert_eq!(init.status, 200);
        assert_eq!(init.header("content-type"), Some("video/mp4"));
        let (pdt, uri) = hls.last().unwrap();
        let seg = get(origin, &format!("/live/cam/{r}/{uri}"));
        assert_eq!(seg.header("content-type"), Some("video/iso.segment"));
        let probe = probe_fmp4(work.path(), &init.body, &seg.body, &format!("{r}.mp4"));
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "h264");
        assert_eq!(stream["height"].as_u64(), Some(*height));
        assert_eq!(
            probe["frames"][0]["key_frame"].as_i64(),
            Some(1),
            "{r}/{uri} must start with an IDR"
        );
        let start_s: f64 = probe["format"]["start_time"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (start_s * 1000.0 - *pdt as f64).abs() < 2.0,
            "{r}/{uri}: tfdt {start_s} s vs PDT {pdt} ms"
        );
    }

    // Audio: its own init + segments, AAC 48 kHz stereo.
    let text = get(origin, "/live/cam/audio/index.m3u8").text();
    let (maps, hls) = playlist_maps_and_pdts(&text);
    let init = get(origin, &format!("/live/cam/audio/{}", maps.last().unwrap()));
    let seg = get(
        origin,
        &format!("/live/cam/audio/{}", hls.last().unwrap().1),
    );
    let probe = probe_fmp4(work.path(), &init.body, &seg.body, "audio.mp4");
    assert_eq!(probe["streams"][0]["codec_name"], "aac");
    assert_eq!(probe["streams"][0]["sample_rate"], "48000");
    assert_eq!(probe["streams"][0]["channels"].as_u64(), Some(2));
    assert_eq!(
        probe["streams"].as_array().unwrap().len(),
        1,
        "CMAF: one track per file"
    );
}

#[test]
fn a_publisher_reconnect_is_a_new_period_and_a_new_init_segment() {
    require_tool("ffmpeg");
    let extra = format!("{TEST_LADDER}\n[rtmp.stream_formats]\nshow = \"cmaf\"\n");
    let z = Zoomate::start("origin", &extra);
    let origin = z.origin.expect("origin bound");
    for session in 1..=2 {
        let mut p = ffmpeg_publish(&z.rtmp_url("show"), "640x360", 4, 60);
        assert!(
            p.wait().unwrap().success(),
            "ffmpeg publish failed; log:\n{}",
            z.log()
        );
        // The session finishes its last segments after the publisher leaves.
        z.wait_sessions_over("show", session);
    }
    let text = wait_for(Duration::from_secs(20), "both sessions listed", || {
        let t = get(origin, "/live/show/360p/index.m3u8").text();
        (t.contains("#EXT-X-DISCONTINUITY\n")).then_some(t)
    });
    let (maps, _) = playlist_maps_and_pdts(&text);
    assert_eq!(maps.len(), 2, "one EXT-X-MAP per session:\n{text}");
    assert_ne!(
        maps[0], maps[1],
        "a new session gets a new init segment name (caches never see one change)"
    );
    assert!(
        text.contains(&format!(
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"{}\"",
            maps[1]
        )),
        "{text}"
    );

    let work = tempfile::tempdir().unwrap();
    let mpd_path = work.path().join("manifest.mpd");
    std::fs::write(&mpd_path, get(origin, "/live/show/manifest.mpd").body).unwrap();
    let summary = mpd_summary(&mpd_path);
    let periods = summary["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 2, "one Period per session: {summary}");
    let video = representations(&summary, "video");
    let (_, _, segments, inits) = &video["360p"];
    assert_eq!(
        inits,
        &vec![format!("360p/{}", maps[0]), format!("360p/{}", maps[1])]
    );
    // Numbers continue across the periods (the HLS media sequence), never repeat.
    let numbers: Vec<u64> = segments.iter().map(|s| s.0).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
}

fn vod(z: &Zoomate, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .arg("--config")
        .arg(z.dir.path().join("zoomate.toml"))
        .arg("vod")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn vod_cmaf_asset_is_hls_and_static_dash_served_by_the_origin() {
    let z = Zoomate::start("origin", TEST_LADDER);
    let origin = z.origin.expect("origin bound");
    let input = make_clip(z.dir.path(), "clip.mp4", "426x240", 6, true);
    let input = input.to_str().unwrap();
    let o = vod(&z, &[input, "--name", "c1", "--format", "cmaf"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = vod(&z, &[input, "--name", "t1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let asset = z.store().join("vod/c1");

    // HLS: fMP4 playlists with EXT-X-MAP; the 360p rung (taller than the source) is dropped.
    let master = get(origin, "/vod/c1/master.m3u8");
    assert_eq!(master.status, 200);
    let master = master.text();
    let names: Vec<String> = parse_master(&master)
        .iter()
        .map(|(_, u)| u.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["240p", "180p"], "{master}");
    assert!(master.contains("#EXT-X-MEDIA:TYPE=AUDIO"), "{master}");
    for r in ["240p", "180p", "audio"] {
        let text = get(origin, &format!("/vod/c1/{r}/index.m3u8")).text();
        assert!(
            text.contains("#EXT-X-PLAYLIST-TYPE:VOD")
                && text.trim_end().ends_with("#EXT-X-ENDLIST"),
            "{text}"
        );
        let (maps, _) = playlist_maps_and_pdts(&text);
        assert_eq!(maps, vec!["init.mp4"], "{text}");
    }

    // DASH: static, the expected representations, durations summing to the source's.
    let mpd = get(origin, "/vod/c1/manifest.mpd");
    assert_eq!(
        (mpd.status, mpd.header("content-type")),
        (200, Some("application/dash+xml"))
    );
    assert_eq!(mpd.header("cache-control"), Some("public, max-age=86400"));
    let summary = mpd_summary(&asset.join("manifest.mpd"));
    assert_eq!(summary["type"], "static");
    let total: f64 = {
        let d = summary["media_presentation_duration"].as_str().unwrap();
        d.trim_start_matches("PT")
            .trim_end_matches('S')
            .parse()
            .unwrap()
    };
    assert!(
        (total - 6.0).abs() <= 1.0,
        "mediaPresentationDuration {total} s, source 6 s"
    );
    let video = representations(&summary, "video");
    assert_eq!(
        video.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["180p", "240p"]
    );
    assert!(
        video.values().all(|(_, h, _, _)| *h <= 240),
        "no rendition taller than the source"
    );
    let audio = representations(&summary, "audio");
    for (id, (_, _, segments, inits)) in video.iter().chain(audio.iter()) {
        let sum_ms: u64 = segments.iter().map(|s| s.2).sum();
        assert!(
            (sum_ms as f64 / 1000.0 - 6.0).abs() <= 1.0,
            "{id}: segments sum to {sum_ms} ms"
        );
        // Every listed segment exists and decodes with the init segment.
        let init = std::fs::read(asset.join(&inits[0])).unwrap();
        for (number, _, _) in segments {
            let seg = std::fs::read(asset.join(id).join(format!("{number}.m4s"))).unwrap();
            let probe = probe_fmp4(z.dir.path(), &init, &seg, "vod-check.mp4");
            if id != "audio" {
                assert_eq!(
                    probe["frames"][0]["key_frame"].as_i64(),
                    Some(1),
                    "{id}/{number} must start with a keyframe"
                );
            }
        }
    }
    let seg = get(origin, "/vod/c1/240p/0.m4s");
    assert_eq!(
        (seg.status, seg.header("content-type")),
        (200, Some("video/iso.segment"))
    );
    assert_eq!(
        get(origin, "/vod/c1/240p/init.mp4").header("content-type"),
        Some("video/mp4")
    );

    // The TS asset is served too (HLS only; DASH needs fMP4).
    let ts_master = get(origin, "/vod/t1/master.m3u8");
    assert_eq!(ts_master.status, 200);
    assert!(
        !ts_master.text().contains("EXT-X-MEDIA"),
        "TS renditions carry their own audio"
    );
    let seg = get(origin, "/vod/t1/240p/0.ts");
    assert_eq!(
        (seg.status, seg.header("content-type")),
        (200, Some("video/mp2t"))
    );
    assert_eq!(get(origin, "/vod/t1/manifest.mpd").status, 404);
    assert_eq!(get(origin, "/vod/nope/master.m3u8").status, 404);

    // A failed CMAF job leaves nothing either.
    let bytes = std::fs::read(input).unwrap();
    let truncated = z.dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let o = vod(
        &z,
        &[
            truncated.to_str().unwrap(),
            "--name",
            "bad",
            "--format",
            "cmaf",
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated.mp4"));
    let mut left: Vec<String> = std::fs::read_dir(z.store().join("vod"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec!["c1", "t1"]);
    let o = vod(&z, &[input, "--name", "x", "--format", "webm"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("webm"));
}

/// A DASH viewer who joins just after a publisher came back: the old session's Period has
/// ended and the gap while the publisher was away lies between the two Periods. dash.js starts
/// `suggestedPresentationDelay` (3 segments) behind the live edge, which is inside that gap.
/// Before the old Period said where it ends (`@duration`), the gap belonged to it: dash.js
/// loaded its init segment and waited there for good, reloading the MPD, fetching no segment.
#[test]
fn dash_js_joining_in_the_gap_after_a_reconnect_plays_the_new_period() {
    require_tool("ffmpeg");
    // 4 s segments: dash.js joins 12 s behind the clock. The publisher is away 12 s and the
    // viewer joins once the new session's first segment is listed (about 5 s after it came
    // back), so the join lands about 7 s before the new Period: inside the gap, with margin on
    // either side for a slow browser start.
    let ladder = TEST_LADDER.replace("segment_duration_ms = 1000", "segment_duration_ms = 4000");
    let extra = format!("{ladder}\n[rtmp.stream_formats]\nback = \"cmaf\"\n");
    let z = Zoomate::start("origin", &extra);
    let origin = z.origin.expect("origin bound");
    let mut first = ffmpeg_publish(&z.rtmp_url("back"), "640x360", 8, 120);
    assert!(
        first.wait().unwrap().success(),
        "ffmpeg publish failed; log:\n{}",
        z.log()
    );
    z.wait_sessions_over("back", 1);
    // The scenario is the publisher's absence itself, not a wait for an event.
    std::thread::sleep(Duration::from_secs(12));
    let mut second = ffmpeg_publish(&z.rtmp_url("back"), "640x360", 40, 120);
    let mpd = wait_for(Duration::from_secs(30), "the second Period listed", || {
        let r = get(origin, "/live/back/manifest.mpd");
        let text = r.text();
        (r.status == 200 && text.matches("<Period ").count() == 2).then_some(text)
    });
    let report = play_in_browser(
        "dash",
        &format!("http://{origin}/live/back/manifest.mpd"),
        16,
        &["--sample-ms", "1000"],
    );
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(
        report["played"], true,
        "dash.js played after joining in the gap; MPD at the join:\n{mpd}\nreport: {report}"
    );
    assert_eq!(
        report["fatal"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["fatal"]
    );
    // It played the new session, from the new Period's init segment.
    let new_init = mpd
        .split("initialization=\"")
        .filter_map(|s| s.split('"').next())
        .last()
        .and_then(|i| i.rsplit('/').next())
        .expect("an init segment in the MPD")
        .to_string();
    let requests = report["requests"].to_string();
    assert!(
        requests.contains(&new_init),
        "{new_init} never fetched: {requests}"
    );
}
