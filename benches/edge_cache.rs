//! The edge's cache-hit path over loopback HTTP: a real EdgeServer in front of a real
//! OriginServer (files in a temp store), objects already cached, one client connection.
//!
//! cargo bench --bench edge_cache

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use zoomate::config::Config;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live/bench/720p");
    std::fs::create_dir_all(&live).expect("store");
    let segment = vec![0x47u8; 1024 * 1024];
    std::fs::write(live.join("1.ts"), &segment).expect("segment");
    let playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.000,\n1.ts\n";
    std::fs::write(live.join("index.m3u8"), playlist).expect("playlist");

    let mut config = Config::default();
    config.store.dir = dir.path().to_path_buf();
    config.origin.http_listen = "127.0.0.1:0".parse().expect("addr");
    config.edge.listen = "127.0.0.1:0".parse().expect("addr");
    config.edge.playlist_ttl_ms = 600_000; // measure hits, not refreshes
    let shutdown = zoomate::Shutdown::new();
    let edge_addr = rt.block_on(async {
        let origin = zoomate::origin::OriginServer::bind(&config)
            .await
            .expect("origin");
        config.edge.origins = vec![format!("http://{}", origin.local_addr())];
        tokio::spawn(origin.run(shutdown.clone()));
        let edge = zoomate::edge::EdgeServer::bind(&config)
            .await
            .expect("edge");
        let addr = edge.local_addr();
        tokio::spawn(edge.run(shutdown.clone()));
        addr
    });
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let uri: http::Uri = format!("http://{edge_addr}{path}").parse().expect("uri");
            let resp = client.get(uri).await.expect("request");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert!(!body.is_empty());
            body.len()
        }
    };
    // Warm the cache.
    rt.block_on(async {
        get("/live/bench/720p/1.ts").await;
        get("/live/bench/720p/index.m3u8").await;
    });
    let mut group = c.benchmark_group("edge_cache_hit");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(segment.len() as u64));
    group.bench_function("segment_1MiB", |b| {
        b.to_async(&rt).iter(|| get("/live/bench/720p/1.ts"))
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("playlist", |b| {
        b.to_async(&rt).iter(|| get("/live/bench/720p/index.m3u8"))
    });
    group.finish();
    shutdown.cancel();
}

criterion_group!(benches, bench);
criterion_main!(benches);
