//! VOD publishing (part of issue #5): a generated clip becomes a complete HLS asset; bad inputs
//! fail with a clear message naming the file and leave nothing behind.

mod common;
use common::*;
use std::process::Command;

fn zoomate(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let config = dir.join("vod.toml");
    std::fs::write(&config, TEST_LADDER).unwrap();
    Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_clip_becomes_a_complete_vod_asset() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_clip(dir.path(), "clip.mp4", "426x240", 6, true);
    let out = dir.path().join("out");
    let o = zoomate(
        dir.path(),
        &[
            "vod",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--name",
            "a1",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let asset = out.join("a1");
    let master = std::fs::read_to_string(asset.join("master.m3u8")).unwrap();
    let variants = parse_master(&master);
    // The 360p rung is taller than the 240p source: dropped, never upscaled.
    let names: Vec<&str> = variants
        .iter()
        .map(|(_, u)| u.split('/').next().unwrap())
        .collect();
    assert_eq!(names, vec!["240p", "180p"], "{master}");
    for (attrs, _) in &variants {
        assert!(attrs.contains_key("AVERAGE-BANDWIDTH") && attrs["CODECS"].contains("mp4a.40.2"));
    }
    for r in names {
        let text = std::fs::read_to_string(asset.join(r).join("index.m3u8")).unwrap();
        assert!(
            text.contains("#EXT-X-PLAYLIST-TYPE:VOD")
                && text.trim_end().ends_with("#EXT-X-ENDLIST"),
            "{text}"
        );
        let v = parse_media_playlist(&text);
        let total: f64 = v.segments.iter().map(|s| s.0).sum();
        assert!(
            (total - 6.0).abs() <= 1.0,
            "{r}: durations sum to {total}, source is 6 s"
        );
        for (d, uri, _) in &v.segments {
            assert!(d.round() as u64 <= v.target_duration);
            let p = asset.join(r).join(uri);
            let probe = ffprobe(
                &p,
                &[
                    "-select_streams",
                    "v:0",
                    "-show_frames",
                    "-read_intervals",
                    "%+#1",
                    "-show_entries",
                    "frame=key_frame",
                ],
            );
            assert_eq!(
                probe["frames"][0]["key_frame"].as_i64(),
                Some(1),
                "{r}/{uri} must start with a keyframe"
            );
        }
    }
    // Nothing temporary left beside the asset.
    let entries: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    // probe agrees with the source.
    let p = zoomate(dir.path(), &["probe", "--json", input.to_str().unwrap()]);
    let info: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(426), Some(240))
    );
}

#[test]
fn bad_inputs_fail_clearly_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_clip(dir.path(), "good.mp4", "320x180", 4, true);
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let audio_only = dir.path().join("audio.m4a");
    assert!(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "sine",
                "-t",
                "2",
                "-c:a",
                "aac"
            ])
            .arg(&audio_only)
            .status()
            .unwrap()
            .success()
    );
    let missing = dir.path().join("missing.mp4");
    let out = dir.path().join("out");
    for (input, expect) in [
        (&missing, "no such file"),
        (&text, "not a media file"),
        (&truncated, ""),
        (&audio_only, "no video"),
    ] {
        let o = zoomate(
            dir.path(),
            &[
                "vod",
                input.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--name",
                "x",
            ],
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{} was accepted", input.display());
        assert!(
            stderr.contains(input.file_name().unwrap().to_str().unwrap()),
            "error must name the file: {stderr}"
        );
        assert!(stderr.contains(expect), "{}: {stderr}", input.display());
        let left: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} left {left:?}", input.display());
    }
}

