//! Issue #14: signed playback URLs at the real edge. Tokens are minted with `zoomate sign-url`;
//! a valid one plays (ffprobe, hls.js, dash.js follow the relative URIs under the token
//! prefix), two different tokens share one cache entry and one origin fetch, and expired,
//! forged and missing tokens get 403, counted by reason.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "test-secret-0123456789-abcdefghij-klmnop";

/// `zoomate sign-url` for `path`, `ttl` seconds, with `secret`.
fn sign(dir: &Path, secret: &str, path: &str, ttl: u64) -> String {
    let file = dir.join(format!("secret-{}", secret.len()));
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args(["sign-url", "--path", path, "--ttl", &ttl.to_string()])
        .arg("--secret-file")
        .arg(&file)
        .output()
        .expect("zoomate sign-url");
    assert!(
        out.status.success(),
        "sign-url: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with("/t/") && url.ends_with("/live/sig/"),
        "{url}"
    );
    url
}

fn rejected(edge: std::net::SocketAddr, reason: &str) -> u64 {
    metric_value(
        edge,
        &format!("zoomate_edge_signed_url_rejected_total{{reason=\"{reason}\"}}"),
    )
}

fn play(player: &str, url: &str, seconds: u32) -> Value {
    play_in_browser(player, url, seconds, &[])
}

#[test]
fn signed_urls_play_share_the_cache_and_refuse_expired_forged_and_missing_tokens() {
    let z = Zoomate::start(
        "run",
        &format!(
            "[ladder]\nsegment_duration_ms = 1000\nformat = \"cmaf\"\n[[ladder.renditions]]\nname = \"180p\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 200\n\
             [rtmp]\nenabled = false\n[[streams]]\nname = \"sig\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\n\
             [edge]\nprefetch = false\n[edge.signed_urls]\nrequired = true\nsecret = \"{SECRET}\"\n"
        ),
    );
    let edge = z.edge.expect("edge");
    let dir = z.dir.path();
    let a = sign(dir, SECRET, "/live/sig/", 600);
    let b = sign(dir, SECRET, "/live/sig/", 900);
    assert_ne!(a, b, "different expiries, different tokens");

    let media = wait_for(
        Duration::from_secs(40),
        "segments through a signed URL",
        || {
            let r = get(edge, &format!("{a}180p/index.m3u8"));
            (r.status == 200)
                .then(|| parse_media_playlist(&r.text()))
                .filter(|v| v.segments.len() >= 2)
        },
    );
    assert_eq!(get(edge, &format!("{a}master.m3u8")).status, 200);

    // Two viewers' tokens, one cache entry, one origin fetch.
    let segment = &media.segments[0].1;
    let fetches = metric_value(edge, "zoomate_edge_origin_fetches_total");
    let first = get(edge, &format!("{a}180p/{segment}"));
    let second = get(edge, &format!("{b}180p/{segment}"));
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body);
    assert_eq!(
        second.header("x-cache"),
        Some("HIT"),
        "the second token hits the first's entry"
    );
    assert_eq!(
        metric_value(edge, "zoomate_edge_origin_fetches_total") - fetches,
        1,
        "origin fetches for one segment under two tokens"
    );

    // Missing (required), expired, forged, another stream's, another secret's: 403.
    let missing = get(edge, "/live/sig/master.m3u8");
    assert_eq!(missing.status, 403);
    assert!(
        missing.text().contains("signed URL is required"),
        "{}",
        missing.text()
    );
    let expired = sign(dir, SECRET, "/live/sig/", 0);
    let r = get(edge, &format!("{expired}master.m3u8"));
    assert_eq!(r.status, 403);
    assert!(r.text().contains("expired"), "{}", r.text());
    let mut forged: Vec<char> = a.chars().collect();
    let at = a.rfind("/live/").unwrap() - 2; // inside the token
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let r = get(edge, &format!("{forged}master.m3u8"));
    assert_eq!(r.status, 403);
    assert!(r.text().contains("bad signature"), "{}", r.text());
    let elsewhere = a.replace("/live/sig/", "/live/other/");
    assert_eq!(get(edge, &format!("{elsewhere}master.m3u8")).status, 403);
    let other_secret = sign(
        dir,
        "another-secret-of-enough-length-0123456789",
        "/live/sig/",
        600,
    );
    assert_eq!(get(edge, &format!("{other_secret}master.m3u8")).status, 403);
    // Sent as written (a client library would resolve the dots first).
    let r = raw_get(
        edge,
        "/t/123/x/live/sig/../../master.m3u8",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert!(rejected(edge, "missing") >= 1);
    assert!(rejected(edge, "expired") >= 1);
    assert!(rejected(edge, "bad_signature") >= 3);
    assert!(rejected(edge, "malformed") >= 1);
    // Operator endpoints need no token.
    assert_eq!(get(edge, "/healthz").status, 200);
    // WHEP URLs carry no token: where tokens are required, WHEP playback is refused.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(edge).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(
            b"POST /whep/sig HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 403"),
            "WHEP without a token: {answer}"
        );
    }

    // Players follow the relative URIs under the prefix.
    require_tool("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "json",
        ])
        .arg(format!("http://{edge}{a}master.m3u8"))
        .output()
        .expect("ffprobe");
    let probe = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && probe.contains("h264"),
        "ffprobe: {probe} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hls = play("hls", &format!("http://{edge}{a}master.m3u8"), 6);
    assert_eq!(hls["played"], true, "hls.js played a signed URL: {hls}");
    let dash = play("dash", &format!("http://{edge}{b}manifest.mpd"), 6);
    assert_eq!(dash["played"], true, "dash.js played a signed URL: {dash}");
    assert!(
        !strip_ansi(&z.log()).contains(SECRET),
        "the secret is never logged"
    );
}
