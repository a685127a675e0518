//! WHIP media: the running session pipeline's `webrtcbin` negotiated with the publisher's
//! offer, and each incoming stream linked to a depayloader and decoder that end in the source
//! template's `vsrc` / `asrc` (from there the ladder is the same as for RTMP).
//!
//! Non-trickle (RFC 9725 §4.3.1 allows it): the answer is sent once ICE gathering is complete,
//! within `webrtc.answer_timeout_ms`, with every candidate in it. Runs on its own thread:
//! webrtcbin's promises are waited on, never on a tokio worker.

use super::signalling::candidate_allowed;
use gst::prelude::*;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where ICE may listen and which servers it may use (`[webrtc]`).
#[derive(Debug, Clone, Default)]
pub struct IceSettings {
    pub port_range: Option<(u16, u16)>,
    pub address: Option<IpAddr>,
    pub stun_server: Option<String>,
    /// `turn://user:password@host:port`: a credential, so `Debug` shows it redacted.
    pub turn_server: Option<crate::config::Secret>,
}

/// Why negotiation failed (the publisher gets a 5xx or 4xx naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("source template has no webrtcbin named `webrtc`")]
    NoWebrtcbin,
    #[error("the offer was refused by webrtcbin: {0}")]
    OfferRefused(String),
    #[error("no answer could be created: {0}")]
    NoAnswer(String),
    #[error("ICE gathering did not complete in time")]
    GatheringTimeout,
}

/// Configures `webrtc` in `pipeline`, applies `offer`, and returns the answer SDP text with its
/// candidates (filtered to `ice.address`). Blocks up to `timeout`; call off the runtime.
/// `on_gone` is called (from a GStreamer thread) when the peer connection fails or closes.
pub fn negotiate(
    pipeline: &gst::Pipeline,
    offer: gst_sdp::SDPMessage,
    ice: &IceSettings,
    timeout: Duration,
    on_gone: impl Fn() + Send + Sync + 'static,
) -> Result<String, NegotiationError> {
    let deadline = Instant::now() + timeout;
    let webrtc = pipeline
        .by_name("webrtc")
        .ok_or(NegotiationError::NoWebrtcbin)?;
    configure_ice(&webrtc, ice);
    link_incoming_streams(&webrtc, pipeline);

    let gathered = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    {
        let gathered = gathered.clone();
        webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
            let state = w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
            if state == gst_webrtc::WebRTCICEGatheringState::Complete {
                let (lock, cvar) = &*gathered;
                if let Ok(mut done) = lock.lock() {
                    *done = true;
                    cvar.notify_all();
                }
            }
        });
    }
    let candidates: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
    {
        let candidates = candidates.clone();
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok());
            let cand = values.get(2).and_then(|v| v.get::<String>().ok());
            if let (Some(m), Some(c)) = (mline, cand)
                && let Ok(mut list) = candidates.lock()
                && list.len() < MAX_CANDIDATES
            {
                list.push((m, c));
            }
            None
        });
    }
    webrtc.connect_notify(Some("connection-state"), move |w, _| {
        use gst_webrtc::WebRTCPeerConnectionState as S;
        let state = w.property::<S>("connection-state");
        tracing::debug!(?state, "WHIP peer connection state");
        if matches!(state, S::Failed | S::Closed) {
            on_gone();
        }
    });

    let desc = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
    let promise = gst::Promise::new();
    webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
    wait_promise(&promise, deadline).map_err(NegotiationError::OfferRefused)?;

    let promise = gst::Promise::new();
    webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
    let reply = wait_promise(&promise, deadline).map_err(NegotiationError::NoAnswer)?;
    let answer = reply
        .as_ref()
        .and_then(|s| s.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok())
        .ok_or_else(|| {
            NegotiationError::NoAnswer(
                reply
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "empty reply".into()),
            )
        })?;
    let promise = gst::Promise::new();
    webrtc.emit_by_name::<()>("set-local-description", &[&answer, &promise]);
    wait_promise(&promise, deadline).map_err(NegotiationError::NoAnswer)?;

    {
        let (lock, cvar) = &*gathered;
        let mut done = lock
            .lock()
            .map_err(|_| NegotiationError::GatheringTimeout)?;
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NegotiationError::GatheringTimeout);
            }
            done = cvar
                .wait_timeout(done, left)
                .map_err(|_| NegotiationError::GatheringTimeout)?
                .0;
        }
    }
    let local = webrtc
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .unwrap_or(answer);
    let gathered = candidates.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(answer_with_candidates(local.sdp(), &gathered, ice.address))
}

/// Candidates kept from one gathering at most (a host has a few interfaces).
const MAX_CANDIDATES: usize = 64;

