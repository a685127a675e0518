//! Reads the RTMP chunk stream (RTMP 1.0 spec §5.3) ahead of `rml_rtmp`, chunk header by chunk
//! header, so that a message's announced length is judged before one byte of its body is
//! buffered. Pure: bytes in, verdicts out.
//!
//! Why: `rml_rtmp`'s deserializer has no message size limit. It reserves a message's whole
//! announced length (up to 16 MiB − 1, the 24-bit field) on its first chunk and keeps what
//! arrives, and with a large chunk size it buffers the whole message before handing out a byte.
//! A peer that has not even published could make us hold 16 MiB per connection that way.
//!
//! The guard mirrors the deserializer's framing exactly, including its one simplification: it
//! keeps a single partial message, whichever chunk stream a chunk comes on (publishers send each
//! message's chunks together). Where the two could disagree (chunks of two messages
//! interleaved, a header changing a message in progress) the guard refuses the input instead, so
//! every header the deserializer acts on has been checked here first. [`ChunkGuard::scan`] stops
//! after each complete message: the caller feeds the deserializer message by message and can
//! change the limit between two messages (it grows when a publish is accepted).

use std::collections::HashMap;

/// Chunk size until the peer sends Set Chunk Size (§5.4.1).
pub const INITIAL_CHUNK_SIZE: u32 = 128;
/// Chunk streams a peer may use. Publishers use a handful (ffmpeg: 2 to 8); the deserializer
/// keeps a header per stream, and ids go up to 65599.
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Largest chunk size a peer may set: the field is 31 bits (§5.4.1).
const MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;
/// A 24-bit timestamp field of this value means a 4-byte extended timestamp follows (§5.3.1.3).
const EXTENDED_TIMESTAMP: u32 = 0x00ff_ffff;
/// Message type of Set Chunk Size (§5.4.1).
const TYPE_SET_CHUNK_SIZE: u8 = 1;
/// Message header length by chunk type (fmt 0..=3, §5.3.1.2).
const MESSAGE_HEADER_BYTES: [usize; 4] = [11, 7, 3, 0];
/// Longest chunk header: 3-byte basic header, 11-byte message header, extended timestamp.
const MAX_HEADER_BYTES: usize = 3 + 11 + 4;

/// Why the guard refused the input. The connection is closed on any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("a message of {announced} bytes was announced; at most {limit} are accepted")]
    MessageTooLarge { announced: u32, limit: u32 },
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    #[error("a chunk continues chunk stream {0}, which never started")]
    UnknownChunkStream(u32),
    #[error("chunks of two messages interleaved, or a message changed length mid-way")]
    Interleaved,
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
}

/// What one [`ChunkGuard::scan`] call read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the input read: up to the end of the first message that completed, else all.
    pub consumed: usize,
    /// Length of the message that completed at `consumed`, if one did.
    pub completed: Option<u32>,
}

/// What a chunk stream's last header said (later headers may leave these out).
#[derive(Debug, Clone, Copy, Default)]
struct StreamHeader {
    timestamp_field: u32,
    message_length: u32,
    type_id: u8,
}

/// The message being received.
#[derive(Debug, Clone, Copy)]
struct Partial {
    announced: u32,
    received: u32,
    /// Type from the latest chunk header (the deserializer takes the last one's).
    type_id: u8,
}

/// The chunk stream reader; one per connection, fed every byte after the handshake in order.
#[derive(Debug)]
pub struct ChunkGuard {
    max_message_bytes: u32,
    chunk_size: u32,
    streams: HashMap<u32, StreamHeader>,
    header: [u8; MAX_HEADER_BYTES],
    header_len: usize,
    /// Payload bytes of the current chunk still to come (0: a header is next).
    chunk_left: u32,
    partial: Option<Partial>,
    /// The first bytes of the message in progress (a Set Chunk Size value).
    head: [u8; 4],
}

impl ChunkGuard {
    /// A guard accepting messages up to `max_message_bytes`.
    pub fn new(max_message_bytes: u32) -> ChunkGuard {
        ChunkGuard {
            max_message_bytes,
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: HashMap::new(),
            header: [0; MAX_HEADER_BYTES],
            header_len: 0,
            chunk_left: 0,
            partial: None,
            head: [0; 4],
        }
    }

    /// Changes the message limit from the next message on.
    pub fn set_max_message_bytes(&mut self, max_message_bytes: u32) {
        self.max_message_bytes = max_message_bytes;
    }

