//! The segment bus library over real ZeroMQ TCP sockets on 127.0.0.1 (ports chosen by the OS):
//! publisher → subscriber, topic filtering, late joiners, publisher and proxy restarts, two
//! publishers through the proxy, bounded queues on both sides, malformed input.
//!
//! PUB/SUB drops what is published before a subscription reaches the publisher ("slow
//! joiner"), so every test first publishes a marker until it arrives, then asserts.

use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use zoomate::Shutdown;
use zoomate::bus::publisher::BusPublisher;
use zoomate::bus::subscriber::{BusSubscriber, SubscriberOptions};
use zoomate::bus::{BusEvent, RenditionInfo, codec};
use zoomate::config::BusConfig;

/// Upper bound for any single wait; tests normally finish in well under a second each.
const WAIT: Duration = Duration::from_secs(10);

/// `RUST_LOG=zoomate=debug cargo test --test bus_pubsub -- --nocapture` shows the bus's logs.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(endpoint: &str, connect: bool, queue_capacity: usize) -> BusConfig {
    BusConfig {
        publish_endpoint: endpoint.into(),
        publish_connect: connect,
        queue_capacity,
        ..BusConfig::default()
    }
}

async fn bind_any(shutdown: &Shutdown) -> BusPublisher {
    BusPublisher::start(&config("tcp://127.0.0.1:0", false, 1024), shutdown.clone())
        .await
        .expect("bind 127.0.0.1:0")
}

/// Binds `endpoint` again after a previous owner let go (the listener closes asynchronously).
async fn bind_again(endpoint: &str, shutdown: &Shutdown) -> BusPublisher {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match BusPublisher::start(&config(endpoint, false, 1024), shutdown.clone()).await {
            Ok(p) => return p,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("rebind {endpoint}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("could not rebind {endpoint}: {e}"),
        }
    }
}

fn free_tcp_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://{}", l.local_addr().unwrap())
}

fn heartbeat(origin: &str, n: u32) -> BusEvent {
    BusEvent::OriginHeartbeat {
        origin_id: origin.into(),
        http_base_url: format!("http://{origin}.test:8081"),
        streams: vec!["demo".into()],
        load_streams: n,
        load_encoder_speed: 1.25,
        interval_ms: 1000,
    }
}

fn segment(stream: &str, rendition: &str, seq: u64) -> BusEvent {
    BusEvent::SegmentReady {
        stream: stream.into(),
        rendition: rendition.into(),
        media_sequence: seq,
        duration_ms: 2000,
        uri: format!("/live/{stream}/{rendition}/{seq}.ts"),
        byte_size: 694_000 + seq,
        program_date_time_ms: 1_764_019_800_123 + seq as i64 * 2000,
        discontinuity: seq == 0,
        origin_id: "origin-1".into(),
    }
}

fn every_kind() -> Vec<BusEvent> {
    vec![
        segment("demo", "720p", 42),
        BusEvent::PlaylistUpdated {
            stream: "demo".into(),
            rendition: "720p".into(),
            media_sequence: 42,
            uri: "/live/demo/720p/index.m3u8".into(),
        },
        BusEvent::StreamStarted {
            stream: "demo".into(),
            origin_id: "origin-1".into(),
            renditions: vec![
                RenditionInfo {
                    name: "720p".into(),
                    bandwidth_bps: 3_000_000,
                    width: 1280,
                    height: 720,
                    codecs: "avc1.64001f,mp4a.40.2".into(),
                },
                RenditionInfo {
                    name: "360p".into(),
                    bandwidth_bps: 800_000,
                    width: 640,
                    height: 360,
                    codecs: "avc1.4d401e,mp4a.40.2".into(),
                },
            ],
        },
        BusEvent::StreamEnded {
            stream: "demo".into(),
            origin_id: "origin-1".into(),
        },
        heartbeat("origin-1", 2),
    ]
}

