//! An RTMP publisher's media as its stream's sessions read it, so one connection can feed more
//! than one pipeline: when a session fails for a reason of the store's (a full disk), the
//! publisher stays connected and the next session starts mid-stream, as a reconnect would,
//! without the publisher having to reconnect (ffmpeg does not; OBS does, after a delay).
//!
//! A pipeline reads an FLV byte stream from its start: the file header, `onMetaData`, the
//! codec configurations (AVC/HEVC decoder configuration, AAC AudioSpecificConfig), then media
//! from a keyframe. A publisher sends those once, at its start. So the feed remembers the
//! header, the newest metadata and the newest configuration of each track as they pass
//! ([`Resume`], pure), and after [`PublisherFeed::restart`] drops media until the next video
//! keyframe, then hands the next session exactly what a fresh connection would: the header,
//! the metadata and configurations, and the keyframe, every timestamp rebased so the keyframe
//! is at 0 (the next session starts its own clock, like a reconnecting publisher's).
//!
//! Our own reading of FLV tags (the 11-byte tag header and the first two body bytes), as
//! [`crate::ingest::flv`] writes them: a crate would parse the whole tag to give us two fields.
//!
//! Bounded: a remembered tag is at most [`MAX_REMEMBERED_TAG_BYTES`] (a larger one is not
//! remembered, and a feed without a video configuration cannot restart); nothing is queued
//! here beyond one session's start (five pieces).

use crate::ingest::flv::{TAG_AUDIO, TAG_HEADER_BYTES, TAG_SCRIPT, TAG_VIDEO};
use crate::ingest::rtmp::{FlvReceiver, Held};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// The largest tag remembered to start a later session (an AVC configuration is tens of bytes,
/// `onMetaData` hundreds).
pub const MAX_REMEMBERED_TAG_BYTES: usize = 64 * 1024;

/// How far before a restart's keyframe a tag may be sent and still be dropped as early
/// interleaving; further back, the publisher's clock went back.
const MAX_EARLY_MS: u32 = 10_000;

/// One piece of the FLV byte stream (the header or a whole tag) and, when it came from the
/// publisher queue, the room it holds there until dropped.
#[derive(Debug)]
pub struct FeedPiece {
    bytes: Bytes,
    _held: Option<Held>,
}

impl FeedPiece {
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes, and the room they hold (drop it once the bytes are handed on).
    pub fn into_parts(self) -> (Bytes, Option<Held>) {
        (self.bytes, self._held)
    }
}

/// Why a feed cannot start another session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotResumable {
    #[error("no FLV header seen")]
    NoHeader,
    #[error(
        "no video decoder configuration seen (or it was larger than {MAX_REMEMBERED_TAG_BYTES} bytes)"
    )]
    NoVideoConfig,
}

/// The publisher's media, read by one session at a time.
#[derive(Debug)]
pub struct PublisherFeed {
    rx: FlvReceiver,
    resume: Resume,
    /// A restarted session's start, handed out before anything else.
    start: VecDeque<Bytes>,
}

impl PublisherFeed {
    pub fn new(rx: FlvReceiver) -> PublisherFeed {
        PublisherFeed {
            rx,
            resume: Resume::default(),
            start: VecDeque::new(),
        }
    }

    /// The publisher queue's byte bound.
    pub fn max_bytes(&self) -> u32 {
        self.rx.max_bytes()
    }

    /// The next piece; `None` once the publisher is gone and its queue empty.
    pub async fn recv(&mut self) -> Option<FeedPiece> {
        loop {
            if let Some(bytes) = self.start.pop_front() {
                return Some(FeedPiece { bytes, _held: None });
            }
            let chunk = self.rx.recv().await?;
            if let Some(piece) = self.admit(chunk) {
                return Some(piece);
            }
        }
    }

    /// [`PublisherFeed::recv`] for a blocking thread.
    pub fn blocking_recv(&mut self) -> Option<FeedPiece> {
        loop {
            if let Some(bytes) = self.start.pop_front() {
                return Some(FeedPiece { bytes, _held: None });
            }
            let chunk = self.rx.blocking_recv()?;
            if let Some(piece) = self.admit(chunk) {
                return Some(piece);
            }
        }
    }

    fn admit(&mut self, chunk: crate::ingest::rtmp::FlvChunk) -> Option<FeedPiece> {
        let (bytes, held) = chunk.into_parts();
        match self.resume.admit(bytes) {
            Admit::Pass(bytes) => Some(FeedPiece {
                bytes,
                _held: Some(held),
            }),
            Admit::Drop => None,
            Admit::Start(pieces) => {
                // The room of the keyframe's chunk comes back now; the start is small.
                self.start.extend(pieces);
                None
            }
        }
    }

