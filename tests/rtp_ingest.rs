//! RTP ingest (part of issue #5): MPEG-TS over RTP from ffmpeg yields the same live ladder as
//! RTMP, and garbage datagrams to the port do not break the running stream.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn rtp_mpegts_from_ffmpeg_produces_a_live_ladder_and_survives_garbage() {
    require_tool("ffmpeg");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n[[streams]]\nname = \"cam\"\nsource = \"rtp-mpegts\"\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let mut ff = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args([
            "-t",
            "8",
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
        ])
        .args([
            "-c:a",
            "aac",
            "-f",
            "rtp_mpegts",
            &format!("rtp://127.0.0.1:{port}?pkt_size=1316"),
        ])
        .stdout(std::process::Stdio::null())
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
    let uri = &after.segments.last().unwrap().1;
    let seg = get(origin, &format!("/live/cam/180p/{uri}"));
    let p = z.dir.path().join("rtp.ts");
    std::fs::write(&p, &seg.body).unwrap();
    assert_eq!(ffprobe(&p, &[])["streams"].as_array().unwrap().len(), 2);
}
