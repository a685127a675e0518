//! Issue #4: the edge in front of real origin workers, with the real bus.

mod common;
use common::*;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const ONE_RENDITION: &str = "[ladder]\nsegment_duration_ms = 1000\nformat = \"ts\"\n[[ladder.renditions]]\nname = \"180p\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 200\n";

/// An origin generating test-pattern stream `live`.
fn origin(id: &str) -> Zoomate {
    Zoomate::start(
        "origin",
        &format!(
            "{ONE_RENDITION}\n[origin]\nid = \"{id}\"\n[rtmp]\nenabled = false\n[bus]\nheartbeat_interval_ms = 300\n[[streams]]\nname = \"live\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\n"
        ),
    )
}

fn edge(origins: &[&Zoomate], extra: &str) -> Zoomate {
    let list: Vec<String> = origins
        .iter()
        .map(|o| format!("\"http://{}\"", o.origin.unwrap()))
        .collect();
    let bus: Vec<String> = origins
        .iter()
        .map(|o| format!("\"{}\"", o.bus.as_deref().unwrap()))
        .collect();
    Zoomate::start(
        "edge",
        &format!(
            "[edge]\norigins = [{}]\nbus_connect = [{}]\nhealth_check_interval_ms = 300\norigin_timeout_ms = 1000\n{extra}\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n",
            list.join(","),
            bus.join(",")
        ),
    )
}

fn wait_playlist(addr: std::net::SocketAddr, min_segments: usize) -> MediaPlaylistView {
    wait_for(Duration::from_secs(40), "playlist through the edge", || {
        let r = get(addr, "/live/live/180p/index.m3u8");
        (r.status == 200)
            .then(|| parse_media_playlist(&r.text()))
            .filter(|v| v.segments.len() >= min_segments)
    })
}

#[test]
fn player_follows_through_the_edge_and_survives_an_origin_crash() {
    let mut a = origin("origin-a");
    let mut b = origin("origin-b");
    let e = edge(&[&a, &b], "");
    let edge_addr = e.edge.unwrap();
    wait_playlist(edge_addr, 2);
    // Which origin is the edge using for `live`? Kill that one, hard.
    let used_a = metric_value(a.origin.unwrap(), "zoomate_origin_segment_requests_total")
        + get(a.origin.unwrap(), "/metrics")
            .text()
            .matches("kind=\"playlist\"")
            .count() as u64;
    let used_b = metric_value(b.origin.unwrap(), "zoomate_origin_segment_requests_total")
        + get(b.origin.unwrap(), "/metrics")
            .text()
            .matches("kind=\"playlist\"")
            .count() as u64;
    let start = Instant::now();
    let mut killed = false;
    let mut requests = 0;
    let mut seen_segments = std::collections::HashSet::new();
    while start.elapsed() < Duration::from_secs(8) {
        if !killed && start.elapsed() > Duration::from_secs(2) {
            let victim = if used_a >= used_b { &mut a } else { &mut b };
            let _ = victim.child.kill();
            let _ = victim.child.wait();
            killed = true;
        }
        let master = get(edge_addr, "/live/live/master.m3u8");
        assert_eq!(
            master.status,
            200,
            "master failed after {:?}",
            start.elapsed()
        );
        requests += 1;
        let pl = get(edge_addr, "/live/live/180p/index.m3u8");
        assert_eq!(
            pl.status,
            200,
            "playlist failed after {:?}: {}",
            start.elapsed(),
            pl.text()
        );
        requests += 1;
        let view = parse_media_playlist(&pl.text());
        // A player fetches the newest segments it has not played yet.
        for (_, uri, _) in view.segments.iter().rev().take(2) {
            if seen_segments.insert(uri.clone()) {
                let s = get(edge_addr, &format!("/live/live/180p/{uri}"));
                assert_eq!(
                    s.status,
                    200,
                    "segment {uri} failed after {:?}",
                    start.elapsed()
                );
                assert_eq!(s.body.first(), Some(&0x47), "not MPEG-TS");
                requests += 1;
            }
        }
        // Pacing: a player's reload interval.
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        killed && requests > 20 && seen_segments.len() >= 5,
        "requests {requests}, segments {}",
        seen_segments.len()
    );
    assert!(
        get(edge_addr, "/metrics")
            .text()
            .contains("zoomate_edge_origin_up"),
        "metrics list origin health"
    );
}

