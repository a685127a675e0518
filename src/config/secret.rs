//! [`Secret`]: a config value that must never be shown: stream keys, passphrases, passwords,
//! tokens, keys. `Debug` and `Display` print [`REDACTED`] (so a `{:?}` of any config struct,
//! in a log line or a panic message, carries none of them) and so does `Serialize` (the API's
//! `GET /api/v1/config`); the value itself is read only through [`Secret::expose`], so every
//! place that uses one is a grep away.

use serde::{Deserialize, Serialize};

/// What a secret is shown as wherever config is shown.
pub const REDACTED: &str = "<redacted>";

/// A secret as written in config (`""`: unset where the key allows that).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the few places that must use it (never to log or show).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in bytes (safe to show in a validation error).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

/// An empty secret is shown as `""` (that nothing is set is no secret), any other as
/// [`REDACTED`].
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            Ok(())
        } else {
            f.write_str(REDACTED)
        }
    }
}

/// `""` stays `""` (unset), any other value is [`REDACTED`]; `Option<Secret>` gives `null`
/// when unset.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_empty() { "" } else { REDACTED })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_shown() {
        let s = Secret::new("hunter2-secret");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2-secret");
        let unset = Secret::default();
        assert_eq!(format!("{unset:?}"), "\"\"");
        assert_eq!(serde_json::to_string(&unset).unwrap(), "\"\"");
        let parsed: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(parsed.expose(), "abc");
    }
}
