//! Configuration: one serde tree, parsed from TOML, then validated, then run.
//!
//! Defaults live in one place: `config/zoomate.toml`, which names every key with its default
//! value and is embedded in the binary. A config file names only what it changes: it is laid
//! over the defaults (tables merge key by key; a value or an array replaces the default's), and
//! only then deserialised, with `deny_unknown_fields` everywhere so a typo is an error rather
//! than a silently ignored key (and a key missing from the defaults file fails its test).
//! `config/demo.toml` is what `zoomate run` adds when no file is given (the `demo` stream).
//! [`Config::validate`] reports every problem as a [`ConfigError`] naming the key and the value;
//! `main` exits non-zero on it before binding any port.

mod api;
mod bus;
mod edge;
mod env;
mod secret;
mod stream;
mod validate;
mod webrtc;
pub use webrtc::WebrtcConfig;

pub use api::{ApiConfig, ApiToken, MIN_API_TOKEN_CHARS};
pub use bus::{BusConfig, BusProxyConfig, parse_keys as bus_keys};
pub use edge::{BalancePolicy, BusConnect, EdgeConfig};
pub use env::apply_env_overrides;
pub use secret::{REDACTED, Secret};
pub use stream::{
    DEFAULT_JITTER_LATENCY_MS, DEFAULT_SILENCE_TIMEOUT_MS, DEFAULT_SRT_LATENCY_MS, RtpOptions,
    SourceKind, SrtOptions, StreamConfig, StreamSource, StreamTiming,
};
pub use validate::is_valid_name;
pub(crate) use validate::{check_range, validate_limits};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The embedded default configuration (`config/zoomate.toml`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/zoomate.toml");

/// What `zoomate run` uses when no config file is given, laid over the defaults: the `demo`
/// test-pattern stream.
pub const DEMO_CONFIG_TOML: &str = include_str!("../../config/demo.toml");

/// A deserialisation error of the merged tree, naming the key and the value the user wrote.
/// The merged table has no source positions, so the error's key path (toml puts it after
/// "in `…`") is looked up in the user's own table; failing that, the message as it is.
/// A TOML syntax error by line and column, without toml's quote of the offending line: that
/// line may hold a secret (a key, a token) and the error is logged and answered by the API.
fn syntax_error(e: &toml::de::Error, text: &str) -> ConfigError {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            ConfigError::Parse(format!("line {line}, column {column}: {message}"))
        }
        None => ConfigError::Parse(message.to_string()),
    }
}

/// Keys whose values are secrets: an error names them and never shows the value.
fn is_secret_key(key: &str) -> bool {
    key.starts_with("rtmp.stream_keys")
        || [
            "token",
            "secret",
            "passphrase",
            "turn_server",
            "curve_secret_key",
        ]
        .iter()
        .any(|s| key.rsplit('.').next() == Some(*s))
}

