//! Issue 12, engine half: a bus that bounds frames before allocating and authenticates peers.
//!
//! - An attacker speaking raw ZMTP 3.0 (greeting, READY, then one frame header claiming 2^61
//!   bytes) against every bus endpoint: the origin's PUB, an edge subscribed to a rogue PUB,
//!   `zoomate bus proxy`'s frontend and backend. Before libzmq, each killed the process
//!   (allocation failure, SIGABRT). After each: the process is alive, answers HTTP (or still
//!   forwards), and real bus messages still flow.
//! - CURVE: unauthenticated or unlisted peers get nothing and send nothing that arrives;
//!   pyzmq with CURVE keys interoperates both ways.
//! - Plaintext bus on a non-loopback address is refused at start (exit 2).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use zoomate::Shutdown;
use zoomate::bus::BusEvent;
use zoomate::bus::engine::KeyPair;
use zoomate::bus::publisher::BusPublisher;
use zoomate::bus::subscriber::{BusSubscriber, SubscribeTarget, TargetCurve};
use zoomate::config::BusConfig;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A raw ZMTP 3.0 peer (RFC 23), NULL mechanism.

/// Our 64-byte greeting: signature, version 3.0, mechanism NULL, as-server 0, filler.
fn greeting() -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    g.extend(mechanism);
    g.push(0);
    g.resize(64, 0);
    g
}

/// The READY command announcing `socket_type`.
fn ready(socket_type: &str) -> Vec<u8> {
    let mut body = vec![5u8];
    body.extend(b"READY");
    body.push(11);
    body.extend(b"Socket-Type");
    body.extend((socket_type.len() as u32).to_be_bytes());
    body.extend(socket_type.as_bytes());
    let mut cmd = vec![0x04, body.len() as u8];
    cmd.extend(body);
    cmd
}

/// A frame header with the long-size flag claiming 2^61 bytes, and a few bytes of "body".
fn huge_frame() -> Vec<u8> {
    let mut f = vec![0x02];
    f.extend((1u64 << 61).to_be_bytes());
    f.extend(b"not really 2^61 bytes");
    f
}

/// Greets as `socket_type`, reads the peer's greeting, then sends the oversized frame. Returns
/// once the peer closed the connection (or after a bounded wait).
fn attack(stream: &mut TcpStream, socket_type: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&greeting()).unwrap();
    let mut theirs = [0u8; 64];
    stream
        .read_exact(&mut theirs)
        .expect("peer's ZMTP greeting");
    assert_eq!((theirs[0], theirs[9], theirs[10]), (0xFF, 0x7F, 3));
    stream.write_all(&ready(socket_type)).unwrap();
    let _ = stream.write_all(&huge_frame());
    // libzmq answers with its READY and then drops us for the oversized frame.
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn tcp_addr(endpoint: &str) -> String {
    endpoint.trim_start_matches("tcp://").to_string()
}

/// Waits for one heartbeat from `endpoint` through a fresh zoomate subscriber.
fn heartbeat_arrives(endpoint: &str, target: SubscribeTarget) -> bool {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = Shutdown::new();
    let _ = endpoint;
    let (_sub, mut rx) =
        BusSubscriber::spawn(vec![target], vec!["hb/".into()], 64, shutdown.clone());
    let got = rt.block_on(async {
        matches!(
            tokio::time::timeout(WAIT, rx.recv()).await,
            Ok(Some(BusEvent::OriginHeartbeat { .. }))
        )
    });
    shutdown.cancel();
    got
}

fn assert_alive(z: &mut Zoomate, what: &str) {
    assert!(
        z.child.try_wait().unwrap().is_none(),
        "zoomate died after {what}; log:\n{}",
        z.log()
    );
}

#[test]
fn an_oversized_frame_to_the_origin_bus_endpoint_does_not_kill_it() {
    let mut z = Zoomate::start(
        "origin",
        "[rtmp]\nenabled = false\n[bus]\nheartbeat_interval_ms = 200\n",
    );
    let bus = z.bus.clone().expect("bus endpoint");
    let mut s = TcpStream::connect(tcp_addr(&bus)).unwrap();
    attack(&mut s, "SUB");
    assert_alive(&mut z, "an oversized frame on its PUB endpoint");
    assert_eq!(get(z.origin.unwrap(), "/healthz").status, 200);
    assert!(
        heartbeat_arrives(&bus, bus.clone().into()),
        "no heartbeat after the attack; log:\n{}",
        z.log()
    );
    assert_alive(&mut z, "the attack and a real subscriber");
}

