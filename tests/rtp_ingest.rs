//! RTP ingest (part of issue #5): MPEG-TS over RTP from ffmpeg yields the same live ladder as
//! RTMP, garbage datagrams to the port are dropped and counted without breaking the running
//! stream, loss and reordering are absorbed, and H.264 + Opus RTP described by an SDP file works
//! too; a silent source ends its stream and a returning one continues the timeline.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn rtp_mpegts_from_ffmpeg_produces_a_live_ladder_and_survives_garbage() {
    require_tool("ffmpeg");
    let (z, port) = start_mpegts_stream("cam");
    let mut ff = ffmpeg_rtp_mpegts(port, 8, true)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let origin = z.origin.unwrap();
    wait_for(
        Duration::from_secs(30),
        "RTP stream's first segments",
        || {
            let r = get(origin, "/live/cam/180p/index.m3u8");
            (r.status == 200 && !parse_media_playlist(&r.text()).segments.is_empty()).then_some(())
        },
    );
    // Garbage datagrams mid-stream: random bytes, truncated RTP headers, wrong payload type.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..300u32 {
        let junk: Vec<u8> = match i % 3 {
            0 => (0..((i * 37) % 1400 + 1))
                .map(|j| (j * 131 + i) as u8)
                .collect(),
            1 => vec![0x80, 0x21, 0x00],
            _ => [
                &[0x80u8, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 9][..],
                &[0x47; 188][..],
            ]
            .concat(),
        };
        let _ = sock.send_to(&junk, ("127.0.0.1", port));
    }
    let before = parse_media_playlist(&get(origin, "/live/cam/180p/index.m3u8").text());
    let newest_before = before.media_sequence + before.segments.len() as u64;
    assert!(ff.wait().unwrap().success());
    // The stream kept going after the garbage.
    let after = wait_for(
        Duration::from_secs(20),
        "segments after the garbage",
        || {
            let v = parse_media_playlist(&get(origin, "/live/cam/180p/index.m3u8").text());
            (v.media_sequence + v.segments.len() as u64 >= newest_before + 3).then_some(v)
        },
    );
    let master = get(origin, "/live/cam/master.m3u8").text();
    assert_eq!(parse_master(&master).len(), 3, "{master}");
    // Every garbage datagram was dropped and counted, by reason; real packets got through.
    let metrics = get(origin, "/metrics").text();
    let malformed = rtp_counter(&metrics, "cam", "malformed");
    let wrong_pt = rtp_counter(&metrics, "cam", "wrong_payload_type");
    assert!(malformed >= 100 && wrong_pt >= 100, "{metrics}");
    // The garbage above is deterministic: none of it is RTP with payload type 33.
    assert_eq!(malformed + wrong_pt, 300, "{metrics}");
    assert!(rtp_counter(&metrics, "cam", "accepted") > 1000, "{metrics}");
    let uri = &after.segments.last().unwrap().1;
    let seg = get(origin, &format!("/live/cam/180p/{uri}"));
    let p = z.dir.path().join("rtp.ts");
    std::fs::write(&p, &seg.body).unwrap();
    assert_eq!(ffprobe(&p, &[])["streams"].as_array().unwrap().len(), 2);
}

/// An origin with one `rtp-mpegts` stream on a fresh UDP port; returns it with the port.
fn start_mpegts_stream(name: &str) -> (Zoomate, u16) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n[[streams]]\nname = \"{name}\"\nsource = \"rtp-mpegts\"\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    (z, port)
}

/// How every RTP sender here encodes video: an IDR each second and SPS/PPS repeated in-band
/// (an RTP receiver may start listening at any packet).
const SENDER_X264: [&str; 10] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "30",
    "-x264-params",
    "repeat-headers=1",
    "-pix_fmt",
    "yuv420p",
];