    /// The next session starts mid-stream: from the next video keyframe, after the header,
    /// metadata and configurations. Media until then is dropped as it is read.
    pub fn restart(&mut self) -> Result<(), NotResumable> {
        self.start.clear();
        self.resume.restart()
    }

    /// Reads and drops media (remembering configurations) for `wait`, so the publisher is not
    /// held back while no pipeline reads it. False: the publisher went away.
    pub async fn discard_for(&mut self, wait: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(chunk)) => {
                    let (bytes, _held) = chunk.into_parts();
                    self.resume.observe(&bytes);
                }
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }
}

/// What [`Resume::admit`] makes of a piece.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Pass(Bytes),
    Drop,
    /// The first keyframe after a restart: the whole start of the next session.
    Start(Vec<Bytes>),
}

/// The pieces remembered to start a session mid-stream, and the rewriting after a restart
/// (pure).
#[derive(Debug, Default)]
struct Resume {
    header: Option<Bytes>,
    metadata: Option<Bytes>,
    video_config: Option<Bytes>,
    audio_config: Option<Bytes>,
    phase: Phase,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Pieces pass as they are (the first session).
    #[default]
    AsSent,
    /// Restarted: dropping until a video keyframe.
    AwaitingKeyframe,
    /// Restarted at the keyframe sent at this timestamp: it is subtracted from every later one.
    Rebased(u32),
}

impl Resume {
    fn restart(&mut self) -> Result<(), NotResumable> {
        if self.header.is_none() {
            return Err(NotResumable::NoHeader);
        }
        if self.video_config.is_none() {
            return Err(NotResumable::NoVideoConfig);
        }
        self.phase = Phase::AwaitingKeyframe;
        Ok(())
    }

    /// Remembers what a later session needs from this piece.
    fn observe(&mut self, piece: &Bytes) {
        if piece.starts_with(b"FLV") {
            self.header = Some(piece.clone());
            return;
        }
        let Some(tag) = Tag::parse(piece) else { return };
        let slot = match tag.kind {
            TAG_SCRIPT => &mut self.metadata,
            TAG_VIDEO if tag.is_video_config() => &mut self.video_config,
            TAG_AUDIO if tag.is_audio_config() => &mut self.audio_config,
            _ => return,
        };
        if piece.len() <= MAX_REMEMBERED_TAG_BYTES {
            *slot = Some(piece.clone());
        } else if tag.kind != TAG_SCRIPT {
            // A configuration too large to keep: the older one no longer describes the stream.
            *slot = None;
        }
    }

    fn admit(&mut self, piece: Bytes) -> Admit {
        self.observe(&piece);
        match self.phase {
            Phase::AsSent => Admit::Pass(piece),
            Phase::AwaitingKeyframe => {
                let Some(tag) = Tag::parse(&piece) else {
                    return Admit::Drop;
                };
                if tag.kind != TAG_VIDEO || !tag.is_coded_keyframe() {
                    return Admit::Drop;
                }
                let base = tag.timestamp_ms;
                self.phase = Phase::Rebased(base);
                let mut start: Vec<Bytes> = self.header.iter().cloned().collect();
                for remembered in [&self.metadata, &self.video_config, &self.audio_config]
                    .into_iter()
                    .flatten()
                {
                    start.push(with_timestamp(remembered, 0));
                }
                start.push(with_timestamp(&piece, 0));
                Admit::Start(start)
            }
            Phase::Rebased(base) => match Tag::parse(&piece) {
                // The ingest sends metadata at 0, whenever it comes.
                Some(tag) if tag.kind == TAG_SCRIPT => Admit::Pass(piece),
                Some(tag) if tag.timestamp_ms >= base => {
                    Admit::Pass(with_timestamp(&piece, tag.timestamp_ms - base))
                }
                // Sent a little before the keyframe the session starts at (audio interleaved
                // early): not part of this session.
                Some(tag) if base - tag.timestamp_ms <= MAX_EARLY_MS => Admit::Drop,
                // The publisher's clock went back (reset, wrap): from here its timestamps go
                // to the pipeline as sent, the jump as it would have without a restart.
                Some(_) => {
                    self.phase = Phase::AsSent;
                    Admit::Pass(piece)
                }
                None => Admit::Pass(piece),
            },
        }
    }
}

