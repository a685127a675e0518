//! Shared helpers for integration tests: run the real `zoomate` binary on a temp config, talk
//! to it with real HTTP, publish with real ffmpeg, inspect with real ffprobe.
#![allow(dead_code)]

pub mod rtmp;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails loudly when a tool the test needs is missing (CI installs everything).
pub fn require_tool(name: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "required tool `{name}` is not installed: run scripts/install-deps (make test does)"
    );
}

/// A small, fast ladder for tests: three renditions, 1 s segments, MPEG-TS (what most tests
/// inspect segment by segment; the default is CMAF with LL-HLS, which tests of those set).
pub const TEST_LADDER: &str = r#"
[ladder]
segment_duration_ms = 1000
frame_rate = 30
format = "ts"
[[ladder.renditions]]
name = "360p"
width = 640
height = 360
video_bitrate_kbps = 600
[[ladder.renditions]]
name = "240p"
width = 426
height = 240
video_bitrate_kbps = 300
[[ladder.renditions]]
name = "180p"
width = 320
height = 180
video_bitrate_kbps = 200
"#;

/// A running zoomate process; killed on drop.
pub struct Zoomate {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub rtmp: Option<SocketAddr>,
    pub origin: Option<SocketAddr>,
    pub edge: Option<SocketAddr>,
    pub bus: Option<String>,
    pub stderr_log: PathBuf,
}

impl Zoomate {
    /// Starts `zoomate {subcommand}` with `extra_toml` appended to a base config that binds
    /// every listener on 127.0.0.1:0 and stores under a temp dir.
    pub fn start(subcommand: &str, extra_toml: &str) -> Zoomate {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, subcommand, extra_toml)
    }

    pub fn start_in(dir: tempfile::TempDir, subcommand: &str, extra_toml: &str) -> Zoomate {
        let config = format!(
            "[store]\ndir = \"{store}\"\n[vod]\ndir = \"{store}/vod\"\n{extra}\n",
            store = dir.path().join("store").display(),
            extra = extra_toml,
        );
        let config = ensure_section_value(&config, "origin", "http_listen = \"127.0.0.1:0\"");
        let config = ensure_section_value(&config, "rtmp", "listen = \"127.0.0.1:0\"");
        let config = ensure_section_value(&config, "edge", "listen = \"127.0.0.1:0\"");
        let config =
            ensure_section_value(&config, "bus", "publish_endpoint = \"tcp://127.0.0.1:0\"");
        let config_path = dir.path().join("zoomate.toml");
        std::fs::write(&config_path, config).expect("write config");
        let stderr_log = dir.path().join("zoomate.log");
        let (child, v, mut reader) = spawn_ready(&config_path, subcommand, &stderr_log);
        let addr = |k: &str| v["addrs"][k].as_str().and_then(|s| s.parse().ok());
        let z = Zoomate {
            rtmp: addr("rtmp"),
            origin: addr("origin_http"),
            edge: addr("edge_http"),
            bus: v["addrs"]["bus"].as_str().map(str::to_string),
            child,
            dir,
            stderr_log,
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        z
    }

    /// Stops (SIGTERM) and starts again on the same config, with the ports it had bound, so
    /// peers see "the same origin restarted". Returns the stopped run's log.
    pub fn restart_same_ports(&mut self, subcommand: &str) -> String {
        let status = self.terminate(Duration::from_secs(20));
        assert!(status.success(), "exit before restart: {status:?}");
        let old_log = self.log();
        let config_path = self.dir.path().join("zoomate.toml");
        let mut config = std::fs::read_to_string(&config_path).expect("config");
        if let Some(a) = self.origin {
            config = config.replacen(
                "http_listen = \"127.0.0.1:0\"",
                &format!("http_listen = \"{a}\""),
                1,
            );
        }
        if let Some(a) = self.rtmp {
            config = config.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"{a}\""), 1);
        }
        if let Some(b) = &self.bus {
            config = config.replacen(
                "publish_endpoint = \"tcp://127.0.0.1:0\"",
                &format!("publish_endpoint = \"{b}\""),
                1,
            );
        }
        std::fs::write(&config_path, config).expect("write config");
        let (child, ready, reader) = spawn_ready(&config_path, subcommand, &self.stderr_log);
        self.child = child;
        let _ = ready;
        std::thread::spawn(move || {
            let mut reader = reader;
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        old_log
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// How many publish sessions of `stream` are over (ended or failed), from the log: a
    /// session logs this after its last segments are listed and its pipeline is torn down.
    pub fn sessions_over(&self, stream: &str) -> usize {
        let (bare, quoted) = (format!("stream={stream}"), format!("stream=\"{stream}\""));
        strip_ansi(&self.log())
            .lines()
            .filter(|l| {
                (l.contains("publish session ended") || l.contains("publish session failed"))
                    && l.split_whitespace().any(|t| t == bare || t == quoted)
            })
            .count()
    }

    /// Waits (bounded) until `n` publish sessions of `stream` are over.
    pub fn wait_sessions_over(&self, stream: &str, n: usize) {
        wait_for(
            Duration::from_secs(30),
            &format!("{n} publish session(s) of {stream} to end"),
            || (self.sessions_over(stream) >= n).then_some(()),
        );
    }

    pub fn rtmp_url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.rtmp.expect("rtmp bound"))
    }

    /// SIGTERM, then wait for exit (bounded); returns the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "zoomate did not exit within {within:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Zoomate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the binary and waits for its ready line.
