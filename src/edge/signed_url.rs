//! Signed playback URLs, checked at the edge: an HMAC-SHA256 token with an expiry, in the
//! spirit of nginx `secure_link` (which uses MD5), carried in the path rather than the query.
//! Pure: the path and the time in, the stripped path or a [`TokenError`] out.
//!
//! # The URL
//!
//! `/t/{expires}/{token}/live/{stream}/master.m3u8`, where `expires` is Unix seconds and
//! `token` = base64url (no padding) of HMAC-SHA256(secret, `"{expires}:/live/{stream}/"`).
//! The token signs the stream's directory, not one file, so one token covers the multivariant
//! playlist, every media playlist, init segment, segment, LL-HLS part and DASH manifest of the
//! stream (VOD: `/vod/{asset}/`).
//!
//! # Why a path prefix, not `?token=`
//!
//! Players resolve the URIs inside a playlist or MPD against the URL they fetched it from
//! (RFC 3986 §5.2), and a relative reference drops the base's query: hls.js and dash.js fetch
//! `720p/index.m3u8` and `42.ts` without the master's `?token=…`, and neither copies query
//! strings to child requests. A query token would then need the edge to rewrite every URI of
//! every playlist it serves, per viewer, which also defeats caching those playlists. A token
//! in the path survives relative resolution: `720p/index.m3u8` under `/t/E/T/live/demo/`
//! is `/t/E/T/live/demo/720p/index.m3u8`, and `../480p/index.m3u8` (rendition reports) stays
//! under the prefix too. All of zoomate's playlist and manifest URIs are relative, so this
//! works with any player unchanged (the scheme Akamai and Cloudflare path tokens use).
//!
//! # Cache key
//!
//! The edge strips the prefix before routing, so the cache key and the origin request are the
//! canonical path alone: every viewer's token shares one cache entry and one origin fetch.
//! The origin never sees tokens (it is internal; the edge is the only door).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first path component of a signed URL.
pub const TOKEN_PREFIX: &str = "/t/";
/// Shortest secret accepted, in bytes (the HMAC-SHA256 output size: a shorter key is weaker
/// than the tag it makes).
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest token component read (43 characters of base64url for 32 bytes; anything longer is
/// not one of ours).
const MAX_TOKEN_CHARS: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed URL was refused (the `reason` label of
/// `zoomate_edge_signed_url_rejected_total`). Every one is a 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a signed URL is required")]
    Missing,
    #[error("malformed signed URL")]
    Malformed,
    #[error("signed URL expired")]
    Expired,
    #[error("bad signature")]
    BadSignature,
}

impl TokenError {
    pub const ALL: [TokenError; 4] = [
        TokenError::Missing,
        TokenError::Malformed,
        TokenError::Expired,
        TokenError::BadSignature,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::Expired => "expired",
            TokenError::BadSignature => "bad_signature",
        }
    }
}

/// A request path with its token prefix taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPath {
    pub expires_s: u64,
    /// The token as sent (base64url).
    pub token: String,
    /// The rest of the path, from its `/`: what is routed and cached.
    pub path: String,
}

/// Splits `/t/{expires}/{token}/rest…` into its parts; `Ok(None)` when the path has no token
/// prefix. The components are taken as sent (a token is base64url, an expiry digits: neither
/// needs percent-encoding, so an encoded one is malformed).
pub fn split_token(raw_path: &str) -> Result<Option<SignedPath>, TokenError> {
    let Some(after) = raw_path.strip_prefix(TOKEN_PREFIX) else {
        return Ok(None);
    };
    let mut parts = after.splitn(3, '/');
    let (Some(expires), Some(token), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if expires.is_empty()
        || expires.len() > 20
        || !expires.bytes().all(|b| b.is_ascii_digit())
        || token.is_empty()
        || token.len() > MAX_TOKEN_CHARS
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TokenError::Malformed);
    }
    let expires_s = expires.parse().map_err(|_| TokenError::Malformed)?;
    Ok(Some(SignedPath {
        expires_s,
        token: token.to_string(),
        path: format!("/{rest}"),
    }))
}

/// What a token signs for a media path: the stream's (or asset's) directory.
pub fn scope(media: &crate::http::paths::MediaPath) -> String {
    use crate::http::paths::MediaPath;
    match media {
        MediaPath::Live { stream, .. } => format!("/live/{stream}/"),
        MediaPath::Vod { asset, .. } => format!("/vod/{asset}/"),
    }
}

