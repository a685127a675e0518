//! RTP input: what an SDP file describes, and a guard in front of every RTP socket.
//!
//! The media path itself is a pipeline template (`pipelines/source-rtp-*.pipeline`: `udpsrc`
//! or `sdpdemux`, `rtpjitterbuffer`, depayloader, decoder). This module adds what a template
//! cannot: the SDP is checked at config time (a camera's SDP with an unsupported codec is a
//! config error, not a silent stream), and datagrams that are not RTP of the expected payload
//! type are dropped and counted before the jitter buffer sees them. A stray packet with a wrong
//! payload type or a wild sequence number would otherwise make the jitter buffer reset or
//! renegotiate caps, breaking the running stream.

use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Codecs the SDP template can take (depayloader + decoder exist in the Debian packages).
const VIDEO_ENCODINGS: [&str; 1] = ["H264"];
const AUDIO_ENCODINGS: [&str; 3] = ["MPEG4-GENERIC", "MP4A-LATM", "OPUS"];

/// The media of an SDP session, as far as choosing a pipeline template goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpMedia {
    /// Video encoding name (`H264`).
    pub video: String,
    /// Audio encoding name, if the session has audio.
    pub audio: Option<String>,
}

/// Parses an SDP session description and checks that zoomate can ingest it: one H.264 video
/// stream, optionally one AAC or Opus audio stream. The error says what is wrong.
pub fn describe_sdp(text: &str) -> Result<SdpMedia, String> {
    gst::init().map_err(|e| format!("GStreamer: {e}"))?; // the SDP parser is GStreamer's
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|_| "not a parseable SDP session description".to_string())?;
    let mut video = None;
    let mut audio = None;
    for media in sdp.medias() {
        let kind = media.media().unwrap_or_default().to_string();
        if kind != "video" && kind != "audio" {
            continue;
        }
        if media.port() == 0 {
            return Err(format!("m={kind} has port 0"));
        }
        let encoding = media_encoding(media)
            .ok_or_else(|| format!("m={kind} has no a=rtpmap for its payload type"))?;
        let (slot, allowed): (&mut Option<String>, &[&str]) = if kind == "video" {
            (&mut video, &VIDEO_ENCODINGS)
        } else {
            (&mut audio, &AUDIO_ENCODINGS)
        };
        if slot.is_some() {
            return Err(format!(
                "more than one m={kind} line; zoomate takes one of each"
            ));
        }
        if !allowed.contains(&encoding.as_str()) {
            return Err(format!(
                "m={kind} encoding {encoding} is not supported (use {})",
                allowed.join(", ")
            ));
        }
        *slot = Some(encoding);
    }
    let video = video.ok_or_else(|| "no m=video line (H.264 video is required)".to_string())?;
    Ok(SdpMedia { video, audio })
}

/// `a=rtpmap:<pt> <ENCODING>/<clock>` of the media's first payload type, upper-cased.
fn media_encoding(media: &gst_sdp::SDPMediaRef) -> Option<String> {
    let pt = media.format(0)?.to_string();
    media.attributes().find_map(|a| {
        if a.key() != "rtpmap" {
            return None;
        }
        let value = a.value()?;
        let (map_pt, rest) = value.split_once(' ')?;
        (map_pt == pt).then(|| {
            rest.split('/')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_uppercase()
        })
    })
}

/// Per-stream RTP datagram counters (for `/metrics`; kept across sessions of the stream).
#[derive(Debug, Default)]
pub struct RtpCounters {
    /// Datagrams passed on to the jitter buffer.
    pub accepted: AtomicU64,
    /// Dropped: not an RTP packet (bad version, truncated header, bad padding).
    pub malformed: AtomicU64,
    /// Dropped: a valid RTP header with a payload type this port does not carry.
    pub wrong_payload_type: AtomicU64,
}

/// What the guard does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// An RTCP packet on a socket of unknown role: passed on unjudged (rtpbin checks RTCP).
    Rtcp,
    Malformed,
    WrongPayloadType,
}

