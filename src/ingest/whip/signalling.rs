//! WHIP signalling, pure (RFC 9725): which resource a path names, the bearer token, what an
//! offer may contain, session resource ids, and which of our ICE candidates an answer keeps.
//! No GStreamer pipeline and no I/O here; the SDP parser is GStreamer's (`gstreamer-sdp`).

use std::net::IpAddr;

/// What a `/whip/…` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhipPath {
    /// `/whip/{stream}`: the WHIP endpoint (POST an offer).
    Endpoint { stream: String },
    /// `/whip/{stream}/{session}`: a session resource (DELETE ends it).
    Session { stream: String, session: String },
}

/// Parses `/whip/{stream}` and `/whip/{stream}/{session}`; `None` for anything else (404).
pub fn parse_path(path: &str) -> Option<WhipPath> {
    let rest = path.strip_prefix(crate::layout::WHIP_PREFIX)?;
    let mut parts = rest.split('/');
    let stream = parts.next().filter(|s| crate::config::is_valid_name(s))?;
    let session = parts.next();
    if parts.next().is_some() {
        return None;
    }
    match session {
        None | Some("") => Some(WhipPath::Endpoint {
            stream: stream.to_string(),
        }),
        Some(id) if is_session_id(id) => Some(WhipPath::Session {
            stream: stream.to_string(),
            session: id.to_string(),
        }),
        Some(_) => None,
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (RFC 6750 §2.1), if any.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The video codecs the media side can depayload and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Vp8,
}

/// What an acceptable offer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    /// Video codecs offered that we take, in the offer's order.
    pub video: Vec<VideoCodec>,
    /// Whether the offer sends Opus audio.
    pub audio: bool,
}

/// Why an offer was refused (each a clear 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("offer larger than {0} bytes")]
    TooLarge(usize),
    #[error("offer is not UTF-8 text")]
    NotText,
    #[error("offer is not a parseable SDP session description")]
    NotSdp,
    #[error("offer has no m=video section (WHIP ingest needs video)")]
    NoVideo,
    #[error("offer's video codecs are not supported (offer H264 or VP8)")]
    NoSupportedVideoCodec,
    #[error("offer has more than {0} media sections")]
    TooManyMedia(usize),
}

/// Media sections an offer may have (video, audio, maybe data): more is not a publisher.
const MAX_MEDIA_SECTIONS: usize = 4;

/// Checks an offer body: size, text, SDP syntax (GStreamer's parser), a video section with a
/// codec we decode. Returns the parsed message and what it carries.
pub fn check_offer(
    body: &[u8],
    max_bytes: usize,
) -> Result<(gst_sdp::SDPMessage, OfferSummary), OfferError> {
    if body.len() > max_bytes {
        return Err(OfferError::TooLarge(max_bytes));
    }
    let text = std::str::from_utf8(body).map_err(|_| OfferError::NotText)?;
    if !text.trim_start().starts_with("v=0") {
        return Err(OfferError::NotSdp);
    }
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes()).map_err(|_| OfferError::NotSdp)?;
    if sdp.medias_len() as usize > MAX_MEDIA_SECTIONS {
        return Err(OfferError::TooManyMedia(MAX_MEDIA_SECTIONS));
    }
    let mut has_video = false;
    let mut video = Vec::new();
    let mut audio = false;
    for media in sdp.medias() {
        let sends = !media
            .attributes()
            .any(|a| matches!(a.key(), "recvonly" | "inactive"));
        let encodings = encodings(media);
        match media.media() {
            Some("video") if media.port() != 0 && sends => {
                has_video = true;
                for e in encodings {
                    let codec = match e.as_str() {
                        "H264" => VideoCodec::H264,
                        "VP8" => VideoCodec::Vp8,
                        _ => continue,
                    };
                    if !video.contains(&codec) {
                        video.push(codec);
                    }
                }
            }
            Some("audio") if media.port() != 0 && sends => {
                audio |= encodings.iter().any(|e| e == "OPUS");
            }
            _ => {}
        }
    }
    if !has_video {
        return Err(OfferError::NoVideo);
    }
    if video.is_empty() {
        return Err(OfferError::NoSupportedVideoCodec);
    }
    Ok((sdp, OfferSummary { video, audio }))
}

