//! SRT ingest (issue #16): ffmpeg pushes MPEG-TS over SRT (listener mode, passphrase) and the
//! live ladder appears; garbage UDP datagrams to the SRT port break nothing; a caller whose
//! stream id names another stream is refused; a caller that leaves ends the stream after the
//! silence timeout and a returning one continues the timeline after a discontinuity.

mod common;
use common::*;
use std::time::Duration;

const PASSPHRASE: &str = "correct-horse-battery";

/// ffmpeg pushing `seconds` of 640x360 H.264 + AAC as MPEG-TS over SRT (not yet started).
fn ffmpeg_srt(port: u16, seconds: u32, streamid: &str, passphrase: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30"])
        .args(["-x264-params", "repeat-headers=1", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(format!(
            "srt://127.0.0.1:{port}?mode=caller&streamid={streamid}&passphrase={passphrase}&connect_timeout=3000"
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

#[test]
fn srt_push_from_ffmpeg_makes_a_ladder_survives_garbage_and_refuses_other_stream_ids() {
    require_tool("ffmpeg");
    let port = free_port_udp();
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n[[streams]]\nname = \"cam\"\nsource = \"srt\"\n\
             listen = \"127.0.0.1:{port}\"\npassphrase = \"{PASSPHRASE}\"\nlatency_ms = 80\nsilence_timeout_ms = 1500\n"
        ),
    );
    let origin = z.origin.unwrap();
    let playlist = || parse_media_playlist(&get(origin, "/live/cam/240p/index.m3u8").text());

    // Garbage first: random bytes and fake SRT control headers, before any caller.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..300u32 {
        let junk: Vec<u8> = match i % 3 {
            0 => (0..((i * 37) % 1400 + 1))
                .map(|j| (j * 131 + i) as u8)
                .collect(),
            // A control packet (top bit set: handshake type 0) with a nonsense body.
            1 => [
                &[0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
                &[0xff; 48][..],
            ]
            .concat(),
            _ => vec![0x00, 0x01],
        };
        let _ = sock.send_to(&junk, ("127.0.0.1", port));
    }

    // A caller naming another stream is refused at the handshake.
    let refused = ffmpeg_srt(port, 2, "publish:other", PASSPHRASE)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a caller for another stream was accepted: {}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The real caller: the ladder appears and a segment decodes with audio and video.
    let ff = ffmpeg_srt(port, 5, "publish:cam", PASSPHRASE)
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "SRT stream's first segments",
        || {
            let r = get(origin, "/live/cam/240p/index.m3u8");
            (r.status == 200 && parse_media_playlist(&r.text()).segments.len() >= 2).then_some(())
        },
    );
    let out = ff.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let master = get(origin, "/live/cam/master.m3u8").text();
    assert_eq!(parse_master(&master).len(), 3, "{master}");

    // The caller left: the stream ends (srtsrc reports the caller's goodbye as EOS; a caller
    // that vanishes is caught by the silence timeout) and the listener waits again.
    wait_for(Duration::from_secs(20), "the SRT stream to end", || {
        z.log()
            .contains("source ended; listening for it again")
            .then_some(())
    });
    let first = playlist();
    let first_end = first.media_sequence + first.segments.len() as u64;
    let last = &first.segments.last().unwrap().1;
    let seg = get(origin, &format!("/live/cam/240p/{last}"));
    assert_eq!(seg.status, 200);
    let p = z.dir.path().join("srt.ts");
    std::fs::write(&p, &seg.body).unwrap();
    assert_eq!(ffprobe(&p, &[])["streams"].as_array().unwrap().len(), 2);

    // It returns (stream id in SRT's access-control syntax): the timeline continues.
    let mut ff = ffmpeg_srt(port, 4, "#!::r=cam,m=publish", PASSPHRASE)
        .spawn()
        .unwrap();
    let second = wait_for(
        Duration::from_secs(30),
        "segments after the caller returned",
        || {
            let v = playlist();
            (v.media_sequence + v.segments.len() as u64 >= first_end + 2).then_some(v)
        },
    );
    assert!(ff.wait().unwrap().success());
    let resumed = second
        .segments
        .iter()
        .enumerate()
        .find(|(_, s)| s.2)
        .map(|(i, _)| second.media_sequence + i as u64)
        .unwrap_or_else(|| panic!("no discontinuity where the caller returned: {second:?}"));
    assert_eq!(resumed, first_end, "timeline continues: {second:?}");
    let log = z.log();
    assert!(log.contains("SRT caller refused"), "{log}");
    assert!(!log.contains(PASSPHRASE), "the passphrase was logged");
}

/// A UDP port free right now (SRT listens on UDP).
fn free_port_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
