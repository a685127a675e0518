//! The operators' HTTP API and web console against the real binary.
//!
//! - every route of `docs/openapi.yaml` is called on a running `zoomate run` (the `demo` test
//!   pattern and two ffmpeg RTMP publishers) and on a `zoomate origin` with a token; each answer
//!   is validated against the spec by openapi-core (`scripts/check_openapi.py`, from the venv),
//!   which also fails when an operation or a documented status was never exercised;
//! - access: no token → open on a loopback listener, 403 on a listener bound to 0.0.0.0; a
//!   token → 401 without it or with another, on loopback too;
//! - kick really disconnects the ffmpeg publisher; end finishes a stream (its segments listed,
//!   `StreamEnded` on the bus); a configured source ended stays offline;
//! - the console in headless Chromium (`scripts/browser/console.mjs`): lists `demo`, plays it
//!   with hls.js, switches rendition, shows the live latency, plays it with dash.js, without a
//!   console error.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "api-test-token-0123456789";
const CAM1_KEY: &str = "cam1-secret-key-abc";
const CAM2_KEY: &str = "cam2-secret-key-def";

/// A small ladder: two renditions of 1 s segments.
const LADDER: &str = r#"
[ladder]
segment_duration_ms = 1000
frame_rate = 30
format = "ts"
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

/// One HTTP exchange as the spec check reads it.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Calls the API with a real HTTP client.
fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    let r = request(addr, method, path, &headers);
    Answer {
        body: r.text(),
        status: r.status,
        headers: r.headers,
    }
}

/// Every exchange the spec check will validate.
#[derive(Default)]
struct Recorder(Vec<Value>);