#[test]
fn two_hundred_concurrent_misses_make_exactly_one_origin_fetch() {
    let o = origin("origin-s");
    let e = edge(&[&o], "prefetch = false\n");
    let edge_addr = e.edge.unwrap();
    let view = wait_playlist(edge_addr, 3);
    let uri = format!("/live/live/180p/{}", view.segments.last().unwrap().1);
    let before = metric_value(o.origin.unwrap(), "zoomate_origin_segment_requests_total");
    let barrier = Arc::new(Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (barrier, uri) = (barrier.clone(), uri.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let r = get(edge_addr, &uri);
                (
                    r.status,
                    r.body.len(),
                    r.header("x-cache").map(str::to_string),
                )
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let after = metric_value(o.origin.unwrap(), "zoomate_origin_segment_requests_total");
    assert!(
        results
            .iter()
            .all(|(s, len, _)| *s == 200 && *len == results[0].1),
        "all 200 with the same body"
    );
    assert_eq!(
        after - before,
        1,
        "origin fetches for one new segment under a 200-request stampede"
    );
    assert!(metric_value(edge_addr, "zoomate_edge_coalesced_waiters_total") >= 1);
    // The next request is a hit.
    assert_eq!(get(edge_addr, &uri).header("x-cache"), Some("HIT"));
}

#[test]
fn a_segment_announcement_refreshes_the_playlist_without_waiting_for_the_ttl() {
    let o = origin("origin-f");
    // A 60 s TTL: only the bus can explain a fresh playlist.
    let e = edge(&[&o], "playlist_ttl_ms = 60000\n");
    let edge_addr = e.edge.unwrap();
    let first = wait_playlist(edge_addr, 2);
    let newest_before = first.media_sequence + first.segments.len() as u64 - 1;
    let cached = get(edge_addr, "/live/live/180p/index.m3u8");
    assert_eq!(
        cached.header("x-cache"),
        Some("HIT"),
        "second request within the TTL is a hit"
    );
    // Within a few segment durations (far less than the TTL) the edge serves newer playlists.
    let fresher = wait_for(
        Duration::from_secs(10),
        "a newer playlist from the edge",
        || {
            let v = parse_media_playlist(&get(edge_addr, "/live/live/180p/index.m3u8").text());
            let newest = v.media_sequence + v.segments.len() as u64 - 1;
            (newest > newest_before).then_some(newest)
        },
    );
    assert!(fresher > newest_before);
    assert!(metric_value(edge_addr, "zoomate_edge_playlist_refreshes_total") >= 1);
    // And the announced segment was prefetched: the first viewer request is a hit.
    let v = parse_media_playlist(&get(edge_addr, "/live/live/180p/index.m3u8").text());
    let newest = &v.segments.last().unwrap().1;
    let seg = get(edge_addr, &format!("/live/live/180p/{newest}"));
    assert_eq!(seg.status, 200);
    assert_eq!(
        seg.header("x-cache"),
        Some("HIT"),
        "prefetched on SegmentReady"
    );
}

#[test]
fn edge_http_semantics() {
    let o = origin("origin-h");
    let e = edge(&[&o], "");
    let edge_addr = e.edge.unwrap();
    let view = wait_playlist(edge_addr, 2);
    let uri = format!("/live/live/180p/{}", view.segments[0].1);
    let full = get(edge_addr, &uri);
    assert_eq!(full.status, 200);
    assert_eq!(full.header("access-control-allow-origin"), Some("*"));
    assert!(full.header("cache-control").unwrap().contains("immutable"));
    assert!(
        full.header("age").is_some()
            && full.header("x-cache").is_some()
            && full.header("last-modified").is_some()
    );
    let etag = full.header("etag").unwrap().to_string();
    assert_eq!(
        get_with(edge_addr, &uri, &[("If-None-Match", &etag)]).status,
        304
    );
    let part = get_with(edge_addr, &uri, &[("Range", "bytes=188-375")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, full.body[188..376]);
    assert_eq!(
        get_with(edge_addr, &uri, &[("Range", "bytes=99999999-")]).status,
        416
    );
    let agent = ureq::AgentBuilder::new().build();
    let head = agent
        .head(&format!("http://{edge_addr}{uri}"))
        .call()
        .unwrap();
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    // gzip for playlists when accepted (ureq does not decode: the raw bytes are gzip).
    let gz = get_with(
        edge_addr,
        "/live/live/180p/index.m3u8",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b]);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut text)
        .unwrap();
    assert!(text.starts_with("#EXTM3U"));
    // 404s are answered and not cached; bad paths are refused.
    assert_eq!(get(edge_addr, "/live/live/180p/999999.ts").status, 404);
    assert_eq!(
        get(edge_addr, "/live/live/180p/999999.ts").header("x-cache"),
        None
    );
    let bad = get(edge_addr, "/live/%2e%2e/%2e%2e/etc/passwd").status; // (the client may normalise the path)
    assert!(bad == 400 || bad == 404, "{bad}");
    // Preflight.
    let pre = agent
        .request("OPTIONS", &format!("http://{edge_addr}{uri}"))
        .call()
        .unwrap();
    assert_eq!(pre.status(), 204);
}

#[test]
fn slowloris_on_the_edge_does_not_delay_other_clients() {
    const HEADER_READ_TIMEOUT_MS: u64 = 2000;
    let e = Zoomate::start(
        "edge",
        &format!(
            "[edge]\norigins = [\"http://127.0.0.1:9\"]\n[edge.limits]\nheader_read_timeout_ms = {HEADER_READ_TIMEOUT_MS}\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n"
        ),
    );
    let addr = e.edge.unwrap();
    let slow = Slowloris::start(addr, 20);
    // Order of events: every other client is fully served (status and whole body) while all
    // the slow connections are still open, and only then are the slow ones cut off.
    for _ in 0..10 {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    assert_eq!(
        slow.open_count(),
        20,
        "the other clients must be served while the slow connections are still open"
    );
    let received = slow.wait_closed(Duration::from_millis(HEADER_READ_TIMEOUT_MS * 3));
    for buf in &received {
        assert!(
            !String::from_utf8_lossy(buf).contains("200 OK"),
            "slow client must be cut off"
        );
    }
}

/// An origin with no streams that heartbeats every 200 ms as `id`.
fn bare_origin(id: &str) -> Zoomate {
    Zoomate::start(
        "origin",
        &format!(
            "[origin]\nid = \"{id}\"\n[rtmp]\nenabled = false\n[bus]\nheartbeat_interval_ms = 200\n"
        ),
    )
}

#[test]
fn learned_origins_are_capped_and_forgotten_when_their_heartbeats_stop() {
    let mut workers = [bare_origin("learn-a"), bare_origin("learn-b")];
    let bus: Vec<String> = workers
        .iter()
        .map(|o| format!("\"{}\"", o.bus.as_deref().unwrap()))
        .collect();
    // No static origins: everything is learned from the bus, at most one at a time.
    let e = Zoomate::start(
        "edge",
        &format!(
            "[edge]\nbus_connect = [{}]\norigin_allow = [\"http://127.0.0.1:*\"]\nhealth_check_interval_ms = 200\nlearned_origin_expiry_ms = 1000\nmax_learned_origins = 1\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n",
            bus.join(",")
        ),
    );
    let edge_addr = e.edge.unwrap();
    let listed =
        |m: &str, id: &str| m.contains(&format!("zoomate_edge_origin_up{{origin=\"{id}\"}}"));
    let first = wait_for(
        Duration::from_secs(30),
        "one origin learned, the other's heartbeats rejected",
        || {
            let m = get(edge_addr, "/metrics").text();
            let (a, b) = (listed(&m, "learn-a"), listed(&m, "learn-b"));
            // Refused by the announcement check's cap (or, behind it, the origin set's).
            let refused = metric_value(
                edge_addr,
                "zoomate_edge_bus_rejected_total{reason=\"too_many_origins\"}",
            ) + metric_value(edge_addr, "zoomate_edge_origins_rejected_total");
            (a != b && refused > 0).then_some(if a { 0 } else { 1 })
        },
    );
    let (gone, other) = (
        ["learn-a", "learn-b"][first],
        ["learn-a", "learn-b"][1 - first],
    );
    let _ = workers[first].child.kill();
    let _ = workers[first].child.wait();
    // The dead origin expires; that frees the slot for the live one.
    wait_for(
        Duration::from_secs(30),
        "the dead origin forgotten and the live one learned",
        || {
            let m = get(edge_addr, "/metrics").text();
            (!listed(&m, gone) && listed(&m, other)).then_some(())
        },
    );
}

/// A python origin (`scripts/`), killed on drop.
struct PyOrigin(std::process::Child, u16);

impl PyOrigin {
    fn start(script: &str, args: &[&str]) -> PyOrigin {
        use std::io::BufRead;
        // Port 0: the script binds any free port and prints it, so no other test can take it
        // between our choosing it and the script binding it.
        let mut child = std::process::Command::new("python3")
            .arg(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("scripts")
                    .join(script),
            )
            .arg("0")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the python origin's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{script} printed {line:?}, not its port"));
        PyOrigin(child, port)
    }

    fn count(&self) -> u64 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.1));
        get(addr, "/count").text().trim().parse().expect("count")
    }
}

