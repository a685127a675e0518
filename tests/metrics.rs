//! `/metrics` of the origin and the edge, read by the official Python `prometheus_client`
//! parser: every status code is counted (405 and 416 were dropped by a fixed table once).
//! Label escaping is the crate's, checked by `edge::metrics`' unit tests: origin ids that would
//! need it are refused at config time and on the bus.
//!
//! While a stream runs, the per-segment latency histograms (encode → announce at the origin,
//! announce → cached and first byte at the edge) and an RTMP publisher's byte count move
//! between two scrapes, every metric the Grafana dashboard queries is exported, and every family
//! follows Prometheus naming (`zoomate_` prefix, snake case, `_total` counters, histograms
//! in base units).
//!
//! The parser comes from `scripts/setup-test-venv` (`make test` runs it).

mod common;
use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    if not family.samples:
        # A family with no series yet (a labelled counter nothing has counted): name only.
        out.append({"family": family.name, "type": family.type, "name": "",
                    "labels": {}, "value": 0})
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

struct Sample {
    family: String,
    family_type: String,
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses a whole `/metrics` body with the official parser (which raises on anything invalid).
fn parse_with_prometheus_client(body: &str) -> Vec<Sample> {
    let mut child = Command::new(venv_python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write body");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "prometheus_client rejected the body: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap_or_default().to_string(),
            family_type: s["type"].as_str().unwrap_or_default().to_string(),
            name: s["name"].as_str().unwrap_or_default().to_string(),
            labels: s["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn post(addr: std::net::SocketAddr, path: &str) -> u16 {
    match ureq::post(&format!("http://{addr}{path}")).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("POST {path}: {e}"),
    }
}

fn scrape(addr: std::net::SocketAddr) -> Vec<Sample> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or_default().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse_with_prometheus_client(&r.text())
}

#[test]
fn every_status_is_counted_in_text_the_official_parser_reads() {
    // A VOD segment written straight into the origin's store: no transcoding needed.
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("store/vod/clip/180p");
    std::fs::create_dir_all(&seg_dir).unwrap();
    std::fs::write(seg_dir.join("seg0.ts"), vec![0x47u8; 1880]).unwrap();
    let o = Zoomate::start_in(
        dir,
        "origin",
        "[rtmp]\nenabled = false\n[bus]\nenabled = false\n",
    );
    let origin = o.origin.unwrap();
    let e = Zoomate::start(
        "edge",
        &format!(
            "[edge]\norigins = [\"http://{origin}\"]\nhealth_check_interval_ms = 300\norigin_timeout_ms = 1000\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n"
        ),
    );
    let edge = e.edge.unwrap();
    let seg = "/vod/clip/180p/seg0.ts";
    for addr in [origin, edge] {
        assert_eq!(post(addr, seg), 405);
        assert_eq!(get(addr, seg).status, 200);
        assert_eq!(get_with(addr, seg, &[("Range", "bytes=5000-")]).status, 416);
    }

    let o_samples = scrape(origin);
    for (kind, status) in [("other", "405"), ("segment", "416"), ("segment", "200")] {
        let s = find(
            &o_samples,
            "zoomate_origin_http_requests_total",
            &[("kind", kind), ("status", status)],
        )
        .unwrap_or_else(|| panic!("origin: no {kind}/{status} sample"));
        // The edge's fetch is a second 200 at the origin.
        assert!(
            s.family_type == "counter" && s.value >= 1.0,
            "{kind}/{status}"
        );
    }
    assert!(find(&o_samples, "zoomate_origin_segment_requests_total", &[]).is_some());

    let e_samples = scrape(edge);
    for (kind, status) in [("other", "405"), ("segment", "416"), ("segment", "200")] {
        let s = find(
            &e_samples,
            "zoomate_edge_requests_total",
            &[("kind", kind), ("status", status)],
        )
        .unwrap_or_else(|| panic!("edge: no {kind}/{status} sample"));
        assert_eq!((s.family_type.as_str(), s.value), ("counter", 1.0));
    }
    for name in [
        "zoomate_edge_cache_hits_total",
        "zoomate_edge_cache_misses_total",
        "zoomate_edge_cache_bytes",
        "zoomate_edge_origin_fetches_total",
        "zoomate_edge_coalesced_waiters_total",
        "zoomate_edge_origins_rejected_total",
    ] {
        assert!(find(&e_samples, name, &[]).is_some(), "edge: no {name}");
    }
    assert!(
        find(
            &e_samples,
            "zoomate_edge_origin_up",
            &[("origin", &format!("http://{origin}"))]
        )
        .is_some()
    );
}

/// A small CMAF + LL-HLS ladder on the built-in test pattern: segments and parts every second.
const LIVE: &str = r#"
[ladder]
segment_duration_ms = 1000
[[ladder.renditions]]
name = "180p"
width = 320
height = 180
video_bitrate_kbps = 200
[hls]
part_duration_ms = 500
[[streams]]
name = "demo"
source = "test-pattern"
width = 320
height = 180
"#;

/// `_count` of histogram `name` for `kind`, 0 when the series is not there yet.
fn histogram_count(samples: &[Sample], name: &str, kind: &str) -> f64 {
    find(samples, &format!("{name}_count"), &[("kind", kind)]).map_or(0.0, |s| s.value)
}

/// Prometheus naming: snake case under `zoomate_`, counters end in `_total`, histograms are in
/// base units, no gauge pretends to be a counter.
fn assert_naming(samples: &[Sample], role: &str) {
    for s in samples {
        let f = &s.family;
        assert!(
            f.starts_with("zoomate_")
                && f.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{role}: family {f} is not snake case under zoomate_"
        );
        match s.family_type.as_str() {
            "counter" => assert!(
                s.name.is_empty() || s.name == format!("{f}_total"),
                "{role}: counter sample {} is not {f}_total",
                s.name
            ),
            "histogram" => assert!(
                f.ends_with("_seconds") || f.ends_with("_bytes"),
                "{role}: histogram {f} is not in base units (_seconds, _bytes)"
            ),
            "gauge" => assert!(
                !f.ends_with("_total"),
                "{role}: gauge {f} named like a counter"
            ),
            other => panic!("{role}: family {f} has type {other}"),
        }
    }
}

#[test]
fn latency_histograms_move_while_a_stream_runs_and_names_follow_prometheus_conventions() {
    let z = Zoomate::start("run", LIVE);
    let (origin, edge) = (z.origin.unwrap(), z.edge.unwrap());
    let playlist = "/live/demo/180p/index.m3u8";
    // An RTMP publisher too, for its bitrate.
    let mut publisher = ffmpeg_publish(&z.rtmp_url("cam"), "320x180", 10, 30);
    wait_for(
        Duration::from_secs(30),
        "the demo playlist at the edge",
        || (get(edge, playlist).status == 200).then_some(()),
    );
    let (first_o, first_e) = (scrape(origin), scrape(edge));
    assert_naming(&first_o, "origin");
    assert_naming(&first_e, "edge");
    // (origin side?, histogram, kind): each must count more samples at the second scrape.
    const MOVING: [(bool, &str, &str); 6] = [
        (true, "zoomate_origin_encode_to_announce_seconds", "segment"),
        (true, "zoomate_origin_encode_to_announce_seconds", "part"),
        (false, "zoomate_edge_announce_to_cached_seconds", "segment"),
        (false, "zoomate_edge_announce_to_cached_seconds", "part"),
        (false, "zoomate_edge_first_byte_seconds", "playlist"),
        (false, "zoomate_edge_first_byte_seconds", "segment"),
    ];
    let received = |o: &[Sample]| {
        find(
            o,
            "zoomate_rtmp_publisher_received_bytes_total",
            &[("stream", "cam")],
        )
        .map_or(0.0, |s| s.value)
    };
    let moved = |o: &[Sample], e: &[Sample]| {
        MOVING.iter().all(|&(at_origin, name, kind)| {
            let (now, then) = if at_origin {
                (o, &first_o[..])
            } else {
                (e, &first_e[..])
            };
            histogram_count(now, name, kind) > histogram_count(then, name, kind)
        }) && received(o) > received(&first_o)
    };
    let (second_o, second_e) = wait_for(
        Duration::from_secs(20),
        "every latency histogram to count more samples",
        || {
            // A viewer: the playlist, its newest segment, and a blocking reload for the next
            // segment but one's first part at the edge and at the origin (held, then woken).
            let text = get(edge, playlist).text();
            if let Some(seg) = text
                .lines()
                .rev()
                .find(|l| !l.starts_with('#') && !l.is_empty())
            {
                get(edge, &format!("/live/demo/180p/{seg}"));
            }
            for addr in [edge, origin] {
                let v = parse_media_playlist(&get(addr, playlist).text());
                let next = v.media_sequence + v.segments.len() as u64 + 1;
                get(addr, &format!("{playlist}?_HLS_msn={next}&_HLS_part=0"));
            }
            let (o, e) = (scrape(origin), scrape(edge));
            moved(&o, &e).then_some((o, e))
        },
    );
    assert_naming(&second_o, "origin");
    assert_naming(&second_e, "edge");
    // Buckets are cumulative up to +Inf = _count.
    let inf = find(
        &second_e,
        "zoomate_edge_first_byte_seconds_bucket",
        &[("kind", "playlist"), ("le", "+Inf")],
    )
    .expect("+Inf bucket");
    assert_eq!(
        inf.value,
        histogram_count(&second_e, "zoomate_edge_first_byte_seconds", "playlist")
    );
    // Recorded, not asserted (timings): the mean of each histogram so far.
    for &(at_origin, name, kind) in &MOVING {
        let samples = if at_origin { &second_o } else { &second_e };
        let sum = find(samples, &format!("{name}_sum"), &[("kind", kind)]).map_or(0.0, |s| s.value);
        let n = histogram_count(samples, name, kind);
        eprintln!(
            "{name}{{kind={kind}}}: {n} samples, mean {:.2} ms",
            sum / n * 1000.0
        );
    }
    assert_dashboard_queries_exported_metrics(&[&second_o, &second_e]);
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// `assets/grafana/zoomate.json` is a dashboard (a Prometheus datasource variable, panels with
/// queries) and every metric a query names is one a running zoomate exports, with a suffix its
/// type has (`_bucket` of a histogram, `_total` of a counter).
fn assert_dashboard_queries_exported_metrics(scrapes: &[&[Sample]]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/grafana/zoomate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let families: HashMap<String, String> = scrapes
        .iter()
        .flat_map(|s| s.iter())
        .map(|s| (s.family.clone(), s.family_type.clone()))
        .collect();
    let exported = |name: &str| {
        families.iter().any(|(f, t)| {
            let suffixes: &[&str] = match t.as_str() {
                "histogram" => &["_bucket", "_sum", "_count"],
                "counter" => &["_total"],
                _ => &[""],
            };
            suffixes.iter().any(|s| name == format!("{f}{s}"))
        })
    };
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|t| t.starts_with("zoomate_"))
            {
                queried += 1;
                assert!(
                    exported(name),
                    "panel {:?} queries {name}, which zoomate does not export",
                    panel["title"]
                );
            }
        }
    }
    assert!(queried >= 20, "the dashboard queries {queried} metrics");
}
