//! SRT input: MPEG-TS pushed by an SRT caller (ffmpeg `-f mpegts srt://…`, OBS, hardware
//! encoders) to a listener per configured stream.
//!
//! The media path is a pipeline template (`pipelines/source-srt.pipeline`: `srtsrc
//! mode=listener ! tsdemux`, then the same decoders as MPEG-TS over RTP), so an SRT stream has
//! the RTP sources' silence and return rules. This module adds what a template cannot: the
//! passphrase is set as a property (never written into a pipeline description or a log), and
//! a caller's stream id is checked against the stream before libsrt accepts it.
//!
//! Why a listener per stream rather than one port routed by stream id: `srtsrc` (1.22) is one
//! socket feeding one pipeline and accepts one caller at a time; its `caller-connecting`
//! signal can refuse a caller but cannot hand it to another pipeline. So the stream id
//! *selects nothing*, it is *checked*: a caller naming another stream (or asking to play,
//! `m=request`) is refused at the handshake, one naming this stream or none is accepted.

use gst::prelude::*;

/// The one element of an SRT source template that this module configures.
pub const SRT_ELEMENT_NAME: &str = "srtsrc";

/// libsrt's passphrase bounds (`SRTO_PASSPHRASE`: 10..=79 bytes).
const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

/// The host part of an `srt://` URI for `listen` (IPv6 in brackets).
pub fn uri_host(listen: &std::net::SocketAddr) -> String {
    match listen {
        std::net::SocketAddr::V4(a) => a.ip().to_string(),
        std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// Checks a configured passphrase (libsrt would refuse it later, with a less clear error).
pub fn check_passphrase(passphrase: &str) -> Result<(), String> {
    if !PASSPHRASE_LEN.contains(&passphrase.len()) {
        return Err(format!(
            "must be {}..={} bytes (libsrt's limits), is {}",
            PASSPHRASE_LEN.start(),
            PASSPHRASE_LEN.end(),
            passphrase.len()
        ));
    }
    if passphrase.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Whether a caller presenting `stream_id` may publish to `stream` (pure).
///
/// Accepted: no stream id; `NAME`; `publish:NAME`; the SRT access-control syntax
/// `#!::r=NAME` with `m=publish` or no `m` (github.com/Haivision/srt `docs/features/access-control.md`).
pub fn caller_may_publish(stream: &str, stream_id: Option<&str>) -> bool {
    let Some(id) = stream_id.map(str::trim).filter(|s| !s.is_empty()) else {
        return true;
    };
    if let Some(keys) = id.strip_prefix("#!::") {
        let mut resource = None;
        let mut mode = None;
        for pair in keys.split(',') {
            match pair.split_once('=') {
                Some(("r", v)) => resource = Some(v),
                Some(("m", v)) => mode = Some(v),
                _ => {}
            }
        }
        return resource == Some(stream) && matches!(mode, None | Some("publish"));
    }
    id.strip_prefix("publish:").unwrap_or(id) == stream
}

/// What [`prepare_listener`] sets on a session's `srtsrc`.
#[derive(Clone)]
pub struct SrtListener {
    pub passphrase: Option<crate::config::Secret>,
}

impl std::fmt::Debug for SrtListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passphrase itself.
        f.debug_struct("SrtListener")
            .field("encrypted", &self.passphrase.is_some())
            .finish()
    }
}

/// Configures the source template's `srtsrc` for `stream`: passphrase, and the stream-id check
/// on every connecting caller. A template without an element named [`SRT_ELEMENT_NAME`] is
/// left as it is (an operator's own template).
pub fn prepare_listener(pipeline: &gst::Pipeline, stream: &str, listener: &SrtListener) {
    let Some(srtsrc) = pipeline.by_name(SRT_ELEMENT_NAME) else {
        tracing::warn!(
            stream,
            "SRT source template has no element named {SRT_ELEMENT_NAME}; stream ids are not checked"
        );
        return;
    };
    if let Some(p) = &listener.passphrase {
        srtsrc.set_property("passphrase", p.expose());
    }
    if srtsrc.find_property("authentication").is_some() {
        srtsrc.set_property("authentication", true);
    }
    let stream = stream.to_string();
    // caller-connecting(address, stream_id) -> accept: runs in libsrt's listener callback.
    srtsrc.connect("caller-connecting", false, move |values| {
        let stream_id = values
            .get(2)
            .and_then(|v| v.get::<Option<String>>().ok())
            .flatten();
        let accept = caller_may_publish(&stream, stream_id.as_deref());
        if !accept {
            tracing::warn!(stream, stream_id = ?stream_id, "SRT caller refused: its stream id names another stream or asks to play");
        } else {
            tracing::info!(stream, "SRT caller connecting");
        }
        Some(accept.to_value())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_that_name_the_stream_are_accepted_others_refused() {
        for ok in [
            None,
            Some(""),
            Some("cam"),
            Some("publish:cam"),
            Some("#!::r=cam"),
            Some("#!::r=cam,m=publish"),
            Some("#!::m=publish,r=cam,u=alice"),
        ] {
            assert!(caller_may_publish("cam", ok), "{ok:?}");
        }
        for refused in [
            Some("other"),
            Some("publish:other"),
            Some("#!::r=other"),
            Some("#!::r=cam,m=request"),
            Some("#!::m=publish"),
            Some("cam2"),
        ] {
            assert!(!caller_may_publish("cam", refused), "{refused:?}");
        }
    }

    #[test]
    fn passphrase_bounds_are_libsrts() {
        assert!(check_passphrase("0123456789").is_ok());
        assert!(check_passphrase("short").unwrap_err().contains("10..=79"));
        assert!(check_passphrase(&"x".repeat(80)).is_err());
        assert!(check_passphrase("0123456789\n").is_err());
    }
}