impl Drop for PyOrigin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An origin that dies mid-body (a SIGKILLed origin looks like this) is retried on the next
/// origin: the edge holds the whole body before answering, so the viewer gets the other
/// origin's whole object, and the cut one is never cached (issue #14, origin redundancy).
#[test]
fn an_origin_failing_mid_body_is_retried_on_another_and_never_cached() {
    let bad = PyOrigin::start("truncating_origin.py", &[]);
    let good = PyOrigin::start("slow_origin.py", &["0"]);
    // Round-robin alternates which origin is tried first; a high `health_fall` keeps the
    // failing one in rotation so it keeps coming first every other request.
    let e = Zoomate::start(
        "edge",
        &format!(
            "[edge]\norigins = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\nbalance = \"round-robin\"\nhealth_fall = 1000\nhealth_check_interval_ms = 60000\norigin_timeout_ms = 2000\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n",
            bad.1, good.1
        ),
    );
    let edge_addr = e.edge.unwrap();
    let mut bodies = Vec::new();
    for i in 0..10 {
        let r = get(edge_addr, &format!("/vod/clip/180p/{i}.ts"));
        assert_eq!(r.status, 200, "request {i}");
        bodies.push(r.body.len());
    }
    let tried_bad = bad.count();
    assert!(tried_bad > 0, "the truncating origin was never tried first");
    assert_eq!(
        good.count(),
        10,
        "every request was answered by the good origin"
    );
    // Asked again: cache hits, whole bodies, no origin asked.
    for i in 0..10 {
        let r = get(edge_addr, &format!("/vod/clip/180p/{i}.ts"));
        assert_eq!(
            (r.status, r.body.len()),
            (200, bodies[i]),
            "request {i} again"
        );
    }
    assert_eq!(
        (bad.count(), good.count()),
        (tried_bad, 10),
        "served from the cache"
    );
}