/// Classifies one datagram received on an RTP port expecting `expected_pt` (if known).
/// Validation is GStreamer's own RTP header check (`gst_rtp_buffer_map`).
/// A socket whose caps do not say (sdpdemux's) may carry RTP or RTCP: RFC 5761 §4 tells them
/// apart by the second byte (RTCP packet types 192..=223).
pub fn classify(buffer: &gst::BufferRef, expected_pt: Option<u8>) -> Verdict {
    // `copy_to_slice` asserts (panics) on a range past the end instead of failing: a 1-byte
    // datagram used to panic here, inside a pad probe on a streaming thread, which aborts the
    // process (found by `fuzz/` `rtp_datagram`). Check the size first.
    if expected_pt.is_none() && buffer.size() >= 2 {
        let mut second = [0u8; 1];
        if buffer.copy_to_slice(1, &mut second).is_ok() && (192..=223).contains(&second[0]) {
            return Verdict::Rtcp;
        }
    }
    match gst_rtp::RTPBuffer::from_buffer_readable(buffer) {
        Err(_) => Verdict::Malformed,
        Ok(rtp) => match expected_pt {
            Some(pt) if rtp.payload_type() != pt => Verdict::WrongPayloadType,
            _ => Verdict::Accept,
        },
    }
}

impl RtpCounters {
    fn count(&self, v: Verdict) {
        let c = match v {
            Verdict::Accept => &self.accepted,
            Verdict::Rtcp => return,
            Verdict::Malformed => &self.malformed,
            Verdict::WrongPayloadType => &self.wrong_payload_type,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dropped(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed) + self.wrong_payload_type.load(Ordering::Relaxed)
    }
}

/// Puts the guard on every RTP `udpsrc` of `pipeline`, including those a bin such as
/// `sdpdemux` creates later. RTCP sockets (caps `application/x-rtcp`) are left alone.
pub fn guard_udp_sources(pipeline: &gst::Pipeline, counters: Arc<RtpCounters>) {
    let stream = pipeline.name().to_string();
    let install = {
        let counters = counters.clone();
        move |element: &gst::Element| install_guard(element, counters.clone(), stream.clone())
    };
    let mut iter = pipeline.iterate_recurse();
    while let Ok(Some(element)) = iter.next() {
        install(&element);
    }
    pipeline.connect_deep_element_added(move |_, _, element| install(element));
}

fn install_guard(element: &gst::Element, counters: Arc<RtpCounters>, stream: String) {
    if element
        .factory()
        .map(|f| f.name() != "udpsrc")
        .unwrap_or(true)
    {
        return;
    }
    let Some(pad) = element.static_pad("src") else {
        return;
    };
    // What this socket carries is known once its caps are (a bin like sdpdemux may set them
    // after adding the element): decided on the first datagram, then fixed.
    let role = std::sync::OnceLock::<SocketRole>::new();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let role = *role.get_or_init(|| socket_role(pad));
        let SocketRole::Rtp { expected_pt } = role else {
            return gst::PadProbeReturn::Ok; // RTCP or something else: not ours to judge
        };
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let verdict = classify(buffer, expected_pt);
        counters.count(verdict);
        if matches!(verdict, Verdict::Accept | Verdict::Rtcp) {
            return gst::PadProbeReturn::Ok;
        }
        let dropped = counters.dropped();
        // First one, then every thousandth: visible in the log without flooding it.
        if dropped == 1 || dropped.is_multiple_of(1000) {
            tracing::warn!(
                stream,
                ?verdict,
                dropped_total = dropped,
                "RTP datagram dropped"
            );
        }
        gst::PadProbeReturn::Drop
    });
}

#[derive(Debug, Clone, Copy)]
enum SocketRole {
    Rtp { expected_pt: Option<u8> },
    Other,
}

