//! The one fact zoomate reads back from cmafmux's output: whether a chunk's first sample is a
//! sync sample (an IDR), which makes its LL-HLS part `INDEPENDENT=YES`. cmafmux clears the
//! buffer flags on what it pushes, so the answer is in the `moof` (ISO/IEC 14496-12 §8.8: `trun`
//! first-sample flags or per-sample flags, else the `tfhd` default).
//!
//! Our own reader rather than an MP4 crate: it walks three box headers of a buffer we produced
//! ourselves, and the crates that parse `moof` (`mp4`, `mp4-atom`) would copy every sample
//! entry to answer one bit. Pure; never panics on short or malformed input (answers `None`).

/// `sample_is_non_sync_sample` in a sample-flags word.
const NON_SYNC: u32 = 0x0001_0000;

/// Whether the first sample described by `moof` is a sync sample; `None` when the box does not
/// say (or is not a `moof`).
pub fn first_sample_is_sync(moof: &[u8]) -> Option<bool> {
    let (kind, body) = first_box(moof)?;
    if kind != *b"moof" {
        return None;
    }
    let traf = children(body).find(|(k, _)| k == b"traf")?.1;
    let mut default_flags = None;
    for (kind, b) in children(traf) {
        match &kind {
            b"tfhd" => default_flags = tfhd_default_flags(b),
            b"trun" => {
                return trun_first_flags(b)
                    .or(default_flags)
                    .map(|f| f & NON_SYNC == 0);
            }
            _ => {}
        }
    }
    None
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The first box of `b`: (type, body).
fn first_box(b: &[u8]) -> Option<([u8; 4], &[u8])> {
    let size = be32(b, 0)? as usize;
    let kind: [u8; 4] = b.get(4..8)?.try_into().ok()?;
    if size < 8 {
        return None; // 0 (to the end) and 1 (64-bit size) are not what cmafmux writes here
    }
    Some((kind, b.get(8..size)?))
}

/// The boxes inside a container body, stopping at the first malformed one.
fn children(mut b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = be32(b, 0)? as usize;
        let (kind, body) = first_box(b)?;
        b = b.get(size..)?;
        Some((kind, body))
    })
}

fn tfhd_default_flags(b: &[u8]) -> Option<u32> {
    let flags = be32(b, 0)? & 0x00ff_ffff;
    if flags & 0x20 == 0 {
        return None;
    }
    // track_ID, then the optional fields before default-sample-flags, in order.
    let mut at = 8;
    for (bit, len) in [(0x01, 8), (0x02, 4), (0x08, 4), (0x10, 4)] {
        if flags & bit != 0 {
            at += len;
        }
    }
    be32(b, at)
}

fn trun_first_flags(b: &[u8]) -> Option<u32> {
    let flags = be32(b, 0)? & 0x00ff_ffff;
    let mut at = 8; // version/flags, sample_count
    if flags & 0x01 != 0 {
        at += 4; // data_offset
    }
    if flags & 0x04 != 0 {
        return be32(b, at); // first_sample_flags
    }
    if flags & 0x400 != 0 {
        // The first sample's record: duration and size come before its flags.
        for bit in [0x100, 0x200] {
            if flags & bit != 0 {
                at += 4;
            }
        }
        return be32(b, at);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn moof(tfhd: Vec<u8>, trun: Vec<u8>) -> Vec<u8> {
        let mfhd = boxed(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]);
        let traf = boxed(
            b"traf",
            &[boxed(b"tfhd", &tfhd), boxed(b"trun", &trun)].concat(),
        );
        boxed(b"moof", &[mfhd, traf].concat())
    }

    const SYNC: u32 = 0x0200_0000;
    const DELTA: u32 = 0x0101_0000;

    #[test]
    fn first_sample_flags_are_found_wherever_the_muxer_put_them() {
        // trun first_sample_flags (an IDR followed by deltas).
        let mut trun = vec![0, 0, 0x00, 0x05, 0, 0, 0, 6, 0, 0, 0, 100];
        trun.extend(SYNC.to_be_bytes());
        let tfhd_delta = [
            &[0u8, 0, 0, 0x20][..],
            &1u32.to_be_bytes(),
            &DELTA.to_be_bytes(),
        ]
        .concat();
        assert_eq!(
            first_sample_is_sync(&moof(tfhd_delta.clone(), trun)),
            Some(true)
        );
        // Only the tfhd default: every sample a delta.
        let trun = vec![0, 0, 0x00, 0x01, 0, 0, 0, 6, 0, 0, 0, 100];
        assert_eq!(first_sample_is_sync(&moof(tfhd_delta, trun)), Some(false));
        // Per-sample flags after duration and size.
        let mut trun = vec![0, 0, 0x07, 0x01, 0, 0, 0, 1, 0, 0, 0, 100];
        trun.extend(3000u32.to_be_bytes());
        trun.extend(999u32.to_be_bytes());
        trun.extend(DELTA.to_be_bytes());
        let tfhd = [&[0u8, 0, 0, 0][..], &1u32.to_be_bytes()].concat();
        assert_eq!(first_sample_is_sync(&moof(tfhd.clone(), trun)), Some(false));
        // Nothing said: unknown.
        let trun = vec![0, 0, 0x00, 0x01, 0, 0, 0, 6, 0, 0, 0, 100];
        assert_eq!(first_sample_is_sync(&moof(tfhd, trun)), None);
    }

    #[test]
    fn garbage_is_unknown_not_a_panic() {
        for g in [
            &b""[..],
            b"\0\0\0\x08moo",
            b"\0\0\0\x10moof\0\0\0\x01traf",
            b"\xff\xff\xff\xffmoof",
        ] {
            assert_eq!(first_sample_is_sync(g), None);
        }
        let mut v = moof(vec![0, 0, 0, 0x20], vec![0, 0, 0, 0x04]);
        assert_eq!(first_sample_is_sync(&v), None);
        v.truncate(v.len() - 3);
        assert_eq!(first_sample_is_sync(&v), None);
    }
}
