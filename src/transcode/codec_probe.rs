//! CODECS from the real encoded stream: the SPS of each rendition (from the avcC of CMAF
//! branches, from the first Annex B keyframe of TS branches) and the AAC AudioSpecificConfig.
//! Pad probes on the ladder bin report them as typed events.

use super::PlannedRendition;
use super::events::{EventSender, PipelineEvent};
use gst::prelude::*;

/// Reads CODECS from the real encoded stream: SPS of each rendition, AudioSpecificConfig of AAC.
/// CMAF branches carry `stream-format=avc`: the SPS fields are in the caps' avcC.
pub fn arm_codec_probes(
    bin: &gst::Bin,
    planned: &[PlannedRendition],
    avcc: bool,
    events: &EventSender,
) {
    for r in planned {
        if avcc {
            let Some(pad) = bin
                .by_name(&format!("cmaf_{}", r.name))
                .and_then(|e| e.static_pad("sink"))
            else {
                continue;
            };
            let rendition = r.name.clone();
            let events = events.clone();
            pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view()) else {
                    return gst::PadProbeReturn::Ok;
                };
                let codec = caps
                    .caps()
                    .structure(0)
                    .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
                    .and_then(|b| {
                        b.map_readable().ok().and_then(|m| {
                            crate::packaging::codecs::h264_codec_from_avcc(m.as_slice())
                        })
                    });
                let Some(codec) = codec else {
                    return gst::PadProbeReturn::Ok;
                };
                events.emit(PipelineEvent::VideoCodec {
                    rendition: rendition.clone(),
                    codec,
                });
                gst::PadProbeReturn::Remove
            });
            continue;
        }
        let Some(pad) = bin
            .by_name(&format!("parse_{}", r.name))
            .and_then(|e| e.static_pad("src"))
        else {
            continue;
        };
        let rendition = r.name.clone();
        let events = events.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let Ok(map) = buffer.map_readable() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(codec) = crate::packaging::codecs::h264_codec_from_annexb(map.as_slice())
            else {
                return gst::PadProbeReturn::Ok; // not a keyframe with SPS yet
            };
            events.emit(PipelineEvent::VideoCodec {
                rendition: rendition.clone(),
                codec,
            });
            gst::PadProbeReturn::Remove
        });
    }
    if let Some(pad) = bin.by_name("aparse").and_then(|e| e.static_pad("src")) {
        let events = events.clone();
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            let Some(event) = info.event() else {
                return gst::PadProbeReturn::Ok;
            };
            let gst::EventView::Caps(caps) = event.view() else {
                return gst::PadProbeReturn::Ok;
            };
            let codec = caps
                .caps()
                .structure(0)
                .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
                .and_then(|b| {
                    b.map_readable().ok().and_then(|m| {
                        crate::packaging::codecs::aac_codec_from_audio_specific_config(m.as_slice())
                    })
                });
            if let Some(codec) = codec {
                events.emit(PipelineEvent::AudioCodec { codec });
            }
            gst::PadProbeReturn::Remove
        });
    }
}