#[test]
fn an_edge_subscribed_to_a_rogue_publisher_survives_its_oversized_frame() {
    let rogue = TcpListener::bind("127.0.0.1:0").unwrap();
    let rogue_addr = rogue.local_addr().unwrap();
    let attacker = std::thread::spawn(move || {
        let (mut s, _) = rogue.accept().unwrap();
        attack(&mut s, "PUB");
    });
    let mut z = Zoomate::start(
        "run",
        &format!(
            "[rtmp]\nenabled = false\n[bus]\nheartbeat_interval_ms = 200\n[edge]\nbus_connect = [\"tcp://{rogue_addr}\"]\n"
        ),
    );
    attacker.join().expect("the rogue publisher ran");
    assert_alive(&mut z, "an oversized frame from a rogue publisher");
    let edge = z.edge.unwrap();
    // The edge still hears its own origin's heartbeats on its other bus connection.
    let messages = |z: &Zoomate| {
        get(edge, "/metrics")
            .text()
            .lines()
            .find(|l| l.starts_with("zoomate_edge_bus_messages_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no bus counter in /metrics; log:\n{}", z.log()))
    };
    let before = messages(&z);
    wait_for(WAIT, "bus messages after the attack", || {
        (messages(&z) > before).then_some(())
    });
    assert_eq!(get(z.origin.unwrap(), "/healthz").status, 200);
    assert_alive(&mut z, "the attack");
}

/// `zoomate bus proxy` on free ports; killed on drop.
struct Proxy(std::process::Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(front: &str, back: &str, config: Option<&std::path::Path>) -> Proxy {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zoomate"));
    if let Some(c) = config {
        cmd.args(["--config", c.to_str().unwrap()]);
    }
    cmd.args(["bus", "proxy", "--frontend", front, "--backend", back])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proxy(cmd.spawn().expect("start zoomate bus proxy"))
}

fn free_endpoint() -> String {
    format!("tcp://127.0.0.1:{}", free_port())
}

#[test]
fn oversized_frames_on_both_sides_of_the_bus_proxy_do_not_kill_it() {
    let (front, back) = (free_endpoint(), free_endpoint());
    let mut proxy = start_proxy(&front, &back, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = Shutdown::new();
    let publisher = rt
        .block_on(BusPublisher::start(
            &BusConfig {
                publish_endpoint: front.clone(),
                publish_connect: true,
                ..BusConfig::default()
            },
            shutdown.clone(),
        ))
        .unwrap();
    let (_sub, mut rx) = rt
        .block_on(async { BusSubscriber::spawn(vec![back.clone()], vec![], 64, shutdown.clone()) });
    let beat = |n: u32| BusEvent::OriginHeartbeat {
        origin_id: "o".into(),
        http_base_url: "http://127.0.0.1:1".into(),
        streams: vec![],
        load_streams: n,
        load_encoder_speed: 0.0,
        interval_ms: 1000,
    };
    // Publishes `n` until it arrives.
    let flows = |n: u32, rx: &mut tokio::sync::mpsc::Receiver<BusEvent>| {
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + WAIT;
            while tokio::time::Instant::now() < deadline {
                publisher.publish(beat(n));
                if let Ok(Some(BusEvent::OriginHeartbeat { load_streams, .. })) =
                    tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
                    && load_streams == n
                {
                    return true;
                }
            }
            false
        })
    };
    assert!(flows(1, &mut rx), "nothing crossed the proxy");
    // Frontend: the attacker is an origin (PUB). Backend: an edge (SUB).
    for (endpoint, kind, n) in [(&front, "PUB", 2), (&back, "SUB", 3)] {
        wait_for(WAIT, "the proxy listening", || {
            TcpStream::connect(tcp_addr(endpoint)).ok()
        });
        let mut s = TcpStream::connect(tcp_addr(endpoint)).unwrap();
        attack(&mut s, kind);
        assert!(
            proxy.0.try_wait().unwrap().is_none(),
            "bus proxy died after an oversized frame on {endpoint}"
        );
        assert!(
            flows(n, &mut rx),
            "nothing crossed the proxy after attacking {endpoint}"
        );
    }
    shutdown.cancel();
}

// ---------------------------------------------------------------------------------------------
// CURVE

fn pair() -> KeyPair {
    KeyPair::generate().expect("libzmq with CURVE")
}