/// The fields of an FLV tag the feed reads.
struct Tag<'a> {
    kind: u8,
    timestamp_ms: u32,
    body: &'a [u8],
}

impl<'a> Tag<'a> {
    fn parse(piece: &'a [u8]) -> Option<Tag<'a>> {
        let header = piece.get(..TAG_HEADER_BYTES)?;
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let timestamp_ms = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let body = piece.get(TAG_HEADER_BYTES..TAG_HEADER_BYTES + size)?;
        Some(Tag {
            kind: header[0] & 0x1f,
            timestamp_ms,
            body,
        })
    }

    /// VideoTagHeader: frame type 1 (keyframe) in the high nibble; enhanced RTMP sets bit 7
    /// and keeps the frame type in bits 4–6.
    fn is_keyframe(&self) -> bool {
        self.body.first().is_some_and(|b| (b >> 4) & 0x7 == 1)
    }

    /// A coded keyframe a session can start at: not a configuration, end of sequence or
    /// metadata (AVC/HEVC `AVCPacketType` 1; enhanced RTMP `CodedFrames` or `CodedFramesX`).
    fn is_coded_keyframe(&self) -> bool {
        if !self.is_keyframe() {
            return false;
        }
        match self.body {
            [b, ..] if b & 0x80 != 0 => matches!(b & 0x0f, 1 | 3),
            [b, packet_type, ..] if b & 0x0f == 7 || b & 0x0f == 12 => *packet_type == 1,
            [_, ..] => true,
            [] => false,
        }
    }

    /// An AVC sequence header (`AVCPacketType` 0), or enhanced RTMP's `SequenceStart`
    /// (packet type 0 in the low nibble).
    fn is_video_config(&self) -> bool {
        match self.body {
            [b, ..] if b & 0x80 != 0 => b & 0x0f == 0,
            [b, 0, ..] => b & 0x0f == 7 || b & 0x0f == 12,
            _ => false,
        }
    }

    /// An AAC sequence header: sound format 10, `AACPacketType` 0.
    fn is_audio_config(&self) -> bool {
        matches!(self.body, [b, 0, ..] if b >> 4 == 10)
    }
}

/// `piece` (a whole tag) with its timestamp set to `timestamp_ms`.
fn with_timestamp(piece: &Bytes, timestamp_ms: u32) -> Bytes {
    if Tag::parse(piece).is_some_and(|t| t.timestamp_ms == timestamp_ms) {
        return piece.clone();
    }
    let mut out = BytesMut::from(&piece[..]);
    let ts = timestamp_ms.to_be_bytes();
    out[4..7].copy_from_slice(&ts[1..4]);
    out[7] = ts[0];
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::flv;

    fn video(ts: u32, key: bool, config: bool) -> Bytes {
        let frame = if key { 0x17 } else { 0x27 };
        flv::tag(
            TAG_VIDEO,
            ts,
            &[frame, if config { 0 } else { 1 }, 0, 0, 0, 0xab],
        )
        .unwrap()
    }
    fn audio(ts: u32, config: bool) -> Bytes {
        flv::tag(TAG_AUDIO, ts, &[0xaf, if config { 0 } else { 1 }, 0x12]).unwrap()
    }
    fn ts_of(b: &Bytes) -> u32 {
        Tag::parse(b).unwrap().timestamp_ms
    }

    #[test]
    fn tags_pass_unchanged_until_a_restart() {
        let mut r = Resume::default();
        for piece in [
            flv::header(),
            video(0, true, true),
            audio(0, true),
            video(33, true, false),
        ] {
            assert_eq!(r.admit(piece.clone()), Admit::Pass(piece));
        }
    }

    #[test]
    fn a_restart_starts_at_the_next_keyframe_with_the_remembered_start_rebased() {
        let mut r = Resume::default();
        let meta = flv::tag(TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData").unwrap();
        for piece in [
            flv::header(),
            meta.clone(),
            video(0, true, true),
            audio(0, true),
        ] {
            r.admit(piece);
        }
        for ts in (33..5000).step_by(33) {
            r.admit(video(ts, ts % 2000 < 33, false));
            r.admit(audio(ts, false));
        }
        // A new configuration mid-stream (resolution change) replaces the old one.
        let new_config = flv::tag(TAG_VIDEO, 5000, &[0x17, 0, 0, 0, 0, 0xcd]).unwrap();
        r.admit(new_config.clone());
        r.restart().unwrap();
        assert_eq!(r.admit(video(6033, false, false)), Admit::Drop);
        assert_eq!(r.admit(audio(6040, false)), Admit::Drop);
        let Admit::Start(start) = r.admit(video(6066, true, false)) else {
            panic!("a keyframe starts the session")
        };
        assert_eq!(start.len(), 5);
        assert_eq!(start[0], flv::header());
        assert_eq!(start[1], meta);
        assert_eq!(
            &start[2][TAG_HEADER_BYTES..],
            &new_config[TAG_HEADER_BYTES..]
        );
        assert_eq!(
            &start[3][TAG_HEADER_BYTES..],
            &audio(0, true)[TAG_HEADER_BYTES..]
        );
        assert!(start[1..].iter().all(|t| ts_of(t) == 0));
        assert_eq!(
            &start[4][TAG_HEADER_BYTES..],
            &video(0, true, false)[TAG_HEADER_BYTES..]
        );
        // Audio sent a little before the keyframe belongs to no session; later tags rebased.
        assert_eq!(r.admit(audio(6050, false)), Admit::Drop);
        let Admit::Pass(later) = r.admit(audio(6090, false)) else {
            panic!()
        };
        assert_eq!(ts_of(&later), 24);
        // Metadata passes at 0; a clock gone far back passes as sent from then on.
        let meta_later = flv::tag(TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData").unwrap();
        assert_eq!(r.admit(meta_later.clone()), Admit::Pass(meta_later));
        r.restart().unwrap();
        let Admit::Start(_) = r.admit(video(50_000, true, false)) else {
            panic!()
        };
        assert_eq!(
            r.admit(video(100, true, false)),
            Admit::Pass(video(100, true, false))
        );
        assert_eq!(r.admit(audio(120, false)), Admit::Pass(audio(120, false)));
        // Beyond 24 bits: the extended byte is rebased too.
        r.restart().unwrap();
        let Admit::Start(_) = r.admit(video(0x0100_0010, true, false)) else {
            panic!()
        };
        let Admit::Pass(later) = r.admit(video(0x0100_0043, false, false)) else {
            panic!()
        };
        assert_eq!(ts_of(&later), 0x33);
    }

    #[test]
    fn a_feed_without_a_video_configuration_cannot_restart() {
        let mut r = Resume::default();
        assert_eq!(r.restart(), Err(NotResumable::NoHeader));
        r.admit(flv::header());
        r.admit(audio(0, true));
        assert_eq!(r.restart(), Err(NotResumable::NoVideoConfig));
        // Too large to keep: forgotten, not kept stale.
        r.admit(video(0, true, true));
        let mut big = vec![0x17, 0];
        big.resize(MAX_REMEMBERED_TAG_BYTES, 0);
        r.admit(flv::tag(TAG_VIDEO, 10, &big).unwrap());
        assert_eq!(r.restart(), Err(NotResumable::NoVideoConfig));
    }

    #[test]
    fn enhanced_rtmp_sequence_start_and_keyframes_are_recognised() {
        // Enhanced RTMP: bit 7 set, frame type 1 in bits 4-6, packet type in the low nibble.
        let start = flv::tag(TAG_VIDEO, 0, &[0x90, b'h', b'v', b'c', b'1']).unwrap();
        let frame = flv::tag(TAG_VIDEO, 40, &[0x91, b'h', b'v', b'c', b'1']).unwrap();
        let (s, f) = (Tag::parse(&start).unwrap(), Tag::parse(&frame).unwrap());
        assert!(s.is_video_config() && s.is_keyframe());
        assert!(!f.is_video_config() && f.is_keyframe());
        assert!(Tag::parse(&video(0, false, false)).is_some_and(|t| !t.is_keyframe()));
        // Not a start: configuration, AVC end of sequence, enhanced metadata.
        let end_of_sequence = flv::tag(TAG_VIDEO, 0, &[0x17, 2, 0, 0, 0]).unwrap();
        let metadata = flv::tag(TAG_VIDEO, 0, &[0x94, b'h', b'v', b'c', b'1']).unwrap();
        for t in [&start, &end_of_sequence, &metadata, &video(0, true, true)] {
            assert!(!Tag::parse(t).unwrap().is_coded_keyframe());
        }
        assert!(Tag::parse(&frame).unwrap().is_coded_keyframe());
        assert!(
            Tag::parse(&video(0, true, false))
                .unwrap()
                .is_coded_keyframe()
        );
        assert!(Tag::parse(&b"short"[..]).is_none());
    }
}
