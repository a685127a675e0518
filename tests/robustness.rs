//! Bad input never hurts good users: garbage on the RTMP port, hostile HTTP paths, slow
//! clients, and a pipeline that hangs.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn rtmp_garbage_truncated_handshakes_and_stalls_do_not_disturb_a_good_publisher() {
    let z = Zoomate::start(
        "origin",
        &format!("{TEST_LADDER}\n[rtmp]\nhandshake_timeout_ms = 2000\n"),
    );
    let rtmp = z.rtmp.unwrap();
    let mut good = ffmpeg_publish(&z.rtmp_url("good"), "640x360", 6, 30);
    // The attack starts once the good publisher is publishing.
    wait_for(
        Duration::from_secs(20),
        "the good publisher to start",
        || z.log().contains("publish started").then_some(()),
    );
    let mut attackers = Vec::new();
    // Random bytes.
    attackers.push(std::thread::spawn(move || {
        for seed in 0..20u32 {
            if let Ok(mut s) = TcpStream::connect(rtmp) {
                let junk: Vec<u8> = (0..4096u32)
                    .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 7919) >> 13) as u8)
                    .collect();
                let _ = s.write_all(&junk);
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = s.read(&mut [0u8; 64]);
            }
        }
    }));
    // A valid C0 then a truncated C1; a C0 with a bogus version; a stalled client.
    attackers.push(std::thread::spawn(move || {
        let mut s = TcpStream::connect(rtmp).unwrap();
        let _ = s.write_all(&[3u8]);
        let _ = s.write_all(&[0u8; 700]);
        let mut s2 = TcpStream::connect(rtmp).unwrap();
        let _ = s2.write_all(&[0xffu8; 1537]);
        let stalled = TcpStream::connect(rtmp).unwrap();
        // Pacing, not synchronisation: the stalled client holds its connection this long.
        std::thread::sleep(Duration::from_secs(3));
        drop((s, s2, stalled));
    }));
    // A completed handshake followed by an absurd chunk-size message and a huge message header.
    attackers.push(std::thread::spawn(move || {
        let mut s = TcpStream::connect(rtmp).unwrap();
        let mut c0c1 = vec![3u8];
        c0c1.extend(std::iter::repeat_n(0u8, 1536));
        let _ = s.write_all(&c0c1);
        let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.read_exact(&mut s0s1s2).is_ok() {
            let _ = s.write_all(&s0s1s2[1..1537]); // C2 echoes S1
            // Set Chunk Size (type 1) to 0x7fffffff, then a message claiming 16 MB.
            let _ = s.write_all(&[
                0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
            ]);
            let _ = s.write_all(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x09, 1, 0, 0, 0]);
            let _ = s.write_all(&[0u8; 8192]);
        }
    }));
    for a in attackers {
        a.join().unwrap();
    }
    let status = good.wait().unwrap();
    assert!(
        status.success(),
        "the good publisher failed; log:\n{}",
        z.log()
    );
    z.wait_sessions_over("good", 1);
    let text = get(z.origin.unwrap(), "/live/good/180p/index.m3u8").text();
    let v = parse_media_playlist(&text);
    let total: f64 = v.segments.iter().map(|s| s.0).sum();
    assert!(total >= 5.0, "good stream incomplete ({total} s):\n{text}");
    assert!(
        z.log().contains("rtmp connection closed"),
        "garbage connections should be logged"
    );
}

