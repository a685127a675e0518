//! The multivariant (master) playlist and the bandwidth figures it advertises.

use std::fmt::Write as _;

/// One `EXT-X-STREAM-INF` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantStream {
    pub uri: String,
    /// Peak segment bitrate, bits/s (RFC 8216bis 4.4.6.2: BANDWIDTH is the peak).
    pub bandwidth_bps: u64,
    /// Total bits / total duration, bits/s.
    pub average_bandwidth_bps: u64,
    /// RFC 6381 list, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
}

/// A separate audio rendition (CMAF: one track per file), listed as `EXT-X-MEDIA` and
/// referenced by every variant's `AUDIO` attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioMedia {
    pub group_id: String,
    pub name: String,
    pub uri: String,
    /// e.g. `mp4a.40.2`; appended to every variant's CODECS.
    pub codecs: String,
    pub channels: u32,
    pub bandwidth_bps: u64,
    pub average_bandwidth_bps: u64,
}

/// Renders the master playlist. Variants are listed by bandwidth, highest first: players that
/// start with the first entry (Safari does) start at the top quality and adapt down.
pub fn render_multivariant(variants: &[VariantStream], independent_segments: bool) -> String {
    render_multivariant_with_audio(variants, None, independent_segments)
}

/// Like [`render_multivariant`], with audio in its own rendition group. BANDWIDTH and
/// AVERAGE-BANDWIDTH then include the audio rendition's (8216bis 4.4.6.2: the sum of every
/// rendition a client may play together), and CODECS lists both.
pub fn render_multivariant_with_audio(
    variants: &[VariantStream],
    audio: Option<&AudioMedia>,
    independent_segments: bool,
) -> String {
    let mut sorted: Vec<&VariantStream> = variants.iter().collect();
    sorted.sort_by(|a, b| b.bandwidth_bps.cmp(&a.bandwidth_bps));
    let mut out = String::from("#EXTM3U\n");
    let _ = writeln!(
        out,
        "#EXT-X-VERSION:{}",
        if audio.is_some() { 6 } else { 3 }
    );
    if independent_segments {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    if let Some(a) = audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{}\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}\"",
            a.group_id,
            a.name,
            a.channels.max(1),
            a.uri
        );
    }
    for v in sorted {
        let (peak, average) = match audio {
            Some(a) => (
                v.bandwidth_bps + a.bandwidth_bps,
                v.average_bandwidth_bps + a.average_bandwidth_bps,
            ),
            None => (v.bandwidth_bps, v.average_bandwidth_bps),
        };
        let codecs = match audio {
            Some(a) => format!("{},{}", v.codecs, a.codecs),
            None => v.codecs.clone(),
        };
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",RESOLUTION={}x{},FRAME-RATE={:.3}",
            peak.max(1),
            average.max(1).min(peak.max(1)),
            codecs,
            v.width,
            v.height,
            v.frame_rate,
        );
        if let Some(a) = audio {
            let _ = write!(out, ",AUDIO=\"{}\"", a.group_id);
        }
        let _ = writeln!(out, "\n{}", v.uri);
    }
    out
}

/// Measures a rendition's bitrate from the segments actually written.
#[derive(Debug, Clone, Default)]
pub struct BandwidthMeter {
    estimate_bps: u64,
    peak_bps: u64,
    total_bytes: u64,
    total_ms: u64,
}

/// Segments shorter than this are left out of the peak: a few frames at EOS would otherwise
/// turn one keyframe into an absurd "peak".
const MIN_PEAK_SEGMENT_MS: u64 = 500;

impl BandwidthMeter {
    /// A meter that reports `bps` until the first segment is measured.
    pub fn with_estimate(bps: u64) -> BandwidthMeter {
        BandwidthMeter {
            estimate_bps: bps,
            ..Default::default()
        }
    }

    pub fn record(&mut self, byte_size: u64, duration_ms: u64) {
        if duration_ms == 0 {
            return;
        }
        self.total_bytes += byte_size;
        self.total_ms += duration_ms;
        if duration_ms >= MIN_PEAK_SEGMENT_MS || self.peak_bps == 0 {
            self.peak_bps = self.peak_bps.max(byte_size * 8 * 1000 / duration_ms);
        }
    }

    pub fn peak_bps(&self) -> u64 {
        if self.total_ms == 0 {
            self.estimate_bps
        } else {
            self.peak_bps
        }
    }

    pub fn average_bps(&self) -> u64 {
        if self.total_ms == 0 {
            self.estimate_bps
        } else {
            self.total_bytes * 8 * 1000 / self.total_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_lists_variants_highest_first_with_all_attributes() {
        let v = |uri: &str, bw: u64, w: u32, h: u32| VariantStream {
            uri: uri.into(),
            bandwidth_bps: bw,
            average_bandwidth_bps: bw * 8 / 10,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            width: w,
            height: h,
            frame_rate: 30.0,
        };
        let text = render_multivariant(
            &[
                v("360p/index.m3u8", 900_000, 640, 360),
                v("720p/index.m3u8", 3_000_000, 1280, 720),
            ],
            true,
        );
        let expected = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2400000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\n720p/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=720000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000\n360p/index.m3u8\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn separate_audio_group_is_referenced_and_counted() {
        let v = VariantStream {
            uri: "360p/index.m3u8".into(),
            bandwidth_bps: 900_000,
            average_bandwidth_bps: 700_000,
            codecs: "avc1.64001e".into(),
            width: 640,
            height: 360,
            frame_rate: 30.0,
        };
        let a = AudioMedia {
            group_id: "aud".into(),
            name: "audio".into(),
            uri: "audio/index.m3u8".into(),
            codecs: "mp4a.40.2".into(),
            channels: 2,
            bandwidth_bps: 140_000,
            average_bandwidth_bps: 130_000,
        };
        let text = render_multivariant_with_audio(&[v], Some(&a), true);
        assert!(text.contains("#EXT-X-VERSION:6\n"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n"), "{text}");
        assert!(
            text.contains("BANDWIDTH=1040000,AVERAGE-BANDWIDTH=830000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO=\"aud\"\n360p/index.m3u8\n"),
            "{text}"
        );
    }

    #[test]
    fn meter_reports_peak_and_average() {
        let mut m = BandwidthMeter::with_estimate(800_000);
        assert_eq!((m.peak_bps(), m.average_bps()), (800_000, 800_000));
        m.record(250_000, 2000); // 1 Mbit/s
        m.record(500_000, 2000); // 2 Mbit/s
        assert_eq!(m.peak_bps(), 2_000_000);
        assert_eq!(m.average_bps(), 1_500_000);
        m.record(100_000, 33); // a tail fragment does not define the peak
        assert_eq!(m.peak_bps(), 2_000_000);
    }
}