fn socket_role(pad: &gst::Pad) -> SocketRole {
    let caps = pad.current_caps().or_else(|| {
        pad.parent_element()
            .and_then(|e| e.property::<Option<gst::Caps>>("caps"))
    });
    match caps.as_ref().and_then(|c| c.structure(0)) {
        Some(s) if s.name() == "application/x-rtp" => SocketRole::Rtp {
            expected_pt: s
                .get::<i32>("payload")
                .ok()
                .and_then(|pt| u8::try_from(pt).ok()),
        },
        Some(s) if s.name() == "application/x-rtcp" => SocketRole::Other,
        // No caps: RTP or RTCP, told apart per packet.
        _ => SocketRole::Rtp { expected_pt: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMERA: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n\
        m=audio 5006 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n";

    #[test]
    fn datagrams_too_short_for_a_header_are_malformed_not_a_panic() {
        gst::init().unwrap();
        for bytes in [
            &[][..],
            &[0x80][..],
            &[0x80, 0xc8][..],
            &[0x80, 0x60, 0, 1][..],
        ] {
            let buffer = gst::Buffer::from_slice(bytes.to_vec());
            for expected in [None, Some(96)] {
                let verdict = classify(buffer.as_ref(), expected);
                let want = if bytes.len() == 2 && expected.is_none() {
                    Verdict::Rtcp // second byte 200: an RTCP sender report's type
                } else {
                    Verdict::Malformed
                };
                assert_eq!(verdict, want, "{bytes:?} expecting {expected:?}");
            }
        }
    }

    #[test]
    fn h264_with_opus_is_accepted_and_audio_is_named() {
        let m = describe_sdp(CAMERA).unwrap();
        assert_eq!(m.video, "H264");
        assert_eq!(m.audio.as_deref(), Some("OPUS"));
    }

    #[test]
    fn video_only_and_aac_variants() {
        let video_only = CAMERA.split("m=audio").next().unwrap();
        assert_eq!(describe_sdp(video_only).unwrap().audio, None);
        let aac = CAMERA.replace("opus/48000/2", "MPEG4-GENERIC/48000/2");
        assert_eq!(
            describe_sdp(&aac).unwrap().audio.as_deref(),
            Some("MPEG4-GENERIC")
        );
    }

    #[test]
    fn unsupported_or_incomplete_sdp_says_why() {
        let h265 = CAMERA.replace("H264/90000", "H265/90000");
        assert!(
            describe_sdp(&h265)
                .unwrap_err()
                .contains("H265 is not supported")
        );
        let no_video = format!(
            "{}m=audio{}",
            CAMERA.split("m=video").next().unwrap(),
            CAMERA.split("m=audio").nth(1).unwrap()
        );
        assert!(describe_sdp(&no_video).unwrap_err().contains("no m=video"));
        let no_rtpmap = CAMERA.replace("a=rtpmap:96 H264/90000\r\n", "");
        assert!(
            describe_sdp(&no_rtpmap)
                .unwrap_err()
                .contains("no a=rtpmap")
        );
        assert!(describe_sdp("hello").is_err());
    }

    #[test]
    fn guard_classifies_datagrams() {
        gst::init().unwrap();
        let rtp = |pt: u8| {
            let mut b = vec![0x80, pt, 0x00, 0x01, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef];
            b.extend_from_slice(&[0x47; 188]);
            gst::Buffer::from_slice(b)
        };
        assert_eq!(classify(&rtp(33), Some(33)), Verdict::Accept);
        assert_eq!(classify(&rtp(96), Some(33)), Verdict::WrongPayloadType);
        assert_eq!(classify(&rtp(96), None), Verdict::Accept);
        // An RTCP sender report on a socket of unknown role passes; on an RTP port it does not.
        let sr = gst::Buffer::from_slice(vec![
            0x80, 200, 0, 6, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(classify(&sr, None), Verdict::Rtcp);
        assert_ne!(classify(&sr, Some(33)), Verdict::Accept);
        assert_eq!(
            classify(&gst::Buffer::from_slice(vec![0x80, 0x21, 0]), Some(33)),
            Verdict::Malformed
        );
        // RTP version 1.
        let mut v1 = rtp(33).map_readable().unwrap().to_vec();
        v1[0] = 0x40;
        assert_eq!(
            classify(&gst::Buffer::from_slice(v1), Some(33)),
            Verdict::Malformed
        );
    }
}
