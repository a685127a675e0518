//! nginx as the CDN tier: the documented `config/nginx-cdn.conf` (ports and cache directory
//! substituted, nothing else) in a private nginx in front of `zoomate run`. hls.js in
//! low-latency mode plays through it; meanwhile the media playlist nginx serves never lags the
//! edge's by more than one segment; a segment fetched twice is an nginx HIT the second time;
//! LL-HLS directives are the key (another query parameter does not split it); nginx keeps
//! idle upstream connections (keepalive).
//!
//! nginx comes from `scripts/install-deps`, the player from `scripts/setup-browser`.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test pattern, CMAF + LL-HLS with the default 2 s segments, one small rendition.
const LIVE: &str = r#"
[rtmp]
enabled = false
[[ladder.renditions]]
name = "180p"
width = 320
height = 180
video_bitrate_kbps = 200
[hls]
part_duration_ms = 500
[edge.limits]
max_connections_per_address = 1024
[[streams]]
name = "demo"
source = "test-pattern"
width = 320
height = 180
"#;

/// Replaces `from` (which must occur exactly once: the documented file changed otherwise).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "config/nginx-cdn.conf no longer has exactly one `{from}`"
    );
    text.replace(from, to)
}

/// A private nginx (its own prefix, pid, logs, temp and cache directories) running the
/// documented http-context file; stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, edge: SocketAddr) -> Nginx {
        require_tool("nginx");
        let port = free_port();
        let documented = std::fs::read_to_string(root().join("config/nginx-cdn.conf")).unwrap();
        let site = substitute(
            &documented,
            "server 127.0.0.1:8080;",
            &format!("server {edge};"),
        );
        let cache = dir.join("cache");
        let site = substitute(
            &site,
            "/var/cache/nginx/zoomate",
            &cache.display().to_string(),
        );
        let site = substitute(&site, "listen 8000;", &format!("listen 127.0.0.1:{port};"));
        std::fs::write(dir.join("zoomate.conf"), site).unwrap();
        let d = dir.display();
        // What Debian's /etc/nginx/nginx.conf provides around conf.d/*.conf, in the temp dir.
        // `user` is ignored (with a warning) when the test does not run as root.
        let main = format!(
            "user root;\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/zoomate.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let test = Command::new("nginx")
            .arg("-t")
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .args(["-e", &format!("{d}/error.log")])
            .output()
            .expect("nginx -t");
        assert!(
            test.status.success(),
            "nginx rejects config/nginx-cdn.conf: {}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .args(["-e", &format!("{d}/error.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let nginx = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        wait_for(Duration::from_secs(10), "nginx listening", || {
            std::net::TcpStream::connect(nginx.addr()).ok().map(|_| ())
        });
        nginx
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the browser harness (hls.js, low latency); its JSON report.
fn play(url: &str, seconds: u32) -> Value {
    play_in_browser(
        "hls",
        url,
        seconds,
        &["--sample-ms", "1000", "--low-latency"],
    )
}

/// The media sequence number of the last full segment a playlist lists.
fn last_segment(text: &str) -> i64 {
    let v = parse_media_playlist(text);
    v.media_sequence as i64 + v.segments.len() as i64 - 1
}

/// ESTABLISHED IPv4 TCP connections whose remote end is local `port` (the client sides of
/// connections to it), from /proc/net/tcp.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let remote = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[2].ends_with(&remote) && cols[3] == "01"
        })
        .count()
}

#[test]
fn hls_js_plays_through_nginx_with_playlists_at_most_one_segment_behind_and_segments_hit() {
    let z = Zoomate::start("run", LIVE);
    let edge = z.edge.unwrap();
    let nginx = Nginx::start(z.dir.path(), edge);
    let cdn = nginx.addr();
    let playlist = "/live/demo/180p/index.m3u8";
    wait_for(
        Duration::from_secs(30),
        "the demo playlist through nginx",
        || {
            (get(cdn, playlist).status == 200 && get(cdn, "/live/demo/master.m3u8").status == 200)
                .then_some(())
        },
    );

    let url = format!("http://{cdn}/live/demo/master.m3u8");
    let player = std::thread::spawn(move || play(&url, 20));
    // While it plays: nginx's copy first, then the edge's (which can only be as new or newer).
    let (mut polls, mut max_lag) = (0, 0);
    let started = Instant::now();
    while !player.is_finished() && started.elapsed() < Duration::from_secs(60) {
        let through = get(cdn, playlist);
        let direct = get(edge, playlist);
        assert_eq!((through.status, direct.status), (200, 200));
        let lag = last_segment(&direct.text()) - last_segment(&through.text());
        assert!(
            lag <= 1,
            "nginx's playlist is {lag} segments behind the edge's:\n{}\n--- edge:\n{}",
            through.text(),
            direct.text()
        );
        max_lag = max_lag.max(lag);
        polls += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let hls = player.join().expect("player thread");
    assert!(polls >= 20, "polled the playlists {polls} times");
    eprintln!("nginx tier: {polls} polls, nginx at most {max_lag} segment(s) behind the edge");
    assert_eq!(hls["played"], true, "hls.js played through nginx: {hls}");
    assert_eq!(
        hls["fatal"].as_array().map(Vec::len),
        Some(0),
        "{}",
        hls["fatal"]
    );
    assert_eq!(
        hls["llParts"], true,
        "hls.js saw LL-HLS parts through nginx"
    );
    eprintln!(
        "hls.js through nginx: latency p50 {} ms, p90 {} ms, {} stalls",
        hls["latencyP50Ms"], hls["latencyP90Ms"], hls["stalls"]
    );

    // A segment twice: the second answer is nginx's own copy.
    let text = get(cdn, playlist).text();
    let segment = parse_media_playlist(&text)
        .segments
        .last()
        .map(|s| format!("/live/demo/180p/{}", s.1))
        .expect("a segment");
    let first = get(cdn, &segment);
    let second = get(cdn, &segment);
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(
        second.header("x-cache-status"),
        Some("HIT"),
        "second fetch of {segment}: first was {:?}",
        first.header("x-cache-status")
    );
    assert_eq!(first.body, second.body);
    // The operators' API and console stay behind the tier: through nginx every viewer would
    // reach the edge from loopback, where zoomate opens the API without a token.
    assert_eq!(get(cdn, "/api/v1/streams").status, 403);
    assert_eq!(get(cdn, "/console/").status, 403);

    // LL-HLS directives are the key, nothing else of the query: the same part of the
    // playlist asked with a cache-busting parameter is the same entry.
    let end = last_segment(&text);
    let directive = format!("{playlist}?_HLS_msn={end}&_HLS_part=0");
    let a = get(cdn, &directive);
    let b = get(
        cdn,
        &format!("{playlist}?_HLS_part=0&nocache=7&_HLS_msn={end}"),
    );
    assert_eq!((a.status, b.status), (200, 200), "{}", nginx.error_log());
    assert_eq!(b.header("x-cache-status"), Some("HIT"));

    // Keepalive upstream: with no viewer left, nginx still holds idle connections to the edge
    // (without `keepalive` it closes each one after its response). Our own requests above
    // closed theirs.
    let idle = wait_for(
        Duration::from_secs(5),
        "nginx's idle upstream connections",
        || {
            let n = established_to(edge.port());
            (n > 0).then_some(n)
        },
    );
    eprintln!("nginx keeps {idle} idle connection(s) to the edge");
}
