//! Config → plan: the validated serde tree resolved, once, into what the roles run. Resolving
//! may read files (a stream's SDP is read and checked here, and only here: a restart of the
//! source does not read it again), so it is kept out of [`crate::config`], which stays a pure
//! tree with its checks. Every problem of both steps is reported at once, before any port is
//! bound.

use crate::config::{
    Config, ConfigError, DEFAULT_JITTER_LATENCY_MS, DEFAULT_SILENCE_TIMEOUT_MS,
    DEFAULT_SRT_LATENCY_MS, RtpOptions, SourceKind, SrtOptions, StreamConfig, StreamSource,
};

/// A configured stream with its source resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStream {
    /// Its place in `[[streams]]` (for error messages).
    pub index: usize,
    pub config: StreamConfig,
    pub source: StreamSource,
}

/// What `zoomate run`/`origin`/`edge` start from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: Config,
    pub streams: Vec<PlannedStream>,
}

impl Plan {
    /// Validates `config` and resolves every configured stream's source.
    pub fn resolve(config: Config) -> Result<Plan, ConfigError> {
        let mut errors = Vec::new();
        errors.extend(config.validate().err());
        let mut streams = Vec::new();
        for (index, sc) in config.streams.iter().enumerate() {
            match resolve_source(sc, index) {
                Ok(source) => streams.push(PlannedStream {
                    index,
                    config: sc.clone(),
                    source,
                }),
                Err(e) => errors.push(e),
            }
        }
        // One UDP port, one stream: a second listener on it would fail to bind at run time.
        let mut ports = std::collections::BTreeMap::new();
        for p in &streams {
            let listen = match &p.source {
                StreamSource::RtpMpegts { listen, .. } | StreamSource::Srt { listen, .. } => listen,
                _ => continue,
            };
            if let Some(first) = ports.insert(*listen, p.index) {
                errors.push(ConfigError::invalid(
                    format!("streams[{}].listen", p.index),
                    listen,
                    format!("already the listen address of streams[{first}]"),
                ));
            }
        }
        ConfigError::all(errors)?;
        Ok(Plan { config, streams })
    }
}

