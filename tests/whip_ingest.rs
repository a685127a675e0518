//! WHIP ingest (issue #16) with a real peer: headless Chromium publishes its fake camera and
//! microphone over WebRTC to `zoomate run`'s edge (`/whip/{stream}`, relayed to the origin),
//! its ICE candidates trickled by PATCH, and the HLS ladder appears and decodes; a second
//! publisher to the live stream is refused; a missing key and a malformed offer get clear 4xx;
//! garbage UDP on the ICE ports breaks nothing; DELETE ends the session; a returning publisher
//! continues the media sequence after a discontinuity; the API's kick ends a WHIP session. Key
//! guessing is throttled as for RTMP, in the same table; PATCH checks its fragment, If-Match and
//! ICE restarts.

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
            // The offer goes out without candidates; they follow by PATCH through the edge.
            "--trickle",
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
    let patches = report["patchStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !patches.is_empty() && patches.iter().all(|s| s == 204),
        "trickled candidates taken: {report}"
    );
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
        .args(["--url", &endpoint, "--token", KEY, "--seconds", "60"])
        .stdout(Stdio::null())
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

    // The API kicks the WHIP publisher: its session ends (peer connection torn down with the
    // pipeline) as when a publisher leaves, and the session is gone.
    let kicked = ureq::post(&format!("http://{origin}/api/v1/streams/wcam/kick"))
        .call()
        .expect("kick a WHIP publisher");
    assert_eq!(kicked.status(), 202);
    let body: serde_json::Value = serde_json::from_str(&kicked.into_string().unwrap()).unwrap();
    assert_eq!(body["action"], "kick", "{body}");
    assert!(
        body["publisher"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{body}"
    );
    z.wait_sessions_over("wcam", 2);
    wait_for(Duration::from_secs(10), "no WHIP session left", || {
        (metric(origin, "zoomate_whip_sessions") == Some(0.0)).then_some(())
    });
    let mut again = again;
    let _ = again.kill();
    let _ = again.wait();
}

/// Key guessing over WHIP backs off like RTMP's, in the same table: after the free failures the
/// address gets 429 with Retry-After before its key is even checked (the right key too), and an
/// RTMP publish from that address is refused unchecked as well.
#[test]
fn a_whip_key_guesser_is_throttled_like_rtmp_in_the_same_table() {
    require_tool("ffmpeg");
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nauth_failures_before_backoff = 1\nauth_backoff_initial_ms = 600000\n\
             auth_backoff_max_ms = 600000\nauth_forget_after_ms = 600000\n\
             [rtmp.stream_keys]\nwcam = \"{KEY}\"\n"
        ),
    );
    let origin = z.origin.unwrap();
    let endpoint = format!("http://{origin}/whip/wcam");
    // One free failure, then the second starts the backoff.
    assert_eq!(
        post_offer(&endpoint, Some("wrong-key-1"), STATIC_OFFER).0,
        401
    );
    assert_eq!(post_offer(&endpoint, None, STATIC_OFFER).0, 401);
    let resp = ureq::post(&endpoint)
        .set("Content-Type", "application/sdp")
        .set("Authorization", &format!("Bearer {KEY}"))
        .send_string(STATIC_OFFER);
    let Err(ureq::Error::Status(429, resp)) = resp else {
        panic!("expected 429, got {resp:?}");
    };
    let retry: u64 = resp
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=600).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        resp.header("Access-Control-Expose-Headers")
            .map(|v| v.contains("Retry-After")),
        Some(true)
    );
    assert_eq!(
        metric(origin, "zoomate_publish_throttled_total{protocol=\"whip\"}"),
        Some(1.0)
    );
    // The same address over RTMP, with the right key: refused unchecked too.
    let mut ff = ffmpeg_publish(
        &format!("rtmp://{}/live/wcam?key={KEY}", z.rtmp.unwrap()),
        "320x180",
        3,
        30,
    );
    wait_for(
        Duration::from_secs(15),
        "the RTMP publish throttled",
        || {
            (metric(origin, "zoomate_publish_throttled_total{protocol=\"rtmp\"}") == Some(1.0))
                .then_some(())
        },
    );
    let _ = ff.kill();
    let _ = ff.wait();
    assert_eq!(z.sessions_over("wcam"), 0);
}