/// The edge speaks HTTP/2 (cleartext, prior knowledge) next to HTTP/1.1, and a connection that
/// never says which (no bytes, or a preface it never finishes) is closed after the header
/// timeout instead of holding its slot.
#[test]
fn http2_is_served_and_undecided_connections_are_closed() {
    use std::io::{Read, Write};
    require_tool("curl");
    let z = Zoomate::start(
        "run",
        &format!("{ONE_RENDITION}\n[edge.limits]\nheader_read_timeout_ms = 1000\n"),
    );
    let edge = z.edge.unwrap();
    let silent = std::net::TcpStream::connect(edge).unwrap();
    let mut half_preface = std::net::TcpStream::connect(edge).unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    let opened = Instant::now();
    for (name, flag) in [("2", "--http2-prior-knowledge"), ("1.1", "--http1.1")] {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                flag,
            ])
            .arg(format!("http://{edge}/healthz"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name} 200"));
    }
    for mut s in [silent, half_preface] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(5),
            "{after:?}"
        );
    }
}

/// A segment-sized object of recognisable bytes (66 KB, like the segment).
fn object_bytes() -> Vec<u8> {
    (0..66_000u32).map(|i| (i % 251) as u8).collect()
}

/// `zoomate run` with no stream (no pipeline), its store holding one VOD segment,
/// `/vod/clip/180p/0.ts`, last modified an hour ago. Returns the process and the bytes.
fn vod_fixture(extra: &str) -> (Zoomate, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("store/vod/clip/180p/0.ts");
    std::fs::create_dir_all(seg.parent().unwrap()).unwrap();
    let bytes = object_bytes();
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let z = Zoomate::start_in(dir, "run", &format!("[rtmp]\nenabled = false\n{extra}"));
    (z, bytes)
}