/// Sends a raw request line (so the path reaches the server exactly as written).
fn raw_status(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn origin_http_semantics_and_traversal() {
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[[streams]]\nname = \"pat\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\n"
        ),
    );
    let origin = z.origin.unwrap();
    // A secret beside the store that no path may reach.
    std::fs::write(z.dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    std::fs::write(z.store().join("secret.txt"), "TOP-SECRET").unwrap_or(());
    let seg = wait_for(Duration::from_secs(30), "first segment", || {
        let r = get(origin, "/live/pat/180p/index.m3u8");
        (r.status == 200)
            .then(|| parse_media_playlist(&r.text()))
            .and_then(|v| v.segments.first().map(|s| s.1.clone()))
    });
    for path in [
        "/live/../secret.txt",
        "/live/../../secret.txt",
        "/live/pat/../../secret.txt",
        "/live/%2e%2e/secret.txt",
        "/live/pat/..%2f..%2fsecret.txt",
        "/live/%252e%252e/%252e%252e/secret.txt",
        "/live/pat/%2e%2e%5c%2e%2e%5csecret.txt",
        "/live/pat\\..\\..\\secret.txt",
        "//etc/passwd",
        "/live//etc/passwd",
        "/vod/../secret.txt",
        "/live/pat/180p/%00.ts",
    ] {
        let (status, body) = raw_status(origin, path);
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(
            !body.contains("TOP-SECRET") && !body.contains("root:"),
            "{path} leaked a file"
        );
    }
    assert_eq!(raw_status(origin, "/live/nope/master.m3u8").0, 404);

    // Content types, cache policy, CORS, HEAD, 304, Range.
    let pl = get(origin, "/live/pat/180p/index.m3u8");
    assert_eq!(
        pl.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(pl.header("cache-control"), Some("public, max-age=1"));
    assert_eq!(pl.header("access-control-allow-origin"), Some("*"));
    let s = get(origin, &format!("/live/pat/180p/{seg}"));
    assert_eq!(s.header("content-type"), Some("video/mp2t"));
    assert!(s.header("cache-control").unwrap().contains("immutable"));
    let etag = s.header("etag").unwrap().to_string();
    assert_eq!(
        get_with(
            origin,
            &format!("/live/pat/180p/{seg}"),
            &[("If-None-Match", &etag)]
        )
        .status,
        304
    );
    let part = get_with(
        origin,
        &format!("/live/pat/180p/{seg}"),
        &[("Range", "bytes=0-187")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, s.body[..188]);
    let agent = ureq::AgentBuilder::new().build();
    let head = agent
        .head(&format!("http://{origin}/live/pat/180p/{seg}"))
        .call()
        .unwrap();
    assert_eq!(
        head.header("content-length"),
        Some(s.body.len().to_string().as_str())
    );
    assert_eq!(get(origin, "/healthz").status, 200);
    assert!(
        get(origin, "/metrics")
            .text()
            .contains("zoomate_origin_segment_requests_total")
    );
}

#[test]
fn slowloris_does_not_delay_other_clients_and_is_cut_off() {
    const HEADER_READ_TIMEOUT_MS: u64 = 2000;
    let z = Zoomate::start(
        "origin",
        &format!(
            "[origin.limits]\nheader_read_timeout_ms = {HEADER_READ_TIMEOUT_MS}\n[rtmp]\nenabled = false\n"
        ),
    );
    let origin = z.origin.unwrap();
    let slow = Slowloris::start(origin, 1);
    // Other clients are served while the slow one dribbles: all five fully served before the
    // slow connection is closed (order of events, not a latency).
    for _ in 0..5 {
        assert_eq!(get(origin, "/healthz").status, 200);
    }
    assert_eq!(
        slow.open_count(),
        1,
        "the other clients must be served while the slow connection is still open"
    );
    let received = slow.wait_closed(Duration::from_millis(HEADER_READ_TIMEOUT_MS * 3));
    let text = String::from_utf8_lossy(&received[0]);
    assert!(
        !text.contains("200 OK"),
        "the slow client should be cut off, got {text:?}"
    );
}

#[test]
fn a_hung_pipeline_is_torn_down_by_the_watchdog_and_the_process_keeps_serving() {
    // An encoder template that swallows every frame: the stream never produces a segment.
    // The watchdog reports it and restarts the source; the process keeps serving.
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("pipelines");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("video-blackhole.pipeline"),
        "valve drop=true ! x264enc bitrate={bitrate_kbps} key-int-max={gop_frames}",
    )
    .unwrap();
    let extra = format!(
        "{}\n[pipelines]\ndir = \"{}\"\nstall_timeout_ms = 2000\n[[streams]]\nname = \"stuck\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\n",
        TEST_LADDER.replace(
            "frame_rate = 30",
            "frame_rate = 30\nvideo_encoder = \"blackhole\""
        ),
        templates.display()
    );
    let mut z = Zoomate::start_in(dir, "origin", &extra);
    wait_for(Duration::from_secs(20), "watchdog report", || {
        z.log().contains("watchdog").then_some(())
    });
    assert_eq!(
        get(z.origin.unwrap(), "/healthz").status,
        200,
        "the process must survive a hung pipeline"
    );
    let status = z.terminate(Duration::from_secs(20));
    assert!(status.success(), "log:\n{}", z.log());
}

#[test]
fn gstreamer_rtmp2sink_can_publish() {
    require_tool("gst-launch-1.0");
    let z = Zoomate::start("origin", TEST_LADDER);
    let url = format!("rtmp://{}/live/gst", z.rtmp.unwrap());
    let status = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "is-live=true",
            "num-buffers=120",
            "!",
            "video/x-raw,width=640,height=360,framerate=30/1",
            "!",
            "x264enc",
            "tune=zerolatency",
            "key-int-max=30",
            "!",
            "h264parse",
            "!",
            "flvmux",
            "name=m",
            "streamable=true",
            "!",
            "rtmp2sink",
        ])
        .arg(format!("location={url}"))
        .args([
            "audiotestsrc",
            "is-live=true",
            "num-buffers=190",
            "!",
            "audioconvert",
            "!",
            "avenc_aac",
            "!",
            "aacparse",
            "!",
            "m.",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(Duration::from_secs(20), "segments from rtmp2sink", || {
        let r = get(z.origin.unwrap(), "/live/gst/180p/index.m3u8");
        (r.status == 200 && parse_media_playlist(&r.text()).segments.len() >= 3).then_some(())
    });
}

/// Issue #14: a crash left the `.staging` directory with the half-written segment, and the
/// segments the janitor had not deleted yet, for good. At start they are swept; what the
/// playlists list stays (and is served).
#[test]
fn a_start_sweeps_what_a_crash_left_in_the_store_and_keeps_what_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("store/live/crashed");
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let put = |rel: &str, old: bool| {
        let p = stream.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("bytes of {rel}")).unwrap();
        if old {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
    };
    std::fs::create_dir_all(stream.join("180p")).unwrap();
    std::fs::create_dir_all(stream.join("audio")).unwrap();
    std::fs::write(
        stream.join("180p/index.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:5\n\
         #EXTINF:1.000,\n5.ts\n#EXTINF:1.000,\n6.ts\n",
    )
    .unwrap();
    std::fs::write(
        stream.join("audio/index.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MAP:URI=\"init-5.mp4\"\n#EXTINF:1.0,\n5.m4s\n\
         #EXT-X-PART:DURATION=0.2,URI=\"6.0.ab.m4s\"\n",
    )
    .unwrap();
    for (rel, old) in [
        ("180p/1.ts", true),
        ("180p/2.ts", true),
        ("180p/3.ts", true),
        ("180p/4.ts", true),
        ("180p/5.ts", true),
        ("180p/6.ts", true),
        ("180p/7.ts", false), // unlisted but young: kept for now (the janitor's job)
        ("180p/.index.m3u8.4242.tmp", true),
        ("audio/init-3.mp4", true),
        ("audio/init-5.mp4", true),
        ("audio/3.m4s", true),
        ("audio/3.2.ab.m4s", true),
        ("audio/5.m4s", true),
        ("audio/6.0.ab.m4s", true),
        (".staging/1733000000/180p/00000007.ts", true),
        ("master.m3u8", true),
    ] {
        put(rel, old);
    }
    let z = Zoomate::start_in(dir, "origin", "[rtmp]\nenabled = false\n");
    let origin = z.origin.unwrap();
    let stream = z.store().join("live/crashed");
    assert!(
        !stream.join(".staging").exists(),
        "staging leftovers removed"
    );
    for gone in [
        "180p/1.ts",
        "180p/2.ts",
        "180p/3.ts",
        "180p/4.ts",
        "180p/.index.m3u8.4242.tmp",
        "audio/init-3.mp4",
        "audio/3.m4s",
        "audio/3.2.ab.m4s",
    ] {
        assert!(!stream.join(gone).exists(), "{gone} should have been swept");
    }
    for kept in [
        "master.m3u8",
        "180p/index.m3u8",
        "180p/5.ts",
        "180p/6.ts",
        "180p/7.ts",
        "audio/index.m3u8",
        "audio/init-5.mp4",
        "audio/5.m4s",
        "audio/6.0.ab.m4s",
    ] {
        assert!(stream.join(kept).exists(), "{kept} should have been kept");
    }
    // What is listed is still served; what was swept is gone for players too.
    let r = get(origin, "/live/crashed/180p/5.ts");
    assert_eq!(
        (r.status, r.text()),
        (200, "bytes of 180p/5.ts".to_string())
    );
    assert_eq!(get(origin, "/live/crashed/180p/1.ts").status, 404);
    assert!(
        z.log().contains("removed a previous run's leftovers"),
        "the sweep is logged"
    );
}

// ---- RTMP: memory, slots and key guessing no one peer can exhaust (docs/RELIABILITY.md) ----

/// A `zoomate_rtmp_rejected_total` count from the origin's `/metrics` (0 when absent).
fn rtmp_rejected(z: &Zoomate, reason: &str) -> f64 {
    metric(
        z.origin.unwrap(),
        &format!("zoomate_rtmp_rejected_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Memory of the zoomate process around an attack, in MiB; printed for docs/RELIABILITY.md.
struct RssFigures {
    pid: u32,
    before: f64,
}

impl RssFigures {
    fn start(z: &Zoomate) -> RssFigures {
        let pid = z.child.id();
        common::rtmp::reset_peak_rss(pid);
        RssFigures {
            pid,
            before: common::rtmp::rss_mib(pid),
        }
    }

    fn peak_growth(&self) -> f64 {
        common::rtmp::peak_rss_mib(self.pid) - self.before
    }

    fn growth(&self) -> f64 {
        common::rtmp::rss_mib(self.pid) - self.before
    }

    /// Growth once it is below `below` MiB and has stopped falling (no sample 1 MiB lower
    /// for 2 s: freed memory is handed back in the background), or after `within` whatever it
    /// is then (printed before any assertion, so a failing run still gives its figures).
    fn settled_growth(&self, below: f64, within: Duration) -> f64 {
        let deadline = std::time::Instant::now() + within;
        let mut lowest = self.growth();
        let mut lowest_since = std::time::Instant::now();
        loop {
            // Sampling interval: memory has no event to wait for.
            std::thread::sleep(Duration::from_millis(250));
            let g = self.growth();
            if g < lowest - 1.0 {
                lowest = g;
                lowest_since = std::time::Instant::now();
            }
            let stable = lowest_since.elapsed() >= Duration::from_secs(2);
            if (g < below && stable) || std::time::Instant::now() > deadline {
                return g;
            }
        }
    }

    fn report(&self, scenario: &str, after: f64) {
        eprintln!(
            "RSS {scenario}: before {:.0} MiB, peak +{:.0} MiB, after +{:.0} MiB (anonymous now {:.0} MiB)",
            self.before,
            self.peak_growth(),
            after,
            common::rtmp::proc_status_kib(self.pid, "RssAnon") as f64 / 1024.0
        );
    }
}

#[test]
fn rtmp_large_messages_before_publish_are_refused_before_they_are_buffered() {
    use common::rtmp::*;
    let z = Zoomate::start("origin", TEST_LADDER);
    let rtmp = z.rtmp.unwrap();
    let rss = RssFigures::start(&z);
    // 20 connections (5 each from 4 addresses), none publishing, all at once: each announces a
    // 16 MiB − 1 video message and tries to send it.
    const CONNECTIONS: usize = 20;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CONNECTIONS));
    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut peer =
                    RtmpPeer::handshake(loopback(2 + (i % 4) as u8), rtmp).expect("handshake");
                barrier.wait();
                let _ = peer.sock.write_all(&huge_message_header());
                let sent = write_until_refused(&mut peer.sock, 16 * 1024 * 1024);
                let closed = closed_by_server(&mut peer.sock, Duration::from_secs(30));
                (sent, closed)
            })
        })
        .collect();
    let results: Vec<(usize, bool)> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    let peak = rss.peak_growth();
    let after = rss.settled_growth(8.0, Duration::from_secs(20));
    rss.report("20 connections x 16 MiB message before publish", after);
    for (i, (sent, closed)) in results.iter().enumerate() {
        assert!(
            *closed && *sent < 16 * 1024 * 1024,
            "connection {i}: the server should cut it at the header, not after {sent} bytes"
        );
    }
    assert!(
        peak < 16.0,
        "20 refused messages made zoomate hold {peak:.0} MiB more"
    );
    assert!(after < 8.0, "{after:.0} MiB still held after the attack");
    assert_eq!(
        rtmp_rejected(&z, "message_too_large_before_publish"),
        CONNECTIONS as f64
    );
    let log = strip_ansi(&z.log());
    assert!(
        log.contains("reason=message_too_large_before_publish"),
        "one log line names the reason: {log}"
    );
}