/// The answer's text with exactly the allowed candidates: those webrtcbin put in it, plus any
/// gathered that it did not, minus any not on `address`.
fn answer_with_candidates(
    sdp: &gst_sdp::SDPMessageRef,
    gathered: &[(u32, String)],
    address: Option<IpAddr>,
) -> String {
    let mut sdp = sdp.to_owned();
    let count = sdp.medias_len();
    for index in 0..count {
        let Some(media) = sdp.media_mut(index) else {
            continue;
        };
        let mut present: Vec<String> = Vec::new();
        // Remove what must not be offered; remember what is there.
        let mut i = 0;
        while i < media.attributes_len() {
            let Some(attr) = media.attribute(i) else {
                break;
            };
            if attr.key() == "candidate" {
                let value = attr.value().unwrap_or("").to_string();
                if !candidate_allowed(&value, address) {
                    let _ = media.remove_attribute(i);
                    continue;
                }
                present.push(value);
            }
            i += 1;
        }
        for (mline, cand) in gathered {
            let value = cand
                .trim_start_matches("a=")
                .trim_start_matches("candidate:");
            let value = format!("candidate:{value}");
            if *mline == index && candidate_allowed(&value, address) && !present.contains(&value) {
                media.add_attribute("candidate", Some(value.trim_start_matches("candidate:")));
                present.push(value);
            }
        }
        if !media.attributes().any(|a| a.key() == "end-of-candidates") {
            media.add_attribute("end-of-candidates", None);
        }
    }
    sdp.as_text().unwrap_or_default()
}

fn configure_ice(webrtc: &gst::Element, ice: &IceSettings) {
    if let Some(stun) = &ice.stun_server {
        webrtc.set_property("stun-server", stun);
    }
    if let Some(turn) = &ice.turn_server {
        webrtc.set_property("turn-server", turn.expose());
    }
    if let Some((min, max)) = ice.port_range {
        // GstWebRTCICE (1.20+): the UDP port range libnice binds its host candidates to.
        let agent = webrtc.property::<Option<gst::glib::Object>>("ice-agent");
        match agent {
            Some(agent) if agent.find_property("min-rtp-port").is_some() => {
                agent.set_property("min-rtp-port", u32::from(min));
                agent.set_property("max-rtp-port", u32::from(max));
            }
            _ => {
                tracing::warn!("webrtcbin's ICE agent has no port range; webrtc.ice_port_* ignored")
            }
        }
    }
}

/// Links each stream webrtcbin exposes: H.264 / VP8 video to `vsrc`, Opus audio to `asrc`,
/// anything else (a second video, a codec we did not offer) to a fakesink.
fn link_incoming_streams(webrtc: &gst::Element, pipeline: &gst::Pipeline) {
    let weak = pipeline.downgrade();
    webrtc.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        if let Err(e) = link_stream(&pipeline, pad) {
            tracing::warn!(pad = %pad.name(), error = %e, "WHIP: incoming stream not linked");
        }
    });
}

fn link_stream(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<(), String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let s = caps.structure(0).ok_or("no caps")?;
    let encoding = s
        .get::<&str>("encoding-name")
        .unwrap_or("")
        .to_ascii_uppercase();
    let (chain, target) = match encoding.as_str() {
        "H264" => (
            "queue ! rtph264depay request-keyframe=true wait-for-keyframe=true ! h264parse ! avdec_h264 ! videoconvert",
            "vsrc",
        ),
        "VP8" => (
            "queue ! rtpvp8depay request-keyframe=true wait-for-keyframe=true ! vp8dec ! videoconvert",
            "vsrc",
        ),
        "OPUS" => ("queue ! rtpopusdepay ! opusdec ! audioconvert", "asrc"),
        _ => ("fakesink", ""),
    };
    let target_pad = pipeline
        .by_name(target)
        .and_then(|e| e.static_pad("sink"))
        .filter(|p| !p.is_linked());
    // A stream with nowhere to go (unknown codec, a second video or audio) is dropped.
    let chain = if target_pad.is_some() {
        chain
    } else {
        "fakesink"
    };
    let bin = gst::parse::bin_from_description(chain, true).map_err(|e| e.to_string())?;
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    let sink = bin.static_pad("sink").ok_or("chain has no sink pad")?;
    pad.link(&sink).map_err(|e| format!("{e:?}"))?;
    if let (Some(src), Some(target_pad)) = (bin.static_pad("src"), target_pad) {
        src.link(&target_pad).map_err(|e| format!("{e:?}"))?;
    }
    tracing::info!(encoding, "WHIP: incoming stream linked");
    Ok(())
}

/// Waits for a webrtcbin promise until `deadline`; `Err` with webrtcbin's error text.
fn wait_promise(
    promise: &gst::Promise,
    deadline: Instant,
) -> Result<Option<gst::Structure>, String> {
    // gst::Promise::wait has no timeout: interrupt it from a timer thread.
    let p = promise.clone();
    let timer = std::thread::spawn(move || {
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(left);
        p.interrupt();
    });
    drop(timer); // detached: interrupting a replied promise does nothing
    match promise.wait() {
        gst::PromiseResult::Replied => {
            let reply = promise.get_reply().map(|s| s.to_owned());
            if let Some(err) = reply
                .as_ref()
                .and_then(|s| s.get::<gst::glib::Error>("error").ok())
            {
                return Err(err.to_string());
            }
            Ok(reply)
        }
        other => Err(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_settings_never_print_the_turn_credential() {
        let ice = IceSettings {
            turn_server: Some(crate::config::Secret::new(
                "turn://user:secret-pw@turn.example:3478",
            )),
            ..IceSettings::default()
        };
        let shown = format!("{ice:?} {ice:#?}");
        assert!(
            !shown.contains("secret-pw") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
