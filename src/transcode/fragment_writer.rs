//! CMAF output: cmafmux → appsink → one file per fragment, reported like splitmuxsink's.
//!
//! cmafmux emits its init segment once (`ftyp`+`moov`, flagged `HEADER|DISCONT`), then each
//! fragment as a `moof` header buffer (`HEADER`, not `DELTA_UNIT`) followed by its `mdat`
//! buffers. This writer splits that byte stream into `init.mp4` and `%08d.m4s` files in the
//! staging directory and reports the same typed fragment events as splitmuxsink's bridge
//! (`FragmentOpened` / `FragmentClosed`), so the session handles both formats alike.
//! Bytes are written as they arrive (no user-space buffering): a closed fragment is complete
//! on disk when its event is sent.
//!
//! LL-HLS (`cmafmux chunk-duration`): every fragment arrives as chunks, each one `moof`+`mdat`
//! whose `moof` is flagged `HEADER|DELTA_UNIT` (the fragment's first is `HEADER` only) and whose
//! last buffer is flagged `MARKER`. Each chunk is also written, whole and atomically, as a part
//! file next to the fragment (`{fragment:08}.{part}.m4s`) and reported as `PartWritten` the
//! moment its last buffer arrives: parts are the chunks, not a copy cut later.

use super::events::{EventSender, PipelineEvent};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

struct OpenFragment {
    file: std::fs::File,
    location: PathBuf,
    fragment: u32,
    end_ns: u64,
    /// Bytes written so far: a fragment with none is never reported.
    written: u64,
    /// LL-HLS: the chunk being received.
    part: Option<OpenPart>,
    next_part: u32,
}

struct OpenPart {
    bytes: Vec<u8>,
    start_ns: u64,
    end_ns: u64,
    independent: bool,
}

struct WriterState {
    dir: PathBuf,
    rendition: String,
    events: EventSender,
    next_index: u32,
    init_written: bool,
    current: Option<OpenFragment>,
    failed: bool,
    /// Write each chunk as a part (the muxer has `chunk-duration` set).
    parts: bool,
    /// Every part is independent (audio: every frame is a sync sample).
    all_independent: bool,
}

