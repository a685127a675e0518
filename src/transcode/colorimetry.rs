//! The ladder's colorimetry: one value for every rendition, taken from the source.
//!
//! GStreamer's converters guess a colorimetry from the frame size when caps leave it open
//! (BT.709 for HD, BT.601 for SD), so scaling an HD source to 480p/360p would apply a
//! colour-matrix conversion and tag the result `smpte170m`, while 720p stays BT.709. Players
//! that ignore the VUI tags then show renditions in different colours, and ffmpeg's same ladder
//! keeps the pixel values. Fixing the colorimetry in the caps after scaling, to the same value
//! in every branch, means no matrix conversion happens and x264enc tags the SPS VUI with it.

use gst_video::{
    VideoColorMatrix, VideoColorPrimaries, VideoColorRange, VideoColorimetry, VideoFormat,
    VideoFormatInfo, VideoTransferFunction,
};

/// For a source whose caps carry no usable colorimetry (e.g. RGB from a test pattern, or a
/// decoder that leaves it open): BT.709, limited range. It is what HD and web video use, what
/// GStreamer already assumes for an untagged HD source and what players assume for untagged HD,
/// and declaring it for the whole ladder keeps every rung identical in colour.
pub fn declared() -> VideoColorimetry {
    VideoColorimetry::new(
        VideoColorRange::Range16_235,
        VideoColorMatrix::Bt709,
        VideoTransferFunction::Bt709,
        VideoColorPrimaries::Bt709,
    )
}

/// The colorimetry every rendition is encoded with, from the source's raw video caps.
///
/// A YUV source keeps its own colorimetry (its matrix is what the pixel values mean); any
/// component it leaves unknown is taken from [`declared`]. A non-YUV source (RGB, grey) or one
/// without a known matrix is converted once, to [`declared`], the same way in every branch.
/// Needs `gst::init()` (format and colorimetry names are GStreamer's).
pub fn ladder_colorimetry(source: &gst::StructureRef) -> VideoColorimetry {
    let declared = declared();
    let yuv = source
        .get::<&str>("format")
        .ok()
        .map(VideoFormat::from_string)
        // `Unknown` and `Encoded` describe no pixel layout to ask about.
        .filter(|f| !matches!(f, VideoFormat::Unknown | VideoFormat::Encoded))
        .is_some_and(|f| VideoFormatInfo::from_format(f).is_yuv());
    let Some(source) = source
        .get::<&str>("colorimetry")
        .ok()
        .and_then(|s| s.parse::<VideoColorimetry>().ok())
    else {
        return declared;
    };
    if !yuv
        || matches!(
            source.matrix(),
            VideoColorMatrix::Unknown | VideoColorMatrix::Rgb
        )
    {
        return declared;
    }
    VideoColorimetry::new(
        match source.range() {
            VideoColorRange::Unknown => declared.range(),
            r => r,
        },
        source.matrix(),
        match source.transfer() {
            VideoTransferFunction::Unknown => declared.transfer(),
            t => t,
        },
        match source.primaries() {
            VideoColorPrimaries::Unknown => declared.primaries(),
            p => p,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(caps: &str) -> String {
        gst::init().unwrap();
        let caps: gst::Caps = caps.parse().unwrap();
        ladder_colorimetry(caps.structure(0).unwrap()).to_string()
    }

    #[test]
    fn yuv_source_keeps_its_colorimetry_whatever_its_size() {
        assert_eq!(
            pick("video/x-raw,format=I420,width=1280,height=720,colorimetry=bt709"),
            "bt709"
        );
        // A BT.601 HD source stays BT.601: converting it would change its pixels.
        assert_eq!(
            pick("video/x-raw,format=I420,width=1920,height=1080,colorimetry=bt601"),
            "bt601"
        );
        assert_eq!(
            pick("video/x-raw,format=NV12,width=640,height=360,colorimetry=bt2020"),
            "bt2020"
        );
    }

    #[test]
    fn untagged_or_rgb_source_gets_the_declared_bt709() {
        assert_eq!(
            pick("video/x-raw,format=I420,width=640,height=360"),
            "bt709"
        );
        assert_eq!(
            pick("video/x-raw,format=ABGR64_LE,width=640,height=360,colorimetry=sRGB"),
            "bt709"
        );
        assert_eq!(
            pick("video/x-raw,format=I420,width=640,height=360,colorimetry=nonsense"),
            "bt709"
        );
    }

    #[test]
    fn unknown_components_are_filled_from_the_declared_value() {
        // matrix BT.601, everything else unknown.
        let c: VideoColorimetry = {
            gst::init().unwrap();
            pick("video/x-raw,format=I420,width=640,height=360,colorimetry=0:4:0:0")
                .parse()
                .unwrap()
        };
        assert_eq!(c.matrix(), VideoColorMatrix::Bt601);
        assert_eq!(c.range(), VideoColorRange::Range16_235);
        assert_eq!(c.primaries(), VideoColorPrimaries::Bt709);
    }
}
