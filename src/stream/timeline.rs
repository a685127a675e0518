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
    /// (rendition, URI) of unfinished segments' parts dropped when a session began (and, for
    /// wall-clock sessions, of every earlier segment: [`StreamTimeline::begin_session_at`]).
    orphaned_parts: Vec<(String, String)>,
}

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
    /// new ones without a hole in the numbering: they leave the playlists (their files are
    /// returned by [`Self::take_orphaned_parts`] for deletion), which start afresh at
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
                if let Some(init) = &s.init_uri
                    && !gone.contains(init)
                {
                    gone.push(init.clone());
                }
            }
            self.orphaned_parts
                .extend(gone.into_iter().map(|uri| (name.clone(), uri)));
            r.playlist = fresh;
        }
        self.begin_session(planned, frame_rate, audio_bitrate_kbps);
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
    pub fn snapshot(&self, rendition: &str) -> Option<PlaylistSnapshot> {
        let r = self.renditions.get(rendition)?;
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