fn field_error(e: &toml::de::Error, user: &toml::Table) -> ConfigError {
    let message = e.message().trim().to_string();
    let text = e.to_string();
    let key = text
        .rsplit_once("in `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key.to_string());
    let value = key.as_deref().and_then(|k| {
        let mut parts = k.split('.');
        let mut at = user.get(parts.next()?)?;
        for part in parts {
            at = at.as_table()?.get(part)?;
        }
        // A whole table (an unknown key inside it) is named by its path, not printed.
        (!at.is_table()).then(|| at.to_string())
    });
    // serde quotes the value it refused in backticks (`invalid type: integer `123``): not for
    // a secret.
    let (value, message) = match (&key, value) {
        (Some(k), Some(_)) if is_secret_key(k) => (
            Some(REDACTED.to_string()),
            message.split('`').step_by(2).collect::<Vec<_>>().join("…"),
        ),
        (_, v) => (v, message),
    };
    match (key, value) {
        (Some(key), Some(value)) => ConfigError::Invalid {
            key,
            value: value.trim_matches('"').to_string(),
            reason: message,
        },
        (Some(key), None) => ConfigError::Parse(format!("{key}: {message}")),
        _ => ConfigError::Parse(message),
    }
}

/// Lays `over` onto `base`: tables merge key by key; anything else (a value, an array, an array
/// of tables) replaces what `base` had.
fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A configuration problem, naming the key and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config parse error: {0}")]
    Parse(String),
    #[error("invalid config: {key} = {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    /// Several problems, each on its own line: one run of `check-config` lists them all.
    #[error("{} problems in the config:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// `Ok` when nothing was found; the error itself when one was; all of them otherwise.
    pub fn all(errors: Vec<ConfigError>) -> Result<(), ConfigError> {
        let mut errors: Vec<ConfigError> = errors
            .into_iter()
            .flat_map(|e| match e {
                ConfigError::Many(inner) => inner,
                e => vec![e],
            })
            .collect();
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }

    pub fn invalid(
        key: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration tree.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub log: LogConfig,
    pub origin: OriginConfig,
    pub rtmp: RtmpConfig,
    pub ladder: LadderConfig,
    pub hls: HlsConfig,
    pub store: StoreConfig,
    pub pipelines: PipelinesConfig,
    pub bus: BusConfig,
    pub edge: EdgeConfig,
    pub vod: VodConfig,
    pub api: ApiConfig,
    pub webrtc: WebrtcConfig,
    /// Streams that exist without an RTMP publisher: test patterns and RTP inputs (none unless
    /// configured; `zoomate run` without a file has the `demo` stream of `config/demo.toml`).
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
}

impl Default for Config {
    /// Every key at its documented default: `config/zoomate.toml`, the one place defaults live.
    fn default() -> Self {
        Config::defaults().clone()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
    /// tracing filter directive, e.g. `info` or `zoomate=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().log.clone()
    }
}

/// Smallest `max_header_bytes` the HTTP server can enforce: hyper's HTTP/1 read buffer (which
/// bounds the request head) cannot be smaller than 8 KiB.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;

/// Limits for an HTTP listener (origin or edge).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// Connections served at once. When all are taken, the longest-idle keep-alive connection
    /// is closed to admit a new client; one that finds nothing idle within
    /// `header_read_timeout_ms` is closed.
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may hold; at or above `max_connections`
    /// it adds no limit. Over it, that address's own longest-idle connection makes room, or the
    /// new one is refused. Raise it behind a proxy tier (all its connections come from its
    /// address) or for load tests from one host.
    pub max_connections_per_address: usize,
    /// Requests one connection may carry; its last answer closes it (HTTP/1 `Connection:
    /// close`, HTTP/2 GOAWAY), as nginx's `keepalive_requests`. Clients reconnect at once.
    pub max_requests_per_connection: u32,
    /// Time allowed for a client to send the complete request head, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Largest request head accepted, in bytes; at least [`MIN_MAX_HEADER_BYTES`] (hyper's
    /// smallest read buffer).
    pub max_header_bytes: usize,
    /// Time allowed to shut down gracefully: in-flight responses finish, then connections close.
    pub drain_timeout_ms: u64,
}

impl Default for HttpLimits {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().origin.limits.clone()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Identifies this worker on the bus and in heartbeats.
    pub id: String,
    /// Origin HTTP listener (serves playlists, manifests and segments from the store).
    pub http_listen: SocketAddr,
    /// Base URL edges use to reach this origin; empty means `http://{http_listen}`.
    pub public_url: String,
    pub limits: HttpLimits,
}

