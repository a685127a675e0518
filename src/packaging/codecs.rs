//! RFC 6381 `CODECS` strings from the real encoded stream, not from configuration.

fn avc1(profile_idc: u8, constraints: u8, level_idc: u8) -> String {
    format!("avc1.{profile_idc:02x}{constraints:02x}{level_idc:02x}")
}

/// `avc1.PPCCLL` from the first SPS (NAL type 7) in an Annex-B byte stream.
pub fn h264_codec_from_annexb(data: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 3 < data.len() {
        // Start code 00 00 01 (a 4-byte 00 00 00 01 ends with the same three bytes).
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let nal = data.get(i + 3..)?;
            if nal.first().map(|h| h & 0x1f) == Some(7) && nal.len() >= 4 {
                return Some(avc1(nal[1], nal[2], nal[3]));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// `avc1.PPCCLL` from an AVCDecoderConfigurationRecord (`codec_data` of stream-format=avc).
pub fn h264_codec_from_avcc(codec_data: &[u8]) -> Option<String> {
    match codec_data {
        [1, profile, constraints, level, ..] => Some(avc1(*profile, *constraints, *level)),
        _ => None,
    }
}

/// `mp4a.40.N` from an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1; object type 31 escapes
/// to 32 + the next 6 bits).
pub fn aac_codec_from_audio_specific_config(asc: &[u8]) -> Option<String> {
    let first = *asc.first()?;
    let mut object_type = first >> 3;
    if object_type == 31 {
        let second = *asc.get(1)?;
        object_type = 32 + (((first & 0x07) << 3) | (second >> 5));
    }
    if object_type == 0 {
        return None;
    }
    Some(format!("mp4a.40.{object_type}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sps_in_annexb_gives_profile_constraints_level() {
        // AUD, then SPS for High profile level 3.1 (x264's usual 720p output).
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9,
        ];
        assert_eq!(
            h264_codec_from_annexb(&data).as_deref(),
            Some("avc1.64001f")
        );
        let baseline = [0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0x00];
        assert_eq!(
            h264_codec_from_annexb(&baseline).as_deref(),
            Some("avc1.42c01e")
        );
    }

    #[test]
    fn annexb_without_sps_or_truncated_is_none() {
        assert_eq!(h264_codec_from_annexb(&[0, 0, 1, 0x65, 1, 2, 3]), None);
        assert_eq!(h264_codec_from_annexb(&[0, 0, 1, 0x67, 0x64]), None);
        assert_eq!(h264_codec_from_annexb(&[]), None);
    }

    #[test]
    fn avcc_record() {
        assert_eq!(
            h264_codec_from_avcc(&[1, 0x4d, 0x40, 0x28, 0xff]).as_deref(),
            Some("avc1.4d4028")
        );
        assert_eq!(h264_codec_from_avcc(&[0, 1]), None);
    }

    #[test]
    fn aac_object_types() {
        // AAC-LC, 48 kHz, stereo: 0x11 0x90.
        assert_eq!(
            aac_codec_from_audio_specific_config(&[0x11, 0x90]).as_deref(),
            Some("mp4a.40.2")
        );
        // HE-AAC (SBR, 5).
        assert_eq!(
            aac_codec_from_audio_specific_config(&[0x2b, 0x92]).as_deref(),
            Some("mp4a.40.5")
        );
        // Escape: 31 → 32 + 6 bits (here 0b000010 → 34).
        assert_eq!(
            aac_codec_from_audio_specific_config(&[0xf8, 0x40]).as_deref(),
            Some("mp4a.40.34")
        );
        assert_eq!(aac_codec_from_audio_specific_config(&[]), None);
        assert_eq!(aac_codec_from_audio_specific_config(&[0xf8]), None);
    }
}
