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
