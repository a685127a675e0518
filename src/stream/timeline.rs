//! A stream's timeline across publisher sessions and worker restarts: one media playlist and
//! bandwidth meter per rendition. Pure bookkeeping; the session does the I/O.

use crate::packaging::dash::{
    DashAdaptation, DashManifest, DashRepresentation, DashSegment, MediaKind, Presentation,
};
use crate::packaging::{
    AudioMedia, BandwidthMeter, LowLatency, MediaPlaylist, Part, PlaylistEnd, PlaylistKind,
    RenderOptions, RenditionReport, Segment, VariantStream, render_multivariant_with_audio,
};
use crate::store::live::PlaylistSnapshot;
use crate::transcode::AUDIO_RENDITION;
use crate::transcode::PlannedRendition;
use std::collections::BTreeMap;

/// One rendition's state.
pub struct RenditionTimeline {
    pub playlist: MediaPlaylist,
    pub meter: BandwidthMeter,
    pub codec: Option<String>,
    pub width: u32,
    pub height: u32,
    /// The next segment starts a new session: EXT-X-DISCONTINUITY.
    pub discontinuity_pending: bool,
}

/// All renditions of one stream.
pub struct StreamTimeline {
    renditions: BTreeMap<String, RenditionTimeline>,
    /// Renditions of the current session, in ladder order (the master lists these).
    current: Vec<String>,
    audio_codec: Option<String>,
    frame_rate: u32,
    target_duration_s: u64,
    window_segments: usize,
    sessions: u64,
    /// CMAF with audio: the current session has a separate `audio` rendition.
    separate_audio: bool,
    /// LL-HLS parts in every rendition's playlist.
    low_latency: Option<LowLatency>,
    /// The current session's part tag ([`crate::layout::part_file`]).
    part_tag: String,
    /// Wall-clock sessions: playlists are not served before this sequence is reached
    /// ([`WALLCLOCK_HOLD_BACK_SEGMENTS`]).
    hold_back_until: Option<u64>,
    /// (rendition, URI) of unfinished segments' parts dropped when a session began (and, for
    /// wall-clock sessions, of every earlier segment: [`StreamTimeline::begin_session_at`]).
    orphaned_parts: Vec<(String, String)>,
}

/// A wall-clock session's playlists are served only once it has this many complete segments.
/// Until then the origin answers 404 for them and an edge asks another origin: a restarted
/// origin's first segments are the live edge, and a player that was playing from another
/// origin, a few parts behind that edge, must find its next segment in whatever it is served.
pub const WALLCLOCK_HOLD_BACK_SEGMENTS: u64 = 3;

/// Audio every ladder produces (the ladder resamples to this).
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;
pub const AUDIO_CHANNELS: u32 = 2;

/// What adding a segment produced.
pub struct SegmentAdded {
    pub segment: Segment,
    pub evicted: Vec<Segment>,
    /// Init segments no listed segment uses any more (left with the evicted segments).
    pub evicted_inits: Vec<String>,
}

impl StreamTimeline {
    pub fn new(target_duration_s: u64, window_segments: usize) -> StreamTimeline {
        StreamTimeline {
            renditions: BTreeMap::new(),
            current: Vec::new(),
            audio_codec: None,
            frame_rate: 30,
            target_duration_s,
            window_segments,
            sessions: 0,
            separate_audio: false,
            low_latency: None,
            part_tag: "0".into(),
            hold_back_until: None,
            orphaned_parts: Vec::new(),
        }
    }

