//! Hot reload (SIGHUP) against the real binary with ffmpeg publishing over RTMP: a new stream
//! key, ladder, log level and cache size apply while a publisher streams on without a
//! discontinuity; the old key is refused and the new one admitted for the next publisher; a
//! key that needs a restart is reported and not applied; an invalid file is refused naming
//! the key and the process keeps serving. Stream keys and the bus secret never reach the log.

mod common;

use common::*;
use std::time::Duration;

const KEY_A: &str = "key-AAAA-1111";
const KEY_B: &str = "key-BBBB-2222";

/// A CURVE key pair from `zoomate bus keygen`: (secret, public), Z85.
fn bus_key_pair() -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args(["bus", "keygen"])
        .output()
        .expect("zoomate bus keygen");
    let text = String::from_utf8(out.stdout).unwrap();
    let quoted = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split('"').nth(1))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
    };
    (quoted("curve_secret_key = "), quoted("# public: "))
}

/// The bus secret (a token the log must never show) and the stream keys.
fn config(bus_secret: &str, bus_public: &str) -> String {
    format!(
        r#"
[bus]
curve_secret_key = "{bus_secret}"
curve_accept_keys = ["{bus_public}"]
[log]
level = "info"
[rtmp.stream_keys]
cam = "{KEY_A}"
[ladder]
segment_duration_ms = 1000
format = "ts"
[[ladder.renditions]]
name = "180p"
width = 320
height = 180
video_bitrate_kbps = 200
[hls]
window_segments = 6
[edge]
cache_bytes = 67108864
"#
    )
}

/// Rewrites the running config file with `edits` (each `from` must be there) and sends SIGHUP.
fn edit_and_reload(z: &Zoomate, edits: &[(&str, &str)]) {
    let path = z.dir.path().join("zoomate.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "config has no `{from}`");
        text = text.replace(from, to);
    }
    std::fs::write(&path, text).unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &z.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// The first log line containing `what` after the `skip`th such line.
fn log_line(z: &Zoomate, what: &str, skip: usize) -> Option<String> {
    strip_ansi(&z.log())
        .lines()
        .filter(|l| l.contains(what))
        .nth(skip)
        .map(str::to_string)
}

/// The media sequence number of the newest segment, checking the playlist has no discontinuity.
fn newest_without_discontinuity(addr: std::net::SocketAddr, path: &str) -> Option<u64> {
    let r = get(addr, path);
    if r.status != 200 {
        return None;
    }
    let v = parse_media_playlist(&r.text());
    assert!(
        v.discontinuity_sequence == 0 && v.segments.iter().all(|s| !s.2),
        "a discontinuity while one publisher streams:\n{}",
        r.text()
    );
    (!v.segments.is_empty()).then(|| v.media_sequence + v.segments.len() as u64 - 1)
}

#[test]
fn sighup_applies_keys_and_ladder_for_the_next_publisher_without_disturbing_the_live_one() {
    let (bus_secret, bus_public) = bus_key_pair();
    let z = Zoomate::start("run", &config(&bus_secret, &bus_public));
    let (origin, edge) = (z.origin.unwrap(), z.edge.unwrap());
    let playlist = "/live/cam/180p/index.m3u8";
    let mut first = ffmpeg_publish(&z.rtmp_url(&format!("cam?key={KEY_A}")), "320x180", 12, 30);
    let before = wait_for(Duration::from_secs(20), "two segments of cam", || {
        newest_without_discontinuity(origin, playlist).filter(|&n| n >= 1)
    });

    edit_and_reload(
        &z,
        &[
            (KEY_A, KEY_B),
            ("video_bitrate_kbps = 200", "video_bitrate_kbps = 150"),
            ("level = \"info\"", "level = \"zoomate=debug,info\""),
            ("cache_bytes = 67108864", "cache_bytes = 33554432"),
            ("window_segments = 6", "window_segments = 8"),
        ],
    );
    let reloaded = wait_for(Duration::from_secs(10), "the reload's log line", || {
        log_line(&z, "config reloaded", 0)
    });
    for key in [
        "log.level",
        "ladder",
        "rtmp.stream_keys",
        "edge.cache_bytes",
    ] {
        assert!(reloaded.contains(key), "{key} not applied: {reloaded}");
    }
    assert!(
        reloaded.contains("needs_restart") && reloaded.contains("\"hls\""),
        "hls.window_segments reported as needing a restart: {reloaded}"
    );

    // The live publisher streams on: new segments, no discontinuity, its ladder unchanged.
    wait_for(
        Duration::from_secs(20),
        "three more segments of cam",
        || newest_without_discontinuity(origin, playlist).filter(|&n| n >= before + 3),
    );
    assert!(
        first.wait().unwrap().success(),
        "the live publisher was cut"
    );
    z.wait_sessions_over("cam", 1);
    let v = parse_media_playlist(&get(origin, playlist).text());
    assert!(
        v.segments.len() <= 6,
        "hls.window_segments (needs restart) was applied: {} segments listed",
        v.segments.len()
    );
    assert!(
        log_line(&z, "segment ready", 0).is_some(),
        "log.level zoomate=debug took effect (segment ready is a debug line)"
    );

    // The next publisher: the old key is refused, the new one admitted with the new ladder.
    let mut old = ffmpeg_publish(&z.rtmp_url(&format!("cam?key={KEY_A}")), "320x180", 2, 30);
    assert!(!old.wait().unwrap().success(), "the old key was accepted");
    assert!(
        log_line(&z, "wrong stream key", 0).is_some(),
        "the refusal is logged"
    );
    let mut next = ffmpeg_publish(&z.rtmp_url(&format!("cam?key={KEY_B}")), "320x180", 3, 30);
    assert!(next.wait().unwrap().success(), "the new key was refused");
    z.wait_sessions_over("cam", 2);
    let ladders: Vec<String> = strip_ansi(&z.log())
        .lines()
        .filter(|l| l.contains("ladder planned"))
        .map(str::to_string)
        .collect();
    assert_eq!(ladders.len(), 2, "{ladders:?}");
    assert!(ladders[0].contains("180p@200kbps"), "{}", ladders[0]);
    assert!(ladders[1].contains("180p@150kbps"), "{}", ladders[1]);

    // An invalid file: refused with the key and the value, the running config kept.
    edit_and_reload(
        &z,
        &[("level = \"zoomate=debug,info\"", "level = \"zoomate=loud\"")],
    );
    let refused = wait_for(Duration::from_secs(10), "the refusal's log line", || {
        log_line(&z, "config reload refused", 0)
    });
    assert!(
        refused.contains("log.level") && refused.contains("zoomate=loud"),
        "{refused}"
    );
    for addr in [origin, edge] {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    assert_eq!(get(edge, playlist).status, 200, "the edge still serves");

    // One line per publisher session start and end, with its figures; never a key.
    let log = strip_ansi(&z.log());
    assert_eq!(log.matches("publish started").count(), 2, "{log}");
    assert_eq!(log.matches("session figures").count(), 2, "{log}");
    assert!(
        !log.contains(KEY_A) && !log.contains(KEY_B),
        "a stream key was logged:\n{log}"
    );
    assert!(!log.contains(&bus_secret), "the bus secret key was logged");
}
