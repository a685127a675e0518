//! Issue #12: the edge believes nothing a bus peer says without checking it. A rogue publisher
//! (pyzmq + pycapnp, `scripts/rogue_bus.py`) the edge is subscribed to forges every kind of
//! announcement the issue lists, while a real origin runs a live stream: viewers must get the
//! same bytes as from the origin, the attacker's HTTP server must see no request, no forged
//! origin may join the origin set, and every forgery must be counted by reason.

mod common;
use common::*;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ONE_RENDITION: &str = "[ladder]\nsegment_duration_ms = 1000\nformat = \"ts\"\n[[ladder.renditions]]\nname = \"180p\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 200\n";

/// The rogue peer, killed on drop.
struct Rogue {
    child: Child,
    bus: String,
    http_port: u16,
}

impl Drop for Rogue {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rogue(stream: &str, rendition: &str, real_id: &str, real_url: &str) -> Rogue {
    let mut child = Command::new(venv_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/rogue_bus.py"))
        .args([stream, rendition, real_id, real_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rogue_bus.py");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = |prefix: &str| -> String {
        let line = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("rogue_bus.py printed no `{prefix}` line"));
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("unexpected line from rogue_bus.py: {line}"))
            .to_string()
    };
    let bus = next("bus ");
    let http_port = next("http ").parse().expect("http port");
    Rogue {
        child,
        bus,
        http_port,
    }
}

/// Requests the attacker's server has seen.
fn attacker_hits(rogue: &Rogue) -> u64 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], rogue.http_port));
    get(addr, "/count").text().trim().parse().expect("count")
}

fn metrics(addr: std::net::SocketAddr) -> String {
    get(addr, "/metrics").text()
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rejected(text: &str, reason: &str) -> u64 {
    sample(
        text,
        &format!("zoomate_edge_bus_rejected_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn forged_announcements_change_nothing_viewers_get() {
    let origin = Zoomate::start(
        "origin",
        &format!(
            "{ONE_RENDITION}\n[origin]\nid = \"origin-t\"\n[rtmp]\nenabled = false\n[bus]\nheartbeat_interval_ms = 300\n[[streams]]\nname = \"live\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\n"
        ),
    );
    let origin_addr = origin.origin.expect("origin address");
    let origin_url = format!("http://{origin_addr}");
    let bad = rogue("live", "180p", "origin-t", &origin_url);
    let edge = Zoomate::start(
        "edge",
        &format!(
            "[edge]\norigins = [\"{origin_url}\"]\nbus_connect = [\"{}\", \"{}\"]\nhealth_check_interval_ms = 300\norigin_timeout_ms = 1000\n[bus]\nenabled = false\n[rtmp]\nenabled = false\n",
            origin.bus.as_deref().expect("origin bus"),
            bad.bus
        ),
    );
    let edge_addr = edge.edge.expect("edge address");

    // Every kind of forgery arrives and is refused, each for its own reason.
    let text = wait_for(
        Duration::from_secs(30),
        "every forgery counted by reason",
        || {
            let m = metrics(edge_addr);
            [
                "not_allowed",
                "base_url",
                "identity",
                "unknown_origin",
                "topic",
            ]
            .iter()
            .all(|r| rejected(&m, r) > 0)
            .then_some(m)
        },
    );
    assert!(
        rejected(&text, "not_allowed") >= 200,
        "forged origins refused: {text}"
    );

    // The real stream plays through the edge, and its playlist is the origin's.
    let playlist = wait_for(Duration::from_secs(40), "playlist through the edge", || {
        let r = get(edge_addr, "/live/live/180p/index.m3u8");
        (r.status == 200)
            .then(|| parse_media_playlist(&r.text()))
            .filter(|v| v.segments.len() >= 2)
    });
    for (_, uri, _) in &playlist.segments {
        let via_edge = get(edge_addr, &format!("/live/live/180p/{uri}"));
        let direct = get(origin_addr, &format!("/live/live/180p/{uri}"));
        assert_eq!(via_edge.status, 200, "{uri} through the edge");
        assert_eq!(
            via_edge.body, direct.body,
            "{uri}: edge bytes differ from the origin's"
        );
    }
    // Playlists are still cached (a forged sequence of 2^64-1 must not turn caching off):
    // repeated requests within the TTL are hits.
    let hits_before = sample(&metrics(edge_addr), "zoomate_edge_cache_hits_total");
    for _ in 0..12 {
        assert_eq!(get(edge_addr, "/live/live/180p/index.m3u8").status, 200);
    }
    let hits_after = sample(&metrics(edge_addr), "zoomate_edge_cache_hits_total");
    assert!(
        hits_after - hits_before >= 6,
        "playlist caching degraded: {} hits of 12",
        hits_after - hits_before
    );

    // The forged future segment is neither cached nor fetched from anyone but the origin.
    let forged = get(edge_addr, "/live/live/180p/1000000.ts");
    assert_eq!(forged.status, 404, "forged segment name served");

    // One viewer's 404 costs a bounded number of upstream attempts, not one per forged origin.
    let fetches_before = sample(&metrics(edge_addr), "zoomate_edge_origin_fetches_total");
    assert_eq!(get(edge_addr, "/live/live/180p/999999999.ts").status, 404);
    let fetches_after = sample(&metrics(edge_addr), "zoomate_edge_origin_fetches_total");
    assert!(
        fetches_after - fetches_before <= 2,
        "one 404 made {} origin fetches",
        fetches_after - fetches_before
    );

    // Only the real origin is in the origin set, and the attacker saw nothing at all.
    let text = metrics(edge_addr);
    let origins: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("zoomate_edge_origin_up{"))
        .collect();
    assert_eq!(origins.len(), 1, "origin set: {origins:?}");
    assert_eq!(
        attacker_hits(&bad),
        0,
        "the edge sent requests to the attacker's server"
    );
    assert!(
        edge.log().contains("bus announcement not believed"),
        "rejections are logged"
    );
}