/// One WHIP POST from `src` to `dst`, raw HTTP/1.1 (to choose the source address); the status.
fn post_offer_from(
    src: std::net::IpAddr,
    dst: std::net::SocketAddr,
    stream: &str,
    token: &str,
    forwarded_for: Option<&str>,
) -> u16 {
    use std::io::{Read, Write};
    let mut sock = common::rtmp::connect_from(src, dst);
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let forwarded = forwarded_for
        .map(|a| format!("X-Forwarded-For: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /whip/{stream} HTTP/1.1\r\nHost: {dst}\r\nContent-Type: application/sdp\r\n\
         Authorization: Bearer {token}\r\n{forwarded}Content-Length: {}\r\nConnection: close\r\n\r\n{STATIC_OFFER}",
        STATIC_OFFER.len()
    );
    sock.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    let head = String::from_utf8_lossy(&answer);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"))
}

/// Behind the edge's relay the origin counts failures against the publisher, not the edge:
/// a guesser at one address is throttled while another publisher through the same edge is
/// admitted. A client that is not a trusted relay cannot choose the address it is counted
/// against with `X-Forwarded-For`.
#[test]
fn the_throttle_counts_the_publisher_behind_the_edge_not_the_edge() {
    let z = Zoomate::start(
        "run",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nauth_failures_before_backoff = 1\nauth_backoff_initial_ms = 600000\n\
             auth_backoff_max_ms = 600000\nauth_forget_after_ms = 600000\n\
             [rtmp.stream_keys]\ncam1 = \"{KEY}\"\ncam2 = \"{KEY}\"\ncam3 = \"{KEY}\"\n"
        ),
    );
    let (edge, origin) = (z.edge.unwrap(), z.origin.unwrap());
    let guesser = common::rtmp::loopback(2);
    assert_eq!(post_offer_from(guesser, edge, "cam1", "wrong-1", None), 401);
    assert_eq!(post_offer_from(guesser, edge, "cam1", "wrong-2", None), 401);
    assert_eq!(post_offer_from(guesser, edge, "cam1", KEY, None), 429);
    // Another publisher through the same edge: admitted (without the relay naming it, the
    // origin would see the edge's address and refuse it unchecked).
    assert_eq!(
        post_offer_from(common::rtmp::loopback(3), edge, "cam2", KEY, None),
        201
    );
    // Straight to the origin from an address that is no relay: its X-Forwarded-For is ignored,
    // so the failures count against it, and 127.0.0.5 (named in the header) stays clean.
    let spoofer = common::rtmp::loopback(4);
    for wrong in ["wrong-3", "wrong-4"] {
        assert_eq!(
            post_offer_from(spoofer, origin, "cam3", wrong, Some("127.0.0.5")),
            401
        );
    }
    assert_eq!(post_offer_from(spoofer, origin, "cam3", KEY, None), 429);
    assert_eq!(
        post_offer_from(common::rtmp::loopback(5), edge, "cam3", KEY, None),
        201
    );
    assert_eq!(
        metric(origin, "zoomate_publish_throttled_total{protocol=\"whip\"}"),
        Some(2.0)
    );
}

/// Trickle ICE (RFC 9725 §4.3.1): a PATCH with the publisher's later candidates is taken (204);
/// a stale If-Match gets 412, an ICE restart 422, a wrong type 415, a bad fragment 400.
#[test]
fn trickled_candidates_are_patched_into_a_whip_session() {
    let z = Zoomate::start(
        "origin",
        &format!("{TEST_LADDER}\n[rtmp]\nenabled = false\n"),
    );
    let origin = z.origin.unwrap();
    let created = ureq::post(&format!("http://{origin}/whip/tcam"))
        .set("Content-Type", "application/sdp")
        .send_string(STATIC_OFFER)
        .expect("201 for a well-formed offer");
    assert_eq!(created.status(), 201);
    let location = created.header("Location").unwrap().to_string();
    let etag = created.header("ETag").expect("ETag for PATCH").to_string();
    let session = format!("http://{origin}{location}");
    let patch = |content_type: &str, if_match: Option<&str>, body: &str| -> u16 {
        let mut req = ureq::request("PATCH", &session).set("Content-Type", content_type);
        if let Some(tag) = if_match {
            req = req.set("If-Match", tag);
        }
        match req.send_string(body) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("PATCH {session}: {e}"),
        }
    };
    const FRAG: &str = "application/trickle-ice-sdpfrag";
    let fragment = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
        a=mid:0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50999 typ host\r\na=end-of-candidates\r\n";
    assert_eq!(patch(FRAG, Some(&etag), fragment), 204);
    assert_eq!(patch(FRAG, None, fragment), 204, "If-Match is optional");
    assert_eq!(patch(FRAG, Some("\"stale\""), fragment), 412);
    assert_eq!(
        patch(FRAG, Some(&etag), &fragment.replace("abcd", "newufrag")),
        422
    );
    assert_eq!(patch("application/sdp", Some(&etag), fragment), 415);
    assert_eq!(patch(FRAG, Some(&etag), "v=0\r\nhello\r\n"), 400);
    assert_eq!(ureq::delete(&session).call().unwrap().status(), 200);
    assert_eq!(
        patch(FRAG, Some(&etag), fragment),
        404,
        "the session is gone"
    );
}