/// Per-plane PSNR (dB) of `rendition` against ffmpeg's own scale of `source` to the same size,
/// which keeps the pixel values (no colour-matrix change). Timestamps are aligned on both
/// sides, or frame pairing drifts and the figure means nothing.
fn psnr_against_ffmpeg_scale(
    rendition: &std::path::Path,
    source: &std::path::Path,
    (w, h): (u32, u32),
) -> std::collections::HashMap<String, f64> {
    let align = "setpts=PTS-STARTPTS,fps=30:round=near";
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(rendition)
        .arg("-i")
        .arg(source)
        .arg("-lavfi")
        .arg(format!(
            "[0:v]{align}[a];[1:v]scale={w}:{h},{align}[b];[a][b]psnr"
        ))
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg psnr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg psnr: {stderr}");
    // "... PSNR y:42.9 u:41.8 v:41.7 average:42.5 min:41.7 max:46.5"
    let line = stderr
        .lines()
        .find_map(|l| l.split_once("PSNR ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no PSNR line: {stderr}"));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Issue 11: an untagged HD source's SD renditions were converted to BT.601 (`smpte170m`)
/// while 720p stayed BT.709. Every rendition, TS and CMAF, must carry the same colour tags and
/// the source's pixel values.
///
/// Measured on the 3 s testsrc2 720p clip: before the fix 480p/360p read Y ≈ 23.0 dB,
/// average ≈ 24.3 dB against ffmpeg's scale (720p: Y 42.9); after, every rendition reads
/// Y ≥ 42 dB, average ≥ 39.5 dB. The thresholds sit between.
#[test]
fn every_rendition_keeps_the_source_colours_and_tags_them() {
    const MIN_Y_PSNR_DB: f64 = 35.0;
    const MIN_AVERAGE_PSNR_DB: f64 = 32.0;
    let dir = tempfile::tempdir().unwrap();
    // testsrc2: saturated colour bars, where a matrix change moves the pixels most. Untagged.
    let input = make_clip(dir.path(), "hd.mp4", "1280x720", 3, false);
    let source = ffprobe(&input, &["-select_streams", "v:0"]);
    assert!(
        source["streams"][0]["color_space"].is_null(),
        "the source must be untagged: {source}"
    );
    let config = dir.path().join("colour.toml");
    let ladder: &[(&str, u32, u32, u32)] = &[
        ("720p", 1280, 720, 2500),
        ("480p", 854, 480, 1200),
        ("360p", 640, 360, 800),
    ];
    let mut toml = String::from("[ladder]\nsegment_duration_ms = 1000\nframe_rate = 30\n");
    for (name, w, h, kbps) in ladder {
        toml.push_str(&format!(
            "[[ladder.renditions]]\nname = \"{name}\"\nwidth = {w}\nheight = {h}\nvideo_bitrate_kbps = {kbps}\n"
        ));
    }
    std::fs::write(&config, toml).unwrap();
    for format in ["ts", "cmaf"] {
        let out = dir.path().join(format!("out-{format}"));
        let o = Command::new(env!("CARGO_BIN_EXE_zoomate"))
            .arg("--config")
            .arg(&config)
            .arg("vod")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(["--name", "c", "--format", format])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for (name, w, h, _) in ladder {
            let playlist = out.join("c").join(name).join("index.m3u8");
            let probe = ffprobe(&playlist, &["-select_streams", "v:0"]);
            let s = &probe["streams"][0];
            assert_eq!(
                (s["width"].as_u64(), s["height"].as_u64()),
                (Some(*w as u64), Some(*h as u64))
            );
            for tag in ["color_space", "color_primaries", "color_transfer"] {
                assert_eq!(
                    s[tag].as_str(),
                    Some("bt709"),
                    "{format} {name}: {tag} (every rendition must be tagged like the others): {s}"
                );
            }
            let psnr = psnr_against_ffmpeg_scale(&playlist, &input, (*w, *h));
            eprintln!("{format} {name}: PSNR vs ffmpeg scale {psnr:?}");
            assert!(
                psnr["y"] >= MIN_Y_PSNR_DB && psnr["average"] >= MIN_AVERAGE_PSNR_DB,
                "{format} {name}: colours differ from the source (a colour-matrix conversion?): {psnr:?}"
            );
        }
    }
}
