//! Reading back the media playlists [`super::hls`] writes: the timeline a restarted worker
//! continues, where a playlist ends (LL-HLS blocking at the edge), its newest segment (edge
//! freshness). The one HLS reader in zoomate; anything unexpected is `None`, never a panic.

use super::datetime::parse_rfc3339_millis;
use super::hls::Segment;
use super::ll_hls::{Part, PlaylistEnd};

/// Timeline state recovered from a playlist this module wrote (worker restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    pub next_sequence: u64,
    pub discontinuity_sequence: u64,
    pub segments: Vec<Segment>,
}

/// Parses what [`MediaPlaylist::render`] writes. Anything unexpected → `None`; never panics.
pub fn parse_media_playlist_state(text: &str) -> Option<ResumeState> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "#EXTM3U" {
        return None;
    }
    let mut media_sequence = None;
    let mut discontinuity_sequence = 0;
    let mut segments = Vec::new();
    let (mut duration, mut pdt, mut disc) = (None, 0i64, false);
    let mut map: Option<String> = None;
    let mut parts: Vec<Part> = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            // Kept so a restart can still delete them with their segment.
            let attr = |name: &str| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix(name))
                    .map(|x| x.trim_matches('"').to_string())
            };
            let secs = attr("DURATION=")?;
            let (whole, frac) = secs.split_once('.').unwrap_or((&secs, "0"));
            let frac = format!("{frac:0<3}");
            parts.push(Part {
                duration_ms: whole.parse::<u64>().ok()?.checked_mul(1000)?
                    + frac.get(..3)?.parse::<u64>().ok()?,
                uri: attr("URI=")?,
                independent: v.contains("INDEPENDENT=YES"),
                byte_size: 0,
            });
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_sequence = Some(v.parse::<u64>().ok()?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            discontinuity_sequence = v.parse().ok()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            map = Some(v.split('"').next()?.to_string());
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = parse_rfc3339_millis(v)?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let secs = v.split(',').next()?;
            let (whole, frac) = secs.split_once('.').unwrap_or((secs, "0"));
            let frac = format!("{frac:0<3}");
            let ms = whole
                .parse::<u64>()
                .ok()?
                .checked_mul(1000)?
                .checked_add(frac.get(..3)?.parse::<u64>().ok()?)?;
            duration = Some(ms);
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else {
            let seq = media_sequence?.checked_add(segments.len() as u64)?;
            segments.push(Segment {
                sequence: seq,
                duration_ms: duration.take()?,
                uri: line.to_string(),
                byte_size: 0,
                program_date_time_ms: std::mem::take(&mut pdt),
                discontinuity: std::mem::take(&mut disc),
                init_uri: map.clone(),
                parts: std::mem::take(&mut parts),
            });
        }
    }
    let media_sequence = media_sequence?;
    Some(ResumeState {
        next_sequence: media_sequence.checked_add(segments.len() as u64)?,
        discontinuity_sequence,
        segments,
    })
}

/// Where a media playlist (as [`MediaPlaylist::render_with`] writes it, whole or delta) ends:
/// its newest segment, or the parts of the one being written. `None`: nothing listed or
/// unreadable. Never panics.
pub fn playlist_end(text: &str) -> Option<PlaylistEnd> {
    let mut media_sequence: Option<u64> = None;
    let (mut segments, mut parts_since_segment, mut last_segment_parts) = (0u64, 0u32, 0u32);
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_sequence = Some(v.parse().ok()?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS=") {
            segments += v.split(',').next()?.parse::<u64>().ok()?;
        } else if line.starts_with("#EXT-X-PART:") {
            parts_since_segment += 1;
        } else if !line.is_empty() && !line.starts_with('#') {
            segments += 1;
            last_segment_parts = std::mem::take(&mut parts_since_segment);
        }
    }
    let first = media_sequence?;
    if parts_since_segment > 0 {
        return Some(PlaylistEnd::part(
            first.checked_add(segments)?,
            parts_since_segment - 1,
        ));
    }
    let last = first.checked_add(segments)?.checked_sub(1)?;
    Some(PlaylistEnd::segment(last, last_segment_parts))
}

/// Sequence number of the newest segment a media playlist lists (what the edge compares with
/// bus announcements); `None` for an empty or unreadable playlist.
pub fn newest_sequence(text: &str) -> Option<u64> {
    let state = parse_media_playlist_state(text)?;
    if state.segments.is_empty() {
        return None;
    }
    state.next_sequence.checked_sub(1)
}
