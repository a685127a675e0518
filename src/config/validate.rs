//! The checks serde cannot make: ranges, names, cross-field rules. Every problem is collected
//! (see [`ConfigError::all`]), so one run lists them all.

use super::{Config, ConfigError, HttpLimits, MIN_MAX_HEADER_BYTES};

impl Config {
    /// Checks values serde cannot: ranges, names, cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let l = &self.ladder;
        check_range(
            &mut errors,
            "ladder.segment_duration_ms",
            l.segment_duration_ms,
            500..=10_000,
        );
        check_range(&mut errors, "ladder.frame_rate", l.frame_rate, 1..=120);
        check_range(
            &mut errors,
            "ladder.audio_bitrate_kbps",
            l.audio_bitrate_kbps,
            8..=512,
        );
        if l.renditions.is_empty() {
            errors.push(ConfigError::invalid(
                "ladder.renditions",
                "[]",
                "at least one rendition is required",
            ));
        }
        errors.extend(validate_template_name("ladder.video_encoder", &l.video_encoder).err());
        errors.extend(validate_template_name("ladder.audio_encoder", &l.audio_encoder).err());
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in l.renditions.iter().enumerate() {
            let key = |f: &str| format!("ladder.renditions[{i}].{f}");
            errors.extend(validate_name(&key("name"), &r.name).err());
            if r.name == crate::layout::AUDIO_RENDITION {
                errors.push(ConfigError::invalid(
                    key("name"),
                    &r.name,
                    "reserved for the audio rendition of CMAF streams",
                ));
            }
            if !seen.insert(r.name.clone()) {
                errors.push(ConfigError::invalid(
                    key("name"),
                    &r.name,
                    "duplicate rendition name",
                ));
            }
            if r.width < 16 || r.width > 7680 || r.width % 2 != 0 {
                errors.push(ConfigError::invalid(
                    key("width"),
                    r.width,
                    "must be even and 16..=7680",
                ));
            }
            if r.height < 16 || r.height > 4320 || r.height % 2 != 0 {
                errors.push(ConfigError::invalid(
                    key("height"),
                    r.height,
                    "must be even and 16..=4320",
                ));
            }
            check_range(
                &mut errors,
                key("video_bitrate_kbps"),
                r.video_bitrate_kbps,
                50..=100_000,
            );
        }
        if self.hls.window_segments < 3 {
            errors.push(ConfigError::invalid(
                "hls.window_segments",
                self.hls.window_segments,
                "must be at least 3",
            ));
        }
        if self.hls.window_segments > 10_000 {
            errors.push(ConfigError::invalid(
                "hls.window_segments",
                self.hls.window_segments,
                "must be at most 10000",
            ));
        }
        // Parts are at most half a segment; judged only against a segment duration that is
        // itself valid (its own error is reported above).
        if (500..=10_000).contains(&self.ladder.segment_duration_ms) {
            check_range(
                &mut errors,
                "hls.part_duration_ms",
                self.hls.part_duration_ms,
                100..=(self.ladder.segment_duration_ms / 2).min(1000),
            );
            let (part, kf, seg) = (
                self.hls.part_duration_ms.max(1),
                self.hls.keyframe_interval_ms,
                self.ladder.segment_duration_ms,
            );
            if self.hls.low_latency && (kf == 0 || kf % part != 0 || seg % kf != 0) {
                errors.push(ConfigError::invalid(
                    "hls.keyframe_interval_ms",
                    kf,
                    format!(
                        "must be a multiple of hls.part_duration_ms ({part}) that divides ladder.segment_duration_ms ({seg})"
                    ),
                ));
            }
            // A part is whole frames: 200 ms at 30 fps is 6, at 24 fps it would be 4.8.
            if self.hls.low_latency
                && (self.hls.part_duration_ms * u64::from(self.ladder.frame_rate)) % 1000 != 0
            {
                errors.push(ConfigError::invalid(
                    "hls.part_duration_ms",
                    self.hls.part_duration_ms,
                    format!(
                        "must be a whole number of frames at ladder.frame_rate = {}: a multiple of {} ms",
                        self.ladder.frame_rate,
                        1000 / gcd(1000, u64::from(self.ladder.frame_rate.max(1)))
                    ),
                ));
            }
        }
        check_range(
            &mut errors,
            "hls.max_held_requests",
            self.hls.max_held_requests,
            1..=1_000_000,
        );
        check_range(
            &mut errors,
            "hls.max_held_requests_per_stream",
            self.hls.max_held_requests_per_stream,
            1..=self.hls.max_held_requests.max(1),
        );
        errors.extend(validate_name("origin.id", &self.origin.id).err());
        if !self.origin.public_url.is_empty()
            && !(self.origin.public_url.starts_with("http://")
                || self.origin.public_url.starts_with("https://"))
        {
            errors.push(ConfigError::invalid(
                "origin.public_url",
                &self.origin.public_url,
                "must start with http:// or https://",
            ));
        }
        errors.extend(validate_limits("origin.limits", &self.origin.limits).err());
        self.webrtc.validate(&mut errors);
        let r = &self.rtmp;
        errors.extend(validate_name("rtmp.app", &r.app).err());
        if r.max_connections == 0 {
            errors.push(ConfigError::invalid(
                "rtmp.max_connections",
                r.max_connections,
                "must be at least 1",
            ));
        }
        if r.handshake_timeout_ms == 0 {
            errors.push(ConfigError::invalid(
                "rtmp.handshake_timeout_ms",
                r.handshake_timeout_ms,
                "must be > 0",
            ));
        }
        if r.idle_timeout_ms == 0 {
            errors.push(ConfigError::invalid(
                "rtmp.idle_timeout_ms",
                r.idle_timeout_ms,
                "must be > 0",
            ));
        }
        check_range(
            &mut errors,
            "rtmp.max_message_bytes",
            r.max_message_bytes,
            4096..=256 * 1024 * 1024,
        );
        if !(1024..=r.max_message_bytes).contains(&r.max_unpublished_message_bytes) {
            errors.push(ConfigError::invalid(
                "rtmp.max_unpublished_message_bytes",
                r.max_unpublished_message_bytes,
                "must be at least 1024 (a connect command) and at most rtmp.max_message_bytes",
            ));
        }
        check_range(
            &mut errors,
            "rtmp.max_handshakes",
            r.max_handshakes,
            1..=100_000,
        );
        check_range(
            &mut errors,
            "rtmp.max_connections_per_address",
            r.max_connections_per_address,
            1..=100_000,
        );
        // A queue must take the largest message as one FLV tag, and the whole budget one
        // publisher at its fullest (a message in the parser, its queue full).
        let largest_tag = u64::from(r.max_message_bytes)
            + (crate::ingest::flv::TAG_HEADER_BYTES + crate::ingest::flv::PREVIOUS_TAG_SIZE_BYTES)
                as u64;
        if u64::from(r.max_publisher_queue_bytes) < largest_tag {
            errors.push(ConfigError::invalid(
                "rtmp.max_publisher_queue_bytes",
                r.max_publisher_queue_bytes,
                format!(
                    "must hold the largest message as an FLV tag: at least rtmp.max_message_bytes + 15 = {largest_tag}"
                ),
            ));
        }
        let one_publisher = u64::from(r.max_message_bytes) + u64::from(r.max_publisher_queue_bytes);
        if !(one_publisher..=1 << 40).contains(&r.max_ingest_bytes) {
            errors.push(ConfigError::invalid(
                "rtmp.max_ingest_bytes",
                r.max_ingest_bytes,
                format!(
                    "must fit one publisher at its fullest (rtmp.max_message_bytes + rtmp.max_publisher_queue_bytes = {one_publisher}) and be at most 2^40"
                ),
            ));
        }
        check_range(
            &mut errors,
            "rtmp.auth_failures_before_backoff",
            r.auth_failures_before_backoff,
            0..=100,
        );
        check_range(
            &mut errors,
            "rtmp.auth_backoff_initial_ms",
            r.auth_backoff_initial_ms,
            1..=3_600_000,
        );
        check_range(
            &mut errors,
            "rtmp.auth_backoff_max_ms",
            r.auth_backoff_max_ms,
            r.auth_backoff_initial_ms..=86_400_000,
        );
        check_range(
            &mut errors,
            "rtmp.auth_forget_after_ms",
            r.auth_forget_after_ms,
            r.auth_backoff_max_ms..=7 * 86_400_000,
        );
        check_range(
            &mut errors,
            "rtmp.auth_max_addresses",
            r.auth_max_addresses,
            1..=1_000_000,
        );
        let cb = &r.auth_callback;
        if !cb.url.is_empty() {
            let parsed = cb.url.parse::<http::Uri>().ok();
            let plain_http = parsed.as_ref().is_some_and(|u| {
                u.scheme_str() == Some("http") && u.host().is_some_and(|h| !h.is_empty())
            });
            if !plain_http {
                errors.push(ConfigError::invalid(
                    "rtmp.auth_callback.url",
                    &cb.url,
                    "must be http://HOST[:PORT]/PATH (or empty for no callback)",
                ));
            }
        }
        check_range(
            &mut errors,
            "rtmp.auth_callback.timeout_ms",
            cb.timeout_ms,
            50..=r.handshake_timeout_ms.max(50),
        );
        check_range(
            &mut errors,
            "rtmp.auth_callback.cache_ttl_ms",
            cb.cache_ttl_ms,
            0..=86_400_000,
        );
        check_range(
            &mut errors,
            "rtmp.auth_callback.cache_max_entries",
            cb.cache_max_entries,
            1..=1_000_000,
        );
        for stream in r.stream_formats.keys() {
            errors.extend(validate_name(&format!("rtmp.stream_formats.{stream}"), stream).err());
        }
        for (stream, key) in &r.stream_keys {
            errors.extend(validate_name(&format!("rtmp.stream_keys.{stream}"), stream).err());
            if key.len() < 8 {
                // The value is a secret: name the stream, never echo the key.
                errors.push(ConfigError::invalid(
                    format!("rtmp.stream_keys.{stream}"),
                    "<redacted>",
                    "key must be at least 8 characters",
                ));
            }
        }
        // The filter the logger is built from at start and on reload: a typo is an error, not
        // a silent fall-back to `info`.
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errors.push(ConfigError::invalid(
                "log.level",
                &self.log.level,
                e.to_string(),
            ));
        }
        if self.store.dir.as_os_str().is_empty() {
            errors.push(ConfigError::invalid("store.dir", "", "must not be empty"));
        }
        if self.pipelines.eos_timeout_ms == 0 {
            errors.push(ConfigError::invalid(
                "pipelines.eos_timeout_ms",
                0,
                "must be > 0",
            ));
        }
        check_range(
            &mut errors,
            "pipelines.state_change_timeout_ms",
            self.pipelines.state_change_timeout_ms,
            100..=60_000,
        );
        if self.pipelines.stall_timeout_ms < 2 * l.segment_duration_ms {
            errors.push(ConfigError::invalid(
                "pipelines.stall_timeout_ms",
                self.pipelines.stall_timeout_ms,
                "must be at least twice ladder.segment_duration_ms",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            errors.extend(validate_name(&format!("streams[{i}].name"), &s.name).err());
            if !names.insert(s.name.clone()) {
                errors.push(ConfigError::invalid(
                    format!("streams[{i}].name"),
                    &s.name,
                    "duplicate stream name",
                ));
            }
            if s.timing == super::StreamTiming::Wallclock {
                // The first segment comes up to one start step (the wait for a boundary) plus
                // one segment after the ladder starts: a stall watchdog shorter than that
                // would restart the session before it could ever list a segment.
                let first_segment_ms =
                    crate::transcode::wallclock::longest_start_wait_ms(l.segment_duration_ms)
                        + l.segment_duration_ms;
                if self.pipelines.stall_timeout_ms <= first_segment_ms {
                    errors.push(ConfigError::invalid(
                        "pipelines.stall_timeout_ms",
                        self.pipelines.stall_timeout_ms,
                        format!(
                            "must exceed {first_segment_ms} with streams[{i}].timing = \"wallclock\" (the wait for the first wall-clock boundary plus one segment)"
                        ),
                    ));
                }
                // Wall-clock boundaries must fall on frames, or two origins could cut at
                // different frames of the same instant.
                let fps = l.frame_rate as u64;
                if !(l.segment_duration_ms * fps).is_multiple_of(1000) {
                    errors.push(ConfigError::invalid(
                        format!("streams[{i}].timing"),
                        "wallclock",
                        format!(
                            "needs ladder.segment_duration_ms ({}) to be a whole number of frames at ladder.frame_rate {fps}",
                            l.segment_duration_ms
                        ),
                    ));
                }
                if self.part_duration_for(&s.name).is_some()
                    && !(self.hls.part_duration_ms * fps).is_multiple_of(1000)
                {
                    errors.push(ConfigError::invalid(
                        format!("streams[{i}].timing"),
                        "wallclock",
                        format!(
                            "needs hls.part_duration_ms ({}) to be a whole number of frames at ladder.frame_rate {fps}",
                            self.hls.part_duration_ms
                        ),
                    ));
                }
            }
        }
        errors.extend(self.bus.validate().err());
        errors.extend(self.edge.validate(self.bus.allow_insecure_network).err());
        self.api.validate(&mut errors);
        ConfigError::all(errors)
    }
}