#[test]
fn rtmp_publisher_flooding_huge_messages_is_held_to_its_budget() {
    use common::rtmp::*;
    // Publishing is open (the default). A short idle timeout: a publisher whose queue stays
    // full is cut after it.
    let z = Zoomate::start(
        "origin",
        &format!("{TEST_LADDER}\n[rtmp]\nidle_timeout_ms = 3000\n"),
    );
    // Memory is compared with a process that has run a pipeline already (codecs and plugins
    // loaded once stay resident; that is not what the attack costs).
    let mut warm_up = ffmpeg_publish(&z.rtmp_url("warmup"), "320x240", 2, 30);
    assert!(warm_up.wait().unwrap().success());
    z.wait_sessions_over("warmup", 1);
    let rss = RssFigures::start(&z);
    let mut peer = RtmpPeer::handshake(loopback(2), z.rtmp.unwrap()).expect("handshake");
    assert!(peer.connect_app("live") && peer.publish("flood"));
    // A server that stops reading must not hang the test.
    peer.sock
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // 100 video messages of 16 MiB − 1 (an AVC NAL unit header, then zeros), as fast as the
    // server takes them.
    let mut body = vec![0u8; (1 << 24) - 1];
    body[..5].copy_from_slice(&[0x17, 0x01, 0, 0, 0]);
    let body = bytes::Bytes::from(body);
    let mut sent = 0;
    for i in 0..100u32 {
        if peer.video(body.clone(), i * 33).is_err() {
            break;
        }
        sent += 1;
    }
    let closed = closed_by_server(&mut peer.sock, Duration::from_secs(60));
    drop(peer);
    z.wait_sessions_over("flood", 1);
    let peak = rss.peak_growth();
    let after = rss.settled_growth(24.0, Duration::from_secs(20));
    rss.report(
        &format!("publisher, {sent} of 100 messages of 16 MiB taken"),
        after,
    );
    assert!(closed, "the flooding publisher is disconnected");
    // Budget: one message in the parser and its FLV copy, a 32 MiB queue, appsrc's 8 MiB.
    assert!(
        peak < 160.0,
        "one publisher made zoomate hold {peak:.0} MiB more"
    );
    assert!(after < 24.0, "{after:.0} MiB still held after the attack");
}

