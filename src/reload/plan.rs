//! What a configuration reload may change, decided from the running and the new config. Pure:
//! two [`Config`]s in, a [`ReloadPlan`] out (the next running config, the live changes to
//! apply, the keys that need a restart), unit-tested without a process.
//!
//! Live: `log.level`; `ladder.renditions`, `ladder.video_encoder`, `ladder.audio_encoder`,
//! `ladder.audio_bitrate_kbps` (streams starting from now on; running sessions keep theirs);
//! `rtmp.stream_keys` (the next publish request; live publishers stay); `edge.origins`;
//! `edge.cache_bytes`. Everything else (listeners, bus, store, timing that playlists already
//! carry such as `ladder.segment_duration_ms`) needs a restart: it is reported and left as
//! it runs, never applied half-way.

use crate::config::{Config, ConfigError};

/// One change a reload applies to the running process.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveChange {
    LogLevel(String),
    /// The ladder's live fields (the rest stay as they run).
    Ladder(crate::config::LadderConfig),
    StreamKeys,
    StaticOrigins(Vec<String>),
    CacheBytes(u64),
}

impl LiveChange {
    /// The config key it changes.
    pub fn key(&self) -> &'static str {
        match self {
            LiveChange::LogLevel(_) => "log.level",
            LiveChange::Ladder(_) => "ladder",
            LiveChange::StreamKeys => "rtmp.stream_keys",
            LiveChange::StaticOrigins(_) => "edge.origins",
            LiveChange::CacheBytes(_) => "edge.cache_bytes",
        }
    }
}