/// ffmpeg with a 640x360 test picture as input 0 (and a tone as input 1 when `tone`), in real time.
fn ffmpeg_sender(tone: bool) -> std::process::Command {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"]);
    if tone {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.stdout(std::process::Stdio::null());
    cmd
}

/// ffmpeg sending `seconds` of H.264 (+ AAC when `audio`) as MPEG-TS over RTP to `port`
/// (not yet started).
fn ffmpeg_rtp_mpegts(port: u16, seconds: u32, audio: bool) -> std::process::Command {
    let mut cmd = ffmpeg_sender(audio);
    if audio {
        cmd.args(["-c:a", "aac"]);
    }
    cmd.args(["-t", &seconds.to_string()])
        .args(SENDER_X264)
        .args([
            "-f",
            "rtp_mpegts",
            &format!("rtp://127.0.0.1:{port}?pkt_size=1316"),
        ]);
    cmd
}

fn rtp_counter(metrics: &str, stream: &str, outcome: &str) -> u64 {
    let prefix =
        format!("zoomate_rtp_datagrams_total{{stream=\"{stream}\",outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
}

/// An even UDP port whose successor is free too (RTP on p, RTCP on p+1), released for use.
fn free_rtp_port_pair() -> u16 {
    for _ in 0..100 {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port() & !1;
        drop(a);
        let ok = (0..2).all(|i| std::net::UdpSocket::bind(("127.0.0.1", p + i)).is_ok());
        if ok && p > 1024 {
            return p;
        }
    }
    panic!("no free UDP port pair");
}

/// ffmpeg sending `seconds` of H.264 to `video_port` (and Opus to `opus_port`) as plain RTP.
fn ffmpeg_rtp_h264(video_port: u16, opus_port: Option<u16>, seconds: u32) -> std::process::Child {
    let t = seconds.to_string();
    let mut cmd = ffmpeg_sender(opus_port.is_some());
    cmd.args(["-map", "0:v", "-t", &t]).args(SENDER_X264).args([
        "-f",
        "rtp",
        &format!("rtp://127.0.0.1:{video_port}"),
    ]);
    if let Some(port) = opus_port {
        cmd.args(["-map", "1:a", "-t", &t, "-c:a", "libopus", "-b:a", "64k"])
            .args(["-f", "rtp", &format!("rtp://127.0.0.1:{port}")]);
    }
    cmd.spawn().expect("ffmpeg")
}

/// An origin with one `rtp-sdp` stream whose SDP lists H.264 video (PT 96) and the audio
/// described by `audio_lines` (PT 97) on fresh ports; returns it with the two RTP ports.
fn start_sdp_stream(name: &str, audio_lines: &str, extra_keys: &str) -> (Zoomate, u16, u16) {
    let (video_port, audio_port) = (free_rtp_port_pair(), free_rtp_port_pair());
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("camera.sdp");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video {video_port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n\
             m=audio {audio_port} RTP/AVP 97\r\n{audio_lines}"
        ),
    )
    .unwrap();
    let z = Zoomate::start_in(
        dir,
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n[[streams]]\nname = \"{name}\"\nsource = \"rtp-sdp\"\nsdp = \"{}\"\n{extra_keys}",
            sdp.display()
        ),
    );
    (z, video_port, audio_port)
}

#[test]
fn rtp_sdp_h264_opus_silence_ends_the_stream_and_a_returning_source_continues() {
    require_tool("ffmpeg");
    // What an operator writes for a camera: ports, payload types and codecs.
    let (z, video_port, audio_port) = start_sdp_stream(
        "cam",
        "a=rtpmap:97 opus/48000/2\r\n",
        "silence_timeout_ms = 1500\n",
    );
    let origin = z.origin.unwrap();
    let playlist = |origin| parse_media_playlist(&get(origin, "/live/cam/240p/index.m3u8").text());

    // First burst: a ladder appears with audio from the Opus stream.
    let mut ff = ffmpeg_rtp_h264(video_port, Some(audio_port), 4);
    wait_for(
        Duration::from_secs(30),
        "segments from the SDP source",
        || {
            let r = get(origin, "/live/cam/240p/index.m3u8");
            (r.status == 200 && parse_media_playlist(&r.text()).segments.len() >= 2).then_some(())
        },
    );
    assert!(ff.wait().unwrap().success(), "ffmpeg failed");
    let master = get(origin, "/live/cam/master.m3u8").text();
    assert_eq!(parse_master(&master).len(), 3, "{master}");
    assert!(
        master.contains("mp4a.40.2"),
        "audio transcoded to AAC: {master}"
    );

    // Silence: the stream ends (its last segments are listed) without a publisher telling us.
    wait_for(
        Duration::from_secs(20),
        "the silent source's stream to end",
        || {
            // Logged once the ended session's last segments are listed.
            let log = z.log();
            (log.contains("source silent; ending the stream")
                && log.contains("source ended; listening for it again"))
            .then_some(())
        },
    );
    let first = playlist(origin);
    let first_end = first.media_sequence + first.segments.len() as u64;
    let last = &first.segments.last().unwrap().1;
    let seg = get(origin, &format!("/live/cam/240p/{last}"));
    assert_eq!(seg.status, 200);
    let p = z.dir.path().join("first.ts");
    std::fs::write(&p, &seg.body).unwrap();
    let streams = ffprobe(&p, &[])["streams"].as_array().unwrap().len();
    assert_eq!(streams, 2, "video + audio in the segment");

    // The source returns: same stream, sequence numbers continue, marked as a discontinuity.
    let mut ff = ffmpeg_rtp_h264(video_port, Some(audio_port), 4);
    let second = wait_for(
        Duration::from_secs(30),
        "segments after the source returned",
        || {
            let v = playlist(origin);
            (v.media_sequence + v.segments.len() as u64 >= first_end + 2).then_some(v)
        },
    );
    assert!(ff.wait().unwrap().success(), "ffmpeg failed");
    let resumed = second
        .segments
        .iter()
        .enumerate()
        .find(|(_, s)| s.2)
        .map(|(i, _)| second.media_sequence + i as u64)
        .unwrap_or_else(|| {
            panic!(
                "no discontinuity where the source returned: {second:?}\n{}",
                z.log()
            )
        });
    assert_eq!(resumed, first_end, "timeline continues: {second:?}");
    let metrics = get(origin, "/metrics").text();
    assert!(rtp_counter(&metrics, "cam", "accepted") > 500, "{metrics}");
    assert_eq!(rtp_counter(&metrics, "cam", "malformed"), 0, "{metrics}");
}

