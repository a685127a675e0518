//! Faults (issue #14): a pipeline whose teardown hangs, and a store whose disk fills up.
//!
//! - A real GStreamer element that blocks its streaming thread (`identity sleep-time`) makes the
//!   pipeline's teardown hang: on one tokio worker, the session's watchdogs still fire, the
//!   pipeline is abandoned on its own thread, the stream restarts, and other tasks keep running.
//! - A real small file system (a tmpfs mounted for the test, so the test needs root: it says so
//!   and fails without) fills up under three live streams (MPEG-TS and CMAF/LL-HLS test patterns,
//!   and an ffmpeg RTMP publisher, which must stay connected throughout), three times:
//!   each time the streams are marked unhealthy (metric, `/streams`, one log line per episode),
//!   no playlist lists a file that is missing or not whole (ffprobe), the process keeps
//!   answering, and once the filler is deleted every stream lists new segments again, after an
//!   `EXT-X-DISCONTINUITY`. The time from space freed to the first new segment listed is printed
//!   (`time to recover`), for docs/RELIABILITY.md.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zoomate::config::Config;

/// One rendition, 1 s segments: cheap enough for two streams at once on a shared machine.
const SMALL_LADDER: &str = r#"
[ladder]
segment_duration_ms = 1000
frame_rate = 30
format = "ts"
[[ladder.renditions]]
name = "180p"
width = 320
height = 180
video_bitrate_kbps = 200
"#;

