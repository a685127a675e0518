//! `zoomate bus tail`: every message as one JSON line, for operators.

use super::subscriber::BusSubscriber;
use super::{BusError, BusEvent};
use crate::Shutdown;
use serde_json::{Value, json};

/// Messages buffered between the sockets and the writer.
const TAIL_QUEUE: usize = 4096;

/// The JSON form of an event (`kind`, `topic`, then every field).
pub fn to_json(event: &BusEvent) -> Value {
    let topic = event.topic();
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
        } => json!({
            "kind": "segment_ready", "topic": topic, "stream": stream, "rendition": rendition, "media_sequence": media_sequence,
            "duration_ms": duration_ms, "uri": uri, "byte_size": byte_size, "program_date_time_ms": program_date_time_ms,
            "discontinuity": discontinuity, "origin_id": origin_id,
        }),
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
        } => json!({
            "kind": "part_ready", "topic": topic, "stream": stream, "rendition": rendition, "media_sequence": media_sequence,
            "part_index": part_index, "duration_ms": duration_ms, "independent": independent, "uri": uri,
            "byte_size": byte_size, "origin_id": origin_id,
        }),
        BusEvent::PlaylistUpdated {
            stream,
            rendition,
            media_sequence,
            uri,
        } => json!({
            "kind": "playlist_updated", "topic": topic, "stream": stream, "rendition": rendition, "media_sequence": media_sequence, "uri": uri,
        }),
        BusEvent::StreamStarted {
            stream,
            origin_id,
            renditions,
        } => json!({
            "kind": "stream_started", "topic": topic, "stream": stream, "origin_id": origin_id,
            "renditions": renditions.iter().map(|r| json!({"name": r.name, "bandwidth_bps": r.bandwidth_bps, "width": r.width, "height": r.height, "codecs": r.codecs})).collect::<Vec<_>>(),
        }),
        BusEvent::StreamEnded { stream, origin_id } => {
            json!({ "kind": "stream_ended", "topic": topic, "stream": stream, "origin_id": origin_id })
        }
        BusEvent::OriginHeartbeat {
            origin_id,
            http_base_url,
            streams,
            load_streams,
            load_encoder_speed,
            interval_ms,
        } => json!({
            "kind": "origin_heartbeat", "topic": topic, "origin_id": origin_id, "http_base_url": http_base_url, "streams": streams,
            "load_streams": load_streams, "load_encoder_speed": load_encoder_speed, "interval_ms": interval_ms,
        }),
    }
}

/// Prints until shutdown (or the output closes).
pub async fn run_tail<T: Into<super::subscriber::SubscribeTarget>>(
    endpoints: Vec<T>,
    topics: Vec<String>,
    mut out: impl std::io::Write,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let (_sub, mut rx) = BusSubscriber::spawn(endpoints, topics, TAIL_QUEUE, shutdown.clone());
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ev = rx.recv() => match ev { Some(ev) => ev, None => return Ok(()) },
        };
        writeln!(out, "{}", to_json(&ev))?;
        out.flush()?;
    }
}