/// The typed source of `[[streams]]` entry `index`, or the key that is missing or wrong. For
/// `rtp-sdp` this reads and checks the SDP file.
pub fn resolve_source(sc: &StreamConfig, index: usize) -> Result<StreamSource, ConfigError> {
    let key = |k: &str| format!("streams[{index}].{k}");
    let silence = || -> Result<u64, ConfigError> {
        let silence_timeout_ms = sc.silence_timeout_ms.unwrap_or(DEFAULT_SILENCE_TIMEOUT_MS);
        if !(500..=600_000).contains(&silence_timeout_ms) {
            return Err(ConfigError::invalid(
                key("silence_timeout_ms"),
                silence_timeout_ms,
                "must be 500..=600000",
            ));
        }
        Ok(silence_timeout_ms)
    };
    let rtp = || -> Result<RtpOptions, ConfigError> {
        let silence_timeout_ms = silence()?;
        let jitter_latency_ms = sc.jitter_latency_ms.unwrap_or(DEFAULT_JITTER_LATENCY_MS);
        if jitter_latency_ms > 5_000 {
            return Err(ConfigError::invalid(
                key("jitter_latency_ms"),
                jitter_latency_ms,
                "must be 0..=5000",
            ));
        }
        Ok(RtpOptions {
            silence_timeout_ms,
            jitter_latency_ms,
        })
    };
    // Keys of one source kind set on another: named, with the kinds that take them.
    if sc.source != SourceKind::Srt {
        for (k, set) in [
            ("latency_ms", sc.latency_ms.is_some()),
            ("passphrase", sc.passphrase.is_some()),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    key(k),
                    "(set)",
                    "only for srt sources",
                ));
            }
        }
    }
    match sc.source {
        SourceKind::Srt => {
            for (k, set, why) in [
                ("sdp", sc.sdp.is_some(), "only for rtp-sdp sources"),
                (
                    "jitter_latency_ms",
                    sc.jitter_latency_ms.is_some(),
                    "only for rtp sources (srt takes latency_ms)",
                ),
                ("width", sc.width.is_some(), "only for test-pattern sources"),
                (
                    "height",
                    sc.height.is_some(),
                    "only for test-pattern sources",
                ),
            ] {
                if set {
                    return Err(ConfigError::invalid(key(k), "(set)", why));
                }
            }
            let Some(listen) = sc.listen else {
                return Err(ConfigError::invalid(
                    key("listen"),
                    "",
                    "srt needs listen = \"HOST:PORT\"",
                ));
            };
            if listen.port() == 0 {
                return Err(ConfigError::invalid(key("listen"), listen, "needs a port"));
            }
            let latency_ms = sc.latency_ms.unwrap_or(DEFAULT_SRT_LATENCY_MS);
            if !(20..=8_000).contains(&latency_ms) {
                return Err(ConfigError::invalid(
                    key("latency_ms"),
                    latency_ms,
                    "must be 20..=8000",
                ));
            }
            if let Some(p) = &sc.passphrase
                && let Err(why) = crate::ingest::srt::check_passphrase(p.expose())
            {
                // The passphrase itself is a secret: never echoed.
                return Err(ConfigError::invalid(key("passphrase"), "(hidden)", why));
            }
            Ok(StreamSource::Srt {
                listen,
                srt: SrtOptions {
                    latency_ms,
                    passphrase: sc.passphrase.clone(),
                },
                silence_timeout_ms: silence()?,
            })
        }
        SourceKind::TestPattern => {
            for (k, set) in [
                ("listen", sc.listen.is_some()),
                ("sdp", sc.sdp.is_some()),
                ("silence_timeout_ms", sc.silence_timeout_ms.is_some()),
                ("jitter_latency_ms", sc.jitter_latency_ms.is_some()),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        key(k),
                        "(set)",
                        "only for network sources (rtp-mpegts, rtp-sdp, srt)",
                    ));
                }
            }
            let (width, height) = (sc.width.unwrap_or(1280), sc.height.unwrap_or(720));
            for (k, v) in [("width", width), ("height", height)] {
                if !(16..=7680).contains(&v) || v % 2 != 0 {
                    return Err(ConfigError::invalid(
                        key(k),
                        v,
                        "must be even and 16..=7680",
                    ));
                }
            }
            Ok(StreamSource::TestPattern { width, height })
        }
        SourceKind::RtpMpegts if sc.sdp.is_some() => Err(ConfigError::invalid(
            key("sdp"),
            "(set)",
            "only for rtp-sdp sources (rtp-mpegts takes listen)",
        )),
        SourceKind::RtpSdp if sc.listen.is_some() => Err(ConfigError::invalid(
            key("listen"),
            "(set)",
            "only for rtp-mpegts sources (rtp-sdp takes its ports from the SDP file)",
        )),
        SourceKind::RtpMpegts | SourceKind::RtpSdp if sc.width.is_some() || sc.height.is_some() => {
            Err(ConfigError::invalid(
                key(if sc.width.is_some() {
                    "width"
                } else {
                    "height"
                }),
                "(set)",
                "only for test-pattern sources (RTP picture size comes from the sender)",
            ))
        }
        SourceKind::RtpMpegts => match sc.listen {
            Some(listen) => Ok(StreamSource::RtpMpegts {
                listen,
                rtp: rtp()?,
            }),
            None => Err(ConfigError::invalid(
                key("listen"),
                "",
                "rtp-mpegts needs listen = \"HOST:PORT\"",
            )),
        },
        SourceKind::RtpSdp => {
            let Some(sdp) = sc.sdp.clone() else {
                return Err(ConfigError::invalid(
                    key("sdp"),
                    "",
                    "rtp-sdp needs sdp = \"path/to/stream.sdp\"",
                ));
            };
            // The path goes into a pipeline description between double quotes.
            if sdp.to_string_lossy().contains(['"', '\\']) {
                return Err(ConfigError::invalid(
                    key("sdp"),
                    sdp.display(),
                    "path must not contain '\"' or '\\'",
                ));
            }
            let text = std::fs::read_to_string(&sdp).map_err(|e| {
                ConfigError::invalid(key("sdp"), sdp.display(), format!("cannot read: {e}"))
            })?;
            let media = crate::ingest::rtp::describe_sdp(&text)
                .map_err(|reason| ConfigError::invalid(key("sdp"), sdp.display(), reason))?;
            Ok(StreamSource::RtpSdp {
                sdp,
                has_audio: media.audio.is_some(),
                rtp: rtp()?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan error for a config text that parses.
    fn plan_error(toml: &str) -> String {
        match Plan::resolve(Config::parse(toml).expect("parses")) {
            Ok(_) => panic!("resolved: {toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rtp_sdp_source_checks_its_file_and_options() {
        let cfg = |extra: &str| {
            plan_error(&format!(
                "[[streams]]\nname = \"cam\"\nsource = \"rtp-sdp\"\n{extra}"
            ))
        };
        let e = cfg("");
        assert!(e.contains("streams[0].sdp"), "{e}");
        let e = cfg("sdp = \"/nonexistent/cam.sdp\"\n");
        assert!(
            e.contains("streams[0].sdp")
                && e.contains("/nonexistent/cam.sdp")
                && e.contains("cannot read"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let sdp = dir.path().join("cam.sdp");
        std::fs::write(&sdp, "v=0\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n").unwrap();
        let e = cfg(&format!("sdp = \"{}\"\n", sdp.display()));
        assert!(e.contains("VP8 is not supported"), "{e}");
        std::fs::write(&sdp, "v=0\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n").unwrap();
        let e = cfg(&format!(
            "sdp = \"{}\"\nsilence_timeout_ms = 10\n",
            sdp.display()
        ));
        assert!(
            e.contains("streams[0].silence_timeout_ms") && e.contains("10"),
            "{e}"
        );
        let c = Config::parse(&format!(
            "[[streams]]\nname = \"cam\"\nsource = \"rtp-sdp\"\nsdp = \"{}\"\n",
            sdp.display()
        ))
        .unwrap();
        assert_eq!(
            resolve_source(&c.streams[0], 0).unwrap(),
            StreamSource::RtpSdp {
                sdp,
                has_audio: false,
                rtp: RtpOptions {
                    silence_timeout_ms: 5_000,
                    jitter_latency_ms: 200
                }
            }
        );
        let e = plan_error(
            "[[streams]]\nname = \"t\"\nsource = \"test-pattern\"\nsilence_timeout_ms = 900\n",
        );
        assert!(
            e.contains("streams[0].silence_timeout_ms") && e.contains("only for network"),
            "{e}"
        );
    }

    #[test]
    fn srt_source_checks_listen_latency_and_passphrase() {
        let srt = |extra: &str| format!("[[streams]]\nname = \"s\"\nsource = \"srt\"\n{extra}");
        let e = plan_error(&srt(""));
        assert!(e.contains("streams[0].listen"), "{e}");
        let e = plan_error(&srt("listen = \"127.0.0.1:9000\"\nlatency_ms = 5\n"));
        assert!(e.contains("streams[0].latency_ms = \"5\""), "{e}");
        let e = plan_error(&srt(
            "listen = \"127.0.0.1:9000\"\npassphrase = \"short\"\n",
        ));
        assert!(
            e.contains("streams[0].passphrase") && !e.contains("short\""),
            "{e}"
        );
        let e = plan_error(&srt(
            "listen = \"127.0.0.1:9000\"\njitter_latency_ms = 50\n",
        ));
        assert!(e.contains("streams[0].jitter_latency_ms"), "{e}");
        let e = plan_error(
            "[[streams]]\nname = \"t\"\nsource = \"rtp-mpegts\"\nlisten = \"127.0.0.1:9000\"\nlatency_ms = 100\n",
        );
        assert!(
            e.contains("streams[0].latency_ms") && e.contains("only for srt"),
            "{e}"
        );
        let e = plan_error(
            "[[streams]]\nname = \"a\"\nsource = \"srt\"\nlisten = \"127.0.0.1:9000\"\n\
             [[streams]]\nname = \"b\"\nsource = \"rtp-mpegts\"\nlisten = \"127.0.0.1:9000\"\n",
        );
        assert!(
            e.contains("streams[1].listen") && e.contains("streams[0]"),
            "{e}"
        );
        let c = Config::parse(&srt(
            "listen = \"127.0.0.1:9000\"\npassphrase = \"0123456789ab\"\nsilence_timeout_ms = 2000\n",
        ))
        .unwrap();
        assert_eq!(
            resolve_source(&c.streams[0], 0).unwrap(),
            StreamSource::Srt {
                listen: "127.0.0.1:9000".parse().unwrap(),
                srt: SrtOptions {
                    latency_ms: 120,
                    passphrase: Some("0123456789ab".into())
                },
                silence_timeout_ms: 2000,
            }
        );
    }
}
