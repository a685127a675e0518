//! Fuzz entry points: one function per `cargo fuzz` target in `fuzz/`, each feeding untrusted
//! bytes to the code that parses them in production and asserting what must hold of the result
//! (not only "does not panic"). They live in the library so the fuzz targets (nightly,
//! libFuzzer) and the corpus replay test (`tests/fuzz_corpus.rs`, stable, part of `make test`)
//! call the very same code. Each panics on a broken property: that is how libFuzzer and the
//! replay test see a failure.
//!
//! Inputs are raw bytes; where a target needs more than one value (a length, a split point),
//! the leading bytes choose it, so the corpus stays plain files.

use crate::bus::BusEvent;
use crate::bus::codec;
use crate::edge::signed_url;
use crate::edge::trust::{Judge, TrustPolicy};
use crate::http::base_url::OriginPattern;
use crate::http::headers::{RangeRequest, parse_range};
use crate::http::paths::parse_media_path;
use crate::ingest::flv;
use crate::ingest::rtmp::{ChunkGuard, metadata_script_body};
use crate::ingest::rtp;
use crate::packaging::Directives;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use std::sync::Arc;

/// The message limit the RTMP target's guard enforces (small, so the fuzzer reaches it).
const FUZZ_MAX_MESSAGE_BYTES: u32 = 4096;
/// Most `rml_rtmp` results acted on per input (accepting a request yields more results).
const MAX_RESULTS: usize = 4096;

thread_local! {
    /// Set while a call into `rml_rtmp` runs under [`guarded`].
    static IN_GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a call into `rml_rtmp` as the connection does (`connection::guarded`): a panic on
/// malformed peer input closes that connection in production, so here it ends the input.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    IN_GUARDED.with(|g| g.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    IN_GUARDED.with(|g| g.set(false));
    result
}

/// Keeps the panic hook (libFuzzer's aborts) for every panic except those [`guarded`] catches,
/// which production survives too. Call once before [`rtmp_chunk_stream`].
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_GUARDED.with(|g| g.get()) {
            previous(info);
        }
    }));
}

/// RTMP chunk stream after the handshake, as `connection::feed` reads it: every byte through
/// the [`ChunkGuard`] first, then message by message into `rml_rtmp`'s `ServerSession`; connect
/// and publish requests are accepted so media and metadata messages are parsed too, and each
/// media body is framed as an FLV tag (what `flvdemux` reads).
///
/// The first byte chooses how the input is split into socket reads (the guard keeps state
/// across reads). Properties: no message the guard lets through exceeds its limit; every FLV
/// tag reads back to the body and timestamp it was made from.
pub fn rtmp_chunk_stream(data: &[u8]) {
    let Some((&read_size, stream)) = data.split_first() else {
        return;
    };
    let read_size = usize::from(read_size).max(1);
    let mut guard = ChunkGuard::new(FUZZ_MAX_MESSAGE_BYTES);
    let Some(Ok((mut session, _))) = guarded(|| ServerSession::new(ServerSessionConfig::new()))
    else {
        return;
    };
    let mut acted = 0;
    for read in stream.chunks(read_size) {
        let mut input = read;
        while !input.is_empty() {
            let Ok(scan) = guard.scan(input) else {
                return; // the connection closes
            };
            if let Some(len) = scan.completed {
                assert!(
                    len <= FUZZ_MAX_MESSAGE_BYTES,
                    "guard passed a {len}-byte message"
                );
            }
            assert!(guard.in_flight_bytes() <= FUZZ_MAX_MESSAGE_BYTES);
            let (piece, rest) = input.split_at(scan.consumed.clamp(1, input.len()));
            let Some(Ok(results)) = guarded(|| session.handle_input(piece)) else {
                return;
            };
            if !act_on(&mut session, results, &mut acted) {
                return;
            }
            input = rest;
        }
    }
}

/// Accepts requests and frames media like the connection does; false when the session failed.
fn act_on(
    session: &mut ServerSession,
    results: Vec<ServerSessionResult>,
    acted: &mut usize,
) -> bool {
    let mut queue: std::collections::VecDeque<_> = results.into();
    while let Some(result) = queue.pop_front() {
        *acted += 1;
        if *acted > MAX_RESULTS {
            return false;
        }
        let ServerSessionResult::RaisedEvent(event) = result else {
            continue;
        };
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. }
            | ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                match guarded(|| session.accept_request(request_id)) {
                    Some(Ok(more)) => queue.extend(more),
                    _ => return false,
                }
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => check_flv_tag(flv::TAG_VIDEO, timestamp.value, &data),
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => check_flv_tag(flv::TAG_AUDIO, timestamp.value, &data),
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(body) = metadata_script_body(&metadata) {
                    check_flv_tag(flv::TAG_SCRIPT, 0, &body);
                }
            }
            _ => {}
        }
    }
    true
}

