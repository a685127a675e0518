//! Ladder planning: which renditions a source gets and at what size. Pure.

use crate::config::RenditionConfig;

/// A rendition as it will be encoded for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRendition {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub video_bitrate_kbps: u32,
}

fn even(x: f64) -> u32 {
    let v = (x / 2.0).round() as u32 * 2;
    v.max(2)
}

/// Plans the ladder for a `source_width`×`source_height` source.
///
/// Renditions taller than the source are dropped (never upscale). If every rung is taller, the
/// lowest rung is kept at the source's own height. Widths follow the source's aspect ratio
/// (rounded to even, as 4:2:0 needs), so a 4:3 or portrait source is not stretched.
pub fn plan_ladder(
    rungs: &[RenditionConfig],
    source_width: u32,
    source_height: u32,
) -> Vec<PlannedRendition> {
    let (sw, sh) = (source_width.max(2) as f64, source_height.max(2) as f64);
    let fit = |name: &str, height: u32, bitrate: u32| {
        let height = height.min(source_height.max(2)) & !1;
        PlannedRendition {
            name: name.to_string(),
            width: even(height as f64 * sw / sh),
            height: height.max(2),
            video_bitrate_kbps: bitrate,
        }
    };
    let mut planned: Vec<PlannedRendition> = rungs
        .iter()
        .filter(|r| r.height <= source_height)
        .map(|r| fit(&r.name, r.height, r.video_bitrate_kbps))
        .collect();
    if planned.is_empty() {
        if let Some(lowest) = rungs.iter().min_by_key(|r| r.height) {
            planned.push(fit(&lowest.name, source_height, lowest.video_bitrate_kbps));
        }
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rungs() -> Vec<RenditionConfig> {
        crate::config::LadderConfig::default().renditions
    }

    #[test]
    fn full_ladder_for_720p_source() {
        let p = plan_ladder(&rungs(), 1280, 720);
        let dims: Vec<_> = p.iter().map(|r| (r.width, r.height)).collect();
        assert_eq!(dims, vec![(1280, 720), (854, 480), (640, 360)]);
    }

    #[test]
    fn taller_renditions_are_dropped() {
        let p = plan_ladder(&rungs(), 854, 480);
        assert_eq!(
            p.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            vec!["480p", "360p"]
        );
    }

    #[test]
    fn tiny_source_keeps_lowest_rung_at_source_height() {
        let p = plan_ladder(&rungs(), 320, 240);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].name.as_str(), p[0].width, p[0].height),
            ("360p", 320, 240)
        );
    }

    #[test]
    fn four_by_three_source_keeps_its_aspect() {
        let p = plan_ladder(&rungs(), 960, 720);
        assert_eq!((p[0].width, p[0].height), (960, 720));
        assert_eq!((p[2].width, p[2].height), (480, 360));
    }
}
