//! The live path below HTTP: a configured test-pattern source through the real GStreamer
//! ladder into the store, checked on disk with ffprobe, and the bus announcements it makes.

mod common;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zoomate::bus::BusEvent;
use zoomate::config::Config;

#[test]
fn test_pattern_ladder_writes_aligned_segments_and_announces_them_in_order() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("zoomate=debug,info")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(TEST_LADDER).unwrap();
    config.store.dir = dir.path().to_path_buf();
    config.streams = vec![
        Config::parse(
            "[[streams]]\nname = \"pat\"\nsource = \"test-pattern\"\nwidth = 640\nheight = 360\n",
        )
        .unwrap()
        .streams
        .remove(0),
    ];
    let plan = zoomate::plan::Plan::resolve(config.clone()).unwrap();
    let events: Arc<Mutex<Vec<BusEvent>>> = Default::default();
    let sink = events.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = zoomate::Shutdown::new();
    let registry = rt.block_on(async {
        let r = zoomate::stream::StreamRegistry::new(
            Arc::new(config.clone()),
            Arc::new(move |e| sink.lock().unwrap().push(e)),
            shutdown.clone(),
        );
        r.start_configured(plan.streams[0].clone());
        r
    });
    let stream_dir = dir.path().join("live/pat");
    wait_for(Duration::from_secs(30), "4 segments per rendition", || {
        ["360p", "240p", "180p"]
            .iter()
            .all(|r| stream_dir.join(r).join("3.ts").exists())
            .then_some(())
    });
    shutdown.cancel();
    rt.block_on(registry.drain());

    // Every announced segment existed and was listed when announced; order is per rendition.
    let events = events.lock().unwrap().clone();
    assert!(
        matches!(events.iter().find(|e| matches!(e, BusEvent::StreamStarted { .. })), Some(BusEvent::StreamStarted { renditions, .. }) if renditions.len() == 3)
    );
    assert!(
        matches!(events.last(), Some(BusEvent::StreamEnded { .. })),
        "last event: {:?}",
        events.last()
    );
    // One continuous session: nothing was restarted by a watchdog along the way.
    assert!(
        events.iter().all(|e| !matches!(
            e,
            BusEvent::SegmentReady {
                discontinuity: true,
                ..
            }
        )),
        "a discontinuity within one session means the pipeline was restarted"
    );
    for r in ["360p", "240p", "180p"] {
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                BusEvent::SegmentReady {
                    rendition,
                    media_sequence,
                    ..
                } if rendition == r => Some(*media_sequence),
                _ => None,
            })
            .collect();
        assert!(seqs.len() >= 4, "{r}: {seqs:?}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{r}: out of order {seqs:?}"
        );
    }
    // Segment N starts on a keyframe at the same time in every rendition.
    for seq in 1..=3 {
        let starts: Vec<f64> = ["360p", "240p", "180p"]
            .iter()
            .map(|r| {
                let p = stream_dir.join(r).join(format!("{seq}.ts"));
                let v = ffprobe(
                    &p,
                    &[
                        "-select_streams",
                        "v:0",
                        "-show_frames",
                        "-read_intervals",
                        "%+#1",
                        "-show_entries",
                        "frame=key_frame,pts_time",
                    ],
                );
                assert_eq!(
                    v["frames"][0]["key_frame"].as_i64(),
                    Some(1),
                    "{r} segment {seq} must start with a keyframe"
                );
                v["frames"][0]["pts_time"]
                    .as_str()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
            })
            .collect();
        assert!(
            starts
                .iter()
                .all(|s| (s - starts[0]).abs() <= 1.0 / 30.0 + 1e-6),
            "segment {seq} starts differ: {starts:?}"
        );
    }
    let master = std::fs::read_to_string(stream_dir.join("master.m3u8")).unwrap();
    assert_eq!(parse_master(&master).len(), 3, "{master}");
    assert!(
        !stream_dir.join(".staging").exists()
            || std::fs::read_dir(stream_dir.join(".staging"))
                .unwrap()
                .all(|e| e
                    .unwrap()
                    .path()
                    .read_dir()
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(true))
    );
}

#[test]
fn segments_leaving_the_window_stay_downloadable_for_the_retention_time_then_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(&format!(
        "[ladder]\nsegment_duration_ms = 1000\nformat = \"ts\"\n[[ladder.renditions]]\nname = \"180p\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 200\n[hls]\nwindow_segments = 3\nretain_after_window_ms = 1500\n"
    ))
    .unwrap();
    config.store.dir = dir.path().to_path_buf();
    config.streams = Config::parse(
        "[[streams]]\nname = \"ret\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\n",
    )
    .unwrap()
    .streams;
    let plan = zoomate::plan::Plan::resolve(config.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shutdown = zoomate::Shutdown::new();
    let registry = rt.block_on(async {
        let r = zoomate::stream::StreamRegistry::new(
            Arc::new(config.clone()),
            zoomate::app::silent_announcer(),
            shutdown.clone(),
        );
        r.start_configured(plan.streams[0].clone());
        r
    });
    let seg = |n: u64| dir.path().join(format!("live/ret/180p/{n}.ts"));
    // 0.ts leaves the window when 3.ts is listed, and must still be there right after...
    wait_for(Duration::from_secs(30), "segment 3", || {
        seg(3).exists().then_some(())
    });
    assert!(seg(0).exists(), "deleted as soon as it left the window");
    // ...and gone once the retention time has passed; disk use stays bounded.
    wait_for(Duration::from_secs(15), "expired segment deleted", || {
        (!seg(0).exists()).then_some(())
    });
    let files = std::fs::read_dir(dir.path().join("live/ret/180p"))
        .unwrap()
        .count();
    shutdown.cancel();
    rt.block_on(registry.drain());
    assert!(
        files <= 3 + 3 + 1,
        "{files} files: window + retention + playlist"
    );
}
