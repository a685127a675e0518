//! Bus latency and proxy throughput over real ZeroMQ TCP sockets on loopback.
//!
//! cargo bench --bench bus
//!
//! Latency: from `BusPublisher::publish` (the origin calls it the moment a segment and its
//! playlist are durable) to the subscriber holding the decoded `SegmentReady`, p50/p99 over
//! 2000 messages sent 2 ms apart. Throughput: messages/s from a publisher through
//! `bus proxy` (XSUB/XPUB) to a subscriber, 50 000 messages. Both run twice: plaintext, then
//! CURVE (origin and proxy as CURVE servers with ZAP, edges and origins as clients).

use std::time::{Duration, Instant};
use zoomate::bus::BusEvent;
use zoomate::bus::engine::KeyPair;
use zoomate::bus::proxy::{ProxyCurve, ProxyOptions};
use zoomate::bus::publisher::BusPublisher;
use zoomate::bus::subscriber::{BusSubscriber, SubscribeTarget, TargetCurve};
use zoomate::config::{BusConfig, Secret};

fn segment(n: u64, sent_us: u64) -> BusEvent {
    BusEvent::SegmentReady {
        stream: "bench".into(),
        rendition: "720p".into(),
        media_sequence: n,
        duration_ms: 2000,
        uri: format!("/live/bench/720p/{n}.ts"),
        // Carries the send instant (µs since the run's base) to the subscriber.
        byte_size: sent_us,
        program_date_time_ms: 0,
        discontinuity: false,
        origin_id: "origin-1".into(),
    }
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn target(endpoint: String, server: Option<&KeyPair>, client: &KeyPair) -> SubscribeTarget {
    SubscribeTarget {
        endpoint,
        curve: match server {
            Some(s) => TargetCurve::On {
                server_key: s.public,
                client: Some(client.clone()),
            },
            None => TargetCurve::Off,
        },
    }
}

fn main() {
    for curve in [false, true] {
        run(curve);
    }
}

fn run(curve: bool) {
    let label = if curve { "CURVE" } else { "plaintext" };
    let (origin_keys, edge_keys, proxy_keys) = (
        KeyPair::generate().expect("curve"),
        KeyPair::generate().expect("curve"),
        KeyPair::generate().expect("curve"),
    );
    let server = curve.then_some(&origin_keys);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let shutdown = zoomate::Shutdown::new();
        let base = Instant::now();
        // --- latency ---
        let mut cfg = BusConfig { publish_endpoint: "tcp://127.0.0.1:0".into(), queue_capacity: 100_000, ..BusConfig::default() };
        if curve {
            cfg.curve_secret_key = Some(Secret::new(origin_keys.secret.to_z85()));
            cfg.curve_accept_keys = vec![edge_keys.public.to_z85()];
        }
        let publisher = BusPublisher::start(&cfg, shutdown.clone()).await.expect("publisher");
        let (_sub, mut rx) = BusSubscriber::spawn(vec![target(publisher.local_endpoint(), server, &edge_keys)], vec!["seg/".into()], 100_000, shutdown.clone());
        // Wait until the subscription is live.
        loop {
            publisher.publish(segment(0, 0));
            if tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.is_ok() {
                break;
            }
        }
        while rx.try_recv().is_ok() {}
        let mut latencies = Vec::new();
        for n in 1..=2000u64 {
            publisher.publish(segment(n, base.elapsed().as_micros() as u64));
            if let Ok(Some(BusEvent::SegmentReady { byte_size, .. })) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                latencies.push(base.elapsed().as_micros() as u64 - byte_size);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let n = latencies.len();
        println!("bus latency publish→decoded ({label}): n={n} p50={}µs p99={}µs", pct(&mut latencies, 0.5), pct(&mut latencies, 0.99));

        // --- throughput through the proxy ---
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let s2 = shutdown.clone();
        let options = ProxyOptions {
            curve: curve.then(|| ProxyCurve {
                pair: proxy_keys.clone(),
                frontend_accept: [origin_keys.public].into_iter().collect(),
                backend_accept: [edge_keys.public].into_iter().collect(),
            }),
            ..ProxyOptions::default()
        };
        tokio::spawn(async move {
            let _ = zoomate::bus::proxy::run_proxy_with_options("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options, s2, Some(ready_tx)).await;
        });
        let (front, back) = ready_rx.await.expect("proxy ready");
        let mut cfg = BusConfig { publish_endpoint: front, publish_connect: true, queue_capacity: 100_000, ..BusConfig::default() };
        if curve {
            cfg.curve_secret_key = Some(Secret::new(origin_keys.secret.to_z85()));
            cfg.publish_server_key = Some(proxy_keys.public.to_z85());
        }
        let publisher = BusPublisher::start(&cfg, shutdown.clone()).await.expect("publisher");
        let (_sub, mut rx) = BusSubscriber::spawn(vec![target(back, curve.then_some(&proxy_keys), &edge_keys)], vec![], 100_000, shutdown.clone());
        loop {
            publisher.publish(segment(0, 0));
            if tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.is_ok() {
                break;
            }
        }
        while rx.try_recv().is_ok() {}
        let total = 50_000u64;
        let start = Instant::now();
        let producer = {
            let publisher = std::sync::Arc::new(publisher);
            let p = publisher.clone();
            tokio::spawn(async move {
                for n in 0..total {
                    p.publish(segment(n, 0));
                    if n % 1000 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                p
            })
        };
        let mut received = 0u64;
        // Up to the last message received: a lost tail must not add the 2 s timeout.
        let mut last = Instant::now();
        while received < total {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                Ok(Some(_)) => {
                    received += 1;
                    last = Instant::now();
                }
                _ => break,
            }
        }
        let elapsed = last.duration_since(start);
        let publisher = producer.await.expect("producer");
        println!(
            "bus proxy throughput ({label}): {received}/{total} messages in {:.2}s = {:.0} msg/s (publisher queue drops: {})",
            elapsed.as_secs_f64(),
            received as f64 / elapsed.as_secs_f64(),
            publisher.dropped()
        );
        shutdown.cancel();
    });
}
