//! MPEG-DASH manifests (ISO/IEC 23009-1) for CMAF segments: live (dynamic) and VOD (static).
//!
//! Timing model. Every segment carries its presentation start in milliseconds:
//! - live: wall-clock milliseconds since the Unix epoch (the segment's program date time). The
//!   MPD's `availabilityStartTime` is the epoch, and the fMP4 `tfdt` is written on the same
//!   wall clock (cmafmux `decode-time-offset`), so `SegmentTimeline@t` = `tfdt` in ms and a
//!   period's `presentationTimeOffset` equals its start;
//! - VOD: milliseconds from the start of the asset.
//!
//! One Period per encoding session (segments sharing one init segment). A publisher reconnect
//! or a worker restart starts a new session with a new init segment; in DASH that is a new
//! Period, the counterpart of HLS's `EXT-X-DISCONTINUITY` + `EXT-X-MAP`.
//!
//! Pure code: no clock, no disk. The caller passes `publish_time_ms`.

use super::hls::rfc3339_millis;
use std::fmt::Write as _;

/// MPD `SegmentTimeline` / `presentationTimeOffset` timescale: milliseconds.
pub const TIMESCALE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Video,
    Audio,
}

/// One media segment of one representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashSegment {
    /// `$Number$` (the HLS media sequence number; the file is `{number}.m4s`).
    pub number: u64,
    /// Presentation start, ms (see the module docs for the clock).
    pub start_ms: i64,
    pub duration_ms: u64,
    /// Init segment URL relative to the MPD; segments sharing one form a Period.
    pub init: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DashRepresentation {
    pub id: String,
    pub bandwidth_bps: u64,
    /// RFC 6381, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codecs: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: u32,
    pub audio_sampling_rate: u32,
    pub audio_channels: u32,
    /// Media URL template relative to the MPD, with `$Number$`, e.g. `360p/$Number$.m4s`.
    pub media_template: String,
    pub segments: Vec<DashSegment>,
}

/// One AdaptationSet: every representation of one media type (switchable, aligned segments).
#[derive(Debug, Clone, PartialEq)]
pub struct DashAdaptation {
    pub kind: MediaKind,
    pub representations: Vec<DashRepresentation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// `type="dynamic"`: a live sliding window.
    Live {
        publish_time_ms: i64,
        /// How often players re-fetch the MPD (one segment).
        minimum_update_period_ms: u64,
        /// How far behind the live edge players start.
        suggested_presentation_delay_ms: u64,
    },
    /// `type="static"`: a complete asset.
    Vod,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DashManifest {
    pub presentation: Presentation,
    /// Nominal segment duration (minBufferTime, maxSegmentDuration).
    pub segment_duration_ms: u64,
    pub adaptations: Vec<DashAdaptation>,
}

/// `PT12.345S`.
fn duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}PT{}.{:03}S", ms / 1000, ms % 1000)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A Period: the segments of one encoding session.
struct PeriodPlan {
    init_key_index: usize,
    start_ms: i64,
    end_ms: i64,
}

/// Periods in presentation order. A period is keyed by the init segment's file name (the
/// session's init segments share a name across representations), starts at the earliest
/// segment of that session in any representation and ends where the last one ends.
fn plan_periods(m: &DashManifest, keys: &mut Vec<String>) -> Vec<PeriodPlan> {
    let mut plans: Vec<PeriodPlan> = Vec::new();
    for rep in m.adaptations.iter().flat_map(|a| &a.representations) {
        for seg in &rep.segments {
            let key = init_key(&seg.init).to_string();
            let idx = match keys.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    keys.push(key);
                    keys.len() - 1
                }
            };
            let end = seg.start_ms + seg.duration_ms as i64;
            match plans.iter_mut().find(|p| p.init_key_index == idx) {
                Some(p) => {
                    p.start_ms = p.start_ms.min(seg.start_ms);
                    p.end_ms = p.end_ms.max(end);
                }
                None => plans.push(PeriodPlan {
                    init_key_index: idx,
                    start_ms: seg.start_ms,
                    end_ms: end,
                }),
            }
        }
    }
    plans.sort_by_key(|p| p.start_ms);
    plans
}

/// `360p/init-17.mp4` → `init-17.mp4`: the part shared by every representation of a session.
fn init_key(init: &str) -> &str {
    init.rsplit('/').next().unwrap_or(init)
}