    /// Announced length of the message in progress (0 when none): what the deserializer has
    /// reserved for it.
    pub fn in_flight_bytes(&self) -> u32 {
        self.partial.map_or(0, |p| p.announced)
    }

    /// Reads `input` up to the end of the first message that completes in it, or all of it.
    pub fn scan(&mut self, input: &[u8]) -> Result<Scan, GuardError> {
        let mut pos = 0;
        while pos < input.len() {
            if self.chunk_left > 0 {
                let take = (input.len() - pos).min(self.chunk_left as usize);
                self.payload(&input[pos..pos + take]);
                pos += take;
                if let Some(len) = self.end_of_chunk()? {
                    return Ok(Scan {
                        consumed: pos,
                        completed: Some(len),
                    });
                }
                continue;
            }
            self.header[self.header_len] = input[pos];
            self.header_len += 1;
            pos += 1;
            if self.header()? {
                // A zero-length message is complete with its header.
                if let Some(len) = self.end_of_chunk()? {
                    return Ok(Scan {
                        consumed: pos,
                        completed: Some(len),
                    });
                }
            }
        }
        Ok(Scan {
            consumed: pos,
            completed: None,
        })
    }

    /// Takes chunk payload bytes (at most what the chunk has left).
    fn payload(&mut self, bytes: &[u8]) {
        // Bounded by the chunk, which fits in the announced u32 length.
        let n = bytes.len() as u32;
        self.chunk_left = self.chunk_left.saturating_sub(n);
        let Some(p) = self.partial.as_mut() else {
            return;
        };
        for (i, b) in bytes.iter().enumerate() {
            match self.head.get_mut(p.received as usize + i) {
                Some(slot) => *slot = *b,
                None => break,
            }
        }
        p.received = p.received.saturating_add(n);
    }

    /// After payload bytes: if the chunk is done and with it the message, the message's length.
    fn end_of_chunk(&mut self) -> Result<Option<u32>, GuardError> {
        if self.chunk_left > 0 {
            return Ok(None);
        }
        let Some(p) = self.partial else {
            return Ok(None);
        };
        if p.received < p.announced {
            return Ok(None);
        }
        self.partial = None;
        if p.type_id == TYPE_SET_CHUNK_SIZE {
            // The deserializer reads the first 4 bytes (a shorter message is its error too).
            if p.announced < 4 {
                return Err(GuardError::InvalidChunkSize(0));
            }
            let size = u32::from_be_bytes(self.head);
            if size == 0 || size > MAX_CHUNK_SIZE {
                return Err(GuardError::InvalidChunkSize(size));
            }
            self.chunk_size = size;
        }
        Ok(Some(p.announced))
    }