/// Publishes `marker()` every 50 ms until the subscriber delivers an event matching `is_marker`.
async fn sync(
    publish: impl Fn(),
    rx: &mut Receiver<BusEvent>,
    is_marker: impl Fn(&BusEvent) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message got through within {WAIT:?}"
        );
        publish();
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await
            && is_marker(&ev)
        {
            return;
        }
    }
}

/// Receives until `last` matches, returning everything received before and including it.
async fn recv_through(
    rx: &mut Receiver<BusEvent>,
    last: impl Fn(&BusEvent) -> bool,
) -> Vec<BusEvent> {
    let mut got = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("timed out waiting for the bus")
            .expect("subscriber channel closed");
        let done = last(&ev);
        got.push(ev);
        if done {
            return got;
        }
    }
}

fn is_hb(origin: &'static str) -> impl Fn(&BusEvent) -> bool {
    move |e| matches!(e, BusEvent::OriginHeartbeat { origin_id, .. } if origin_id == origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_crosses_tcp_intact_and_in_order() {
    let shutdown = Shutdown::new();
    let publisher = bind_any(&shutdown).await;
    let endpoint = publisher.local_endpoint();
    assert!(
        endpoint.starts_with("tcp://127.0.0.1:") && !endpoint.ends_with(":0"),
        "{endpoint}"
    );
    let (sub, mut rx) = BusSubscriber::spawn(vec![endpoint], vec![], 64, shutdown.clone());
    sync(
        || publisher.publish(heartbeat("sync", 0)),
        &mut rx,
        is_hb("sync"),
    )
    .await;

    for e in every_kind() {
        publisher.publish(e);
    }
    publisher.publish(heartbeat("end", 0));
    let got: Vec<BusEvent> = recv_through(&mut rx, is_hb("end"))
        .await
        .into_iter()
        .filter(|e| !is_hb("sync")(e) && !is_hb("end")(e))
        .collect();
    assert_eq!(got, every_kind());
    let stats = sub.stats();
    assert_eq!((stats.malformed, stats.dropped_full), (0, 0));
    assert_eq!(stats.connections, 1);
    assert_eq!(publisher.dropped(), 0);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_prefixes_select_what_arrives() {
    let shutdown = Shutdown::new();
    let publisher = bind_any(&shutdown).await;
    let (_sub, mut rx) = BusSubscriber::spawn(
        vec![publisher.local_endpoint()],
        vec!["seg/demo/".into(), "hb/".into()],
        64,
        shutdown.clone(),
    );
    sync(
        || publisher.publish(heartbeat("sync", 0)),
        &mut rx,
        is_hb("sync"),
    )
    .await;

    publisher.publish(segment("other", "720p", 1));
    publisher.publish(segment("demo", "720p", 2));
    publisher.publish(BusEvent::PlaylistUpdated {
        stream: "demo".into(),
        rendition: "720p".into(),
        media_sequence: 2,
        uri: "/x".into(),
    });
    publisher.publish(BusEvent::StreamEnded {
        stream: "demo".into(),
        origin_id: "o".into(),
    });
    publisher.publish(segment("demo", "360p", 3));
    publisher.publish(segment("demolition", "360p", 4)); // "seg/demolition/…" does not start with "seg/demo/"
    publisher.publish(heartbeat("end", 0));
    let got: Vec<BusEvent> = recv_through(&mut rx, is_hb("end"))
        .await
        .into_iter()
        .filter(|e| !is_hb("sync")(e))
        .collect();
    assert_eq!(
        got,
        vec![
            segment("demo", "720p", 2),
            segment("demo", "360p", 3),
            heartbeat("end", 0)
        ]
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_started_before_the_publisher_receives_once_it_binds() {
    let shutdown = Shutdown::new();
    let endpoint = free_tcp_endpoint();
    let (sub, mut rx) = BusSubscriber::spawn(vec![endpoint.clone()], vec![], 64, shutdown.clone());
    // Let the subscriber fail a few connect attempts first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sub.stats().connections, 0);
    let publisher = bind_again(&endpoint, &shutdown).await;
    sync(
        || publisher.publish(heartbeat("late", 0)),
        &mut rx,
        is_hb("late"),
    )
    .await;
    assert!(sub.stats().connections >= 1);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_publisher_is_picked_up_without_restarting_the_subscriber() {
    let shutdown = Shutdown::new();
    let first_life = shutdown.child_token();
    let first = BusPublisher::start(&config("tcp://127.0.0.1:0", false, 64), first_life.clone())
        .await
        .unwrap();
    let endpoint = first.local_endpoint();
    let (sub, mut rx) = BusSubscriber::spawn(vec![endpoint.clone()], vec![], 64, shutdown.clone());
    sync(
        || first.publish(heartbeat("first", 0)),
        &mut rx,
        is_hb("first"),
    )
    .await;

    // Stop the first publisher (its task drops the socket) and start another on the same port.
    first_life.cancel();
    drop(first);
    let second = bind_again(&endpoint, &shutdown).await;
    sync(
        || second.publish(heartbeat("second", 0)),
        &mut rx,
        is_hb("second"),
    )
    .await;
    let stats = sub.stats();
    assert!(stats.connections >= 2, "{stats:?}");
    assert_eq!(stats.malformed, 0);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_reach_subscribers_through_the_proxy_with_topic_filtering() {
    logs();
    let shutdown = Shutdown::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(zoomate::bus::proxy::run_proxy_with(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        shutdown.clone(),
        Some(ready_tx),
    ));
    let (front, back) = ready_rx.await.expect("proxy bound");

    let a = BusPublisher::start(&config(&front, true, 64), shutdown.clone())
        .await
        .unwrap();
    let b = BusPublisher::start(&config(&front, true, 64), shutdown.clone())
        .await
        .unwrap();
    assert_eq!(a.local_endpoint(), front);
    let (_all, mut all_rx) =
        BusSubscriber::spawn(vec![back.clone()], vec![], 256, shutdown.clone());
    let (_only_b, mut b_rx) = BusSubscriber::spawn(
        vec![back.clone()],
        vec!["hb/b".into()],
        256,
        shutdown.clone(),
    );
    sync(|| a.publish(heartbeat("a", 0)), &mut all_rx, is_hb("a")).await;
    sync(|| b.publish(heartbeat("b", 0)), &mut all_rx, is_hb("b")).await;
    sync(|| b.publish(heartbeat("b", 0)), &mut b_rx, is_hb("b")).await;

    // The filtered subscriber sees only b's heartbeats, though the proxy carries a's too.
    a.publish(heartbeat("a", 1));
    a.publish(segment("sa", "720p", 1));
    b.publish(heartbeat("b", 1));
    let got = recv_through(&mut b_rx, |e| matches!(e, BusEvent::OriginHeartbeat { origin_id, load_streams: 1, .. } if origin_id == "b")).await;
    assert!(got.iter().all(is_hb("b")), "{got:?}");
    // (No order between two publishers: just wait for a's segment.)
    recv_through(&mut all_rx, |e| *e == segment("sa", "720p", 1)).await;

    shutdown.cancel();
}

/// `zoomate bus proxy` as a process (how it runs in production), killed and started again on
/// the same ports: publishers connected with `publish_connect` and subscribers both come back.
/// (A process exit closes every TCP connection at once, the harshest restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_and_subscribers_survive_a_proxy_process_restart() {
    logs();
    let shutdown = Shutdown::new();
    let (front, back) = (free_tcp_endpoint(), free_tcp_endpoint());
    let start_proxy = || {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_zoomate"))
            .args(["bus", "proxy", "--frontend", &front, "--backend", &back])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start zoomate bus proxy");
        KillOnDrop(Some(child))
    };
    let mut proxy = start_proxy();
    let a = BusPublisher::start(&config(&front, true, 64), shutdown.clone())
        .await
        .unwrap();
    let (sub, mut rx) =
        BusSubscriber::spawn(vec![back.clone()], vec!["hb/".into()], 64, shutdown.clone());
    sync(|| a.publish(heartbeat("a", 0)), &mut rx, is_hb("a")).await;

    proxy.kill();
    let _proxy = start_proxy();
    sync(
        || a.publish(heartbeat("a", 1)),
        &mut rx,
        |e| {
            matches!(
                e,
                BusEvent::OriginHeartbeat {
                    load_streams: 1,
                    ..
                }
            )
        },
    )
    .await;
    assert!(sub.stats().connections >= 2, "{:?}", sub.stats());
    shutdown.cancel();
}

/// A bare libzmq PUB socket on 127.0.0.1 (port chosen by the OS). Sending on a PUB never
/// waits for a peer, so calling it from the test's task is fine.
struct RawPub(zmq::Socket);

impl RawPub {
    fn bind() -> RawPub {
        let s = zoomate::bus::engine::context().socket(zmq::PUB).unwrap();
        s.bind("tcp://127.0.0.1:0").unwrap();
        RawPub(s)
    }
    fn endpoint(&self) -> String {
        self.0.get_last_endpoint().unwrap().unwrap()
    }
    fn send(&self, frames: Vec<Vec<u8>>) {
        self.0.send_multipart(frames, 0).unwrap();
    }
}

/// Kills (and reaps) the child process on drop, so a failing test leaves no proxy behind.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_subscriber_channel_drops_and_counts_instead_of_growing() {
    const CAPACITY: usize = 4;
    const BURST: u64 = 300;
    let shutdown = Shutdown::new();
    let publisher = bind_any(&shutdown).await;
    let (sub, mut rx) = BusSubscriber::spawn(
        vec![publisher.local_endpoint()],
        vec![],
        CAPACITY,
        shutdown.clone(),
    );
    sync(
        || publisher.publish(heartbeat("sync", 0)),
        &mut rx,
        is_hb("sync"),
    )
    .await;
    // Empty the channel of any extra sync markers still in flight, then stop reading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}
    let before = sub.stats();

    for seq in 0..BURST {
        publisher.publish(segment("demo", "720p", seq));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while sub.stats().received < before.received + BURST {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {:?} of {BURST} arrived",
            sub.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = sub.stats();
    assert_eq!(after.received - before.received, BURST);
    assert_eq!(
        after.dropped_full - before.dropped_full,
        BURST - CAPACITY as u64
    );
    // The channel kept the oldest CAPACITY events and nothing more.
    let kept: Vec<BusEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(
        kept,
        (0..CAPACITY as u64)
            .map(|s| segment("demo", "720p", s))
            .collect::<Vec<_>>()
    );
    shutdown.cancel();
}

#[tokio::test] // current-thread: the sender task cannot run while this test publishes
async fn a_full_publisher_queue_drops_and_counts_without_blocking() {
    let shutdown = Shutdown::new();
    let publisher = BusPublisher::start(&config("tcp://127.0.0.1:0", false, 16), shutdown.clone())
        .await
        .unwrap();
    for seq in 0..100 {
        publisher.publish(segment("demo", "720p", seq));
    }
    assert_eq!(publisher.dropped(), 84);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_version_messages_are_counted_and_dropped() {
    let shutdown = Shutdown::new();
    // A raw libzmq PUB (not zoomate's publisher), so any frames can be sent.
    let raw = RawPub::bind();
    let endpoint = raw.endpoint();
    let (sub, mut rx) = BusSubscriber::spawn(vec![endpoint], vec![], 64, shutdown.clone());
    let two = |topic: &str, payload: Vec<u8>| vec![topic.as_bytes().to_vec(), payload];
    // Sync with well-formed markers only, so the malformed count below is exact.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
        raw.send(two("hb/sync", codec::encode(&heartbeat("sync", 0))));
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    while rx.try_recv().is_ok() {}
    assert_eq!(sub.stats().malformed, 0);

    let mut future_version = codec::encode(&heartbeat("v9", 0));
    future_version[16] = 9; // Envelope.version: first data word after segment table + root pointer
    assert!(matches!(
        codec::decode(&future_version),
        Err(codec::DecodeError::UnknownVersion(9))
    ));
    let mut unknown_kind = codec::encode(&heartbeat("k", 0));
    unknown_kind[18] = 0x2a; // union discriminant
    assert!(matches!(
        codec::decode(&unknown_kind),
        Err(codec::DecodeError::UnknownKind(_))
    ));
    let valid = codec::encode(&heartbeat("end", 0));
    let sent_bad = [
        two("hb/x", b"garbage, not capnp".to_vec()),
        two("hb/x", valid[..valid.len() / 2].to_vec()), // truncated
        two("hb/x", future_version),
        two("hb/x", unknown_kind),
        two("hb/x", Vec::new()),
        vec![b"hb/only-a-topic".to_vec()],
        {
            let mut m = two("hb/x", valid.clone());
            m.push(b"third frame".to_vec());
            m
        },
    ];
    let n_bad = sent_bad.len() as u64;
    for m in sent_bad {
        raw.send(m);
    }
    raw.send(two("hb/end", valid));
    let got = recv_through(&mut rx, is_hb("end")).await;
    assert!(
        got.iter().all(|e| is_hb("end")(e) || is_hb("sync")(e)),
        "{got:?}"
    );
    assert_eq!(sub.stats().malformed, n_bad);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_heartbeat_publishes_on_its_interval_until_shutdown() {
    let shutdown = Shutdown::new();
    let publisher = bind_any(&shutdown).await;
    let (_sub, mut rx) = BusSubscriber::spawn(
        vec![publisher.local_endpoint()],
        vec!["hb/".into()],
        64,
        shutdown.clone(),
    );
    let beats = shutdown.child_token();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = n.clone();
    publisher.spawn_heartbeat(
        Duration::from_millis(20),
        move || {
            heartbeat(
                "hb",
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )
        },
        beats.clone(),
    );
    // Three heartbeats in a row arrive (the first few may precede the subscription).
    let mut last = None;
    for _ in 0..3 {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            BusEvent::OriginHeartbeat { load_streams, .. } => {
                assert!(
                    last.is_none_or(|l| load_streams == l + 1),
                    "{last:?} then {load_streams}"
                );
                last = Some(load_streams);
            }
            other => panic!("{other:?}"),
        }
    }
    beats.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped_at = n.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        n.load(std::sync::atomic::Ordering::Relaxed),
        stopped_at,
        "heartbeats continued after shutdown"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_replaced_when_idle_reconnect_is_set() {
    let shutdown = Shutdown::new();
    let publisher = bind_any(&shutdown).await;
    let mut options = SubscriberOptions::with_capacity(64);
    options.idle_reconnect = Some(Duration::from_millis(300));
    let (sub, mut rx) = BusSubscriber::spawn_with(
        vec![publisher.local_endpoint()],
        vec![],
        options,
        shutdown.clone(),
    );
    sync(
        || publisher.publish(heartbeat("sync", 0)),
        &mut rx,
        is_hb("sync"),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while sub.stats().connections < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconnect after silence: {:?}",
            sub.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it still receives on the new connection.
    sync(
        || publisher.publish(heartbeat("again", 0)),
        &mut rx,
        is_hb("again"),
    )
    .await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_receiver_stops_the_subscriber_task() {
    let shutdown = Shutdown::new();
    let publisher = bind_any(&shutdown).await;
    let (sub, mut rx) = BusSubscriber::spawn(
        vec![publisher.local_endpoint()],
        vec![],
        4,
        shutdown.clone(),
    );
    sync(
        || publisher.publish(heartbeat("sync", 0)),
        &mut rx,
        is_hb("sync"),
    )
    .await;
    drop(rx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sub.stats().received;
    for _ in 0..20 {
        publisher.publish(heartbeat("after", 0));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sub.stats().received,
        before,
        "a subscriber without a consumer kept receiving"
    );
    shutdown.cancel();
}