#[test]
fn a_stuck_teardown_is_abandoned_off_the_one_worker_and_the_stream_restarts() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("zoomate=debug,info")
        .with_test_writer()
        .try_init();
    // An encoder whose streaming thread sleeps 10 minutes on its first frame (holding the
    // branch's stream lock): no segment ever comes, and setting the pipeline to NULL waits for
    // that thread.
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("pipelines");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("video-sleeper.pipeline"),
        "identity sleep-time=600000000 ! x264enc bitrate={bitrate_kbps} key-int-max={gop_frames} tune=zerolatency",
    )
    .unwrap();
    let toml = format!(
        "{}\n[pipelines]\ndir = \"{}\"\nstall_timeout_ms = 2000\nstate_change_timeout_ms = 500\n\
         [[streams]]\nname = \"stuck\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\n",
        SMALL_LADDER.replace(
            "frame_rate = 30",
            "frame_rate = 30\nvideo_encoder = \"sleeper\""
        ),
        templates.display()
    );
    let mut config = Config::parse(&toml).unwrap();
    config.validate().unwrap();
    config.store.dir = dir.path().join("store");
    let plan = zoomate::plan::Plan::resolve(config.clone()).unwrap();

    // The runtime runs on a thread of its own, with ONE worker; the test thread only waits for
    // its verdict, so a worker blocked inside GStreamer fails the test instead of hanging it.
    let (verdict_tx, verdict) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = rt.block_on(async move {
            let shutdown = zoomate::Shutdown::new();
            let registry = zoomate::stream::StreamRegistry::new(
                Arc::new(config),
                zoomate::app::silent_announcer(),
                shutdown.clone(),
            );
            // Another task on the same worker: it must keep running throughout.
            let ticks = Arc::new(AtomicU64::new(0));
            let t = ticks.clone();
            tokio::spawn(async move {
                loop {
                    t.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            registry.start_configured(plan.streams[0].clone());
            let metrics = || {
                let mut r = zoomate::http::metrics::Registry::default();
                registry.register_metrics(&mut r);
                zoomate::http::metrics::encode(&[&r])
            };
            let fired = |text: &str, phase: &str| -> u64 {
                let series = format!("zoomate_watchdog_fired_total{{phase=\"{phase}\"}} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
                    .unwrap_or(0)
            };
            // Two sessions stalled and had their stuck teardown abandoned: the stream was
            // restarted with a fresh pipeline while the first one still hangs (10 minutes).
            let mut ticks_at_first_abandon = None;
            loop {
                let text = metrics();
                let abandoned = fired(&text, "tearing_down");
                if abandoned >= 1 && ticks_at_first_abandon.is_none() {
                    ticks_at_first_abandon = Some(ticks.load(Ordering::Relaxed));
                }
                if abandoned >= 2 {
                    let stalled = fired(&text, "running") + fired(&text, "starting");
                    let health = registry.health().health("stuck");
                    shutdown.cancel();
                    return (
                        stalled,
                        abandoned,
                        health,
                        ticks_at_first_abandon,
                        ticks.load(Ordering::Relaxed),
                        text,
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let _ = verdict_tx.send(outcome);
        // The abandoned pipelines still sleep in their threads: leave the runtime without
        // waiting for them (nothing of ours is blocked on them).
        rt.shutdown_background();
    });
    let (stalled, abandoned, health, ticks_then, ticks_now, text) =
        verdict.recv_timeout(Duration::from_secs(40)).expect(
            "within 40 s, two sessions should have stalled and had their stuck teardown \
             abandoned (a session waiting for its teardown, or a worker blocked in it, fails here)",
        );
    assert!(
        stalled >= 2,
        "the stall watchdog fired per session:\n{text}"
    );
    assert!(abandoned >= 2, "{text}");
    assert!(
        matches!(
            health,
            Some(zoomate::stream::Health::Unhealthy {
                reason: zoomate::stream::UnhealthyReason::Stalled,
                ..
            })
        ),
        "{health:?}"
    );
    assert!(
        ticks_now > ticks_then.unwrap_or(u64::MAX),
        "the other task on the one worker kept running while teardowns were stuck"
    );
}

/// A tmpfs of `size_mib` mounted on `dir` for the test's lifetime (root needed: `sudo -n`
/// otherwise; no way to mount fails the test loudly).
struct SmallDisk {
    dir: PathBuf,
    sudo: bool,
}

impl SmallDisk {
    fn mount(dir: &Path, size_mib: u32) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let sudo = !root;
        if sudo {
            let ok = Command::new("sudo")
                .args(["-n", "true"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "this test mounts a small tmpfs to fill it: run it as root or with passwordless sudo"
            );
        }
        let mut cmd = Command::new(if sudo { "sudo" } else { "mount" });
        if sudo {
            cmd.args(["-n", "mount"]);
        }
        let status = cmd
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed",
            dir.display()
        );
        if sudo {
            // Let the (unprivileged) zoomate write there.
            let _ = Command::new("sudo")
                .args(["-n", "chmod", "1777"])
                .arg(dir)
                .status();
        }
        SmallDisk {
            dir: dir.to_path_buf(),
            sudo,
        }
    }

    /// Keeps the file system full with `name` (topped up every 20 ms: a failing session frees
    /// its staging files) until the returned guard is dropped, which deletes the filler.
    fn keep_full(&self, name: &str) -> Filler {
        let path = self.dir.join(name);
        assert!(fill(&path) > 0, "the filler found no space");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (path.clone(), stop.clone());
        let topper = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                fill(&p);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Filler {
            path,
            stop,
            topper: Some(topper),
        }
    }
}

/// A filler keeping a file system full; dropping it frees the space at once.
struct Filler {
    path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    topper: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.topper.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Appends to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("filler");
        let chunk = vec![0x55u8; 256 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "filler: {e}");
                    break;
                }
            }
        }
        written
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let mut cmd = Command::new(if self.sudo { "sudo" } else { "umount" });
        if self.sudo {
            cmd.args(["-n", "umount"]);
        }
        let _ = cmd.arg("-l").arg(&self.dir).status();
    }
}

/// Series value, 0 when absent.
fn series(z: &Zoomate, name: &str) -> f64 {
    metric(z.origin.unwrap(), name).unwrap_or(0.0)
}

/// A listed file of a playlist, checked whole: every segment is read by ffprobe (CMAF: after
/// its init segment), every part exists and is non-empty.
fn check_listed(store: &Path, stream: &str, rendition: &str, text: &str, scratch: &Path) {
    let dir = store.join("live").join(stream).join(rendition);
    let mut init: Option<PathBuf> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            init = Some(dir.join(rest.trim_end_matches('"')));
        } else if let Some(rest) = line.strip_prefix("#EXT-X-PART:") {
            let uri = rest
                .split("URI=\"")
                .nth(1)
                .and_then(|u| u.split('"').next())
                .expect("part URI");
            let len = std::fs::metadata(dir.join(uri)).map(|m| m.len());
            assert!(
                matches!(len, Ok(n) if n > 0),
                "{stream}/{rendition}: part {uri} listed but {len:?}"
            );
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let file = dir.join(line.trim());
            assert!(
                file.exists(),
                "{stream}/{rendition}: {line} listed but missing"
            );
            let probe_path = match &init {
                Some(init) => {
                    let joined = scratch.join("joined.mp4");
                    let mut bytes = std::fs::read(init).expect("init segment listed");
                    bytes.extend(std::fs::read(&file).unwrap());
                    std::fs::write(&joined, bytes).unwrap();
                    joined
                }
                None => file.clone(),
            };
            let probe = ffprobe(&probe_path, &["-count_packets"]);
            let packets: u64 = probe["streams"][0]["nb_read_packets"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if packets == 0 {
                let keep = std::env::temp_dir()
                    .join(format!("faults-{stream}-{rendition}-{}", line.trim()));
                let _ = std::fs::copy(&probe_path, &keep);
                panic!(
                    "{stream}/{rendition}: {line} listed but has no packets ({} bytes, kept as {}): {probe}\n{text}",
                    std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0),
                    keep.display()
                );
            }
        }
    }
}