#[test]
fn rtmp_stalled_connections_from_one_address_do_not_lock_out_a_publisher() {
    use common::rtmp::*;
    let z = Zoomate::start(
        "origin",
        &format!("{TEST_LADDER}\n[rtmp]\nmax_connections = 20\n"),
    );
    let rtmp = z.rtmp.unwrap();
    // 20 connections from one address that start a handshake (C0 + C1) and stall.
    let stalled: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect_from(loopback(2), rtmp);
            let mut c0c1 = vec![0u8; 1537];
            c0c1[0] = 3;
            let _ = s.write_all(&c0c1);
            s
        })
        .collect();
    // The server answers those it admitted (S0 + S1 + S2) and closes the others at once.
    let refused = stalled
        .iter()
        .filter(|s| closed_by_server_before_answering(s))
        .count();
    let mut good = ffmpeg_publish(&z.rtmp_url("good"), "640x360", 4, 30);
    let status = good.wait().unwrap();
    assert!(
        status.success(),
        "the publisher was locked out; log:\n{}",
        z.log()
    );
    z.wait_sessions_over("good", 1);
    let text = get(z.origin.unwrap(), "/live/good/180p/index.m3u8").text();
    let listed: f64 = parse_media_playlist(&text)
        .segments
        .iter()
        .map(|s| s.0)
        .sum();
    assert!(
        listed >= 3.0,
        "good stream incomplete ({listed} s):\n{text}"
    );
    assert_eq!(
        refused, 12,
        "8 connections per address (the default), the rest refused"
    );
    assert_eq!(rtmp_rejected(&z, "address_limit"), 12.0);
    drop(stalled);
}