/// Renders the MPD.
pub fn render_mpd(m: &DashManifest) -> String {
    let mut keys = Vec::new();
    let periods = plan_periods(m, &mut keys);
    let seg_ms = m.segment_duration_ms.max(1) as i64;
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011,http://dashif.org/guidelines/dash-if-simple\" minBufferTime=\"{}\" maxSegmentDuration=\"{}\"",
        duration(seg_ms * 2),
        duration(seg_ms + seg_ms / 2),
    );
    match m.presentation {
        Presentation::Live {
            publish_time_ms,
            minimum_update_period_ms,
            suggested_presentation_delay_ms,
        } => {
            // The window: from the earliest listed segment to the newest one's end.
            let window_ms = match (periods.first(), periods.iter().map(|p| p.end_ms).max()) {
                (Some(first), Some(end)) => end - first.start_ms,
                _ => 0,
            };
            let _ = write!(
                out,
                " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\">\n",
                rfc3339_millis(0),
                rfc3339_millis(publish_time_ms),
                duration(minimum_update_period_ms as i64),
                duration(window_ms.max(seg_ms)),
                duration(suggested_presentation_delay_ms as i64),
            );
        }
        Presentation::Vod => {
            let total = periods.iter().map(|p| p.end_ms).max().unwrap_or(0)
                - periods.first().map(|p| p.start_ms).unwrap_or(0);
            let _ = writeln!(
                out,
                " type=\"static\" mediaPresentationDuration=\"{}\">",
                duration(total)
            );
        }
    }
    let origin_ms = match m.presentation {
        Presentation::Live { .. } => 0, // availabilityStartTime is the epoch
        Presentation::Vod => periods.first().map(|p| p.start_ms).unwrap_or(0),
    };
    for (i, plan) in periods.iter().enumerate() {
        let key = &keys[plan.init_key_index];
        let id = key.trim_end_matches(".mp4");
        // A session followed by another one is over: it says where its media ends (an Early
        // Terminated Period, ISO/IEC 23009-1 5.3.2.1). Without @duration a Period lasts until
        // the next one starts, so the gap while the source was away (a reconnect, a restart)
        // belongs to the old Period, and a player that joins with its live edge in that gap
        // (dash.js 5) waits there for a segment the old session will never write.
        let ended = match periods.get(i + 1) {
            Some(_) => format!(" duration=\"{}\"", duration(plan.end_ms - plan.start_ms)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  <Period id=\"{}\" start=\"{}\"{ended}>",
            xml_escape(id),
            duration(plan.start_ms - origin_ms)
        );
        for (index, a) in m.adaptations.iter().enumerate() {
            let reps: Vec<(&DashRepresentation, Vec<&DashSegment>)> = a
                .representations
                .iter()
                .map(|r| {
                    (
                        r,
                        r.segments
                            .iter()
                            .filter(|s| init_key(&s.init) == key)
                            .collect::<Vec<_>>(),
                    )
                })
                .filter(|(_, segs)| !segs.is_empty())
                .collect();
            if reps.is_empty() {
                continue;
            }
            render_adaptation(&mut out, index, a.kind, &reps, plan.start_ms);
        }
        out.push_str("  </Period>\n");
    }
    if let Presentation::Live { .. } = m.presentation {
        // DASH-IF IOP 4.7: a live MPD names its clock. Relative: players resolve it against the
        // MPD's URL, so it is the clock of whichever tier served the MPD (edge or origin).
        let _ = writeln!(
            out,
            "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"{}\"/>",
            crate::layout::TIME_PATH
        );
    }
    out.push_str("</MPD>\n");
    out
}

fn render_adaptation(
    out: &mut String,
    index: usize,
    kind: MediaKind,
    reps: &[(&DashRepresentation, Vec<&DashSegment>)],
    period_start_ms: i64,
) {
    match kind {
        MediaKind::Video => {
            let max_w = reps.iter().map(|(r, _)| r.width).max().unwrap_or(0);
            let max_h = reps.iter().map(|(r, _)| r.height).max().unwrap_or(0);
            let max_fps = reps.iter().map(|(r, _)| r.frame_rate).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "    <AdaptationSet id=\"{index}\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\" maxWidth=\"{max_w}\" maxHeight=\"{max_h}\" maxFrameRate=\"{max_fps}\" par=\"{}\">",
                par(max_w, max_h)
            );
        }
        MediaKind::Audio => {
            let _ = writeln!(
                out,
                "    <AdaptationSet id=\"{index}\" contentType=\"audio\" mimeType=\"audio/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\" lang=\"und\">"
            );
        }
    }
    let mut sorted: Vec<&(&DashRepresentation, Vec<&DashSegment>)> = reps.iter().collect();
    sorted.sort_by(|a, b| b.0.bandwidth_bps.cmp(&a.0.bandwidth_bps));
    for (r, segs) in sorted {
        match kind {
            MediaKind::Video => {
                let _ = writeln!(
                    out,
                    "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{}\" height=\"{}\" frameRate=\"{}\" sar=\"1:1\">",
                    xml_escape(&r.id),
                    r.bandwidth_bps.max(1),
                    xml_escape(&r.codecs),
                    r.width,
                    r.height,
                    r.frame_rate
                );
            }
            MediaKind::Audio => {
                let _ = writeln!(
                    out,
                    "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"{}\">\n        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>",
                    xml_escape(&r.id),
                    r.bandwidth_bps.max(1),
                    xml_escape(&r.codecs),
                    r.audio_sampling_rate,
                    r.audio_channels.max(1)
                );
            }
        }
        let first = segs.first().map(|s| s.number).unwrap_or(0);
        let init = segs.first().map(|s| s.init.as_str()).unwrap_or_default();
        let _ = writeln!(
            out,
            "        <SegmentTemplate timescale=\"{TIMESCALE}\" presentationTimeOffset=\"{period_start_ms}\" startNumber=\"{first}\" initialization=\"{}\" media=\"{}\">",
            xml_escape(init),
            xml_escape(&r.media_template)
        );
        out.push_str("          <SegmentTimeline>\n");
        render_timeline(out, segs);
        out.push_str(
            "          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n",
        );
    }
    out.push_str("    </AdaptationSet>\n");
}