impl Default for OriginConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().origin.clone()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    pub enabled: bool,
    /// RTMP listener for publishers.
    pub listen: SocketAddr,
    /// RTMP application name publishers connect to (`rtmp://host/{app}/{stream}`).
    pub app: String,
    /// Publishing connections at once (each may be a live stream with a full ladder); a publish
    /// beyond it is refused.
    pub max_connections: usize,
    /// Connections that have not published yet, at once. When all are taken, a new connection
    /// cuts the oldest of them, so stalled handshakes cannot keep publishers out.
    pub max_handshakes: usize,
    /// Connections from one address (IPv6: one /64) at once, handshaking or publishing.
    pub max_connections_per_address: usize,
    /// Time allowed for handshake + connect + publish, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// A publisher that sends nothing for this long is disconnected, in milliseconds; also the
    /// longest a publisher waits for room in its queue.
    pub idle_timeout_ms: u64,
    /// Largest RTMP message accepted while publishing, in bytes (a video frame is one message).
    pub max_message_bytes: u32,
    /// Largest RTMP message accepted before a publish is authorised, in bytes (commands only).
    pub max_unpublished_message_bytes: u32,
    /// FLV bytes queued per publisher between its connection and its pipeline (the audio sniff
    /// included); a full queue makes the publisher wait.
    pub max_publisher_queue_bytes: u32,
    /// Bytes all RTMP connections together may hold (partial messages and publisher queues); a
    /// connection that needs more is closed.
    pub max_ingest_bytes: u64,
    /// Failed publish attempts (wrong or missing key, unlisted stream) an address may make before
    /// it has to wait.
    pub auth_failures_before_backoff: u32,
    /// The first wait after those, in milliseconds; it doubles with each further failure.
    pub auth_backoff_initial_ms: u64,
    /// The longest wait, in milliseconds.
    pub auth_backoff_max_ms: u64,
    /// An address's failures are forgotten after this long without one, in milliseconds.
    pub auth_forget_after_ms: u64,
    /// Addresses whose failures are remembered at most.
    pub auth_max_addresses: usize,
    /// Stream name → key. When non-empty, only these streams may publish and each must present
    /// its key as `?key=SECRET` on the stream name (`rtmp://host/live/NAME?key=SECRET`).
    pub stream_keys: BTreeMap<String, Secret>,
    /// Stream name → segment format (`ts` | `cmaf`) for published streams, overriding
    /// `ladder.format`.
    pub stream_formats: BTreeMap<String, SegmentFormat>,
    pub auth_callback: AuthCallbackConfig,
}

/// `[rtmp.auth_callback]`: ask an HTTP service before each publish (nginx-rtmp `on_publish`).
/// 2xx allows; any other answer, a timeout or an unreachable service denies (fail closed).
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthCallbackConfig {
    /// `http://HOST:PORT/PATH` to POST to; empty = no callback. Shown (the API's config view)
    /// without its user info or query, which may hold the service's credentials.
    #[serde(serialize_with = "serialize_url_without_credentials")]
    pub url: String,
    /// Longest wait for the answer (connect included), in milliseconds; then denied.
    pub timeout_ms: u64,
    /// How long an answer (allow or deny) is reused for the same stream + key, in
    /// milliseconds; 0 = ask every time. Timeouts and errors are never cached.
    pub cache_ttl_ms: u64,
    /// Answers cached at most.
    pub cache_max_entries: u64,
}

/// The URL may carry a credential (`http://user:password@host/…`, `…?token=…`): `Debug` shows
/// only its scheme, host, port and path.
impl std::fmt::Debug for AuthCallbackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCallbackConfig")
            .field("url", &url_without_credentials(&self.url))
            .field("timeout_ms", &self.timeout_ms)
            .field("cache_ttl_ms", &self.cache_ttl_ms)
            .field("cache_max_entries", &self.cache_max_entries)
            .finish()
    }
}

fn serialize_url_without_credentials<S: serde::Serializer>(
    url: &str,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url_without_credentials(url))
}

/// `url` with any user info and query replaced by [`REDACTED`] (an unparsable one entirely).
fn url_without_credentials(url: &str) -> String {
    if url.is_empty() {
        return String::new();
    }
    let Ok(uri) = url.parse::<http::Uri>() else {
        return REDACTED.to_string();
    };
    let scheme = uri
        .scheme_str()
        .map(|s| format!("{s}://"))
        .unwrap_or_default();
    let userinfo = match uri.authority() {
        Some(a) if a.as_str().contains('@') => format!("{REDACTED}@"),
        _ => String::new(),
    };
    let host = uri.host().unwrap_or_default();
    let port = uri.port().map(|p| format!(":{p}")).unwrap_or_default();
    let query = if uri.query().is_some() {
        format!("?{REDACTED}")
    } else {
        String::new()
    };
    format!("{scheme}{userinfo}{host}{port}{}{query}", uri.path())
}

