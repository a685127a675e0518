//! [`BusEvent`] ⇄ Cap'n Proto bytes (`schema/zoomate_bus.capnp`). Decoding treats every byte
//! as hostile: limits on traversal and nesting, typed errors, never a panic.

use super::event::{BusEvent, RenditionInfo};
use super::zoomate_bus_capnp::{
    envelope, origin_heartbeat, part_ready, playlist_updated, segment_ready, stream_ended,
    stream_started,
};

/// Protocol version this build writes and understands.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest payload accepted, in bytes (a heartbeat listing thousands of streams fits easily).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed Cap'n Proto: {0}")]
    Capnp(#[from] capnp::Error),
    #[error("unknown message kind (union discriminant {0})")]
    UnknownKind(u16),
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    UnknownVersion(u16),
    #[error("text field is not UTF-8")]
    Utf8,
    #[error("{field} lists {len} entries; at most {max} are accepted")]
    TooMany {
        field: &'static str,
        len: u32,
        max: usize,
    },
}

/// Streams one heartbeat may list (the trust judge's limit, enforced before anything is
/// allocated for them).
pub const MAX_HEARTBEAT_STREAMS: usize = crate::edge::trust::MAX_STREAMS_PER_HEARTBEAT;
/// Renditions one `StreamStarted` may list.
pub const MAX_STARTED_RENDITIONS: usize = crate::edge::trust::MAX_RENDITIONS;

/// Refuses a list longer than `max` before it is walked. Why: a Cap'n Proto list of empty
/// elements costs nothing on the wire (a list pointer may declare 2^29 zero-sized elements,
/// each read as an empty text or a default struct), so the payload and traversal limits do not
/// bound its length; walking it turned a 170-byte `StreamStarted` into 114,688
/// renditions, two `String`s each (found by `fuzz/` `bus_messages`).
fn bounded(field: &'static str, len: u32, max: usize) -> Result<(), DecodeError> {
    if len as usize > max {
        return Err(DecodeError::TooMany { field, len, max });
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Serialises one event as an `Envelope` (standard framing, unpacked).
pub fn encode(event: &BusEvent) -> Vec<u8> {
    let mut message = capnp::message::Builder::new_default();
    {
        let mut env = message.init_root::<envelope::Builder>();
        env.set_version(PROTOCOL_VERSION);
        env.set_sent_at_ms(now_ms());
        match event {
            BusEvent::SegmentReady {
                stream,
                rendition,
                media_sequence,
                duration_ms,
                uri,
                byte_size,
                program_date_time_ms,
                discontinuity,
                origin_id,
            } => {
                let mut m = env.init_segment_ready();
                m.set_stream(stream.as_str());
                m.set_rendition(rendition.as_str());
                m.set_media_sequence(*media_sequence);
                m.set_duration_ms(*duration_ms);
                m.set_uri(uri.as_str());
                m.set_byte_size(*byte_size);
                m.set_program_date_time_ms(*program_date_time_ms);
                m.set_discontinuity(*discontinuity);
                m.set_origin_id(origin_id.as_str());
            }
            BusEvent::PartReady {
                stream,
                rendition,
                media_sequence,
                part_index,
                duration_ms,
                independent,
                uri,
                byte_size,
                origin_id,
            } => {
                let mut m = env.init_part_ready();
                m.set_stream(stream.as_str());
                m.set_rendition(rendition.as_str());
                m.set_media_sequence(*media_sequence);
                m.set_part_index(*part_index);
                m.set_duration_ms(*duration_ms);
                m.set_independent(*independent);
                m.set_uri(uri.as_str());
                m.set_byte_size(*byte_size);
                m.set_origin_id(origin_id.as_str());
            }
            BusEvent::PlaylistUpdated {
                stream,
                rendition,
                media_sequence,
                uri,
            } => {
                let mut m = env.init_playlist_updated();
                m.set_stream(stream.as_str());
                m.set_rendition(rendition.as_str());
                m.set_media_sequence(*media_sequence);
                m.set_uri(uri.as_str());
            }
            BusEvent::StreamStarted {
                stream,
                origin_id,
                renditions,
            } => {
                let mut m = env.init_stream_started();
                m.set_stream(stream.as_str());
                m.set_origin_id(origin_id.as_str());
                let mut list = m.init_renditions(renditions.len() as u32);
                for (i, r) in renditions.iter().enumerate() {
                    let mut b = list.reborrow().get(i as u32);
                    b.set_name(r.name.as_str());
                    b.set_bandwidth_bps(r.bandwidth_bps);
                    b.set_width(r.width);
                    b.set_height(r.height);
                    b.set_codecs(r.codecs.as_str());
                }
            }
            BusEvent::StreamEnded { stream, origin_id } => {
                let mut m = env.init_stream_ended();
                m.set_stream(stream.as_str());
                m.set_origin_id(origin_id.as_str());
            }
            BusEvent::OriginHeartbeat {
                origin_id,
                http_base_url,
                streams,
                load_streams,
                load_encoder_speed,
                interval_ms,
            } => {
                let mut m = env.init_origin_heartbeat();
                m.set_origin_id(origin_id.as_str());
                m.set_http_base_url(http_base_url.as_str());
                let mut list = m.reborrow().init_streams(streams.len() as u32);
                for (i, s) in streams.iter().enumerate() {
                    list.set(i as u32, s.as_str());
                }
                m.set_load_streams(*load_streams);
                m.set_load_encoder_speed(*load_encoder_speed);
                m.set_interval_ms(*interval_ms);
            }
        }
    }
    capnp::serialize::write_message_to_words(&message)
}

fn text(r: capnp::Result<capnp::text::Reader<'_>>) -> Result<String, DecodeError> {
    Ok(r?.to_str().map_err(|_| DecodeError::Utf8)?.to_owned())
}

/// Parses an `Envelope`. Garbage, truncation, unknown versions and kinds are errors.
pub fn decode(bytes: &[u8]) -> Result<BusEvent, DecodeError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    let mut options = capnp::message::ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(MAX_PAYLOAD_BYTES / 8 * 2))
        .nesting_limit(8);
    let mut slice = bytes;
    let reader = capnp::serialize::read_message_from_flat_slice(&mut slice, options)?;
    let env = reader.get_root::<envelope::Reader>()?;
    let version = env.get_version();
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let which = env.which().map_err(|e| DecodeError::UnknownKind(e.0))?;
    Ok(match which {
        envelope::SegmentReady(m) => segment_ready_from(m?)?,
        envelope::PlaylistUpdated(m) => playlist_updated_from(m?)?,
        envelope::StreamStarted(m) => stream_started_from(m?)?,
        envelope::StreamEnded(m) => stream_ended_from(m?)?,
        envelope::OriginHeartbeat(m) => heartbeat_from(m?)?,
        envelope::PartReady(m) => part_ready_from(m?)?,
    })
}

