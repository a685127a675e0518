//! FLV framing for RTMP media. Each RTMP audio/video message body is an FLV tag body (same
//! `AudioTagHeader`/`VideoTagHeader` layout), so the FLV byte stream `flvdemux` reads is the
//! file header followed by one tag per message. Pure: no I/O, no RTMP.
//!
//! Layout (Adobe FLV spec v10.1, annex E): header = `"FLV"`, version 1, flags, header size 9,
//! then `PreviousTagSize0` = 0; each tag = type (1), data size (3), timestamp low 24 bits (3),
//! timestamp high 8 bits (1), stream id 0 (3), body, then `PreviousTagSize` = 11 + body size (4).

use bytes::{BufMut, Bytes, BytesMut};

/// FLV tag type of an audio tag (RTMP message type 8).
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of a video tag (RTMP message type 9).
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of a script data tag (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

/// Size of the FLV file header including `PreviousTagSize0`.
pub const HEADER_BYTES: usize = 13;
/// Size of an FLV tag header (before the body).
pub const TAG_HEADER_BYTES: usize = 11;
/// Size of the `PreviousTagSize` field after each tag.
pub const PREVIOUS_TAG_SIZE_BYTES: usize = 4;
/// FLV's `DataSize` is 24 bits: no tag body can be larger than this.
pub const MAX_TAG_BODY_BYTES: usize = (1 << 24) - 1;

/// The 13-byte FLV file header (signature, version 1, audio+video flags, header size 9) plus
/// `PreviousTagSize0`.
pub fn header() -> Bytes {
    // flags 0x05 = TypeFlagsAudio (bit 2) | TypeFlagsVideo (bit 0).
    Bytes::from_static(&[b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One FLV tag with its trailing `PreviousTagSize`. `None` if the body exceeds FLV's 24-bit
/// `DataSize`.
pub fn tag(kind: u8, timestamp_ms: u32, body: &[u8]) -> Option<Bytes> {
    if body.len() > MAX_TAG_BODY_BYTES {
        return None;
    }
    let len = body.len() as u32;
    let mut out = BytesMut::with_capacity(TAG_HEADER_BYTES + body.len() + PREVIOUS_TAG_SIZE_BYTES);
    out.put_u8(kind);
    out.put_uint(u64::from(len), 3);
    out.put_uint(u64::from(timestamp_ms & 0x00ff_ffff), 3);
    out.put_u8((timestamp_ms >> 24) as u8); // TimestampExtended: the high byte
    out.put_uint(0, 3); // StreamID, always 0
    out.put_slice(body);
    out.put_u32(TAG_HEADER_BYTES as u32 + len);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_audio_and_video_flags() {
        let h = header();
        assert_eq!(h.len(), HEADER_BYTES);
        assert_eq!(&h[..3], b"FLV");
        assert_eq!(h[4], 0x05);
        assert_eq!(&h[5..9], &[0, 0, 0, 9]);
        assert_eq!(&h[9..], &[0, 0, 0, 0]);
    }

    #[test]
    fn tag_layout_with_extended_timestamp() {
        let t = tag(TAG_VIDEO, 0x0123_4567, &[0xaa, 0xbb]).unwrap();
        assert_eq!(
            &t[..],
            &[
                9, 0, 0, 2, 0x23, 0x45, 0x67, 0x01, 0, 0, 0, 0xaa, 0xbb, 0, 0, 0, 13
            ]
        );
    }

    #[test]
    fn empty_body_is_a_valid_tag() {
        let t = tag(TAG_AUDIO, 0, &[]).unwrap();
        assert_eq!(t.len(), TAG_HEADER_BYTES + PREVIOUS_TAG_SIZE_BYTES);
        assert_eq!(&t[11..], &[0, 0, 0, 11]);
    }

    #[test]
    fn body_size_is_limited_to_24_bits() {
        assert!(tag(TAG_AUDIO, 0, &vec![0u8; MAX_TAG_BODY_BYTES + 1]).is_none());
        let t = tag(TAG_SCRIPT, 0, &vec![0u8; MAX_TAG_BODY_BYTES]).unwrap();
        assert_eq!(&t[1..4], &[0xff, 0xff, 0xff]);
    }
}