fn spawn_ready(
    config_path: &Path,
    subcommand: &str,
    stderr_log: &Path,
) -> (
    Child,
    serde_json::Value,
    BufReader<std::process::ChildStdout>,
) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_log)
        .expect("log file");
    // TEST_ZOOMATE_BIN runs the tests against another build (e.g. main's, to measure it).
    let binary = std::env::var_os("TEST_ZOOMATE_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_zoomate").into());
    let mut command = Command::new(binary);
    command.args([
        "--config",
        config_path.to_str().expect("utf8"),
        "--print-ready",
        subcommand,
    ]);
    // Debug logs for every test, unless its config sets `[log]` itself (the override would
    // win over the file, also on a reload).
    let sets_log = std::fs::read_to_string(config_path)
        .map(|c| c.contains("[log]"))
        .unwrap_or(false);
    if !sets_log {
        command.env("ZOOMATE_LOG", "zoomate=debug,info");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn zoomate");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let n = reader.read_line(&mut line).unwrap_or(0);
    assert!(
        n > 0,
        "zoomate exited before ready; log:\n{}",
        std::fs::read_to_string(stderr_log).unwrap_or_default()
    );
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("ready line is JSON");
    (child, v, reader)
}

/// `text` without ANSI colour sequences (`ESC [ … m`), which the text log format writes.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip up to and including the sequence's final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A free TCP port on 127.0.0.1 (bound then released: only for processes that need a port
/// number in their command line).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Adds `line` to `[section]` unless the extra config already sets that key there.
fn ensure_section_value(config: &str, section: &str, line: &str) -> String {
    let key = line.split('=').next().unwrap_or("").trim();
    let header = format!("[{section}]");
    if let Some(pos) = config.find(&header) {
        let body_start = pos + header.len();
        let body_end = config[body_start..]
            .find("\n[")
            .map(|i| body_start + i)
            .unwrap_or(config.len());
        if config[body_start..body_end]
            .lines()
            .any(|l| l.trim_start().starts_with(key))
        {
            return config.to_string();
        }
        let mut s = config.to_string();
        s.insert_str(body_start, &format!("\n{line}"));
        s
    } else {
        format!("{config}\n{header}\n{line}\n")
    }
}

/// A plain HTTP/1.1 response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The repository root (scripts, config, the test venv and browser harness live there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test venv's Python (`scripts/setup-test-venv`); fails loudly when it is missing.
pub fn venv_python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "test peer missing: {} does not exist; run scripts/setup-test-venv (make test does)",
        python.display()
    );
    python
}