/// An FLV tag, read back field by field (FLV spec annex E), must give what it was made from.
fn check_flv_tag(kind: u8, timestamp_ms: u32, body: &[u8]) {
    let Some(tag) = flv::tag(kind, timestamp_ms, body) else {
        assert!(body.len() > flv::MAX_TAG_BODY_BYTES);
        return;
    };
    let header = flv::TAG_HEADER_BYTES;
    assert_eq!(
        tag.len(),
        header + body.len() + flv::PREVIOUS_TAG_SIZE_BYTES
    );
    assert_eq!(tag[0], kind);
    let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
    assert_eq!(size, body.len());
    let ts = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]);
    assert_eq!(ts, timestamp_ms);
    assert_eq!(&tag[8..11], &[0, 0, 0]);
    assert_eq!(&tag[header..header + body.len()], body);
    let trailer: [u8; 4] = tag[header + body.len()..].try_into().unwrap_or_default();
    assert_eq!(u32::from_be_bytes(trailer) as usize, header + body.len());
}

/// One UDP datagram through the RTP guard (`rtp::classify`). The first byte chooses the
/// expected payload type (`0x80` bit clear: none known, as behind `sdpdemux`). Properties: a
/// datagram the guard accepts is RFC 3550 §5.1 RTP (version 2, fixed header, CSRCs, extension
/// and padding within the datagram) of the expected payload type.
pub fn rtp_datagram(data: &[u8]) {
    let Some((&choice, datagram)) = data.split_first() else {
        return;
    };
    let expected = (choice & 0x80 != 0).then_some(choice & 0x7f);
    if gst::init().is_err() {
        panic!("GStreamer does not initialise");
    }
    let buffer = gst::Buffer::from_slice(datagram.to_vec());
    let verdict = rtp::classify(buffer.as_ref(), expected);
    if verdict == rtp::Verdict::Accept {
        let header = rtp_header_len(datagram).expect("accepted a datagram that is not RTP");
        let pt = datagram[1] & 0x7f;
        if let Some(expected) = expected {
            assert_eq!(
                pt, expected,
                "accepted payload type {pt}, expected {expected}"
            );
        }
        assert!(header <= datagram.len());
    }
    if verdict == rtp::Verdict::Rtcp {
        assert!(expected.is_none() && datagram.len() > 1);
        assert!((192..=223).contains(&datagram[1]));
    }
}

/// Header length (fixed + CSRCs + extension) of a valid RTP packet, by RFC 3550 §5.1 and §5.3.1,
/// or `None` if it is not one (padding included in the check).
fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    if len > p.len() {
        return None;
    }
    if p[0] & 0x20 != 0 {
        // RFC 3550 §5.1: the count includes itself, so 0 is out of spec; GStreamer reads it as
        // no padding (harmless), and so does this check (found by the fuzzer, not a bug).
        let pad = usize::from(*p.last()?);
        if len + pad > p.len() {
            return None;
        }
    }
    Some(len)
}

/// A request target as the HTTP servers read it: the path through [`parse_media_path`] (and
/// the signed-URL token prefix the edge strips first), the query through the LL-HLS
/// [`Directives`]; the first 8 input bytes are a body length for [`parse_range`] on the rest.
/// Properties: a parsed path's canonical spelling is a fixed point, made of safe components
/// only; canonical directives parse back to themselves; a satisfiable range lies inside the
/// body.
pub fn http_request(data: &[u8]) {
    if data.len() >= 8 {
        let (len_bytes, rest) = data.split_at(8);
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
        if let Ok(value) = std::str::from_utf8(rest) {
            check_range(value, len);
            check_range(value, len % 100_000);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    check_path(path);
    if let Ok(Some(signed)) = signed_url::split_token(path) {
        check_path(&signed.path);
        assert!(signed.path.starts_with('/') && signed.path.len() < path.len());
    }
    if let Ok(d) = Directives::parse(Some(query)) {
        let canonical = d.canonical_query();
        let again = Directives::parse(Some(canonical.trim_start_matches('?')))
            .expect("canonical directives do not parse");
        assert_eq!(again.canonical_query(), canonical);
        assert_eq!((again.msn, again.part, again.skip), (d.msn, d.part, d.skip));
    }
}

fn check_path(path: &str) {
    if let Ok(parsed) = parse_media_path(path) {
        let canonical = parsed.canonical();
        assert_eq!(
            parse_media_path(&canonical).as_ref(),
            Ok(&parsed),
            "canonical {canonical} of {path} is not a fixed point"
        );
        // No component a file system treats specially: empty, `.`, `..`, hidden (`a..b` is a
        // plain name).
        for component in canonical[1..].split('/') {
            assert!(
                !component.is_empty() && !component.starts_with('.'),
                "{canonical}"
            );
        }
        assert!(
            canonical
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b)),
            "{canonical}"
        );
    }
}

