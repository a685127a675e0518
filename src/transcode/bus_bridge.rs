//! The GStreamer bus → the session's event channel, for what only the bus carries:
//! splitmuxsink's fragment messages (MPEG-TS), EOS, errors and warnings.
//!
//! A splitmuxsink's messages are attributed to its rendition through [`MuxerRenditions`], filled
//! by the ladder builder when it creates the muxers (by element identity, not by parsing the
//! element's name).

use super::events::{EventSender, PipelineEvent};
use gst::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The muxers of a ladder and the rendition each one writes.
#[derive(Clone, Default)]
pub struct MuxerRenditions(Arc<Mutex<Vec<(gst::glib::WeakRef<gst::Element>, String)>>>);

impl MuxerRenditions {
    pub fn register(&self, muxer: &gst::Element, rendition: &str) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.push((muxer.downgrade(), rendition.to_string()));
    }

    fn rendition_of(&self, src: &gst::Object) -> Option<String> {
        let list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .find(|(muxer, _)| {
                muxer
                    .upgrade()
                    .is_some_and(|m| m.upcast_ref::<gst::Object>() == src)
            })
            .map(|(_, r)| r.clone())
    }
}

/// Forwards bus messages until EOS, an error, or the session dropping its receiver.
pub async fn bridge_bus(
    bus: gst::Bus,
    events: EventSender,
    muxers: MuxerRenditions,
    pipeline_name: String,
) {
    use futures::StreamExt;
    let mut messages = bus.stream();
    loop {
        let msg = tokio::select! {
            m = messages.next() => match m { Some(m) => m, None => return },
            // The session is over: stop holding the bus (and the pipeline's messages).
            _ = events.closed() => return,
        };
        let Some(event) = translate(&msg, &muxers, &pipeline_name) else {
            continue;
        };
        let terminal = matches!(
            event,
            PipelineEvent::Eos | PipelineEvent::Failed(_) | PipelineEvent::StoreFull(_)
        );
        if !events.send(event).await || terminal {
            return;
        }
    }
}

fn translate(
    msg: &gst::Message,
    muxers: &MuxerRenditions,
    pipeline_name: &str,
) -> Option<PipelineEvent> {
    match msg.view() {
        gst::MessageView::Element(e) => {
            let s = e.structure()?;
            let rendition = muxers.rendition_of(msg.src()?)?;
            let running_time_ns = s.get::<u64>("running-time").unwrap_or(0);
            match s.name().as_str() {
                "splitmuxsink-fragment-opened" => Some(PipelineEvent::FragmentOpened {
                    rendition,
                    running_time_ns,
                }),
                "splitmuxsink-fragment-closed" => Some(PipelineEvent::FragmentClosed {
                    rendition,
                    location: PathBuf::from(s.get::<String>("location").ok()?),
                    running_time_ns,
                    // splitmuxsink reports the start of the last frame, not the exact end.
                    exact_end: false,
                }),
                _ => None,
            }
        }
        gst::MessageView::Eos(_) => Some(PipelineEvent::Eos),
        gst::MessageView::Error(e) => {
            let src = msg
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default();
            let reason = format!(
                "{src}: {} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            );
            // filesink (inside splitmuxsink) and the CMAF fragment writer post this on ENOSPC.
            if e.error().matches(gst::ResourceError::NoSpaceLeft) {
                Some(PipelineEvent::StoreFull(reason))
            } else {
                Some(PipelineEvent::Failed(reason))
            }
        }
        gst::MessageView::Warning(w) => {
            tracing::warn!(pipeline = %pipeline_name, warning = %w.error(), "GStreamer warning");
            None
        }
        _ => None,
    }
}