/// Issue #14: `If-Range` with a validator that no longer matches answered 206; RFC 9110
/// §13.1.5 says the whole 200. At the origin and through the edge.
#[test]
fn a_range_whose_if_range_does_not_match_gets_the_whole_object() {
    let (z, bytes) = vod_fixture("");
    let uri = "/vod/clip/180p/0.ts";
    for addr in [z.origin.unwrap(), z.edge.unwrap()] {
        let full = get(addr, uri);
        assert_eq!(full.status, 200);
        assert_eq!(full.body, bytes);
        let etag = full.header("etag").unwrap().to_string();
        let last_modified = full.header("last-modified").unwrap().to_string();
        let with = |if_range: &str| {
            get_with(
                addr,
                uri,
                &[("Range", "bytes=0-99"), ("If-Range", if_range)],
            )
        };
        // Still the same object: the range.
        for same in [etag.as_str(), last_modified.as_str()] {
            let r = with(same);
            assert_eq!(r.status, 206, "{addr}: If-Range {same}");
            assert_eq!(r.body, bytes[..100]);
        }
        // Anything else: the whole object, never bytes of another version.
        for other in [
            "\"a-0000000000000000\"".to_string(),
            format!("W/{etag}"),
            "Tue, 01 Dec 2020 10:00:00 GMT".to_string(),
            "garbage".to_string(),
        ] {
            let r = with(&other);
            assert_eq!(r.status, 200, "{addr}: If-Range {other}");
            assert_eq!(r.body, bytes, "{addr}: If-Range {other}");
            assert_eq!(r.header("content-range"), None);
        }
    }
}