fn check_range(value: &str, len: u64) {
    match parse_range(Some(value), len) {
        RangeRequest::Satisfiable(start, end) => {
            assert!(start <= end, "{value} of {len}: {start} > {end}");
            assert!(end < len, "{value} of {len}: end {end} beyond the body");
        }
        RangeRequest::Unsatisfiable | RangeRequest::None => {}
    }
}

/// Bus payloads as the edge's subscriber reads them: [`codec::decode`], then the trust
/// [`Judge`]. The input is up to 8 messages separated by `0xFF 0xFE`, the first four received
/// on one endpoint, the rest on another; each is judged on its own topic (or, when its first
/// byte is odd, on a wrong one). Properties: a decoded event
/// re-encodes to bytes that decode to the same event; the judge never learns more origins than
/// its policy allows.
pub fn bus_messages(data: &[u8]) {
    let mut judge = Judge::new(fuzz_trust_policy());
    let endpoints: [Arc<str>; 2] = [Arc::from("tcp://127.0.0.1:5556"), Arc::from("tcp://b:1")];
    for (i, message) in split_on(data, &[0xFF, 0xFE]).take(8).enumerate() {
        let Ok(event) = codec::decode(message) else {
            continue;
        };
        let again =
            codec::decode(&codec::encode(&event)).expect("re-encoded event does not decode");
        // Debug, not ==: a NaN encoder speed is not equal to itself.
        assert_eq!(format!("{again:?}"), format!("{event:?}"));
        let topic = if message.first().is_some_and(|b| b & 1 == 1) {
            "seg/wrong".to_string()
        } else {
            event.topic()
        };
        // The first four on one connection (an origin and its announcements), then another.
        let endpoint = &endpoints[(i / 4) % 2];
        let verdict = judge.judge(endpoint, &topic, &event, 1_000 * i as i64);
        if topic != event.topic() {
            assert!(verdict.is_err(), "believed {event:?} on topic {topic}");
        }
        assert!(judge.learned_origins() <= fuzz_trust_policy().max_origins);
        if let (Ok(()), BusEvent::OriginHeartbeat { .. }) = (verdict, &event) {
            assert!(judge.learned_origins() >= 1);
        }
    }
}

fn fuzz_trust_policy() -> TrustPolicy {
    TrustPolicy {
        allow: ["http://127.0.0.1:*", "http://10.0.0.*:*"]
            .iter()
            .filter_map(|p| OriginPattern::parse(p).ok())
            .collect(),
        max_origins: 3,
        origin_expiry_ms: 30_000,
    }
}

fn split_on<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                rest = Some(&current[at + sep.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// An SDP session description through the config-time check [`rtp::describe_sdp`] (GStreamer's
/// SDP parser underneath). Properties: an accepted description names H.264 video and, if any,
/// an audio codec the RTP template can depayload.
pub fn sdp_description(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(media) = rtp::describe_sdp(text) {
        assert_eq!(media.video, "H264");
        if let Some(audio) = &media.audio {
            assert!(
                ["MPEG4-GENERIC", "MP4A-LATM", "OPUS"].contains(&audio.as_str()),
                "{audio}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_header_reference_check() {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(rtp_header_len(&p), Some(12));
        p[0] = 0x81; // one CSRC, missing
        assert_eq!(rtp_header_len(&p), None);
        p[0] = 0xa0; // padding longer than the packet
        p.push(200);
        assert_eq!(rtp_header_len(&p), None);
    }

    #[test]
    fn split_on_separator() {
        let parts: Vec<&[u8]> = split_on(b"a\xff\xfeb\xff\xfe", &[0xFF, 0xFE]).collect();
        assert_eq!(parts, vec![&b"a"[..], &b"b"[..], &b""[..]]);
    }
}
