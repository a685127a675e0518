//! `[api]`: the operators' HTTP API under `/api/v1/` and the web console (owned by the api
//! module).

use super::{ConfigError, REDACTED, Secret};
use serde::{Deserialize, Serialize};

/// Shortest accepted `api.token`: a guessable token is worse than none, because it looks safe.
pub const MIN_API_TOKEN_CHARS: usize = 16;

/// The API's bearer token as written in config (empty: none). Kept out of `Debug` output,
/// logs and the API's own config view; compared in constant time.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ApiToken(Secret);

impl ApiToken {
    pub fn new(token: impl Into<String>) -> ApiToken {
        ApiToken(Secret::new(token))
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `presented` is this token (constant time in the token's length; false when
    /// no token is set).
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.is_set() && bool::from(self.0.expose().as_bytes().ct_eq(presented))
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for ApiToken {
    /// `null` when unset, the placeholder otherwise: whether a token is set is worth showing.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_set() {
            s.serialize_str(REDACTED)
        } else {
            s.serialize_none()
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1/` (`Authorization: Bearer TOKEN`), at least
    /// [`MIN_API_TOKEN_CHARS`] visible ASCII characters. Empty: none, and then only a listener
    /// bound to a loopback address answers API calls; with a token every listener requires it.
    pub token: ApiToken,
    /// Viewer sessions (client address + User-Agent per stream) the edge remembers at once
    /// for `viewers`; beyond it the least recently seen are forgotten (and not counted).
    pub max_viewer_sessions: u64,
}

impl Default for ApiConfig {
    /// From `config/zoomate.toml` (the one place defaults live).
    fn default() -> Self {
        super::Config::defaults().api.clone()
    }
}

impl ApiConfig {
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        let t = self.token.0.expose();
        if self.token.is_set() {
            // The value is a secret: name the key, never echo it.
            if t.chars().count() < MIN_API_TOKEN_CHARS {
                errors.push(ConfigError::invalid(
                    "api.token",
                    REDACTED,
                    format!(
                        "must be at least {MIN_API_TOKEN_CHARS} characters (or empty for none)"
                    ),
                ));
            } else if !t.bytes().all(|b| b.is_ascii_graphic()) {
                errors.push(ConfigError::invalid(
                    "api.token",
                    REDACTED,
                    "must be visible ASCII characters only (it travels in an HTTP header)",
                ));
            }
        }
        super::check_range(
            errors,
            "api.max_viewer_sessions",
            self.max_viewer_sessions,
            1..=10_000_000,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn tokens_are_checked_compared_and_never_shown() {
        let short = Config::parse("[api]\ntoken = \"short-secret\"\n").expect("parses");
        let err = short.validate().expect_err("too short").to_string();
        assert!(err.contains("api.token"), "{err}");
        assert!(!err.contains("short-secret"), "{err}");
        let spaced = Config::parse("[api]\ntoken = \"a token with spaces in it\"\n").unwrap();
        assert!(spaced.validate().is_err());
        let good = Config::parse("[api]\ntoken = \"0123456789abcdef-ok\"\n").unwrap();
        good.validate().expect("valid");
        assert!(good.api.token.matches(b"0123456789abcdef-ok"));
        assert!(!good.api.token.matches(b"0123456789abcdef-no"));
        assert!(!good.api.token.matches(b""));
        assert!(!format!("{:?}", good.api).contains("0123456789abcdef"));
        let json = serde_json::to_string(&good.api).unwrap();
        assert!(!json.contains("0123456789abcdef"), "{json}");
        let none = Config::parse("").unwrap();
        assert!(!none.api.token.is_set());
        assert!(!none.api.token.matches(b""), "no token never matches");
    }

    #[test]
    fn the_config_view_redacts_every_secret() {
        let c = Config::parse(
            "[rtmp.stream_keys]\ncam1 = \"stream-key-secret\"\n[bus]\ncurve_secret_key = \"curve-secret-text\"\n[api]\ntoken = \"api-token-secret-value\"\n",
        )
        .unwrap();
        let json = serde_json::to_string(&c).unwrap();
        for secret in [
            "stream-key-secret",
            "curve-secret-text",
            "api-token-secret-value",
        ] {
            assert!(!json.contains(secret), "{secret} shown in {json}");
        }
        assert!(json.contains("\"cam1\":\"<redacted>\""), "{json}");
    }
}