/// The one range check: `value` must lie in `range`; else an error naming `key`, the value and
/// the range.
fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub(crate) fn check_range<T: PartialOrd + std::fmt::Display>(
    errors: &mut Vec<ConfigError>,
    key: impl Into<String>,
    value: T,
    range: std::ops::RangeInclusive<T>,
) {
    if !range.contains(&value) {
        errors.push(ConfigError::invalid(
            key,
            &value,
            format!("must be {}..={}", range.start(), range.end()),
        ));
    }
}

pub(crate) fn validate_limits(prefix: &str, l: &HttpLimits) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    let key = |k: &str| format!("{prefix}.{k}");
    if l.max_connections == 0 {
        errors.push(ConfigError::invalid(
            key("max_connections"),
            l.max_connections,
            "must be at least 1",
        ));
    }
    // More than max_connections simply never binds (the default 256 stays valid when only
    // max_connections is lowered).
    check_range(
        &mut errors,
        key("max_connections_per_address"),
        l.max_connections_per_address,
        1..=1_000_000,
    );
    check_range(
        &mut errors,
        key("max_requests_per_connection"),
        l.max_requests_per_connection,
        1..=10_000_000,
    );
    if l.header_read_timeout_ms == 0 {
        errors.push(ConfigError::invalid(
            key("header_read_timeout_ms"),
            0,
            "must be > 0",
        ));
    }
    // Below hyper's minimum the server would silently use 8192: refuse instead of pretending.
    if !(MIN_MAX_HEADER_BYTES..=1024 * 1024).contains(&l.max_header_bytes) {
        errors.push(ConfigError::invalid(
            key("max_header_bytes"),
            l.max_header_bytes,
            format!(
                "must be {MIN_MAX_HEADER_BYTES}..=1048576 (the HTTP server cannot enforce less)"
            ),
        ));
    }
    if l.drain_timeout_ms > 600_000 {
        errors.push(ConfigError::invalid(
            key("drain_timeout_ms"),
            l.drain_timeout_ms,
            "must be at most 600000",
        ));
    }
    ConfigError::all(errors)
}

/// Names that end up in URLs and file paths (see [`crate::layout::valid_name`]).
pub fn is_valid_name(name: &str) -> bool {
    crate::layout::valid_name(name)
}

pub(crate) fn validate_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            name,
            "must be 1-64 characters of A-Z a-z 0-9 _ -",
        ))
    }
}

fn validate_template_name(key: &str, name: &str) -> Result<(), ConfigError> {
    validate_name(key, name)
}