/// Reads what the server sends on a fresh connection: `true` if it closed without a byte
/// (refused), `false` once it answers (admitted).
fn closed_by_server_before_answering(mut s: &std::net::TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("the server neither answered nor closed a connection")
        }
        Err(_) => true,
    }
}

#[test]
fn rtmp_key_guessing_is_throttled_per_address_and_counted() {
    use common::rtmp::*;
    let z = Zoomate::start(
        "origin",
        &format!("{TEST_LADDER}\n[rtmp.stream_keys]\ncam = \"Sup3rSecret-key\"\n"),
    );
    let rtmp = z.rtmp.unwrap();
    // 30 wrong keys from 127.0.0.2, one connection each, as fast as the server answers.
    let started = std::time::Instant::now();
    for i in 0..30 {
        let mut peer = RtmpPeer::handshake(loopback(2), rtmp).expect("handshake");
        assert!(peer.connect_app("live"));
        assert!(
            !peer.publish(&format!("cam?key=guess-{i:04}")),
            "a wrong key is never accepted"
        );
    }
    let took = started.elapsed();
    let checked = rtmp_rejected(&z, "bad_key");
    let throttled = rtmp_rejected(&z, "throttled");
    eprintln!(
        "key guessing: 30 attempts in {:.1} s, {checked} checked, {throttled} refused unchecked",
        took.as_secs_f64()
    );
    assert_eq!(checked + throttled, 30.0, "every attempt is counted");
    // 3 free failures, then waits of 1 s, 2 s, 4 s …: few more are checked, the rest refused.
    assert!(
        checked <= 10.0 && throttled >= 20.0,
        "{checked} guesses checked in {took:?}"
    );
    // The right key from another address still works.
    let mut good = ffmpeg_publish(&z.rtmp_url("cam?key=Sup3rSecret-key"), "640x360", 3, 30);
    assert!(good.wait().unwrap().success(), "log:\n{}", z.log());
    z.wait_sessions_over("cam", 1);
    let log = z.log();
    assert!(
        !log.contains("guess-0") && !log.contains("Sup3rSecret"),
        "keys never appear in the log"
    );
}
