//! Issue #3: the segment bus with real ZeroMQ sockets, a real origin, and a libzmq peer.

mod common;
use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use zoomate::bus::BusEvent;
use zoomate::bus::subscriber::BusSubscriber;

fn pattern(name: &str, w: u32, h: u32) -> String {
    format!(
        "[[streams]]\nname = \"{name}\"\nsource = \"test-pattern\"\nwidth = {w}\nheight = {h}\n"
    )
}

/// Collects events for `dur` on a fresh runtime thread.
fn collect(
    sub_rx: &mut tokio::sync::mpsc::Receiver<BusEvent>,
    rt: &tokio::runtime::Runtime,
    dur: Duration,
    mut on: impl FnMut(&BusEvent),
) -> Vec<BusEvent> {
    let deadline = Instant::now() + dur;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match rt.block_on(async { tokio::time::timeout(left, sub_rx.recv()).await }) {
            Ok(Some(ev)) => {
                on(&ev);
                out.push(ev);
            }
            _ => break,
        }
    }
    out
}

#[test]
fn every_segment_is_announced_in_order_fetchable_at_once_and_a_restarted_origin_is_picked_up() {
    let mut z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n{}",
            pattern("bus", 640, 360)
        ),
    );
    let origin = z.origin.unwrap();
    let bus = z.bus.clone().expect("bus endpoint");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = zoomate::Shutdown::new();
    let (sub, mut rx) = rt.block_on(async {
        BusSubscriber::spawn(
            vec![bus.clone()],
            vec!["seg/".into()],
            1024,
            shutdown.clone(),
        )
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut fetched = 0;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    let enough = |events: &Vec<BusEvent>| {
        ["360p", "240p", "180p"].iter().all(|r| {
            events
                .iter()
                .filter(|e| matches!(e, BusEvent::SegmentReady { rendition, .. } if rendition == r))
                .count()
                >= 4
        })
    };
    while !enough(&events) && Instant::now() < deadline {
        events.extend(collect(&mut rx, &rt, Duration::from_millis(500), |ev| {
            if let BusEvent::SegmentReady { uri, byte_size, .. } = ev {
                // Announced means fetchable now: complete, and it decodes.
                let r = get(origin, uri);
                assert_eq!(r.status, 200, "{uri} announced but not fetchable");
                assert_eq!(r.body.len() as u64, *byte_size, "{uri} incomplete");
                if fetched < 3 {
                    let p = tmp.path().join(format!("{fetched}.ts"));
                    std::fs::write(&p, &r.body).unwrap();
                    assert_eq!(ffprobe(&p, &[])["streams"].as_array().unwrap().len(), 2);
                }
                fetched += 1;
            }
        }));
    }
    let mut by_rendition: HashMap<String, Vec<u64>> = HashMap::new();
    for ev in &events {
        match ev {
            BusEvent::SegmentReady {
                rendition,
                media_sequence,
                stream,
                origin_id,
                ..
            } => {
                assert_eq!((stream.as_str(), origin_id.as_str()), ("bus", "origin-1"));
                by_rendition
                    .entry(rendition.clone())
                    .or_default()
                    .push(*media_sequence);
            }
            other => panic!("topic filter let through {other:?}"),
        }
    }
    assert_eq!(by_rendition.len(), 3, "{by_rendition:?}");
    for (r, seqs) in &by_rendition {
        assert!(seqs.len() >= 4, "{r}: {seqs:?}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{r}: not in order: {seqs:?}"
        );
    }
    let last_before = by_rendition["360p"].last().copied().unwrap();

    // Restart the origin on the same ports: the subscriber resumes by itself, and the media
    // sequence continues from what the previous process wrote.
    z.restart_same_ports("origin");
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !after
            .iter()
            .any(|e| matches!(e, BusEvent::SegmentReady { rendition, .. } if rendition == "360p"))
    {
        after.extend(collect(&mut rx, &rt, Duration::from_millis(500), |_| {}));
    }
    let seqs: Vec<u64> = after
        .iter()
        .filter_map(|e| match e {
            BusEvent::SegmentReady {
                rendition,
                media_sequence,
                ..
            } if rendition == "360p" => Some(*media_sequence),
            _ => None,
        })
        .collect();
    assert!(
        !seqs.is_empty(),
        "no announcements after the origin restarted; log:\n{}",
        z.log()
    );
    assert!(
        seqs[0] > last_before,
        "media sequence restarted: {seqs:?} after {last_before}"
    );
    let first_after = after.iter().find_map(|e| match e {
        BusEvent::SegmentReady {
            rendition,
            discontinuity,
            ..
        } if rendition == "360p" => Some(*discontinuity),
        _ => None,
    });
    let _ = first_after; // may be mid-stream if the subscriber reconnected late
    assert_eq!(sub.stats().malformed, 0);
    shutdown.cancel();
}

#[test]
fn two_origins_reach_one_subscriber_through_the_bus_proxy() {
    let (front, back) = (free_port(), free_port());
    let mut proxy = std::process::Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args([
            "bus",
            "proxy",
            "--frontend",
            &format!("tcp://127.0.0.1:{front}"),
            "--backend",
            &format!("tcp://127.0.0.1:{back}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cfg = |id: &str, stream: &str| {
        format!(
            "{TEST_LADDER}\n[origin]\nid = \"{id}\"\n[rtmp]\nenabled = false\n[bus]\npublish_connect = true\npublish_endpoint = \"tcp://127.0.0.1:{front}\"\n{}",
            pattern(stream, 320, 180)
        )
    };
    let _a = Zoomate::start("origin", &cfg("origin-a", "sa"));
    let _b = Zoomate::start("origin", &cfg("origin-b", "sb"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = zoomate::Shutdown::new();
    let (_sub, mut rx) = rt.block_on(async {
        BusSubscriber::spawn(
            vec![format!("tcp://127.0.0.1:{back}")],
            vec![],
            1024,
            shutdown.clone(),
        )
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline
        && !(seen.get("origin-a").copied().unwrap_or(0) >= 2
            && seen.get("origin-b").copied().unwrap_or(0) >= 2)
    {
        for ev in collect(&mut rx, &rt, Duration::from_millis(500), |_| {}) {
            if let BusEvent::SegmentReady { origin_id, .. }
            | BusEvent::OriginHeartbeat { origin_id, .. } = ev
            {
                *seen.entry(origin_id).or_default() += 1;
            }
        }
    }
    let _ = proxy.kill();
    shutdown.cancel();
    assert!(
        seen.get("origin-a").copied().unwrap_or(0) >= 2
            && seen.get("origin-b").copied().unwrap_or(0) >= 2,
        "{seen:?}"
    );
}

#[test]
fn a_libzmq_subscriber_decodes_zoomate_messages_with_the_schema() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "test peer missing: run scripts/setup-test-venv (make test does)"
    );
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n{}",
            pattern("py", 320, 180)
        ),
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bus_interop_sub.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args([z.bus.as_deref().unwrap(), "", "6"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python subscriber failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| l["version"] == 1));
    let hb = lines
        .iter()
        .find(|l| l["kind"] == "originHeartbeat")
        .expect("a heartbeat within 6 messages");
    assert_eq!(hb["originId"], "origin-1");
    assert_eq!(hb["httpBaseUrl"], format!("http://{}", z.origin.unwrap()));
    let seg = lines
        .iter()
        .find(|l| l["kind"] == "segmentReady")
        .or_else(|| None);
    if let Some(seg) = seg {
        assert_eq!(seg["stream"], "py");
        assert!(seg["uri"].as_str().unwrap().starts_with("/live/py/180p/"));
        assert!(seg["topic"].as_str().unwrap().starts_with("seg/py/180p"));
        let size: u64 = seg["byteSize"]
            .as_str()
            .map(|s| s.parse().unwrap())
            .or(seg["byteSize"].as_u64())
            .unwrap();
        assert_eq!(
            get(z.origin.unwrap(), seg["uri"].as_str().unwrap())
                .body
                .len() as u64,
            size
        );
    }
}

#[test]
fn bus_tail_prints_json_lines() {
    let z = Zoomate::start(
        "origin",
        "[rtmp]\nenabled = false\n[bus]\nheartbeat_interval_ms = 200\n",
    );
    let mut tail = std::process::Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args([
            "bus",
            "tail",
            "--connect",
            z.bus.as_deref().unwrap(),
            "--topic",
            "hb/",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tail.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = tail.kill();
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(v["kind"], "origin_heartbeat");
    assert_eq!(v["topic"], "hb/origin-1");
    assert_eq!(v["interval_ms"], 200);
}

/// A `zoomate origin` with test-pattern stream `stream`, and a subscriber to its bus that has
/// seen segments announced (everything received so far drained).
struct Live {
    z: Zoomate,
    rt: tokio::runtime::Runtime,
    rx: tokio::sync::mpsc::Receiver<BusEvent>,
    shutdown: zoomate::Shutdown,
    _sub: BusSubscriber,
}

fn live_origin_with_subscriber(stream: &str) -> Live {
    let z = Zoomate::start(
        "origin",
        &format!(
            "{TEST_LADDER}\n[rtmp]\nenabled = false\n{}",
            pattern(stream, 320, 180)
        ),
    );
    let bus = z.bus.clone().expect("bus endpoint");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = zoomate::Shutdown::new();
    let (sub, mut rx) =
        rt.block_on(async { BusSubscriber::spawn(vec![bus], vec![], 1024, shutdown.clone()) });
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut live = false;
    while !live && Instant::now() < deadline {
        live = collect(&mut rx, &rt, Duration::from_millis(500), |_| {})
            .iter()
            .any(|e| matches!(e, BusEvent::SegmentReady { .. }));
    }
    assert!(live, "no segment announced; log:\n{}", z.log());
    while rx.try_recv().is_ok() {}
    Live {
        z,
        rt,
        rx,
        shutdown,
        _sub: sub,
    }
}

/// Issue 11: on SIGTERM the sessions announce their last segments and `StreamEnded` while the
/// bus publisher is still open (it stops only after the sessions drained).
#[test]
fn a_subscriber_hears_the_final_segments_and_stream_ended_after_sigterm() {
    let Live {
        mut z,
        rt,
        mut rx,
        shutdown,
        _sub: _subscriber,
    } = live_origin_with_subscriber("bye");
    let status = z.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    // Everything the process sent is already in the subscriber's channel.
    let after = collect(&mut rx, &rt, Duration::from_secs(3), |_| {});
    let ended = after
        .iter()
        .position(|e| matches!(e, BusEvent::StreamEnded { stream, .. } if stream == "bye"));
    assert!(
        ended.is_some(),
        "no StreamEnded after SIGTERM: {after:?}; log:\n{}",
        z.log()
    );
    assert!(
        after[..ended.unwrap_or(0)]
            .iter()
            .any(|e| matches!(e, BusEvent::SegmentReady { .. })),
        "no final SegmentReady before StreamEnded: {after:?}"
    );
    shutdown.cancel();
}

/// Status of a GET, or 0 when the connection itself failed (refused, reset).
fn try_get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    match agent.get(&format!("http://{addr}{path}")).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(_) => 0,
    }
}

#[test]
fn segments_announced_during_shutdown_can_still_be_fetched() {
    let Live {
        mut z,
        rt,
        mut rx,
        shutdown,
        _sub: _subscriber,
    } = live_origin_with_subscriber("last");
    let origin = z.origin.expect("origin address");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &z.child.id().to_string()])
        .status();
    // Each segment announced while the origin drains is fetched the moment it is announced,
    // as an edge's prefetch would: the origin must still serve it (HTTP drains last).
    let mut fetched = Vec::new();
    let mut ended = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ended && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match rt.block_on(async { tokio::time::timeout(left, rx.recv()).await }) {
            Ok(Some(BusEvent::SegmentReady { uri, .. })) => {
                fetched.push((uri.clone(), try_get_status(origin, &uri)));
            }
            Ok(Some(BusEvent::StreamEnded { .. })) => ended = true,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(ended, "no StreamEnded after SIGTERM; log:\n{}", z.log());
    assert!(!fetched.is_empty(), "no segment announced during shutdown");
    assert!(
        fetched.iter().all(|(_, status)| *status == 200),
        "announced during shutdown but not served: {fetched:?}"
    );
    // One signal only (a second one exits at once): wait for the drain to finish.
    let status = wait_for(
        Duration::from_secs(20),
        "zoomate to exit after SIGTERM",
        || z.child.try_wait().ok().flatten(),
    );
    assert!(status.success(), "{status:?}");
    shutdown.cancel();
}
