//! WHEP playback (issue #16) with a real peer: headless Chromium plays a live stream over WebRTC
//! from `zoomate run`'s edge (signalling relayed to the origin) and decodes frames (getStats);
//! the viewer bound refuses one more; its ICE candidates trickle in by PATCH; DELETE ends the
//! viewer (garbage on the ICE ports is tests/whip_ingest.rs's). The measured receiver-side latency is logged, not asserted.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const RECVONLY_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n\
    a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
    a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
    a=rtcp-mux\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n";

fn post(url: &str, body: &str) -> (u16, String) {
    match ureq::post(url)
        .set("Content-Type", "application/sdp")
        .send_string(body)
    {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

#[test]
fn chromium_plays_whep_from_the_top_rendition_and_decodes_frames() {
    require_tool("chromium");
    let z = Zoomate::start(
        "run",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n[webrtc]\nmax_viewers_per_stream = 1\n\
             [[streams]]\nname = \"tp\"\nsource = \"test-pattern\"\nwidth = 640\nheight = 360\n"
        ),
    );
    let (origin, edge) = (z.origin.unwrap(), z.edge.unwrap());
    // Not live (no such stream) → 404; a malformed offer → 400.
    assert_eq!(
        post(&format!("http://{edge}/whep/nothing"), RECVONLY_OFFER).0,
        404
    );
    assert_eq!(
        post(&format!("http://{edge}/whep/tp"), "v=0 nonsense").0,
        400
    );
    wait_for(
        Duration::from_secs(30),
        "the test pattern to be live",
        || (get(origin, "/live/tp/360p/index.m3u8").status == 200).then_some(()),
    );

    let endpoint = format!("http://{edge}/whep/tp");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let harness = Command::new(root.join("scripts/browser/node"))
        .arg(root.join("scripts/browser/whep.mjs"))
        .args([
            "--url",
            &endpoint,
            "--seconds",
            "8",
            "--delete",
            "--trickle",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run scripts/browser/whep.mjs (scripts/setup-browser; make test does)");
    // While the browser watches: the per-stream bound (1) refuses a second viewer.
    wait_for(
        Duration::from_secs(20),
        "the browser viewer to be counted",
        || (metric(origin, "zoomate_whep_viewers{stream=\"tp\"}") == Some(1.0)).then_some(()),
    );
    let (status, why) = post(&endpoint, RECVONLY_OFFER);
    assert_eq!(status, 503, "{why}");

    let out = harness.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("harness JSON");
    assert_eq!(report["status"], 201, "{report}");
    assert_eq!(report["deleteStatus"], 200, "{report}");
    // The browser sent its offer before gathering; every candidate came by PATCH, through the
    // edge's relay (pinned to the origin that holds the session) to the viewer's webrtcbin.
    let patches = report["patchStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !patches.is_empty() && patches.iter().all(|s| s == 204),
        "every trickle PATCH answered 204: {report}"
    );
    let last = report["samples"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["framesDecoded"].as_u64().unwrap_or(0) > 0,
        "no frames decoded: {report}"
    );
    // The top rendition, not a second encode.
    assert_eq!(last["frameWidth"], 640, "{report}");
    eprintln!(
        "WHEP: answer {} ms; jitter buffer {} ms/frame, decode {} ms/frame, sender-to-playout {} ms, rtt {} ms",
        report["answerMs"],
        last["jitterBufferMs"],
        last["decodeMs"],
        last["playoutDelayMs"],
        last["rttMs"]
    );
    // DELETE ended the viewer.
    wait_for(Duration::from_secs(10), "the viewer to be gone", || {
        (metric(origin, "zoomate_whep_viewers{stream=\"tp\"}").unwrap_or(0.0) == 0.0).then_some(())
    });

    // The PATCH rules, as for WHIP, on a viewer of the origin's own endpoint.
    let created = ureq::post(&format!("http://{origin}/whep/tp"))
        .set("Content-Type", "application/sdp")
        .send_string(RECVONLY_OFFER)
        .expect("201 for a well-formed offer once the seat is free");
    let location = created.header("Location").expect("Location").to_string();
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
    assert_eq!(patch(FRAG, Some("\"stale\""), fragment), 412);
    assert_eq!(
        patch(FRAG, Some(&etag), &fragment.replace("abcd", "other")),
        422
    );
    assert_eq!(
        patch(FRAG, Some(&etag), &fragment.replace("mid:0", "mid:7")),
        400
    );
    assert_eq!(patch("application/sdp", Some(&etag), fragment), 415);
    assert_eq!(ureq::delete(&session).call().unwrap().status(), 200);
    assert_eq!(
        patch(FRAG, Some(&etag), fragment),
        404,
        "the viewer is gone"
    );
}