    /// Parts of unfinished segments the last `begin_session` dropped (to delete).
    pub fn take_orphaned_parts(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.orphaned_parts)
    }

    /// Every rendition this stream has had.
    pub fn rendition_names(&self) -> Vec<String> {
        self.renditions.keys().cloned().collect()
    }

    /// The current session's part tag: random per session, so part names are never reused.
    pub fn part_tag(&self) -> &str {
        &self.part_tag
    }

    /// Every rendition lists LL-HLS parts (set before any rendition is created or restored).
    pub fn with_low_latency(mut self, ll: Option<LowLatency>) -> StreamTimeline {
        self.low_latency = ll;
        self
    }

    fn new_playlist(&self) -> MediaPlaylist {
        let p = MediaPlaylist::new(
            PlaylistKind::Live,
            self.target_duration_s,
            self.window_segments,
        );
        match self.low_latency {
            Some(ll) => p.with_low_latency(ll),
            None => p,
        }
    }

    /// Restores a rendition from the playlist a previous process wrote (worker restart).
    pub fn restore(&mut self, rendition: &str, playlist_text: &str) -> bool {
        let Some(state) = crate::packaging::parse_media_playlist_state(playlist_text) else {
            return false;
        };
        let mut playlist = self.new_playlist();
        playlist.resume_from(
            state
                .segments
                .first()
                .map(|s| s.sequence)
                .unwrap_or(state.next_sequence),
            state.discontinuity_sequence,
        );
        for s in state.segments {
            playlist.push(s);
        }
        playlist.resume_from(state.next_sequence, playlist.discontinuity_sequence());
        self.renditions.insert(
            rendition.to_string(),
            RenditionTimeline {
                playlist,
                meter: BandwidthMeter::with_estimate(0),
                codec: None,
                width: 0,
                height: 0,
                discontinuity_pending: true,
            },
        );
        true
    }

    /// Starts a publisher session with this ladder. Existing renditions continue their media
    /// sequence and mark a discontinuity; new renditions start level with the others so that
    /// segment N means the same time span everywhere.
    /// `audio_bitrate_kbps` is `Some` when audio is a rendition of its own (CMAF).
    /// Returns the session's first media sequence number, common to every rendition: the
    /// session's name (CMAF init segments are `init-{it}.mp4` in every rendition, so DASH groups
    /// them into one Period even when audio fragments later number differently).
    pub fn begin_session(
        &mut self,
        planned: &[PlannedRendition],
        frame_rate: u32,
        audio_bitrate_kbps: Option<u32>,
    ) -> u64 {
        self.sessions += 1;
        self.hold_back_until = None;
        self.part_tag = format!("{:08x}", rand::random::<u32>());
        self.frame_rate = frame_rate;
        self.audio_codec = None;
        self.separate_audio = audio_bitrate_kbps.is_some();
        let start = self
            .renditions
            .values()
            .map(|r| r.playlist.next_sequence())
            .max()
            .unwrap_or(0);
        let audio = audio_bitrate_kbps.map(|kbps| PlannedRendition {
            name: AUDIO_RENDITION.into(),
            width: 0,
            height: 0,
            video_bitrate_kbps: kbps,
        });
        for (name, r) in self.renditions.iter_mut() {
            // A half-written segment of the last session.
            for uri in r.playlist.discard_open_parts() {
                self.orphaned_parts.push((name.clone(), uri));
            }
            r.playlist.set_part_tag(&self.part_tag);
        }
        for p in planned.iter().chain(audio.as_ref()) {
            let estimate = p.video_bitrate_kbps as u64 * 1000;
            let mut fresh = self.new_playlist();
            fresh.set_part_tag(&self.part_tag);
            let entry = self.renditions.entry(p.name.clone()).or_insert_with(|| {
                let mut playlist = fresh;
                playlist.resume_from(start, 0);
                RenditionTimeline {
                    playlist,
                    meter: BandwidthMeter::with_estimate(estimate),
                    codec: None,
                    width: p.width,
                    height: p.height,
                    discontinuity_pending: start > 0,
                }
            });
            if entry.playlist.next_sequence() > 0 {
                entry.discontinuity_pending = true;
            }
            entry.codec = None;
            entry.width = p.width;
            entry.height = p.height;
            entry.meter = BandwidthMeter::with_estimate(estimate);
        }
        self.current = planned.iter().map(|p| p.name.clone()).collect();
        start
    }

    /// Starts a wall-clock session ([`crate::transcode::wallclock`]): its first segment is
    /// `sequence` (its start time / the segment duration) and its parts are tagged `part_tag`,
    /// the same on every origin fed the same source. Sequence numbers are time, so segments of
    /// earlier sessions (this process's or restored from disk) cannot stay listed before the
    /// new ones without a hole in the numbering: they leave the playlists (their segment and
    /// part files are returned by [`Self::take_orphaned_parts`] for deletion), which start afresh at
    /// `sequence` with discontinuity sequence 0 and no discontinuity, as every other origin of
    /// the stream says. Returns `sequence`.
    pub fn begin_session_at(
        &mut self,
        planned: &[PlannedRendition],
        frame_rate: u32,
        audio_bitrate_kbps: Option<u32>,
        sequence: u64,
        part_tag: &str,
    ) -> u64 {
        let names: Vec<String> = self.renditions.keys().cloned().collect();
        for name in names {
            let mut fresh = self.new_playlist();
            fresh.resume_from(sequence, 0);
            let Some(r) = self.renditions.get_mut(&name) else {
                continue;
            };
            let mut gone = r.playlist.discard_open_parts();
            for s in r.playlist.segments() {
                gone.push(s.uri.clone());
                gone.extend(s.parts.iter().map(|p| p.uri.clone()));
                // Not the init segments: a wall-clock session reuses its ladder's one init
                // name ([`crate::layout::wallclock_init_segment`]), rewritten in place.
            }
            self.orphaned_parts
                .extend(gone.into_iter().map(|uri| (name.clone(), uri)));
            r.playlist = fresh;
        }
        self.begin_session(planned, frame_rate, audio_bitrate_kbps);
        self.hold_back_until = Some(sequence + WALLCLOCK_HOLD_BACK_SEGMENTS);
        self.part_tag = part_tag.to_string();
        for r in self.renditions.values_mut() {
            // New renditions too (they start level with the others, here at `sequence`).
            r.playlist.resume_from(sequence, 0);
            r.playlist.set_part_tag(part_tag);
            r.discontinuity_pending = false;
        }
        sequence
    }

    pub fn set_video_codec(&mut self, rendition: &str, codec: String) {
        if let Some(r) = self.renditions.get_mut(rendition) {
            r.codec = Some(codec);
        }
    }

    pub fn set_audio_codec(&mut self, codec: String) {
        self.audio_codec = Some(codec);
    }

    pub fn next_sequence(&self, rendition: &str) -> Option<u64> {
        self.renditions
            .get(rendition)
            .map(|r| r.playlist.next_sequence())
    }

    pub fn current_renditions(&self) -> &[String] {
        &self.current
    }

    pub fn rendition(&self, name: &str) -> Option<&RenditionTimeline> {
        self.renditions.get(name)
    }

    /// Adds a part of `rendition`'s segment being written; returns where its playlist now
    /// ends. The segment's first part carries its date, discontinuity and init segment.
    pub fn add_part(
        &mut self,
        rendition: &str,
        part: Part,
        program_date_time_ms: i64,
        init_uri: Option<String>,
    ) -> Option<PlaylistEnd> {
        let r = self.renditions.get_mut(rendition)?;
        let discontinuity = r.discontinuity_pending;
        Some(
            r.playlist
                .push_part(part, program_date_time_ms, discontinuity, init_uri),
        )
    }

    /// The segment being written in `rendition` will not be listed: its parts go too.
    /// Returns the part URIs dropped.
    pub fn discard_open_parts(&mut self, rendition: &str) -> Vec<String> {
        self.renditions
            .get_mut(rendition)
            .map(|r| r.playlist.discard_open_parts())
            .unwrap_or_default()
    }

    /// `rendition`'s playlist as served now: the whole text, the delta update (LL-HLS) and a
    /// rendition report for every other rendition of the current session.
    /// `None` while a wall-clock session holds its playlists back.
    pub fn snapshot(&self, rendition: &str) -> Option<PlaylistSnapshot> {
        let r = self.renditions.get(rendition)?;
        if self
            .hold_back_until
            .is_some_and(|until| r.playlist.next_sequence() < until)
        {
            return None;
        }
        let reports = self
            .current
            .iter()
            .map(String::as_str)
            .chain(self.separate_audio.then_some(AUDIO_RENDITION))
            .filter(|name| *name != rendition)
            .filter_map(|name| {
                let other = self.renditions.get(name)?;
                // Nothing listed yet: no end to report.
                if other.playlist.segments().next().is_none() && other.playlist.open_parts() == 0 {
                    return None;
                }
                Some(RenditionReport {
                    uri: format!("../{}", crate::layout::rendition_playlist(name)),
                    end: other.playlist.end_position(),
                })
            })
            .collect::<Vec<_>>();
        let full = r.playlist.render_with(&RenderOptions {
            skip: false,
            rendition_reports: reports.clone(),
        });
        let delta = self.low_latency.map(|_| {
            bytes::Bytes::from(r.playlist.render_with(&RenderOptions {
                skip: true,
                rendition_reports: reports,
            }))
        });
        Some(PlaylistSnapshot {
            end: r.playlist.end_position(),
            full: bytes::Bytes::from(full),
            delta,
            target_duration_ms: self.target_duration_s * 1000,
            modified: std::time::SystemTime::now(),
        })
    }

    /// Appends a complete segment; returns it, the new playlist text and what left the window.
    pub fn add_segment(
        &mut self,
        rendition: &str,
        uri: String,
        duration_ms: u64,
        byte_size: u64,
        program_date_time_ms: i64,
        init_uri: Option<String>,
    ) -> Option<SegmentAdded> {
        let r = self.renditions.get_mut(rendition)?;
        let segment = Segment {
            init_uri,
            sequence: r.playlist.next_sequence(),
            duration_ms,
            uri,
            byte_size,
            program_date_time_ms,
            discontinuity: std::mem::take(&mut r.discontinuity_pending),
            parts: Vec::new(), // the playlist moves the parts written so far in
        };
        r.meter.record(byte_size, duration_ms);
        let evicted = r.playlist.push(segment.clone());
        let mut evicted_inits: Vec<String> =
            evicted.iter().filter_map(|s| s.init_uri.clone()).collect();
        evicted_inits.dedup();
        evicted_inits.retain(|init| {
            !r.playlist
                .segments()
                .any(|s| s.init_uri.as_ref() == Some(init))
        });
        Some(SegmentAdded {
            segment,
            evicted,
            evicted_inits,
        })
    }

    /// The separate audio rendition of the current session, once it has a codec and a segment.
    fn audio_media(&self) -> Option<Option<AudioMedia>> {
        if !self.separate_audio {
            return Some(None);
        }
        let r = self.renditions.get(AUDIO_RENDITION)?;
        r.playlist.segments().next()?;
        Some(Some(AudioMedia {
            group_id: "aud".into(),
            name: "audio".into(),
            uri: crate::layout::rendition_playlist(AUDIO_RENDITION),
            codecs: self.audio_codec.clone()?,
            channels: AUDIO_CHANNELS,
            bandwidth_bps: r.meter.peak_bps(),
            average_bandwidth_bps: r.meter.average_bps(),
        }))
    }

    /// The live DASH manifest (CMAF streams): every listed fMP4 segment, one Period per session.
    pub fn dash_manifest(&self, publish_time_ms: i64, segment_duration_ms: u64) -> DashManifest {
        let mut video = Vec::new();
        let mut audio = Vec::new();
        for (name, r) in &self.renditions {
            let segments: Vec<DashSegment> = r
                .playlist
                .segments()
                .filter_map(|s| {
                    Some(DashSegment {
                        number: s.sequence,
                        start_ms: s.program_date_time_ms,
                        duration_ms: s.duration_ms,
                        init: format!("{name}/{}", s.init_uri.as_ref()?),
                    })
                })
                .collect();
            if segments.is_empty() {
                continue;
            }
            let is_audio = name == AUDIO_RENDITION;
            let codecs = if is_audio {
                self.audio_codec.clone()
            } else {
                r.codec.clone()
            };
            let rep = DashRepresentation {
                id: name.clone(),
                bandwidth_bps: r.meter.peak_bps(),
                codecs: codecs.unwrap_or_else(|| {
                    if is_audio {
                        "mp4a.40.2".into()
                    } else {
                        "avc1.640028".into()
                    }
                }),
                width: r.width,
                height: r.height,
                frame_rate: self.frame_rate,
                audio_sampling_rate: AUDIO_SAMPLE_RATE,
                audio_channels: AUDIO_CHANNELS,
                media_template: crate::layout::dash_media_template(name),
                segments,
            };
            if is_audio {
                audio.push(rep)
            } else {
                video.push(rep)
            }
        }
        let mut adaptations = vec![DashAdaptation {
            kind: MediaKind::Video,
            representations: video,
        }];
        if !audio.is_empty() {
            adaptations.push(DashAdaptation {
                kind: MediaKind::Audio,
                representations: audio,
            });
        }
        DashManifest {
            presentation: Presentation::Live {
                publish_time_ms,
                minimum_update_period_ms: segment_duration_ms,
                suggested_presentation_delay_ms: segment_duration_ms * 3,
            },
            segment_duration_ms,
            adaptations,
        }
    }

    /// The master playlist, once every current rendition has a codec and a measured segment.
    pub fn master(&self) -> Option<String> {
        let mut variants = Vec::new();
        for name in &self.current {
            let r = self.renditions.get(name)?;
            let video = r.codec.as_ref()?;
            if r.playlist.segments().next().is_none() {
                return None;
            }
            let codecs = match &self.audio_codec {
                Some(a) if !self.separate_audio => format!("{video},{a}"),
                _ => video.clone(),
            };
            variants.push(VariantStream {
                uri: crate::layout::rendition_playlist(name),
                bandwidth_bps: r.meter.peak_bps(),
                average_bandwidth_bps: r.meter.average_bps(),
                codecs,
                width: r.width,
                height: r.height,
                frame_rate: self.frame_rate as f64,
            });
        }
        if variants.is_empty() {
            return None;
        }
        let audio = self.audio_media()?;
        Some(render_multivariant_with_audio(
            &variants,
            audio.as_ref(),
            true,
        ))
    }

    /// Renditions with codecs and bandwidth, for the bus's StreamStarted.
    pub fn rendition_infos(&self) -> Vec<crate::bus::RenditionInfo> {
        self.current
            .iter()
            .filter_map(|name| {
                let r = self.renditions.get(name)?;
                Some(crate::bus::RenditionInfo {
                    name: name.clone(),
                    bandwidth_bps: r.meter.peak_bps(),
                    width: r.width,
                    height: r.height,
                    codecs: match (&r.codec, &self.audio_codec) {
                        (Some(v), Some(a)) => format!("{v},{a}"),
                        (Some(v), None) => v.clone(),
                        _ => String::new(),
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Vec<PlannedRendition> {
        vec![PlannedRendition {
            name: "180p".into(),
            width: 320,
            height: 180,
            video_bitrate_kbps: 250,
        }]
    }

    #[test]
    fn a_wallclock_session_starts_afresh_at_its_sequence_and_holds_back_its_playlists() {
        let mut t = StreamTimeline::new(2, 6);
        // An earlier session's segments (restored or this process's).
        t.begin_session(&ladder(), 30, None);
        t.add_segment(
            "180p",
            "0.m4s".into(),
            1600,
            10,
            0,
            Some("init-0.mp4".into()),
        );
        t.take_orphaned_parts();
        let first = t.begin_session_at(&ladder(), 30, Some(128), 1000, "c8");
        assert_eq!(first, 1000);
        assert_eq!(t.part_tag(), "c8");
        assert_eq!(t.next_sequence("180p"), Some(1000));
        assert_eq!(t.next_sequence(AUDIO_RENDITION), Some(1000));
        let gone = t.take_orphaned_parts();
        assert!(gone.contains(&("180p".into(), "0.m4s".into())), "{gone:?}");
        assert!(
            !gone.iter().any(|(_, uri)| uri.starts_with("init-")),
            "{gone:?}"
        );
        for i in 0..WALLCLOCK_HOLD_BACK_SEGMENTS {
            assert!(t.snapshot("180p").is_none(), "held back at {i}");
            t.add_segment("180p", format!("{}.m4s", 1000 + i), 1600, 10, 0, None);
        }
        let text = String::from_utf8(t.snapshot("180p").unwrap().full.to_vec()).unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1000"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    }
}