/// `<S t d r>` runs. `t` is written for the first segment and wherever the timeline is not
/// contiguous; `r` folds repeats of the same duration. Numbers are consecutive by construction
/// (the caller lists one contiguous playlist window); a gap in numbers restarts with `t`.
fn render_timeline(out: &mut String, segs: &[&DashSegment]) {
    let mut i = 0;
    let mut expected: Option<(i64, u64)> = None; // (t, number) the next segment continues from
    while i < segs.len() {
        let s = segs[i];
        let contiguous = expected == Some((s.start_ms, s.number));
        let mut repeats = 0;
        let mut end = s.start_ms + s.duration_ms as i64;
        let mut next_number = s.number + 1;
        while let Some(n) = segs.get(i + 1 + repeats) {
            if n.duration_ms != s.duration_ms || n.start_ms != end || n.number != next_number {
                break;
            }
            repeats += 1;
            end += n.duration_ms as i64;
            next_number += 1;
        }
        out.push_str("            <S");
        if !contiguous {
            let _ = write!(out, " t=\"{}\"", s.start_ms);
        }
        let _ = write!(out, " d=\"{}\"", s.duration_ms);
        if repeats > 0 {
            let _ = write!(out, " r=\"{repeats}\"");
        }
        out.push_str("/>\n");
        expected = Some((end, next_number));
        i += 1 + repeats;
    }
}

