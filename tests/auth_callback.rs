//! Issue #14: publish authorisation by HTTP callback (nginx-rtmp `on_publish` style), against
//! the real binary, a real HTTP callback service (scripts/auth_callback.py) and ffmpeg
//! publishers.

mod common;
use common::*;
use std::time::{Duration, Instant};

const ONE_RENDITION: &str = "[ladder]\nsegment_duration_ms = 1000\nformat = \"ts\"\n[[ladder.renditions]]\nname = \"180p\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 200\n";

/// The callback service; killed on drop.
struct Callback(std::process::Child, std::net::SocketAddr);

impl Callback {
    fn start() -> Callback {
        require_tool("python3");
        let port = free_port();
        let child = std::process::Command::new("python3")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/auth_callback.py"))
            .arg(port.to_string())
            .spawn()
            .expect("python3");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(Duration::from_secs(10), "callback listening", || {
            std::net::TcpStream::connect(addr).ok()
        });
        Callback(child, addr)
    }

    /// POSTs the service has had for `name`.
    fn calls(&self, name: &str) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&get(self.1, "/calls").text()).expect("json");
        v[name].as_u64().unwrap_or(0)
    }

    fn last(&self) -> serde_json::Value {
        serde_json::from_str(&get(self.1, "/last").text()).expect("json")
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an ffmpeg publish of `seconds` to completion; whether ffmpeg succeeded.
fn publish(z: &Zoomate, name: &str, seconds: u32) -> bool {
    let out = ffmpeg_publish(&z.rtmp_url(name), "320x180", seconds, 30)
        .wait_with_output()
        .expect("ffmpeg");
    out.status.success()
}

#[test]
fn the_callback_decides_publishes_fails_closed_and_its_answers_are_cached() {
    let cb = Callback::start();
    let z = Zoomate::start(
        "origin",
        &format!(
            "{ONE_RENDITION}\n[bus]\nenabled = false\n[rtmp.auth_callback]\nurl = \"http://{}/on_publish\"\ntimeout_ms = 500\ncache_ttl_ms = 60000\ncache_max_entries = 100\n",
            cb.1
        ),
    );
    let origin = z.origin.expect("origin http");

    // Allowed: the ladder appears, and the service was told who publishes what.
    let allowed = ffmpeg_publish(&z.rtmp_url("cam?key=letmein"), "320x180", 3, 30);
    wait_for(
        Duration::from_secs(20),
        "the allowed stream's playlist",
        || (get(origin, "/live/cam/180p/index.m3u8").status == 200).then_some(()),
    );
    assert!(allowed.wait_with_output().expect("ffmpeg").status.success());
    assert_eq!(cb.calls("cam"), 1);
    let last = cb.last();
    assert_eq!(last["call"], "publish");
    assert_eq!(last["app"], "live");
    assert_eq!(last["name"], "cam", "the bare name, without the query");
    assert_eq!(last["key"], "letmein");
    assert_eq!(last["addr"], "127.0.0.1");
    assert_eq!(last["protocol"], "rtmp");
    assert_eq!(last["content_type"], "application/x-www-form-urlencoded");

    // Denied (403): ffmpeg is refused, no stream.
    assert!(
        !publish(&z, "intruder?key=Wr0ngKey", 1),
        "a denied publish must fail"
    );
    assert_eq!(get(origin, "/live/intruder/master.m3u8").status, 404);
    assert_eq!(cb.calls("intruder"), 1);

    // A callback slower than timeout_ms: denied (fail closed), quickly.
    let started = Instant::now();
    assert!(
        !publish(&z, "slowcam?key=letmein", 1),
        "a timed-out callback must deny"
    );
    let took = started.elapsed();
    eprintln!("publish with a 3 s callback and a 500 ms timeout refused after {took:?}");
    assert_eq!(get(origin, "/live/slowcam/master.m3u8").status, 404);
    wait_for(Duration::from_secs(5), "the slow call to arrive", || {
        (cb.calls("slowcam") == 1).then_some(())
    });

    // Within the TTL the answers are reused: the allowed stream publishes again, the denied
    // one is refused again, and neither asks the service.
    z.wait_sessions_over("cam", 1);
    assert!(publish(&z, "cam?key=letmein", 2), "second allowed publish");
    assert!(!publish(&z, "intruder?key=Wr0ngKey", 1));
    assert_eq!(cb.calls("cam"), 1, "allowed answer cached");
    assert_eq!(cb.calls("intruder"), 1, "denied answer cached");
    // A timeout is not cached: the next attempt asks again.
    assert!(!publish(&z, "slowcam?key=letmein", 1));
    wait_for(Duration::from_secs(5), "the second slow call", || {
        (cb.calls("slowcam") == 2).then_some(())
    });

    let log = strip_ansi(&z.log());
    assert!(
        log.contains("denied by the auth callback (HTTP 403)"),
        "{log}"
    );
    assert!(log.contains("auth callback unavailable"), "{log}");
    assert!(
        !log.contains("letmein") && !log.contains("Wr0ngKey"),
        "keys are never logged"
    );
}