    /// Tries to complete the chunk header from the bytes gathered so far. `Ok(true)` once it is
    /// complete and judged (the payload comes next).
    fn header(&mut self) -> Result<bool, GuardError> {
        let h = &self.header[..self.header_len];
        let fmt = usize::from(h[0] >> 6);
        // Basic header (§5.3.1.1): 6-bit id, or 0 / 1 for a 1- or 2-byte id + 64 that follows.
        let (csid, basic) = match h[0] & 0x3f {
            0 if h.len() < 2 => return Ok(false),
            0 => (u32::from(h[1]) + 64, 2),
            1 if h.len() < 3 => return Ok(false),
            1 => (u32::from(h[2]) * 256 + u32::from(h[1]) + 64, 3),
            id => (u32::from(id), 1),
        };
        let previous = self.streams.get(&csid).copied();
        if fmt != 0 && previous.is_none() {
            return Err(GuardError::UnknownChunkStream(csid));
        }
        if previous.is_none() && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(GuardError::TooManyChunkStreams);
        }
        let message_header = MESSAGE_HEADER_BYTES[fmt];
        if h.len() < basic + message_header {
            return Ok(false);
        }
        let m = &h[basic..];
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let mut header = if fmt == 0 {
            StreamHeader::default()
        } else {
            previous.unwrap_or_default()
        };
        if fmt <= 2 {
            header.timestamp_field = u24(&m[0..3]);
        }
        if fmt <= 1 {
            header.message_length = u24(&m[3..6]);
            header.type_id = m[6];
        }
        let extended = if header.timestamp_field >= EXTENDED_TIMESTAMP {
            4
        } else {
            0
        };
        if h.len() < basic + message_header + extended {
            return Ok(false);
        }
        self.header_len = 0;
        self.streams.insert(csid, header);
        self.start_chunk(header)?;
        Ok(true)
    }

    /// Judges a chunk whose header is complete and sets up its payload.
    fn start_chunk(&mut self, header: StreamHeader) -> Result<(), GuardError> {
        let length = header.message_length;
        let received = match self.partial {
            None => {
                if length > self.max_message_bytes {
                    return Err(GuardError::MessageTooLarge {
                        announced: length,
                        limit: self.max_message_bytes,
                    });
                }
                self.head = [0; 4];
                0
            }
            Some(p) if p.announced == length => p.received,
            Some(_) => return Err(GuardError::Interleaved),
        };
        // The deserializer's chunk length: a message that fits one chunk is read whole.
        let chunk = if length > self.chunk_size {
            (length - received).min(self.chunk_size)
        } else {
            length
        };
        if received.saturating_add(chunk) > length {
            return Err(GuardError::Interleaved);
        }
        self.partial = Some(Partial {
            announced: length,
            received,
            type_id: header.type_id,
        });
        self.chunk_left = chunk;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    fn message(type_id: u8, len: usize, timestamp: u32) -> MessagePayload {
        MessagePayload {
            timestamp: RtmpTimestamp::new(timestamp),
            message_stream_id: 1,
            type_id,
            data: Bytes::from(vec![0xab; len]),
        }
    }

    /// Serializes `(kind, size)` steps: `None` = Set Chunk Size to `size`, else a message.
    fn wire(steps: &[(Option<u8>, u32)]) -> Vec<u8> {
        wire_from(0, steps)
    }

    /// [`wire`] with timestamps from `base` (at or above 0xffffff: extended timestamps).
    fn wire_from(base: u32, steps: &[(Option<u8>, u32)]) -> Vec<u8> {
        let mut s = ChunkSerializer::new();
        let mut out = Vec::new();
        for (i, (kind, size)) in steps.iter().enumerate() {
            let packet = match kind {
                None => s.set_max_chunk_size(*size, RtmpTimestamp::new(0)).unwrap(),
                Some(t) => s
                    .serialize(
                        &message(*t, *size as usize, base + i as u32 * 40),
                        false,
                        false,
                    )
                    .unwrap(),
            };
            out.extend_from_slice(&packet.bytes);
        }
        out
    }

    /// Scans `bytes` fed in pieces of `split` and returns the completed lengths; checks each
    /// boundary against the real deserializer fed the same pieces.
    fn boundaries(bytes: &[u8], split: usize, limit: u32) -> Result<Vec<u32>, GuardError> {
        let mut guard = ChunkGuard::new(limit);
        let mut rml = ChunkDeserializer::new();
        let mut done = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            let mut rest = piece;
            while !rest.is_empty() {
                let scan = guard.scan(rest)?;
                let mut got = rml.get_next_message(&rest[..scan.consumed]).unwrap();
                assert_eq!(
                    got.as_ref().map(|m| m.data.len() as u32),
                    scan.completed,
                    "the guard and rml_rtmp agree on where a message ends"
                );
                if let Some(m) = got.take() {
                    if m.type_id == TYPE_SET_CHUNK_SIZE {
                        let size = u32::from_be_bytes(m.data[..4].try_into().unwrap());
                        rml.set_max_chunk_size(size as usize).unwrap();
                    }
                    assert!(rml.get_next_message(&[]).unwrap().is_none());
                }
                done.extend(scan.completed);
                rest = &rest[scan.consumed..];
            }
        }
        Ok(done)
    }

    #[test]
    fn finds_every_message_boundary_like_rml_rtmp() {
        let steps = [
            (Some(20), 300),
            (None, 4096),
            (Some(9), 10_000),
            (Some(8), 400),
            (None, 1),
            (Some(9), 9),
            (Some(18), 4096),
        ];
        // Small timestamps, and extended ones (4 more bytes in headers).
        for base in [0, 0x0100_0000] {
            let bytes = wire_from(base, &steps);
            for split in [1, 2, 7, 128, 4096, usize::MAX] {
                let sizes = boundaries(&bytes, split.min(bytes.len()), 1 << 20).unwrap();
                assert_eq!(sizes, [300, 4, 10_000, 400, 4, 9, 4096], "split {split}");
            }
        }
    }

    #[test]
    fn zero_length_messages_complete_with_their_header() {
        // (rml_rtmp's serializer writes no chunk for an empty message: raw chunks here.)
        let mut bytes = vec![0x03, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xc3]); // type 3 header: another empty message
        bytes.extend_from_slice(&[0x43, 0, 0, 40, 0, 0, 2, 8, 0xaa, 0xbb]);
        assert_eq!(boundaries(&bytes, 1, 100).unwrap(), [0, 0, 2]);
        assert_eq!(boundaries(&bytes, bytes.len(), 100).unwrap(), [0, 0, 2]);
    }

    #[test]
    fn a_large_announcement_is_refused_at_its_header() {
        // Set Chunk Size to the maximum, then a video message announcing 16 MiB − 1.
        let mut bytes = vec![
            0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
        ];
        let header_at = bytes.len();
        bytes.extend_from_slice(&[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
        let mut g = ChunkGuard::new(64 * 1024);
        assert_eq!(
            g.scan(&bytes[..header_at]).unwrap(),
            Scan {
                consumed: header_at,
                completed: Some(4)
            }
        );
        assert_eq!(
            g.scan(&bytes[header_at..]),
            Err(GuardError::MessageTooLarge {
                announced: 0xff_ffff,
                limit: 64 * 1024
            })
        );
    }

    #[test]
    fn the_limit_applies_from_the_next_message() {
        let bytes = wire(&[(Some(20), 100), (Some(9), 5000)]);
        let mut g = ChunkGuard::new(1000);
        let first = g.scan(&bytes).unwrap();
        assert_eq!(first.completed, Some(100));
        g.set_max_message_bytes(10_000);
        let second = g.scan(&bytes[first.consumed..]).unwrap();
        assert_eq!(second.completed, Some(5000));
    }

    #[test]
    fn in_flight_bytes_are_the_announced_length_until_the_end() {
        let bytes = wire(&[(Some(9), 1000)]);
        let mut g = ChunkGuard::new(4096);
        let s = g.scan(&bytes[..20]).unwrap();
        assert_eq!((s.consumed, s.completed), (20, None));
        assert_eq!(g.in_flight_bytes(), 1000);
        assert_eq!(g.scan(&bytes[20..]).unwrap().completed, Some(1000));
        assert_eq!(g.in_flight_bytes(), 0);
    }

    #[test]
    fn hostile_framing_is_refused() {
        // A continuation header on a stream that never started.
        assert_eq!(
            ChunkGuard::new(1000).scan(&[0xc5]),
            Err(GuardError::UnknownChunkStream(5))
        );
        // Too many chunk streams: zero-length messages on ids 2, 3, 4, ...
        let mut g = ChunkGuard::new(1000);
        let mut err = None;
        for id in 0..(MAX_CHUNK_STREAMS as u32 + 1) {
            let csid = id + 64;
            let chunk = [
                0x01,
                (csid - 64) as u8,
                ((csid - 64) >> 8) as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                20,
                0,
                0,
                0,
                0,
            ];
            if let Err(e) = g.scan(&chunk) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(GuardError::TooManyChunkStreams));
        // A chunk size of zero.
        let zero = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            ChunkGuard::new(1000).scan(&zero),
            Err(GuardError::InvalidChunkSize(0))
        );
        // A second message's header while the first is incomplete, with another length.
        let mut g = ChunkGuard::new(1000);
        let first = [0x04, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0];
        g.scan(&first).unwrap();
        g.scan(&[0u8; 128]).unwrap();
        let other = [0x05, 0, 0, 0, 0, 0, 10, 8, 1, 0, 0, 0];
        assert_eq!(g.scan(&other), Err(GuardError::Interleaved));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn agrees_with_rml_rtmp_on_any_publisher_stream(
            steps in proptest::collection::vec(
                prop_oneof![
                    (1u32..6000).prop_map(|s| (None, s)),
                    (prop_oneof![Just(8u8), Just(9u8), Just(18u8), Just(20u8)], 1u32..20_000)
                        .prop_map(|(t, s)| (Some(t), s)),
                ],
                1..20,
            ),
            split in 1usize..5000,
            extended in any::<bool>(),
        ) {
            let bytes = wire_from(if extended { 0x0100_0000 } else { 0 }, &steps);
            let expected: Vec<u32> = steps
                .iter()
                .map(|(kind, size)| if kind.is_some() { *size } else { 4 })
                .collect();
            prop_assert_eq!(boundaries(&bytes, split, 1 << 20).unwrap(), expected);
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut g = ChunkGuard::new(64 * 1024);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                match g.scan(rest) {
                    Ok(s) => rest = &rest[s.consumed..],
                    Err(_) => break,
                }
            }
        }
    }
}