/// Installs the writer on `appsink`, writing `rendition`'s files into `dir`; with `parts`,
/// every chunk is also written and reported as an LL-HLS part.
pub fn attach(
    appsink: &gst_app::AppSink,
    dir: PathBuf,
    rendition: String,
    events: EventSender,
    parts: bool,
) {
    let all_independent = rendition == crate::layout::AUDIO_RENDITION;
    let state = std::sync::Arc::new(Mutex::new(WriterState {
        dir,
        rendition,
        events,
        next_index: 0,
        init_written: false,
        current: None,
        failed: false,
        parts,
        all_independent,
    }));
    let on_sample = state.clone();
    let on_eos = state;
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut st = on_sample.lock().unwrap_or_else(|p| p.into_inner());
                if st.failed {
                    return Err(gst::FlowError::Error);
                }
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                let running_time = |pts: Option<gst::ClockTime>| -> u64 {
                    match (&segment, pts) {
                        (Some(seg), Some(pts)) => seg
                            .to_running_time(pts)
                            .map(|t| t.nseconds())
                            .unwrap_or(pts.nseconds()),
                        (None, Some(pts)) => pts.nseconds(),
                        _ => 0,
                    }
                };
                let mut handle = |buffer: &gst::BufferRef| -> Result<(), WriteFailure> {
                    let flags = buffer.flags();
                    let map = buffer
                        .map_readable()
                        .map_err(|e| WriteFailure::other(e.to_string()))?;
                    if flags.contains(gst::BufferFlags::HEADER | gst::BufferFlags::DISCONT) {
                        if !st.init_written {
                            let location = st.dir.join(crate::layout::STAGED_INIT_SEGMENT);
                            crate::store::write_atomic(&location, map.as_slice())
                                .map_err(|e| WriteFailure::io(&location, e))?;
                            st.init_written = true;
                            st.events.emit(PipelineEvent::InitSegment {
                                rendition: st.rendition.clone(),
                                location,
                            });
                        }
                        return Ok(());
                    }
                    if flags.contains(gst::BufferFlags::HEADER)
                        && !flags.contains(gst::BufferFlags::DELTA_UNIT)
                    {
                        // A new fragment: the previous one is complete.
                        if let Some(done) = st.current.take() {
                            close(&st, done);
                        }
                        let start_ns = running_time(buffer.pts());
                        let end_ns =
                            start_ns + buffer.duration().map(|d| d.nseconds()).unwrap_or(0);
                        let fragment = st.next_index;
                        let location = st.dir.join(format!("{fragment:08}.m4s"));
                        st.next_index += 1;
                        let file = std::fs::File::create(&location)
                            .map_err(|e| WriteFailure::io(&location, e))?;
                        st.events.emit(PipelineEvent::FragmentOpened {
                            rendition: st.rendition.clone(),
                            running_time_ns: start_ns,
                        });
                        let part = st.parts.then(|| OpenPart {
                            bytes: Vec::new(),
                            start_ns,
                            end_ns,
                            independent: true, // a fragment starts with an IDR
                        });
                        st.current = Some(OpenFragment {
                            file,
                            location,
                            fragment,
                            end_ns,
                            written: 0,
                            part,
                            next_part: 0,
                        });
                    } else if flags.contains(gst::BufferFlags::HEADER) && st.parts {
                        // The next chunk of the open fragment: a new part.
                        let start_ns = running_time(buffer.pts());
                        let end_ns =
                            start_ns + buffer.duration().map(|d| d.nseconds()).unwrap_or(0);
                        // cmafmux cleared the buffer flags: the moof says whether this
                        // chunk starts with an IDR (the LL-HLS keyframe interval).
                        let independent = st.all_independent
                            || super::fmp4::first_sample_is_sync(map.as_slice()).unwrap_or(false);
                        if let Some(open) = st.current.as_mut() {
                            open.end_ns = open.end_ns.max(end_ns);
                            open.part = Some(OpenPart {
                                bytes: Vec::new(),
                                start_ns,
                                end_ns,
                                independent,
                            });
                        }
                    }
                    let Some(open) = st.current.as_mut() else {
                        return Ok(()); // data before any fragment header: nothing to attach it to
                    };
                    open.file
                        .write_all(map.as_slice())
                        .map_err(|e| WriteFailure::io(&open.location, e))?;
                    open.written += map.len() as u64;
                    if let Some(part) = open.part.as_mut() {
                        part.bytes.extend_from_slice(map.as_slice());
                    }
                    if flags.contains(gst::BufferFlags::MARKER) {
                        drop(map);
                        finish_part(&mut st)?;
                    }
                    Ok(())
                };
                let result = match sample.buffer_list() {
                    Some(list) => list.iter().try_for_each(&mut handle),
                    None => match sample.buffer() {
                        Some(b) => handle(b),
                        None => Ok(()),
                    },
                };
                if let Err(failure) = result {
                    st.failed = true;
                    // The same error filesink posts (MPEG-TS): the bus bridge types it.
                    let kind = if failure.no_space {
                        gst::ResourceError::NoSpaceLeft
                    } else {
                        gst::ResourceError::Write
                    };
                    gst::element_error!(sink, kind, ["CMAF fragment writer: {}", failure.reason]);
                    return Err(gst::FlowError::Error);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |_| {
                let mut st = on_eos.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(done) = st.current.take() {
                    if st.failed {
                        // Its last write failed (a full disk): the file is not whole. An EOS can
                        // still reach the sink after the error, before the session hears of it.
                        drop(done.file);
                        let _ = std::fs::remove_file(&done.location);
                    } else {
                        close(&st, done);
                    }
                }
            })
            .build(),
    );
}

/// A write that failed, and whether for want of space (the stream is then unhealthy with
/// `store_full` rather than failed).
struct WriteFailure {
    reason: String,
    no_space: bool,
}

impl WriteFailure {
    fn io(path: &std::path::Path, e: std::io::Error) -> WriteFailure {
        WriteFailure {
            no_space: crate::store::is_no_space(&e),
            reason: format!("{}: {e}", path.display()),
        }
    }

    fn other(reason: String) -> WriteFailure {
        WriteFailure {
            reason,
            no_space: false,
        }
    }
}

/// The chunk is complete: write it as a part file and report it.
fn finish_part(st: &mut WriterState) -> Result<(), WriteFailure> {
    let Some(open) = st.current.as_mut() else {
        return Ok(());
    };
    let Some(part) = open.part.take() else {
        return Ok(());
    };
    let index = open.next_part;
    open.next_part += 1;
    let location = st.dir.join(format!("{:08}.{index}.m4s", open.fragment));
    crate::store::write_atomic(&location, &part.bytes)
        .map_err(|e| WriteFailure::io(&location, e))?;
    st.events.emit(PipelineEvent::PartWritten {
        rendition: st.rendition.clone(),
        location,
        index,
        duration_ns: part.end_ns.saturating_sub(part.start_ns),
        start_ns: part.start_ns,
        independent: part.independent,
        byte_size: part.bytes.len() as u64,
    });
    Ok(())
}

fn close(st: &WriterState, done: OpenFragment) {
    drop(done.file);
    if done.written == 0 {
        let _ = std::fs::remove_file(&done.location);
        return;
    }
    st.events.emit(PipelineEvent::FragmentClosed {
        rendition: st.rendition.clone(),
        location: done.location,
        // splitmuxsink reports the last frame's start here; cmafmux knows the exact end.
        running_time_ns: done.end_ns,
        exact_end: true,
    });
}
