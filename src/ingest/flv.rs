//! FLV framing for RTMP media: each RTMP audio/video message body is an FLV tag body, so an FLV
//! byte stream for `flvdemux` is a header followed by tags. Pure.

use bytes::{BufMut, Bytes, BytesMut};

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// The 13-byte FLV file header (signature, version 1, audio+video flags, header size 9) plus
/// PreviousTagSize0.
pub fn header() -> Bytes {
    Bytes::from_static(&[b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One FLV tag with its trailing PreviousTagSize. `None` if the body exceeds FLV's 24-bit size.
pub fn tag(kind: u8, timestamp_ms: u32, body: &[u8]) -> Option<Bytes> {
    let len = u32::try_from(body.len()).ok().filter(|l| *l < (1 << 24))?;
    let mut out = BytesMut::with_capacity(11 + body.len() + 4);
    out.put_u8(kind);
    out.put_uint(len as u64, 3);
    out.put_uint((timestamp_ms & 0x00ff_ffff) as u64, 3);
    out.put_u8((timestamp_ms >> 24) as u8); // TimestampExtended: the high byte
    out.put_uint(0, 3); // StreamID, always 0
    out.put_slice(body);
    out.put_u32(11 + len);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_layout() {
        let t = tag(TAG_VIDEO, 0x0123_4567, &[0xaa, 0xbb]).unwrap();
        assert_eq!(&t[..], &[9, 0, 0, 2, 0x23, 0x45, 0x67, 0x01, 0, 0, 0, 0xaa, 0xbb, 0, 0, 0, 13]);
        assert_eq!(header().len(), 13);
        assert!(tag(TAG_AUDIO, 0, &vec![0u8; 1 << 24]).is_none());
    }
}