impl Recorder {
    fn call(&mut self, addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Answer {
        let a = call(addr, method, path, token);
        let headers: serde_json::Map<String, Value> = a
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.0.push(json!({
            "method": method, "path": path, "status": a.status,
            "content_type": a.header("content-type").unwrap_or(""),
            "headers": headers, "body": a.body,
        }));
        a
    }
}

/// `zoomate bus tail` on `endpoint`: every `stream/…` event and heartbeat it prints, collected.
fn bus_tail(endpoint: &str) -> (Child, Arc<Mutex<Vec<Value>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args(["bus", "tail", "--connect", endpoint])
        .args(["--topic", "stream/", "--topic", "hb/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zoomate bus tail");
    let events = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().expect("stdout");
    let sink = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    (child, events)
}

fn ended_on_bus(events: &Mutex<Vec<Value>>, stream: &str) -> bool {
    events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "stream_ended" && e["stream"] == stream)
}

/// The stream's entry in `GET /api/v1/streams`, if listed.
fn listed(addr: SocketAddr, name: &str) -> Option<Value> {
    let a = call(addr, "GET", "/api/v1/streams", None);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// Listed, live, and every rendition has measured figures (two segments or more).
fn measured(addr: SocketAddr, name: &str) -> Option<Value> {
    let s = listed(addr, name)?;
    let renditions = s["renditions"].as_array()?;
    let ready = s["state"] == "live"
        && renditions.len() >= 2
        && renditions
            .iter()
            .all(|r| r["segments"].as_u64() >= Some(2) && r["encode_speed_ratio"].is_number());
    ready.then_some(s)
}

fn exited_within(child: &mut Child, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn every_documented_route_answers_as_the_spec_says_with_auth_off_and_on() {
    require_tool("ffmpeg");
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup-test-venv (make test does)",
        python.display()
    );
    // A: no token; origin on loopback (API open), edge on 0.0.0.0 (API refused).
    let a = Zoomate::start(
        "run",
        &format!(
            "{LADDER}\n[[streams]]\nname = \"demo\"\nsource = \"test-pattern\"\nwidth = 426\nheight = 240\n\
             [edge]\nlisten = \"0.0.0.0:0\"\n\
             [rtmp.stream_keys]\ncam1 = \"{CAM1_KEY}\"\ncam2 = \"{CAM2_KEY}\"\n"
        ),
    );
    // B: a token, origin only, on loopback: the token is required there too.
    let b = Zoomate::start(
        "origin",
        &format!("{LADDER}\n[rtmp]\nenabled = false\n[api]\ntoken = \"{TOKEN}\"\n"),
    );
    let origin = a.origin.expect("origin bound");
    let edge_port = a.edge.expect("edge bound").port();
    let edge: SocketAddr = ([127, 0, 0, 1], edge_port).into();
    let (mut tail, events) = bus_tail(a.bus.as_deref().expect("bus bound"));
    let mut cam1 = ffmpeg_publish(
        &format!("{}?key={CAM1_KEY}", a.rtmp_url("cam1")),
        "640x360",
        60,
        30,
    );
    let mut cam2 = ffmpeg_publish(
        &format!("{}?key={CAM2_KEY}", a.rtmp_url("cam2")),
        "640x360",
        60,
        30,
    );
    let mut rec = Recorder::default();

    for name in ["demo", "cam1", "cam2"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while measured(origin, name).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} not live and measured in 40 s: {:?}\n{}",
                listed(origin, name),
                strip_ansi(&a.log())
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The heartbeat carries the measured encoder speed as the origin's load.
    wait_for(
        Duration::from_secs(15),
        "a heartbeat with the encoder speed",
        || {
            events.lock().unwrap().iter().find_map(|e| {
                (e["kind"] == "origin_heartbeat" && e["load_encoder_speed"].as_f64() > Some(0.0))
                    .then_some(())
            })
        },
    );
    // A viewer at the edge, and a cache hit: the same playlist twice with one User-Agent.
    for _ in 0..2 {
        let r = get_with(
            edge,
            "/live/demo/240p/index.m3u8",
            &[("User-Agent", "api-test/1")],
        );
        assert_eq!(r.status, 200);
    }

    // Auth off: open on loopback, refused on the 0.0.0.0 listener.
    let streams = rec.call(origin, "GET", "/api/v1/streams", None);
    assert_eq!(streams.status, 200, "{}", streams.body);
    assert_eq!(streams.header("cache-control"), Some("no-store"));
    let refused = rec.call(edge, "GET", "/api/v1/streams", None);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["error"], "forbidden");
    assert_eq!(
        call(edge, "GET", "/api/v1/streams", Some("anything")).status,
        403
    );
    assert_eq!(rec.call(edge, "POST", "/api/v1/reload", None).status, 403);
    // The console's files stay public on that listener.
    assert_eq!(get(edge, "/console/").status, 200);

    let demo = rec.call(origin, "GET", "/api/v1/streams/demo", None).json();
    assert_eq!(
        demo["source"],
        json!({"kind": "test-pattern", "publisher": null})
    );
    assert!(demo["viewers"].as_u64() >= Some(1), "{demo}");
    assert_eq!(demo["urls"]["hls"], "/live/demo/master.m3u8");
    let cam1_info = rec.call(origin, "GET", "/api/v1/streams/cam1", None).json();
    assert_eq!(cam1_info["source"]["kind"], "rtmp");
    let publisher = cam1_info["source"]["publisher"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(publisher.starts_with("127.0.0.1:"), "{cam1_info}");
    for r in cam1_info["renditions"].as_array().unwrap() {
        assert!(r["bitrate_bits_per_second"].as_u64() > Some(0), "{r}");
        assert!(r["encode_speed_ratio"].as_f64() > Some(0.0), "{r}");
        assert!(r["bytes"].as_u64() > Some(0), "{r}");
    }
    let origins = rec.call(origin, "GET", "/api/v1/origins", None).json();
    let list = origins["origins"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{origins}");
    assert_eq!(list[0]["usable"], true);
    assert_eq!(list[0]["base_url"], format!("http://{origin}"));
    // Besides the edge's own view of its load (in_flight), what the origin's heartbeat says.
    assert!(list[0]["load_streams"].as_u64() >= Some(1), "{origins}");
    assert!(
        list[0]["load_encoder_speed"].as_f64() >= Some(0.0),
        "{origins}"
    );
    let cache = rec.call(origin, "GET", "/api/v1/cache", None).json();
    assert!(cache["hits"].as_u64() >= Some(1), "{cache}");
    assert!(cache["hit_ratio"].as_f64() > Some(0.0), "{cache}");
    assert!(
        cache["top_objects"][0]["path"] == "/live/demo/240p/index.m3u8"
            && cache["top_objects"][0]["hits"].as_u64() >= Some(1),
        "{cache}"
    );
    let viewers = rec.call(origin, "GET", "/api/v1/viewers", None).json();
    assert!(
        viewers["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stream"] == "demo" && s["viewers"].as_u64() >= Some(1)),
        "{viewers}"
    );
    let config = rec.call(origin, "GET", "/api/v1/config", None);
    assert!(!config.body.contains(CAM1_KEY) && !config.body.contains(CAM2_KEY));
    assert_eq!(config.json()["rtmp"]["stream_keys"]["cam1"], "<redacted>");
    // The same figures in /metrics, under the names dashboards use.
    let bitrate = "zoomate_rendition_bitrate_bits_per_second{stream=\"cam1\",rendition=\"240p\"}";
    let scrape = get(origin, "/metrics").text();
    assert!(
        metric(origin, bitrate) > Some(0.0),
        "{bitrate} missing: {scrape}"
    );
    assert!(
        metric(
            origin,
            "zoomate_rendition_segments_total{stream=\"demo\",rendition=\"180p\"}"
        ) >= Some(2.0)
    );
    assert!(metric(edge, "zoomate_edge_viewers{stream=\"demo\"}") >= Some(1.0));

    // Errors.
    for (method, path, status) in [
        ("GET", "/api/v1/streams/nope", 404),
        ("POST", "/api/v1/streams/nope/kick", 404),
        ("POST", "/api/v1/streams/nope/end", 404),
        ("POST", "/api/v1/streams/demo/kick", 409),
    ] {
        let r = rec.call(origin, method, path, None);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
    }
    let wrong_method = call(origin, "GET", "/api/v1/streams/demo/kick", None);
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert_eq!(wrong_method.json()["error"], "method_not_allowed");

    // Kick: the ffmpeg publisher's connection is closed; the stream ends as when it leaves.
    let kicked = rec.call(origin, "POST", "/api/v1/streams/cam1/kick", None);
    assert_eq!(kicked.status, 202, "{}", kicked.body);
    assert_eq!(kicked.json()["publisher"], publisher.as_str());
    assert!(
        exited_within(&mut cam1, Duration::from_secs(15)),
        "ffmpeg kept publishing after the kick"
    );
    assert!(
        !cam1.wait().unwrap().success(),
        "ffmpeg saw its connection cut"
    );
    wait_for(
        Duration::from_secs(30),
        "cam1 to end after the kick",
        || listed(origin, "cam1").is_none().then_some(()),
    );
    assert!(strip_ansi(&a.log()).contains("kicked by an operator"));

    // End: EOS, final segments listed, StreamEnded; the publisher is disconnected too.
    let ended = rec.call(origin, "POST", "/api/v1/streams/cam2/end", None);
    assert_eq!(ended.status, 202, "{}", ended.body);
    assert!(
        exited_within(&mut cam2, Duration::from_secs(15)),
        "cam2's ffmpeg still publishing"
    );
    wait_for(Duration::from_secs(30), "cam2 to end", || {
        listed(origin, "cam2").is_none().then_some(())
    });
    for name in ["cam1", "cam2"] {
        wait_for(
            Duration::from_secs(15),
            &format!("StreamEnded for {name}"),
            || ended_on_bus(&events, name).then_some(()),
        );
        let playlist =
            std::fs::read_to_string(a.store().join(format!("live/{name}/240p/index.m3u8")))
                .expect("the ended stream's playlist stays");
        let view = parse_media_playlist(&playlist);
        assert!(view.segments.len() >= 2, "{playlist}");
    }
    // A configured source ended stays offline (not restarted).
    assert_eq!(
        rec.call(origin, "POST", "/api/v1/streams/demo/end", None)
            .status,
        202
    );
    wait_for(Duration::from_secs(30), "demo offline", || {
        let s = listed(origin, "demo")?;
        (s["state"] == "offline").then_some(s)
    });
    let offline = rec.call(origin, "GET", "/api/v1/streams/demo", None).json();
    assert_eq!(offline["started_at"], Value::Null);
    wait_for(Duration::from_secs(15), "StreamEnded for demo", || {
        ended_on_bus(&events, "demo").then_some(())
    });
    let _ = tail.kill();

    // Auth on (B): 401 without the token or with another, even on loopback.
    let bo = b.origin.expect("B origin");
    let missing = rec.call(bo, "GET", "/api/v1/streams", None);
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let wrong = rec.call(
        bo,
        "GET",
        "/api/v1/config",
        Some("api-test-token-0123456780"),
    );
    assert_eq!(wrong.status, 401);
    let ok = rec.call(bo, "GET", "/api/v1/streams", Some(TOKEN));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["streams"], json!([]));
    let config = rec.call(bo, "GET", "/api/v1/config", Some(TOKEN));
    assert!(!config.body.contains(TOKEN), "the token is shown");
    assert_eq!(config.json()["api"]["token"], "<redacted>");
    // Reload (B was started from its config file): unchanged → nothing applied; an invalid
    // file → 422 naming the key and the value, the running config kept; then the new level.
    let reloaded = rec.call(bo, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert_eq!(
        reloaded.json(),
        json!({ "applied": [], "needs_restart": [] })
    );
    let config_path = b.dir.path().join("zoomate.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    // (Keys, not `log.level`: the test harness sets ZOOMATE_LOG, which overrides the file.)
    std::fs::write(
        &config_path,
        format!("{original}\n[rtmp.stream_keys]\ncam9 = \"short\"\n"),
    )
    .unwrap();
    let refused = rec.call(bo, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.json()["error"], "config_refused");
    let message = refused.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("rtmp.stream_keys.cam9"), "{message}");
    assert!(!message.contains("short"), "a key is shown: {message}");
    assert_eq!(
        rec.call(bo, "GET", "/api/v1/streams", Some(TOKEN)).status,
        200
    );
    std::fs::write(
        &config_path,
        format!("{original}\n[rtmp.stream_keys]\ncam9 = \"{CAM1_KEY}\"\n"),
    )
    .unwrap();
    let applied = rec.call(bo, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert_eq!(applied.json()["applied"], json!(["rtmp.stream_keys"]));
    let shown = rec.call(bo, "GET", "/api/v1/config", Some(TOKEN)).json();
    assert_eq!(
        shown["rtmp"]["stream_keys"],
        json!({ "cam9": "<redacted>" }),
        "GET config shows the reloaded keys"
    );
    assert_eq!(rec.call(bo, "POST", "/api/v1/reload", None).status, 401);
    // `zoomate origin` runs no edge.
    let not_served = rec.call(bo, "GET", "/api/v1/cache", Some(TOKEN));
    assert_eq!(
        (not_served.status, not_served.json()["error"].clone()),
        (404, json!("not_served"))
    );

    // Every answer against the spec, and the spec covered.
    let file = a.dir.path().join("exchanges.json");
    std::fs::write(&file, serde_json::to_vec(&rec.0).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(root().join("scripts/check_openapi.py"))
        .arg(root().join("docs/openapi.yaml"))
        .arg(&file)
        .output()
        .expect("run scripts/check_openapi.py");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "spec check failed: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("openapi check: {report}");
}

#[test]
fn the_console_lists_plays_and_switches_demo_in_chromium() {
    let node = root().join("scripts/browser/node");
    assert!(node.exists(), "{} missing", node.display());
    // The default format (CMAF, LL-HLS) so both players have something; a token, so the
    // console's calls must carry the one it is given.
    let z = Zoomate::start(
        "run",
        &format!(
            "[[streams]]\nname = \"demo\"\nsource = \"test-pattern\"\nwidth = 640\nheight = 360\n\
             [rtmp]\nenabled = false\n[api]\ntoken = \"{TOKEN}\"\n\
             [ladder]\nsegment_duration_ms = 1000\n\
             [[ladder.renditions]]\nname = \"360p\"\nwidth = 640\nheight = 360\nvideo_bitrate_kbps = 700\n\
             [[ladder.renditions]]\nname = \"180p\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 200\n"
        ),
    );
    let edge = z.edge.expect("edge bound");
    wait_for(Duration::from_secs(30), "demo's first segments", || {
        let a = call(edge, "GET", "/api/v1/streams/demo", Some(TOKEN));
        (a.status == 200 && a.json()["renditions"][0]["segments"].as_u64() >= Some(3)).then_some(())
    });
    let shot = z.dir.path().join("console.png");
    let out = Command::new(node)
        .arg(root().join("scripts/browser/console.mjs"))
        .args([
            "--url",
            &format!("http://{edge}/console/"),
            "--stream",
            "demo",
        ])
        .args(["--token", TOKEN, "--timeout-s", "25"])
        .arg("--screenshot")
        .arg(&shot)
        .output()
        .expect("run scripts/browser/console.mjs");
    assert!(
        out.status.success(),
        "console harness failed ({}): {} (run scripts/setup-browser; make test does)",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("harness JSON");
    eprintln!("console harness: {r}");
    assert_eq!(r["error"], Value::Null, "{r}");
    for step in ["listed", "hlsPlayed", "renditionSwitched", "dashPlayed"] {
        assert_eq!(r[step], true, "{step}: {r}");
    }
    assert!(r["latencyS"].as_f64() > Some(0.0), "{r}");
    for list in ["consoleErrors", "pageErrors", "failedRequests"] {
        assert_eq!(r[list], json!([]), "{list}: {r}");
    }
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    // `UPDATE_CONSOLE_SCREENSHOT=1 cargo test --test api` refreshes the README's picture.
    if std::env::var_os("UPDATE_CONSOLE_SCREENSHOT").is_some() {
        std::fs::write(root().join("docs/console.png"), &png).unwrap();
    }
    // The viewer the browser was, counted at the edge.
    let viewers = call(edge, "GET", "/api/v1/viewers", Some(TOKEN)).json();
    assert!(
        viewers["streams"]
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v["stream"] == "demo")),
        "{viewers}"
    );
}
