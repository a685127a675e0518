//! WHIP ingest (issue #16) with a real peer: headless Chromium publishes its fake camera and
//! microphone over WebRTC to `zoomate run`'s edge (`/whip/{stream}`, relayed to the origin),
//! and the HLS ladder appears and decodes; a second publisher to the live stream is refused;
//! a missing key and a malformed offer get clear 4xx; garbage UDP on the ICE ports breaks
//! nothing; DELETE ends the session; a returning publisher continues the media sequence after a
//! discontinuity.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY: &str = "whip-secret-key";

/// An offer as a browser sends it (enough for signalling checks; no peer behind it).
const STATIC_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
    a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
    a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
    a=rtcp-mux\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n";

/// POSTs `body` to `url` as an SDP offer; the status and body text.
fn post_offer(url: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut req = ureq::post(url).set("Content-Type", "application/sdp");
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    match req.send_string(body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

/// `n` consecutive free UDP ports on loopback (for the ICE port range).
fn free_udp_range(n: u16) -> (u16, u16) {
    for _ in 0..100 {
        let p = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p < 1024 || p.checked_add(n).is_none() {
            continue;
        }
        if (p..p + n).all(|q| std::net::UdpSocket::bind(("0.0.0.0", q)).is_ok()) {
            return (p, p + n - 1);
        }
    }
    panic!("no free UDP port range");
}

#[test]
fn chromium_publishes_over_whip_through_the_edge_and_the_ladder_appears() {
    require_tool("ffprobe");
    require_tool("chromium");
    let (ice_min, ice_max) = free_udp_range(20);
    let z = Zoomate::start(
        "run",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n[rtmp.stream_keys]\nwcam = \"{KEY}\"\n\
             [webrtc]\nice_port_min = {ice_min}\nice_port_max = {ice_max}\nsilence_timeout_ms = 3000\n"
        ),
    );
    let (origin, edge) = (z.origin.unwrap(), z.edge.unwrap());
    let endpoint = format!("http://{edge}/whip/wcam");

    // Signalling refusals, before any media: no key, wrong key, not an offer.
    assert_eq!(post_offer(&endpoint, None, STATIC_OFFER).0, 401);
    assert_eq!(
        post_offer(&endpoint, Some("wrong-key-123"), STATIC_OFFER).0,
        401
    );
    let (status, why) = post_offer(&endpoint, Some(KEY), "hello");
    assert_eq!(status, 400, "{why}");
    assert!(why.contains("SDP"), "{why}");

    // The browser publishes for a while, then DELETEs its session.
    let harness = Command::new(root().join("scripts/browser/node"))
        .arg(root().join("scripts/browser/whip.mjs"))
        .args([
            "--url",
            &endpoint,
            "--token",
            KEY,
            "--seconds",
            "14",
            "--delete",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/browser/whip.mjs (scripts/setup-browser; make test does)");

    let playlist = |r: &str| get(edge, &format!("/live/wcam/{r}/index.m3u8"));
    let first = wait_for(
        Duration::from_secs(30),
        "HLS segments from the WHIP publisher",
        || {
            let r = playlist("180p");
            let v = (r.status == 200).then(|| parse_media_playlist(&r.text()))?;
            (v.segments.len() >= 2).then_some(v)
        },
    );
    let master = get(edge, "/live/wcam/master.m3u8").text();
    assert!(!parse_master(&master).is_empty(), "{master}");
    let uri = &first.segments.last().unwrap().1;
    let seg = get(edge, &format!("/live/wcam/180p/{uri}"));
    assert_eq!(seg.status, 200);
    let p = z.dir.path().join("whip.ts");
    std::fs::write(&p, &seg.body).unwrap();
    let probe = ffprobe(&p, &["-count_frames"]);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(
        streams.len(),
        2,
        "video and audio from the browser: {probe}"
    );
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert!(
        video["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
            > 0,
        "{probe}"
    );

    // A second publisher to the live stream is refused (the same rule as RTMP).
    let (status, why) = post_offer(&endpoint, Some(KEY), STATIC_OFFER);
    assert_eq!(status, 409, "{why}");

    // Garbage on every ICE port: the session goes on.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for port in ice_min..=ice_max {
        for i in 0..20u32 {
            let junk: Vec<u8> = (0..(i * 53 % 1200 + 1))
                .map(|j| (j * 7 + i) as u8)
                .collect();
            let _ = sock.send_to(&junk, ("127.0.0.1", port));
        }
    }
    let end_before = first.media_sequence + first.segments.len() as u64;
    wait_for(
        Duration::from_secs(20),
        "segments after the garbage",
        || {
            let v = parse_media_playlist(&playlist("180p").text());
            (v.media_sequence + v.segments.len() as u64 >= end_before + 3).then_some(())
        },
    );

    let out = harness.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("harness JSON");
    assert_eq!(report["status"], 201, "{report}");
    assert!(
        report["location"]
            .as_str()
            .unwrap_or("")
            .starts_with("/whip/wcam/"),
        "{report}"
    );
    assert_eq!(report["deleteStatus"], 200, "{report}");
    let last = report["samples"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["video"]["framesEncoded"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    eprintln!(
        "WHIP: answer in {} ms, codec {}, {} video frames sent",
        report["answerMs"], last["video"]["codec"], last["video"]["framesEncoded"]
    );

    // DELETE ended the session: the stream ends and the session count is back to zero.
    z.wait_sessions_over("wcam", 1);
    assert_eq!(metric(origin, "zoomate_whip_sessions"), Some(0.0));

    // The publisher comes back: the media sequence continues after a discontinuity.
    let ended = parse_media_playlist(&playlist("180p").text());
    let first_end = ended.media_sequence + ended.segments.len() as u64;
    let again = Command::new(root().join("scripts/browser/node"))
        .arg(root().join("scripts/browser/whip.mjs"))
        .args([
            "--url",
            &endpoint,
            "--token",
            KEY,
            "--seconds",
            "5",
            "--delete",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let second = wait_for(
        Duration::from_secs(30),
        "segments from the returning publisher",
        || {
            let v = parse_media_playlist(&playlist("180p").text());
            (v.media_sequence + v.segments.len() as u64 >= first_end + 2).then_some(v)
        },
    );
    let resumed = second
        .segments
        .iter()
        .enumerate()
        .rev()
        .find(|(_, s)| s.2)
        .map(|(i, _)| second.media_sequence + i as u64);
    assert_eq!(
        resumed,
        Some(first_end),
        "timeline continues after a discontinuity: {second:?}"
    );
    let out = again.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("harness JSON");
    assert_eq!(report["status"], 201, "{report}");
}