impl Default for RtmpConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().rtmp.clone()
    }
}

/// One rung of the ABR ladder.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    /// Name used in URLs (`/live/{stream}/{name}/index.m3u8`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Target video bitrate, in kbit/s.
    pub video_bitrate_kbps: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LadderConfig {
    /// Segment duration, in milliseconds; every rendition gets an IDR at each multiple.
    pub segment_duration_ms: u64,
    /// Output frame rate (frames per second) of every rendition.
    pub frame_rate: u32,
    /// Video encoder template name: `pipelines/video-{name}.pipeline`.
    pub video_encoder: String,
    /// Audio encoder template name: `pipelines/audio-{name}.pipeline`.
    pub audio_encoder: String,
    /// Audio bitrate, in kbit/s (shared by every rendition).
    pub audio_bitrate_kbps: u32,
    /// Segment format of every stream unless overridden per stream: `ts` or `cmaf`.
    pub format: SegmentFormat,
    pub renditions: Vec<RenditionConfig>,
}

impl Default for LadderConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().ladder.clone()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HlsConfig {
    /// Segments listed in a live media playlist (the sliding window).
    pub window_segments: usize,
    /// How long a segment stays downloadable after leaving the window, in milliseconds.
    pub retain_after_window_ms: u64,
    /// LL-HLS for CMAF streams: parts, blocking reloads, delta updates, preload hints.
    pub low_latency: bool,
    /// LL-HLS part duration (cmafmux chunk), milliseconds; fixed per stream.
    pub part_duration_ms: u64,
    /// LL-HLS streams: an IDR at least this often, milliseconds (a multiple of the part
    /// duration that divides the segment duration): where a player can start.
    pub keyframe_interval_ms: u64,
    /// Blocking requests the origin holds at once; more get 503 at once.
    pub max_held_requests: usize,
    /// …of which for one stream.
    pub max_held_requests_per_stream: usize,
}

impl Default for HlsConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().hls.clone()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory holding live streams (`{dir}/live/{stream}/…`).
    pub dir: PathBuf,
}

impl Default for StoreConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().store.clone()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelinesConfig {
    /// Directory searched for pipeline templates before the embedded ones; empty = embedded only.
    pub dir: PathBuf,
    /// Seconds a pipeline may take to finish after EOS before the watchdog tears it down.
    pub eos_timeout_ms: u64,
    /// Seconds without a new segment, while live, before the watchdog declares the pipeline hung.
    pub stall_timeout_ms: u64,
    /// Milliseconds a pipeline's start (to PLAYING) or teardown (to NULL) may take; past it the
    /// watchdog abandons the pipeline on its own thread and the stream restarts with a new one.
    pub state_change_timeout_ms: u64,
}

impl Default for PipelinesConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().pipelines.clone()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VodConfig {
    /// Directory of published VOD assets, served under `/vod/{asset}/`.
    pub dir: PathBuf,
}

impl Default for VodConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        Config::defaults().vod.clone()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SegmentFormat {
    /// MPEG-TS segments, HLS only.
    Ts,
    /// CMAF (fMP4) segments with an init segment: HLS (EXT-X-MAP) and DASH from the same files.
    Cmaf,
}

impl SegmentFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Cmaf => "cmaf",
        }
    }

    /// Media segment file extension.
    pub fn segment_extension(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Cmaf => "m4s",
        }
    }
}

impl std::str::FromStr for SegmentFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ts" => Ok(SegmentFormat::Ts),
            "cmaf" => Ok(SegmentFormat::Cmaf),
            other => Err(format!("unknown segment format {other:?}: use ts or cmaf")),
        }
    }
}