/// Issue #14: 64 percent-encoded spellings of one segment made 64 misses, 64 origin fetches
/// and 64 cache entries. The edge keys by (and fetches) the canonical path.
#[test]
fn every_spelling_of_a_path_is_one_cache_entry_and_one_origin_fetch() {
    let (z, bytes) = vod_fixture("[edge]\nprefetch = false\n");
    let edge = z.edge.unwrap();
    // Six characters, each literal or percent-encoded: 2^6 spellings of /vod/clip/180p/0.ts.
    let template = "/{v}od/{c}l{i}p/{1}80{p}/{0}.ts";
    let chars = [
        ('v', "%76"),
        ('c', "%63"),
        ('i', "%69"),
        ('1', "%31"),
        ('p', "%70"),
        ('0', "%30"),
    ];
    let spellings: Vec<String> = (0..64u32)
        .map(|mask| {
            let mut s = template.to_string();
            for (bit, (c, enc)) in chars.iter().enumerate() {
                let with = if mask & (1 << bit) != 0 {
                    enc.to_string()
                } else {
                    c.to_string()
                };
                s = s.replace(&format!("{{{c}}}"), &with);
            }
            s
        })
        .collect();
    assert_eq!(
        spellings
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        64
    );
    let fetches_before = metric_value(edge, "zoomate_edge_origin_fetches_total");
    let bytes_before = metric_value(edge, "zoomate_edge_cache_bytes");
    for s in &spellings {
        let r = raw_get(edge, s, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(r.status, 200, "{s}");
        assert_eq!(r.body, bytes, "{s}");
    }
    let fetches = metric_value(edge, "zoomate_edge_origin_fetches_total") - fetches_before;
    let grown = metric_value(edge, "zoomate_edge_cache_bytes") - bytes_before;
    eprintln!("64 spellings: {fetches} origin fetch(es), cache +{grown} bytes");
    assert_eq!(fetches, 1, "origin fetches for 64 spellings of one segment");
    assert!(
        grown < 2 * bytes.len() as u64,
        "the cache grew by {grown} bytes for one {}-byte object",
        bytes.len()
    );
}

/// A minimal edge in front of `origins`, no bus.
fn plain_edge(origins: &[String], extra: &str) -> Zoomate {
    Zoomate::start(
        "edge",
        &format!(
            "[edge]\norigins = [{}]\n{extra}\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n",
            origins
                .iter()
                .map(|o| format!("\"{o}\""))
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
}

/// Issue #14: 4096 keep-alive connections each sending a request every 3 s held every slot;
/// new viewers waited, unanswered, in the accept queue. Now the longest-idle connection makes
/// room. Here: 16 slots held by 16 such connections (renewed when closed), and new clients.
#[test]
fn new_clients_are_served_while_keep_alive_connections_hold_every_slot() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const SLOTS: usize = 16;
    let e = plain_edge(
        &["http://127.0.0.1:9".into()],
        &format!("[edge.limits]\nmax_connections = {SLOTS}\n"),
    );
    let addr = e.edge.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (holding, renewed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let holders: Vec<_> = (0..SLOTS)
        .map(|i| {
            let (stop, holding, renewed) = (stop.clone(), holding.clone(), renewed.clone());
            std::thread::spawn(move || {
                // Staggered: a request every second on each, at different times.
                std::thread::sleep(Duration::from_millis(60 * i as u64));
                let mut conn: Option<RawConn> = None;
                let mut counted = false;
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        conn = RawConn::connect(addr, Duration::from_secs(10)).ok();
                    }
                    match conn.as_mut().map(|c| c.get("/healthz")) {
                        Some(Ok(r)) if r.status == 200 => {
                            if !counted {
                                holding.fetch_add(1, Ordering::Relaxed);
                                counted = true;
                            }
                        }
                        _ => {
                            // Closed to make room: come back, as the attack does.
                            if conn.take().is_some() {
                                renewed.fetch_add(1, Ordering::Relaxed);
                            }
                            continue;
                        }
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect();
    wait_for(Duration::from_secs(10), "every slot held", || {
        (holding.load(Ordering::Relaxed) == SLOTS).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        match raw_get(addr, "/healthz", Duration::from_secs(8)) {
            Ok(r) if r.status == 200 => latencies.push(t.elapsed()),
            Ok(r) => failures.push(format!("status {}", r.status)),
            Err(e) => failures.push(format!("{e} after {:?}", t.elapsed())),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        h.join().unwrap();
    }
    latencies.sort();
    eprintln!(
        "{} of 10 new clients served while {SLOTS} keep-alive connections held every slot \
         (latency median {:?}, max {:?}); holders closed to make room and renewed: {}",
        latencies.len(),
        latencies.get(latencies.len() / 2),
        latencies.last(),
        renewed.load(Ordering::Relaxed)
    );
    assert!(failures.is_empty(), "new clients not served: {failures:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(3)),
        "{latencies:?}"
    );
    assert!(
        metric_value(
            addr,
            "zoomate_edge_http_connections_closed_total{reason=\"idle_evicted\"}"
        ) >= 1
    );
}

/// One address holding its limit of busy connections is refused more; other addresses are
/// served. (Loopback is a /8: the other address is 127.0.0.2, via curl.)
#[test]
fn one_address_cannot_take_more_than_its_connection_limit() {
    require_tool("curl");
    let slow = PyOrigin::start("slow_origin.py", &["4000"]);
    let e = plain_edge(
        &[format!("http://127.0.0.1:{}", slow.1)],
        "origin_timeout_ms = 10000\n[edge.limits]\nmax_connections = 16\nmax_connections_per_address = 4\n",
    );
    let addr = e.edge.unwrap();
    // Four requests in flight from 127.0.0.1, each waiting on the slow origin.
    let busy: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || get(addr, &format!("/vod/clip/180p/{i}.ts")).status))
        .collect();
    wait_for(
        Duration::from_secs(10),
        "four requests at the origin",
        || (slow.count() == 4).then_some(()),
    );
    // A fifth connection from the same address: closed without an answer, at once.
    let t = Instant::now();
    let fifth = raw_get(addr, "/healthz", Duration::from_secs(3));
    assert!(
        fifth.is_err(),
        "a fifth connection from one address was served"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Another address is served meanwhile.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "127.0.0.2",
        ])
        .arg(format!("http://{addr}/healthz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    for b in busy {
        assert_eq!(b.join().unwrap(), 200);
    }
    // The busy ones are done (and their connections closed or idle): served again.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(
        metric_value(
            addr,
            "zoomate_edge_http_connections_refused_total{reason=\"per_address\"}"
        ) >= 1
    );
}

/// A connection carries `max_requests_per_connection` requests; the last answer says
/// `Connection: close` and the connection closes.
#[test]
fn a_connection_closes_after_its_request_budget() {
    let e = plain_edge(
        &["http://127.0.0.1:9".into()],
        "[edge.limits]\nmax_requests_per_connection = 3\n",
    );
    let addr = e.edge.unwrap();
    let mut conn = RawConn::connect(addr, Duration::from_secs(5)).unwrap();
    for i in 1..=3 {
        let r = conn.get("/healthz").unwrap();
        assert_eq!(r.status, 200);
        let close = r
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        assert_eq!(
            close,
            i == 3,
            "request {i}: connection {:?}",
            r.header("connection")
        );
    }
    assert!(
        conn.closed_within(Duration::from_secs(2)),
        "still open after its budget"
    );
    // A new connection is served as usual.
    assert_eq!(get(addr, "/healthz").status, 200);
}

/// Issue #14: the edge never caches a body that ended early, including one whose end cannot
/// be told from an early close (no Content-Length, no chunked framing).
#[test]
fn a_body_cut_short_is_never_cached_or_served() {
    for mode in [None, Some("unframed")] {
        let bad = PyOrigin::start("truncating_origin.py", mode.as_slice());
        let e = plain_edge(
            &[format!("http://127.0.0.1:{}", bad.1)],
            "health_fall = 1000\nhealth_check_interval_ms = 60000\n",
        );
        let addr = e.edge.unwrap();
        for _ in 0..3 {
            let r = get(addr, "/vod/clip/180p/0.ts");
            assert_eq!(
                r.status,
                502,
                "{mode:?}: a truncated body was served ({} bytes)",
                r.body.len()
            );
        }
        assert_eq!(
            bad.count(),
            3,
            "{mode:?}: each request went to the origin (nothing cached)"
        );
    }
}

/// Issue #14: concurrent misses share one fill; when it fails, the waiters do not all inherit
/// the failure: one of them fetches again and the others share that (pingora's cache lock).
#[test]
fn when_a_shared_fill_fails_a_waiter_fetches_again_for_the_others() {
    let origin = PyOrigin::start("truncating_origin.py", &["first", "1500"]);
    let e = plain_edge(
        &[format!("http://127.0.0.1:{}", origin.1)],
        "health_fall = 1000\nhealth_check_interval_ms = 60000\norigin_timeout_ms = 3000\n",
    );
    let addr = e.edge.unwrap();
    let uri = "/vod/clip/180p/7.ts";
    let first = std::thread::spawn(move || get(addr, uri).status);
    wait_for(
        Duration::from_secs(5),
        "the first fill at the origin",
        || (origin.count() == 1).then_some(()),
    );
    let barrier = Arc::new(Barrier::new(19));
    let waiters: Vec<_> = (0..19)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let r = get(addr, uri);
                (r.status, r.body.len())
            })
        })
        .collect();
    let leader = first.join().unwrap();
    let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let served = results.iter().filter(|r| **r == (200, 64 * 1024)).count();
    eprintln!(
        "failed fill: leader {leader}, waiters served {served}/19, origin fetches {}",
        origin.count()
    );
    assert_eq!(leader, 502, "the failed fill's own request");
    assert_eq!(served, 19, "waiters: {results:?}");
    assert_eq!(origin.count(), 2, "the failed fill and one more");
}

/// Issue #14: when every origin fails, a live playlist is served from its last good copy for
/// a bounded age (stale-if-error), then the error.
#[test]
fn live_playlists_are_served_stale_for_a_bounded_age_when_every_origin_fails() {
    // `[edge] stale_if_error_ms`, at its default (two 2 s target durations).
    const STALE_MS: u64 = 4000;
    let origin = PyOrigin::start("slow_origin.py", &["0"]);
    let e = plain_edge(
        &[format!("http://127.0.0.1:{}", origin.1)],
        "playlist_ttl_ms = 300\norigin_timeout_ms = 500\nhealth_check_interval_ms = 60000\n",
    );
    let addr = e.edge.unwrap();
    let pl = "/live/s/180p/index.m3u8";
    let fetched = Instant::now();
    let first = get(addr, pl);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    drop(origin); // killed: every origin fails from now on
    // A blocking reload asks for something newer than any copy: never answered stale.
    let blocking = get(addr, &format!("{pl}?_HLS_msn=5"));
    assert_ne!(
        blocking.status, 200,
        "a blocking reload was answered from a stale copy"
    );
    let mut seen = Vec::new();
    while fetched.elapsed() < Duration::from_millis(STALE_MS + 1500) {
        let r = get(addr, pl);
        seen.push((
            fetched.elapsed(),
            r.status,
            r.header("x-cache").map(str::to_string),
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    let stale = seen
        .iter()
        .filter(|s| s.2.as_deref() == Some("STALE"))
        .count();
    for (at, status, cache) in &seen {
        if *at < Duration::from_millis(STALE_MS - 300) {
            assert_eq!(*status, 200, "at {at:?} ({cache:?}): {seen:?}");
        }
        if *at > Duration::from_millis(STALE_MS + 500) {
            assert_eq!(*status, 502, "at {at:?}, past the bound: {seen:?}");
        }
    }
    assert!(stale >= 5, "answers from the last good copy: {seen:?}");
    assert!(metric_value(addr, "zoomate_edge_stale_served_total") >= 5);
}
