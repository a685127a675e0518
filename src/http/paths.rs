//! URL paths → store locations, refusing anything that could escape the store. Pure.
//!
//! The path is percent-decoded exactly once; a `%` left after that (e.g. `%252e`) is refused
//! rather than decoded again, so double encoding cannot smuggle `..` past the check.

/// A request for a media resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaPath {
    /// `/live/{stream}/{rest…}`
    Live { stream: String, rest: Vec<String> },
    /// `/vod/{asset}/{rest…}`
    Vod { asset: String, rest: Vec<String> },
}

impl MediaPath {
    /// The one canonical spelling of this path: every component as decoded, none encoded (a
    /// valid component is `[A-Za-z0-9_.-]`, nothing a URL needs to escape). Every spelling of a
    /// resource (`/live/d%65mo/…`, `/live/demo/…`) parses to the same `MediaPath`, so this is
    /// what a cache keys by and what an upstream is asked for.
    pub fn canonical(&self) -> String {
        let (root, name, rest) = match self {
            MediaPath::Live { stream, rest } => ("live", stream, rest),
            MediaPath::Vod { asset, rest } => ("vod", asset, rest),
        };
        let mut path = format!("/{root}/{name}");
        for part in rest {
            path.push('/');
            path.push_str(part);
        }
        path
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Malformed or hostile: answer 400.
    #[error("bad request path: {0}")]
    Malformed(&'static str),
    /// Well-formed but nothing zoomate serves: answer 404.
    #[error("not found")]
    NotFound,
}

/// What a file is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    MasterPlaylist,
    MediaPlaylist,
    DashManifest,
    Segment,
    InitSegment,
}

impl ResourceKind {
    pub fn from_file_name(name: &str) -> Option<ResourceKind> {
        if name == crate::layout::MASTER_PLAYLIST {
            Some(ResourceKind::MasterPlaylist)
        } else if name.ends_with(".m3u8") {
            Some(ResourceKind::MediaPlaylist)
        } else if name.ends_with(".mpd") {
            Some(ResourceKind::DashManifest)
        } else if name.ends_with(".ts") || name.ends_with(".m4s") || name.ends_with(".aac") {
            Some(ResourceKind::Segment)
        } else if name.starts_with("init") && name.ends_with(".mp4") {
            Some(ResourceKind::InitSegment)
        } else {
            None
        }
    }

    pub fn content_type(self, name: &str) -> &'static str {
        match self {
            ResourceKind::MasterPlaylist | ResourceKind::MediaPlaylist => {
                "application/vnd.apple.mpegurl"
            }
            ResourceKind::DashManifest => "application/dash+xml",
            ResourceKind::InitSegment => "video/mp4",
            ResourceKind::Segment if name.ends_with(".m4s") => "video/iso.segment",
            ResourceKind::Segment if name.ends_with(".aac") => "audio/aac",
            ResourceKind::Segment => "video/mp2t",
        }
    }

    /// Playlists and manifests change while live; segments never do.
    pub fn is_playlist(self) -> bool {
        matches!(
            self,
            ResourceKind::MasterPlaylist | ResourceKind::MediaPlaylist | ResourceKind::DashManifest
        )
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::MasterPlaylist => "master",
            ResourceKind::MediaPlaylist => "playlist",
            ResourceKind::DashManifest => "manifest",
            ResourceKind::Segment => "segment",
            ResourceKind::InitSegment => "init",
        }
    }
}

/// Most path segments a media URL has (`/live/s/r/file`): more is not ours.
const MAX_SEGMENTS: usize = 6;