impl Config {
    /// The segment format of live stream `stream`: its `[[streams]]` entry, then
    /// `rtmp.stream_formats`, then `ladder.format`.
    /// LL-HLS part duration of a stream, milliseconds: `Some` for CMAF streams while
    /// `hls.low_latency` is on.
    pub fn part_duration_for(&self, stream: &str) -> Option<u64> {
        (self.hls.low_latency && self.format_for(stream) == SegmentFormat::Cmaf)
            .then_some(self.hls.part_duration_ms)
    }

    /// Where live stream `stream`'s timeline comes from: its `[[streams]] timing` (RTMP
    /// streams: always the session's own).
    pub fn timing_for(&self, stream: &str) -> StreamTiming {
        self.streams
            .iter()
            .find(|s| s.name == stream)
            .map(|s| s.timing)
            .unwrap_or_default()
    }

    pub fn format_for(&self, stream: &str) -> SegmentFormat {
        self.streams
            .iter()
            .find(|s| s.name == stream)
            .and_then(|s| s.format)
            .or_else(|| self.rtmp.stream_formats.get(stream).copied())
            .unwrap_or(self.ladder.format)
    }

    /// Parses TOML text (no environment, no file system), without validating.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let over: toml::Table = toml::from_str(text).map_err(|e| syntax_error(&e, text))?;
        let mut merged = Self::defaults_table().clone();
        overlay(&mut merged, over.clone());
        merged
            .try_into()
            .map_err(|e: toml::de::Error| field_error(&e, &over))
    }

    /// `config/zoomate.toml` as a table, parsed once.
    fn defaults_table() -> &'static toml::Table {
        static TABLE: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
        // The file is part of the binary and checked by `defaults_name_every_key`.
        TABLE.get_or_init(|| toml::from_str(DEFAULT_CONFIG_TOML).unwrap_or_default())
    }

    /// Every key at its default (`config/zoomate.toml`), parsed once.
    pub fn defaults() -> &'static Config {
        static DEFAULTS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        DEFAULTS.get_or_init(|| {
            Self::defaults_table()
                .clone()
                .try_into()
                .expect("config/zoomate.toml names every key (see defaults_name_every_key)")
        })
    }

    /// What `zoomate run` runs without a config file: the defaults plus the `demo` stream.
    pub fn embedded_default() -> Config {
        Config::parse(DEMO_CONFIG_TOML).expect("config/demo.toml parses")
    }

    /// Reads and parses a file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with every secret set, each a distinct marker.
    const EVERY_SECRET: &str = r#"
