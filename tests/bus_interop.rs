//! Interoperability with a bus peer that is not zoomate's code: pyzmq (libzmq) + pycapnp,
//! loading the same `schema/zoomate_bus.capnp` (`scripts/bus_interop.py`), in both directions.
//! The venv comes from `scripts/setup-test-venv` (`make test` runs it); without it these tests
//! fail with a message saying so.

use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use zoomate::Shutdown;
use zoomate::bus::publisher::BusPublisher;
use zoomate::bus::subscriber::BusSubscriber;
use zoomate::bus::{BusEvent, RenditionInfo};
use zoomate::config::BusConfig;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "test peer missing: {} does not exist; run scripts/setup-test-venv (make test does)",
        python.display()
    );
    let ok = Command::new(&python)
        .args(["-c", "import zmq, capnp"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "pyzmq/pycapnp not importable from {}; run scripts/setup-test-venv",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bus_interop.py")
}

fn every_kind() -> Vec<BusEvent> {
    vec![
        BusEvent::SegmentReady {
            stream: "demo".into(),
            rendition: "720p".into(),
            media_sequence: 9_007_199_254_740_993, // > 2^53: must survive as an integer
            duration_ms: 2002,
            uri: "/live/demo/720p/42.ts".into(),
            byte_size: 694_000,
            program_date_time_ms: 1_764_019_800_123,
            discontinuity: true,
            origin_id: "origin-1".into(),
        },
        BusEvent::PlaylistUpdated {
            stream: "demo".into(),
            rendition: "720p".into(),
            media_sequence: 42,
            uri: "/live/demo/720p/index.m3u8".into(),
        },
        BusEvent::StreamStarted {
            stream: "demo".into(),
            origin_id: "origin-1".into(),
            renditions: vec![RenditionInfo {
                name: "720p".into(),
                bandwidth_bps: 3_000_000,
                width: 1280,
                height: 720,
                codecs: "avc1.64001f,mp4a.40.2".into(),
            }],
        },
        BusEvent::StreamEnded {
            stream: "demo".into(),
            origin_id: "origin-1".into(),
        },
        BusEvent::OriginHeartbeat {
            origin_id: "origin-1".into(),
            http_base_url: "http://127.0.0.1:8081".into(),
            streams: vec!["demo".into(), "café".into()],
            load_streams: 2,
            load_encoder_speed: 1.25,
            interval_ms: 1000,
        },
    ]
}

/// Runs the Python subscriber against a zoomate publisher that repeats `events` in rotation
/// (PUB/SUB loses what precedes the subscription) until Python has printed `count` messages.
async fn python_receives(events: Vec<BusEvent>, prefix: &str, count: usize) -> Vec<Value> {
    let python = python();
    let shutdown = Shutdown::new();
    let config = BusConfig {
        publish_endpoint: "tcp://127.0.0.1:0".into(),
        ..BusConfig::default()
    };
    let publisher = BusPublisher::start(&config, shutdown.clone())
        .await
        .unwrap();
    let child = tokio::process::Command::new(python)
        .arg(script())
        .args([
            "sub",
            &publisher.local_endpoint(),
            prefix,
            &count.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python subscriber");
    let output = child.wait_with_output();
    tokio::pin!(output);
    let mut i = 0;
    let output = loop {
        tokio::select! {
            out = &mut output => break out.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                publisher.publish(events[i % events.len()].clone());
                i += 1;
            }
        }
    };
    shutdown.cancel();
    assert!(
        output.status.success(),
        "Python subscriber failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libzmq_pycapnp_subscriber_decodes_every_kind() {
    // Five consecutive messages of a five-kind rotation: each kind exactly once.
    let lines = python_receives(every_kind(), "", 5).await;
    assert_eq!(lines.len(), 5);
    let by_kind = |k: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in {lines:?}"))
    };
    assert!(lines.iter().all(|l| l["version"] == 1), "{lines:?}");

    let seg = by_kind("segmentReady");
    assert_eq!(seg["topic"], "seg/demo/720p");
    assert_eq!(
        (&seg["stream"], &seg["rendition"], &seg["uri"]),
        (
            &"demo".into(),
            &"720p".into(),
            &"/live/demo/720p/42.ts".into()
        )
    );
    assert_eq!(seg["mediaSequence"].as_u64(), Some(9_007_199_254_740_993));
    assert_eq!(
        (seg["durationMs"].as_u64(), seg["byteSize"].as_u64()),
        (Some(2002), Some(694_000))
    );
    assert_eq!(seg["programDateTimeMs"].as_i64(), Some(1_764_019_800_123));
    assert_eq!(
        (&seg["discontinuity"], &seg["originId"]),
        (&true.into(), &"origin-1".into())
    );

    let pl = by_kind("playlistUpdated");
    assert_eq!(pl["topic"], "pl/demo/720p");
    assert_eq!(
        (pl["mediaSequence"].as_u64(), &pl["uri"]),
        (Some(42), &"/live/demo/720p/index.m3u8".into())
    );

    let started = by_kind("streamStarted");
    assert_eq!(started["topic"], "stream/demo");
    assert_eq!(
        started["renditions"],
        serde_json::json!([{"name": "720p", "bandwidthBps": 3_000_000, "width": 1280, "height": 720, "codecs": "avc1.64001f,mp4a.40.2"}])
    );

    let ended = by_kind("streamEnded");
    assert_eq!(
        (&ended["topic"], &ended["stream"], &ended["originId"]),
        (&"stream/demo".into(), &"demo".into(), &"origin-1".into())
    );

    let hb = by_kind("originHeartbeat");
    assert_eq!(hb["topic"], "hb/origin-1");
    assert_eq!(hb["httpBaseUrl"], "http://127.0.0.1:8081");
    assert_eq!(hb["streams"], serde_json::json!(["demo", "café"]));
    assert_eq!(
        (
            hb["loadStreams"].as_u64(),
            hb["loadEncoderSpeed"].as_f64(),
            hb["intervalMs"].as_u64()
        ),
        (Some(2), Some(1.25), Some(1000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libzmq_subscriber_filters_by_zoomate_topics() {
    let lines = python_receives(every_kind(), "hb/", 3).await;
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] == "originHeartbeat" && l["topic"] == "hb/origin-1"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zoomate_subscriber_decodes_what_pycapnp_encodes() {
    let python = python();
    let mut child = Command::new(python)
        .arg(script())
        .args(["pub", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python publisher");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut endpoint = String::new();
    stdout.read_line(&mut endpoint).unwrap();
    let endpoint = endpoint.trim().to_string();
    assert!(
        endpoint.starts_with("tcp://127.0.0.1:"),
        "Python publisher printed {endpoint:?}"
    );

    let shutdown = Shutdown::new();
    let (sub, mut rx) = BusSubscriber::spawn(vec![endpoint], vec![], 64, shutdown.clone());
    let mut seen = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.len() < 2 {
            let ev = rx.recv().await.expect("subscriber channel closed");
            if !seen.contains(&ev) {
                seen.push(ev);
            }
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    shutdown.cancel();
    assert!(
        result.is_ok(),
        "only {seen:?} from the Python publisher; stats {:?}",
        sub.stats()
    );
    assert!(seen.contains(&BusEvent::StreamStarted {
        stream: "py".into(),
        origin_id: "python-origin".into(),
        renditions: vec![RenditionInfo {
            name: "480p".into(),
            bandwidth_bps: 1_400_000,
            width: 854,
            height: 480,
            codecs: "avc1.4d401f,mp4a.40.2".into()
        }],
    }));
    assert!(seen.contains(&BusEvent::SegmentReady {
        stream: "py".into(),
        rendition: "480p".into(),
        media_sequence: 7,
        duration_ms: 2002,
        uri: "/live/py/480p/7.ts".into(),
        byte_size: 123_456,
        program_date_time_ms: 1_764_019_800_000,
        discontinuity: true,
        origin_id: "python-origin".into(),
    }));
    assert_eq!(sub.stats().malformed, 0);
}