/// What a reload does.
#[derive(Debug, Clone)]
pub struct ReloadPlan {
    /// The running config with every live change applied: what runs after the reload.
    pub next: Config,
    pub changes: Vec<LiveChange>,
    /// Keys (or sections) that differ but cannot change live: ignored until a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Compares `running` with `new` (already parsed and validated like a config at start).
/// The next config is validated again as a whole, as the mix of old and new could in
/// principle break a cross-field rule.
pub fn plan(running: &Config, new: &Config) -> Result<ReloadPlan, ConfigError> {
    let mut next = running.clone();
    let mut changes = Vec::new();
    let mut needs_restart = Vec::new();

    if new.log.level != running.log.level {
        next.log.level = new.log.level.clone();
        changes.push(LiveChange::LogLevel(new.log.level.clone()));
    }
    if new.log.format != running.log.format {
        needs_restart.push("log.format");
    }

    let (r, n) = (&running.ladder, &new.ladder);
    for (key, differs) in [
        (
            "ladder.segment_duration_ms",
            r.segment_duration_ms != n.segment_duration_ms,
        ),
        ("ladder.frame_rate", r.frame_rate != n.frame_rate),
        ("ladder.format", r.format != n.format),
    ] {
        if differs {
            needs_restart.push(key);
        }
    }
    let mut ladder = r.clone();
    ladder.renditions = n.renditions.clone();
    ladder.video_encoder = n.video_encoder.clone();
    ladder.audio_encoder = n.audio_encoder.clone();
    ladder.audio_bitrate_kbps = n.audio_bitrate_kbps;
    if ladder != *r {
        next.ladder = ladder.clone();
        changes.push(LiveChange::Ladder(ladder));
    }

    if new.rtmp.stream_keys != running.rtmp.stream_keys {
        next.rtmp.stream_keys = new.rtmp.stream_keys.clone();
        changes.push(LiveChange::StreamKeys);
    }
    let mut rtmp = new.rtmp.clone();
    rtmp.stream_keys = running.rtmp.stream_keys.clone();
    if rtmp != running.rtmp {
        needs_restart.push("rtmp");
    }

    if new.edge.origins != running.edge.origins {
        next.edge.origins = new.edge.origins.clone();
        changes.push(LiveChange::StaticOrigins(new.edge.origins.clone()));
    }
    if new.edge.cache_bytes != running.edge.cache_bytes {
        next.edge.cache_bytes = new.edge.cache_bytes;
        changes.push(LiveChange::CacheBytes(new.edge.cache_bytes));
    }
    let mut edge = new.edge.clone();
    edge.origins = running.edge.origins.clone();
    edge.cache_bytes = running.edge.cache_bytes;
    if edge != running.edge {
        needs_restart.push("edge");
    }

    // Every section is named here: a new one fails to compile until it is sorted into live or
    // needs-restart.
    let Config {
        log: _,
        origin: _,
        rtmp: _,
        ladder: _,
        hls: _,
        store: _,
        pipelines: _,
        bus: _,
        edge: _,
        vod: _,
        api: _,
        webrtc: _,
        streams: _,
    } = new;
    for (key, differs) in [
        ("api", new.api != running.api),
        ("webrtc", new.webrtc != running.webrtc),
        ("origin", new.origin != running.origin),
        ("hls", new.hls != running.hls),
        ("store", new.store != running.store),
        ("pipelines", new.pipelines != running.pipelines),
        ("bus", new.bus != running.bus),
        ("vod", new.vod != running.vod),
        ("streams", new.streams != running.streams),
    ] {
        if differs {
            needs_restart.push(key);
        }
    }
    next.validate()?;
    Ok(ReloadPlan {
        next,
        changes,
        needs_restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(extra).expect("config")
    }

    #[test]
    fn an_unchanged_config_changes_nothing() {
        let c = config("");
        let p = plan(&c, &c).unwrap();
        assert!(p.changes.is_empty() && p.needs_restart.is_empty());
        assert_eq!(p.next, c);
    }

    #[test]
    fn live_keys_apply_and_the_rest_is_reported_not_applied() {
        let running = config("[rtmp.stream_keys]\ncam = \"aaaaaaaa\"\n");
        let new = config(
            "[log]\nlevel = \"debug\"\n[rtmp]\nmax_connections = 3\n[rtmp.stream_keys]\ncam = \"bbbbbbbb\"\n\
             [edge]\norigins = [\"http://10.0.0.1:8081\"]\ncache_bytes = 1048576\nlisten = \"127.0.0.1:9\"\n\
             [ladder]\nsegment_duration_ms = 4000\naudio_bitrate_kbps = 96\n\
             [pipelines]\nstall_timeout_ms = 20000\n",
        );
        let p = plan(&running, &new).unwrap();
        let keys: Vec<&str> = p.changes.iter().map(LiveChange::key).collect();
        assert_eq!(
            keys,
            [
                "log.level",
                "ladder",
                "rtmp.stream_keys",
                "edge.origins",
                "edge.cache_bytes"
            ]
        );
        assert_eq!(
            p.needs_restart,
            ["ladder.segment_duration_ms", "rtmp", "edge"]
        );
        // Applied: the live keys. Kept as running: everything that needs a restart.
        assert_eq!(p.next.log.level, "debug");
        assert_eq!(p.next.rtmp.stream_keys["cam"].expose(), "bbbbbbbb");
        assert_eq!(p.next.ladder.audio_bitrate_kbps, 96);
        assert_eq!(p.next.ladder.segment_duration_ms, 2000);
        assert_eq!(p.next.rtmp.max_connections, running.rtmp.max_connections);
        assert_eq!(p.next.edge.listen, running.edge.listen);
        assert_eq!(p.next.edge.cache_bytes, 1048576);
        match &p.changes[1] {
            LiveChange::Ladder(l) => assert_eq!(l.segment_duration_ms, 2000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn renditions_change_live() {
        let running = config("");
        let new = config(
            "[[ladder.renditions]]\nname = \"180p\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 150\n",
        );
        let p = plan(&running, &new).unwrap();
        assert_eq!(p.needs_restart, Vec::<&str>::new());
        assert_eq!(p.next.ladder.renditions.len(), 1);
    }
}