/// Makes and checks tokens with one secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<secret>)")
    }
}

impl Signer {
    /// `None` if the secret is shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Option<Signer> {
        (secret.len() >= MIN_SECRET_BYTES).then(|| Signer {
            secret: secret.to_vec(),
        })
    }

    fn mac(&self, expires_s: u64, scope: &str) -> HmacSha256 {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(expires_s.to_string().as_bytes());
        mac.update(b":");
        mac.update(scope.as_bytes());
        mac
    }

    /// The token for `scope` (`/live/{stream}/`) until `expires_s`.
    pub fn token(&self, expires_s: u64, scope: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(expires_s, scope).finalize().into_bytes())
    }

    /// The path prefix a player's URL starts with: `/t/{expires}/{token}`, followed by `scope`.
    pub fn signed_prefix(&self, expires_s: u64, scope: &str) -> String {
        format!(
            "{TOKEN_PREFIX}{expires_s}/{}{}",
            self.token(expires_s, scope),
            scope.trim_end_matches('/')
        )
    }

    /// Checks `signed` for `scope` at `now_s`: the signature first (in constant time), then the
    /// expiry, so a forged URL never learns whether its expiry would have passed.
    pub fn verify(&self, signed: &SignedPath, scope: &str, now_s: u64) -> Result<(), TokenError> {
        use base64::Engine;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&signed.token)
            .map_err(|_| TokenError::BadSignature)?;
        self.mac(signed.expires_s, scope)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if now_s >= signed.expires_s {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::paths::parse_media_path;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn check(signer: &Signer, raw: &str, now_s: u64) -> Result<String, TokenError> {
        let signed = split_token(raw)?.ok_or(TokenError::Missing)?;
        let media = parse_media_path(&signed.path).map_err(|_| TokenError::Malformed)?;
        signer.verify(&signed, &scope(&media), now_s)?;
        Ok(media.canonical())
    }

    #[test]
    fn one_token_covers_the_stream_directory() {
        let s = Signer::new(SECRET).unwrap();
        let prefix = s.signed_prefix(2_000, "/live/demo/");
        assert!(prefix.starts_with("/t/2000/") && prefix.ends_with("/live/demo"));
        for file in [
            "master.m3u8",
            "720p/index.m3u8",
            "720p/42.ts",
            "manifest.mpd",
        ] {
            let path = format!("{prefix}/{file}");
            assert_eq!(check(&s, &path, 1_000), Ok(format!("/live/demo/{file}")));
        }
        // Not another stream's.
        let other = prefix.replace("/live/demo", "/live/other");
        assert_eq!(
            check(&s, &format!("{other}/master.m3u8"), 1_000),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_forged_and_malformed_are_refused() {
        let s = Signer::new(SECRET).unwrap();
        let prefix = s.signed_prefix(2_000, "/live/demo/");
        let url = format!("{prefix}/master.m3u8");
        assert_eq!(check(&s, &url, 2_000), Err(TokenError::Expired));
        // A longer expiry with the old token: the signature covers the expiry.
        let extended = url.replacen("/t/2000/", "/t/9000/", 1);
        assert_eq!(check(&s, &extended, 1_000), Err(TokenError::BadSignature));
        let other = Signer::new(b"another-secret-another-secret-xx").unwrap();
        assert_eq!(check(&other, &url, 1_000), Err(TokenError::BadSignature));
        for bad in [
            "/t/",
            "/t/2000",
            "/t/2000/abc",
            "/t/x/abc/live/demo/master.m3u8",
            "/t/2000/a%2Fb/live/demo/master.m3u8",
            "/t/99999999999999999999999/abc/live/demo/master.m3u8",
        ] {
            assert_eq!(check(&s, bad, 1_000), Err(TokenError::Malformed), "{bad}");
        }
        assert_eq!(split_token("/live/demo/master.m3u8"), Ok(None));
    }

    #[test]
    fn short_secrets_and_debug() {
        assert!(Signer::new(b"short").is_none());
        let s = Signer::new(SECRET).unwrap();
        assert!(!format!("{s:?}").contains("0123456789"));
    }
}