/// Runs the browser harness (`scripts/browser/play.mjs`, Chromium) with `player` on `url` for
/// `seconds`, plus `extra` arguments; its JSON report.
pub fn play_in_browser(player: &str, url: &str, seconds: u32, extra: &[&str]) -> serde_json::Value {
    let node = root().join("scripts/browser/node");
    assert!(
        node.exists(),
        "{} missing (run scripts/setup-browser; make test does)",
        node.display()
    );
    let out = Command::new(node)
        .arg(root().join("scripts/browser/play.mjs"))
        .args([
            "--player",
            player,
            "--url",
            url,
            "--seconds",
            &seconds.to_string(),
        ])
        .args(extra)
        .output()
        .expect("run scripts/browser/play.mjs");
    assert!(
        out.status.success(),
        "browser harness failed ({}): {} (run scripts/setup-browser; make test does)",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("harness JSON")
}

/// One request (`method`, extra headers, no body) via a real HTTP client (ureq); any status
/// is an answer.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut req = agent.request(method, &format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect();
    let mut body = Vec::new();
    resp.into_reader()
        .take(64 * 1024 * 1024)
        .read_to_end(&mut body)
        .expect("read body");
    Response {
        status,
        headers,
        body,
    }
}

/// GET with extra headers, via a real HTTP client (ureq).
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers)
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, &[])
}

/// The value of one `/metrics` series (`name{labels}` exactly as exposed), if present.
pub fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    get(addr, "/metrics").text().lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls until `f` returns Some, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts ffmpeg publishing a test pattern + tone over RTMP for `seconds`.
pub fn ffmpeg_publish(url: &str, size: &str, seconds: u32, gop: u32) -> Child {
    ffmpeg_publish_paced(url, size, seconds, gop, true)
}

/// `realtime = false` pushes as fast as ffmpeg can encode (a backlog for the server).
pub fn ffmpeg_publish_paced(
    url: &str,
    size: &str,
    seconds: u32,
    gop: u32,
    realtime: bool,
) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(if realtime { &["-re"][..] } else { &[][..] })
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            &gop.to_string(),
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}

/// ffprobe a file; returns its JSON (`-show_streams -show_format`, plus frames if asked).
pub fn ffprobe(path: &Path, extra: &[&str]) -> serde_json::Value {
    require_tool("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .args(extra)
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// Media playlist essentials parsed by the test (independent of zoomate's own writer).
#[derive(Debug, Default)]
pub struct MediaPlaylistView {
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub segments: Vec<(f64, String, bool)>,
}

pub fn parse_media_playlist(text: &str) -> MediaPlaylistView {
    assert!(text.starts_with("#EXTM3U"), "not a playlist: {text}");
    let mut v = MediaPlaylistView::default();
    let mut pending_duration = None;
    let mut pending_disc = false;
    for line in text.lines() {
        if let Some(x) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            v.target_duration = x.trim().parse().expect("target duration");
        } else if let Some(x) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            v.media_sequence = x.trim().parse().expect("media sequence");
        } else if let Some(x) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            v.discontinuity_sequence = x.trim().parse().expect("disc sequence");
        } else if line == "#EXT-X-DISCONTINUITY" {
            pending_disc = true;
        } else if let Some(x) = line.strip_prefix("#EXTINF:") {
            pending_duration = Some(
                x.split(',')
                    .next()
                    .unwrap_or("")
                    .parse::<f64>()
                    .expect("EXTINF"),
            );
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let d = pending_duration.take().expect("URI without EXTINF");
            v.segments.push((
                d,
                line.trim().to_string(),
                std::mem::take(&mut pending_disc),
            ));
        }
    }
    v
}

/// Attribute map of each EXT-X-STREAM-INF line with its URI.
pub fn parse_master(text: &str) -> Vec<(std::collections::HashMap<String, String>, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let mut map = std::collections::HashMap::new();
            let mut rest = attrs;
            while !rest.is_empty() {
                let (k, after) = rest.split_once('=').expect("attr");
                let (val, next) = if let Some(q) = after.strip_prefix('"') {
                    let end = q.find('"').expect("closing quote");
                    (&q[..end], q[end + 1..].trim_start_matches(','))
                } else {
                    match after.split_once(',') {
                        Some((v, n)) => (v, n),
                        None => (after, ""),
                    }
                };
                map.insert(k.to_string(), val.to_string());
                rest = next;
            }
            let uri = lines
                .next()
                .expect("URI after STREAM-INF")
                .trim()
                .to_string();
            out.push((map, uri));
        }
    }
    out
}