fn par(w: u32, h: u32) -> String {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = gcd(w, h).max(1);
    format!("{}:{}", w / g, h / g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(id: &str, kind: MediaKind, starts: &[(u64, i64, u64, &str)]) -> DashRepresentation {
        DashRepresentation {
            id: id.into(),
            bandwidth_bps: if kind == MediaKind::Video {
                800_000
            } else {
                128_000
            },
            codecs: if kind == MediaKind::Video {
                "avc1.64001e".into()
            } else {
                "mp4a.40.2".into()
            },
            width: if kind == MediaKind::Video { 640 } else { 0 },
            height: if kind == MediaKind::Video { 360 } else { 0 },
            frame_rate: 30,
            audio_sampling_rate: 48_000,
            audio_channels: 2,
            media_template: format!("{id}/$Number$.m4s"),
            segments: starts
                .iter()
                .map(|(n, t, d, init)| DashSegment {
                    number: *n,
                    start_ms: *t,
                    duration_ms: *d,
                    init: format!("{id}/{init}"),
                })
                .collect(),
        }
    }

    const T0: i64 = 1_764_000_000_000;

    #[test]
    fn live_mpd_has_dynamic_timing_and_one_adaptation_set_per_media_type() {
        let video = [
            (10, T0, 2000, "init-10.mp4"),
            (11, T0 + 2000, 2000, "init-10.mp4"),
            (12, T0 + 4000, 2000, "init-10.mp4"),
        ];
        let audio = [
            (10, T0 - 21, 2005, "init-10.mp4"),
            (11, T0 + 1984, 2005, "init-10.mp4"),
        ];
        let m = DashManifest {
            presentation: Presentation::Live {
                publish_time_ms: T0 + 6100,
                minimum_update_period_ms: 2000,
                suggested_presentation_delay_ms: 6000,
            },
            segment_duration_ms: 2000,
            adaptations: vec![
                DashAdaptation {
                    kind: MediaKind::Video,
                    representations: vec![
                        rep("360p", MediaKind::Video, &video),
                        rep("240p", MediaKind::Video, &video),
                    ],
                },
                DashAdaptation {
                    kind: MediaKind::Audio,
                    representations: vec![rep("audio", MediaKind::Audio, &audio)],
                },
            ],
        };
        let x = render_mpd(&m);
        assert!(
            x.contains("type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00.000Z\""),
            "{x}"
        );
        assert!(
            x.contains("publishTime=\"2025-11-24T16:00:06.100Z\""),
            "{x}"
        );
        assert!(x.contains("minimumUpdatePeriod=\"PT2.000S\""), "{x}");
        assert!(
            x.contains("  </Period>\n  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"/time\"/>\n</MPD>"),
            "{x}"
        );
        // Window: earliest start (audio, T0-21) to the newest end (video, T0+6000).
        assert!(x.contains("timeShiftBufferDepth=\"PT6.021S\""), "{x}");
        assert_eq!(x.matches("<Period ").count(), 1);
        assert!(
            x.contains(&format!(
                "<Period id=\"init-10\" start=\"PT{}.979S\">",
                (T0 - 21) / 1000
            )),
            "{x}"
        );
        assert_eq!(x.matches("<AdaptationSet ").count(), 2);
        assert!(x.contains("contentType=\"video\" mimeType=\"video/mp4\""));
        assert!(x.contains("contentType=\"audio\" mimeType=\"audio/mp4\""));
        assert!(x.contains("<Representation id=\"360p\" bandwidth=\"800000\" codecs=\"avc1.64001e\" width=\"640\" height=\"360\" frameRate=\"30\""));
        assert!(x.contains(&format!("presentationTimeOffset=\"{}\" startNumber=\"10\" initialization=\"360p/init-10.mp4\" media=\"360p/$Number$.m4s\"", T0 - 21)));
        assert!(
            x.contains(&format!("<S t=\"{T0}\" d=\"2000\" r=\"2\"/>")),
            "{x}"
        );
        assert!(x.contains("audioSamplingRate=\"48000\""));
    }

    #[test]
    fn a_new_session_is_a_new_period_and_gaps_restate_t() {
        let video = [
            (0, T0, 2000, "init-0.mp4"),
            (1, T0 + 2000, 1500, "init-0.mp4"),
            (2, T0 + 9000, 2000, "init-2.mp4"),
            (3, T0 + 11_000, 2000, "init-2.mp4"),
        ];
        let m = DashManifest {
            presentation: Presentation::Live {
                publish_time_ms: T0 + 13_000,
                minimum_update_period_ms: 2000,
                suggested_presentation_delay_ms: 6000,
            },
            segment_duration_ms: 2000,
            adaptations: vec![DashAdaptation {
                kind: MediaKind::Video,
                representations: vec![rep("360p", MediaKind::Video, &video)],
            }],
        };
        let x = render_mpd(&m);
        assert_eq!(x.matches("<Period ").count(), 2, "{x}");
        let second = x.find("<Period id=\"init-2\"").unwrap();
        assert!(x.find("<Period id=\"init-0\"").unwrap() < second);
        assert!(x[second..].contains("startNumber=\"2\" initialization=\"360p/init-2.mp4\""));
        assert!(
            x[..second].contains(&format!(
                "<S t=\"{T0}\" d=\"2000\"/>\n            <S d=\"1500\"/>"
            )),
            "{x}"
        );
        assert!(x[second..].contains(&format!("<S t=\"{}\" d=\"2000\" r=\"1\"/>", T0 + 9000)));
        // The ended session says where its media ends (3.5 s), so the 5.5 s gap before the
        // next one is between the Periods, not inside the first; the live Period has no end.
        assert!(
            x.contains("<Period id=\"init-0\" start=\"PT1764000000.000S\" duration=\"PT3.500S\">"),
            "{x}"
        );
        assert!(
            !x[second..].lines().next().unwrap().contains("duration="),
            "{x}"
        );
    }

    #[test]
    fn vod_mpd_is_static_with_the_total_duration() {
        let video = [
            (0, 0, 2000, "init.mp4"),
            (1, 2000, 2000, "init.mp4"),
            (2, 4000, 700, "init.mp4"),
        ];
        let m = DashManifest {
            presentation: Presentation::Vod,
            segment_duration_ms: 2000,
            adaptations: vec![DashAdaptation {
                kind: MediaKind::Video,
                representations: vec![rep("360p", MediaKind::Video, &video)],
            }],
        };
        let x = render_mpd(&m);
        assert!(
            x.contains("type=\"static\" mediaPresentationDuration=\"PT4.700S\""),
            "{x}"
        );
        assert!(!x.contains("availabilityStartTime") && !x.contains("minimumUpdatePeriod"));
        assert!(x.contains("<Period id=\"init\" start=\"PT0.000S\">"));
        assert!(
            x.contains("<S t=\"0\" d=\"2000\" r=\"1\"/>\n            <S d=\"700\"/>"),
            "{x}"
        );
    }

    #[test]
    fn empty_manifest_is_still_well_formed() {
        let m = DashManifest {
            presentation: Presentation::Vod,
            segment_duration_ms: 2000,
            adaptations: vec![],
        };
        let x = render_mpd(&m);
        assert!(x.starts_with("<?xml") && x.trim_end().ends_with("</MPD>"));
    }
}