fn playlist(z: &Zoomate, stream: &str, rendition: &str) -> Option<String> {
    let r = get(
        z.origin.unwrap(),
        &format!("/live/{stream}/{rendition}/index.m3u8"),
    );
    (r.status == 200).then(|| r.text())
}

/// Media sequence of the newest listed segment.
fn newest(text: &str) -> Option<u64> {
    let v = parse_media_playlist(text);
    (!v.segments.is_empty()).then(|| v.media_sequence + v.segments.len() as u64 - 1)
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_full_disk_marks_streams_unhealthy_lists_nothing_half_written_and_they_resume() {
    require_tool("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("store"), 16);
    // Retention past the test: the janitor frees nothing, so only the filler decides the space.
    let extra = format!(
        "{SMALL_LADDER}\n[hls]\nretain_after_window_ms = 600000\nwindow_segments = 30\n\
         [pipelines]\nstall_timeout_ms = 4000\n\
         [[streams]]\nname = \"ts\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\nformat = \"ts\"\n\
         [[streams]]\nname = \"cmaf\"\nsource = \"test-pattern\"\nwidth = 320\nheight = 180\nformat = \"cmaf\"\n"
    );
    let mut z = Zoomate::start_in(dir, "origin", &extra);
    let store = z.store();
    // An RTMP publisher too: ffmpeg does not reconnect, so its stream comes back only if the
    // publisher is kept connected through the full disk (before, its session ended and ffmpeg
    // with it).
    let mut publisher = KillOnDrop(ffmpeg_publish(&z.rtmp_url("pub"), "320x180", 600, 30));
    let renditions: [(&str, &[&str]); 3] = [
        ("ts", &["180p"]),
        ("cmaf", &["180p", "audio"]),
        ("pub", &["180p"]),
    ];
    let listed = |z: &Zoomate| -> Vec<Option<u64>> {
        renditions
            .iter()
            .flat_map(|(s, rs)| {
                rs.iter()
                    .map(move |r| playlist(z, s, r).as_deref().and_then(newest))
            })
            .collect()
    };
    wait_for(
        Duration::from_secs(30),
        "every stream listing segments",
        || {
            listed(&z)
                .iter()
                .all(|n| n.is_some_and(|n| n >= 1))
                .then_some(())
        },
    );

    let mut recoveries = Vec::new();
    const CYCLES: usize = 3;
    for cycle in 0..CYCLES {
        let filler = format!("filler-{cycle}");
        let errors_before = series(&z, "zoomate_store_write_errors_total{reason=\"no_space\"}");
        let filled = disk.keep_full(&filler);
        for stream in ["ts", "cmaf", "pub"] {
            wait_for(
                Duration::from_secs(20),
                &format!("cycle {cycle}: {stream} marked unhealthy"),
                || {
                    (series(
                        &z,
                        &format!("zoomate_stream_healthy{{stream=\"{stream}\"}}"),
                    ) == 0.0)
                        .then_some(())
                },
            );
        }
        // While the disk stays full every restart fails too (the original bug: a pipeline
        // restarted on a full disk hung for good): wait for a failed restart of each stream.
        wait_for(
            Duration::from_secs(20),
            &format!("cycle {cycle}: restarts failing on the full disk"),
            || {
                (series(&z, "zoomate_store_write_errors_total{reason=\"no_space\"}")
                    >= errors_before + 6.0)
                    .then_some(())
            },
        );
        let health = get(z.origin.unwrap(), "/streams");
        assert_eq!(health.status, 200);
        let health: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
        assert_eq!(
            health["streams"].as_array().map(Vec::len),
            Some(3),
            "every stream reported, the published one too: {health}"
        );
        for s in health["streams"].as_array().unwrap() {
            assert_eq!(s["health"], "unhealthy", "{health}");
            assert_eq!(s["reason"], "store_full", "{health}");
        }
        // The process answers, and nothing listed is missing or partial.
        assert_eq!(get(z.origin.unwrap(), "/healthz").status, 200);
        let at_full = listed(&z);
        for (stream, rs) in renditions {
            for r in rs {
                let text = playlist(&z, stream, r).expect("playlist still served");
                check_listed(&store, stream, r, &text, scratch.path());
            }
        }

        // Space returns: every stream lists new segments again.
        drop(filled);
        let freed = Instant::now();
        let mut first_new = vec![None; at_full.len()];
        wait_for(
            Duration::from_secs(30),
            &format!("cycle {cycle}: new segments after space returned"),
            || {
                for (i, n) in listed(&z).into_iter().enumerate() {
                    if first_new[i].is_none() && n > at_full[i] {
                        first_new[i] = Some(freed.elapsed());
                    }
                }
                first_new.iter().all(Option::is_some).then_some(())
            },
        );
        let recovered = first_new.iter().flatten().max().copied().unwrap();
        println!(
            "cycle {cycle}: time to recover {:.2} s (per rendition: {:?})",
            recovered.as_secs_f64(),
            first_new
        );
        recoveries.push(recovered);
        assert!(
            publisher.0.try_wait().unwrap().is_none(),
            "cycle {cycle}: the RTMP publisher is still connected"
        );
        for stream in ["ts", "cmaf", "pub"] {
            wait_for(
                Duration::from_secs(10),
                &format!("cycle {cycle}: {stream} healthy again"),
                || {
                    (series(
                        &z,
                        &format!("zoomate_stream_healthy{{stream=\"{stream}\"}}"),
                    ) == 1.0)
                        .then_some(())
                },
            );
        }
        for (i, (stream, rendition)) in renditions
            .iter()
            .flat_map(|(s, rs)| rs.iter().map(move |r| (*s, *r)))
            .enumerate()
        {
            let text = playlist(&z, stream, rendition).unwrap();
            let view = parse_media_playlist(&text);
            // What was skipped while the disk was full is marked: a segment after the ones
            // served at the time starts a discontinuity (a fragment closed before the failure
            // may be listed first, once its playlist can be written).
            let first_after = at_full[i].unwrap() + 1;
            let skip = (first_after - view.media_sequence) as usize;
            assert!(
                view.segments.iter().skip(skip).any(|s| s.2),
                "{stream}/{rendition}: a discontinuity after segment {}:\n{text}",
                first_after - 1
            );
            check_listed(&store, stream, rendition, &text, scratch.path());
        }
    }

    // One log line per unhealthy episode and stream, not one per failed restart or part.
    let log = strip_ansi(&z.log());
    for stream in ["ts", "cmaf", "pub"] {
        let episodes = log
            .lines()
            .filter(|l| l.contains("stream unhealthy") && l.contains(&format!("stream={stream} ")))
            .count();
        assert_eq!(
            episodes, CYCLES,
            "{stream}: one 'stream unhealthy' line per full-disk episode"
        );
        assert!(log.contains("reason=\"store_full\"") || log.contains("reason=store_full"));
    }
    let mut sorted = recoveries.clone();
    sorted.sort();
    println!(
        "time to recover from a full disk (space freed -> first new segment listed, every rendition), {CYCLES} cycles: min {:.2} s, median {:.2} s, max {:.2} s",
        sorted[0].as_secs_f64(),
        sorted[CYCLES / 2].as_secs_f64(),
        sorted[CYCLES - 1].as_secs_f64()
    );
    drop(publisher);
    let status = z.terminate(Duration::from_secs(20));
    assert!(status.success(), "log:\n{}", z.log());
    drop(disk);
}