/// A short H.264 (+ AAC) MP4 made with ffmpeg's test sources: the VOD tests' input.
pub fn make_clip(
    dir: &std::path::Path,
    name: &str,
    size: &str,
    seconds: u32,
    audio: bool,
) -> std::path::PathBuf {
    require_tool("ffmpeg");
    let path = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={size}:rate=30"),
    ]);
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=sample_rate=48000", "-c:a", "aac"]);
    }
    let ok = cmd
        .args([
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "250",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    path
}

/// A slowloris attacker: `connections` sockets, each dribbled a request head one byte at a time
/// and never finished, until the server closes it (or the attacker is dropped).
pub struct Slowloris {
    conns: Vec<std::net::TcpStream>,
    started: Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dribbler: Option<std::thread::JoinHandle<()>>,
}

impl Slowloris {
    pub fn start(addr: SocketAddr, connections: usize) -> Slowloris {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let started = Instant::now();
        let conns: Vec<std::net::TcpStream> = (0..connections)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect slow client"))
            .collect();
        let mut writers: Vec<Option<std::net::TcpStream>> = conns
            .iter()
            .map(|c| Some(c.try_clone().expect("clone slow client")))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        let dribbler = std::thread::spawn(move || {
            // A head that never ends: the header value grows one byte per round.
            let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            let mut sent = 0usize;
            while !stop_flag.load(Ordering::Relaxed) && writers.iter().any(Option::is_some) {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                for w in writers.iter_mut() {
                    // A failed write means the server closed this one: stop writing to it.
                    if w.as_mut().is_some_and(|s| s.write_all(&[byte]).is_err()) {
                        *w = None;
                    }
                }
                sent += 1;
                // Pacing, not synchronisation: this is what makes the client slow.
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Slowloris {
            conns,
            started,
            stop,
            dribbler: Some(dribbler),
        }
    }

    /// How many connections the server has neither closed nor answered yet. The server's
    /// close or answer is already in our socket buffer when it happened, so a short peek sees it.
    pub fn open_count(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| {
                c.set_read_timeout(Some(Duration::from_millis(10)))
                    .expect("read timeout");
                matches!(
                    c.peek(&mut [0u8; 1]),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                )
            })
            .count()
    }

    /// Waits until the server has closed every connection (EOF or reset), panicking if one is
    /// still open `within` after the attack began. Returns what each received before the close.
    pub fn wait_closed(&self, within: Duration) -> Vec<Vec<u8>> {
        use std::io::ErrorKind;
        let deadline = self.started + within;
        self.conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                c.set_read_timeout(Some(left)).expect("read timeout");
                let mut buf = Vec::new();
                match c.take(1024 * 1024).read_to_end(&mut buf) {
                    Ok(_) => buf,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                        ) =>
                    {
                        buf
                    }
                    Err(e) => panic!(
                        "slow connection {i} still open {within:?} after the attack began \
                         (the server never cut it off): {e}; received {:?}",
                        String::from_utf8_lossy(&buf)
                    ),
                }
            })
            .collect()
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(d) = self.dribbler.take() {
            let _ = d.join();
        }
    }
}

/// One HTTP/1.1 keep-alive connection spoken by hand: the request target goes out exactly as
/// written (no client normalises it), one request at a time, and the connection stays open.
pub struct RawConn {
    writer: std::net::TcpStream,
    reader: BufReader<std::net::TcpStream>,
}

impl RawConn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<RawConn> {
        let writer = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        writer.set_read_timeout(Some(timeout))?;
        writer.set_write_timeout(Some(timeout))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(RawConn { writer, reader })
    }

    /// `GET target` on this connection; the whole response (Content-Length framed). An error
    /// when the server closed the connection or sent nothing within the timeout.
    pub fn get(&mut self, target: &str) -> std::io::Result<Response> {
        use std::io::Write;
        write!(
            self.writer,
            "GET {target} HTTP/1.1\r\nHost: zoomate\r\n\r\n"
        )?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Whether the server has closed this connection (EOF or reset within `within`).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let _ = self.writer.set_read_timeout(Some(within));
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
        }
    }
}

/// One GET on a fresh connection, exactly as written; the response, or the I/O error.
pub fn raw_get(addr: SocketAddr, target: &str, timeout: Duration) -> std::io::Result<Response> {
    RawConn::connect(addr, timeout)?.get(target)
}

/// A metric's value (the first sample line starting with `name`), 0 when absent.
pub fn metric_value(addr: SocketAddr, name: &str) -> u64 {
    get(addr, "/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}