fn decode_once(raw: &str) -> Result<String, PathError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::Malformed("not UTF-8"))?;
    Ok(decoded.into_owned())
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 128
        && !c.starts_with('.')
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Parses the path part of a request URI (no query).
pub fn parse_media_path(raw_path: &str) -> Result<MediaPath, PathError> {
    if !raw_path.starts_with('/') || raw_path.starts_with("//") {
        return Err(PathError::Malformed(
            "path must be absolute and single-rooted",
        ));
    }
    let decoded = decode_once(raw_path)?;
    if decoded.contains('%') || decoded.contains('\\') || decoded.contains('\0') {
        return Err(PathError::Malformed("encoded or escaped characters"));
    }
    let parts: Vec<&str> = decoded[1..].split('/').collect();
    if parts.len() > MAX_SEGMENTS {
        return Err(PathError::NotFound);
    }
    for p in &parts {
        if *p == ".." || *p == "." {
            return Err(PathError::Malformed("dot segments"));
        }
        if !valid_component(p) {
            return Err(PathError::Malformed("invalid path component"));
        }
    }
    match parts.as_slice() {
        ["live", stream, rest @ ..] if !rest.is_empty() => Ok(MediaPath::Live {
            stream: stream.to_string(),
            rest: rest.iter().map(|s| s.to_string()).collect(),
        }),
        ["vod", asset, rest @ ..] if !rest.is_empty() => Ok(MediaPath::Vod {
            asset: asset.to_string(),
            rest: rest.iter().map(|s| s.to_string()).collect(),
        }),
        _ => Err(PathError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_paths_parse() {
        assert_eq!(
            parse_media_path("/live/demo/720p/12.ts"),
            Ok(MediaPath::Live {
                stream: "demo".into(),
                rest: vec!["720p".into(), "12.ts".into()]
            })
        );
        assert_eq!(
            parse_media_path("/vod/a1/master.m3u8"),
            Ok(MediaPath::Vod {
                asset: "a1".into(),
                rest: vec!["master.m3u8".into()]
            })
        );
        assert_eq!(parse_media_path("/live/demo"), Err(PathError::NotFound));
        assert_eq!(parse_media_path("/other/x/y"), Err(PathError::NotFound));
    }

    #[test]
    fn every_spelling_has_one_canonical_path() {
        for spelling in [
            "/live/demo/720p/12.ts",
            "/live/d%65mo/720p/12.ts",
            "/live/%64%65%6D%6f/720p/12.ts",
            "/%6cive/demo/%37%32%30p/1%32.ts",
            "/live/demo/720p/12%2Ets",
            "/live/demo%2F720p%2F12.ts",
        ] {
            let parsed = parse_media_path(spelling).unwrap();
            assert_eq!(parsed.canonical(), "/live/demo/720p/12.ts", "{spelling}");
            // Canonical is a fixed point: it parses back to itself.
            assert_eq!(parse_media_path(&parsed.canonical()), Ok(parsed));
        }
        assert_eq!(
            parse_media_path("/vod/a%31/master.m3u8")
                .unwrap()
                .canonical(),
            "/vod/a1/master.m3u8"
        );
    }

    #[test]
    fn traversal_attempts_are_refused() {
        for p in [
            "/live/../../etc/passwd",
            "/live/demo/../../../etc/passwd",
            "/live/%2e%2e/%2e%2e/etc/passwd",
            "/live/demo/..%2f..%2fetc/passwd",
            "/live/%252e%252e/x",
            "//etc/passwd",
            "/live/demo\\..\\x",
            "/live/demo/%5c..%5cx",
            "/live/demo/.hidden",
            "/live/demo/a%00b",
            "/live/./demo/x",
            "etc/passwd",
        ] {
            assert!(parse_media_path(p).is_err(), "{p} was accepted");
        }
    }

    #[test]
    fn kinds_and_types() {
        assert_eq!(
            ResourceKind::from_file_name("master.m3u8"),
            Some(ResourceKind::MasterPlaylist)
        );
        assert_eq!(
            ResourceKind::from_file_name("index.m3u8")
                .unwrap()
                .content_type("index.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(
            ResourceKind::from_file_name("3.ts")
                .unwrap()
                .content_type("3.ts"),
            "video/mp2t"
        );
        assert_eq!(
            ResourceKind::from_file_name("3.m4s")
                .unwrap()
                .content_type("3.m4s"),
            "video/iso.segment"
        );
        assert_eq!(
            ResourceKind::from_file_name("init-42.mp4"),
            Some(ResourceKind::InitSegment)
        );
        assert_eq!(ResourceKind::from_file_name("movie.mp4"), None);
        assert_eq!(
            ResourceKind::from_file_name("manifest.mpd")
                .unwrap()
                .content_type("m"),
            "application/dash+xml"
        );
        assert_eq!(ResourceKind::from_file_name("passwd"), None);
    }
}