fn curve_target(endpoint: &str, server: &KeyPair, client: Option<&KeyPair>) -> SubscribeTarget {
    SubscribeTarget {
        endpoint: endpoint.into(),
        curve: TargetCurve::On {
            server_key: server.public,
            client: client.cloned(),
        },
    }
}

fn hb(origin: &str) -> BusEvent {
    BusEvent::OriginHeartbeat {
        origin_id: origin.into(),
        http_base_url: format!("http://{origin}.test:8081"),
        streams: vec![],
        load_streams: 0,
        load_encoder_speed: 0.0,
        interval_ms: 1000,
    }
}

fn curve_publisher_config(server: &KeyPair, accepted: &[&KeyPair]) -> BusConfig {
    BusConfig {
        publish_endpoint: "tcp://127.0.0.1:0".into(),
        curve_secret_key: Some(zoomate::config::Secret::new(server.secret.to_z85())),
        curve_accept_keys: accepted.iter().map(|k| k.public.to_z85()).collect(),
        ..BusConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve_subscribers_without_an_accepted_key_receive_nothing() {
    let (server, edge, stranger) = (pair(), pair(), pair());
    let shutdown = Shutdown::new();
    let publisher =
        BusPublisher::start(&curve_publisher_config(&server, &[&edge]), shutdown.clone())
            .await
            .unwrap();
    let endpoint = publisher.local_endpoint();
    let (good, mut good_rx) = BusSubscriber::spawn(
        vec![curve_target(&endpoint, &server, Some(&edge))],
        vec![],
        64,
        shutdown.clone(),
    );
    let (plain, mut plain_rx) =
        BusSubscriber::spawn(vec![endpoint.clone()], vec![], 64, shutdown.clone());
    let (unlisted, mut unlisted_rx) = BusSubscriber::spawn(
        vec![curve_target(&endpoint, &server, Some(&stranger))],
        vec![],
        64,
        shutdown.clone(),
    );
    let (ephemeral, mut ephemeral_rx) = BusSubscriber::spawn(
        vec![curve_target(&endpoint, &server, None)],
        vec![],
        64,
        shutdown.clone(),
    );
    let refusals_before = zoomate::bus::engine::zap_refusals();
    // The accepted edge gets messages; meanwhile the others keep trying (and being refused).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut good_got = 0;
    while good_got < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the accepted edge got nothing"
        );
        publisher.publish(hb("o"));
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), good_rx.recv()).await {
            good_got += 1;
        }
    }
    // Both unlisted keys were refused by ZAP at least once (they did try).
    let deadline = tokio::time::Instant::now() + WAIT;
    while zoomate::bus::engine::zap_refusals() < refusals_before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "no ZAP refusals");
        publisher.publish(hb("o"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(good.stats().connections >= 1);
    for (name, sub, rx) in [
        ("plaintext", &plain, &mut plain_rx),
        ("unlisted key", &unlisted, &mut unlisted_rx),
        ("ephemeral key", &ephemeral, &mut ephemeral_rx),
    ] {
        assert!(
            rx.try_recv().is_err(),
            "{name} subscriber received a message"
        );
        assert_eq!(sub.stats().received, 0, "{name}");
        assert_eq!(sub.stats().connections, 0, "{name}: {:?}", sub.stats());
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_without_the_expected_server_key_reaches_no_curve_subscriber() {
    let (expected, impostor, edge) = (pair(), pair(), pair());
    let shutdown = Shutdown::new();
    // A plaintext publisher and one holding a different key, both where the edge connects.
    let plain = BusPublisher::start(
        &BusConfig {
            publish_endpoint: "tcp://127.0.0.1:0".into(),
            ..BusConfig::default()
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let wrong = BusPublisher::start(
        &curve_publisher_config(&impostor, &[&edge]),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let right = BusPublisher::start(
        &curve_publisher_config(&expected, &[&edge]),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let (sub, mut rx) = BusSubscriber::spawn(
        vec![
            curve_target(&plain.local_endpoint(), &expected, Some(&edge)),
            curve_target(&wrong.local_endpoint(), &expected, Some(&edge)),
            curve_target(&right.local_endpoint(), &expected, Some(&edge)),
        ],
        vec![],
        64,
        shutdown.clone(),
    );
    // Everyone publishes; only the holder of the expected key's messages arrive.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut right_got = 0;
    while right_got < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the genuine publisher got nothing through"
        );
        plain.publish(hb("plain"));
        wrong.publish(hb("impostor"));
        right.publish(hb("genuine"));
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            assert_eq!(
                ev,
                hb("genuine"),
                "a publisher without the server key got through"
            );
            right_got += 1;
        }
    }
    assert_eq!(sub.stats().connections, 1, "{:?}", sub.stats());
    shutdown.cancel();
}

#[test]
fn a_pyzmq_curve_subscriber_receives_from_a_curve_origin() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "test peer missing: run scripts/setup-test-venv"
    );
    let (origin, py) = (pair(), pair());
    let z = Zoomate::start(
        "origin",
        &format!(
            "[rtmp]\nenabled = false\n[bus]\nheartbeat_interval_ms = 200\ncurve_secret_key = \"{}\"\ncurve_accept_keys = [\"{}\"]\n",
            origin.secret.to_z85(),
            py.public.to_z85()
        ),
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bus_interop.py");
    let run = |with_keys: bool| {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .args(["sub", z.bus.as_deref().unwrap(), "hb/", "2"])
            .env("BUS_CURVE_SERVER_KEY", origin.public.to_z85());
        if with_keys {
            cmd.env("BUS_CURVE_PUBLIC", py.public.to_z85())
                .env("BUS_CURVE_SECRET", py.secret.to_z85());
        }
        cmd.output().unwrap()
    };
    let out = run(true);
    assert!(
        out.status.success(),
        "pyzmq CURVE subscriber failed: {}; log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        z.log()
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["kind"] == "originHeartbeat"));
    // The same pyzmq peer with a fresh, unlisted key gets nothing (it gives up after 30 s).
    let out = run(false);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unlisted pyzmq key received messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zoomate_subscriber_receives_from_a_pyzmq_curve_publisher() {
    use std::io::BufRead;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "test peer missing: run scripts/setup-test-venv"
    );
    let py = pair();
    let mut child = Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bus_interop.py"))
        .args(["pub", "30"])
        .env("BUS_CURVE_SECRET", py.secret.to_z85())
        .env("BUS_CURVE_PUBLIC", py.public.to_z85())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut endpoint = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut endpoint)
        .unwrap();
    let endpoint = endpoint.trim().to_string();
    let shutdown = Shutdown::new();
    let (sub, mut rx) = BusSubscriber::spawn(
        vec![curve_target(&endpoint, &py, None)],
        vec![],
        64,
        shutdown.clone(),
    );
    let got = tokio::time::timeout(WAIT, rx.recv()).await;
    let _ = child.kill();
    let _ = child.wait();
    shutdown.cancel();
    assert!(
        matches!(
            got,
            Ok(Some(
                BusEvent::StreamStarted { .. } | BusEvent::SegmentReady { .. }
            ))
        ),
        "{got:?} {:?}",
        sub.stats()
    );
}

// ---------------------------------------------------------------------------------------------
// Refused at start

fn check(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args(["--config", path.to_str().unwrap(), "origin"])
        .output()
        .unwrap()
}

#[test]
fn a_plaintext_bus_off_loopback_is_refused_before_binding() {
    let out = check("[bus]\npublish_endpoint = \"tcp://0.0.0.0:0\"\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bus.publish_endpoint")
            && err.contains("tcp://0.0.0.0:0")
            && err.contains("zoomate bus keygen"),
        "{err}"
    );
    let out = check("[edge]\nbus_connect = [\"tcp://10.1.2.3:5556\"]\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("edge.bus_connect[0]") && err.contains("tcp://10.1.2.3:5556"),
        "{err}"
    );
    // The proxy too.
    let out = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args([
            "bus",
            "proxy",
            "--frontend",
            "tcp://*:0",
            "--backend",
            "tcp://127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frontend"));
}

#[test]
fn keygen_prints_a_pair_whose_secret_configures_a_curve_origin() {
    let out = Command::new(env!("CARGO_BIN_EXE_zoomate"))
        .args(["bus", "keygen"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("curve_secret_key"))
        .expect("a secret key line");
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public: "))
        .expect("a public key line")
        .trim_matches('"')
        .to_string();
    assert_eq!(public.len(), 40);
    let config = format!(
        "[bus]\npublish_endpoint = \"tcp://0.0.0.0:0\"\n{secret_line}\ncurve_accept_keys = [\"{public}\"]\n"
    );
    let parsed = zoomate::config::Config::parse(&config).unwrap();
    parsed
        .validate()
        .expect("a CURVE origin may bind off loopback");
    let derived = parsed.bus.key_pair().unwrap().unwrap();
    assert_eq!(derived.public.to_z85(), public);
}