/// Issue #14 (found by `fuzz/` `rtp_datagram`): on a socket whose payload type the caps do not
/// say (sdpdemux's), a datagram shorter than 2 bytes made the guard panic in its pad probe,
/// which aborted the origin. Now such datagrams are dropped and counted like any malformed one.
#[test]
fn rtp_sdp_datagrams_of_zero_and_one_byte_are_dropped_and_the_origin_lives() {
    require_tool("ffmpeg");
    let (mut z, video_port, audio_port) =
        start_sdp_stream("tiny", "a=rtpmap:97 opus/48000/2\r\n", "");
    let origin = z.origin.unwrap();
    let mut ff = ffmpeg_rtp_h264(video_port, Some(audio_port), 6);
    let segments = |origin| {
        let r = get(origin, "/live/tiny/240p/index.m3u8");
        (r.status == 200).then(|| {
            let v = parse_media_playlist(&r.text());
            v.media_sequence + v.segments.len() as u64
        })
    };
    let before = wait_for(
        Duration::from_secs(30),
        "segments from the SDP source",
        || segments(origin).filter(|n| *n >= 1),
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for port in [video_port, audio_port] {
        for junk in [&[][..], &[0x80][..], &[0x00][..]] {
            let _ = sock.send_to(junk, ("127.0.0.1", port));
        }
    }
    wait_for(
        Duration::from_secs(20),
        "segments after the short datagrams",
        || {
            assert!(
                z.child.try_wait().unwrap().is_none(),
                "the origin died: {}",
                z.log()
            );
            segments(origin).filter(|n| *n >= before + 2)
        },
    );
    assert!(ff.wait().unwrap().success(), "ffmpeg failed");
    let metrics = get(origin, "/metrics").text();
    assert!(rtp_counter(&metrics, "tiny", "malformed") >= 2, "{metrics}");
}

#[test]
fn rtp_mpegts_through_a_lossy_reordering_network_still_makes_decodable_segments() {
    require_tool("ffmpeg");
    let (z, port) = start_mpegts_stream("lossy");
    // The network: ffmpeg → relay → zoomate. The relay drops 1 datagram in 50 and swaps
    // every 7th with the one after it (reordering within the jitter buffer's window).
    let relay = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    relay
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let stats = std::thread::spawn(move || {
        let (mut n, mut dropped, mut swapped) = (0u64, 0u64, 0u64);
        let mut held: Option<Vec<u8>> = None;
        let mut buf = [0u8; 2048];
        while let Ok(len) = relay.recv(&mut buf) {
            n += 1;
            let pkt = buf[..len].to_vec();
            if n % 50 == 0 {
                dropped += 1;
                continue;
            }
            if n % 7 == 0 && held.is_none() {
                held = Some(pkt);
                continue;
            }
            relay.send_to(&pkt, ("127.0.0.1", port)).unwrap();
            if let Some(h) = held.take() {
                relay.send_to(&h, ("127.0.0.1", port)).unwrap();
                swapped += 1;
            }
        }
        (n, dropped, swapped)
    });
    let ff = ffmpeg_rtp_mpegts(relay_port, 7, true).status().unwrap();
    assert!(ff.success());
    let (sent, dropped, swapped) = stats.join().unwrap();
    assert!(
        dropped > 10 && swapped > 50,
        "relay: {sent} datagrams, {dropped} dropped, {swapped} swapped"
    );
    let origin = z.origin.unwrap();
    let v = wait_for(
        Duration::from_secs(20),
        "segments from the lossy source",
        || {
            let r = get(origin, "/live/lossy/240p/index.m3u8");
            let v = (r.status == 200).then(|| parse_media_playlist(&r.text()))?;
            (v.segments.len() >= 4).then_some(v)
        },
    );
    // Every listed segment is whole and decodes: loss cost picture quality, not the stream.
    for (i, (_, uri, _)) in v.segments.iter().enumerate() {
        let seg = get(origin, &format!("/live/lossy/240p/{uri}"));
        assert_eq!(seg.status, 200);
        let p = z.dir.path().join(format!("lossy{i}.ts"));
        std::fs::write(&p, &seg.body).unwrap();
        let probe = ffprobe(&p, &[]);
        let dur: f64 = probe["format"]["duration"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap();
        assert!(
            dur > 0.5,
            "segment {uri} decodes with a real duration: {probe}"
        );
    }
}

#[test]
fn rtp_sdp_listing_audio_that_never_comes_falls_back_to_video_only() {
    require_tool("ffmpeg");
    // Cameras often describe an audio track they have switched off.
    let (z, video_port, _) = start_sdp_stream(
        "mute",
        "a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
         a=fmtp:97 streamtype=5; profile-level-id=15; mode=AAC-hbr; config=1190; sizeLength=13; indexLength=3; indexDeltaLength=3\r\n",
        "",
    );
    let mut ff = ffmpeg_rtp_h264(video_port, None, 10);
    let origin = z.origin.unwrap();
    wait_for(Duration::from_secs(30), "video-only segments", || {
        let r = get(origin, "/live/mute/240p/index.m3u8");
        (r.status == 200 && parse_media_playlist(&r.text()).segments.len() >= 2).then_some(())
    });
    let _ = ff.kill();
    let _ = ff.wait();
    let master = get(origin, "/live/mute/master.m3u8").text();
    assert!(!master.contains("mp4a"), "no audio is advertised: {master}");
    assert!(
        z.log().contains("restarting video-only"),
        "the fallback is logged: {}",
        z.log()
    );
    let v = parse_media_playlist(&get(origin, "/live/mute/240p/index.m3u8").text());
    let seg = get(origin, &format!("/live/mute/240p/{}", v.segments[0].1));
    let p = z.dir.path().join("mute.ts");
    std::fs::write(&p, &seg.body).unwrap();
    let probe = ffprobe(&p, &[]);
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, vec!["video"], "{probe}");
}

#[test]
fn rtp_mpegts_without_audio_falls_back_to_video_only() {
    require_tool("ffmpeg");
    let (z, port) = start_mpegts_stream("noaudio");
    let mut ff = ffmpeg_rtp_mpegts(port, 10, false).spawn().unwrap();
    let origin = z.origin.unwrap();
    let v = wait_for(Duration::from_secs(30), "video-only segments", || {
        let r = get(origin, "/live/noaudio/240p/index.m3u8");
        let v = (r.status == 200).then(|| parse_media_playlist(&r.text()))?;
        (v.segments.len() >= 2).then_some(v)
    });
    let _ = ff.kill();
    let _ = ff.wait();
    assert!(z.log().contains("restarting video-only"), "{}", z.log());
    let master = get(origin, "/live/noaudio/master.m3u8").text();
    assert!(!master.contains("mp4a"), "no audio is advertised: {master}");
    let seg = get(origin, &format!("/live/noaudio/240p/{}", v.segments[0].1));
    let p = z.dir.path().join("noaudio.ts");
    std::fs::write(&p, &seg.body).unwrap();
    let probe = ffprobe(&p, &[]);
    assert_eq!(probe["streams"].as_array().unwrap().len(), 1, "{probe}");
    assert_eq!(probe["streams"][0]["codec_type"], "video", "{probe}");
}