fn segment_ready_from(m: segment_ready::Reader<'_>) -> Result<BusEvent, DecodeError> {
    Ok(BusEvent::SegmentReady {
        stream: text(m.get_stream())?,
        rendition: text(m.get_rendition())?,
        media_sequence: m.get_media_sequence(),
        duration_ms: m.get_duration_ms(),
        uri: text(m.get_uri())?,
        byte_size: m.get_byte_size(),
        program_date_time_ms: m.get_program_date_time_ms(),
        discontinuity: m.get_discontinuity(),
        origin_id: text(m.get_origin_id())?,
    })
}

fn part_ready_from(m: part_ready::Reader<'_>) -> Result<BusEvent, DecodeError> {
    Ok(BusEvent::PartReady {
        stream: text(m.get_stream())?,
        rendition: text(m.get_rendition())?,
        media_sequence: m.get_media_sequence(),
        part_index: m.get_part_index(),
        duration_ms: m.get_duration_ms(),
        independent: m.get_independent(),
        uri: text(m.get_uri())?,
        byte_size: m.get_byte_size(),
        origin_id: text(m.get_origin_id())?,
    })
}

fn playlist_updated_from(m: playlist_updated::Reader<'_>) -> Result<BusEvent, DecodeError> {
    Ok(BusEvent::PlaylistUpdated {
        stream: text(m.get_stream())?,
        rendition: text(m.get_rendition())?,
        media_sequence: m.get_media_sequence(),
        uri: text(m.get_uri())?,
    })
}

fn stream_started_from(m: stream_started::Reader<'_>) -> Result<BusEvent, DecodeError> {
    let list = m.get_renditions()?;
    bounded(
        "StreamStarted.renditions",
        list.len(),
        MAX_STARTED_RENDITIONS,
    )?;
    let mut renditions = Vec::with_capacity(list.len() as usize);
    for r in list.iter() {
        renditions.push(RenditionInfo {
            name: text(r.get_name())?,
            bandwidth_bps: r.get_bandwidth_bps(),
            width: r.get_width(),
            height: r.get_height(),
            codecs: text(r.get_codecs())?,
        });
    }
    Ok(BusEvent::StreamStarted {
        stream: text(m.get_stream())?,
        origin_id: text(m.get_origin_id())?,
        renditions,
    })
}

fn stream_ended_from(m: stream_ended::Reader<'_>) -> Result<BusEvent, DecodeError> {
    Ok(BusEvent::StreamEnded {
        stream: text(m.get_stream())?,
        origin_id: text(m.get_origin_id())?,
    })
}