/// The encoding names (`a=rtpmap:PT NAME/…`, upper-cased) of a media section.
fn encodings(media: &gst_sdp::SDPMediaRef) -> Vec<String> {
    media
        .attributes()
        .filter(|a| a.key() == "rtpmap")
        .filter_map(|a| {
            let (_, rest) = a.value()?.split_once(' ')?;
            Some(rest.split('/').next()?.trim().to_ascii_uppercase())
        })
        .collect()
}

/// Length of a session id: 128 random bits, hex.
const SESSION_ID_LEN: usize = 32;

/// A new session resource id (unguessable: the DELETE URL is the capability to end it).
pub fn new_session_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

fn is_session_id(s: &str) -> bool {
    s.len() == SESSION_ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a local `a=candidate` value (`foundation component transport priority ADDRESS port
/// typ TYPE …`) may be offered when ICE is restricted to `address`: host candidates must be on
/// it; server-reflexive and relayed candidates (STUN/TURN) are kept.
pub fn candidate_allowed(candidate: &str, address: Option<IpAddr>) -> bool {
    let Some(address) = address else {
        return true;
    };
    let fields: Vec<&str> = candidate
        .trim_start_matches("candidate:")
        .split_whitespace()
        .collect();
    let typ = fields
        .iter()
        .position(|f| *f == "typ")
        .and_then(|i| fields.get(i + 1));
    match (fields.get(4), typ) {
        (Some(addr), Some(&"host")) => addr.parse::<IpAddr>().ok() == Some(address),
        (Some(_), Some(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const BROWSER_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n";

    #[test]
    fn paths_name_the_endpoint_or_a_session() {
        assert_eq!(
            parse_path("/whip/cam"),
            Some(WhipPath::Endpoint {
                stream: "cam".into()
            })
        );
        let id = new_session_id();
        assert_eq!(
            parse_path(&format!("/whip/cam/{id}")),
            Some(WhipPath::Session {
                stream: "cam".into(),
                session: id
            })
        );
        for bad in [
            "/whip/",
            "/whip/../x",
            "/whip/cam/notanid",
            "/whip/cam/a/b",
            "/live/cam",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "bearer s3cret-key".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("s3cret-key"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn offers_are_checked_before_anything_runs() {
        gst::init().unwrap();
        let (_, s) = check_offer(BROWSER_OFFER.as_bytes(), 65536).unwrap();
        assert_eq!(s.video, vec![VideoCodec::Vp8, VideoCodec::H264]);
        assert!(s.audio);
        assert_eq!(
            check_offer(BROWSER_OFFER.as_bytes(), 100),
            Err(OfferError::TooLarge(100))
        );
        assert_eq!(check_offer(b"hello", 1000), Err(OfferError::NotSdp));
        assert_eq!(check_offer(&[0xff, 0xfe], 1000), Err(OfferError::NotText));
        let audio_only = BROWSER_OFFER.split("m=video").next().unwrap();
        assert_eq!(
            check_offer(audio_only.as_bytes(), 65536),
            Err(OfferError::NoVideo)
        );
        let av1 = BROWSER_OFFER
            .replace("VP8/90000", "AV1/90000")
            .replace("H264/90000", "VP9/90000");
        assert_eq!(
            check_offer(av1.as_bytes(), 65536),
            Err(OfferError::NoSupportedVideoCodec)
        );
        let receive_only = BROWSER_OFFER.replace("a=mid:1\r\na=sendonly", "a=mid:1\r\na=recvonly");
        assert_eq!(
            check_offer(receive_only.as_bytes(), 65536),
            Err(OfferError::NoVideo)
        );
    }

    #[test]
    fn candidates_on_other_interfaces_are_not_offered() {
        let host = "candidate:1 1 UDP 2015363327 192.0.2.2 50000 typ host";
        let lo = "candidate:2 1 UDP 2015363327 127.0.0.1 50002 typ host";
        let srflx =
            "candidate:3 1 UDP 1679819007 203.0.113.9 50004 typ srflx raddr 192.0.2.2 rport 50000";
        let only = Some("192.0.2.2".parse().unwrap());
        assert!(candidate_allowed(host, only));
        assert!(!candidate_allowed(lo, only));
        assert!(candidate_allowed(srflx, only));
        assert!(candidate_allowed(lo, None));
        assert!(!candidate_allowed("garbage", only));
    }
}
