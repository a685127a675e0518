//! One WHEP viewer: `appsrc` (fed by the stream's [`super::feed::WhepFeed`]) → `rtph264pay`
//! → its own `webrtcbin`, negotiated with the viewer's offer the way WHIP sessions are
//! ([`crate::ingest::whip::media::negotiate`]: non-trickle, bounded).

use crate::ingest::whip::media::{IceSettings, negotiate};
use gst::prelude::*;
use std::time::Duration;

/// Checks a viewer's offer: size, SDP syntax, a video section that receives H.264 with
/// packetization mode 1. Returns the parsed offer and the H.264 payload type to send with.
pub fn check_offer(body: &[u8], max_bytes: usize) -> Result<(gst_sdp::SDPMessage, u8), String> {
    if body.len() > max_bytes {
        return Err(format!("offer larger than {max_bytes} bytes"));
    }
    let text = std::str::from_utf8(body).map_err(|_| "offer is not UTF-8 text".to_string())?;
    if !text.trim_start().starts_with("v=0") {
        return Err("offer is not a parseable SDP session description".into());
    }
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|_| "offer is not a parseable SDP session description".to_string())?;
    for media in sdp.medias() {
        if media.media() != Some("video") || media.port() == 0 {
            continue;
        }
        if media
            .attributes()
            .any(|a| matches!(a.key(), "sendonly" | "inactive"))
        {
            continue;
        }
        let fmtp_ok = |pt: &str| {
            media.attributes().any(|a| {
                a.key() == "fmtp"
                    && a.value().is_some_and(|v| {
                        v.split_once(' ').is_some_and(|(p, params)| {
                            p == pt && params.contains("packetization-mode=1")
                        })
                    })
            })
        };
        let h264: Vec<String> = media
            .attributes()
            .filter(|a| a.key() == "rtpmap")
            .filter_map(|a| {
                let (pt, rest) = a.value()?.split_once(' ')?;
                rest.to_ascii_uppercase()
                    .starts_with("H264/")
                    .then(|| pt.to_string())
            })
            .collect();
        if let Some(pt) = h264
            .iter()
            .find(|pt| fmtp_ok(pt))
            .or(h264.first())
            .and_then(|pt| pt.parse::<u8>().ok())
        {
            return Ok((sdp.clone(), pt));
        }
        return Err("offer's video does not receive H.264".into());
    }
    Err("offer has no m=video section that receives".into())
}

/// Starts a viewer pipeline, joins it to `feed`, negotiates; its pipeline and the answer SDP.
/// `stop` is fired when the connection fails or closes, or the stream ends (EOS).
/// Blocking: call off the runtime.
pub fn start(
    viewer_id: u64,
    feed: &super::feed::WhepFeed,
    offer: gst_sdp::SDPMessage,
    payload_type: u8,
    ice: &IceSettings,
    timeout: Duration,
    stop: crate::Shutdown,
) -> Result<(gst::Pipeline, String), String> {
    let description = format!(
        "appsrc name=src is-live=true do-timestamp=true format=time max-bytes=8000000 \
         caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse config-interval=-1 \
         ! rtph264pay config-interval=-1 aggregate-mode=zero-latency pt={payload_type} \
         ! application/x-rtp,media=video,encoding-name=H264,payload={payload_type},clock-rate=90000 \
         ! webrtcbin name=webrtc bundle-policy=max-bundle"
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    pipeline.set_property("name", format!("whep-viewer-{viewer_id}"));
    let appsrc = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or("viewer pipeline has no appsrc")?;
    if let Some(bus) = pipeline.bus() {
        let stop = stop.clone();
        // EOS (the stream ended) or an error: the viewer is done.
        bus.set_sync_handler(move |_, msg| {
            if matches!(
                msg.view(),
                gst::MessageView::Eos(_) | gst::MessageView::Error(_)
            ) {
                stop.cancel();
            }
            gst::BusSyncReply::Drop
        });
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("viewer pipeline: {e}"))?;
    let gone = stop.clone();
    match negotiate(&pipeline, offer, ice, timeout, move || gone.cancel()) {
        Ok(answer) => {
            feed.add(viewer_id, appsrc);
            Ok((pipeline, answer))
        }
        Err(e) => {
            let _ = pipeline.set_state(gst::State::Null);
            Err(e.to_string())
        }
    }
}
