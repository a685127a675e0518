//! The binary as an operator runs it: config errors, the embedded demo stream, SIGTERM.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn bad_config_exits_nonzero_naming_key_and_value_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    // Hold a port, and point the bad config at it: a bind attempt would fail differently.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cases = [
        (
            format!(
                "[origin]\nhttp_listen = \"127.0.0.1:{port}\"\n[ladder]\nsegment_duration_ms = 7\n"
            ),
            "ladder.segment_duration_ms",
            "7",
        ),
        (
            "[hls]\nwindow_segments = 1\n".to_string(),
            "hls.window_segments",
            "1",
        ),
        ("[ladder]\nframe_rat = 30\n".to_string(), "frame_rat", ""),
        (
            "[rtmp]\nlisten = \"not-an-address\"\n".to_string(),
            "listen",
            "not-an-address",
        ),
    ];
    for (toml, key, value) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &toml).unwrap();
        for sub in [vec!["run"], vec!["check-config"]] {
            let out = Command::new(env!("CARGO_BIN_EXE_zoomate"))
                .arg("--config")
                .arg(&path)
                .args(&sub)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{sub:?} {toml}: {stderr}");
            assert!(
                stderr.contains(key) && stderr.contains(value),
                "{sub:?}: error should name {key} and {value}: {stderr}"
            );
        }
    }
    drop(held);
    let out = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "embedded default must be valid");
}

#[test]
fn embedded_demo_stream_plays_and_sigterm_closes_it_cleanly() {
    // The embedded default config with only addresses and the store moved: what `make run` runs.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args(["--print-ready", "run"])
        .env("ZOOMATE_RTMP_LISTEN", "127.0.0.1:0")
        .env("ZOOMATE_ORIGIN_HTTP_LISTEN", "127.0.0.1:0")
        .env("ZOOMATE_EDGE_LISTEN", "127.0.0.1:0")
        .env("ZOOMATE_BUS_ENDPOINT", "tcp://127.0.0.1:0")
        .env("ZOOMATE_STORE_DIR", dir.path().join("store"))
        .env("ZOOMATE_VOD_DIR", dir.path().join("vod"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(!line.is_empty(), "no ready line; log:\n{}", log());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let origin: std::net::SocketAddr = v["addrs"]["origin_http"].as_str().unwrap().parse().unwrap();
    let master = wait_for(Duration::from_secs(40), "demo master playlist", || {
        let r = get(origin, "/live/demo/master.m3u8");
        (r.status == 200).then(|| r.text())
    });
    assert!(master.contains("RESOLUTION=1280x720"), "{master}");
    // The default is CMAF with LL-HLS: video and audio renditions, each init + fragments, with
    // parts listed.
    for (rendition, kind) in [("720p", "video"), ("audio", "audio")] {
        let media = get(origin, &format!("/live/demo/{rendition}/index.m3u8")).text();
        assert!(
            media.contains("#EXT-X-PART:") && media.contains("#EXT-X-PART-INF:"),
            "{media}"
        );
        let view = parse_media_playlist(&media);
        let init = media
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
            .map(|u| u.trim_end_matches('"').to_string())
            .expect("EXT-X-MAP");
        let mut bytes = get(origin, &format!("/live/demo/{rendition}/{init}")).body;
        let seg = get(
            origin,
            &format!("/live/demo/{rendition}/{}", view.segments[0].1),
        );
        assert_eq!(seg.status, 200);
        bytes.extend_from_slice(&seg.body);
        let p = dir.path().join(format!("{rendition}.mp4"));
        std::fs::write(&p, &bytes).unwrap();
        let streams = ffprobe(&p, &[])["streams"].clone();
        assert_eq!(streams.as_array().unwrap().len(), 1, "{streams}");
        assert_eq!(streams[0]["codec_type"], kind, "{streams}");
    }
    // The edge heard the origin before any of the stream's announcements: none refused as
    // from an unknown origin (the origin heartbeats before a stream's first announcement).
    let edge: std::net::SocketAddr = v["addrs"]["edge_http"].as_str().unwrap().parse().unwrap();
    wait_for(
        Duration::from_secs(20),
        "the demo master at the edge",
        || (get(edge, "/live/demo/master.m3u8").status == 200).then_some(()),
    );
    let heard = metric(edge, "zoomate_edge_bus_messages_total").unwrap_or(0.0);
    assert!(heard > 0.0, "the edge heard the bus");
    let unknown = metric(
        edge,
        "zoomate_edge_bus_rejected_total{reason=\"unknown_origin\"}",
    );
    assert!(
        unknown.unwrap_or(0.0) == 0.0,
        "{unknown:?} announcements refused as from an unknown origin; log:\n{}",
        log()
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM; log:\n{}",
            log()
        );
        // Poll interval of this wait for the exit (a loop rather than `wait_for` so the
        // assertion can print the log).
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status:?}; log:\n{}", log());
    assert!(
        !log().contains("watchdog") && !log().contains("restarting"),
        "the demo stream was restarted; log:\n{}",
        log()
    );
    // Open segments were closed and listed; nothing half-written remains.
    let stream_dir = dir.path().join("store/live/demo");
    let final_view =
        parse_media_playlist(&std::fs::read_to_string(stream_dir.join("720p/index.m3u8")).unwrap());
    for (_, uri, _) in &final_view.segments {
        assert!(
            stream_dir.join("720p").join(uri).exists(),
            "listed segment {uri} missing"
        );
    }
    assert!(
        !stream_dir.join(".staging").exists()
            || std::fs::read_dir(stream_dir.join(".staging"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn zoomate_config_names_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[hls]\nwindow_segments = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .arg("check-config")
        .env("ZOOMATE_CONFIG", &bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("hls.window_segments"),
        "the file named by ZOOMATE_CONFIG must be the one checked: {stderr}"
    );
    // A real start: the edge listens where the file says.
    let port = free_port();
    let good = dir.path().join("edge.toml");
    std::fs::write(
        &good,
        format!("[edge]\nlisten = \"127.0.0.1:{port}\"\n[bus]\nenabled = false\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args(["--print-ready", "edge"])
        .env("ZOOMATE_CONFIG", &good)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let n = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap_or(0);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        n > 0,
        "zoomate exited before ready: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(
        ready["addrs"]["edge_http"].as_str(),
        Some(format!("127.0.0.1:{port}").as_str()),
        "{line}"
    );
}