[rtmp.stream_keys]
cam1 = "secret-stream-key-1"
[rtmp.auth_callback]
url = "http://cb-user:secret-callback-password@127.0.0.1:9000/on_publish?token=secret-callback-token"
[webrtc]
turn_server = "turn://user:secret-turn-password@127.0.0.1:3478"
[api]
token = "secret-api-token-0123"
[bus]
curve_secret_key = "secret-curve-key-text"
[edge.signed_urls]
secret = "secret-signed-url-key-0123456789abcdef"
[[streams]]
name = "srt"
source = "srt"
listen = "127.0.0.1:9000"
passphrase = "secret-srt-passphrase"
"#;

    #[test]
    fn debug_output_shows_no_secret() {
        let mut c = Config::parse(EVERY_SECRET).expect("parses");
        // Not read from config: `app` copies `bus.curve_secret_key` into each bus_connect entry.
        let mut entry = BusConnect::plain("tcp://127.0.0.1:5556");
        entry.client_secret_key = c.bus.curve_secret_key.clone();
        c.edge.bus_connect.push(entry);
        // The resolved source (what a session gets) carries the SRT passphrase too.
        let source = crate::plan::resolve_source(&c.streams[0], 0).expect("resolves");
        let shown = format!("{c:?}\n{c:#?}\n{source:?}");
        // Every secret above starts with the marker; the rest of the config is shown.
        assert!(
            !shown.contains("secret-"),
            "a secret shown in Debug: {shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("cam1"), "{shown}");
        assert!(shown.contains("127.0.0.1:9000/on_publish"), "{shown}");
        // GET /api/v1/config's view shows no secret either, the callback URL's credentials
        // included; what it calls is still shown.
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("secret-"), "{json}");
        assert!(
            json.contains("\"http://<redacted>@127.0.0.1:9000/on_publish?<redacted>\""),
            "{json}"
        );
    }

    #[test]
    fn errors_never_quote_a_secret() {
        // A syntax error: toml would quote the line; we name the line and column only.
        let e = Config::parse("[api]\ntoken = \"sup3r-s3cret-token-value\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("sup3r-s3cret"), "{e}");
        // A wrongly typed secret: the key is named, the value redacted.
        let e = Config::parse("[rtmp.stream_keys]\ncam = 87654321\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rtmp.stream_keys.cam"), "{e}");
        assert!(!e.contains("87654321"), "{e}");
    }

    #[test]
    fn defaults_name_every_key() {
        // Parsed without any help from code: a key missing from config/zoomate.toml fails here.
        let table: toml::Table = toml::from_str(DEFAULT_CONFIG_TOML).expect("TOML");
        let parsed: Result<Config, _> = table.try_into();
        let c = parsed.expect("config/zoomate.toml names every key");
        c.validate().expect("the defaults are valid");
        assert!(c.streams.is_empty(), "no stream runs unless configured");
        // A file names only what it changes; tables merge, arrays replace.
        let over = Config::parse(
            "[ladder]\nsegment_duration_ms = 4000\n[[ladder.renditions]]\nname = \"x\"\nwidth = 320\nheight = 180\nvideo_bitrate_kbps = 300\n",
        )
        .unwrap();
        assert_eq!(over.ladder.segment_duration_ms, 4000);
        assert_eq!(over.ladder.frame_rate, c.ladder.frame_rate);
        assert_eq!(over.ladder.renditions.len(), 1);
        assert_eq!(over.edge.cache_bytes, c.edge.cache_bytes);
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        c.validate().unwrap();
        assert_eq!(c.ladder.renditions.len(), 3);
        assert!(c.streams.iter().any(|s| s.name == "demo"));
    }

    #[test]
    fn the_state_change_watchdog_is_validated_naming_key_and_value() {
        for bad in [0, 99, 60_001] {
            let c =
                Config::parse(&format!("[pipelines]\nstate_change_timeout_ms = {bad}\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("pipelines.state_change_timeout_ms") && e.contains(&bad.to_string()),
                "{e}"
            );
        }
        let c = Config::parse("[pipelines]\nstate_change_timeout_ms = 100\n").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn max_header_bytes_below_what_the_server_enforces_is_rejected() {
        for section in ["origin", "edge"] {
            let c =
                Config::parse(&format!("[{section}.limits]\nmax_header_bytes = 1024\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains(&format!("{section}.limits.max_header_bytes")) && e.contains("1024"),
                "{e}"
            );
            let c =
                Config::parse(&format!("[{section}.limits]\nmax_header_bytes = 8192\n")).unwrap();
            c.validate().unwrap();
        }
    }

    #[test]
    fn connection_limits_are_validated_naming_key_and_value() {
        for section in ["origin", "edge"] {
            for (toml, key, value) in [
                (
                    "max_connections_per_address = 0",
                    "max_connections_per_address",
                    "0",
                ),
                (
                    "max_requests_per_connection = 0",
                    "max_requests_per_connection",
                    "0",
                ),
            ] {
                let c = Config::parse(&format!("[{section}.limits]\n{toml}\n")).unwrap();
                let e = c.validate().unwrap_err().to_string();
                assert!(
                    e.contains(&format!("{section}.limits.{key}")) && e.contains(value),
                    "{e}"
                );
            }
            // The default per-address limit stays valid under a small listener.
            let c = Config::parse(&format!(
                "[{section}.limits]\nmax_connections = 16\nmax_requests_per_connection = 1\n"
            ))
            .unwrap();
            c.validate().unwrap();
        }
    }

    #[test]
    fn unknown_key_is_rejected() {
        let e = Config::parse("[ladder]\nsegment_duraton_ms = 2000\n").unwrap_err();
        assert!(e.to_string().contains("segment_duraton_ms"), "{e}");
    }

    #[test]
    fn invalid_value_names_key_and_value() {
        let c = Config::parse("[ladder]\nsegment_duration_ms = 50\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("ladder.segment_duration_ms") && e.contains("50"),
            "{e}"
        );
    }

    #[test]
    fn stream_timing_is_parsed_and_checked_against_the_frame_rate() {
        let stream = "[[streams]]\nname = \"cam\"\nsource = \"test-pattern\"\n";
        let c = Config::parse(&format!("{stream}timing = \"wallclock\"\n")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.timing_for("cam"), StreamTiming::Wallclock);
        assert_eq!(c.timing_for("other"), StreamTiming::Session);
        let e = Config::parse(&format!("{stream}timing = \"ntp\"\n")).unwrap_err();
        assert!(e.to_string().contains("ntp"), "{e}");
        // 1.05 s is not a whole number of frames at 30 fps: boundaries would fall between frames.
        let c = Config::parse(&format!(
            "[ladder]\nsegment_duration_ms = 1050\n[hls]\nkeyframe_interval_ms = 1050\npart_duration_ms = 350\n{stream}timing = \"wallclock\"\n"
        ))
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("streams[0].timing") && e.contains("segment_duration_ms (1050)"),
            "{e}"
        );
        // 6 s segments with audio start on a boundary every 24 s: a 20 s stall watchdog would
        // restart the session before its first segment, for ever.
        let c = Config::parse(&format!(
            "[ladder]\nsegment_duration_ms = 6000\n[pipelines]\nstall_timeout_ms = 20000\n{stream}timing = \"wallclock\"\n"
        ))
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("pipelines.stall_timeout_ms = \"20000\"") && e.contains("must exceed 30000"),
            "{e}"
        );
    }

    #[test]
    fn odd_rendition_height_is_rejected() {
        let c = Config::parse(
            "[ladder]\nrenditions = [{ name = \"a\", width = 640, height = 361, video_bitrate_kbps = 800 }]\n",
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("ladder.renditions[0].height") && e.contains("361"),
            "{e}"
        );
    }

    #[test]
    fn short_stream_key_is_rejected_without_echoing_it() {
        let c = Config::parse("[rtmp.stream_keys]\ncam = \"abc\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("rtmp.stream_keys.cam") && !e.contains("abc"),
            "{e}"
        );
    }

    #[test]
    fn rtmp_budgets_must_fit_each_other() {
        let c = Config::parse(
            "[rtmp]\nmax_message_bytes = 1048576\nmax_unpublished_message_bytes = 2097152\nmax_publisher_queue_bytes = 1048576\nmax_ingest_bytes = 1048576\n",
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        for key in [
            "rtmp.max_unpublished_message_bytes = \"2097152\"",
            "rtmp.max_publisher_queue_bytes = \"1048576\"",
            "rtmp.max_ingest_bytes = \"1048576\"",
        ] {
            assert!(e.contains(key), "{key} missing from: {e}");
        }
        let c = Config::parse("[rtmp]\nauth_backoff_initial_ms = 5000\nauth_backoff_max_ms = 1000\nmax_connections_per_address = 0\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("rtmp.auth_backoff_max_ms")
                && e.contains("rtmp.max_connections_per_address"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = Config::parse(
            "[ladder]\nsegment_duration_ms = 7\nframe_rate = 0\n[edge]\ncache_bytes = 1\norigin_allow = [\"http://h:1/x\"]\n",
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        for key in [
            "ladder.segment_duration_ms",
            "ladder.frame_rate",
            "edge.cache_bytes",
            "edge.origin_allow[0]",
        ] {
            assert!(e.contains(key), "{key} missing from: {e}");
        }
        assert!(e.starts_with("4 problems in the config:"), "{e}");
        // One problem reads as before.
        let one = Config::parse("[ladder]\nframe_rate = 0\n").unwrap();
        assert_eq!(
            one.validate().unwrap_err().to_string(),
            "invalid config: ladder.frame_rate = \"0\": must be 1..=120"
        );
    }
}
