//! Origin base URLs and the patterns that allow them. Pure.
//!
//! An origin's base URL is where the edge sends requests: `http://host[:port]`, nothing else.
//! A path, query, fragment or userinfo would let a peer steer the edge's fetches somewhere it
//! did not mean (`http://10.0.0.5:8081/internal/admin?x=` + the request path is an SSRF), so a
//! base URL carrying any of them is refused, not trimmed. Our own strict parser rather than a
//! general URL crate: the accepted language is a dozen characters of grammar, and what matters
//! is what it refuses.
//!
//! A pattern is the same shape with `*` allowed as a whole host label or as the port:
//! `http://10.0.0.*:8081`, `http://*.origins.example.net:*`. An absent port means 80.

use std::fmt;

/// A validated origin base URL, normalised: lowercase host, explicit port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    host: String,
    port: u16,
}

/// Why a base URL or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("must start with http://")]
    Scheme,
    #[error("must be http://HOST[:PORT] with no path, query, fragment or user info")]
    Extra,
    #[error("bad host")]
    Host,
    #[error("bad port")]
    Port,
}

const MAX_HOST_LEN: usize = 253;

/// Splits `http://authority[/]` into (host, port text); refuses anything after the authority.
fn authority(raw: &str) -> Result<(&str, Option<&str>), BaseUrlError> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| {
            raw.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("http://"))
                .map(|_| &raw[7..])
        })
        .ok_or(BaseUrlError::Scheme)?;
    // One trailing slash is how people write base URLs; anything else after it is a path.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\', '%']) {
        return Err(BaseUrlError::Extra);
    }
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(BaseUrlError::Host)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(BaseUrlError::Port)?),
        };
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| BaseUrlError::Host)?;
        return Ok((&rest[..host.len() + 2], port));
    }
    Ok(match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    })
}

fn host_ok(host: &str, allow_star: bool) -> bool {
    if host.starts_with('[') {
        return true; // checked as an IPv6 literal by `authority`
    }
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            (allow_star && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        })
}

fn port(text: Option<&str>) -> Result<u16, BaseUrlError> {
    match text {
        None => Ok(80),
        Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(BaseUrlError::Port),
        Some(_) => Err(BaseUrlError::Port),
    }
}

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<BaseUrl, BaseUrlError> {
        let (host, port_text) = authority(raw)?;
        if !host_ok(host, false) {
            return Err(BaseUrlError::Host);
        }
        Ok(BaseUrl {
            host: host.to_ascii_lowercase(),
            port: port(port_text)?,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for BaseUrl {
    /// `http://host:port`, the form requests are built from (no trailing slash).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// One entry of an allow-list of origin base URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// Host labels, `None` = `*`; or one literal for an IPv6 host.
    labels: Vec<Option<String>>,
    /// `None` = any port.
    port: Option<u16>,
}

impl OriginPattern {
    pub fn parse(raw: &str) -> Result<OriginPattern, BaseUrlError> {
        let (host, port_text) = authority(raw)?;
        if !host_ok(host, true) {
            return Err(BaseUrlError::Host);
        }
        let labels = if host.starts_with('[') {
            vec![Some(host.to_ascii_lowercase())]
        } else {
            host.split('.')
                .map(|l| (l != "*").then(|| l.to_ascii_lowercase()))
                .collect()
        };
        let port = match port_text {
            Some("*") => None,
            other => Some(port(other)?),
        };
        Ok(OriginPattern { labels, port })
    }

    /// The pattern that allows exactly this base URL.
    pub fn exact(url: &BaseUrl) -> OriginPattern {
        let labels = if url.host.starts_with('[') {
            vec![Some(url.host.clone())]
        } else {
            url.host.split('.').map(|l| Some(l.to_string())).collect()
        };
        OriginPattern {
            labels,
            port: Some(url.port),
        }
    }

    pub fn matches(&self, url: &BaseUrl) -> bool {
        if self.port.is_some_and(|p| p != url.port) {
            return false;
        }
        if url.host.starts_with('[') {
            return self.labels.len() == 1 && self.labels[0].as_deref() == Some(url.host.as_str());
        }
        let labels: Vec<&str> = url.host.split('.').collect();
        labels.len() == self.labels.len()
            && self
                .labels
                .iter()
                .zip(labels)
                .all(|(want, got)| want.as_deref().is_none_or(|w| w == got))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_only_scheme_host_port() {
        let u = BaseUrl::parse("http://Origin-1.example.net:8081/").unwrap();
        assert_eq!(u.to_string(), "http://origin-1.example.net:8081");
        assert_eq!(BaseUrl::parse("http://10.0.0.5").unwrap().port(), 80);
        assert_eq!(
            BaseUrl::parse("http://[::1]:9").unwrap().to_string(),
            "http://[::1]:9"
        );
        for bad in [
            "https://x:1",
            "ftp://x",
            "http://",
            "http://127.0.0.1:18099/internal/admin?x=",
            "http://127.0.0.1:1/x",
            "http://h:1?x",
            "http://h:1#f",
            "http://user@h:1",
            "http://h:0",
            "http://h:99999",
            "http://h:",
            "http://h:1:2",
            "http://h%2e:1",
            "http://a..b:1",
            "http://[nope]:1",
            "http://h_x:1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn patterns_match_whole_labels_and_ports() {
        let p = OriginPattern::parse("http://10.0.0.*:8081").unwrap();
        assert!(p.matches(&BaseUrl::parse("http://10.0.0.7:8081").unwrap()));
        assert!(!p.matches(&BaseUrl::parse("http://10.0.0.7:8082").unwrap()));
        assert!(!p.matches(&BaseUrl::parse("http://10.0.1.7:8081").unwrap()));
        assert!(!p.matches(&BaseUrl::parse("http://10.0.0.7.evil:8081").unwrap()));
        let any_port = OriginPattern::parse("http://*.origins.example.net:*").unwrap();
        assert!(any_port.matches(&BaseUrl::parse("http://a.origins.example.net:1").unwrap()));
        assert!(!any_port.matches(&BaseUrl::parse("http://origins.example.net:1").unwrap()));
        let exact = OriginPattern::exact(&BaseUrl::parse("http://127.0.0.1:8081").unwrap());
        assert!(exact.matches(&BaseUrl::parse("http://127.0.0.1:8081/").unwrap()));
        assert!(!exact.matches(&BaseUrl::parse("http://127.0.0.1:18099").unwrap()));
        assert!(OriginPattern::parse("http://*:*").is_ok());
        assert!(OriginPattern::parse("http://a*b:1").is_err());
        assert!(OriginPattern::parse("http://h:1/path").is_err());
    }
}