fn heartbeat_from(m: origin_heartbeat::Reader<'_>) -> Result<BusEvent, DecodeError> {
    let list = m.get_streams()?;
    bounded("OriginHeartbeat.streams", list.len(), MAX_HEARTBEAT_STREAMS)?;
    let mut streams = Vec::with_capacity(list.len() as usize);
    for s in list.iter() {
        streams.push(text(s)?);
    }
    Ok(BusEvent::OriginHeartbeat {
        origin_id: text(m.get_origin_id())?,
        http_base_url: text(m.get_http_base_url())?,
        streams,
        load_streams: m.get_load_streams(),
        load_encoder_speed: m.get_load_encoder_speed(),
        interval_ms: m.get_interval_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `fuzz/artifacts/regressions/bus_messages/list-amplification`: 220 bytes whose
    /// `StreamStarted` declares a list of zero-sized renditions. Decoded, each became a
    /// `RenditionInfo` (7.3 MB re-encoded, over `MAX_PAYLOAD_BYTES`); it must be refused unwalked.
    #[test]
    fn a_list_of_zero_sized_elements_is_refused_before_it_is_walked() {
        let bytes =
            include_bytes!("../../fuzz/artifacts/regressions/bus_messages/list-amplification");
        assert!(bytes.len() < 300);
        match decode(bytes) {
            Err(DecodeError::TooMany { field, len, .. }) => {
                eprintln!("{field}: {len} entries declared in {} bytes", bytes.len());
                assert_eq!(field, "StreamStarted.renditions");
                assert!(len as usize > MAX_STARTED_RENDITIONS, "{len}");
            }
            other => panic!("decoded to {other:?}"),
        }
        // At the limit, a real heartbeat still decodes.
        let event = BusEvent::OriginHeartbeat {
            origin_id: "o".into(),
            http_base_url: "http://127.0.0.1:8081".into(),
            streams: (0..MAX_HEARTBEAT_STREAMS)
                .map(|i| format!("s{i}"))
                .collect(),
            load_streams: 1,
            load_encoder_speed: 1.0,
            interval_ms: 1000,
        };
        assert_eq!(decode(&encode(&event)).unwrap(), event);
    }

    pub(crate) fn samples() -> Vec<BusEvent> {
        vec![
            BusEvent::SegmentReady {
                stream: "demo".into(),
                rendition: "720p".into(),
                media_sequence: 42,
                duration_ms: 2000,
                uri: "/live/demo/720p/42.ts".into(),
                byte_size: 694_000,
                program_date_time_ms: 1_764_019_800_123,
                discontinuity: true,
                origin_id: "origin-1".into(),
            },
            BusEvent::PlaylistUpdated {
                stream: "demo".into(),
                rendition: "720p".into(),
                media_sequence: 42,
                uri: "/live/demo/720p/index.m3u8".into(),
            },
            BusEvent::PartReady {
                stream: "demo".into(),
                rendition: "720p".into(),
                media_sequence: 43,
                part_index: 4,
                duration_ms: 200,
                independent: false,
                uri: "/live/demo/720p/43.4.m4s".into(),
                byte_size: 61_000,
                origin_id: "origin-1".into(),
            },
            BusEvent::StreamStarted {
                stream: "demo".into(),
                origin_id: "o".into(),
                renditions: vec![RenditionInfo {
                    name: "720p".into(),
                    bandwidth_bps: 3_000_000,
                    width: 1280,
                    height: 720,
                    codecs: "avc1.64001f,mp4a.40.2".into(),
                }],
            },
            BusEvent::StreamEnded {
                stream: "demo".into(),
                origin_id: "o".into(),
            },
            BusEvent::OriginHeartbeat {
                origin_id: "o".into(),
                http_base_url: "http://127.0.0.1:8081".into(),
                streams: vec!["a".into(), "b".into()],
                load_streams: 2,
                load_encoder_speed: 1.5,
                interval_ms: 1000,
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for e in samples() {
            assert_eq!(decode(&encode(&e)).unwrap(), e);
        }
    }

    #[test]
    fn payload_at_an_unaligned_address_decodes() {
        // ZeroMQ frames forwarded by a proxy arrive at arbitrary offsets.
        let e = samples().remove(0);
        let mut buf = vec![0u8];
        buf.extend(encode(&e));
        assert_eq!(decode(&buf[1..]).unwrap(), e);
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut bytes = encode(&samples()[0]);
        // Root struct data section starts after the 8-byte segment table and 8-byte root pointer.
        bytes[16] = 9;
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::UnknownVersion(9))
        ));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for e in samples() {
            let bytes = encode(&e);
            for n in 0..bytes.len() {
                assert!(decode(&bytes[..n]).is_err(), "truncated to {n} decoded");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(idx in 0usize..400, val in any::<u8>(), kind in 0usize..5) {
            let mut bytes = encode(&samples()[kind]);
            let i = idx % bytes.len();
            bytes[i] = val;
            let _ = decode(&bytes);
        }
    }
}
